"""The `labels` grader: clinicians' stored labels decide (majority of reviewers); a tie or no label is not graded."""
from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path

from ..types import Case, Criterion, Verdict


def answer_sha256(text: str) -> str:
    """Hash of an answer's text, which a label is tied to."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def load_labels(paths: Sequence[Path]) -> list[dict]:
    """Every label in these files, or folders of *.jsonl label files."""
    files = [f for p in map(Path, paths) for f in (sorted(p.glob("*.jsonl")) if p.is_dir() else [p])]
    return [json.loads(line) for f in files for line in f.read_text(encoding="utf-8").splitlines() if line.strip()]


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
