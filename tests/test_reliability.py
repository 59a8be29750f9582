"""Fault campaign: 429s with and without Retry-After, 500s, timeouts, dropped connections and malformed grader
output, on the target and the grader at once. Every run completes or stops cleanly at the error budget, every
failure is accounted for, and no verdict is invented."""
from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from fake_server import FakeReply, FakeRequest
from harness.cli import main
from test_providers import _grader_reply, _target_reply


def _draw(req: FakeRequest, salt: str) -> float:
    identity = json.dumps([req.system, req.messages, req.attempt, salt], ensure_ascii=False)
    return int(hashlib.sha256(identity.encode()).hexdigest()[:8], 16) / 16 ** 8


def faulty(rate: float):
    """Faults drawn deterministically from each request and its attempt number, at `rate` on every call."""
    kinds = ["429-retry-after", "429", "500", "drop", "hang", "garbage"]

    def responder(req: FakeRequest):
        grader = bool(req.system and "clinical grader" in req.system)
        if _draw(req, "fault") < rate:
            kind = kinds[int(_draw(req, "kind") * len(kinds))]
            if kind == "429-retry-after":
                return FakeReply(status=429, headers={"retry-after": "0"})
            if kind == "429":
                return FakeReply(status=429)
            if kind == "500":
                return FakeReply(status=500, text="upstream error")
            if kind == "drop":
                return FakeReply(drop=True)
            if kind == "hang":
                return FakeReply(hang=True)
            if grader:
                return 'Here is my verdict: {"criteria_met": tru'             # malformed grader output
        return _grader_reply(req) if grader else _target_reply(req)
    return responder


def honest(row: dict, verdict: dict) -> bool:
    """What the fake grader decides when it answers properly (see test_providers._grader_reply)."""
    return ("15" in row["answer"]) if verdict["points"] > 0 else ("911" in row["answer"])


@pytest.mark.parametrize("rate", [0.1, 0.3])
def test_fault_campaign_loses_nothing_and_invents_nothing(rate, suite_dir: Path, fake_server, capsys):
    fake_server.responder = faulty(rate)
    (suite_dir / "bilan.yaml").write_text(f"""
suite: {{cases: cases, rubrics: rubrics, locale: rubrics/locales/ma.yaml}}
targets:
  - {{name: vendor, provider: openai, model: m, base_url: "{fake_server.openai_base_url}", samples: 10, timeout: 0.5,
      max_attempts: 3, backoff: 0.01, max_concurrency: 8}}
grader: {{provider: openai, model: judge, base_url: "{fake_server.openai_base_url}", timeout: 0.5, max_attempts: 3,
          backoff: 0.01, max_concurrency: 8}}
""", encoding="utf-8")
    status = main(["run", "--out", "out", "--max-error-rate", "0.5"])
    err = capsys.readouterr().err
    # Timed-out calls must not wedge the SDK's connection pool: with three attempts a call, the run completes.
    assert status == 0 and "Traceback" not in err
    rows = [json.loads(l) for l in (suite_dir / "out" / "results.jsonl").read_text(encoding="utf-8").splitlines()]
    keys = [(r["case_id"], r["sample"]) for r in rows]
    assert len(keys) == len(set(keys))
    if status == 0:
        assert len(rows) == 50                                       # 5 cases x 10 samples, none lost
    else:
        assert "stopped" in err and "--resume" in err
    kinds = {"rate_limit", "server", "timeout", "connection", "malformed", "parse"}
    for row in rows:
        assert row["status"] in ("ok", "error")
        if row["status"] == "error":
            assert row["answer"] is None and row["score"] is None and row["error"].split(":")[0] in kinds
            continue
        for v in row["verdicts"]:
            if v["met"] is None:
                assert v["error"].split(":")[0] in kinds                # every failure has its kind
            else:
                assert v["met"] == honest(row, v)                       # no verdict invented
    if status == 0:
        summary = json.loads((suite_dir / "out" / "summary.json").read_text())["targets"]["vendor"]
        assert summary["errors"] == sum(r["status"] == "error" for r in rows)
        assert summary["grading_errors"] == sum(1 for r in rows for v in r["verdicts"] if v["error"])
    # The campaign really injected faults (and every row above recovered or failed with its kind). Not a count of
    # requests: how many calls the cache answers depends on how the work was spread over processes and tasks.
    faults = sum(_draw(q, "fault") < rate for q in fake_server.requests)
    assert faults >= 10


