"""Decision analyses and commands on synthetic runs built through the CLI: parity, never-events, worst-at-k,
coverage, load_run, `bilan gate` exit codes and outputs, `bilan compare`."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness import load_run
from harness.analyze import AnalysisOptions, commits_never_event, summarize
from harness.cli import main
from synthetic import (darija_regression, good, language_gap, one_foreign_number, run_suite, three_samples,
                       write_suite)


@pytest.fixture
def root(tmp_path, monkeypatch) -> Path:
    """A synthetic suite (12 scenarios in fr, ary-Arab, en) as the working directory."""
    monkeypatch.chdir(tmp_path)
    return write_suite(tmp_path / "syn")


def _summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))


def test_parity_flags_the_planted_gap_and_not_the_null_one(root):
    summary = _summary(run_suite(root, "bilan.yaml", {"gap": language_gap, "good": good}, "one"))
    parity = summary["parity"]["gap"]
    assert set(parity) == {"ary-Arab", "en"}                           # fr is the reference
    darija = parity["ary-Arab"]
    # fr averages (1 + 13/18) / 2 = 31/36; ary-Arab always 8/18 = 16/36: the gap is -15/36.
    assert darija["gap"] == pytest.approx(-15 / 36) and darija["n"] == 12 and darija["flagged"]
    assert darija["ci_high"] < 0
    assert darija["by_axis"]["escalation"]["gap"] == pytest.approx(-1.0) and darija["by_axis"]["escalation"]["flagged"]
    english = parity["en"]                                             # +5/18 and -5/18 in turn: no net gap
    assert (english["gap"] == pytest.approx(0.0) and english["ci_low"] < 0 < english["ci_high"]
            and not english["flagged"])
    assert not any(e["flagged"] for e in summary["parity"]["good"].values())
    assert summary["parity_reference"] == "fr"
    html = (root / "runs" / "one" / "index.html").read_text(encoding="utf-8")
    assert 'id="parity"' in html and 'class="flag">-0.417' in html
    assert "gap: each language minus fr" not in html                    # charts are images, not text
    assert "data:image/png;base64," in html


def test_parity_reference_language_is_configurable(root):
    from harness.report import rebuild
    run_dir = run_suite(root, "bilan.yaml", {"gap": language_gap}, "one")
    summary = rebuild(run_dir, AnalysisOptions(reference="ary-Arab"))
    assert set(summary["parity"]["gap"]) == {"en", "fr"}
    assert summary["parity"]["gap"]["fr"]["gap"] == pytest.approx(15 / 36)


def test_never_events_counted_per_language_with_the_answers_listed(root):
    run_dir = run_suite(root, "bilan.yaml", {"assistant": one_foreign_number}, "ne")
    summary = _summary(run_dir)
    events = summary["never_events"]["assistant"]
    assert events["fr"] == {"rate": pytest.approx(1 / 12), "count": 1, "n": 12,
                            "answers": [{"case_id": "s00.fr", "sample": 0, "criteria": ["foreign-number"]}]}
    assert events["en"]["count"] == 0 and events["ary-Arab"]["rate"] == 0.0
    assert summary["targets"]["assistant"]["never_events"] == {"rate": pytest.approx(1 / 36), "count": 1, "n": 36}
    html = (run_dir / "index.html").read_text(encoding="utf-8")
    assert "The 1 answers that commit a never-event" in html and "s00.fr" in html
    assert "never-event</span>" in (run_dir / "fr.html").read_text(encoding="utf-8")


def test_never_event_rule():
    assert commits_never_event(-8, True, [])                  # at the threshold, met
    assert not commits_never_event(-7, True, [])              # above the threshold
    assert commits_never_event(-3, True, ["critical"])        # negative and critical
    assert commits_never_event(10, False, ["critical"])       # a critical must-do failed
    assert not commits_never_event(10, False, [])
    assert not commits_never_event(-10, None, ["critical"])   # not graded: nothing committed
    assert commits_never_event(-6, True, [], threshold=-5)


def test_worst_at_k_from_replayed_samples(root):
    summary = _summary(run_suite(root, "multi.yaml", {"multi": three_samples}, "multi", samples=3))
    # Every case has samples worth 18/18, 13/18 and 8/18:
    # k=1: 39/54; k=2: (2 x 8 + 13) / 54 = 29/54 (8/18 is the minimum of 2 of the 3 pairs); k=3: 8/18.
    assert summary["worst_at_k"]["multi"] == {"1": pytest.approx(39 / 54), "2": pytest.approx(29 / 54),
                                              "3": pytest.approx(8 / 18)}
    assert summary["worst_at_k_by_language"]["multi"]["ary-Arab"]["2"] == pytest.approx(29 / 54)
    html = (root / "runs" / "multi" / "index.html").read_text(encoding="utf-8")
    assert "k=3" in html and "Worst-at-k curves" in html


def test_no_worst_at_k_with_one_sample(root):
    summary = _summary(run_suite(root, "bilan.yaml", {"good": good}, "one"))
    assert summary["worst_at_k"] == {}


def _row(language: str, verdicts: list[dict], status: str = "ok", error: str | None = None,
         kind: str | None = None) -> dict:
    return {"target": "t", "case_id": f"c.{language}.{len(verdicts)}", "scenario": "c", "language": language,
            "theme": "x", "sample": 0, "status": status, "answer": "a" if status == "ok" else None, "error": error,
            "error_kind": kind, "usage": {}, "score": 1.0 if status == "ok" else None,
            "axis_scores": {}, "verdicts": verdicts}


def _verdict(met, grader: str = "model:g", error: str | None = None, kind: str | None = None) -> dict:
    return {"id": "c1", "points": 5, "axis": "safety", "met": met, "grader": grader, "error": error, "tags": []} | (
        {"error_kind": kind} if kind else {})


def test_coverage_and_failures_by_kind():
    # The kind is the row's error_kind, never read out of the message; a row written before kinds were
    # recorded counts as "other".
    rows = [_row("fr", [_verdict(True), _verdict(None, error="no reply within 5 s", kind="timeout"),
                        _verdict(None, error="not JSON", kind="parse"), _verdict(False, grader="rules")]),
            _row("ar", [_verdict(None, error="rate limited (429)", kind="rate_limit"),
                        _verdict(None, error="declined", kind="refusal"),
                        _verdict(None, error="timeout: an old row without its kind")]),
            _row("ar", [], status="error", error="server: server error (502)", kind="server")]
    cov = summarize(rows, ["safety"])["coverage"]["t"]
    assert (cov["graded"], cov["total"]) == (2, 7)
    assert cov["by_grader"]["rules"] == {"graded": 1, "total": 1, "share": 1.0}
    assert cov["by_language"]["ar"]["share"] == 0.0
    assert cov["grading_failures"] == {"ar": {"other": 1, "rate_limit": 1, "refusal": 1},
                                       "fr": {"parse": 1, "timeout": 1}}
    assert cov["answer_failures"] == {"ar": {"server": 1}}


def test_load_run_returns_tidy_frames(root):
    run_dir = run_suite(root, "bilan.yaml", {"assistant": one_foreign_number}, "ne")
    answers, verdicts, scores = load_run(run_dir)
    assert len(answers) == 36 and {"target", "case_id", "language", "score", "answer"} <= set(answers.columns)
    assert len(verdicts) == 36 * 4 and verdicts["never_event"].sum() == 1
    assert set(scores["measure"]) == {"overall", "safety", "clarity", "escalation"}     # no context criterion
    assert scores[scores["measure"] == "overall"]["score"].mean() == pytest.approx(35 / 36)
    with open(run_dir / "results.jsonl", "a", encoding="utf-8") as f:
        f.write('{"target": "assistant", "case_')                        # a run still being written
    assert len(load_run(run_dir).answers) == 36
    assert (run_dir / "results.jsonl").read_text(encoding="utf-8").endswith('"case_')   # left untouched


def _gate(base: Path, cand: Path, tmp: Path, *extra: str) -> int:
    return main(["gate", "--baseline", str(base), "--candidate", str(cand), "--markdown", str(tmp / "gate.md"),
                 "--junit", str(tmp / "gate.xml"), "--json", str(tmp / "gate.json"), *extra])


def test_gate_fails_on_a_planted_regression(root, tmp_path, capsys):
    base = run_suite(root, "base.yaml", {"assistant": good}, "base")
    cand = run_suite(root, "cand.yaml", {"assistant": darija_regression}, "cand")
    assert _gate(base, cand, tmp_path) == 1
    result = json.loads((tmp_path / "gate.json").read_text())
    failed = {(c["scope"], c["name"]) for c in result["checks"] if c["regression"]}
    assert failed == {("overall", "overall"), ("language", "ary-Arab"), ("axis", "escalation")}
    darija = next(c for c in result["checks"] if c["name"] == "ary-Arab" and c["scope"] == "language")
    assert darija["change"] == pytest.approx(-10 / 18) and darija["p_holm"] < 0.05
    table = [line for line in (tmp_path / "gate.md").read_text().splitlines() if line.startswith("| ")][1:]
    assert all("regression" in line for line in table[:3]) and not any("regression" in line for line in table[3:])
    suite = ET.fromstring((tmp_path / "gate.xml").read_text())
    assert suite.get("failures") == "3"
    cases = {(c.get("classname"), c.get("name")): c for c in suite.iter("testcase")}
    assert cases[("bilan.gate.language", "ary-Arab")].find("failure") is not None
    assert cases[("bilan.gate.language", "fr")].find("failure") is None
    assert "Bilan gate: FAIL (3 regressions)" in capsys.readouterr().out


def test_gate_passes_with_no_change_and_with_an_improvement(root, tmp_path):
    base = run_suite(root, "base.yaml", {"assistant": darija_regression}, "base")
    same = run_suite(root, "same.yaml", {"assistant": darija_regression}, "same")
    better = run_suite(root, "better.yaml", {"assistant": good}, "better")
    assert _gate(base, same, tmp_path) == 0
    assert json.loads((tmp_path / "gate.json").read_text())["regressions"] == 0
    assert _gate(base, better, tmp_path) == 0
    result = json.loads((tmp_path / "gate.json").read_text())
    assert next(c for c in result["checks"] if c["name"] == "ary-Arab")["outcome"] == "higher"
    assert "Bilan gate: pass" in (tmp_path / "gate.md").read_text()


def test_gate_fails_when_never_events_increase(root, tmp_path):
    base = run_suite(root, "base.yaml", {"assistant": good}, "base")
    cand = run_suite(root, "cand.yaml", {"assistant": one_foreign_number}, "cand")
    assert _gate(base, cand, tmp_path) == 1
    result = json.loads((tmp_path / "gate.json").read_text())
    failed = {(c["scope"], c["name"]) for c in result["checks"] if c["regression"]}
    assert failed == {("never_events", "all languages"), ("never_events", "fr")}   # one case: no significant drop


def test_gate_tolerates_a_drop_within_max_drop(root, tmp_path):
    base = run_suite(root, "base.yaml", {"assistant": good}, "base")
    cand = run_suite(root, "cand.yaml", {"assistant": darija_regression}, "cand")
    assert _gate(base, cand, tmp_path, "--max-drop", "0.6") == 0


def test_gate_refuses_runs_of_different_suites(root, tmp_path, capsys):
    base = run_suite(root, "base.yaml", {"assistant": good}, "base")
    rubric = root / "rubrics" / "shared.yaml"
    rubric.write_text(rubric.read_text().replace("points: 5", "points: 6"), encoding="utf-8")
    cand = run_suite(root, "cand.yaml", {"assistant": good}, "cand")
    assert _gate(base, cand, tmp_path) == 2
    err = capsys.readouterr().err
    assert "rubrics/shared.yaml: differs" in err
    assert json.loads((tmp_path / "gate.json").read_text())["status"] == "incomparable"
    assert "cannot compare" in (tmp_path / "gate.md").read_text()
    assert ET.fromstring((tmp_path / "gate.xml").read_text()).get("errors") == "1"


def test_gate_needs_a_target_when_runs_have_several(root, tmp_path, capsys):
    base = run_suite(root, "base.yaml", {"a": good, "b": good}, "base")
    cand = run_suite(root, "cand.yaml", {"a": good, "b": darija_regression}, "cand")
    assert _gate(base, cand, tmp_path) == 2
    assert "choose one with --target" in capsys.readouterr().err
    assert _gate(base, cand, tmp_path, "--target", "b") == 1
    assert _gate(base, cand, tmp_path, "--target", "a") == 0
    assert main(["gate", "--baseline", str(tmp_path / "nowhere"), "--candidate", str(cand)]) == 2


def test_compare_one_run_with_several_targets(root, tmp_path, capsys):
    run_dir = run_suite(root, "bilan.yaml", {"good": good, "gap": language_gap, "ne": one_foreign_number}, "one")
    out = tmp_path / "cmp"
    assert main(["compare", str(run_dir), "--out", str(out)]) == 0
    data = json.loads((out / "compare.json").read_text())
    assert [c["label"] for c in data["contenders"]] == ["gap", "good", "ne"]
    pair = next(p for p in data["pairs"] if (p["a"], p["b"]) == ("gap", "good"))
    assert pair["overall"]["diff"] < 0 and pair["overall"]["ci_high"] < 0
    # gap loses every ary-Arab case and the half-marked fr and en ones, and ties the full-marked ones.
    assert pair["win"] == {"wins": 0, "losses": 24, "ties": 12, "win_rate": 0.0, "tie_share": pytest.approx(12 / 36)}
    flagged = {(c["label"], l) for c in data["contenders"] for l, e in c["parity"].items() if e["flagged"]}
    assert flagged == {("gap", "ary-Arab")}
    html = (out / "compare.html").read_text(encoding="utf-8")
    assert "good has the highest overall score" in html and "How often does each system commit a never-event?" in html
    assert (out / "compare.md").read_text().startswith("# Bilan comparison: gap, good, ne")
    assert (out / "compare-overall.png").stat().st_size > 0
    assert "good has the highest overall score" in capsys.readouterr().out


def test_compare_across_runs_labels_targets_and_checks_the_suite(root, tmp_path, capsys):
    first = run_suite(root, "a.yaml", {"assistant": good}, "a")
    second = run_suite(root, "b.yaml", {"assistant": darija_regression}, "b")
    assert main(["compare", str(first), str(second)]) == 0
    written = sorted((root / "runs").glob("compare-*/compare.json"))
    assert len(written) == 1
    labels = [c["label"] for c in json.loads(written[0].read_text())["contenders"]]
    assert labels == ["assistant (a)", "assistant (b)"]
    (root / "cases" / "s00.yaml").write_text((root / "cases" / "s00.yaml").read_text().replace("s00\n", "s00 \n", 1))
    third = run_suite(root, "c.yaml", {"other": good}, "c")
    assert main(["compare", str(first), str(third), "--out", str(tmp_path / "x")]) == 2
    assert "cases/s00.yaml: differs" in capsys.readouterr().err
