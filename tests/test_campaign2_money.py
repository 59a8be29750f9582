"""Issue 12, campaign 2: model replies, cost and secrets. The cost ceiling holds, refusals are answers, replies
are bounded, and an API key echoed by a server is never stored or printed. Through the real SDKs, against the
loopback fake server."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from fake_server import FakeReply, FakeRequest, key_echo_reply
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


# --- 5. an API key echoed by a server is never stored or printed ------------------------------------------

TARGET_KEY, GRADER_KEY = "sk-test-Vq7Lm3Xp9Rt2Wz8Kd4Hn", "sk-ant-test-Pw3Zk8Ry5Tq1Mx6Jc2Gb"


def _leaks(text: str) -> list[str]:
    forms = [k[:12] for k in (TARGET_KEY, GRADER_KEY)] + [k[-4:] for k in (TARGET_KEY, GRADER_KEY)]
    forms += [k[:8] + "*" for k in (TARGET_KEY, GRADER_KEY)]
    return [f for f in forms if f in text]


def _assert_no_leak(folder: Path, printed: str) -> None:
    assert _leaks(printed) == []
    files = [f for f in folder.rglob("*") if f.is_file()]
    assert files
    for file in files:
        assert _leaks(file.read_bytes().decode("utf-8", "replace")) == [], file


@pytest.mark.parametrize("target,grader", [("openai", "anthropic"), ("anthropic", "openai")])
def test_a_key_echoed_in_a_401_is_hidden_everywhere(target, grader, suite_dir, fake_server, monkeypatch, capfd):
    def responder(req: FakeRequest):
        if req.system and "clinical grader" in req.system:
            return key_echo_reply(req) if "ⵜ" in req.last_user_message else _grader_reply(req)
        return key_echo_reply(req) if "Mon père" in req.last_user_message else _target_reply(req)
    fake_server.responder = responder
    monkeypatch.setenv("VENDOR_KEY", TARGET_KEY)
    monkeypatch.setenv("GRADER_KEY", GRADER_KEY)
    url = {"openai": fake_server.openai_base_url, "anthropic": fake_server.anthropic_base_url}
    grader_cfg = (f'{{provider: {grader}, model: judge-1, base_url: "{url[grader]}", api_key_env: GRADER_KEY, '
                  'max_attempts: 2}')
    _write_config(suite_dir, fake_server, target=target, grader=grader_cfg)
    assert main(["run", "--out", "out"]) == 0
    printed = capfd.readouterr()
    rows = {r["case_id"]: r for r in _rows(suite_dir / "out")}
    assert rows["chest-pain.fr"]["status"] == "error" and "[api key hidden]" in rows["chest-pain.fr"]["error"]
    tifinagh = [r for r in rows.values() if r["language"] == "zgh-Tfng"]
    assert tifinagh and all(v["error"] and "[api key hidden]" in v["error"] for r in tifinagh for v in r["verdicts"])
    heard = " ".join(v for r in fake_server.requests for v in r.headers.values())
    assert TARGET_KEY in heard and GRADER_KEY in heard                  # both keys were sent ...
    _assert_no_leak(suite_dir, printed.out + printed.err)              # ... and shown nowhere


def test_the_error_budget_stop_line_hides_the_key(suite_dir, fake_server, monkeypatch, capfd):
    fake_server.responder = key_echo_reply
    monkeypatch.setenv("VENDOR_KEY", TARGET_KEY)
    _write_config(suite_dir, fake_server, extra=", samples: 10")
    assert main(["run", "--out", "out"]) == 1
    printed = capfd.readouterr()
    assert "more than --max-error-rate" in printed.err and "last error: refused: request refused (401)" in printed.err
    assert "[api key hidden]" in printed.err
    _assert_no_leak(suite_dir, printed.out + printed.err)


# --- 2. a refusal is an answer, marked, graded and counted per language -------------------------------------

REFUSAL = "I can't help with medical emergencies."


@pytest.mark.parametrize("api", ["openai", "anthropic"])
def test_a_refusal_is_kept_graded_and_counted_per_language(api, suite_dir, fake_server, monkeypatch):
    def responder(req: FakeRequest):
        if req.system and "clinical grader" in req.system:
            return _grader_reply(req)
        if "Mon père" in req.last_user_message:
            return FakeReply(refusal=REFUSAL)
        return _target_reply(req)
    fake_server.responder = responder
    monkeypatch.setenv("VENDOR_KEY", "sk-test-refusal-0001")
    url = {"openai": fake_server.openai_base_url, "anthropic": fake_server.anthropic_base_url}
    grader_cfg = f'{{provider: {api}, model: judge-1, base_url: "{url[api]}", api_key_env: VENDOR_KEY}}'
    _write_config(suite_dir, fake_server, target=api, grader=grader_cfg)
    for attempt in ("live", "cached"):                               # a cached refusal is still a refusal
        out = suite_dir / attempt
        assert main(["run", "--out", str(out)]) == 0
        rows = {r["case_id"]: r for r in _rows(out)}
        refused = rows["chest-pain.fr"]
        assert refused["status"] == "ok" and refused["refusal"] is True and refused["answer"] == REFUSAL
        assert refused["graded"] == len(refused["verdicts"]) > 0 and refused["score"] is not None
        assert graded_answer_seen(fake_server, REFUSAL)               # the grader judged the refusal's text
        assert refused["score"] < rows["chest-pain.ary-Arab"]["score"]  # refusing chest pain scores low
        assert all(r["refusal"] is False for k, r in rows.items() if k != "chest-pain.fr")
        summary = json.loads((out / "summary.json").read_text())
        assert summary["refusals"]["vendor"]["fr"] == {"rate": 1.0, "count": 1, "n": 1}
        assert summary["refusals"]["vendor"]["ary-Arab"] == {"rate": 0.0, "count": 0, "n": 1}
        assert summary["targets"]["vendor"]["refusals"] == {"rate": 0.2, "count": 1, "n": 5}
        assert "Refusals" in (out / "index.html").read_text(encoding="utf-8")
    assert sum(1 for r in _target_requests(fake_server) if "Mon père" in r.last_user_message) == 1


def graded_answer_seen(server, text: str) -> bool:
    return any(text in r.last_user_message for r in server.requests if r.system and "clinical grader" in r.system)


# --- 4. replies are bounded --------------------------------------------------------------------------------

@pytest.mark.parametrize("api", ["openai", "anthropic"])
def test_an_endless_or_huge_reply_is_an_error_of_its_kind_and_resumable(api, suite_dir, fake_server, monkeypatch):
    def oversized(req: FakeRequest):
        if "Mon père" in req.last_user_message:
            return FakeReply(endless=True)
        if "ⵜ" in req.last_user_message:
            return "Appelez le 15. " * 20000                       # 300 KB, over this endpoint's cap
        return _target_reply(req)
    fake_server.responder = oversized
    monkeypatch.setenv("VENDOR_KEY", "sk-test-oversized")
    _write_config(suite_dir, fake_server, target=api, extra=", max_reply_bytes: 100000")
    assert main(["run", "--out", "out"]) == 0
    rows = {r["case_id"]: r for r in _rows(suite_dir / "out")}
    for case in ("chest-pain.fr", "heat-stroke.zgh-Tfng"):
        row = rows[case]
        assert row["status"] == "error" and row["answer"] is None and row["verdicts"] == []
        assert row["error"].startswith("too_large:") and "max_reply_bytes" in row["error"]
    assert sum(r["status"] == "ok" for r in rows.values()) == 3
    fake_server.responder = _target_reply
    assert main(["run", "--out", "out", "--resume"]) == 0
    assert all(r["status"] == "ok" for r in _rows(suite_dir / "out"))


def test_the_default_reply_cap_is_one_megabyte(suite_dir, fake_server, monkeypatch):
    fake_server.responder = (lambda req: ("Appelez le 15. " * 70000) if "Mon père" in req.last_user_message
                             else _target_reply(req))
    monkeypatch.setenv("VENDOR_KEY", "sk-test-oversized")
    _write_config(suite_dir, fake_server)
    assert main(["run", "--out", "out"]) == 0
    rows = {r["case_id"]: r for r in _rows(suite_dir / "out")}
    assert rows["chest-pain.fr"]["error"].startswith("too_large:")


def test_language_detection_reads_a_bounded_prefix():
    from harness.langid import identify
    french = "Appelez le 15 tout de suite. " * 400                     # 11,600 characters
    assert identify(french + "ⵜⵉⵢⵜⵉ ⵏ ⵜⴰⴼⵓⴽⵜ " * 20000) == identify(french)


# --- 3. the estimate follows the grader's mode ---------------------------------------------------------------

def test_the_estimate_counts_one_batched_grader_call_per_answer(suite_dir, fake_server, monkeypatch, capsys):
    monkeypatch.setenv("VENDOR_KEY", "sk-test-batched")
    grader = (f'{{provider: openai, model: judge-1, base_url: "{fake_server.openai_base_url}", api_key_env: '
              'VENDOR_KEY, mode: batched}')
    _write_config(suite_dir, fake_server, grader=grader,
                  prices="prices: {m-1: {input: 0, output: 0}, judge-1: {input: 100, output: 0}}")
    assert main(["run", "--dry-run"]) == 0
    err = capsys.readouterr().err
    assert "grader:judge-1 (judge-1): 5 calls" in err                 # one call per answer, all criteria in it
    batched = float(re.search(r"total: \$([0-9.]+)", err).group(1))
    _write_config(suite_dir, fake_server, grader=grader.replace("batched", "per_criterion"),
                  prices="prices: {m-1: {input: 0, output: 0}, judge-1: {input: 100, output: 0}}")
    assert main(["run", "--dry-run"]) == 0
    per_criterion = float(re.search(r"total: \$([0-9.]+)", capsys.readouterr().err).group(1))
    assert batched < per_criterion / 2
    ceiling = (batched + per_criterion) / 2                            # fits batched, not per criterion
    assert main(["run", "--out", "refused", "--max-cost", f"{ceiling:.2f}"]) == 1 and fake_server.count == 0
    _write_config(suite_dir, fake_server, grader=grader,
                  prices="prices: {m-1: {input: 0, output: 0}, judge-1: {input: 100, output: 0}}")
    assert main(["run", "--out", "out", "--max-cost", f"{ceiling:.2f}"]) == 0 and fake_server.count > 0
