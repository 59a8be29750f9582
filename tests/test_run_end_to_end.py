"""`bilan run` and `bilan report` on the small suite in tests/data/suite, through the CLI."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from harness.cli import main
from harness.load import load_project
from harness.run import manifest


def _rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "results.jsonl").read_text(encoding="utf-8").splitlines()]


def test_run_writes_results_summary_and_reports(suite_dir: Path):
    run_dir = suite_dir / "out"
    assert main(["run", "--out", str(run_dir)]) == 0
    rows = _rows(run_dir)
    assert len(rows) == 10                                            # 2 targets x 5 cases
    assert {(r["target"], r["case_id"]) for r in rows} == {(t, c) for t in ("good", "poor") for c in (
        "chest-pain.fr", "chest-pain.ary-Arab", "chest-pain.ary-Latn", "heat-stroke.en", "heat-stroke.zgh-Tfng")}
    for row in rows:
        assert {"target", "case_id", "scenario", "language", "answer", "score", "verdicts", "sample"} <= set(row)
        for v in row["verdicts"]:
            assert {"id", "points", "axis", "met", "grader", "explanation"} <= set(v)

    by_key = {(r["target"], r["case_id"]): r for r in rows}
    missing = by_key[("poor", "chest-pain.ary-Latn")]
    assert missing["status"] == "missing" and missing["score"] is None and missing["verdicts"] == []
    fr = by_key[("good", "chest-pain.fr")]
    verdicts = {v["id"]: v["met"] for v in fr["verdicts"]}
    assert verdicts == {"call-emergency-now": True, "aspirin-advice": None, "home-remedy": False,
                        "answers-in-user-language": True, "foreign-number": False}
    assert fr["score"] == 1.0                                          # the ungraded criterion is out of both sides
    poor_ar = by_key[("poor", "chest-pain.ary-Arab")]                 # "Call 911 right away." to a Darija user
    assert {v["id"]: v["met"] for v in poor_ar["verdicts"]}["answers-in-user-language"] is False
    assert poor_ar["score"] == (-8) / 15

    summary = json.loads((run_dir / "summary.json").read_text())
    good = summary["targets"]["good"]
    for key in ("overall", "by_language", "by_axis", "by_theme"):
        assert key in good
    assert set(good["by_language"]) == {"fr", "ary-Arab", "ary-Latn", "en", "zgh-Tfng"}
    overall = good["overall"]
    assert overall["n"] == 5 and 0 <= overall["ci_low"] <= overall["score"] <= overall["ci_high"]
    assert good["ungraded_criteria"] == 3                              # aspirin-advice in three variants
    assert summary["targets"]["poor"]["missing"] == 2
    for name in ["index"] + list(good["by_language"]):
        for ext in ("html", "md", "png"):
            assert (run_dir / f"{name}.{ext}").stat().st_size > 0, f"{name}.{ext}"
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert "cases/chest-pain.yaml" in manifest["files"] and manifest["grader"]["provider"] == "rules"


def test_reports_escape_model_text_and_lay_out_arabic_right_to_left(suite_dir: Path):
    hostile = '<script>alert(1)</script><img src=x onerror=alert(2)> [x](javascript:alert(3))'
    with open(suite_dir / "answers" / "poor.csv", "a", encoding="utf-8") as f:
        f.write(f'chest-pain.ary-Latn,"{hostile}"\n')
    run_dir = suite_dir / "out"
    assert main(["run", "--out", str(run_dir)]) == 0
    page = (run_dir / "ary-Latn.html").read_text(encoding="utf-8")
    assert "<script>alert(1)" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    markdown = (run_dir / "ary-Latn.md").read_text(encoding="utf-8")
    assert "<script>" not in markdown and "\\[x\\](javascript" in markdown
    arabic = (run_dir / "ary-Arab.html").read_text(encoding="utf-8")
    assert 'lang="ary-Arab" dir="rtl"' in arabic
    tifinagh = (run_dir / "zgh-Tfng.html").read_text(encoding="utf-8")
    assert "Noto Sans Tifinagh" in tifinagh and "data:font/woff2;base64," in tifinagh
    assert "ⵜⵉⵢⵜⵉ ⵏ ⵜⴰⴼⵓⴽⵜ" in tifinagh


def test_report_rebuilds_from_results_alone(suite_dir: Path, capsys):
    run_dir = suite_dir / "out"
    assert main(["run", "--out", str(run_dir)]) == 0
    before = json.loads((run_dir / "summary.json").read_text())
    for page in run_dir.glob("*.html"):
        page.unlink()
    (run_dir / "summary.json").unlink()
    assert main(["report", str(run_dir)]) == 0
    assert json.loads((run_dir / "summary.json").read_text()) == before
    assert (run_dir / "fr.html").exists()


def test_invalid_input_stops_before_any_answer(suite_dir: Path, capsys):
    (suite_dir / "rubrics" / "heat.yaml").write_text("rubric: heat\ncriteria: []\n", encoding="utf-8")
    assert main(["run", "--out", str(suite_dir / "out")]) == 2
    err = capsys.readouterr().err
    assert "rubrics/heat.yaml:1:1: error: missing key 'applies_to'" in err
    assert not (suite_dir / "out" / "results.jsonl").exists()


def test_report_on_a_folder_without_results_is_an_input_error(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "no results.jsonl here" in capsys.readouterr().err


def test_redacted_reports_hold_no_answer(suite_dir: Path):
    run_dir = suite_dir / "out"
    assert main(["run", "--out", str(run_dir)]) == 0
    assert main(["report", str(run_dir), "--redact-answers", "--out", str(suite_dir / "share")]) == 0
    share = suite_dir / "share"
    answers = [json.loads(l)["answer"] for l in (run_dir / "results.jsonl").read_text(encoding="utf-8").splitlines()]
    assert (share / "index.html").exists() and (share / "fr.html").exists() and (share / "summary.json").exists()
    assert not (share / "results.jsonl").exists()
    for file in share.iterdir():
        text = file.read_bytes().decode("utf-8", "replace")
        assert not any(a and a in text for a in answers), file
    assert json.loads((share / "summary.json").read_text()) == json.loads((run_dir / "summary.json").read_text())
    assert main(["report", str(run_dir), "--redact-answers"]) == 2


def test_bidi_overrides_in_answers_are_shown_not_obeyed(suite_dir: Path):
    spoof = "Call 15 now.\u202e tem ton :tcidrev\u202c"
    with open(suite_dir / "answers" / "poor.csv", "a", encoding="utf-8") as f:
        f.write(f'chest-pain.ary-Latn,"{spoof}"\n')
    assert main(["run", "--out", "out"]) == 0
    page = (suite_dir / "out" / "ary-Latn.html").read_text(encoding="utf-8")
    assert "\u202e" not in page and '<span class="ctl">[U+202E]</span>' in page


def test_a_suite_reached_through_symbolic_links_is_named_by_where_its_files_really_are(suite_dir: Path,
                                                                                     tmp_path: Path):
    """The manifest's inputs name files relative to their folders, both resolved: a cases folder that is a link
    gives the plain copy's inputs; a case file or a rubric file linking out of its folder is named by where it
    really is, with the same hash."""
    linked = tmp_path / "linked"
    shutil.copytree(suite_dir, linked)
    shutil.move(linked / "cases", tmp_path / "elsewhere")
    (linked / "cases").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    plain = manifest(*load_project(suite_dir / "bilan.yaml")[:2], "plain")
    through_links = manifest(*load_project(linked / "bilan.yaml")[:2], "linked")
    assert through_links["inputs"] == plain["inputs"]
    assert sorted(through_links["files"].values()) == sorted(plain["files"].values())
    (tmp_path / "apart").mkdir()
    for moved in (tmp_path / "elsewhere" / "heat.yaml", linked / "rubrics" / "heat.yaml"):
        shutil.move(moved, tmp_path / "apart" / f"{moved.parent.name}-{moved.name}")
        moved.symlink_to(tmp_path / "apart" / f"{moved.parent.name}-{moved.name}")
    apart = manifest(*load_project(linked / "bilan.yaml")[:2], "apart")
    suite = dict(plain["inputs"]["suite"])
    suite["cases/../apart/elsewhere-heat.yaml"] = suite.pop("cases/heat.yaml")
    suite["rubrics/../../apart/rubrics-heat.yaml"] = suite.pop("rubrics/heat.yaml")
    assert apart["inputs"]["suite"] == suite
    assert apart["files"][str(tmp_path / "apart" / "elsewhere-heat.yaml")] == plain["files"]["cases/heat.yaml"]
