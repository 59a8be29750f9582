"""Errors that cross stage boundaries: located input problems and classified provider failures."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def display(path: Path | str) -> str:
    """A path as shown in messages: relative to the working directory when it is inside it."""
    rel = os.path.relpath(path)
    return rel if not rel.startswith("..") else str(path)


@dataclass(frozen=True, order=True)
class Problem:
    """One located problem in an input file, printed gcc style."""

    path: str
    line: int = 0
    col: int = 0
    message: str = ""
    severity: str = "error"

    def __str__(self) -> str:
        where = self.path
        if self.line:
            where += f":{self.line}:{self.col or 1}"
        return _one_line(f"{where}: {self.severity}: {self.message}")


def _one_line(text: str) -> str:
    """Control, bidi and other invisible characters quoted from a file shown as escapes: one line per problem,
    and no text that reorders or hides the rest of the line on a terminal."""
    return "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in text)


class InputError(Exception):
    """Invalid input: holds every problem found, sorted by file and line."""

    def __init__(self, problems: list[Problem]):
        self.problems = sorted(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class ProviderError(Exception):
    """A model call that failed; `kind` says how (rate_limit, server, timeout, connection, bad_request, ...)."""

    transient = False

    def __init__(self, message: str, kind: str = "error", status: int | None = None,
                 retry_after: float | None = None):
        super().__init__(message)
        self.kind = kind
        self.status = status
        self.retry_after = retry_after


class TransientError(ProviderError):
    """Worth retrying: 429, 5xx, timeouts, dropped connections."""

    transient = True


class PermanentError(ProviderError):
    """Not worth retrying: 400, 401, 403, 404 and other client errors."""
