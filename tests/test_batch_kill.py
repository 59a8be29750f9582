"""Issue 16: `bilan run --batch` killed with SIGKILL at every phase, then `bilan run --resume`: no request is sent in a
batch twice, no answer is paid twice, and the rows and scores are the synchronous run's.

The fake batch endpoints hold a batch where it stands (in progress, results download, the reply to the create call)
until the test releases it, and say when the client has got there: each kill lands at a known point, not after a
guessed delay."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fake_batches import FakeBatches
from fake_server import FakeModelServer
from test_batch import _config, _rows
from test_providers import _grader_reply, _target_reply

from harness.cli import main


def _reply(req):
    """The test_batch fake, except that some grader prompts are answered with no verdict the first time they are
    seen: the grader's parse retries are a third round of batches."""
    if req.system and "clinical grader" in req.system:
        if req.attempt == 0 and hashlib.sha256(req.messages[-1]["content"].encode()).digest()[0] % 3 == 0:
            return "I would rather not say."
        return _grader_reply(req)
    return _target_reply(req)


def _until(predicate, process: subprocess.Popen, log: Path, what: str) -> None:
    """Wait for the child to reach a point (the fake server says so); a generous bound only turns a hang into a
    failure, nothing is timed."""
    deadline = time.monotonic() + 120
    while not predicate():
        if process.poll() is not None:
            pytest.fail(f"bilan exited ({process.returncode}) before {what}:\n{log.read_text()}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"bilan never reached {what}:\n{log.read_text()}")
        time.sleep(0.02)


# Where the kill lands: (hold on the fake server, the point the child must have reached).
PHASES = {
    "uploading answers": (lambda b: b.held_upload.add(1), lambda b: ("upload", 1) in b.waiting),
    "submitting answers": (lambda b: b.held_create.add(1), lambda b: ("create", 1) in b.waiting),
    "answers submitted": (lambda b: b.held.add(1), lambda b: b.reads(1) >= 1),
    "grading submitted": (lambda b: b.held.add(2), lambda b: b.reads(2) >= 1),
    "retries submitted": (lambda b: b.held.add(3), lambda b: b.reads(3) >= 1),
    "retries ended, results not read": (lambda b: b.held_results.add(3), lambda b: ("results", 3) in b.waiting),
}


@pytest.mark.parametrize("api,phase", [("openai", p) for p in PHASES] +
                         [("anthropic", p) for p in ("submitting answers", "grading submitted",
                                                     "retries ended, results not read")])
def test_a_kill_at_every_phase_then_resume_pays_nothing_twice(suite_dir, monkeypatch, tmp_path, api, phase):
    monkeypatch.setenv("KEY", "sk-test")
    with FakeModelServer(_reply, batches=FakeBatches(polls=1)) as server:
        _config(suite_dir, server, api)
        assert main(["run", "--out", "sync", "--cache-dir", str(tmp_path / "c1")]) == 0
        calls = server.count
        server.reset()
        hold, reached = PHASES[phase]
        hold(server.batches)
        cache = ["--cache-dir", str(tmp_path / "c2"), "--poll", "0.01"]
        log = tmp_path / "bilan.log"
        with open(log, "wb") as err:
            child = subprocess.Popen([sys.executable, "-m", "harness", "run", "--batch", "--out", "run"] + cache,
                                     cwd=suite_dir, env=os.environ | {"KEY": "sk-test"}, stdout=err, stderr=err)
            try:
                _until(lambda: reached(server.batches), child, log, phase)
            finally:
                child.send_signal(signal.SIGKILL)
                child.wait()
        assert not (suite_dir / "run" / "summary.json").exists()
        for held in (server.batches.held, server.batches.held_results, server.batches.held_create,
                     server.batches.held_upload):
            held.clear()
        assert main(["run", "--batch", "--out", "run", "--resume"] + cache) == 0, log.read_text()
        received = server.batches.received
        assert len(received) == len(set(received)), "a request was sent in a batch twice"
        assert len(received) == calls and server.batches.items == calls     # each answer and verdict paid once
        assert server.count == 0                                             # nothing went the synchronous way
        assert server.batches.created(api) == 3                              # answers, grading, parse retries
    assert _rows(suite_dir / "sync") == _rows(suite_dir / "run")
    scores = lambda d: {k: v for k, v in json.loads((suite_dir / d / "summary.json").read_text())["targets"]["vendor"]
                        .items() if k not in ("cost", "usage", "latency")}
    assert scores("sync") == scores("run")
