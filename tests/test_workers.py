"""Worker processes (issue 14): `bilan run --workers N` splits the units over forked processes that stream their
rows to the parent. What a run writes must not depend on how many processes wrote it, and everything the engine
promises in one process (ceilings, interrupts, resume, call counts) holds across them."""
from __future__ import annotations

import asyncio
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
from harness.load import load_project
from harness.processes import FORK
from harness.report import rebuild
from harness.run import RunOptions, worker_count
from test_engine import ROOT, essence, rows_of, write_config
from test_providers import responder

pytestmark = pytest.mark.skipif(not FORK, reason="worker processes are forked, which only Linux does safely")


def summary_of(run_dir: Path) -> dict:
    """The run's per-target figures, but for the latencies the fake server's timing gives."""
    targets = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))["targets"]
    return {name: {k: v for k, v in figures.items() if k != "latency"} for name, figures in targets.items()}


def test_one_process_and_three_write_the_same_results_and_scores(suite_dir, fake_server, capsys):
    fake_server.responder = responder
    write_config(suite_dir, fake_server, samples=3)
    assert main(["run", "--out", "one", "--workers", "1", "--no-cache"]) == 0
    one_calls = fake_server.count
    one_line = capsys.readouterr().err
    assert main(["run", "--out", "three", "--workers", "3", "--no-cache"]) == 0
    three_line = capsys.readouterr().err
    assert fake_server.count == 2 * one_calls                  # the same calls, none twice, none lost
    one, three = rows_of(suite_dir / "one"), rows_of(suite_dir / "three")
    assert len(three) == len({(r["target"], r["case_id"], r["sample"]) for r in three}) == 15
    assert essence(three) == essence(one)
    assert summary_of(suite_dir / "three") == summary_of(suite_dir / "one")
    closing = f"{one_calls} model calls made, 0 answered from the cache"
    assert closing in one_line and closing in three_line    # the workers' call counts reach the closing line


def test_a_cached_rerun_in_workers_makes_no_call_and_counts_its_cache_hits(suite_dir, fake_server, capsys):
    fake_server.responder = responder
    write_config(suite_dir, fake_server)
    assert main(["run", "--out", "first", "--workers", "2"]) == 0
    paid = fake_server.count
    capsys.readouterr()
    assert main(["run", "--out", "again", "--workers", "2"]) == 0
    assert fake_server.count == paid
    assert f"0 model calls made, {paid} answered from the cache" in capsys.readouterr().err
    assert essence(rows_of(suite_dir / "again")) == essence(rows_of(suite_dir / "first"))


def test_the_cost_ceiling_holds_across_workers(suite_dir, fake_server, capsys):
    fake_server.responder = responder
    write_config(suite_dir, fake_server, samples=20, extra=", max_tokens: 1", grader="rules")
    ceiling = 0.0029
    assert main(["run", "--out", "out", "--workers", "2", "--max-cost", str(ceiling)]) == 1
    err = capsys.readouterr().err
    assert "cost ceiling reached" in err and "--resume" in err
    rows = rows_of(suite_dir / "out")
    spent = sum(r["usage"]["input_tokens"] * 1.0 + r["usage"]["output_tokens"] * 2.0 for r in rows) / 1e6
    assert 0 < len(rows) < 100 and spent <= ceiling             # one budget for both processes, never passed


def test_the_error_ceiling_stops_every_worker(suite_dir, fake_server, capsys):
    fake_server.responder = lambda req: FakeReply(status=401, text="invalid key")
    write_config(suite_dir, fake_server, samples=12, grader="rules")
    assert main(["run", "--out", "out", "--workers", "2", "--max-error-rate", "0.3"]) == 1
    assert "more than --max-error-rate 0.3" in capsys.readouterr().err
    assert 20 <= len(rows_of(suite_dir / "out")) < 40          # 60 units: the workers stopped, not ran on


def test_workers_never_exceed_the_smallest_concurrency_limit(suite_dir, fake_server):
    write_config(suite_dir, fake_server)                        # limits 4 (target) and 8 (grader)
    config, _, _ = load_project(suite_dir / "bilan.yaml")
    assert worker_count(config, RunOptions(workers=8), 100) == 4
    assert worker_count(config, RunOptions(workers=8), 3) == 3   # never more processes than units
    yaml = suite_dir / "bilan.yaml"
    yaml.write_text(yaml.read_text(encoding="utf-8").replace("max_concurrency: 4", "max_concurrency: 1"),
                    encoding="utf-8")
    config, _, _ = load_project(yaml)
    assert worker_count(config, RunOptions(workers=4), 100) == 1


