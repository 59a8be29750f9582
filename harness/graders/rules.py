"""The `rules` grader: deterministic checks decide, on the answer's visible text. A criterion without a check, or
whose check abstains (it cannot tell), is left ungraded, with the reason."""
from __future__ import annotations

import json
from collections.abc import Sequence

from ..checks import AnswerView, Check, CheckTimeout, compile_check, visible_text
from ..types import Case, Criterion, Locale, Verdict

NO_CHECK = "no deterministic check; needs a model grader"


class RulesGrader:
    """Runs each criterion's check on the answer text."""

    name = "rules"

    def __init__(self, locale: Locale):
        self.locale = locale
        self._compiled: dict[str, Check] = {}

    def check_for(self, criterion: Criterion) -> Check | None:
        """The criterion's check as compiled at load (compiled here only for criteria built by hand)."""
        if criterion.check is None:
            return None
        if criterion.compiled is not None:
            return criterion.compiled
        key = json.dumps([criterion.check, criterion.points < 0], sort_keys=True, ensure_ascii=False)
        if key not in self._compiled:
            self._compiled[key], _ = compile_check(criterion.check, self.locale, harmful=criterion.points < 0)
        return self._compiled[key]

    def verdict(self, case: Case, answer: str | AnswerView, criterion: Criterion) -> Verdict:
        """One criterion's verdict: met, not met, or not graded (no check, or the check abstained), with why."""
        check = self.check_for(criterion)
        if check is None:
            return Verdict(criterion.id, None, self.name, NO_CHECK)
        view = answer if isinstance(answer, AnswerView) else view_of(case, answer)
        try:
            outcome = check.evaluate(view)
        except CheckTimeout as exc:
            return Verdict(criterion.id, None, self.name, "", error=f"timeout: {exc}", error_kind="timeout")
        return Verdict(criterion.id, outcome.met, self.name, outcome.reason[:1].upper() + outcome.reason[1:])

    async def grade(self, case: Case, answer: str, criteria: Sequence[Criterion]) -> list[Verdict]:
        """Verdicts for every criterion."""
        view = view_of(case, answer)
        return [self.verdict(case, view, c) for c in criteria]


def view_of(case: Case, answer: str) -> AnswerView:
    """What the checks see of an answer to a case."""
    return AnswerView(visible_text(answer), case.language, case.code_switch)
