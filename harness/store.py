"""The run directory: manifest, append-only results, summary; read back for reports and resume."""
from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

from . import jsonl
from .errors import InputError, Problem, display

RESULTS = "results.jsonl"
MANIFEST = "manifest.json"
SUMMARY = "summary.json"


def write_json(path: Path, value: Any) -> None:
    """Write JSON atomically: a reader sees the old file or the new one, never half of one."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, ensure_ascii=False, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


class RunStore:
    """Appends each result as soon as it exists, flushed, one JSON object per line."""

    def __init__(self, run_dir: Path):
        self.dir = Path(run_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._file = open(self.dir / RESULTS, "a", encoding="utf-8")

    def append(self, row: dict[str, Any]) -> None:
        """Append one result row and flush it to the operating system."""
        self._file.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._file.flush()

    def close(self) -> None:
        """Close the results file."""
        self._file.close()

    def __enter__(self) -> "RunStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_results(run_dir: Path, repair: bool = False) -> list[dict[str, Any]]:
    """Every complete row of results.jsonl. A half-written last line (a crash, or a run in progress) is left out,
    and cut off the file only with `repair` (a resume about to append); any other bad line is an InputError."""
    path = Path(run_dir) / RESULTS
    if not path.exists():
        return []
    raw = path.read_bytes()
    complete = raw[:raw.rfind(b"\n") + 1]          # a last line without its newline was never finished
    try:
        text = complete.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = complete[:exc.start].count(b"\n") + 1
        raise InputError([Problem(display(path), line, 1, "not UTF-8 text; expected one result object per line")]) from None
    rows, problems = [], []
    for number, row in jsonl.objects(text):
        if isinstance(row, jsonl.LineError):
            problems.append(Problem(display(path), number, row.col, f"corrupt result row: {row.message}; expected one "
                                    "result object per line, as `bilan run` writes them"))
        else:
            rows.append(row)
    if problems:
        raise InputError(problems)
    if repair and len(complete) < len(raw):
        with open(path, "r+b") as f:
            f.truncate(len(complete))
    return rows


def read_json(path: Path) -> Any:
    """Read a JSON file."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


# --- response cache ---------------------------------------------------------------------------------


def cache_key(parts: dict[str, Any]) -> str:
    """Content address of a model call: SHA-256 of everything that determines its reply, canonically encoded."""
    blob = json.dumps(parts, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class ResponseCache:
    """Successful model replies by content address, in SQLite (WAL): safe for concurrent runs and shards."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, timeout=60, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS replies (key TEXT PRIMARY KEY, text TEXT NOT NULL, "
                         "input_tokens INTEGER, output_tokens INTEGER, latency REAL, created TEXT DEFAULT CURRENT_TIMESTAMP)")

    def get(self, key: str) -> tuple[str, int, int, float] | None:
        """The stored reply (text, input tokens, output tokens, latency) or None."""
        with self._lock:
            row = self._db.execute("SELECT text, input_tokens, output_tokens, latency FROM replies WHERE key = ?", (key,)).fetchone()
        return tuple(row) if row else None

    def put(self, key: str, text: str, input_tokens: int, output_tokens: int, latency: float) -> None:
        """Store a reply; committed before returning, so a crash right after loses nothing."""
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO replies (key, text, input_tokens, output_tokens, latency) VALUES (?, ?, ?, ?, ?)",
                             (key, text, input_tokens, output_tokens, latency))

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()
