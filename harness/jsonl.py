"""JSON Lines, read one way everywhere (replay answers, labels, HealthBench files, run directories).

Lines are split on "\\n" only: a JSON text may hold a raw U+2028 or U+0085, which `str.splitlines()` would take
for line ends. Each line is one JSON value, parsed strictly: a duplicate key (the last value would silently win),
a lone surrogate ("\\ud800": not a character, and no file can store it), nesting too deep or a number too long is
a problem located at the line, never a crash later.
"""
from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import InputError, Problem, display

_SURROGATE = re.compile("[\ud800-\udfff]")
# What a line must hold for its value to hold a lone surrogate: a raw one, or a \uD800-\uDFFF escape (a line with
# neither is not walked).
_MAY_HOLD_SURROGATE = re.compile(r"[\ud800-\udfff]|\\u[dD][89a-fA-F]")


class LineError(ValueError):
    """A line that is not one valid JSON value: the column and what is wrong, in words."""

    def __init__(self, col: int, message: str):
        super().__init__(message)
        self.col, self.message = col, message


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise LineError(1, f"duplicate key {json.dumps(key, ensure_ascii=False)[:60]}; expected each key once per "
                               "object")
        out[sys.intern(key)] = value       # one string per key name, not one per row: a run's rows share them
    return out


def lone_surrogate(value: Any) -> str | None:
    """The first lone surrogate in any string of a JSON value (keys included), as U+XXXX; else None."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if found := _SURROGATE.search(item):
                return f"U+{ord(found.group()):04X}"
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return None


def loads(line: str) -> Any:
    """One line's JSON value; LineError says what is wrong with it."""
    try:
        value = json.loads(line, object_pairs_hook=_pairs)
    except json.JSONDecodeError as exc:
        raise LineError(exc.colno, f"invalid JSON: {exc.msg}") from None
    except RecursionError:
        raise LineError(1, "invalid JSON: nesting too deep") from None
    except LineError:
        raise
    except ValueError:            # a number too long to convert
        raise LineError(1, "invalid JSON: a number with too many digits") from None
    if _MAY_HOLD_SURROGATE.search(line) and (where := lone_surrogate(value)) is not None:
        raise LineError(1, f"a lone surrogate ({where}, half of a UTF-16 pair) is not a character; expected valid "
                           "Unicode text")
    return value


def lines(text: str) -> Iterator[tuple[int, str]]:
    """(line number, line) for every non-blank line, split on "\\n" only (a Windows "\\r" is dropped)."""
    for number, raw in enumerate(text.split("\n"), 1):
        if raw.strip():
            yield number, raw.removesuffix("\r")


def parse_object(raw: str) -> dict[str, Any] | LineError:
    """One line's JSON object, or the LineError saying why it is not one."""
    try:
        value = loads(raw)
    except LineError as exc:
        return exc
    return value if isinstance(value, dict) else LineError(1, f"a JSON {_kind(value)}, not an object")


def objects(text: str) -> Iterator[tuple[int, dict[str, Any] | LineError]]:
    """(line number, object) for every non-blank line, or (line number, LineError) for a line that is not one."""
    for number, raw in lines(text):
        yield number, parse_object(raw)


def _kind(value: Any) -> str:
    return {list: "array", str: "string", bool: "boolean", type(None): "null"}.get(type(value), "number")


def decode(path: Path, data: bytes, what: str, first_line: int = 1) -> str:
    """A file's bytes (from line `first_line` on) as text; bytes that are not UTF-8 are an InputError at their
    line and column."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        start = data.rfind(b"\n", 0, exc.start) + 1
        line = first_line + data.count(b"\n", 0, exc.start)
        raise InputError([Problem(display(path), line, exc.start - start + 1,
                                  f"not UTF-8 text; expected {what}")]) from None


def read_objects(path: Path, what: str = "one JSON object per line") -> list[dict[str, Any]]:
    """Every object of a JSONL file written by Bilan (a run's cases.jsonl, say); InputError locates every bad line."""
    if not path.exists():
        return []
    found, problems = [], []
    for number, value in objects(decode(path, path.read_bytes(), what)):
        if isinstance(value, LineError):
            problems.append(Problem(display(path), number, value.col, f"{value.message}; expected {what}"))
        else:
            found.append(value)
    if problems:
        raise InputError(problems)
    return found
