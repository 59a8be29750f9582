"""Tests of the fake model server, driven by the real openai and anthropic SDK clients."""

from __future__ import annotations

import asyncio
import http.client
import json
import subprocess
import sys
from pathlib import Path
from typing import Any
from collections.abc import Callable, Iterator

import anthropic
import openai
import pytest

try:  # tests/ may or may not be a package, depending on how pytest is run
    from tests.fake_server import FakeModelServer, FakeReply, FakeRequest, echo_responder
except ImportError:  # pragma: no cover
    from fake_server import FakeModelServer, FakeReply, FakeRequest, echo_responder

API_KEY = "sk-test-secret-key-123"
SDKS = ["openai", "anthropic"]
SDK_MODULES: dict[str, Any] = {"openai": openai, "anthropic": anthropic}


@pytest.fixture
def make_server() -> Iterator[Callable[..., FakeModelServer]]:
    """Factory for started servers, all stopped at teardown."""
    servers: list[FakeModelServer] = []

    def factory(responder: Callable[..., Any] = echo_responder, **kwargs: Any) -> FakeModelServer:
        server = FakeModelServer(responder, **kwargs).start()
        servers.append(server)
        return server

    yield factory
    for server in servers:
        server.stop()


def sync_client(sdk: str, server: FakeModelServer, timeout: float = 5.0, retries: int = 0) -> Any:
    """A real sync SDK client pointed at the fake server."""
    if sdk == "openai":
        return openai.OpenAI(base_url=server.openai_base_url, api_key=API_KEY,
                             max_retries=retries, timeout=timeout)
    return anthropic.Anthropic(base_url=server.anthropic_base_url, api_key=API_KEY,
                               max_retries=retries, timeout=timeout)


def async_client(sdk: str, server: FakeModelServer, timeout: float = 5.0) -> Any:
    """A real async SDK client pointed at the fake server."""
    if sdk == "openai":
        return openai.AsyncOpenAI(base_url=server.openai_base_url, api_key=API_KEY,
                                  max_retries=0, timeout=timeout)
    return anthropic.AsyncAnthropic(base_url=server.anthropic_base_url, api_key=API_KEY,
                                    max_retries=0, timeout=timeout)


def ask(sdk: str, client: Any, text: str, system: str | None = None, **kwargs: Any) -> str:
    """Send one user message (and optional system prompt) and return the reply text."""
    if sdk == "openai":
        messages = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": text}]
        completion = client.chat.completions.create(model="fake-gpt", messages=messages, **kwargs)
        return completion.choices[0].message.content
    extra = {"system": system} if system else {}
    message = client.messages.create(model="fake-claude", max_tokens=64,
                                     messages=[{"role": "user", "content": text}], **extra, **kwargs)
    return message.content[0].text


# ----- round trips ---------------------------------------------------------------------------


def test_openai_sync_round_trip(make_server: Callable[..., FakeModelServer]) -> None:
    server = make_server(lambda r: f"[{r.system}] {r.model}: {r.last_user_message}")
    with sync_client("openai", server) as client:
        completion = client.chat.completions.create(
            model="fake-gpt",
            messages=[
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Salam"},
                {"role": "assistant", "content": "Salam!"},
                {"role": "user", "content": "Kayn chi tbib?"},
            ],
            temperature=0.0, seed=7, max_completion_tokens=50,
            response_format={"type": "json_object"},
        )
    assert completion.object == "chat.completion"
    assert completion.model == "fake-gpt"
    assert completion.id.startswith("chatcmpl-")
    choice = completion.choices[0]
    assert choice.finish_reason == "stop"
    assert choice.message.role == "assistant"
    assert choice.message.content == "[Be brief.] fake-gpt: Kayn chi tbib?"
    usage = completion.usage
    assert usage.prompt_tokens >= 1 and usage.completion_tokens >= 1
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens

    (request,) = server.requests
    assert request.api == "openai" and request.path == "/v1/chat/completions"
    assert request.system == "Be brief."
    assert [m["role"] for m in request.messages] == ["user", "assistant", "user"]
    assert request.params == {"temperature": 0.0, "seed": 7, "max_completion_tokens": 50,
                              "response_format": {"type": "json_object"}}
    assert request.body["model"] == "fake-gpt"
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    assert request.attempt == 0