@pytest.fixture
def tiny_disk(tmp_path):
    """A 96 KB tmpfs, to fill up; skipped where this process may not mount file systems."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root); the disk-full campaign runs where it can")
    yield mount
    subprocess.run(["umount", str(mount)], capture_output=True)


def test_disk_full_is_a_clear_error_and_damages_nothing(suite_dir: Path, tiny_disk: Path, capsys):
    answers = suite_dir / "answers" / "good.jsonl"
    rows = [json.loads(l) for l in answers.read_text(encoding="utf-8").splitlines()]
    with open(answers, "w", encoding="utf-8") as f:                # long answers, to fill the disk mid-run
        for row in rows:
            f.write(json.dumps(dict(row, answer=row["answer"] + " " + "x" * 30000), ensure_ascii=False) + "\n")
    status = main(["run", "--out", str(tiny_disk / "run"), "--no-cache"])
    err = capsys.readouterr().err
    assert status == 1 and "No space left on device" in err and "Traceback" not in err
    results = tiny_disk / "run" / "results.jsonl"
    if results.exists():
        lines = results.read_bytes().splitlines(keepends=True)
        for line in lines[:-1]:
            json.loads(line)                                        # every complete row is intact
        from harness.store import read_results
        read_results(tiny_disk / "run")                              # a torn last line is cut, not fatal


def test_read_only_folder_is_a_clear_error(suite_dir: Path, tmp_path: Path, capsys):
    folder = tmp_path / "ro"
    folder.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(folder)],
                      capture_output=True).returncode:
        pytest.skip("cannot mount a read-only tmpfs here (needs root)")
    try:
        assert main(["run", "--out", str(folder / "run")]) == 1
        err = capsys.readouterr().err
        assert "Read-only file system" in err and "Traceback" not in err
    finally:
        subprocess.run(["umount", str(folder)], capture_output=True)


def test_api_keys_never_reach_any_file_or_output(suite_dir: Path, fake_server, monkeypatch, capfd, tmp_path):
    key = "sk-test-RECOGNISABLE-0123456789abcdef"
    fake_server.responder = faulty(0.2)
    monkeypatch.setenv("VENDOR_KEY", key)
    cache = tmp_path / "secret-cache"
    (suite_dir / "bilan.yaml").write_text(f"""
suite: {{cases: cases, rubrics: rubrics, locale: rubrics/locales/ma.yaml}}
targets:
  - {{name: vendor, provider: openai, model: m, base_url: "{fake_server.openai_base_url}", api_key_env: VENDOR_KEY,
      timeout: 0.5, max_attempts: 2, backoff: 0.01}}
grader: {{provider: anthropic, model: judge, base_url: "{fake_server.anthropic_base_url}", api_key_env: VENDOR_KEY,
          timeout: 0.5, max_attempts: 2, backoff: 0.01}}
""", encoding="utf-8")
    assert main(["run", "--out", "out", "--cache-dir", str(cache)]) in (0, 1)
    assert main(["review", "export", "out", "--out", "sheet.xlsx"]) == 0
    output = capfd.readouterr()
    assert any(key in " ".join(r.headers.values()) for r in fake_server.requests)      # it was used ...
    assert key not in output.out + output.err                                          # ... and never shown
    for folder in (suite_dir, cache):
        for file in folder.rglob("*"):
            if file.is_file():
                assert key.encode() not in file.read_bytes(), file


def test_a_file_written_from_text_chunks_holds_every_chunk(tmp_path):
    """Pages are written as their templates make them: runs of empty chunks, long chunks and non-ASCII text all
    arrive, in order, and the file appears whole or not at all."""
    from harness.store import write_file
    chunks = ["<p>", *[""] * 10_000, "سلام ⵜⴰⵎⴰⵣⵉⵖⵜ", "x" * 100_000, *(f"{i}," for i in range(20_000)), "</p>"]
    write_file(tmp_path / "page.html", iter(chunks))
    assert (tmp_path / "page.html").read_text(encoding="utf-8") == "".join(chunks)

    def failing():
        yield "half"
        raise ValueError("a template failed")
    with pytest.raises(ValueError):
        write_file(tmp_path / "page.html", failing())
    assert (tmp_path / "page.html").read_text(encoding="utf-8") == "".join(chunks)     # the old page kept
    assert [p.name for p in tmp_path.iterdir()] == ["page.html"]                      # no temporary file left
