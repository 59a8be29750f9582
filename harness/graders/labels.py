"""The `labels` grader: clinicians' stored labels decide (majority of reviewers); a tie or no label is not graded."""
from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path

from .. import jsonl
from ..errors import InputError, Problem, display
from ..types import Case, Criterion, Verdict
from ..store import text_sha256
from ..yamldoc import read_text


answer_sha256 = text_sha256      # the hash of an answer's text, which a label is tied to


LABEL_SHAPE = ("expected a label {case_id, answer_sha256, criterion, met, reviewer}, as `bilan review import` or "
               "`bilan import healthbench-meta` writes it")


def load_labels(paths: Sequence[Path]) -> list[dict]:
    """Every label in these files, or folders of *.jsonl label files; InputError locates every line that is not one."""
    problems: list[Problem] = []
    labels = []
    for path in [f for p in map(Path, paths) for f in (sorted(p.glob("*.jsonl")) if p.is_dir() else [p])]:
        text, found = read_text(path, display(path), limit=200_000_000)
        problems.extend(found)
        for number, label in jsonl.objects(text or ""):
            if isinstance(label, jsonl.LineError):
                problems.append(Problem(display(path), number, label.col,
                                        f"{label.message}; expected one label object per line"))
            elif not (isinstance(label.get("met"), bool) and all(
                    isinstance(label.get(k), str) for k in ("case_id", "answer_sha256", "criterion", "reviewer"))):
                problems.append(Problem(display(path), number, 1, LABEL_SHAPE))
            else:
                labels.append(label)
    if problems:
        raise InputError(problems)
    return labels


class LabelsGrader:
    """Grades from labels keyed by case, answer text and criterion, so any run replaying that answer can use them."""

    name = "labels"

    def __init__(self, labels: Sequence[dict]):
        self.votes: dict[tuple[str, str, str], dict[str, bool]] = defaultdict(dict)
        for label in labels:
            self.votes[(label["case_id"], label["answer_sha256"], label["criterion"])][label["reviewer"]] = label["met"]

    def verdict(self, case: Case, answer: str, criterion: Criterion) -> Verdict:
        """The clinicians' majority verdict on one criterion, or not graded."""
        votes = self.votes.get((case.id, answer_sha256(answer), criterion.id), {})
        if not votes:
            return Verdict(criterion.id, None, self.name, "no clinician label")
        count = Counter(votes.values())
        summary = f"{len(votes)} clinician(s): {count[True]} met, {count[False]} not met"
        if count[True] == count[False]:
            return Verdict(criterion.id, None, self.name, summary + "; split, to adjudicate")
        return Verdict(criterion.id, count[True] > count[False], self.name, summary)

    async def grade(self, case: Case, answer: str, criteria: Sequence[Criterion]) -> list[Verdict]:
        """Verdicts for every criterion."""
        return [self.verdict(case, answer, c) for c in criteria]
