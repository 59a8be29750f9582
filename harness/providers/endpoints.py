"""An endpoint's config -> an `Endpoint`: its provider (replayed answers, or a model API's adapter, made on its
first call) under the endpoint's concurrency and rate limits, the retry policy, the cache and the budget."""
from __future__ import annotations

import asyncio
from collections.abc import Callable

from ..model_apis import MODEL_APIS, ModelAPI
from ..secrets import Scrubber
from ..store import ResponseCache
from ..types import EndpointConfig
from .base import Budget, Endpoint, RateLimiter, RetryPolicy, batch_price
from .replay import ReplayProvider

Answers = dict[str, dict[tuple[str, int], str]]


class _OnFirstCall:
    """A model provider made when its first call is made (model_apis.py): a run the cache answers never imports
    the SDK, which takes a second or more."""

    def __init__(self, api: ModelAPI, cfg: EndpointConfig, key: str | None):
        self.name, self._api, self._cfg, self._key, self._provider = cfg.name, api, cfg, key, None

    async def complete(self, messages, params):
        if self._provider is None:          # made without awaiting: concurrent first calls share one
            self._provider = self._api.load()(self._cfg, self._key)
        return await self._provider.complete(messages, params)


def make_endpoint(cfg: EndpointConfig, answers: Answers, keys: dict[str, str | None], seed: int,
                  cache: ResponseCache | None = None, budget: Budget | None = None,
                  prices: dict[str, dict[str, float]] | None = None,
                  wrap: Callable[[Endpoint], None] | None = None) -> Endpoint:
    """A provider for an endpoint config, under its own limits, the retry policy, the cache and the budget;
    `wrap` is applied to a batch endpoint (batches.py: its requests are collected, its replies come from batches)."""
    provider: ReplayProvider | _OnFirstCall
    if cfg.provider == "replay":
        provider, scope = ReplayProvider(cfg, answers.get(cfg.name, {})), None
    else:
        api = MODEL_APIS[cfg.provider]
        provider = _OnFirstCall(api, cfg, keys.get(cfg.name))
        scope = {"provider": cfg.provider, "base_url": cfg.base_url or api.base_url, "model": cfg.model}
    # The SDK enforces `timeout` itself and closes the connection cleanly; the policy's own limit is a backstop
    # (cancelling a request from outside can leave a pooled connection unusable).
    policy = RetryPolicy(max_attempts=cfg.max_attempts, timeout=cfg.timeout * 2 + 1, base_delay=cfg.backoff)
    endpoint = Endpoint(provider, asyncio.Semaphore(cfg.max_concurrency), policy, seed, cache=cache,
                        scope=scope, limiter=RateLimiter(cfg.requests_per_minute, cfg.tokens_per_minute),
                        budget=budget, price=batch_price((prices or {}).get(cfg.model), cfg.batch),
                        scrubber=Scrubber(keys.values()))
    if cfg.batch and wrap is not None:
        wrap(endpoint)
    return endpoint
