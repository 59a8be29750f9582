"""The `rules` grader: deterministic checks decide, on the answer's visible text; a criterion without a check is
left ungraded."""
from __future__ import annotations

import json
from collections.abc import Sequence

from ..checks import AnswerView, Check, CheckTimeout, compile_check, visible_text
from ..types import Case, Criterion, Locale, Verdict

NO_CHECK = "no deterministic check; needs a model grader"


def describe(check: dict) -> str:
    """A short name for a check, e.g. `mentions emergency_numbers` or `all(any_of, not(any_of))`."""
    (kind, value), = check.items()
    if kind in ("any", "all"):
        return f"{kind}({', '.join(describe(c) for c in value)})"
    if kind == "not":
        return f"not({describe(value)})"
    if kind in ("mentions", "max_words"):
        return f"{kind} {value}"
    return kind


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

    def verdict(self, case: Case, answer: str | AnswerView, criterion: Criterion) -> Verdict:
        """One criterion's verdict: met or not by its check, or ungraded without one."""
        check = self.check_for(criterion)
        if check is None:
            return Verdict(criterion.id, None, self.name, NO_CHECK)
        view = answer if isinstance(answer, AnswerView) else AnswerView(visible_text(answer), case.language, case.code_switch)
        try:
            met = check(view)
        except CheckTimeout as exc:
            return Verdict(criterion.id, None, self.name, "", error=f"timeout: {exc}")
        return Verdict(criterion.id, met, self.name, f"{describe(criterion.check)} check: {'met' if met else 'not met'}")

    async def grade(self, case: Case, answer: str, criteria: Sequence[Criterion]) -> list[Verdict]:
        """Verdicts for every criterion."""
        view = AnswerView(visible_text(answer), case.language, case.code_switch)
        return [self.verdict(case, view, c) for c in criteria]
