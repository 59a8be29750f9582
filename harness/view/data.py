"""Run directories read for `bilan view`, never changed: cases, answers by system, search, filters, labels."""
from __future__ import annotations

import unicodedata
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import jsonl
from ..analyze import summarize
from ..errors import InputError, Problem, display
from ..graders.labels import answer_sha256, load_labels
from ..report import VERDICT_FILTER, ShownAnswer, direction, never_event_answers, shown_answer
from ..store import MANIFEST, RESULTS, SUMMARY, read_json, read_results
from ..types import ResultRow

FILTERS = ("q", "language", "theme", "use_case", "criterion", "verdict", "never", "grader", "disagreement")
DISAGREEMENTS = [("systems", "between systems (a criterion met by one, not by another)"),
                 ("labels", "between the grader and the clinicians' labels")]


def fold(text: str) -> str:
    """Text as search compares it: NFC-normalised and case-folded (Arabic and Tifinagh have no case, so they pass)."""
    return unicodedata.normalize("NFC", text).casefold()


@dataclass
class Run:
    """One run directory as read at start: its manifest, summary, rows and cases."""

    name: str
    path: Path
    manifest: dict
    summary: dict
    rows: list[ResultRow]
    cases: dict[str, dict]

    @property
    def threshold(self) -> int:
        """The never-event threshold the summary used."""
        return self.summary.get("never_event_threshold", -8)

    def labels(self) -> list[dict]:
        """Every clinician label stored in RUN/labels (read fresh: reviewers add to it while the app runs)."""
        folder = self.path / "labels"
        return load_labels([folder]) if folder.is_dir() else []

    def row_for(self, case_id: str) -> ResultRow | None:
        """The first results row of a case, or None."""
        return next((r for r in self.rows if r.case_id == case_id), None)

    def row(self, target: str, case_id: str, sample: int) -> ResultRow | None:
        """The results row of one answer, or None."""
        return next((r for r in self.rows if r.key == (target, case_id, sample)), None)


def _summary(path: Path, manifest: dict, rows: list[ResultRow]) -> dict:
    """summary.json as `bilan run` / `bilan report` wrote it, else the same summarize() over the rows (nothing
    written)."""
    if (path / SUMMARY).exists():
        return read_json(path / SUMMARY)
    return summarize(rows, manifest.get("axes", []), manifest.get("seed", 0), manifest.get("bootstrap", 1000))


def read_run(path: Path, name: str) -> Run:
    """Read one run directory; a folder that is not one is an InputError."""
    if not (path / RESULTS).is_file() or not (path / MANIFEST).is_file():
        raise InputError([Problem(display(path), 0, 0, "not a run directory (no results.jsonl and manifest.json); "
                                  "expected a folder written by `bilan run`")])
    manifest, rows = read_json(path / MANIFEST), read_results(path)
    cases = {c["case_id"]: c for c in jsonl.read_objects(path / "cases.jsonl", "one case per line")} \
        if (path / "cases.jsonl").exists() else {}
    return Run(name, path, manifest, _summary(path, manifest, rows), rows, cases)


def read_runs(paths: list[Path]) -> dict[str, Run]:
    """The runs by a short unique name (the folder's name, numbered when two are alike), in the order given."""
    runs: dict[str, Run] = {}
    problems = []
    for path in paths:
        name, n = path.resolve().name or "run", 2
        while name in runs:
            name, n = f"{path.resolve().name}-{n}", n + 1
        try:
            runs[name] = read_run(path, name)
        except InputError as err:
            problems += err.problems
    if problems:
        raise InputError(problems)
    return runs


@dataclass
class CaseView:
    """A case across the runs: its text, metadata and the answers of every system."""

    case_id: str
    run: str
    info: dict
    row: ResultRow
    answers: dict[str, list[ShownAnswer]] = field(default_factory=lambda: defaultdict(list))
    haystack: str = ""


def system_name(runs: dict[str, Run], run: str, target: str) -> str:
    """A system's column name: the target, prefixed with its run when several runs are shown."""
    return target if len(runs) == 1 else f"{run}/{target}"


def systems(runs: dict[str, Run]) -> list[str]:
    """Every system (run x target) in order."""
    return [system_name(runs, name, t) for name, run in runs.items()
            for t in dict.fromkeys(r.target for r in run.rows)]


