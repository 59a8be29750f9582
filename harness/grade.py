"""Scoring, HealthBench's formula: met points over the positive points of the graded criteria.

Per answer the score is not clipped (it can be negative); aggregates clip the mean to [0, 1] (analyze.py).
A criterion that was not graded (met is None) is left out of both sides of the fraction.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from .checks import visible_text
from .langid import variety
from .types import Answer, Case, Criterion, CriterionResult, ResultRow, Verdict


def score(items: Iterable[tuple[int, bool | None]]) -> float | None:
    """Sum of met points over sum of positive points, over graded criteria; None if nothing positive was graded."""
    graded = [(points, met) for points, met in items if met is not None]
    possible = sum(points for points, _ in graded if points > 0)
    if possible <= 0:
        return None
    return sum(points for points, met in graded if met) / possible


def criterion_results(criteria: Sequence[Criterion], verdicts: Sequence[Verdict]) -> tuple[CriterionResult, ...]:
    """One record per criterion: the criterion's weight and axis beside the grader's decision."""
    by_id = {v.criterion_id: v for v in verdicts}
    out = []
    for c in criteria:
        v = by_id.get(c.id) or Verdict(c.id, None, "none", "", error="no verdict returned", error_kind="no_verdict")
        out.append(CriterionResult(c.id, c.points, c.axis, v.met, c.rubric, c.text, tuple(c.tags), v.grader,
                                   v.explanation, v.error, c.check is not None, v.error_kind, v.usage, v.mode,
                                   v.version if v.mode else "", v.check_met, v.model_met))
    return tuple(out)


def result_row(case: Case, answer: Answer, criteria: Sequence[Criterion], verdicts: Sequence[Verdict],
               axes: Sequence[str]) -> ResultRow:
    """The results.jsonl record of one answer: who, what, the verdicts and the scores."""
    rows = criterion_results(criteria, verdicts) if answer.text is not None else ()
    status = "ok" if answer.text is not None else ("missing" if answer.error_kind == "missing" else "error")
    return ResultRow(
        target=answer.target, case_id=case.id, scenario=case.scenario, language=case.language,
        code_switch=tuple(case.code_switch), theme=case.theme, use_case=case.use_case, persona=case.persona,
        sample=answer.sample, status=status, answer=answer.text, refusal=answer.refusal, error=answer.error,
        error_kind=answer.error_kind, usage=answer.usage, score=score((r.points, r.met) for r in rows),
        axis_scores={axis: score((r.points, r.met) for r in rows if r.axis == axis) for axis in axes},
        graded=sum(r.met is not None for r in rows), ungraded=sum(r.met is None for r in rows),
        answer_variety=answer_variety(answer.text), verdicts=rows)


def answer_variety(text: str | None) -> str | None:
    """For an answer in Arabic script: "ar" when it reads as Modern Standard Arabic, "ary" as Darija; else None.
    A reported signal, never a verdict."""
    return variety(visible_text(text)) if text else None