def test_anthropic_sync_round_trip(make_server: Callable[..., FakeModelServer]) -> None:
    server = make_server(lambda r: f"[{r.system}] {r.model}: {r.last_user_message}")
    with sync_client("anthropic", server) as client:
        # anthropic 2.x's messages.create() has no `temperature` argument: it goes via extra_body
        message = client.messages.create(
            model="fake-claude", max_tokens=100, system="Be brief.", stop_sequences=["END"],
            messages=[{"role": "user", "content": "Salam"}], extra_body={"temperature": 0.0},
        )
    assert message.type == "message" and message.role == "assistant"
    assert message.model == "fake-claude"
    assert message.id.startswith("msg_")
    assert message.stop_reason == "end_turn"
    assert message.content[0].type == "text"
    assert message.content[0].text == "[Be brief.] fake-claude: Salam"
    assert message.usage.input_tokens >= 1 and message.usage.output_tokens >= 1

    (request,) = server.requests
    assert request.api == "anthropic" and request.path == "/v1/messages"
    assert request.system == "Be brief."
    assert request.messages == [{"role": "user", "content": "Salam"}]
    assert request.params == {"max_tokens": 100, "stop_sequences": ["END"], "temperature": 0.0}
    # anthropic 2.x sends the key as "authorization: Bearer ..."; older SDKs used x-api-key
    assert API_KEY in request.headers.get("x-api-key", request.headers.get("authorization", ""))
    assert "anthropic-version" in request.headers


@pytest.mark.parametrize("sdk", SDKS)
def test_async_round_trip(make_server: Callable[..., FakeModelServer], sdk: str) -> None:
    server = make_server()

    async def main() -> str:
        async with async_client(sdk, server) as client:
            if sdk == "openai":
                completion = await client.chat.completions.create(
                    model="m", messages=[{"role": "system", "content": "sys"},
                                         {"role": "user", "content": "hello"}])
                return completion.choices[0].message.content
            message = await client.messages.create(
                model="m", max_tokens=10, system="sys", messages=[{"role": "user", "content": "hello"}])
            return message.content[0].text

    assert asyncio.run(main()) == "You said: hello"
    assert server.requests[0].system == "sys"


def test_content_parts_and_system_blocks_are_flattened(make_server: Callable[..., FakeModelServer]) -> None:
    server = make_server()
    with sync_client("openai", server) as client:
        client.chat.completions.create(model="m", messages=[
            {"role": "developer", "content": "dev rules"},
            {"role": "user", "content": [{"type": "text", "text": "part one"},
                                         {"type": "text", "text": "part two"}]},
        ])
    with sync_client("anthropic", server) as client:
        client.messages.create(
            model="m", max_tokens=10,
            system=[{"type": "text", "text": "block a"}, {"type": "text", "text": "block b"}],
            messages=[{"role": "user", "content": [{"type": "text", "text": "hi"}]}])
    openai_request, anthropic_request = server.requests
    assert openai_request.system == "dev rules"
    assert openai_request.messages == [{"role": "user", "content": "part one\npart two"}]
    assert anthropic_request.system == "block a\nblock b"
    assert anthropic_request.messages == [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize("sdk", SDKS)
def test_token_counts_can_be_set(make_server: Callable[..., FakeModelServer], sdk: str) -> None:
    server = make_server(lambda r: FakeReply(text="x", input_tokens=123, output_tokens=45))
    with sync_client(sdk, server) as client:
        if sdk == "openai":
            usage = client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "q"}]).usage
            assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (123, 45, 168)
        else:
            usage = client.messages.create(
                model="m", max_tokens=5, messages=[{"role": "user", "content": "q"}]).usage
            assert (usage.input_tokens, usage.output_tokens) == (123, 45)


def test_async_responder(make_server: Callable[..., FakeModelServer]) -> None:
    async def responder(request: FakeRequest) -> str:
        await asyncio.sleep(0.01)
        return request.last_user_message.upper()

    server = make_server(responder)
    with sync_client("openai", server) as client:
        assert ask("openai", client, "quiet") == "QUIET"


