"""The `rules` grader: deterministic checks decide; a criterion without a check is left ungraded."""
from __future__ import annotations

import json
from collections.abc import Sequence

from ..checks import AnswerView, Check, compile_check
from ..types import Case, Criterion, Locale, Verdict

NO_CHECK = "no deterministic check; needs a model grader"


class RulesGrader:
    """Runs each criterion's check on the answer text."""

    name = "rules"

    def __init__(self, locale: Locale):
        self.locale = locale
        self._compiled: dict[str, Check] = {}

    def check_for(self, criterion: Criterion) -> Check | None:
        """The compiled check of a criterion, or None when it has none."""
        if criterion.check is None:
            return None
        key = json.dumps(criterion.check, sort_keys=True, ensure_ascii=False)
        if key not in self._compiled:
            self._compiled[key], _ = compile_check(criterion.check, self.locale)
        return self._compiled[key]

    def verdict(self, case: Case, answer: str, criterion: Criterion) -> Verdict:
        """One criterion's verdict: met or not by its check, or ungraded without one."""
        check = self.check_for(criterion)
        if check is None:
            return Verdict(criterion.id, None, self.name, NO_CHECK)
        met = check(AnswerView(answer, case.language, case.code_switch))
        return Verdict(criterion.id, met, self.name, f"check {json.dumps(criterion.check, ensure_ascii=False)}: {'met' if met else 'not met'}")

    async def grade(self, case: Case, answer: str, criteria: Sequence[Criterion]) -> list[Verdict]:
        """Verdicts for every criterion."""
        return [self.verdict(case, answer, c) for c in criteria]
