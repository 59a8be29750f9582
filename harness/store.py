"""The run directory: manifest, append-only results, summary; read back for reports and resume."""
from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import sqlite3
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from . import jsonl
from .errors import InputError, Problem, display
from .types import Suite

RESULTS = "results.jsonl"
CASES = "cases.jsonl"
MANIFEST = "manifest.json"
SUMMARY = "summary.json"
LOCK = ".lock"


def refuse_symlinks(paths: list[Path]) -> None:
    """An input error naming every path that is a symbolic link: bilan writes its outputs as regular files and
    never through a link, so that no file elsewhere is overwritten or truncated."""
    links = [Path(p) for p in paths if Path(p).is_symlink()]
    if links:
        raise InputError([Problem(str(p), 0, 0,
                                  f"is a symbolic link (to {os.readlink(p)}); bilan does not write through "
                                  "links; expected a regular file or nothing here (remove the link)") for p in links])


def write_file(path: Path, data: str | bytes) -> None:
    """Write a file atomically through a temporary file beside it (a reader sees the old file or the new one,
    never half of one), refusing a path that is a symbolic link. Every writer of run-directory files uses this."""
    path = Path(path)
    refuse_symlinks([path])
    blob = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())        # mkstemp's 0600 would hide reports from the rest of a team
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_json(path: Path, value: Any) -> None:
    """Write JSON atomically (write_file)."""
    write_file(path, json.dumps(value, ensure_ascii=False, indent=2, sort_keys=False) + "\n")


def write_lines(path: Path, rows: Any) -> None:
    """Write JSON rows, one a line, atomically (write_file)."""
    write_file(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


@contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold the run directory for one process: a second one is refused with the holder's pid. An flock on
    run_dir/.lock, which the operating system drops when the process ends, so even a kill -9 leaves no stale lock."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK
    refuse_symlinks([path])
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EACCES):
                raise
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            raise InputError([Problem(str(run_dir), 0, 0,
                                      f"another bilan process (pid {holder}) is using this run directory; expected it "
                                      "to finish first (then --resume), or a different --out folder")]) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode("ascii"), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)         # released: the file is left as it was found
    finally:
        os.close(fd)                    # closing drops the flock


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