@pytest.mark.parametrize("how", ["SIGTERM to the command", "Ctrl-C to the whole process group"])
def test_an_interrupted_run_in_workers_keeps_its_rows_and_resumes_to_the_same_results(suite_dir, fake_server,
                                                                                      tmp_path, how):
    fake_server.responder = responder
    write_config(suite_dir, fake_server, samples=6, grader="rules")
    assert main(["run", "--out", "reference", "--workers", "1", "--no-cache"]) == 0
    fake_server.latency = 0.2
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    command = [sys.executable, "-m", "harness", "run", "--out", "cut", "--workers", "2", "--cache-dir",
               str(tmp_path / "cache")]
    proc = subprocess.Popen(command, cwd=suite_dir, env=env, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    results = suite_dir / "cut" / "results.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not results.exists() or results.read_text(encoding="utf-8").count("\n") < 4):
        time.sleep(0.05)
    if how.startswith("SIGTERM"):
        proc.send_signal(signal.SIGTERM)
    else:
        os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == (143 if how.startswith("SIGTERM") else 130), err
    assert "Traceback" not in err and "--resume" in err
    calls_at_exit = fake_server.count
    time.sleep(0.5)
    assert fake_server.count == calls_at_exit                   # no worker left calling the model
    kept = rows_of(suite_dir / "cut")                           # every line whole: the parent alone writes
    assert 4 <= len(kept) < 30
    fake_server.latency = 0.0
    done = subprocess.run(command + ["--resume"], cwd=suite_dir, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    rows = rows_of(suite_dir / "cut")
    assert len(rows) == len({(r["target"], r["case_id"], r["sample"]) for r in rows}) == 30
    assert essence(rows) == essence(rows_of(suite_dir / "reference"))


def test_reports_written_by_several_processes_are_byte_for_byte_those_of_one(suite_dir):
    assert main(["run", "--out", "run", "--workers", "1"]) == 0
    shutil.copytree(suite_dir / "run", suite_dir / "copy")
    pages = ["summary.json"] + [f"{page}.{ext}" for page in ["index", *json.loads(
        (suite_dir / "run" / "summary.json").read_text(encoding="utf-8"))["languages"]] for ext in ("html", "md",
                                                                                                    "png")]
    assert len(pages) > 10
    for name in pages:
        (suite_dir / "copy" / name).unlink()
    rebuild(suite_dir / "copy", workers=3)
    for name in pages:
        assert (suite_dir / "copy" / name).read_bytes() == (suite_dir / "run" / name).read_bytes(), name


def test_the_pages_are_dealt_so_that_one_large_language_has_a_worker_of_its_own():
    from collections import Counter
    from harness.report import page_shares
    pages = ["index", "en", "es", "fr", "pt", "ru"]
    answers = Counter({"en": 800, "es": 60, "fr": 60, "pt": 45, "ru": 35})
    assert page_shares(pages, answers, 2) == [["en"], ["index", "es", "fr", "pt", "ru"]]
    shares = page_shares(pages, Counter({"en": 10, "fr": 10}), 4)
    assert sorted(p for share in shares for p in share) == sorted(pages)      # each page once, none lost
    assert page_shares(["index", "fr"], Counter(), 3) == [["index"], ["fr"], []]


def test_a_worker_interrupted_twice_still_finishes_its_cleanup_and_last_message():
    """One Ctrl-C reaches a worker twice: the terminal sends it to the whole process group, and the parent passes
    it on. The first cancels the worker's run; the second must not cut what the run does on its way out (nor the
    closing of its event loop), so the worker's last messages still reach the parent."""
    from harness.processes import run_interruptible, run_workers

    def child(index: int, send, stopped) -> None:
        async def work() -> None:
            send(("started", os.getpid()))
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                os.kill(os.getpid(), signal.SIGINT)          # the second interrupt, while the run cleans up
                await asyncio.sleep(0.2)
                send(("cleaned up", None))
                raise
        try:
            run_interruptible(work())
        finally:
            send(("last", None))

    received: list[str] = []

    def on_message(message) -> bool:
        received.append(message[0])
        if message[0] == "started":
            os.kill(message[1], signal.SIGINT)               # the first interrupt
        return False

    run_workers(1, child, on_message)
    assert received == ["started", "cleaned up", "last"]
