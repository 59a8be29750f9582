"""OpenAI chat completions, and every OpenAI-compatible server (vLLM, Ollama, llama.cpp), via the official SDK."""
from __future__ import annotations

import time
from collections.abc import Sequence

import openai

from ..types import EndpointConfig, Message
from .base import GenParams, Reply, classify_sdk_error, clients_for, usage_of
from .capped import capped_client, sdk_error


class OpenAIProvider:
    """Translate Bilan calls to chat completions; classify errors; never retry (the caller does)."""

    def __init__(self, endpoint: EndpointConfig, api_key: str | None):
        self.name = endpoint.name
        self.endpoint = endpoint
        # Local servers often need no key; the SDK insists on one, so a placeholder is sent to them only.
        # Several clients share the calls: the HTTP pool scans all its connections on every request, so one
        # pool per CLIENT_SLOTS concurrent calls keeps that cost flat at high concurrency.
        self.clients = [openai.AsyncOpenAI(api_key=api_key or "not-needed", base_url=endpoint.base_url,
                                           max_retries=0, timeout=endpoint.timeout,
                                           http_client=capped_client(openai, endpoint.max_reply_bytes))
                        for _ in range(clients_for(endpoint.max_concurrency))]
        self.turn = 0

    async def complete(self, messages: Sequence[Message], params: GenParams) -> Reply:
        """One chat completion."""
        start = time.perf_counter()
        try:
            self.turn += 1
            client = self.clients[self.turn % len(self.clients)]
            response = await client.chat.completions.create(**request_body(self.endpoint.model, messages, params))
        except Exception as exc:  # every SDK failure becomes a classified value for the retry policy
            raise sdk_error(exc, openai) from None
        return reply_of(response, time.perf_counter() - start)


def request_body(model: str, messages: Sequence[Message], params: GenParams) -> dict:
    """The chat completions request body: the one builder of the synchronous and the batch path."""
    wire = ([{"role": "system", "content": params.system}] if params.system else [])
    wire += [{"role": m.role, "content": m.content} for m in messages]
    body: dict = {"model": model, "messages": wire}
    if params.temperature is not None:
        body["temperature"] = params.temperature
    if params.max_tokens is not None:
        body["max_tokens"] = params.max_tokens
    if params.json_schema is not None:
        body["response_format"] = {"type": "json_schema",
                                   "json_schema": {"name": "verdict", "schema": params.json_schema, "strict": True}}
    return body


def reply_of(response, latency: float) -> Reply:
    """A chat completion (the SDK's object) as a Reply: the one reader of the synchronous and the batch path."""
    if not response.choices:
        raise classify_sdk_error(ValueError("no choices"), openai)
    message = response.choices[0].message
    refusal = getattr(message, "refusal", None)
    text = message.content if message.content is not None else (refusal or "")   # a refusal is the answer
    usage = response.usage
    return Reply(text, usage_of(getattr(usage, "prompt_tokens", 0), getattr(usage, "completion_tokens", 0), latency),
                 refusal=bool(refusal))
