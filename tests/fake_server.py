"""Fake model server for tests and benchmarks: OpenAI chat completions and Anthropic messages.

The server speaks just enough HTTP/1.1 (keep-alive, Content-Length bodies) and just enough of
the two wire formats that the official ``openai`` and ``anthropic`` SDKs talk to it unmodified.
It runs its own asyncio event loop in a background thread, so it can be used from plain
synchronous pytest tests as well as from async code, and it serves many concurrent
connections cheaply.

Replies are a function of the request, never a queue of canned replies (a queue breaks under
concurrency). The responder receives a :class:`FakeRequest` and returns a :class:`FakeReply`
or a plain ``str`` (shorthand for ``FakeReply(text=...)``)::

    from fake_server import FakeModelServer, FakeReply, FakeRequest

    def responder(req: FakeRequest) -> FakeReply | str:
        if req.attempt == 0:                       # first time this exact request is seen
            return FakeReply(status=429, headers={"retry-after": "1"})
        return f"system={req.system} last={req.messages[-1]['content']}"

    with FakeModelServer(responder, latency=0.05) as server:
        client = openai.OpenAI(base_url=server.openai_base_url, api_key="x", max_retries=0)
        client2 = anthropic.Anthropic(base_url=server.anthropic_base_url, api_key="x")
        ...
        assert server.count == 2

Endpoints: ``POST /v1/chat/completions`` (give the OpenAI SDK ``server.openai_base_url``, which ends in
``/v1``) and ``POST /v1/messages`` (give the Anthropic SDK ``server.anthropic_base_url``). Streaming is
answered with a 400. Errors use each API's own error body shape.

The responder runs on the server's event loop thread (so calls are serialised); it should be fast: use
``FakeReply.delay`` or the server ``latency`` to simulate slow models. It may also be an ``async def``
function. A responder that raises produces a 500 with the exception text. Security: the server only ever
binds 127.0.0.1 and never logs request headers (they carry API keys), nor puts them in ``repr``.

As a script (``python tests/fake_server.py --port 8000 --latency 0.05``), it serves
:func:`echo_responder` until killed and prints the port on the first line of stdout. Batch
endpoints: pass ``batches=fake_batches.FakeBatches(...)``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import signal
import threading
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Literal
from collections.abc import Awaitable, Callable

__all__ = ["FakeModelServer", "FakeReply", "FakeRequest", "Responder", "echo_responder", "key_echo_reply"]

ALLOWED_HOST = "127.0.0.1"
OPENAI_PATH = "/v1/chat/completions"
ANTHROPIC_PATH = "/v1/messages"
MAX_BODY_BYTES = 32 * 1024 * 1024
MAX_HEAD_BYTES = 256 * 1024
ENDLESS_BYTES = 64 * 1024 * 1024  # what an endless reply sends at most, so a client without a cap fails, not dies

_ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_OPENAI_ERRORS = {  # status -> (type, code)
    401: ("invalid_request_error", "invalid_api_key"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
}


@dataclass(frozen=True)
class FakeRequest:
    """One API request as seen by the responder (messages flattened to text)."""

    api: Literal["openai", "anthropic"]
    path: str
    model: str
    system: str | None
    messages: list[dict[str, str]]
    params: dict[str, Any]
    headers: dict[str, str] = field(repr=False)  # lower-case keys; holds API keys: never log
    body: dict[str, Any] = field(repr=False)
    attempt: int = 0

    @property
    def last_user_message(self) -> str:
        """Text of the last message with role "user" ("" if there is none)."""
        for message in reversed(self.messages):
            if message.get("role") == "user":
                return message.get("content", "")
        return ""


@dataclass
class FakeReply:
    """What the server should do with a request: answer, fail, delay, drop or hang."""

    text: str = ""
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float | None = None  # seconds; None means the server's latency
    drop: bool = False  # close the connection without answering
    hang: bool = False  # never answer; wait until the client gives up
    raw_body: str | None = None  # sent verbatim instead of a JSON body (e.g. malformed JSON)
    input_tokens: int | None = None  # None means estimated from the request text
    output_tokens: int | None = None  # None means estimated from the reply text
    refusal: str | None = None  # a refusal: OpenAI's message.refusal (content null), Anthropic's stop_reason
    endless: bool = False  # a 200 whose body never ends (up to ENDLESS_BYTES), until the client hangs up


ReplyLike = FakeReply | str
Responder = Callable[[FakeRequest], ReplyLike | Awaitable[ReplyLike]]


def echo_responder(request: FakeRequest) -> str:
    """Answer "You said: <last user message>"."""
    return f"You said: {request.last_user_message}"


def verdict_responder(request: FakeRequest) -> str:
    """Answer grader prompts (HealthBench-style: they ask for "criteria_met") with one verdict object, others
    with an echo."""
    if "criteria_met" in request.last_user_message:
        met = len(request.last_user_message) % 2 == 0
        return json.dumps({"explanation": "Decided by the fake grader from the prompt length.", "criteria_met": met})
    return echo_responder(request)


def key_echo_reply(request: FakeRequest, status: int = 401) -> FakeReply:
    """An error whose message echoes the request's API key, whole and masked the ways servers mask it (first 8
    and last 4 around stars, last 4 after an ellipsis): what some servers do on a 401."""
    key = request.headers.get("x-api-key") or request.headers.get("authorization", "").removeprefix("Bearer ")
    return FakeReply(status=status, text=f"Incorrect API key provided: {key}. You gave {key[:8]}{'*' * 20}{key[-4:]} "
                                         f"(sk-...{key[-4:]}); find your key at https://example.invalid/keys")


RESPONDERS = {"echo": echo_responder, "verdict": verdict_responder}


def approx_tokens(text: str) -> int:
    """Rough token count: a quarter of the characters, at least 1."""
    return max(1, len(text) // 4)


def _flatten(content: Any) -> str:
    """Text of a message content: a string, or a list of text parts/blocks joined by newlines."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
        return "\n".join(parts)
    return str(content)


