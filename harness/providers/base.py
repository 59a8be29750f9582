"""The provider protocol, the one retry policy, and SDK error classification."""
from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ..errors import PermanentError, ProviderError, TransientError
from ..types import Message, Usage


@dataclass(frozen=True)
class GenParams:
    """What a call needs besides the messages."""

    system: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    json_schema: dict | None = None     # ask for structured JSON output where the provider has it
    case_id: str = ""
    sample: int = 0


@dataclass(frozen=True)
class Reply:
    """A model's text and what it cost."""

    text: str
    usage: Usage = Usage()


class Provider(Protocol):
    """Something that answers a conversation."""

    name: str

    async def complete(self, messages: Sequence[Message], params: GenParams) -> Reply: ...


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded attempts, exponential backoff with full jitter, Retry-After honoured, a per-call timeout."""

    max_attempts: int = 4
    base_delay: float = 1.0
    max_delay: float = 60.0
    timeout: float = 120.0

    def delay(self, attempt: int, error: ProviderError, rng: random.Random) -> float:
        """Seconds to wait before attempt number `attempt + 1` (attempt counts from 1)."""
        if error.retry_after is not None:
            return min(max(error.retry_after, 0.0), self.max_delay)
        return rng.uniform(0, min(self.max_delay, self.base_delay * 2 ** (attempt - 1)))


async def call_with_retry(call: Callable[[], Awaitable[Any]], policy: RetryPolicy,
                          rng: random.Random | None = None,
                          sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> Any:
    """Run call() under the policy: transient errors are retried, permanent ones raised at once."""
    rng = rng or random.Random()
    for attempt in range(1, policy.max_attempts + 1):
        try:
            return await asyncio.wait_for(call(), timeout=policy.timeout)
        except asyncio.TimeoutError:
            error: ProviderError = TransientError(f"no reply within {policy.timeout:g} s", kind="timeout")
        except ProviderError as exc:
            error = exc
        if not error.transient or attempt == policy.max_attempts:
            if error.transient:
                error.args = (f"{error.args[0]} (gave up after {attempt} attempts)",)
            raise error
        await sleep(policy.delay(attempt, error, rng))
    raise AssertionError("unreachable")


def _retry_after(headers: Any) -> float | None:
    if headers is None:
        return None
    value = headers.get("retry-after-ms")
    if value:
        try:
            return float(value) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        from email.utils import parsedate_to_datetime
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def classify_sdk_error(exc: Exception, sdk: Any) -> ProviderError:
    """Turn an openai or anthropic SDK exception into a Transient or Permanent error (no key, no headers)."""
    if isinstance(exc, sdk.APITimeoutError):
        return TransientError("the request timed out", kind="timeout")
    if isinstance(exc, sdk.APIConnectionError):
        return TransientError(f"connection failed: {type(exc).__name__}", kind="connection")
    if isinstance(exc, sdk.APIStatusError):
        status = exc.status_code
        message = _error_message(exc)
        if status == 429:
            return TransientError(f"rate limited (429): {message}", "rate_limit", status, _retry_after(exc.response.headers))
        if status >= 500 or status in (408, 409):
            return TransientError(f"server error ({status}): {message}", "server", status, _retry_after(exc.response.headers))
        return PermanentError(f"request refused ({status}): {message}", "bad_request" if status == 400 else "refused", status)
    if isinstance(exc, sdk.APIResponseValidationError) or isinstance(exc, ValueError):
        return TransientError(f"malformed reply: {type(exc).__name__}", kind="malformed")
    return PermanentError(f"{type(exc).__name__}: {exc}", kind="error")


def _error_message(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])[:300]
    return str(getattr(exc, "message", "") or type(exc).__name__)[:300]


class Endpoint:
    """A provider under one concurrency limit and the retry policy; the only way stages call a model."""

    def __init__(self, provider: Provider, limit: asyncio.Semaphore, policy: RetryPolicy, seed: int = 0):
        self.provider, self.limit, self.policy = provider, limit, policy
        self.name = provider.name
        self.rng = random.Random(seed)
        self.calls = 0

    async def _attempt(self, messages: Sequence[Message], params: GenParams) -> Reply:
        async with self.limit:
            self.calls += 1
            return await self.provider.complete(messages, params)

    async def complete(self, messages: Sequence[Message], params: GenParams) -> Reply:
        """Call the provider with bounded retries; raises ProviderError when it fails for good."""
        return await call_with_retry(lambda: self._attempt(messages, params), self.policy, self.rng)
