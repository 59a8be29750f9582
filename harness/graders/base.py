"""The grader protocol."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from ..types import Case, Criterion, Verdict


class Grader(Protocol):
    """Decides, criterion by criterion, whether an answer meets a rubric."""

    name: str

    async def grade(self, case: Case, answer: str, criteria: Sequence[Criterion]) -> list[Verdict]: ...