def _split_openai(body: dict[str, Any]) -> tuple[str | None, list[dict[str, str]], dict[str, Any]]:
    """System text (system and developer messages), other messages, and remaining params."""
    system_parts: list[str] = []
    messages: list[dict[str, str]] = []
    for message in body.get("messages") or []:
        role = str(message.get("role", ""))
        text = _flatten(message.get("content"))
        if role in ("system", "developer"):
            system_parts.append(text)
        else:
            messages.append({"role": role, "content": text})
    params = {k: v for k, v in body.items() if k not in ("model", "messages")}
    return ("\n\n".join(system_parts) if system_parts else None), messages, params


def _split_anthropic(body: dict[str, Any]) -> tuple[str | None, list[dict[str, str]], dict[str, Any]]:
    """System parameter, messages, and remaining params of an Anthropic messages body."""
    system = _flatten(body["system"]) if body.get("system") is not None else None
    messages = [
        {"role": str(m.get("role", "")), "content": _flatten(m.get("content"))}
        for m in body.get("messages") or []
    ]
    params = {k: v for k, v in body.items() if k not in ("model", "messages", "system")}
    return system, messages, params


def _error_body(api: str, status: int, message: str) -> dict[str, Any]:
    """An error body in the API's own shape."""
    if api == "anthropic":
        kind = _ANTHROPIC_ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
        return {"type": "error", "error": {"type": kind, "message": message}}
    default = ("server_error", None) if status >= 500 else ("invalid_request_error", None)
    kind, code = _OPENAI_ERRORS.get(status, default)
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def _success_body(request: FakeRequest, reply: FakeReply, reply_id: str) -> dict[str, Any]:
    """A completion body in the API's own shape."""
    prompt = "\n".join([request.system or ""] + [m["content"] for m in request.messages])
    tokens_in = reply.input_tokens if reply.input_tokens is not None else approx_tokens(prompt)
    tokens_out = reply.output_tokens if reply.output_tokens is not None else approx_tokens(reply.text)
    if request.api == "anthropic":
        shown = reply.text if reply.refusal is None else (reply.refusal or None)   # a refusal may have no text
        return {
            "id": f"msg_{reply_id}",
            "type": "message",
            "role": "assistant",
            "model": request.model,
            "content": [{"type": "text", "text": shown}] if shown is not None else [],
            "stop_reason": "end_turn" if reply.refusal is None else "refusal",
            "stop_sequence": None,
            "usage": {"input_tokens": tokens_in, "output_tokens": tokens_out},
        }
    return {
        "id": f"chatcmpl-{reply_id}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": reply.text if reply.refusal is None else None,
                            "refusal": reply.refusal},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": tokens_in,
            "completion_tokens": tokens_out,
            "total_tokens": tokens_in + tokens_out,
            "prompt_tokens_details": {"cached_tokens": 0},          # as the real API sends them
            "completion_tokens_details": {"reasoning_tokens": 0},
        },
    }


