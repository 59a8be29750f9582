"""Bilan: an evaluation harness for health chatbots in the languages of Morocco, in the style of HealthBench.

Public API: `load_run(path)` reads a run directory into tidy pandas DataFrames (answers, verdicts, scores).
"""
from __future__ import annotations

from typing import Any

__all__ = ["load_run"]


def __getattr__(name: str) -> Any:
    # Imported on first use, so that `bilan validate` does not pay for pandas.
    if name == "load_run":
        from .analyze import load_run
        return load_run
    raise AttributeError(f"module 'harness' has no attribute {name!r}")
