"""Read YAML with the line and column of every value, YAML 1.2 scalars, and every problem located."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import Problem

MAX_BYTES = 5_000_000
MAX_DEPTH = 40
_INT = re.compile(r"[-+]?[0-9]+\Z")
_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?\Z")
_NULL = {"", "~", "null", "Null", "NULL"}
_BOOL = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}

JsonPath = tuple  # of str keys and int indexes


@dataclass
class Document:
    """A parsed file: plain data plus the position of every value and mapping key."""

    path: str
    data: Any
    marks: dict[JsonPath, tuple[int, int]] = field(default_factory=dict)
    key_marks: dict[JsonPath, tuple[int, int]] = field(default_factory=dict)
    invalid_items: set[int] = field(default_factory=set)   # items of a list that failed their schema
    broken: set[JsonPath] = field(default_factory=set)     # values already reported by the parser
    valid: bool = True                                     # usable as a whole (no problem outside items)

    def where(self, path: JsonPath, key: bool = False) -> tuple[int, int]:
        """Line and column of the value at path (or of its key), falling back to the nearest parent."""
        table = self.key_marks if key else self.marks
        if path in table:
            return table[path]
        while path:
            path = path[:-1]
            if path in self.marks:
                return self.marks[path]
        return (1, 1)

    def problem(self, path: JsonPath, message: str, key: bool = False, severity: str = "error") -> Problem:
        """A Problem located at path, its message prefixed with the dotted path."""
        line, col = self.where(path, key)
        prefix = f"{dotted(path)}: " if path else ""
        return Problem(self.path, line, col, prefix + message, severity)


def dotted(path: JsonPath) -> str:
    """Render a JSON path as `criteria[1].check.regex`."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _scalar(node: yaml.ScalarNode) -> Any:
    # YAML 1.2 core schema for plain scalars: `no` stays a string, only true/false are booleans.
    if node.style is not None:       # quoted or block scalars are always strings
        return node.value
    value = node.value
    if value in _NULL:
        return None
    if value in _BOOL:
        return _BOOL[value]
    if _INT.match(value):
        return int(value)
    if _FLOAT.match(value) and any(c.isdigit() for c in value):
        return float(value)
    return value


class _Builder:
    def __init__(self, doc: Document, problems: list[Problem]):
        self.doc, self.problems, self.seen = doc, problems, set()

    def build(self, node: yaml.Node, path: JsonPath, depth: int = 0) -> Any:
        self.doc.marks[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
        if depth > MAX_DEPTH:
            self.problems.append(self.doc.problem(path, f"nesting deeper than {MAX_DEPTH} levels; expected a flat file"))
            return None
        if id(node) in self.seen:
            self.problems.append(self.doc.problem(path, "anchors and aliases (&name, *name) are not supported; write the value out", key=True))
            self.doc.broken.add(path)
            return None
        self.seen.add(id(node))
        if isinstance(node, yaml.ScalarNode):
            return _scalar(node)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(child, path + (i,), depth + 1) for i, child in enumerate(node.value)]
        return self._mapping(node, path, depth)

    def _mapping(self, node: yaml.MappingNode, path: JsonPath, depth: int) -> dict:
        out: dict[str, Any] = {}
        first_line: dict[str, int] = {}
        for key_node, value_node in node.value:
            key_mark = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            if not isinstance(key_node, yaml.ScalarNode):
                self.problems.append(Problem(self.doc.path, *key_mark, f"{dotted(path) + ': ' if path else ''}a key must be a plain word"))
                continue
            key = str(key_node.value)
            if key == "<<":
                self.problems.append(Problem(self.doc.path, *key_mark, "merge keys (<<) are not supported; write the keys out"))
                continue
            child = path + (key,)
            if key in out:
                self.problems.append(Problem(self.doc.path, *key_mark,
                                             f"{dotted(child)}: duplicate key '{key}' (first given on line {first_line[key]})"))
                continue
            first_line[key] = key_mark[0]
            self.doc.key_marks[child] = key_mark
            out[key] = self.build(value_node, child, depth + 1)
        return out


def _yaml_error(path: str, exc: yaml.MarkedYAMLError) -> Problem:
    mark = exc.problem_mark or exc.context_mark
    line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    text = exc.problem or str(exc)
    if "'\\t'" in text or "\\t" in text:
        text = "a tab character; YAML indentation must use spaces"
    elif exc.context:
        text = f"{exc.context}, {text}"
    return Problem(path, line, col, f"invalid YAML: {text}")


def read_text(path: Path, display: str, limit: int = MAX_BYTES) -> tuple[str | None, list[Problem]]:
    """Read a UTF-8 text file, locating an undecodable byte or refusing a file over the size limit."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        return None, [Problem(display, 0, 0, f"cannot read file: {exc.strerror or exc}")]
    if len(raw) > limit:
        return None, [Problem(display, 1, 1, f"file is {len(raw):,} bytes; expected at most {limit:,}")]
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        return None, [Problem(display, line, col, f"byte 0x{raw[exc.start]:02x} is not UTF-8; save the file as UTF-8")]
    return text, []


def parse_yaml(path: Path, display: str) -> tuple[Document | None, list[Problem]]:
    """Parse one YAML file into a Document, or return the problems that prevent it."""
    text, problems = read_text(path, display)
    if text is None:
        return None, problems
    if not text.strip() or all(not l.strip() or l.lstrip().startswith("#") for l in text.splitlines()):
        return None, [Problem(display, 1, 1, "file is empty; expected a YAML mapping")]
    try:
        nodes = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
    except yaml.MarkedYAMLError as exc:
        return None, [_yaml_error(display, exc)]
    except (yaml.YAMLError, RecursionError) as exc:
        return None, [Problem(display, 1, 1, f"invalid YAML: {type(exc).__name__}; expected a plain YAML mapping")]
    nodes = [n for n in nodes if n is not None]
    if len(nodes) != 1:
        return None, [Problem(display, 1, 1, f"found {len(nodes)} YAML documents; expected exactly one")]
    doc = Document(display, None)
    try:
        doc.data = _Builder(doc, problems).build(nodes[0], ())
    except RecursionError:
        return None, [Problem(display, 1, 1, "nesting too deep; expected a flat file")]
    return doc, problems
