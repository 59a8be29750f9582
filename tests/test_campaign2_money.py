"""Issue 12, campaign 2: model replies, cost and secrets. The cost ceiling holds, refusals are answers, replies
are bounded, and an API key echoed by a server is never stored or printed. Through the real SDKs, against the
loopback fake server."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from fake_server import FakeReply, FakeRequest
from harness.cli import main
from test_providers import _grader_reply, _target_reply

PRICE_OUT = 20.0          # USD per million output tokens: 15,000 output tokens cost $0.30


def _write_config(suite_dir: Path, server, target: str = "openai", grader: str = "{provider: rules}",
                  extra: str = "", prices: str = "") -> None:
    url = server.openai_base_url if target == "openai" else server.anthropic_base_url
    (suite_dir / "bilan.yaml").write_text(f"""
suite: {{cases: cases, rubrics: rubrics, locale: rubrics/locales/ma.yaml}}
targets:
  - {{name: vendor, provider: {target}, model: m-1, base_url: "{url}", api_key_env: VENDOR_KEY, timeout: 5,
      max_attempts: 2, backoff: 0.01{extra}}}
grader: {grader}
{prices}
""", encoding="utf-8")


def _rows(run_dir: Path) -> list[dict]:
    return [json.loads(l) for l in (run_dir / "results.jsonl").read_text(encoding="utf-8").splitlines() if l.strip()]


def _target_requests(server) -> list[FakeRequest]:
    return [r for r in server.requests if not (r.system and "clinical grader" in r.system)]


# --- 1. --max-cost is a ceiling ------------------------------------------------------------------------------

def test_max_cost_with_an_unpriced_model_is_refused_before_any_call(suite_dir, fake_server, monkeypatch, capsys):
    monkeypatch.setenv("VENDOR_KEY", "sk-test-unpriced")
    grader = f'{{provider: openai, model: judge-1, base_url: "{fake_server.openai_base_url}", api_key_env: VENDOR_KEY}}'
    _write_config(suite_dir, fake_server, grader=grader)
    assert main(["run", "--out", "out", "--max-cost", "1"]) == 2
    err = capsys.readouterr().err
    assert fake_server.count == 0 and "Traceback" not in err
    lines = [l for l in err.splitlines() if "error:" in l]
    assert len(lines) == 2                                       # every problem, the target's and the grader's
    assert "bilan.yaml:4:" in lines[0] and "targets[0].model" in lines[0] and "'m-1'" in lines[0]
    assert "prices:" in lines[0] and "--allow-unpriced" in lines[0]
    assert "grader.model" in lines[1] and "'judge-1'" in lines[1]
    assert main(["run", "--out", "out", "--max-cost", "1", "--allow-unpriced"]) == 0
    assert fake_server.count > 0


def test_replies_longer_than_estimated_stay_under_the_ceiling(suite_dir, fake_server, monkeypatch, capsys):
    # Each reply declares 15,000 output tokens ($0.30) where 1,024 were reserved; four calls in flight at once.
    fake_server.responder = lambda req: FakeReply(_target_reply(req), output_tokens=15000, input_tokens=10)
    monkeypatch.setenv("VENDOR_KEY", "sk-test-ceiling")
    _write_config(suite_dir, fake_server, extra=", samples: 4, max_concurrency: 4",
                  prices=f"prices: {{m-1: {{input: 0, output: {PRICE_OUT}}}}}")
    assert main(["run", "--out", "out", "--max-cost", "1", "--no-cache"]) == 1
    err = capsys.readouterr().err
    paid = len(_target_requests(fake_server)) * 15000 * PRICE_OUT / 1e6
    assert paid <= 1.0                                            # the ceiling held
    assert f"spent ${paid:.4f}" in err                            # and the message says what was spent
    rows = _rows(suite_dir / "out")
    assert len(rows) == len(_target_requests(fake_server))        # every paid answer was kept
    assert main(["run", "--out", "out", "--resume", "--max-cost", "10", "--no-cache"]) == 0


@pytest.mark.parametrize("api", ["openai", "anthropic"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -5])
def test_non_finite_or_negative_usage_is_an_error_never_a_cost(api, bad, suite_dir, fake_server, monkeypatch, capsys):
    def responder(req: FakeRequest):
        if "Mon père" in req.last_user_message:
            return FakeReply(_target_reply(req), output_tokens=bad)
        return _target_reply(req)
    fake_server.responder = responder
    monkeypatch.setenv("VENDOR_KEY", "sk-test-usage")
    _write_config(suite_dir, fake_server, target=api, prices=f"prices: {{m-1: {{input: 1, output: {PRICE_OUT}}}}}")
    main(["run", "--out", "out", "--max-cost", "1", "--no-cache"])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    rows = {r["case_id"]: r for r in _rows(suite_dir / "out")}
    bad_row = rows["chest-pain.fr"]
    assert bad_row["status"] == "error" and bad_row["error"].startswith("usage:") and bad_row["answer"] is None
    assert bad_row["verdicts"] == [] and bad_row["score"] is None
    assert all(r["status"] == "ok" for k, r in rows.items() if k != "chest-pain.fr")
    summary = json.loads((suite_dir / "out" / "summary.json").read_text())["targets"]["vendor"]
    spent = float(re.findall(r"\$([0-9.]+) spent", err)[-1])
    assert 0 < spent < 1 and 0 < summary["cost"]["answers_usd"] < 1
