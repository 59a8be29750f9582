"""Read YAML with the line and column of every value, YAML 1.2 scalars, and every problem located."""
from __future__ import annotations

import codecs
import contextlib
import hashlib
import marshal
import os
import re
import sqlite3
import stat
import sys
from collections.abc import Iterator
from contextvars import ContextVar
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
    if node.style:                   # quoted or block scalars are always strings (plain: None, or '' from libyaml)
        return node.value
    value = node.value
    if value in _NULL:
        return None
    if value in _BOOL:
        return _BOOL[value]
    if _INT.match(value):
        try:
            return int(value)
        except ValueError:           # more digits than Python converts: no count or id is that long
            return value
    if _FLOAT.match(value) and any(c.isdigit() for c in value):
        return float(value)
    return value


_SURROGATE = re.compile("[\ud800-\udfff]")
ALIASES = "anchors and aliases (&name, *name) are not supported; expected the value written out"


class _AliasNode(yaml.Node):
    """An alias left unresolved, at its own position: aliases are refused, so none is ever expanded."""

    id = "alias"


class _Loader(yaml.SafeLoader):
    """SafeLoader that never resolves an alias (no "billion laughs"): it becomes an _AliasNode, reported once."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.get_event()
            return _AliasNode("alias", event.anchor, event.start_mark, event.end_mark)
        return super().compose_node(parent, index)


DEEP = f"nesting deeper than {MAX_DEPTH} levels; expected at most {MAX_DEPTH} levels of lists and mappings"


class _Builder:
    def __init__(self, doc: Document, problems: list[Problem]):
        self.doc, self.problems, self.aliases, self.first_alias = doc, problems, 0, 0

    def build(self, node: yaml.Node, path: JsonPath, depth: int = 0) -> Any:
        self.doc.marks[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
        if depth > MAX_DEPTH:
            self.problems.append(Problem(self.doc.path, *self.doc.marks[path], DEEP))
            self.doc.broken.add(path)
            return None
        if isinstance(node, _AliasNode):
            self.aliases += 1
            if self.aliases == 1:       # the first only: an alias bomb would otherwise give thousands of lines
                self.first_alias = len(self.problems)
                self.problems.append(self.doc.problem(path, ALIASES))
            self.doc.broken.add(path)
            return None
        if isinstance(node, yaml.ScalarNode):
            if found := _SURROGATE.search(node.value):     # "\ud800" in a quoted scalar: no file or page holds it
                self.problems.append(self.doc.problem(path,
                                                      f"a lone surrogate (U+{ord(found.group()):04X}, half of a UTF-16 "
                                                      "pair) is not a character; expected valid Unicode text"))
                self.doc.broken.add(path)
                return None
            return _scalar(node)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(child, path + (i,), depth + 1) for i, child in enumerate(node.value)]
        return self._mapping(node, path, depth)

    def _mapping(self, node: yaml.MappingNode, path: JsonPath, depth: int) -> dict:
        out: dict[str, Any] = {}
        first_line: dict[str, int] = {}
        for key_node, value_node in node.value:
            key_mark = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            prefix = f"{dotted(path)}: " if path else ""
            if not isinstance(key_node, yaml.ScalarNode):
                what = "an alias" if isinstance(key_node, _AliasNode) else "a list or mapping"
                self.problems.append(Problem(self.doc.path, *key_mark,
                                             f"{prefix}{what} used as a key; expected a plain word such as 'title'"))
                continue
            key = str(key_node.value)
            if key == "<<":
                self.problems.append(Problem(self.doc.path, *key_mark, f"{prefix}merge keys (<<) are not supported; "
                                                                       "expected the keys written out"))
                self.doc.broken.add(path)
                continue
            child = path + (key,)
            if key in out:
                self.problems.append(Problem(self.doc.path, *key_mark,
                                             f"{dotted(child)}: duplicate key '{key}' (first given on line "
                                             f"{first_line[key]}); expected each key once"))
                continue
            first_line[key] = key_mark[0]
            self.doc.key_marks[child] = key_mark
            out[key] = self.build(value_node, child, depth + 1)
        return out


_FOUND = {"'-'": "list item '-'", "'<block mapping start>'": "key", "'<block sequence start>'": "list", "'?'": "key",
          "'<scalar>'": "text", "'<block end>'": "end of a block"}


def _yaml_error(path: str, exc: yaml.MarkedYAMLError) -> Problem:
    """A PyYAML error in a clinician's words: where it is, what was wrong, what was expected."""
    problem, context = exc.problem or str(exc), exc.context or ""
    mark = exc.problem_mark or exc.context_mark
    opened = exc.context_mark
    at = f"line {opened.line + 1}, column {opened.column + 1}" if opened else ""
    if "'\\t'" in problem or "\\t" in problem:
        text = "a tab character; expected spaces (YAML indentation must use spaces)"
    elif "quoted scalar" in context and "end of stream" in problem and opened:
        mark, text = opened, "this quoted text is never closed; expected a closing quote before the end of the file"
    elif context in ("while parsing a flow sequence", "while parsing a flow mapping") and opened:
        bracket, close = ("[", "]") if "sequence" in context else ("{", "}")
        text = (f"the '{bracket}' opened at {at} is not closed; expected ',' or '{close}' (a text holding ': ', ',' or "
                f"'{close}' needs quotes)")
    elif "simple key" in context and opened:
        mark, text = (opened, "this line has no ':'; expected 'key: value', or quotes around a text that continues the "
                              "line above")
    elif problem == "mapping values are not allowed here":
        text = ("a ':' where no key can start; expected quotes around a text holding ': ', or this key lined up with "
                "the keys above it")
    elif "expected <block end>" in problem and opened:
        found = problem.rsplit("but found ", 1)[-1]
        text = (f"unexpected {_FOUND.get(found, found)}: its indentation does not fit the block that starts at {at}; "
                "expected it lined up with the lines above it, or indented under a key")
    elif "cannot start any token" in problem:
        text = (f"{problem.split('found character ', 1)[-1].split(' that')[0]} cannot start a value; expected the text "
                "in quotes")
    elif "unknown escape character" in problem:
        char = problem.rsplit(" ", 1)[-1].strip("'")
        text = (f"unknown escape '\\{char}' in a double-quoted text; expected '\\\\' for a backslash, or single quotes "
                "around the text")
    elif "flow node" in context and problem.endswith("but found ','"):
        text = "a ',' with no value before it; expected a value between commas (or remove the extra comma)"
    elif problem.startswith("expected '<document start>'"):
        text = "text after the end of the document ('...'); expected one document per file, with nothing after '...'"
    elif "alias" in problem or "alias" in context or "anchor" in context:
        text = ALIASES
    else:
        text = f"{context}, {problem}" if context else problem
    line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    return Problem(path, line, col, f"invalid YAML: {text}")


