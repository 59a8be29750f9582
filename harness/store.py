"""The run directory: manifest, append-only results, summary; read back for reports and resume."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

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


def read_results(run_dir: Path) -> list[dict[str, Any]]:
    """Every row of results.jsonl; a half-written last line (from a crash) is cut off the file, nothing else."""
    path = Path(run_dir) / RESULTS
    if not path.exists():
        return []
    raw = path.read_bytes()
    lines = raw.splitlines(keepends=True)
    rows, good_end = [], 0
    for number, line in enumerate(lines, 1):
        try:
            rows.append(json.loads(line))
        except (json.JSONDecodeError, UnicodeDecodeError):
            if number < len(lines):
                raise ValueError(f"{path}:{number}: corrupt result row; expected one JSON object per line") from None
            break
        if not line.endswith(b"\n"):
            rows.pop()
            break
        good_end += len(line)
    if good_end < len(raw):
        with open(path, "r+b") as f:
            f.truncate(good_end)
    return rows


def read_json(path: Path) -> Any:
    """Read a JSON file."""
    return json.loads(Path(path).read_text(encoding="utf-8"))