class _HTTPError(Exception):
    """A request the server answers with an error before reaching the responder."""

    def __init__(self, api: str, status: int, message: str, close: bool = False) -> None:
        super().__init__(message)
        self.api, self.status, self.message, self.close = api, status, message, close


async def _read_head(reader: asyncio.StreamReader) -> tuple[str, str, dict[str, str]] | None:
    """Read a request line and headers; None on a clean end of connection."""
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if exc.partial.strip():
            raise ConnectionError("truncated request head") from exc
        return None
    lines = raw.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3:
        raise ConnectionError("malformed request line")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return parts[0].upper(), parts[1], headers


async def _read_body(reader: asyncio.StreamReader, api: str, headers: dict[str, str]) -> bytes:
    """Read a Content-Length request body."""
    if "transfer-encoding" in headers:
        raise _HTTPError(api, 411, "chunked request bodies are not supported", close=True)
    try:
        length = int(headers.get("content-length", "0"))
    except ValueError:
        raise _HTTPError(api, 400, "invalid Content-Length", close=True) from None
    if length < 0 or length > MAX_BODY_BYTES:
        raise _HTTPError(api, 413, "request body too large", close=True)
    return await reader.readexactly(length) if length else b""


def _reason(status: int) -> str:
    """HTTP reason phrase for a status code."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Overloaded" if status == 529 else "Unknown"


def _encode_response(status: int, headers: dict[str, str], payload: bytes, keep_alive: bool) -> bytes:
    """Serialise an HTTP/1.1 response."""
    merged = {"content-type": "application/json", "server": "bilan-fake-model-server"}
    merged.update({k.lower(): str(v) for k, v in headers.items()})
    merged["content-length"] = str(len(payload))
    merged["connection"] = "keep-alive" if keep_alive else "close"
    head = [f"HTTP/1.1 {status} {_reason(status)}"] + [f"{k}: {v}" for k, v in merged.items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + payload


async def _send_endless(writer: asyncio.StreamWriter) -> bool:
    """A 200 with no length, then a JSON string that never closes, until the client hangs up or ENDLESS_BYTES."""
    writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n"
                 b'{"id": "endless", "choices": [{"message": {"role": "assistant", "content": "')
    chunk = b"Appelez le 15. " * 4096
    try:
        for _ in range(ENDLESS_BYTES // len(chunk)):
            writer.write(chunk)
            await writer.drain()
    except ConnectionError:
        pass
    return False


class FakeModelServer:
    """An OpenAI- and Anthropic-compatible fake model server on 127.0.0.1, in a background thread."""

    def __init__(
        self,
        responder: Responder = echo_responder,
        *,
        latency: float = 0.0,
        host: str = ALLOWED_HOST,
        port: int = 0,
        batches: Any = None,  # a fake_batches.FakeBatches: the batch API endpoints
    ) -> None:
        """Configure the server; nothing listens until start() or ``with``."""
        if host != ALLOWED_HOST:
            raise ValueError(f"the fake model server only binds {ALLOWED_HOST}, not {host!r}")
        if latency < 0:
            raise ValueError("latency must be >= 0")
        self.responder, self.batches = responder, batches
        self.latency = float(latency)
        self.host = host
        self._requested_port = port
        self._port: int | None = None
        self._lock = threading.Lock()
        self._requests: list[FakeRequest] = []
        self._delays: list[float] = []
        self._seen: dict[str, int] = {}
        self._ids = itertools.count(1)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self._connections: set[asyncio.Task[None]] = set()

    # ----- public API -------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port the server listens on."""
        if self._port is None:
            raise RuntimeError("server not started")
        return self._port

    @property
    def openai_base_url(self) -> str:
        """Base URL for the OpenAI SDK (ends in /v1)."""
        return f"http://{self.host}:{self.port}/v1"

    @property
    def anthropic_base_url(self) -> str:
        """Base URL for the Anthropic SDK (no /v1)."""
        return f"http://{self.host}:{self.port}"

    @property
    def requests(self) -> list[FakeRequest]:
        """A copy of the requests received so far, in arrival order."""
        with self._lock:
            return list(self._requests)

    @property
    def delays(self) -> list[float]:
        """The seconds waited before each reply (or drop), in the order the replies went out: what the server
        did, which a test can check without timing anything."""
        with self._lock:
            return list(self._delays)

    @property
    def count(self) -> int:
        """Number of requests received so far."""
        with self._lock:
            return len(self._requests)

    def reset(self) -> None:
        """Forget all recorded requests and attempt counts."""
        with self._lock:
            self._requests.clear()
            self._delays.clear()
            self._seen.clear()

    def start(self) -> FakeModelServer:
        """Start serving in a background thread; returns self once the port is bound."""
        if self._thread is not None:
            raise RuntimeError("server already started")
        self._ready.clear()
        self._startup_error = None
        self._thread = threading.Thread(target=asyncio.run, args=(self._main(),),
                                        name="fake-model-server", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._startup_error is not None:
            self._thread.join()
            self._thread = None
            raise self._startup_error
        return self

    def stop(self) -> None:
        """Close all connections and stop the background thread."""
        thread, loop, stop_event = self._thread, self._loop, self._stop_event
        if thread is None:
            return
        if loop is not None and stop_event is not None:
            try:
                loop.call_soon_threadsafe(stop_event.set)
            except RuntimeError:  # loop already closed
                pass
        thread.join(timeout=10)
        self._thread = None
        self._port = None

    def __enter__(self) -> FakeModelServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ----- event loop side --------------------------------------------------------------

    async def _main(self) -> None:
        """Serve until stop() is called."""
        self._loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        try:
            server = await asyncio.start_server(
                self._handle_connection, self.host, self._requested_port,
                backlog=2048, limit=MAX_HEAD_BYTES,
            )
        except Exception as exc:  # noqa: BLE001 - re-raised in start()
            self._startup_error = exc
            self._ready.set()
            return
        self._port = server.sockets[0].getsockname()[1]
        self._ready.set()
        await self._stop_event.wait()
        server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        await server.wait_closed()

    async def _handle_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve requests on one connection until it closes."""
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            while await self._serve_one(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        except asyncio.CancelledError:  # shutdown; swallowed because 3.11's stream callback
            pass  # calls task.exception(), which raises on a cancelled task
        finally:
            self._connections.discard(task)
            writer.close()

    async def _serve_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Serve one request; True if the connection stays open for another."""
        head = await _read_head(reader)
        if head is None:
            return False
        method, target, headers = head
        path = target.split("?", 1)[0]
        api = "anthropic" if path == ANTHROPIC_PATH else "openai"
        keep_alive = headers.get("connection", "").lower() != "close"
        try:
            body = await _read_body(reader, api, headers)
            if self.batches is not None and self.batches.owns(path):
                status, payload = await self.batches.handle(self, method, path, headers, body)
                writer.write(_encode_response(status, {}, payload, keep_alive))
                await writer.drain()
                return keep_alive
            request = self._make_request(method, path, api, headers, body)
        except _HTTPError as err:
            payload = json.dumps(_error_body(err.api, err.status, err.message)).encode()
            keep_alive = keep_alive and not err.close
            writer.write(_encode_response(err.status, {}, payload, keep_alive))
            await writer.drain()
            return keep_alive
        reply = await self._call_responder(request)
        if reply.hang:
            while await reader.read(65536):  # until the client closes the connection
                pass
            return False
        delay = self.latency if reply.delay is None else reply.delay
        if delay > 0:
            await asyncio.sleep(delay)
        with self._lock:
            self._delays.append(delay)
        if reply.drop:
            return False
        if reply.endless:
            return await _send_endless(writer)
        status, resp_headers, payload = self._render(request, reply)
        writer.write(_encode_response(status, resp_headers, payload, keep_alive))
        await writer.drain()
        return keep_alive

    def _make_request(self, method: str, path: str, api: str, headers: dict[str, str],
                      raw: bytes) -> FakeRequest:
        """Validate and parse a request, and record it with its attempt number."""
        if path not in (OPENAI_PATH, ANTHROPIC_PATH):
            raise _HTTPError(api, 404, f"unknown path {path}")
        if method != "POST":
            raise _HTTPError(api, 405, f"method {method} not allowed on {path}")
        try:
            body = json.loads(raw.decode("utf-8")) if raw else None
        except (UnicodeDecodeError, ValueError):
            raise _HTTPError(api, 400, "request body is not valid JSON") from None
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            raise _HTTPError(api, 400, "request body must be a JSON object with a messages list")
        if any(not isinstance(m, dict) for m in body["messages"]):
            raise _HTTPError(api, 400, "each message must be a JSON object")
        if body.get("stream"):
            raise _HTTPError(api, 400, "streaming is not supported by the fake model server")
        split = _split_anthropic if api == "anthropic" else _split_openai
        system, messages, params = split(body)
        model = str(body.get("model", ""))
        key = json.dumps([api, model, system, messages], sort_keys=True, ensure_ascii=False)
        with self._lock:
            attempt = self._seen.get(key, 0)
            self._seen[key] = attempt + 1
            request = FakeRequest(api=api, path=path, model=model, system=system,  # type: ignore[arg-type]
                                  messages=messages, params=params, headers=headers,
                                  body=body, attempt=attempt)
            self._requests.append(request)
        return request

    async def _call_responder(self, request: FakeRequest) -> FakeReply:
        """Run the responder; an exception becomes a 500 reply with its text."""
        try:
            result = self.responder(request)
            if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
                result = await result
        except Exception as exc:  # noqa: BLE001 - reported to the client
            return FakeReply(text=f"responder raised {type(exc).__name__}: {exc}", status=500)
        if isinstance(result, str):
            return FakeReply(text=result)
        if not isinstance(result, FakeReply):
            return FakeReply(text=f"responder returned {type(result).__name__}, not FakeReply or str",
                             status=500)
        return result

    def _render(self, request: FakeRequest, reply: FakeReply) -> tuple[int, dict[str, str], bytes]:
        """Status, headers and body bytes for a reply."""
        reply_id = f"fake{next(self._ids)}"
        id_header = "request-id" if request.api == "anthropic" else "x-request-id"
        headers = {id_header: f"req_{reply_id}", **reply.headers}
        if reply.raw_body is not None:
            return reply.status, headers, reply.raw_body.encode("utf-8")
        if reply.status >= 400:
            body = _error_body(request.api, reply.status, reply.text or _reason(reply.status))
        else:
            body = _success_body(request, reply, reply_id)
        # a lone surrogate in a reply goes out as its JSON escape ("\ud800"), as a real server's JSON encoder writes it
        return reply.status, headers, json.dumps(body, ensure_ascii=False).encode("utf-8", "backslashreplace")


def main(argv: list[str] | None = None) -> int:
    """Serve a responder until killed, printing the port on stdout's first line."""
    parser = argparse.ArgumentParser(description="Fake OpenAI/Anthropic model server on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (0: any free port)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds to wait before each reply")
    parser.add_argument("--responder", choices=sorted(RESPONDERS), default="echo",
                        help="echo: 'You said: ...'; verdict: grader prompts get a verdict JSON object")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM -> KeyboardInterrupt
    server = FakeModelServer(RESPONDERS[args.responder], latency=args.latency, port=args.port).start()
    print(server.port, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