def _reader_error(path: str, text: str, exc: yaml.reader.ReaderError) -> Problem:
    """A character YAML refuses (a control character), located."""
    before = text[: exc.position] if isinstance(exc.position, int) else ""
    line, col = before.count("\n") + 1, len(before) - (before.rfind("\n") + 1) + 1
    return Problem(path, line, col, f"invalid YAML: the non-printable character U+{exc.character:04X} is not allowed; "
                   "expected printable text (delete the character)")


def _too_deep(path: str, text: str) -> Problem:
    """Where a file nests lists and mappings deeper than MAX_DEPTH (the parser is not recursive; the composer is)."""
    depth = 0
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH + 1:
                    return Problem(path, event.start_mark.line + 1, event.start_mark.column + 1, DEEP)
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    except yaml.MarkedYAMLError as exc:
        return _yaml_error(path, exc)
    return Problem(path, 1, 1, DEEP)


def read_text(path: Path, display: str, limit: int = MAX_BYTES) -> tuple[str | None, list[Problem]]:
    """Read a UTF-8 text file, locating an undecodable byte or refusing a file over the size limit."""
    try:        # the size and kind first: a FIFO would block, /dev/zero would read until memory runs out
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            return None, [Problem(display, 0, 0,
                                  "not a regular file (a pipe, a device or a socket); expected a text file")]
        if info.st_size > limit:
            return None, [Problem(display, 1, 1, f"file is {info.st_size:,} bytes; expected at most {limit:,} bytes "
                                                 "(split it into several files)")]
        with open(path, "rb") as f:
            raw = f.read(limit + 1)     # a file that grew since
    except OSError as exc:
        return None, [Problem(display, 0, 0, f"cannot read file: {exc.strerror or exc}")]
    if len(raw) > limit:
        return None, [Problem(display, 1, 1, f"file is over {limit:,} bytes; expected at most {limit:,} bytes (split "
                                             "it into several files)")]
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or b"\x00" in raw[:4096]:
        return None, [Problem(display, 1, 1,
                              "the file is UTF-16 or binary; expected UTF-8 text (save the file as UTF-8)")]
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        start = raw.rfind(b"\n", 0, exc.start) + 1
        line = raw[: exc.start].count(b"\n") + 1
        col = len(raw[start: exc.start].decode("utf-8", "replace")) + 1
        return None, [Problem(display, line, col,
                              f"byte 0x{raw[exc.start]:02x} is not UTF-8 (the file looks saved as Latin-1 or "
                              "Windows-1252); expected UTF-8 text (save the file as UTF-8)")]
    return text, []


