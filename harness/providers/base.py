"""The provider protocol, the one retry policy, and SDK error classification."""
from __future__ import annotations

import asyncio
import math
import random
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from ..errors import PermanentError, ProviderError, TransientError
from ..secrets import Scrubber
from ..store import cache_key
from ..types import Message, Usage

_SURROGATE = re.compile("[\ud800-\udfff]")


CLIENT_SLOTS = 8


def clients_for(concurrency: int) -> int:
    """How many SDK clients an endpoint spreads its calls over: one per CLIENT_SLOTS concurrent calls."""
    return max(1, -(-concurrency // CLIENT_SLOTS))


@dataclass(frozen=True)
class GenParams:
    """What a call needs besides the messages."""

    system: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    json_schema: dict | None = None     # ask for structured JSON output where the provider has it
    case_id: str = ""
    sample: int = 0
    version: str = ""                   # e.g. the grader prompt version: part of the cache key


@dataclass(frozen=True)
class Reply:
    """A model's text and what it cost."""

    text: str
    usage: Usage = Usage()
    refusal: bool = False      # the model declined (OpenAI's message.refusal, Anthropic's stop_reason "refusal")


def usage_of(input_tokens: Any, output_tokens: Any, latency: float) -> Usage:
    """A reply's token counts as Usage; a count that is not a finite, non-negative whole number (NaN, infinity,
    negative, text) is a PermanentError of kind `usage`: a bill that cannot be read is never counted as cost,
    and the call is not repeated (each repeat would be billed)."""
    counts = []
    for name, value in (("input", input_tokens), ("output", output_tokens)):
        value = 0 if value is None else value
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or value < 0 or value != int(value):
            raise PermanentError(f"the reply's {name} token count is {str(value)[:40]!r}; expected a whole number "
                                 "of tokens, 0 or more", kind="usage")
        counts.append(int(value))
    return Usage(counts[0], counts[1], latency)


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
            async with asyncio.timeout(policy.timeout):
                return await call()
        except TimeoutError:
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
            return TransientError(f"rate limited (429): {message}", "rate_limit", status,
                                  _retry_after(exc.response.headers))
        if status >= 500 or status in (408, 409):
            return TransientError(f"server error ({status}): {message}", "server", status,
                                  _retry_after(exc.response.headers))
        return PermanentError(f"request refused ({status}): {message}", "bad_request" if status == 400 else "refused",
                              status)
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


class RateLimiter:
    """Requests and tokens per minute, as token buckets that refill continuously."""

    def __init__(self, requests_per_minute: int | None = None, tokens_per_minute: int | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep):
        self.rpm, self.tpm, self.clock, self.sleep = requests_per_minute, tokens_per_minute, clock, sleep
        self.requests, self.tokens = float(requests_per_minute or 0), float(tokens_per_minute or 0)
        self.last = clock()
        self.lock = asyncio.Lock()

    def _refill(self) -> None:
        now = self.clock()
        elapsed, self.last = now - self.last, now
        if self.rpm:
            self.requests = min(self.rpm, self.requests + elapsed * self.rpm / 60)
        if self.tpm:
            self.tokens = min(self.tpm, self.tokens + elapsed * self.tpm / 60)

    async def acquire(self, tokens: int = 0) -> None:
        """Wait until one request and `tokens` tokens are available, then take them."""
        if not (self.rpm or self.tpm):
            return
        tokens = min(tokens, self.tpm or tokens)
        async with self.lock:
            while True:
                self._refill()
                wait = 0.0
                if self.rpm and self.requests < 1:
                    wait = max(wait, (1 - self.requests) * 60 / self.rpm)
                if self.tpm and self.tokens < tokens:
                    wait = max(wait, (tokens - self.tokens) * 60 / self.tpm)
                if wait <= 0:
                    self.requests -= 1 if self.rpm else 0
                    self.tokens -= tokens if self.tpm else 0
                    return
                await self.sleep(wait)

    def spend(self, tokens: int) -> None:
        """Debit tokens known only after the call (the reply's)."""
        if self.tpm:
            self.tokens -= tokens


class BudgetExceeded(Exception):
    """The run would spend more than --max-cost."""


@dataclass
class Budget:
    """Money spent on calls made in this run, against an optional ceiling; shared by all endpoints."""

    max_cost: float | None = None
    spent: float = 0.0
    reserved: float = 0.0      # what the calls in flight may cost, reserved before they start

    def reserve(self, estimate: float) -> None:
        """Reserve a call's cost, or raise BudgetExceeded if what is spent, what calls in flight may cost and this
        call could together pass the ceiling."""
        if self.max_cost is not None and self.spent + self.reserved + estimate > self.max_cost:
            raise BudgetExceeded(f"the next call (reserved ${estimate:.4f}) could pass --max-cost ${self.max_cost:g}")
        self.reserved += estimate

    def settle(self, estimate: float, actual: float) -> None:
        """Replace a reservation by what the call cost."""
        self.reserved -= estimate
        self.spent += actual


BATCH_DISCOUNT = 0.5      # OpenAI Batch and Anthropic Message Batches bill half the synchronous price


def batch_price(price: dict[str, float] | None, batch: bool) -> dict[str, float] | None:
    """The price an endpoint pays per million tokens: the price table's, times BATCH_DISCOUNT for a batch endpoint.
    Every cost (estimate, --max-cost, summaries) goes through cost() with this price."""
    if not price or not batch:
        return price
    return {k: v * BATCH_DISCOUNT for k, v in price.items()}


def cost(usage: Usage, price: dict[str, float] | None) -> float:
    """US dollars for a call's tokens at a price per million tokens ({input, output}); 0 without a price."""
    if not price:
        return 0.0
    return (usage.input_tokens * price["input"] + usage.output_tokens * price["output"]) / 1e6


DEFAULT_RESERVED_OUTPUT = 1024     # output tokens reserved for a call without max_tokens, until a reply is seen


def estimate_tokens(messages: Sequence[Message], system: str | None) -> int:
    """Rough input tokens of a request: characters / 4."""
    return (sum(len(m.content) for m in messages) + len(system or "")) // 4 + 4 * len(messages)


@dataclass
class Meter:
    """What an endpoint did, for the run's closing line: calls made (attempts) and cache hits. Tokens and cost
    live in the result rows, which are what reports read."""

    calls: int = 0
    cache_hits: int = 0


REFUSAL_MARK = ":refusal"    # beside a cached reply's key, holding its text: that reply was a refusal


class Endpoint:
    """A provider under its concurrency limit, rate limits, the retry policy, the response cache and the
    run's budget: the only way stages call a model."""

    def __init__(self, provider: Provider, limit: asyncio.Semaphore, policy: RetryPolicy, seed: int = 0,
                 cache: Any = None, scope: dict[str, Any] | None = None, limiter: RateLimiter | None = None,
                 budget: Budget | None = None, price: dict[str, float] | None = None, scrubber: Scrubber | None = None):
        self.provider, self.limit, self.policy = provider, limit, policy
        self.name = provider.name
        self.rng = random.Random(seed)
        self.cache, self.scope = cache, scope          # scope None: never cached (replay)
        self.limiter, self.budget, self.price = limiter or RateLimiter(), budget or Budget(), price
        self.meter = Meter()
        self.scrubber = scrubber or Scrubber(())     # API keys a server may echo in an error or a reply
        self.longest: int | None = None      # the most output tokens a reply of this endpoint has had
        self.input_ratio = 1.0               # the largest actual / estimated input tokens seen
        self.first = asyncio.Lock()

    async def _attempt(self, messages: Sequence[Message], params: GenParams, tokens: int) -> Reply:
        if self.budget.max_cost is not None and self.longest is None:
            # Under a ceiling, the first call of an endpoint goes alone: what it really cost sizes the reservations
            # of the calls after it (a failed first call leaves the next one to go alone).
            async with self.first:
                if self.longest is None:
                    return await self._call(messages, params, tokens)
        return await self._call(messages, params, tokens)

    def reservation(self, params: GenParams, tokens: int) -> float:
        """What a call may cost: its input as estimated, scaled by the largest actual/estimated ratio seen on this
        endpoint, and the most output tokens it may return or any reply here has returned."""
        output = max(params.max_tokens or DEFAULT_RESERVED_OUTPUT, self.longest or 0)
        return cost(Usage(math.ceil(tokens * self.input_ratio), output), self.price)

    async def _call(self, messages: Sequence[Message], params: GenParams, tokens: int) -> Reply:
        await self.limiter.acquire(tokens)
        async with self.limit:
            estimate = self.reservation(params, tokens)
            self.budget.reserve(estimate)
            self.meter.calls += 1
            try:
                reply = await self.provider.complete(messages, params)
            except BaseException:
                self.budget.settle(estimate, 0.0)
                raise
        self.limiter.spend(reply.usage.output_tokens)
        spent = cost(reply.usage, self.price)
        self.budget.settle(estimate, spent)
        self.longest = max(self.longest or 0, reply.usage.output_tokens)
        self.input_ratio = max(self.input_ratio, reply.usage.input_tokens / max(tokens, 1))
        return reply

    def key(self, messages: Sequence[Message], params: GenParams) -> str | None:
        """The cache key of a call, or None when this endpoint is not cached."""
        if self.cache is None or self.scope is None:
            return None
        return cache_key({**self.scope, "system": params.system, "temperature": params.temperature,
                          "max_tokens": params.max_tokens, "json_schema": params.json_schema,
                          "version": params.version, "sample": params.sample,
                          "messages": [[m.role, m.content] for m in messages]})

    async def complete(self, messages: Sequence[Message], params: GenParams) -> Reply:
        """A reply from the cache, or from the provider under the limits and the retry policy (then cached);
        raises ProviderError when the call fails for good."""
        key = self.key(messages, params)
        if key is not None and (hit := self.cache.get(key)) is not None:
            self.meter.cache_hits += 1
            text, tokens_in, tokens_out, latency = hit
            refused = (mark := self.cache.get(key + REFUSAL_MARK)) is not None and mark[0] == text
            return Reply(text, Usage(tokens_in or 0, tokens_out or 0, latency or 0.0, cached=True), refused)
        tokens = estimate_tokens(messages, params.system)
        try:
            reply = await call_with_retry(lambda: self._attempt(messages, params, tokens), self.policy, self.rng)
        except ProviderError as exc:       # where a failure becomes text: no key leaves in it
            exc.args = (self.scrubber.text(str(exc)),)
            raise
        return self.store(key, reply)

    def store(self, key: str | None, reply: Reply) -> Reply:
        """A reply made safe to keep (no key in it, no lone surrogate) and cached under `key`: the one way a reply,
        synchronous or from a batch, enters the cache."""
        reply = replace(reply, text=self.scrubber.text(reply.text))
        # "\ud800" in a JSON reply: no file can store it, so U+FFFD as a reader sees
        if _SURROGATE.search(reply.text):
            reply = replace(reply, text=_SURROGATE.sub("\ufffd", reply.text))
        if key is not None and self.cache is not None:
            if reply.refusal:       # first, with its text: a crash between the writes leaves no refusal unmarked,
                self.cache.put(key + REFUSAL_MARK, reply.text, 0, 0, 0.0)     # and marks no other reply
            self.cache.put(key, reply.text, reply.usage.input_tokens, reply.usage.output_tokens, reply.usage.latency)
        return reply