# ----- failures ------------------------------------------------------------------------------


def failure_responder(request: FakeRequest) -> FakeReply | str:
    """Fail in the way the last user message names."""
    return {
        "429": FakeReply(status=429, text="slow down", headers={"retry-after": "1"}),
        "500": FakeReply(status=500, text="boom"),
        "400": FakeReply(status=400, text="bad prompt"),
        "drop": FakeReply(drop=True),
        "hang": FakeReply(hang=True),
        "raw": FakeReply(raw_body="{not json"),
    }.get(request.last_user_message, "fine")


@pytest.mark.parametrize("sdk", SDKS)
def test_rate_limit_with_retry_after(make_server: Callable[..., FakeModelServer], sdk: str) -> None:
    server = make_server(failure_responder)
    with sync_client(sdk, server) as client, pytest.raises(SDK_MODULES[sdk].RateLimitError) as info:
        ask(sdk, client, "429")
    error = info.value
    assert error.status_code == 429
    assert error.response.headers["retry-after"] == "1"
    assert "slow down" in str(error)
    if sdk == "openai":  # the SDK unwraps {"error": {...}}
        assert error.body["message"] == "slow down"
        assert error.code == "rate_limit_exceeded"
    else:
        assert error.body == {"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}
        # anthropic 0.87 and later also unwrap the type onto the error; the lowest allowed SDK (0.77) does not.
        assert getattr(error, "type", "rate_limit_error") == "rate_limit_error"


@pytest.mark.parametrize("sdk", SDKS)
@pytest.mark.parametrize(("trigger", "error_name", "status"), [
    ("500", "InternalServerError", 500),
    ("400", "BadRequestError", 400),
])
def test_status_errors(make_server: Callable[..., FakeModelServer], sdk: str,
                       trigger: str, error_name: str, status: int) -> None:
    server = make_server(failure_responder)
    with sync_client(sdk, server) as client, pytest.raises(getattr(SDK_MODULES[sdk], error_name)) as info:
        ask(sdk, client, trigger)
    assert info.value.status_code == status


@pytest.mark.parametrize("sdk", SDKS)
def test_responder_exception_becomes_500(make_server: Callable[..., FakeModelServer], sdk: str) -> None:
    def responder(request: FakeRequest) -> str:
        raise KeyError("no rule for this prompt")

    server = make_server(responder)
    with sync_client(sdk, server) as client, pytest.raises(SDK_MODULES[sdk].InternalServerError) as info:
        ask(sdk, client, "anything")
    assert "no rule for this prompt" in str(info.value)
    assert server.count == 1


@pytest.mark.parametrize("sdk", SDKS)
def test_drop_is_a_connection_error(make_server: Callable[..., FakeModelServer], sdk: str) -> None:
    server = make_server(failure_responder)
    module = SDK_MODULES[sdk]
    with sync_client(sdk, server) as client:
        with pytest.raises(module.APIConnectionError) as info:
            ask(sdk, client, "drop")
        assert not isinstance(info.value, module.APITimeoutError)
        assert ask(sdk, client, "after") == "fine"  # the client recovers on a new connection


@pytest.mark.parametrize("sdk", SDKS)
def test_hang_is_a_timeout(make_server: Callable[..., FakeModelServer], sdk: str) -> None:
    server = make_server(failure_responder)
    # The server never answers: only the client's own 0.3 s timeout can end the call, so the error is the proof.
    with sync_client(sdk, server, timeout=0.3) as client, pytest.raises(SDK_MODULES[sdk].APITimeoutError):
        ask(sdk, client, "hang")


@pytest.mark.parametrize("sdk", SDKS)
def test_malformed_json_reaches_the_client(make_server: Callable[..., FakeModelServer], sdk: str) -> None:
    # Behaviour of the installed SDKs (openai 3.x, anthropic 2.x): a 200 with an application/json
    # body that does not parse is NOT wrapped in an SDK error: the bare json.JSONDecodeError
    # escapes from create(). A harness must therefore catch ValueError as well as APIError.
    server = make_server(failure_responder)
    with sync_client(sdk, server) as client, pytest.raises(json.JSONDecodeError):
        ask(sdk, client, "raw")
    assert server.count == 1


@pytest.mark.parametrize("sdk", SDKS)
def test_streaming_is_refused(make_server: Callable[..., FakeModelServer], sdk: str) -> None:
    server = make_server()
    with sync_client(sdk, server) as client, pytest.raises(SDK_MODULES[sdk].BadRequestError) as info:
        ask(sdk, client, "hi", stream=True)
    assert "streaming" in str(info.value)


# ----- attempts, latency, bookkeeping -------------------------------------------------------


def fail_first(request: FakeRequest) -> FakeReply | str:
    """Fail the first attempt of every distinct request, then succeed."""
    if request.attempt == 0:
        return FakeReply(status=503, text="warming up")
    return f"attempt {request.attempt}: {request.last_user_message}"


@pytest.mark.parametrize("sdk", SDKS)
def test_attempt_counts_identical_requests(make_server: Callable[..., FakeModelServer], sdk: str) -> None:
    server = make_server(fail_first)
    with sync_client(sdk, server) as client:
        with pytest.raises(SDK_MODULES[sdk].InternalServerError):
            ask(sdk, client, "q1")
        assert ask(sdk, client, "q1") == "attempt 1: q1"
        assert ask(sdk, client, "q1") == "attempt 2: q1"
        with pytest.raises(SDK_MODULES[sdk].InternalServerError):  # another system prompt: new request
            ask(sdk, client, "q1", system="other")
        # generation params are not part of the identity of a request
        assert ask(sdk, client, "q1", extra_body={"temperature": 0.5}) == "attempt 3: q1"
    assert [r.attempt for r in server.requests] == [0, 1, 2, 0, 3]
    server.reset()
    assert server.count == 0 and server.requests == []
    with sync_client(sdk, server) as client, pytest.raises(SDK_MODULES[sdk].InternalServerError):
        ask(sdk, client, "q1")  # reset() forgets attempts too


def test_attempts_are_deterministic_under_concurrency(make_server: Callable[..., FakeModelServer]) -> None:
    server = make_server(fail_first, latency=0.02)

    async def one(client: Any, i: int) -> str:
        try:
            completion = await client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": f"q{i}"}])
        except openai.InternalServerError:
            return "failed"
        return completion.choices[0].message.content

    async def main() -> tuple[list[str], list[str]]:
        async with async_client("openai", server) as client:
            first = await asyncio.gather(*(one(client, i) for i in range(50)))
            second = await asyncio.gather(*(one(client, i) for i in range(50)))
        return first, second

    first, second = asyncio.run(main())
    assert first == ["failed"] * 50
    assert second == [f"attempt 1: q{i}" for i in range(50)]


def test_sdk_retries_work_against_the_server(make_server: Callable[..., FakeModelServer]) -> None:
    server = make_server(lambda r: FakeReply(status=429, headers={"retry-after-ms": "10"})
                         if r.attempt == 0 else "second time lucky")
    with sync_client("openai", server, retries=2) as client:
        assert ask("openai", client, "q") == "second time lucky"
    assert [r.attempt for r in server.requests] == [0, 1]


def test_latency_and_delay_override(make_server: Callable[..., FakeModelServer]) -> None:
    server = make_server(lambda r: FakeReply(text="fast", delay=0.0) if r.last_user_message == "fast"
                         else "slow", latency=0.3)
    with sync_client("openai", server) as client:
        ask("openai", client, "warm up the connection")
        assert ask("openai", client, "slow") == "slow"
        assert ask("openai", client, "fast") == "fast"
    # What the server waited, as it records it: no wall-clock figure, which a loaded machine would stretch.
    assert server.delays == [0.3, 0.3, 0.0]


def test_200_concurrent_requests(make_server: Callable[..., FakeModelServer]) -> None:
    # No reply leaves before all 200 requests are in flight at once, so the test passes only if the server (and
    # the SDK) really serve them concurrently, on any machine, however loaded. How fast: benchmarks/bench_tests.py.
    in_flight, everyone = [0], asyncio.Event()

    async def all_at_once(request: FakeRequest) -> FakeReply | str:
        in_flight[0] += 1
        if in_flight[0] == 200:
            everyone.set()
        try:
            await asyncio.wait_for(everyone.wait(), timeout=60)      # a bounded wait for a hang, not a speed claim
        except TimeoutError:
            return FakeReply(status=400, text=f"only {in_flight[0]} requests were ever in flight together")
        return echo_responder(request)

    server = make_server(all_at_once)

    async def main() -> list[str]:
        async with async_client("openai", server, timeout=90) as client:
            async def one(i: int) -> str:
                completion = await client.chat.completions.create(
                    model="m", messages=[{"role": "user", "content": f"question {i}"}])
                return completion.choices[0].message.content
            return await asyncio.gather(*(one(i) for i in range(200)))

    answers = asyncio.run(main())
    assert answers == [f"You said: question {i}" for i in range(200)]  # replies match requests
    assert server.count == 200


# ----- raw HTTP, lifecycle, security ---------------------------------------------------------


def test_keep_alive_and_error_shapes_over_raw_http(make_server: Callable[..., FakeModelServer]) -> None:
    server = make_server()
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "one"}]})
        for _ in range(2):  # two requests over one connection
            conn.request("POST", "/v1/chat/completions", body, {"content-type": "application/json"})
            response = conn.getresponse()
            assert response.status == 200
            assert json.loads(response.read())["choices"][0]["message"]["content"] == "You said: one"
        conn.request("POST", "/v1/messages", "{oops", {"content-type": "application/json"})
        response = conn.getresponse()
        assert response.status == 400
        assert json.loads(response.read())["type"] == "error"  # Anthropic's shape
        conn.request("POST", "/v1/nowhere", body)
        response = conn.getresponse()
        assert response.status == 404
        assert json.loads(response.read())["error"]["type"] == "invalid_request_error"  # OpenAI's shape
    finally:
        conn.close()
    assert server.count == 2  # malformed and unknown requests are not recorded