_CLoader = getattr(yaml, "CSafeLoader", None)


def _shares_a_node(nodes: list) -> bool:
    """True if a node is reached twice: libyaml composes an alias as the anchored node itself (never a copy)."""
    seen: set[int] = set()
    stack = list(nodes)
    while stack:
        node = stack.pop()
        if id(node) in seen:
            return True
        seen.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
        elif isinstance(node, yaml.MappingNode):
            stack.extend(part for pair in node.value for part in pair)
    return False


def _compose(text: str) -> list:
    """The document nodes: through libyaml when it is there and the text cannot nest deeply (the common case, many
    times faster); otherwise, when libyaml's nodes hold an alias, or on any error, through the pure-Python loader,
    which keeps aliases unresolved and gives the exact messages."""
    shallow = text.count("[") + text.count("{") < 100 and \
        max((len(l) - len(l.lstrip(" ")) for l in text.splitlines()), default=0) < 2 * MAX_DEPTH
    if _CLoader is not None and shallow:
        try:
            nodes = list(yaml.compose_all(text, Loader=_CLoader))
            # Only an anchor (&name) can be reached twice; a text without '&' holds none.
            if "&" not in text or not _shares_a_node(nodes):
                return nodes
        except (yaml.YAMLError, RecursionError):
            pass
    return list(yaml.compose_all(text, Loader=_Loader))


