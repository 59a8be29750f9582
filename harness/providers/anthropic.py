"""Anthropic messages via the official SDK."""
from __future__ import annotations

import time
from collections.abc import Sequence

import anthropic

from ..types import EndpointConfig, Message
from .base import GenParams, Reply, clients_for, usage_of
from .capped import capped_client, sdk_error

DEFAULT_MAX_TOKENS = 2048


class AnthropicProvider:
    """Translate Bilan calls to the messages API; classify errors; never retry (the caller does)."""

    def __init__(self, endpoint: EndpointConfig, api_key: str | None):
        self.name = endpoint.name
        self.endpoint = endpoint
        self.clients = [anthropic.AsyncAnthropic(api_key=api_key or "not-needed", base_url=endpoint.base_url,
                                                 max_retries=0, timeout=endpoint.timeout,
                                                 http_client=capped_client(anthropic, endpoint.max_reply_bytes))
                        for _ in range(clients_for(endpoint.max_concurrency))]
        self.turn = 0

    async def complete(self, messages: Sequence[Message], params: GenParams) -> Reply:
        """One message."""
        start = time.perf_counter()
        try:
            self.turn += 1
            response = await self.clients[self.turn % len(self.clients)].messages.create(
                **request_body(self.endpoint.model, messages, params))
        except Exception as exc:  # every SDK failure becomes a classified value for the retry policy
            raise sdk_error(exc, anthropic) from None
        return reply_of(response, time.perf_counter() - start)


def request_body(model: str, messages: Sequence[Message], params: GenParams, wire: bool = False) -> dict:
    """The messages request body: the one builder of the synchronous and the batch path. `wire`: as the API reads
    it (a batch request's params), not as messages.create takes it (temperature through extra_body)."""
    body: dict = {"model": model, "max_tokens": params.max_tokens or DEFAULT_MAX_TOKENS,
                  "messages": [{"role": m.role, "content": m.content} for m in messages]}
    if params.system:
        body["system"] = params.system
    if params.temperature is not None:
        # anthropic 2.x dropped `temperature` from messages.create's signature; the API still takes it.
        if wire:
            body["temperature"] = params.temperature
        else:
            body["extra_body"] = {"temperature": params.temperature}
    if params.json_schema is not None:
        body["output_config"] = {"format": {"type": "json_schema", "schema": params.json_schema}}
    return body


def reply_of(response, latency: float) -> Reply:
    """A message (the SDK's object) as a Reply: the one reader of the synchronous and the batch path."""
    text = "".join(block.text for block in response.content if getattr(block, "type", "") == "text")
    usage = response.usage
    return Reply(text, usage_of(getattr(usage, "input_tokens", 0), getattr(usage, "output_tokens", 0), latency),
                 refusal=response.stop_reason == "refusal")
