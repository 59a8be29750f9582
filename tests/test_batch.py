"""Issue 16: batch runs through the real SDKs against the fake batch endpoints: the same rows as a synchronous run,
nothing paid twice across a kill and a resume, partial errors and expiry, batch cost in the estimate and summary."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from fake_batches import FakeBatches
from fake_server import FakeModelServer
from harness.cli import main
from test_providers import _grader_reply, _target_reply, graded_answer

PRICES = "prices: {m-1: {input: 2.0, output: 8.0}, judge-1: {input: 1.0, output: 4.0}}"


def _batched_grader_reply(req) -> str:
    """The rule-following fake grader of test_providers, for a batched prompt: one verdict per listed criterion."""
    prompt = req.messages[-1]["content"]
    answer = graded_answer(prompt)
    listing = prompt.split("CRITERIA (id, points, text):\n", 1)[1].split("\n\n", 1)[0]
    verdicts = [{"id": cid, "explanation": f"judged '{text[:20]}'",
                 "criteria_met": "15" in answer if int(points) > 0 else "911" in answer}
                for cid, points, text in re.findall(r"^- (\S+) \(([-+]\d+) points\): (.*)$", listing, re.MULTILINE)]
    return json.dumps({"verdicts": verdicts})


def _reply(req):
    if req.system and "clinical grader" in req.system:
        return _batched_grader_reply(req) if "CRITERIA (id, points, text):" in req.messages[-1]["content"] \
            else _grader_reply(req)
    return _target_reply(req)


@pytest.fixture
def server():
    with FakeModelServer(_reply, batches=FakeBatches(polls=1)) as s:
        yield s


def _config(suite_dir: Path, server, api: str = "openai", batch: str = "", mode: str = "per_criterion") -> None:
    url = server.openai_base_url if api == "openai" else server.anthropic_base_url
    (suite_dir / "bilan.yaml").write_text(f"""
suite: {{cases: cases, rubrics: rubrics, locale: rubrics/locales/ma.yaml}}
targets:
  - {{name: vendor, provider: {api}, model: m-1, base_url: "{url}", api_key_env: KEY, max_attempts: 1{batch}}}
