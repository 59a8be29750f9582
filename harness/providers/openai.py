"""OpenAI chat completions, and every OpenAI-compatible server (vLLM, Ollama, llama.cpp), via the official SDK."""
from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import openai

from ..errors import TransientError
from ..types import EndpointConfig, Message
from .base import GenParams, Reply, clients_for, usage_of
from .capped import capped_client, post_json, sdk_error


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
            response = await post_json(client, openai, "/chat/completions",
                                       request_body(self.endpoint.model, messages, params))
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


def reply_of(response: Any, latency: float) -> Reply:
    """A chat completion as the API sends it (JSON) as a Reply: the one reader of the synchronous and the batch
    path. A reply without the fields a chat completion has is a malformed reply (transient: asked again)."""
    choices = response.get("choices") if isinstance(response, dict) else None
    message = choices[0].get("message") if isinstance(choices, list) and choices and isinstance(choices[0], dict) \
        else None
    if not isinstance(message, dict):
        raise TransientError("malformed reply: no choices[0].message in the chat completion", kind="malformed")
    content, refusal = message.get("content"), message.get("refusal")
    if not isinstance(content, (str, type(None))) or not isinstance(refusal, (str, type(None))):
        raise TransientError("malformed reply: the message's content is not text", kind="malformed")
    usage = response.get("usage")
    usage = usage if isinstance(usage, dict) else {}
    text = content if content is not None else (refusal or "")   # a refusal is the answer
    return Reply(text, usage_of(usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0), latency),
                 refusal=bool(refusal))
