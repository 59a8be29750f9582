"""Issue 16: max_reply_bytes on batch output (an oversized item is an error of kind too_large, never graded; a huge
output or results file is not read to its end), and the capped transport's choice of HTTP library."""
from __future__ import annotations

import json
import types

import pytest
from fake_batches import FakeBatches
from fake_server import FakeModelServer, FakeReply
from test_batch import _config, _reply, _rows

from harness.cli import main

HUGE = 1_200_000            # over the default max_reply_bytes (1,000,000)


def _huge_for_french(req):
    if not (req.system and "clinical grader" in req.system) and "Mon père" in req.last_user_message:
        return FakeReply(text="x" * HUGE)
    return _reply(req)


def _kinds(rows: list[dict]) -> list[dict]:
    """Rows with each error cut to its kind (the batch path's message says where it came from)."""
    return [r | {"error": r["error"] and r["error"].split(":")[0]} for r in rows]


@pytest.mark.parametrize("api", ["openai", "anthropic"])
def test_an_oversized_batch_item_is_a_too_large_error_as_in_a_synchronous_run(suite_dir, monkeypatch, tmp_path, api):
    monkeypatch.setenv("KEY", "sk-test")
    with FakeModelServer(_huge_for_french, batches=FakeBatches(polls=1)) as server:
        _config(suite_dir, server, api)
        assert main(["run", "--out", "sync", "--cache-dir", str(tmp_path / "c1")]) == 0
        assert main(["run", "--batch", "--out", "batch", "--poll", "0.01", "--cache-dir", str(tmp_path / "c2")]) == 0
        received = server.batches.received
    rows = _rows(suite_dir / "batch")
    failed = [r for r in rows if r["status"] == "error"]
    assert len(failed) == 1 and failed[0]["language"] == "fr"
    assert failed[0]["error"].startswith("too_large:") and "max_reply_bytes" in failed[0]["error"]
    assert failed[0]["answer"] is None and failed[0]["verdicts"] == []          # never graded as text
    assert len(received) == len(set(received))                                   # too_large is not sent again
    assert _kinds(rows) == _kinds(_rows(suite_dir / "sync"))


@pytest.mark.parametrize("api", ["openai", "anthropic"])
@pytest.mark.parametrize("flood,collected", [(60_000, True), (3_000_000, False)])
def test_a_huge_batch_file_is_read_within_the_cap(suite_dir, monkeypatch, tmp_path, api, flood, collected):
    """A junk line over the cap is passed over without being kept; a file longer than the batch's replies may be in
    all (5 x (20,000 + 4,096) bytes + 1 MiB) is not read on: the answers behind the 3 MB line are never reached, and
    are too_large errors rather than a process that reads whatever the server sends."""
    monkeypatch.setenv("KEY", "sk-test")
    with FakeModelServer(_reply, batches=FakeBatches(polls=1, flood=lambda n: flood if n == 1 else 0)) as server:
        _config(suite_dir, server, api, batch=", batch: true, max_reply_bytes: 20000")
        assert main(["run", "--out", "run", "--poll", "0.01", "--cache-dir", str(tmp_path / "c")]) == 0
        assert server.batches.created(api) == (2 if collected else 1)
    rows = _rows(suite_dir / "run")
    if collected:
        assert all(r["status"] == "ok" for r in rows)
    else:
        assert all(r["status"] == "error" and r["error"].startswith("too_large:") for r in rows)
        ledger = [json.loads(l) for l in (suite_dir / "run" / "batches.jsonl").read_text().splitlines()]
        failed = next(r for r in ledger if r["event"] == "collected")["failed"]
        assert len(failed) == 5 and {f["kind"] for f in failed.values()} == {"too_large"}


def _sdk_on(module: str) -> types.SimpleNamespace:
    """A stand-in SDK whose default client derives from `module`'s AsyncClient, as openai and anthropic's do."""
    http = pytest.importorskip(module)
    return types.SimpleNamespace(DefaultAsyncHttpxClient=type("DefaultAsyncHttpxClient", (http.AsyncClient,), {}))


@pytest.mark.parametrize("module", ["httpx", "httpx2"])
def test_the_capped_transport_is_built_on_the_http_library_the_sdk_uses(module):
    from harness.providers.capped import _transport_class, capped_client, http_module
    sdk = _sdk_on(module)
    http = http_module(sdk)
    assert http.__name__ == module
    transport = _transport_class(http)
    assert issubclass(transport, http.AsyncBaseTransport) and _transport_class(http) is transport     # built once
    client = capped_client(sdk, 100)
    assert isinstance(client, sdk.DefaultAsyncHttpxClient) and isinstance(client._transport, transport)


def test_the_installed_sdks_get_a_transport_of_their_own_library():
    import anthropic
    import openai

    from harness.providers.capped import _transport_class, http_module
    for sdk in (openai, anthropic):
        http = http_module(sdk)
        assert issubclass(sdk.DefaultAsyncHttpxClient, http.AsyncClient)
        assert issubclass(_transport_class(http), http.AsyncBaseTransport)