class RunStore:
    """Appends each result as soon as it exists, flushed, one JSON object per line."""

    def __init__(self, run_dir: Path):
        self.dir = Path(run_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        refuse_symlinks([self.dir / RESULTS])
        fd = os.open(self.dir / RESULTS, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        self._file = open(fd, "a", encoding="utf-8")

    def append(self, row: dict[str, Any]) -> None:
        """Append one result row and flush it to the operating system."""
        self._file.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._file.flush()

    def close(self) -> None:
        """Close the results file."""
        self._file.close()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_results(run_dir: Path) -> list[dict[str, Any]]:
    """Every complete row of results.jsonl; a half-written last line (from a crash) is left out. Reading never
    changes the file: a resumed run rewrites it without the torn line (results_state says when that is needed)."""
    return results_state(run_dir)[0]


def results_state(run_dir: Path) -> tuple[list[dict[str, Any]], bool]:
    """The complete rows of results.jsonl, and whether the file ends with a torn line. Read a line at a time: the
    file is never held whole beside its rows (a 50,000-verdict run's file is ~40 MB, several times that as text)."""
    path = Path(run_dir) / RESULTS
    if not path.exists():
        return [], False
    rows: list[dict[str, Any]] = []
    problems: list[Problem] = []
    torn = False
    with path.open("rb") as f:
        for number, raw in enumerate(f, 1):
            if not raw.endswith(b"\n"):          # a last line without its newline was never finished
                torn = True
                break
            try:
                line = jsonl.decode(path, raw, "one result object per line", number)
            except InputError as err:
                problems.extend(err.problems)
                continue
            line = line[:-1].removesuffix("\r")
            if not line.strip():
                continue
            row = jsonl.parse_object(line)
            if isinstance(row, jsonl.LineError):
                problems.append(Problem(display(path), number, row.col, f"corrupt result row: {row.message}; expected "
                                        "one result object per line, as `bilan run` writes them"))
            else:
                rows.append(row)
    if problems:
        raise InputError(problems)
    return rows, torn


def read_json(path: Path) -> Any:
    """A JSON file Bilan wrote (manifest, summary); one that is not UTF-8 or not JSON is a located InputError."""
    path = Path(path)
    text = jsonl.decode(path, path.read_bytes(), "a JSON file as Bilan writes it")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError([Problem(display(path), exc.lineno, exc.colno, f"invalid JSON: {exc.msg}; expected a JSON "
                                  "file as Bilan writes it")]) from None


INPUT_SECTIONS = ("suite", "grader", "config", "targets")


def flat_inputs(manifest_data: dict, sections: tuple[str, ...] = INPUT_SECTIONS) -> dict[str, str] | None:
    """A manifest's inputs as one flat mapping, `section: id` -> hash or value; None for a run made before
    bilan recorded them."""
    recorded = manifest_data.get("inputs")
    if recorded is None:
        return None
    out: dict[str, str] = {}
    for section in sections:
        part = recorded.get(section, {})
        if section == "targets":
            out |= {f"target {name}: {key}": value for name, entries in part.items() for key, value in entries.items()}
        else:
            out |= {f"{section}: {key}": value for key, value in part.items()}
    return out


def input_differences(first: dict, other: dict, names: tuple[str, str],
                      sections: tuple[str, ...] = INPUT_SECTIONS) -> list[str]:
    """Each input that differs between two manifests (or is in one only), named; empty when they match."""
    a, b = flat_inputs(first, sections), flat_inputs(other, sections)
    if a is None or b is None:
        which = names[0] if a is None else names[1]
        return [f"the {which} run was made by an older bilan that did not record the content of its inputs; "
                "expected a run made by this version (run it again)"]
    out = []
    for key in sorted(set(a) | set(b)):
        if key not in b:
            out.append(f"{key}: only in the {names[0]} run")
        elif key not in a:
            out.append(f"{key}: only in the {names[1]} run")
        elif a[key] != b[key]:
            out.append(f"{key}: differs ({a[key][:12]} in the {names[0]} run, {b[key][:12]} in the {names[1]} run)")
    return out


# --- response cache ---------------------------------------------------------------------------------


def text_sha256(text: str) -> str:
    """The one text hash: SHA-256 of the text's UTF-8, in hex (labels' answer_sha256, cache keys, prompt hashes)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def cache_key(parts: dict[str, Any]) -> str:
    """Content address of a model call: SHA-256 of everything that determines its reply, canonically encoded."""
    blob = json.dumps(parts, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return text_sha256(blob)


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
                         "input_tokens INTEGER, output_tokens INTEGER, latency REAL, "
                         "created TEXT DEFAULT CURRENT_TIMESTAMP)")

    def get(self, key: str) -> tuple[str, int, int, float] | None:
        """The stored reply (text, input tokens, output tokens, latency) or None."""
        with self._lock:
            row = self._db.execute("SELECT text, input_tokens, output_tokens, latency FROM replies WHERE key = ?",
                                   (key,)).fetchone()
        return tuple(row) if row else None

    def put(self, key: str, text: str, input_tokens: int, output_tokens: int, latency: float) -> None:
        """Store a reply; committed before returning, so a crash right after loses nothing."""
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO replies (key, text, input_tokens, output_tokens, latency) "
                             "VALUES (?, ?, ?, ?, ?)", (key, text, input_tokens, output_tokens, latency))

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()


def job_key(target: str, case_id: str, sample: int) -> tuple[str, str, int]:
    """The identity of one unit of work and of its results row."""
    return (target, case_id, sample)


def snapshot_cases(suite: Suite, run_dir: Path) -> None:
    """Keep each case's title and conversation in the run directory, so reports need nothing else."""
    run_dir.mkdir(parents=True, exist_ok=True)
    write_lines(run_dir / CASES, ({"case_id": c.id, "scenario": c.scenario, "language": c.language, "title": c.title,
                                   "review": c.review, "source": c.source,
                                   "conversation": [{"role": m.role, "content": m.content} for m in c.conversation]}
                                  for c in suite.cases))


def merge(run_dirs: list[Path], out: Path) -> int:
    """Combine shard run directories (same suite and config) into `out`; returns the number of rows."""
    manifests = [read_json(d / MANIFEST) for d in run_dirs]
    problems = []
    for d, m in zip(run_dirs[1:], manifests[1:]):
        names = (str(run_dirs[0]), str(d))
        why = input_differences(manifests[0], m, names)
        if m.get("targets") != manifests[0].get("targets"):
            why.append(f"the targets' settings differ from {run_dirs[0]}'s")
        problems += [Problem(str(d / MANIFEST), 0, 0, f"not a shard of the same configuration as {run_dirs[0]}: {w}; "
                             "expected shards of one configuration") for w in why]
    rows: dict[tuple, dict] = {}
    for d in run_dirs:
        for row in read_results(d):
            key = job_key(row["target"], row["case_id"], row.get("sample", 0))
            if key in rows and rows[key] != row:
                problems.append(Problem(str(d / RESULTS), 0, 0, f"{key} differs from the same row in another shard"))
            rows[key] = row
    if problems:
        raise InputError(problems)
    with run_lock(out):
        refuse_symlinks([out / name for name in (MANIFEST, RESULTS, CASES)])
        write_json(out / MANIFEST, dict(manifests[0], run_id=out.name, shard=None,
                                        merged_from=[str(d) for d in run_dirs]))
        write_file(out / CASES, (run_dirs[0] / CASES).read_bytes())
        write_lines(out / RESULTS, (rows[key] for key in sorted(rows)))
    return len(rows)
