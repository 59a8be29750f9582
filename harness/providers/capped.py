"""An HTTP transport for the SDK clients that reads at most a set number of bytes of a reply's body: an endless
or huge reply becomes ReplyTooLarge instead of growing the process without bound."""
from __future__ import annotations

from collections.abc import AsyncIterator

import httpx2

from ..errors import PermanentError, ProviderError
from .base import classify_sdk_error

# The SDKs' own defaults: their clients keep this many connections when they build the transport themselves.
LIMITS = httpx2.Limits(max_connections=1000, max_keepalive_connections=100)


class ReplyTooLarge(Exception):
    """A reply body over the endpoint's max_reply_bytes."""

    def __init__(self, limit: int):
        super().__init__(f"the reply is larger than max_reply_bytes ({limit:,} bytes); expected a shorter reply, "
                         "or a larger max_reply_bytes on this endpoint")


class _CappedStream(httpx2.AsyncByteStream):
    def __init__(self, stream: httpx2.AsyncByteStream, limit: int):
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


class CappedTransport(httpx2.AsyncBaseTransport):
    """The default transport, with each response body cut off (as ReplyTooLarge) past `limit` bytes."""

    def __init__(self, limit: int):
        self.inner, self.limit = httpx2.AsyncHTTPTransport(limits=LIMITS), limit

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        """Send the request; the response's body is read through the cap."""
        response = await self.inner.handle_async_request(request)
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.limit:
            await response.aclose()
            raise ReplyTooLarge(self.limit)
        return httpx2.Response(response.status_code, headers=response.headers,
                               stream=_CappedStream(response.stream, self.limit), extensions=response.extensions)

    async def aclose(self) -> None:
        """Close the pooled connections."""
        await self.inner.aclose()


def capped_client(sdk, limit: int):
    """The SDK's default async HTTP client (its timeouts and redirects), over a CappedTransport."""
    return sdk.DefaultAsyncHttpxClient(transport=CappedTransport(limit))


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