grader: {{provider: {api}, model: judge-1, base_url: "{url}", api_key_env: KEY, mode: {mode}, max_attempts: 1{batch}}}
seed: 0
{PRICES}
""", encoding="utf-8")


def _rows(run_dir: Path) -> list[dict]:
    rows = [json.loads(l) for l in (run_dir / "results.jsonl").read_text(encoding="utf-8").splitlines()]
    strip = lambda r: {k: v for k, v in r.items() if k != "usage"} | {
        "verdicts": [{k: v for k, v in x.items() if k != "usage"} for x in r["verdicts"]]}
    return sorted((strip(r) for r in rows), key=lambda r: (r["target"], r["case_id"], r["sample"]))


def _fast(monkeypatch):
    import harness.batches as b
    monkeypatch.setattr(b.BatchOptions, "__init__", _fast_init(b.BatchOptions.__init__))


def _fast_init(init):
    def wrapped(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self.poll = 0.01
    return wrapped


@pytest.mark.parametrize("api,mode", [("openai", "per_criterion"), ("anthropic", "per_criterion"),
                                      ("openai", "batched"), ("anthropic", "batched")])
def test_batch_run_has_the_synchronous_rows_and_scores(suite_dir, server, monkeypatch, tmp_path, api, mode):
    monkeypatch.setenv("KEY", "sk-test")
    _fast(monkeypatch)
    _config(suite_dir, server, api, mode=mode)
    assert main(["run", "--out", "sync", "--cache-dir", str(tmp_path / "c1")]) == 0
    sync_calls = server.count
    _config(suite_dir, server, api, ", batch: true", mode=mode)
    assert main(["run", "--out", "batch", "--cache-dir", str(tmp_path / "c2")]) == 0
    assert server.count == sync_calls                  # no synchronous call: every request went in a batch
    assert server.batches.items == sync_calls          # and each exactly once
    assert server.batches.created(api) >= 2            # answers, then grading
    assert _rows(suite_dir / "sync") == _rows(suite_dir / "batch")
    if mode == "batched":                              # one grader call per answer, with all its criteria
        assert sync_calls == 2 * len(_rows(suite_dir / "batch"))
        assert all(v["met"] is not None for r in _rows(suite_dir / "batch") for v in r["verdicts"])
    ledger = [json.loads(l) for l in (suite_dir / "batch" / "batches.jsonl").read_text().splitlines()]
    assert {r["event"] for r in ledger} == {"submitting", "submitted", "state", "collected"}


def test_kill_after_submission_then_resume_sends_nothing_twice(suite_dir, server, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("KEY", "sk-test")
    _fast(monkeypatch)
    server.batches.polls = 10**6                       # the batch never ends while the first process waits
    _config(suite_dir, server, batch=", batch: true")
    cache = ["--cache-dir", str(tmp_path / "c")]
    assert main(["run", "--out", "run", "--no-wait"] + cache) == 1      # submitted, stopped: what a kill leaves
    assert server.batches.created("openai") == 1 and server.batches.items == 0
    assert main(["status", "run"]) == 0
    assert "1 waiting" in capsys.readouterr().out
    server.batches.polls = 1
    assert main(["run", "--out", "run", "--resume"] + cache) == 0
    answers = server.batches.items
    created = server.batches.created("openai")
    posts = [c for c in server.batches.calls if c == ("POST", "/v1/batches")]
    assert len(posts) == created and server.count == 0
    # The answer batch was collected, not resubmitted: each answer request was answered once.
    assert answers == len(_rows(suite_dir / "run")) + sum(len(r["verdicts"]) for r in _rows(suite_dir / "run"))
    # A resume after completion sends nothing.
    before = len(server.batches.calls)
    assert main(["run", "--out", "run", "--resume"] + cache) == 0
    assert server.count == 0 and [c for c in server.batches.calls[before:] if c[0] == "POST"] == []


def test_partial_errors_are_resubmitted_then_recorded_as_errors(suite_dir, server, monkeypatch, tmp_path):
    monkeypatch.setenv("KEY", "sk-test")
    _fast(monkeypatch)
    server.batches.fail = lambda cid, req: 500 if "Mon père" in req.last_user_message and not req.system else None
    server.batches.expire = lambda number: number == 2          # the first grading batch expires: resubmitted
    _config(suite_dir, server, batch=", batch: true")
    assert main(["run", "--out", "run", "--cache-dir", str(tmp_path / "c")]) == 0
    ledger = [json.loads(l) for l in (suite_dir / "run" / "batches.jsonl").read_text().splitlines()]
    sent = [cid for r in ledger if r["event"] == "submitted" for cid in r["custom_ids"]]
    assert max(sent.count(cid) for cid in sent) == 3          # resubmitted, and at most MAX_SUBMISSIONS times
    rows = _rows(suite_dir / "run")
    failed = [r for r in rows if r["status"] == "error"]
    assert failed and all(r["answer"] is None and r["verdicts"] == [] for r in failed)
    assert all("server" in r["error"] or "500" in r["error"] for r in failed)
    ok = [r for r in rows if r["status"] == "ok"]
    assert ok and all(v["met"] is not None for r in ok for v in r["verdicts"])


def test_openai_compatible_server_without_batches_is_refused_before_sending(suite_dir, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("KEY", "sk-test")
    with FakeModelServer(_reply, batches=FakeBatches(openai_api=False)) as server:
        _config(suite_dir, server, batch=", batch: true")
        assert main(["run", "--out", "run", "--cache-dir", str(tmp_path / "c")]) in (1, 2)
        assert server.count == 0 and not any(c[0] == "POST" for c in server.batches.calls)
    err = capsys.readouterr().err
    assert "no usable batch API" in err and "Traceback" not in err


def test_batch_cost_in_the_estimate_and_the_summary(suite_dir, server, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("KEY", "sk-test")
    _fast(monkeypatch)
    _config(suite_dir, server)
    assert main(["run", "--dry-run"]) == 0
    full = capsys.readouterr().err
    _config(suite_dir, server, batch=", batch: true")
    assert main(["run", "--dry-run"]) == 0
    half = capsys.readouterr().err
    total = lambda text: float(text.split("total: $")[1].split()[0])
    assert "batch: half price" in half and total(half) == pytest.approx(total(full) / 2, abs=0.011)
    _config(suite_dir, server)
    assert main(["run", "--out", "sync", "--cache-dir", str(tmp_path / "c1")]) == 0
    assert main(["run", "--out", "batch", "--batch", "--cache-dir", str(tmp_path / "c2")]) == 0
    cost = lambda d: json.loads((suite_dir / d / "summary.json").read_text())["targets"]["vendor"]["cost"]["total_usd"]
    assert cost("batch") == pytest.approx(cost("sync") / 2)


def test_batch_on_a_replay_target_is_a_located_error(suite_dir, capsys):
    text = (suite_dir / "bilan.yaml").read_text().replace("description: Careful", "batch: true, description: Careful")
    (suite_dir / "bilan.yaml").write_text(text)
    assert main(["validate"]) == 2
    err = capsys.readouterr().err
    assert "targets[0].batch" in err and "no batch API" in err


def test_export_for_vllm_then_import_gives_the_synchronous_rows(suite_dir, server, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("KEY", "sk-test")
    _config(suite_dir, server)
    assert main(["run", "--out", "sync", "--cache-dir", str(tmp_path / "c1")]) == 0
    calls = server.count
    cache = ["--cache-dir", str(tmp_path / "c2")]
    for _ in range(4):               # answers, then grading: what `vllm run-batch` would do, done by the fake server
        capsys.readouterr()
        assert main(["batch", "export", "run"] + cache) == 0
        files = sorted((suite_dir / "run" / "requests").glob("*.jsonl"))
        if "nothing to export" in capsys.readouterr().out:
            break
        for f in files:
            out = tmp_path / f"{f.stem}.out.jsonl"
            lines = []
            for line in f.read_text(encoding="utf-8").splitlines():
                item = json.loads(line)
                import openai
                client = openai.OpenAI(base_url=server.openai_base_url, api_key="x", max_retries=0)
                body = client.chat.completions.create(**item["body"]).model_dump()
                lines.append(json.dumps({"custom_id": item["custom_id"], "response": {"status_code": 200, "body": body},
                                         "error": None}))
            out.write_text("\n".join(lines) + "\n", encoding="utf-8")
            assert main(["batch", "import", "run", str(out)] + cache) == 0
            f.unlink()
    assert server.count == 2 * calls
    assert main(["run", "--out", "run2"] + cache) == 0
    assert server.count == 2 * calls                 # everything came from the imported replies
    assert _rows(suite_dir / "sync") == _rows(suite_dir / "run2")


def test_a_request_too_large_for_a_batch_is_reported_before_anything_is_sent(suite_dir, server, monkeypatch, tmp_path,
                                                                             capsys):
    monkeypatch.setenv("KEY", "sk-test")
    from harness.providers.batch import OpenAIBatches
    monkeypatch.setattr(OpenAIBatches, "max_bytes", 200)
    _config(suite_dir, server, batch=", batch: true")
    assert main(["run", "--out", "run", "--cache-dir", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert "more than a batch may hold" in err and "Traceback" not in err
    assert server.count == 0 and not any(c[0] == "POST" for c in server.batches.calls)


def test_max_cost_stops_before_submitting_a_batch_that_could_pass_it(suite_dir, server, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("KEY", "sk-test")
    _config(suite_dir, server, batch=", batch: true")
    cache = ["--cache-dir", str(tmp_path / "c"), "--poll", "0.01"]
    # Above the estimate (the run starts) and the answers' reservation, below what the 23 grader requests may
    # cost at half price with their max_tokens (their reservation).
    assert main(["run", "--out", "run", "--max-cost", "0.04"] + cache) == 1
    err = capsys.readouterr().err
    assert "cost ceiling reached: the next batch (23 requests to judge-1" in err and "it was not submitted" in err
    assert "at batch prices, x0.5" in err and "--max-cost $0.04" in err
    reserved = float(err.split("up to $")[1].split()[0])
    spent = float(err.split("; spent $")[1].split()[0])
    assert spent <= 0.04 < spent + reserved
    assert server.batches.created("openai") == 1 and len(server.batches.received) == 5      # the answers only
    ledger = [json.loads(l) for l in (suite_dir / "run" / "batches.jsonl").read_text().splitlines()]
    assert [r["endpoint"] for r in ledger if r["event"] == "submitting"] == ["vendor"]
    assert main(["run", "--out", "run", "--resume", "--max-cost", "1"] + cache) == 0
    received = server.batches.received
    assert len(received) == len(set(received)) and server.count == 0
    assert all(r["status"] == "ok" for r in _rows(suite_dir / "run"))


@pytest.mark.parametrize("api,batch_id,states", [
    ("openai", "batch_0001", [("validating", "total 5, completed 0, failed 0"),
                              ("in_progress", "total 5, completed 0, failed 0"),
                              ("finalizing", "total 5, completed 5, failed 0"),
                              ("completed", "total 5, completed 5, failed 0")]),
    ("anthropic", "msgbatch_0001", [("in_progress", "processing 5, succeeded 0, errored 0, canceled 0, expired 0"),
                                    ("ended", "processing 0, succeeded 5, errored 0, canceled 0, expired 0")])])
def test_progress_lines_and_status_show_each_state_and_counts(suite_dir, server, monkeypatch, tmp_path, capsys, api,
                                                              batch_id, states):
    monkeypatch.setenv("KEY", "sk-test")
    _config(suite_dir, server, api, batch=", batch: true")
    cache = ["--cache-dir", str(tmp_path / "c"), "--poll", "0.01"]
    server.batches.held.add(1)
    assert main(["run", "--out", "run", "--no-wait"] + cache) == 1
    first = capsys.readouterr().err
    assert main(["status", "run"]) == 0
    waiting = capsys.readouterr().out
    assert f"batch {batch_id} (vendor): 5 requests, submitted, waiting; {states[0][0]} ({states[0][1]}) at " in waiting
    server.batches.held.clear()
    assert main(["run", "--out", "run", "--resume"] + cache) == 0
    lines = [line for line in (first + capsys.readouterr().err).splitlines()
             if line.startswith(f"bilan: batch {batch_id} (vendor): ") and "submitted" not in line]
    assert lines == [f"bilan: batch {batch_id} (vendor): {status} ({counts})" for status, counts in states]
    assert main(["status", "run"]) == 0
    done = capsys.readouterr().out
    assert f"batch {batch_id} (vendor): 5 requests, collected; {states[-1][0]} ({states[-1][1]}) at " in done
    assert "0 waiting; 0 requests failed for good; 5 results written" in done