def test_refuses_other_hosts() -> None:
    for host in ("0.0.0.0", "localhost", "::", "192.168.1.10"):
        with pytest.raises(ValueError):
            FakeModelServer(echo_responder, host=host)


def test_port_in_use_raises(make_server: Callable[..., FakeModelServer]) -> None:
    server = make_server()
    with pytest.raises(OSError):
        FakeModelServer(echo_responder, port=server.port).start()


def test_headers_are_never_shown(make_server: Callable[..., FakeModelServer],
                                 capfd: pytest.CaptureFixture[str]) -> None:
    server = make_server()
    with sync_client("openai", server) as client:
        ask("openai", client, "hi")
    with sync_client("anthropic", server) as client:
        ask("anthropic", client, "hi")
    server.stop()
    out, err = capfd.readouterr()
    assert API_KEY not in out + err
    assert all(API_KEY not in repr(r) for r in server.requests)


def test_context_manager_and_restart() -> None:
    with FakeModelServer() as server:
        assert server.openai_base_url == f"http://127.0.0.1:{server.port}/v1"
        assert server.anthropic_base_url == f"http://127.0.0.1:{server.port}"
        with sync_client("anthropic", server) as client:
            assert ask("anthropic", client, "hey") == "You said: hey"
    with pytest.raises(RuntimeError):
        server.port  # noqa: B018 - stopped
    with server:  # a stopped server can be started again
        with sync_client("openai", server) as client:
            assert ask("openai", client, "again") == "You said: again"
    assert server.count == 2


def test_runs_as_a_script() -> None:
    script = Path(__file__).with_name("fake_server.py")
    with subprocess.Popen([sys.executable, str(script), "--port", "0", "--latency", "0.01"],
                          stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            port = int(process.stdout.readline())
            with openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=API_KEY,
                               max_retries=0, timeout=5) as client:
                assert ask("openai", client, "from a script") == "You said: from a script"
        finally:
            process.terminate()
            assert process.wait(timeout=10) == 0  # SIGTERM stops it cleanly
