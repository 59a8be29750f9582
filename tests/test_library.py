"""The shipped suite: it validates, its counts hold, and every check agrees with the verdicts written beside
each shipped answer."""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest

from harness.graders.rules import RulesGrader
from harness.load import load_expected, load_project

ROOT = Path(__file__).resolve().parent.parent
CORE_LANGUAGES = {"ar", "ary-Arab", "ary-Latn", "fr", "en"}


@pytest.fixture(scope="module")
def project():
    return load_project(ROOT / "bilan.yaml")


def test_every_scenario_has_the_core_languages(project):
    _, suite, _ = project
    languages = defaultdict(set)
    for case in suite.cases:
        languages[case.scenario].add(case.language)
    assert len(languages) >= 8
    for scenario, langs in languages.items():
        assert CORE_LANGUAGES <= langs, scenario
    assert sum("zgh-Tfng" in langs for langs in languages.values()) >= 3
    assert len({c.theme for c in suite.cases}) >= 5


def test_translations_and_rubrics_are_marked_as_drafts(project):
    _, suite, _ = project
    assert all(case.review == "draft" for case in suite.cases)


def test_every_case_is_answered_by_each_shipped_set(project):
    config, suite, answers = project
    for target in config.targets:
        assert {c.id for c in suite.cases} == {case_id for case_id, _ in answers[target.name]}, target.name


def test_checks_agree_with_the_expected_verdicts(project):
    config, suite, answers = project
    grader = RulesGrader(suite.locale)
    cases = {c.id: c for c in suite.cases}
    disagreements, compared = [], 0
    for target in config.targets:
        expected = load_expected(target.answers)
        for (case_id, sample), text in answers[target.name].items():
            case = cases[case_id]
            want = expected.get((case_id, sample), {})
            checked = [c for c in suite.criteria[case_id] if c.check is not None]
            missing = {c.id for c in checked} - set(want)
            assert not missing, f"{target.name} {case_id}: no expected verdict for {sorted(missing)}"
            for criterion in checked:
                got = grader.verdict(case, text, criterion).met
                compared += 1
                if got != want[criterion.id]:
                    disagreements.append(f"{target.name} {case_id} {criterion.id}: check says {got}, expected {want[criterion.id]}")
    assert compared > 0
    assert not disagreements, "\n".join(disagreements)