def case_views(runs: dict[str, Run]) -> dict[str, CaseView]:
    """Every case id across the runs, with each system's answers (all samples) and its search text."""
    out: dict[str, CaseView] = {}
    for name, run in runs.items():
        for r in sorted(run.rows, key=lambda r: (r.case_id, r.target, r.sample)):
            view = out.get(r.case_id)
            if view is None:
                view = out[r.case_id] = CaseView(r.case_id, name, run.cases.get(r.case_id, {}), r)
            view.answers[system_name(runs, name, r.target)].append(shown_answer(r, run.threshold, run=name))
    for view in out.values():
        parts = [view.case_id, view.info.get("title", "")] + [m["content"] for m in view.info.get("conversation", [])]
        parts += [a.row.answer or "" for rows in view.answers.values() for a in rows]
        parts += [v.record.text or "" for rows in view.answers.values() for a in rows for v in a.verdicts]
        view.haystack = fold("\n".join(parts))
    return out


def label_index(runs: dict[str, Run]) -> dict[tuple, dict[str, bool]]:
    """Labels by (run, target, case_id, sample, criterion, answer hash): reviewer -> met."""
    out: dict[tuple, dict[str, bool]] = defaultdict(dict)
    for name, run in runs.items():
        for label in run.labels():
            key = (name, label.get("target"), label["case_id"], label.get("sample", 0), label["criterion"],
                   label["answer_sha256"])
            out[key][label["reviewer"]] = label["met"]
    return out


def _labels_of(answer: ShownAnswer, labels: dict[tuple, dict[str, bool]]) -> dict[str, dict[str, bool]]:
    """Each criterion's labels (reviewer -> met) on this exact answer text."""
    row, digest = answer.row, answer_sha256(answer.row.answer or "")
    return {v.id: labels.get((answer.extra["run"], row.target, row.case_id, row.sample, v.id, digest), {})
            for v in row.verdicts}


def _disagrees(view: CaseView, kind: str, labels: dict[tuple, dict[str, bool]]) -> bool:
    answered = [a for rows in view.answers.values() for a in rows if a.row.answer is not None]
    if kind == "systems":
        seen: dict[str, set] = defaultdict(set)
        for a in answered:
            for v in a.row.verdicts:
                if v.met is not None:
                    seen[v.id].add(v.met)
        return any(len(values) > 1 for values in seen.values())
    for a in answered:
        by_criterion = _labels_of(a, labels)
        if any(v.met is not None and any(m != v.met for m in by_criterion[v.id].values()) for v in a.row.verdicts):
            return True
    return False


def matches(view: CaseView, wanted: dict[str, str], labels: dict[tuple, dict[str, bool]]) -> bool:
    """Whether a case passes every filter given (empty ones are ignored)."""
    answers = [a for rows in view.answers.values() for a in rows]
    verdicts = [v for a in answers for v in a.row.verdicts]
    tests = {
        "q": lambda q: fold(q) in view.haystack,
        "language": lambda x: view.row.language == x,
        "theme": lambda x: view.row.theme == x,
        "use_case": lambda x: view.row.use_case == x,
        "criterion": lambda x: any(v.id == x for v in verdicts),
        "verdict": lambda x: any(x in a.tokens for a in answers),
        "never": lambda x: any(a.never for a in answers) == (x == "yes"),
        "grader": lambda x: any(v.grader == x for v in verdicts),
        "disagreement": lambda x: _disagrees(view, x, labels),
    }
    return all(tests[k](v) for k, v in wanted.items() if v and k in tests)


def options(runs: dict[str, Run]) -> dict[str, list[tuple[str, str]]]:
    """The choices of each filter, from what the runs hold."""
    rows = [r for run in runs.values() for r in run.rows]
    values = lambda key: sorted({str(getattr(r, key)) for r in rows if getattr(r, key)})
    return {"language": [(x, x) for x in values("language")], "theme": [(x, x) for x in values("theme")],
            "use_case": [(x, x) for x in values("use_case")],
            "criterion": [(x, x) for x in sorted({v.id for r in rows for v in r.verdicts})],
            "verdict": list(VERDICT_FILTER), "never": [("yes", "commits a never-event"), ("no", "commits none")],
            "grader": [(x, x) for x in sorted({v.grader for r in rows for v in r.verdicts if v.grader})],
            "disagreement": DISAGREEMENTS}


def figures(run: Run) -> dict[str, Any]:
    """The index's figures of a run, from its summary: never-events first, scores by language, gaps to the reference."""
    s = run.summary
    return {"never_events": s.get("never_events", {}), "never_listed": never_event_answers(run.rows, run.threshold),
            "languages": s.get("languages", []), "targets": s.get("targets", {}), "parity": s.get("parity", {}),
            "reference": s.get("parity_reference", "fr"), "threshold": run.threshold}


def message_direction(language: str) -> str:
    """dir for a message in this language: rtl for Arabic script, auto otherwise (the browser decides per text)."""
    return "rtl" if direction(language) == "rtl" else "auto"