class ParseCache:
    """Parsed documents by the hash of their text, in SQLite: a file whose text was parsed before, by this same
    parser, is not parsed again. Only a parse that found no problem is kept (a file with problems is read afresh,
    so its messages are always today's). It only ever saves time: a cache that cannot be opened, read or written
    is no cache, and the file is parsed."""

    def __init__(self, path: Path):
        self._db: sqlite3.Connection | None = None
        self._new: dict[str, bytes] = {}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, timeout=10, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS documents (key TEXT PRIMARY KEY, value BLOB NOT NULL)")
        except (OSError, sqlite3.Error):
            self.close()

    @staticmethod
    def key(text: str) -> str:
        return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=20, key=_parser_id()).hexdigest()

    def get(self, text: str, display: str) -> Document | None:
        """The document parsed from this very text before (positions and all, located at `display`), or None."""
        if self._db is None:
            return None
        try:
            row = self._db.execute("SELECT value FROM documents WHERE key = ?", (self.key(text),)).fetchone()
            data, marks, key_marks, broken = marshal.loads(row[0]) if row else (None, None, None, None)
        except (sqlite3.Error, ValueError, EOFError, TypeError):
            return None
        if not (isinstance(marks, dict) and isinstance(key_marks, dict) and isinstance(broken, tuple)):
            return None
        return Document(display, data, marks, key_marks, broken=set(broken))

    def put(self, text: str, doc: Document) -> None:
        """Keep a document parsed without problems; written when the cache is closed."""
        if self._db is not None:
            self._new[self.key(text)] = marshal.dumps((doc.data, doc.marks, doc.key_marks, tuple(doc.broken)))

    def close(self) -> None:
        """Write the documents parsed since it opened, in one transaction, and close."""
        if self._db is None:
            return
        try:
            if self._new:
                with self._db:
                    self._db.execute("BEGIN")
                    self._db.executemany("INSERT OR REPLACE INTO documents (key, value) VALUES (?, ?)",
                                         self._new.items())
        except sqlite3.Error:
            pass
        finally:
            self._db.close()
            self._db, self._new = None, {}


_PARSER_ID: list[bytes] = []
_CACHE: ContextVar[ParseCache | None] = ContextVar("bilan_parse_cache", default=None)


def _parser_id() -> bytes:
    """What a cached document depends on besides its text: this module's code, and Python's marshal format."""
    if not _PARSER_ID:
        _PARSER_ID.append(hashlib.blake2b(Path(__file__).read_bytes() + f"{sys.version_info[:2]} {marshal.version} "
                                          f"{yaml.__version__}".encode(), digest_size=32).digest())
    return _PARSER_ID[0]


@contextlib.contextmanager
def parse_cache(path: Path | None) -> Iterator[None]:
    """Within the block, parse_yaml reads and keeps parsed documents in the cache at `path` (None: no cache)."""
    cache = ParseCache(path) if path is not None else None
    token = _CACHE.set(cache)
    try:
        yield
    finally:
        _CACHE.reset(token)
        if cache is not None:
            cache.close()


def parse_yaml(path: Path, display: str) -> tuple[Document | None, list[Problem]]:
    """Parse one YAML file into a Document, or return the problems that prevent it (inside `parse_cache`, a text
    parsed before comes from the cache)."""
    text, problems = read_text(path, display)
    if text is None:
        return None, problems
    cache = _CACHE.get()
    if cache is not None and (doc := cache.get(text, display)) is not None:
        return doc, problems
    if not text.strip() or all(not l.strip() or l.lstrip().startswith("#") for l in text.splitlines()):
        return None, [Problem(display, 1, 1, "file is empty; expected a YAML mapping")]
    try:
        nodes = _compose(text)
    except yaml.MarkedYAMLError as exc:
        return None, [_yaml_error(display, exc)]
    except yaml.reader.ReaderError as exc:
        return None, [_reader_error(display, text, exc)]
    except RecursionError:
        return None, [_too_deep(display, text)]
    except yaml.YAMLError as exc:
        return None, [Problem(display, 1, 1, f"invalid YAML: {exc}; expected a plain YAML mapping")]
    nodes = [n for n in nodes if n is not None]
    if not nodes:
        return None, [Problem(display, 1, 1, "file holds no value; expected a YAML mapping")]
    if len(nodes) > 1:
        mark = nodes[1].start_mark
        return None, [Problem(display, mark.line + 1, mark.column + 1,
                              "a second YAML document starts here (after '---'); expected one document per file")]
    doc = Document(display, None)
    builder = _Builder(doc, problems)
    try:
        doc.data = builder.build(nodes[0], ())
    except RecursionError:
        return None, [_too_deep(display, text)]
    if builder.aliases > 1:
        first = problems[builder.first_alias]
        problems[builder.first_alias] = Problem(first.path, first.line, first.col,
                                                f"{first.message} ({builder.aliases} aliases in this file)")
    if cache is not None and not problems:
        cache.put(text, doc)
    return doc, problems
