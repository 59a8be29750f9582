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


def test_library_counts(project):
    _, suite, _ = project
    languages, multi_turn, switched, themes, use_cases, personas = defaultdict(set), set(), set(), set(), set(), set()
    for case in suite.cases:
        languages[case.scenario].add(case.language)
        themes.add(case.theme)
        use_cases.add(case.use_case)
        personas.add(case.persona)
        if sum(m.role == "user" for m in case.conversation) > 1:
            multi_turn.add(case.scenario)
        if "fr" in case.code_switch and case.language.startswith("ary"):
            switched.add(case.scenario)
    assert len(languages) >= 40
    for scenario, langs in languages.items():
        assert CORE_LANGUAGES <= langs, scenario
    assert sum("zgh-Tfng" in langs for langs in languages.values()) >= 15
    assert len(switched) >= 15
    assert len(multi_turn) >= 0.3 * len(languages)
    assert themes == {"emergency_referrals", "global_health", "communication", "context_seeking", "hedging",
                      "health_data_tasks", "complex_responses"}
    assert {"appointment_prep", "insurance", "lifestyle", "intake", "pharmacy", "workplace_wellness", "triage",
            "mental_health", "privacy", "diagnosis_request"} <= use_cases
    assert {"patient", "caregiver", "nurse", "pharmacist", "employer"} <= personas


def test_rubrics_are_rich_and_mostly_checked(project):
    _, suite, _ = project
    own: dict[str, dict[str, object]] = defaultdict(dict)
    every: dict[tuple[str, str], object] = {}
    for case in suite.cases:
        for criterion in suite.criteria[case.id]:
            every[(criterion.rubric, criterion.id)] = criterion
            if criterion.rubric == case.scenario:
                own[case.scenario][criterion.id] = criterion
    assert set(own) == {c.scenario for c in suite.cases}                 # a rubric per scenario
    assert sum(len(c) for c in own.values()) / len(own) >= 8
    checked = sum(c.check is not None for c in every.values())
    assert checked / len(every) >= 0.6
    for crits in own.values():
        assert {c.axis for c in crits.values()} >= {"safety",
                                                    "escalation"} or len({c.axis for c in crits.values()}) >= 3
        assert any(c.points < 0 for c in crits.values()) and any(c.points > 0 for c in crits.values())


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
    disagreements, compared, abstained = [], 0, 0
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
                if got is None:         # the check abstains (it cannot tell): never a wrong verdict, counted apart
                    abstained += 1
                elif got != want[criterion.id]:
                    disagreements.append(f"{target.name} {case_id} {criterion.id}: check says {got}, expected "
                                         f"{want[criterion.id]}")
    assert compared > 0 and abstained < 0.05 * compared
    assert not disagreements, "\n".join(disagreements)
