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
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from itertools import islice
from pathlib import Path
from typing import Any, BinaryIO

from . import jsonl
from .errors import InputError, Problem, display
from .types import CriterionResult, ResultRow, Suite, Usage

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


def write_file(path: Path, data: str | bytes | Iterable[str]) -> None:
    """Write a file atomically through a temporary file beside it (a reader sees the old file or the new one,
    never half of one), refusing a path that is a symbolic link. Every writer of run-directory files uses this.
    `data` may be text chunks (a template's output as it is made): a page is then never held whole in memory."""
    path = Path(path)
    refuse_symlinks([path])
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())        # mkstemp's 0600 would hide reports from the rest of a team
        with os.fdopen(fd, "wb") as f:
            if isinstance(data, str):
                data = data.encode("utf-8")
            if isinstance(data, bytes):
                f.write(data)
            else:
                _write_chunks(f, data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _write_chunks(f: BinaryIO, chunks: Iterable[str], count: int = 4096) -> None:
    """Text chunks written as UTF-8, `count` chunks a write (a template's chunks are mostly a few characters)."""
    chunks = iter(chunks)
    while batch := list(islice(chunks, count)):        # a list: a batch of empty chunks is not the end
        f.write("".join(batch).encode("utf-8"))


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _usage(value: dict | None) -> Usage | None:
    return Usage(**value) if value else None


def criterion_result(v: dict[str, Any]) -> CriterionResult:
    """One verdict record of a result row as results.jsonl holds it (a KeyError names a required key it lacks)."""
    return CriterionResult(v["id"], v["points"], v["axis"], v["met"], v.get("rubric"), v.get("text"),
                           tuple(v.get("tags") or ()), v.get("grader"), v.get("explanation"), v.get("error"),
                           bool(v.get("check")), v.get("error_kind"), _usage(v.get("usage")), v.get("grader_mode", ""),
                           v.get("prompt_version", ""), v.get("check_met"), v.get("model_met"))


def as_row(r: dict[str, Any] | ResultRow) -> ResultRow:
    """A result row as results.jsonl holds it (a parsed line) as a typed record; a record is returned as it is.
    The one reader of the row format: every module reads rows through this (read_results)."""
    if isinstance(r, ResultRow):
        return r
    return ResultRow(r["target"], r["case_id"], r["language"], r.get("scenario"), tuple(r.get("code_switch") or ()),
                     r.get("theme"), r.get("use_case"), r.get("persona"), r.get("sample", 0), r.get("status"),
                     r.get("answer"), bool(r.get("refusal")), r.get("error"), r.get("error_kind"),
                     _usage(r.get("usage")) or Usage(), r.get("score"), r.get("axis_scores") or {},
                     r.get("graded", 0), r.get("ungraded", 0), r.get("answer_variety"),
                     tuple(criterion_result(v) for v in r.get("verdicts") or ()))


def criterion_json(v: CriterionResult) -> dict[str, Any]:
    """A verdict record as results.jsonl holds it (the optional keys only when they are set)."""
    out: dict[str, Any] = {"id": v.id, "rubric": v.rubric, "text": v.text, "points": v.points, "axis": v.axis,
                           "tags": list(v.tags), "met": v.met, "grader": v.grader, "explanation": v.explanation,
                           "error": v.error, "check": v.check}
    if v.error_kind:
        out["error_kind"] = v.error_kind
    if v.usage is not None:
        out["usage"] = _usage_json(v.usage)
    if v.grader_mode:
        out.update(grader_mode=v.grader_mode, prompt_version=v.prompt_version)
    if v.check_met is not None or v.model_met is not None:
        out.update(check_met=v.check_met, model_met=v.model_met)
    return out


def _usage_json(u: Usage) -> dict[str, Any]:
    return {"input_tokens": u.input_tokens, "output_tokens": u.output_tokens, "latency": u.latency, "cached": u.cached}


def row_json(r: ResultRow) -> dict[str, Any]:
    """A result row as results.jsonl holds it: the one writer of the row format."""
    return {"target": r.target, "case_id": r.case_id, "scenario": r.scenario, "language": r.language,
            "code_switch": list(r.code_switch), "theme": r.theme, "use_case": r.use_case, "persona": r.persona,
            "sample": r.sample, "status": r.status, "answer": r.answer, "refusal": r.refusal, "error": r.error,
            "error_kind": r.error_kind, "usage": _usage_json(r.usage), "score": r.score,
            "axis_scores": r.axis_scores, "graded": r.graded, "ungraded": r.ungraded,
            "answer_variety": r.answer_variety, "verdicts": [criterion_json(v) for v in r.verdicts]}


def write_json(path: Path, value: Any) -> None:
    """Write JSON atomically (write_file)."""
    write_file(path, json.dumps(value, ensure_ascii=False, indent=2, sort_keys=False) + "\n")


def write_lines(path: Path, objects: Iterable[dict[str, Any]]) -> None:
    """Write JSON objects, one a line, atomically (write_file)."""
    write_file(path, "".join(json.dumps(value, ensure_ascii=False) + "\n" for value in objects))


def write_results(path: Path, rows: Iterable[ResultRow]) -> None:
    """Write result rows as results.jsonl holds them, atomically (write_file)."""
    write_lines(path, map(row_json, rows))


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

    def append(self, row: ResultRow) -> None:
        """Append one result row and flush it to the operating system."""
        self._file.write(json.dumps(row_json(row), ensure_ascii=False) + "\n")
        self._file.flush()

    def close(self) -> None:
        """Close the results file."""
        self._file.close()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_results(run_dir: Path) -> list[ResultRow]:
    """Every complete row of results.jsonl; a half-written last line (from a crash) is left out. Reading never
    changes the file: a resumed run rewrites it without the torn line (results_state says when that is needed)."""
    return results_state(run_dir)[0]


def results_state(run_dir: Path) -> tuple[list[ResultRow], bool]:
    """The complete rows of results.jsonl, and whether the file ends with a torn line. Read a line at a time: the
    file is never held whole beside its rows (a 50,000-verdict run's file is ~40 MB, several times that as text)."""
    path = Path(run_dir) / RESULTS
    if not path.exists():
        return [], False
    rows: list[ResultRow] = []
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
                continue
            try:
                rows.append(as_row(row))
            except (KeyError, TypeError, AttributeError) as exc:
                what = f"no {exc.args[0]!r}" if isinstance(exc, KeyError) else f"a value of the wrong type ({exc})"
                problems.append(Problem(display(path), number, 1, f"result row with {what}; expected a result "
                                        "object as `bilan run` writes them"))
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
    rows: dict[tuple, ResultRow] = {}
    for d in run_dirs:
        for row in read_results(d):
            key = row.key
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
        write_results(out / RESULTS, (rows[key] for key in sorted(rows)))
    return len(rows)
