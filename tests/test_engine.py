"""The run engine: response cache, crash-safe resume, samples, shards, error and cost ceilings, retries and
rate limits. Through the CLI and the real SDKs against the fake server, as a user would run it."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fake_server import FakeReply
from harness.cli import main
from harness.errors import PermanentError, TransientError
from harness.providers.base import RateLimiter, RetryPolicy, call_with_retry
from test_providers import responder

ROOT = Path(__file__).resolve().parent.parent


def write_config(suite_dir: Path, server, samples: int = 1, extra: str = "", grader: str = "openai") -> None:
    (suite_dir / "bilan.yaml").write_text(f"""
suite: {{cases: cases, rubrics: rubrics, locale: rubrics/locales/ma.yaml}}
targets:
  - {{name: vendor, provider: openai, model: m-1, base_url: "{server.openai_base_url}", max_concurrency: 4,
      timeout: 10, max_attempts: 3, samples: {samples}{extra}}}
grader: {{provider: {grader}, model: judge-1, base_url: "{server.openai_base_url}", timeout: 10, max_attempts: 3,
          max_concurrency: 8}}
prices: {{m-1: {{input: 1.0, output: 2.0}}, judge-1: {{input: 2.0, output: 8.0}}}}
""", encoding="utf-8")


def rows_of(run_dir: Path) -> list[dict]:
    return [json.loads(l) for l in (run_dir / "results.jsonl").read_text(encoding="utf-8").splitlines()]


def essence(rows: list[dict]) -> dict:
    """What must be identical between runs: answers, verdicts and scores (not latencies or cache flags)."""
    return {(r["target"], r["case_id"], r["sample"]): (r["answer"], r["score"], [(v["id"],
                                                                                  v["met"]) for v in r["verdicts"]])
            for r in rows}


def test_unchanged_rerun_makes_no_calls_and_one_changed_criterion_regrades_only_it(suite_dir, fake_server):
    fake_server.responder = responder
    write_config(suite_dir, fake_server)
    assert main(["run", "--out", "first"]) == 0
    first_calls = fake_server.count
    assert first_calls > 0
    assert main(["run", "--out", "second"]) == 0
    assert fake_server.count == first_calls                       # zero calls
    assert essence(rows_of(suite_dir / "second")) == essence(rows_of(suite_dir / "first"))
    summary = json.loads((suite_dir / "second" / "summary.json").read_text())
    assert summary["targets"]["vendor"]["cost"]["total_usd"] > 0  # cached calls still carry their token counts

    rubric = suite_dir / "rubrics" / "heat.yaml"
    rubric.write_text(rubric.read_text().replace("cool him with water.", "cool him with cool water."), encoding="utf-8")
    assert main(["run", "--out", "third"]) == 0
    new = [r for r in fake_server.requests[first_calls:]]
    assert len(new) == 2                                          # one criterion x the two heat-stroke cases
    assert all("cool him with cool water" in r.messages[-1]["content"] for r in new)

    assert main(["run", "--out", "fourth", "--no-cache"]) == 0
    assert fake_server.count == first_calls + 2 + first_calls


def test_samples_draw_distinct_answers(suite_dir, fake_server):
    fake_server.responder = responder
    write_config(suite_dir, fake_server, samples=3, grader="rules")
    assert main(["run", "--out", "out"]) == 0
    rows = rows_of(suite_dir / "out")
    assert sorted({r["sample"] for r in rows}) == [0, 1, 2] and len(rows) == 15
    assert fake_server.count == 15                                # each sample is its own call (and cache entry)


def test_kill_minus_nine_then_resume_gives_the_same_results(suite_dir, fake_server, tmp_path):
    fake_server.responder = responder
    write_config(suite_dir, fake_server, samples=4)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    reference = suite_dir / "reference"
    assert main(["run", "--out", str(reference), "--no-cache"]) == 0
    paid = fake_server.count
    fake_server.reset()
    fake_server.latency = 0.15
    # The run's last call gets no answer while the run is alive, so the kill lands mid-run however slow or loaded
    # the machine is (the poll below is a bounded wait, and `written < 20` no race against the clock).
    fake_server.responder = lambda request: FakeReply(hang=True) if fake_server.count >= paid else responder(request)
    cache = tmp_path / "kill-cache"
    command = [sys.executable, "-m", "harness", "run", "--out", "killed", "--cache-dir", str(cache)]
    proc = subprocess.Popen(command, cwd=suite_dir, env=env, stderr=subprocess.DEVNULL)
    results = suite_dir / "killed" / "results.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not results.exists() or results.read_text(encoding="utf-8").count("\n") < 5):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    written = results.read_text(encoding="utf-8").count("\n")
    assert 5 <= written < 20
    with open(results, "a", encoding="utf-8") as f:           # a torn last line, as a crash mid-write leaves
        f.write('{"target": "vendor", "case_id": "chest-pa')
    fake_server.latency, fake_server.responder = 0.0, responder
    calls_before_resume = fake_server.count
    done = subprocess.run(command + ["--resume"], cwd=suite_dir, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    rows = rows_of(suite_dir / "killed")
    keys = [(r["target"], r["case_id"], r["sample"]) for r in rows]
    assert len(keys) == len(set(keys)) == 20                    # no duplicate, no missing row
    assert essence(rows) == essence(rows_of(reference))
    assert calls_before_resume + (fake_server.count - calls_before_resume) <= paid + 40   # nothing redone wholesale
    resumed_calls = fake_server.count - calls_before_resume
    assert resumed_calls <= paid - sum(1 + len(r["verdicts"]) for r in rows[:written]) + 40


def test_shards_merge_into_the_same_summary_as_one_run(suite_dir):
    assert main(["run", "--out", "whole"]) == 0
    assert main(["run", "--out", "s1", "--shard", "1/2"]) == 0
    assert main(["run", "--out", "s2", "--shard", "2/2"]) == 0
    assert 0 < len(rows_of(suite_dir / "s1")) < 10
    assert main(["merge", "merged", "s1", "s2"]) == 0
    whole = json.loads((suite_dir / "whole" / "summary.json").read_text())
    merged = json.loads((suite_dir / "merged" / "summary.json").read_text())
    assert merged["targets"] == whole["targets"]


def test_error_budget_stops_a_failing_run_cleanly(suite_dir, fake_server, capsys):
    fake_server.responder = lambda req: FakeReply(status=401, text="invalid key")
    write_config(suite_dir, fake_server, samples=6, grader="rules")
    assert main(["run", "--out", "out", "--max-error-rate", "0.3"]) == 1
    err = capsys.readouterr().err
    assert "more than --max-error-rate 0.3" in err and "request refused (401)" in err and "--resume" in err
    assert 20 <= len(rows_of(suite_dir / "out")) < 30


def test_dry_run_and_cost_ceiling_call_nothing(suite_dir, fake_server, capsys):
    fake_server.responder = responder
    write_config(suite_dir, fake_server)
    assert main(["run", "--out", "out", "--dry-run"]) == 0
    err = capsys.readouterr().err
    assert "vendor (m-1): 5 calls" in err and "grader:judge-1 (judge-1): 23 calls" in err
    assert main(["run", "--out", "out", "--max-cost", "0.000001"]) == 1
    assert "not starting" in capsys.readouterr().err
    assert fake_server.count == 0


def test_cost_ceiling_stops_mid_run(suite_dir, fake_server, capsys):
    fake_server.responder = responder
    write_config(suite_dir, fake_server, samples=20, extra=", max_tokens: 1", grader="rules")
    # The estimate assumes 1-token answers, so it starts; real replies are longer and the ceiling is reached.
    assert main(["run", "--out", "out", "--max-cost", "0.0029"]) == 1
    assert "cost ceiling reached" in capsys.readouterr().err


def test_retry_policy_is_bounded_and_honours_retry_after():
    sleeps: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    attempts = []

    async def always_429():
        attempts.append(1)
        raise TransientError("rate limited", kind="rate_limit", status=429, retry_after=7)

    with pytest.raises(TransientError, match="gave up after 3 attempts"):
        asyncio.run(call_with_retry(always_429, RetryPolicy(max_attempts=3), sleep=fake_sleep))
    assert len(attempts) == 3 and sleeps == [7, 7]

    async def permanent():
        attempts.append(1)
        raise PermanentError("bad request", kind="bad_request", status=400)

    attempts.clear()
    with pytest.raises(PermanentError):
        asyncio.run(call_with_retry(permanent, RetryPolicy(max_attempts=5), sleep=fake_sleep))
    assert len(attempts) == 1

    sleeps.clear()

    async def server_error():
        raise TransientError("server", kind="server", status=500)
    with pytest.raises(TransientError):
        asyncio.run(call_with_retry(server_error, RetryPolicy(max_attempts=4, base_delay=1, max_delay=3),
                                    sleep=fake_sleep))
    assert len(sleeps) == 3 and all(0 <= s <= bound for s, bound in zip(sleeps, [1, 2, 3]))


def test_rate_limiter_spaces_requests_and_tokens():
    now = [0.0]

    async def fake_sleep(seconds: float) -> None:
        now[0] += seconds

    limiter = RateLimiter(requests_per_minute=6, tokens_per_minute=600, clock=lambda: now[0], sleep=fake_sleep)

    async def acquire(n: int, tokens: int) -> None:
        for _ in range(n):
            await limiter.acquire(tokens)

    asyncio.run(acquire(6, 10))
    assert now[0] == pytest.approx(0.0)                 # a full bucket: the first minute's six requests at once
    asyncio.run(acquire(1, 10))
    assert now[0] == pytest.approx(10.0)                # then one request every ten seconds
    asyncio.run(acquire(1, 600))                         # the next request slot, ten seconds on, has 600 tokens
    assert now[0] == pytest.approx(20.0)
    asyncio.run(acquire(1, 300))                         # the token bucket is empty: 10 tokens a second
    assert now[0] == pytest.approx(50.0)


def test_a_run_the_cache_answers_never_imports_an_sdk(tmp_path):
    """The provider of a model endpoint is made on its first call: a cached re-run imports no SDK (issue 14)."""
    import subprocess
    import sys
    probe = ("import sys, asyncio\n"
             "from harness.providers.endpoints import make_endpoint\n"
             "from harness.types import EndpointConfig\n"
             "cfg = EndpointConfig(name='t', provider='openai', model='m', base_url='http://127.0.0.1:9/v1')\n"
             "endpoint = make_endpoint(cfg, {}, {'t': 'k'}, 0)\n"
             "print('openai' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=tmp_path)
    assert out.stdout.strip() == "False", out.stdout + out.stderr
