"""Hide API keys in text before it is stored or printed: a server's error message may echo the key it refused."""
from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

HIDDEN = "[api key hidden]"
MIN_SECRET = 8          # shorter values are not real keys; hiding them would cut words out of answers
SHOWN_PREFIX = 12      # a key's start this long or longer is hidden too (a message cut short mid-key)
_MASK = r"(?:[*•·]+|\.{2,}|…)+"     # how keys are masked in messages: sk-proj-****abcd, sk-...abcd, sk-ab…cd12


def _prefix(key: str, least: int) -> str:
    """A pattern for any start of the key at least `least` characters long, the longest found."""
    tail = ""
    for ch in reversed(key[least:]):
        tail = f"(?:{re.escape(ch)}{tail})?"
    return re.escape(key[:least]) + tail


class Scrubber:
    """Replaces each key, and its masked forms (first 8 characters before a mask, last 4 after one), by HIDDEN."""

    def __init__(self, secrets: Iterable[str | None]):
        keys = sorted({s for s in secrets if s and len(s) >= MIN_SECRET}, key=len, reverse=True)
        forms = []
        for key in keys:
            forms.append(_prefix(key, min(len(key), SHOWN_PREFIX)))           # whole, or cut short in a message
            forms.append(rf"[\w-]{{0,16}}{_MASK}[\w-]{{0,16}}{re.escape(key[-4:])}")   # ... last 4 shown
            forms.append(rf"{re.escape(key[:8])}{_MASK}[\w-]*")            # first 8 shown ...
        self.pattern = re.compile("|".join(forms)) if forms else None
        # Every form holds one of these: a plain search for them spares the pattern almost every text.
        self.markers = {part for key in keys for part in (key[:8], key[-4:])}

    def text(self, value: str) -> str:
        """The text with every key hidden."""
        if self.pattern is None or not any(marker in value for marker in self.markers):
            return value
        return self.pattern.sub(HIDDEN, value)

    def value(self, value: Any) -> Any:
        """Every string in a JSON-like value (dicts, lists, tuples) with every key hidden; a new value."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.value(k): self.value(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(self.value(v) for v in value)
        return value
