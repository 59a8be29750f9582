"""Anthropic messages via the official SDK."""
from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import anthropic

from ..errors import TransientError
from ..types import EndpointConfig, Message
from .base import GenParams, Reply, clients_for, usage_of
from .capped import capped_client, post_json, sdk_error

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
            response = await post_json(self.clients[self.turn % len(self.clients)], anthropic, "/v1/messages",
                                       request_body(self.endpoint.model, messages, params))
        except Exception as exc:  # every SDK failure becomes a classified value for the retry policy
            raise sdk_error(exc, anthropic) from None
        return reply_of(response, time.perf_counter() - start)


def request_body(model: str, messages: Sequence[Message], params: GenParams) -> dict:
    """The messages request body as the API reads it: the one builder of the synchronous and the batch path."""
    body: dict = {"model": model, "max_tokens": params.max_tokens or DEFAULT_MAX_TOKENS,
                  "messages": [{"role": m.role, "content": m.content} for m in messages]}
    if params.system:
        body["system"] = params.system
    if params.temperature is not None:
        body["temperature"] = params.temperature
    if params.json_schema is not None:
        body["output_config"] = {"format": {"type": "json_schema", "schema": params.json_schema}}
    return body


def reply_of(response: Any, latency: float) -> Reply:
    """A message as the API sends it (JSON) as a Reply: the one reader of the synchronous and the batch path. A
    reply without a list of content blocks is a malformed reply (transient: asked again)."""
    blocks = response.get("content") if isinstance(response, dict) else None
    if not isinstance(blocks, list) or not all(isinstance(b, dict) for b in blocks):
        raise TransientError("malformed reply: no list of content blocks in the message", kind="malformed")
    texts = [b.get("text") for b in blocks if b.get("type") == "text"]
    if not all(isinstance(t, str) for t in texts):
        raise TransientError("malformed reply: a text block without text", kind="malformed")
    usage = response.get("usage")
    usage = usage if isinstance(usage, dict) else {}
    return Reply("".join(texts), usage_of(usage.get("input_tokens", 0), usage.get("output_tokens", 0), latency),
                 refusal=response.get("stop_reason") == "refusal")
