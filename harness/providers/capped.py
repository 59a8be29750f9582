"""An HTTP transport for the SDK clients that reads at most a set number of bytes of a reply's body: an endless
or huge reply becomes ReplyTooLarge instead of growing the process without bound."""
from __future__ import annotations

import functools
import importlib
import json
from collections.abc import AsyncIterator
from typing import Any

from ..errors import PermanentError, ProviderError
from .base import classify_sdk_error


class ReplyTooLarge(Exception):
    """A reply body over the endpoint's max_reply_bytes."""

    def __init__(self, limit: int):
        super().__init__(f"the reply is larger than max_reply_bytes ({limit:,} bytes); expected a shorter reply, "
                         "or a larger max_reply_bytes on this endpoint")


def http_module(sdk) -> Any:
    """The HTTP library an SDK is built on (httpx, or httpx2 in newer releases): its default client's base."""
    base = next(c for c in sdk.DefaultAsyncHttpxClient.__mro__ if c.__name__ == "AsyncClient")
    return importlib.import_module(base.__module__.split(".")[0])


@functools.cache
def _transport_class(http) -> type:
    """CappedTransport for one HTTP library: the default transport, each response body cut off (as
    ReplyTooLarge) past `limit` bytes. The SDKs' own connection limits are kept."""
    limits = http.Limits(max_connections=1000, max_keepalive_connections=100)
    # One TLS context for every client of the process (loading the CA store took ~75 ms per client), made as the
    # HTTP library makes its default one (certifi, SSL_CERT_FILE / SSL_CERT_DIR honoured).
    verify = functools.cache(getattr(http, "create_ssl_context", lambda: True))

    class CappedStream(http.AsyncByteStream):
        def __init__(self, stream, limit: int):
            self.stream, self.limit = stream, limit

        async def __aiter__(self) -> AsyncIterator[bytes]:
            read = 0
            async for chunk in self.stream:
                read += len(chunk)
                if read > self.limit:
                    raise ReplyTooLarge(self.limit)
                yield chunk

        async def aclose(self) -> None:
            await self.stream.aclose()

    class CappedTransport(http.AsyncBaseTransport):
        def __init__(self, limit: int):
            self.inner, self.limit = http.AsyncHTTPTransport(verify=verify(), limits=limits), limit

        async def handle_async_request(self, request):
            """Send the request; the response's body is read through the cap."""
            response = await self.inner.handle_async_request(request)
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > self.limit:
                await response.aclose()
                raise ReplyTooLarge(self.limit)
            return http.Response(response.status_code, headers=response.headers,
                                 stream=CappedStream(response.stream, self.limit), extensions=response.extensions)

        async def aclose(self) -> None:
            """Close the pooled connections."""
            await self.inner.aclose()

    return CappedTransport


def capped_client(sdk, limit: int):
    """The SDK's default async HTTP client (its timeouts and redirects), over a capped transport built on the
    HTTP library that SDK release uses."""
    return sdk.DefaultAsyncHttpxClient(transport=_transport_class(http_module(sdk))(limit))


async def post_json(client, sdk, path: str, body: dict) -> Any:
    """POST a JSON body built by the adapter through the SDK client's own request path (its base URL, auth and
    version headers, timeout, status errors, the capped transport) and return the reply's JSON. The typed
    `create` methods re-transform their parameters on every call, which on HealthBench work was most of the
    client's CPU per request; the body here is already what the API reads. A body that is not JSON is a
    ValueError, which sdk_error classifies as a malformed reply."""
    content = json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
    response = await client.post(path, cast_to=http_module(sdk).Response, content=content)
    return json.loads(response.content)


def sdk_error(exc: Exception, sdk) -> ProviderError:
    """An SDK exception as a classified error: a reply over the cap (however the SDK wrapped it) is a
    PermanentError of kind too_large (asking again would read the same flood); anything else as
    classify_sdk_error says."""
    cause: BaseException | None = exc
    for _ in range(8):          # the SDK wraps an error in one or two others
        if cause is None:
            break
        if isinstance(cause, ReplyTooLarge):
            return PermanentError(str(cause), kind="too_large")
        cause = cause.__cause__ or cause.__context__
    return classify_sdk_error(exc, sdk)


async def capped_lines(chunks: AsyncIterator[bytes], limit: int, total: int) -> AsyncIterator[tuple[bytes, bool]]:
    """The lines of a streamed body (a batch's output or results file) without holding more than `limit` bytes of
    one: (line, False), or (its first 4 KiB, True) for a line over the limit. Reading stops at `total` bytes, with
    ReplyTooLarge: a file longer than its requests' replies may be is not read to the end."""
    line, over, read = bytearray(), False, 0
    async for chunk in chunks:
        read += len(chunk)
        if read > total:
            raise ReplyTooLarge(total)
        start = 0
        while True:
            end = chunk.find(b"\n", start)
            piece = chunk[start:] if end == -1 else chunk[start:end]
            if not over:
                line += piece
                if len(line) > limit:
                    over = True
                    del line[4096:]
            if end == -1:
                break
            yield bytes(line), over
            line, over, start = bytearray(), False, end + 1
    if line:
        yield bytes(line), over
