"""Labels given in the browser: stored by review.store_labels, the same file and format `bilan review import` writes.

`met` and `not met` are labels (RUN/labels/<reviewer>.jsonl, read by `bilan agreement` and the labels grader).
`unsure` is not a verdict, so it is no label: it removes the reviewer's label on that criterion, if any, and is kept
with its comment in RUN/labels/unsure/<reviewer>.json, which no label reader opens (they read *.jsonl files).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from ..errors import InputError, Problem
from ..graders.labels import answer_sha256, load_labels
from ..review import file_lock, label_file, label_key, sheet_rows, store_labels
from ..store import write_file
from .data import Run

VERDICTS = {"met": True, "not-met": False, "unsure": None}
_NAME = re.compile(r"[^\x00-\x1f\x7f]{1,80}")


def check_reviewer(name: str) -> str:
    """A reviewer's name as given, stripped; InputError when empty, too long or holding control characters."""
    name = (name or "").strip()
    if not _NAME.fullmatch(name):
        raise InputError([Problem("reviewer", 0, 0, "expected a name of 1 to 80 printable characters")])
    return name


def unsure_file(run: Run, reviewer: str) -> Path:
    """Where a reviewer's `unsure` marks are kept, beside (not among) the label files."""
    path = label_file(run.path, reviewer)
    return path.parent / "unsure" / f"{path.stem}.json"


def read_unsure(run: Run, reviewer: str) -> dict[tuple, dict]:
    """A reviewer's unsure marks by label_key."""
    path = unsure_file(run, reviewer)
    marks = json.loads(path.read_text(encoding="utf-8")).get("marks", []) if path.exists() else []
    return {label_key(m): m for m in marks}


def _store_unsure(run: Run, reviewer: str, key: tuple, mark: dict | None) -> None:
    path = unsure_file(run, reviewer)
    path.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(path):
        marks = read_unsure(run, reviewer)
        if mark is None and key not in marks:
            return
        marks.pop(key, None)
        if mark is not None:
            marks[key] = mark
        write_file(path, json.dumps({"reviewer": reviewer, "marks": list(marks.values())}, ensure_ascii=False,
                                    indent=1) + "\n")


def answer_entry(run: Run, target: str, case_id: str, sample: int, criterion: str) -> dict:
    """What a label is tied to, checked against the run: the answer and criterion exist, the answer's hash."""
    row = run.row(target, case_id, sample)
    if row is None or row.answer is None or not any(v.id == criterion for v in row.verdicts):
        raise InputError([Problem(f"{run.name}/{case_id}", 0, 0,
                                  "no such answer and criterion in this run; expected one shown by bilan view")])
    return {"target": target, "case_id": case_id, "sample": sample, "criterion": criterion,
            "answer_sha256": answer_sha256(row.answer)}


def save_label(run: Run, reviewer: str, entry: dict, verdict: str, comment: str, sheet: str) -> Path:
    """Store one verdict (met, not-met or unsure) with its comment; returns the reviewer's label file."""
    if verdict not in VERDICTS:
        raise InputError([Problem("verdict", 0, 0, f"{verdict!r} is not a verdict; expected met, not-met or unsure")])
    met, key = VERDICTS[verdict], label_key(entry)
    if met is None:
        out = store_labels(run.path, reviewer, {}, removed=[key])
        _store_unsure(run, reviewer, key, dict(entry, reviewer=reviewer, comment=comment.strip(), sheet=sheet))
        return out
    label = dict(entry, met=met, reviewer=reviewer, comment=comment.strip(), sheet=sheet)
    out = store_labels(run.path, reviewer, {key: label})
    _store_unsure(run, reviewer, key, None)
    return out


def given(run: Run, reviewer: str) -> dict[tuple, dict]:
    """A reviewer's labels and unsure marks by label_key (an unsure mark has met None)."""
    path = label_file(run.path, reviewer)
    labels = {label_key(l): l for l in load_labels([path])} if path.exists() else {}
    return {k: dict(m, met=None) for k, m in read_unsure(run, reviewer).items()} | labels


def progress(run: Run) -> list[dict]:
    """Per reviewer: how many of the run's answer-criterion pairs they labelled (on the current answer text), and
    unsure."""
    current = {(*r.key, v.id): answer_sha256(r.answer) for r in run.rows if r.answer is not None for v in r.verdicts}
    out: dict[str, dict] = {}
    for label in run.labels():
        entry = out.setdefault(label["reviewer"],
                               {"reviewer": label["reviewer"], "labelled": 0, "unsure": 0, "total": len(current)})
        entry["labelled"] += current.get(label_key(label)) == label["answer_sha256"]
    for path in sorted((run.path / "labels" / "unsure").glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        entry = out.setdefault(data["reviewer"],
                               {"reviewer": data["reviewer"], "labelled": 0, "unsure": 0, "total": len(current)})
        entry["unsure"] += len(data.get("marks", []))
    return sorted(out.values(), key=lambda e: e["reviewer"])


def blinded_queue(run: Run, seed: int, size: int | None) -> tuple[list[dict], dict]:
    """The blinded review rows (systems as S1, S2...; no grader verdict; shuffled with the seed; spread over
    languages) and their key: the same rows `bilan review export` puts in a sheet, nothing written."""
    return sheet_rows(run.path, seed, size, show_grader=False)
