"""The one table of model APIs Bilan calls through an official SDK: what a new provider adds, in one place.

Each row names its adapter (a class in harness/providers/, imported on first use: the SDKs take a second or more
to import), its default base URL, the environment variable its key is read from, and its batch adapter. The
config schema's provider list is this table's names plus the providers that call no model (replay, rules,
labels); tests/test_providers.py keeps the two equal.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ModelAPI:
    """One model API: where its adapters live and the defaults an endpoint of it takes."""

    name: str
    adapter: str          # "module:Class" under harness.providers: complete(messages, params) -> Reply
    base_url: str
    key_env: str
    batch_adapter: str | None = None    # "module:Class" under harness.providers: the batch API, if it has one

    def load(self, which: str = "adapter") -> Any:
        """The adapter class (or the batch adapter's), imported now."""
        module, _, name = str(getattr(self, which)).partition(":")
        return getattr(importlib.import_module(f"harness.providers.{module}"), name)


MODEL_APIS = {
    "openai": ModelAPI("openai", "openai:OpenAIProvider", "https://api.openai.com/v1", "OPENAI_API_KEY",
                       "batch:OpenAIBatches"),
    "anthropic": ModelAPI("anthropic", "anthropic:AnthropicProvider", "https://api.anthropic.com",
                          "ANTHROPIC_API_KEY", "batch:AnthropicBatches"),
}
NO_MODEL = ("replay", "rules", "labels")     # providers that call no model: recorded answers, checks, labels


def with_batch_api() -> list[str]:
    """The model APIs that have a batch adapter."""
    return [name for name, api in MODEL_APIS.items() if api.batch_adapter]
