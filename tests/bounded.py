"""A bounded wait for a hang: a call that has not returned after a generous limit fails its test as a hang.

This is no speed claim: a loaded machine may make a call a hundred times slower and it still passes. How fast
things are is measured in benchmarks/ (BENCHMARKS.md), never asserted by a test.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

import pytest

T = TypeVar("T")
HANG_LIMIT = 300.0     # seconds; the calls guarded take milliseconds to a few seconds


def finishes(call: Callable[..., T], *args: Any, limit: float = HANG_LIMIT, **kwargs: Any) -> T:
    """call(*args, **kwargs), run in a daemon thread; its result, or its exception; a test failure if it hangs."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = call(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            outcome["error"] = exc

    thread = threading.Thread(target=run, name="bounded-call", daemon=True)
    thread.start()
    thread.join(limit)
    if thread.is_alive():
        pytest.fail(f"{getattr(call, '__qualname__', call)} did not return within {limit:g} s: it hangs")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]
