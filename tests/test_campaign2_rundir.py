"""Issue 12, run directories and the CI gate: a run directory is held by one process; a refused command changes no
file; no output is written through a symbolic link; every input that can change a verdict is hashed and checked;
the gate compares content, not paths, refuses to vouch for a run with missing answers, and keeps names inert in
its Markdown; SIGTERM stops a run as Ctrl-C does. Through the CLI, real processes and the fake server."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fake_server import FakeReply
from harness.cli import main
from synthetic import good, run_suite, write_answers, write_suite
from test_engine import rows_of, write_config
from test_providers import responder

ROOT = Path(__file__).resolve().parent.parent
UNITS = 20                                  # the small suite's 5 cases x 4 samples


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _start_stalled_run(suite_dir: Path, fake_server, out: str) -> tuple[subprocess.Popen, dict]:
    """`python -m harness run` in its own process, answering a few units and then stalled on a call that is never
    answered, so the process is alive, holding its run directory, for as long as the test needs."""
    fake_server.responder = lambda request: FakeReply(hang=True) if fake_server.count >= 3 else responder(request)
    write_config(suite_dir, fake_server, samples=4, grader="rules")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    command = [sys.executable, "-m", "harness", "run", "--out", out]
    proc = subprocess.Popen(command, cwd=suite_dir, env=env, stderr=subprocess.PIPE, text=True)
    results = suite_dir / out / "results.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not results.exists() or not results.read_text(encoding="utf-8").count("\n")):
        time.sleep(0.05)
    assert results.read_text(encoding="utf-8").count("\n") >= 1
    return proc, env


def test_a_second_process_is_refused_while_a_run_holds_the_directory_and_a_kill_leaves_no_lock(suite_dir, fake_server):
    proc, env = _start_stalled_run(suite_dir, fake_server, "shared")
    try:
        second = subprocess.run([sys.executable, "-m", "harness", "run", "--out", "shared", "--resume"], cwd=suite_dir,
                                env=env, capture_output=True, text=True, timeout=120)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    assert second.returncode == 2, second.stderr
    assert f"pid {proc.pid}" in second.stderr and "shared" in second.stderr and "Traceback" not in second.stderr
    fake_server.responder = responder
    done = subprocess.run([sys.executable, "-m", "harness", "run", "--out", "shared", "--resume"], cwd=suite_dir,
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr                            # the killed holder left no stale lock
    keys = [(r["target"], r["case_id"], r["sample"]) for r in rows_of(suite_dir / "shared")]
    assert len(keys) == len(set(keys)) == UNITS


def test_a_refused_resume_changes_no_file_in_the_run_directory(suite_dir, fake_server, capsys):
    fake_server.responder = lambda request: FakeReply(status=400) if fake_server.count <= 3 else responder(request)
    write_config(suite_dir, fake_server, samples=2, grader="rules")
    assert main(["run", "--out", "run", "--max-error-rate", "0.9"]) == 0
    assert any(r["status"] == "error" for r in rows_of(suite_dir / "run"))       # rows a resume would drop and redo
    with open(suite_dir / "run" / "results.jsonl", "a", encoding="utf-8") as f:
        f.write('{"target": "vendor", "case_id": "he')                         # and a torn line it would cut
    before = _files(suite_dir / "run")
    rubric = suite_dir / "rubrics" / "heat.yaml"
    rubric.write_text(rubric.read_text(encoding="utf-8").replace("cool him with water.", "cool him with cool water."),
                      encoding="utf-8")
    capsys.readouterr()
    assert main(["run", "--out", "run", "--resume"]) == 2
    err = capsys.readouterr().err
    assert "cannot resume" in err and "rubrics/heat.yaml" in err
    assert _files(suite_dir / "run") == before
    assert main(["run", "--out", "run", "--resume", "--dry-run"]) == 2
    assert _files(suite_dir / "run") == before


def test_outputs_behind_symbolic_links_are_refused_and_their_targets_untouched(suite_dir, tmp_path, capsys):
    assert main(["run", "--out", "run"]) == 0
    run_dir = suite_dir / "run"
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "precious.html"
    victim.write_text("precious", encoding="utf-8")
    (run_dir / "index.html").unlink()
    (run_dir / "index.html").symlink_to(victim)
    results = outside / "results.jsonl"
    results.write_bytes((run_dir / "results.jsonl").read_bytes() + b'{"torn": ')
    (run_dir / "results.jsonl").unlink()
    (run_dir / "results.jsonl").symlink_to(results)
    kept = results.read_bytes()
    capsys.readouterr()
    assert main(["report", "run"]) == 2
    err = capsys.readouterr().err
    assert "index.html: error: is a symbolic link" in err and "Traceback" not in err
    assert victim.read_text(encoding="utf-8") == "precious" and results.read_bytes() == kept
    assert main(["run", "--out", "run", "--resume"]) == 2
    assert "results.jsonl: error: is a symbolic link" in capsys.readouterr().err
    assert victim.read_text(encoding="utf-8") == "precious" and results.read_bytes() == kept
    (tmp_path / "gate.md").symlink_to(victim)
    (run_dir / "results.jsonl").unlink()
    (run_dir / "results.jsonl").write_bytes(kept[:kept.rindex(b"\n") + 1])
    assert main(["gate", "--baseline", "run", "--candidate", "run", "--target", "good", "--markdown",
                 str(tmp_path / "gate.md")]) == 2
    assert "gate.md: error: is a symbolic link" in capsys.readouterr().err
    assert victim.read_text(encoding="utf-8") == "precious"


def test_resume_is_refused_after_the_system_prompt_changes(suite_dir, fake_server, capsys):
    fake_server.responder = responder
    write_config(suite_dir, fake_server, samples=2, grader="rules", extra=", system_prompt: prompt.md")
    prompt = suite_dir / "prompt.md"
    prompt.write_text("You are a careful health assistant.", encoding="utf-8")
    assert main(["run", "--out", "run", "--shard", "1/2"]) == 0
    prompt.write_text("You are a careless health assistant.", encoding="utf-8")
    capsys.readouterr()
    assert main(["run", "--out", "run", "--resume"]) == 2
    err = capsys.readouterr().err
    assert "target vendor: system_prompt: differs" in err
    assert main(["run", "--out", "other", "--shard", "2/2"]) == 0
    assert main(["merge", "merged", "run", "other"]) == 2                 # shards made with two prompts
    assert "target vendor: system_prompt: differs" in capsys.readouterr().err


def _suite_with_outside_locale(root: Path) -> Path:
    """The synthetic suite with its locale in a folder of its own, outside rubrics/."""
    write_suite(root)
    (root / "locale").mkdir()
    shutil.move(root / "rubrics" / "locales" / "ma.yaml", root / "locale" / "ma.yaml")
    return root


def _config(path: Path, suite: str, answers: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"suite: {{cases: {suite}/cases, rubrics: {suite}/rubrics, locale: {suite}/locale/ma.yaml}}\n"
                    f"targets:\n  - {{name: assistant, provider: replay, answers: {answers}}}\n"
                    "grader: {provider: rules}\nseed: 0\n", encoding="utf-8")
    return path


def test_gate_refuses_runs_made_with_different_locales(tmp_path, capsys):
    root = _suite_with_outside_locale(tmp_path / "syn")
    write_answers(root / "good.jsonl", good)
    config = _config(root / "bilan.yaml", ".", "good.jsonl")
    assert main(["run", "--config", str(config), "--out", str(tmp_path / "base"), "--no-cache"]) == 0
    locale = root / "locale" / "ma.yaml"
    locale.write_text(locale.read_text(encoding="utf-8") + "# emergency numbers revised\n", encoding="utf-8")
    assert main(["run", "--config", str(config), "--out", str(tmp_path / "cand"), "--no-cache"]) == 0
    capsys.readouterr()
    assert main(["gate", "--baseline", str(tmp_path / "base"), "--candidate", str(tmp_path / "cand")]) == 2
    assert "suite: locale: differs" in capsys.readouterr().err
    assert main(["compare", str(tmp_path / "base"), str(tmp_path / "cand"), "--out", str(tmp_path / "cmp")]) == 2
    assert "suite: locale: differs" in capsys.readouterr().err


def test_gate_compares_runs_from_configs_in_different_folders_by_content(tmp_path, capsys):
    for side in ("main", "pr"):
        _suite_with_outside_locale(tmp_path / side / "suite")
        write_answers(tmp_path / side / "good.jsonl", good)
        config = _config(tmp_path / side / "configs" / "bilan.yaml", "../suite", "../good.jsonl")
        assert main(["run", "--config", str(config), "--out", str(tmp_path / f"run-{side}"), "--no-cache"]) == 0
    capsys.readouterr()
    assert main(["gate", "--baseline", str(tmp_path / "run-main"), "--candidate", str(tmp_path / "run-pr")]) == 0
    captured = capsys.readouterr()
    assert "only in" not in captured.out + captured.err and "Bilan gate: pass" in captured.out
    rubric = tmp_path / "pr" / "suite" / "rubrics" / "shared.yaml"
    rubric.write_text(rubric.read_text(encoding="utf-8").replace("points: 5", "points: 6"), encoding="utf-8")
    config = tmp_path / "pr" / "configs" / "bilan.yaml"
    assert main(["run", "--config", str(config), "--out", str(tmp_path / "run-pr2"), "--no-cache"]) == 0
    assert main(["gate", "--baseline", str(tmp_path / "run-main"), "--candidate", str(tmp_path / "run-pr2")]) == 2
    assert "suite: rubrics/shared.yaml: differs" in capsys.readouterr().err


def test_gate_fails_when_too_many_answers_are_missing_unless_the_floor_is_lowered(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    root = write_suite(tmp_path / "syn")
    base = run_suite(root, "base.yaml", {"assistant": good}, "base")
    few = lambda i, lang, sample: good(i, lang, sample) if i < 4 else "EXPLAIN. REST."
    cand = run_suite(root, "cand.yaml", {"assistant": few}, "cand")
    answers = root / "answers" / "cand-assistant.jsonl"
    lines = answers.read_text(encoding="utf-8").splitlines(keepends=True)
    answers.write_text("".join(lines[:12]), encoding="utf-8")              # 24 of the 36 answers missing
    cand = root / "runs" / "cand"
    shutil.rmtree(cand)
    assert main(["run", "--config", str(root / "cand.yaml"), "--out", str(cand), "--no-cache"]) == 0
    gate = ["gate", "--baseline", str(base), "--candidate", str(cand), "--markdown", str(tmp_path / "gate.md"),
            "--json", str(tmp_path / "gate.json"), "--junit", str(tmp_path / "gate.xml")]
    capsys.readouterr()
    assert main(gate) == 1
    result = json.loads((tmp_path / "gate.json").read_text(encoding="utf-8"))
    assert result["regressions"] == 0 and result["status"] == "fail"
    assert result["answer_coverage"] | {"message": ""} == {"units": 36, "scored_in_both": 12, "share": 12 / 36,
                                                           "min_coverage": 0.95, "unscored_baseline": 0,
                                                           "unscored_candidate": 24, "below": True, "message": ""}
    text = (tmp_path / "gate.md").read_text(encoding="utf-8")
    assert text.startswith("## Bilan gate: FAIL (33% of the answers scored in both runs, below 95%)")
    assert "Too few answers to gate" in text and "24 missing, failed or not graded in the candidate" in text
    assert 'type="coverage"' in (tmp_path / "gate.xml").read_text(encoding="utf-8")
    assert main(gate + ["--min-coverage", "0.3"]) == 0
    rows = (base / "results.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    (base / "results.jsonl").write_text("".join(rows[:30]), encoding="utf-8")   # a baseline cut short: rows absent
    assert main(["gate", "--baseline", str(base), "--candidate", str(base), "--json", str(tmp_path / "self.json")]) == 1
    assert json.loads((tmp_path / "self.json").read_text())["answer_coverage"]["unscored_candidate"] == 6


def test_gate_markdown_keeps_run_names_inert(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    root = write_suite(tmp_path / "syn")
    base = run_suite(root, "base.yaml", {"assistant": good}, "main")
    cand = run_suite(root, "cand.yaml", {"assistant": good}, "pr` @octo-org ``x")
    assert main(["gate", "--baseline", str(base), "--candidate", str(cand), "--markdown",
                 str(tmp_path / "gate.md")]) == 0
    text = (tmp_path / "gate.md").read_text(encoding="utf-8")
    assert "``` pr` @octo-org ``x ```" in text           # fenced by more backticks than the name's longest run
    outside_code = text.replace("``` pr` @octo-org ``x ```", "")
    assert "@octo" not in outside_code
    from harness.report_compare import gate_markdown
    warned = gate_markdown({"status": "incomparable", "reasons": ["cases/@admin.yaml: only in the baseline run"]})
    assert "@\u200badmin" in warned and "@admin" not in warned


def test_sigterm_stops_the_run_cleanly_with_the_resume_command(suite_dir, fake_server):
    proc, env = _start_stalled_run(suite_dir, fake_server, "termed")
    os.kill(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143
    assert "terminated (SIGTERM)" in err and "--out termed --resume" in err and "Traceback" not in err
    written = rows_of(suite_dir / "termed")
    assert 1 <= len(written) < UNITS
    fake_server.responder = responder
    done = subprocess.run([sys.executable, "-m", "harness", "run", "--out", "termed", "--resume"], cwd=suite_dir,
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    keys = [(r["target"], r["case_id"], r["sample"]) for r in rows_of(suite_dir / "termed")]
    assert len(keys) == len(set(keys)) == UNITS


def test_a_run_directory_file_that_is_not_utf8_or_not_json_is_a_located_error(tmp_path, capsys):
    # `bilan report` reads a run directory someone may have edited or damaged: a byte that is not UTF-8 in
    # cases.jsonl, or a manifest that is not JSON, is an input error at its file and line, never a traceback.
    root = tmp_path / "syn"
    write_suite(root)
    run_dir = run_suite(root, "bilan.yaml", {"good": good}, "one")
    cases = run_dir / "cases.jsonl"
    original = cases.read_bytes()
    first_end = original.index(b"\n") + 1
    cases.write_bytes(original[:first_end] + b'{"case_id": "x\xff"}\n' + original[first_end:])
    capsys.readouterr()
    assert main(["report", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert "cases.jsonl:2:" in err and "UTF-8" in err and "internal error" not in err, err
    cases.write_bytes(original)
    (run_dir / "manifest.json").write_text('{"run_id": "one",', encoding="utf-8")
    assert main(["report", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert "manifest.json:1:" in err and "JSON" in err and "internal error" not in err, err


def test_every_damaged_line_of_results_is_reported_and_a_torn_last_line_left_out(tmp_path, capsys):
    # results.jsonl is read a line at a time (never held whole): each line that is not UTF-8 or not a row is
    # reported with its number, and a last line without its newline (a run killed mid-write) is left out.
    root = tmp_path / "syn"
    write_suite(root)
    run_dir = run_suite(root, "bilan.yaml", {"good": good}, "one")
    results = run_dir / "results.jsonl"
    lines = results.read_bytes().splitlines(keepends=True)
    assert len(lines) >= 4
    results.write_bytes(lines[0] + b'{"target": "\xfe"}\n' + lines[1] + b"[1, 2]\n" + b"".join(lines[2:])
                        + lines[0][:40])
    capsys.readouterr()
    assert main(["report", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert "results.jsonl:2:" in err and "UTF-8" in err and "results.jsonl:4:" in err and "not an object" in err, err
    results.write_bytes(b"".join(lines) + lines[0][:40])
    assert main(["report", str(run_dir)]) == 0
    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    assert summary["rows"] == len(lines)


def test_a_result_row_that_lacks_what_a_row_holds_is_a_located_error_on_every_command(tmp_path, capsys):
    # A row is read into a typed record once, by store.py: a row without its case id, or a verdict without its
    # points, is reported at its line (every such line) before any report or export starts, never a traceback.
    root = tmp_path / "syn"
    write_suite(root)
    run_dir = run_suite(root, "bilan.yaml", {"good": good}, "one")
    results = run_dir / "results.jsonl"
    lines = results.read_bytes().splitlines(keepends=True)
    no_case = json.loads(lines[1])
    del no_case["case_id"]
    no_points = json.loads(lines[2])
    del no_points["verdicts"][0]["points"]
    results.write_bytes(lines[0] + (json.dumps(no_case) + "\n").encode() + (json.dumps(no_points) + "\n").encode()
                        + b"".join(lines[3:]))
    for command in (["report", str(run_dir)], ["export", "healthbench", str(run_dir), "--out", str(tmp_path / "hb")]):
        capsys.readouterr()
        assert main(command) == 2, command
        err = capsys.readouterr().err
        assert "results.jsonl:2:1:" in err and "'case_id'" in err and "results.jsonl:3:1:" in err \
            and "'points'" in err and "internal error" not in err and "Traceback" not in err, err


def test_a_row_read_back_answers_by_attribute_and_by_its_json_name(tmp_path):
    # Scripts written against the JSON rows keep working: a typed row and its verdicts also answer row["name"] and
    # row.get("name"), with the same values as the line in results.jsonl; a name the row does not have is a
    # KeyError, or the default with get().
    from harness.store import read_results
    root = tmp_path / "syn"
    write_suite(root)
    run_dir = run_suite(root, "bilan.yaml", {"good": good}, "one")
    rows = read_results(run_dir)
    lines = [json.loads(line) for line in (run_dir / "results.jsonl").read_text(encoding="utf-8").splitlines()]
    assert rows and len(rows) == len(lines)
    for row, line in zip(rows, lines):
        assert row["case_id"] == row.case_id == line["case_id"] and row.get("answer") == line.get("answer")
        assert [v["id"] for v in row["verdicts"]] == [v.get("id") for v in row.verdicts] \
            == [v["id"] for v in line["verdicts"]]
    with pytest.raises(KeyError):
        rows[0]["no_such_field"]
    assert rows[0].get("no_such_field", "absent") == "absent" and rows[0].verdicts[0].get("nope") is None
