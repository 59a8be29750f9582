"""Scoring, HealthBench's formula: met points over the positive points of the graded criteria.

Per answer the score is not clipped (it can be negative); aggregates clip the mean to [0, 1] (analyze.py).
A criterion that was not graded (met is None) is left out of both sides of the fraction.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict
from typing import Any

from .checks import visible_text
from .langid import variety
from .types import Answer, Case, Criterion, Verdict


def score(items: Iterable[tuple[int, bool | None]]) -> float | None:
    """Sum of met points over sum of positive points, over graded criteria; None if nothing positive was graded."""
    graded = [(points, met) for points, met in items if met is not None]
    possible = sum(points for points, _ in graded if points > 0)
    if possible <= 0:
        return None
    return sum(points for points, met in graded if met) / possible


def verdict_rows(criteria: Sequence[Criterion], verdicts: Sequence[Verdict]) -> list[dict[str, Any]]:
    """One record per criterion: the criterion's weight and axis beside the grader's decision."""
    by_id = {v.criterion_id: v for v in verdicts}
    rows = []
    for c in criteria:
        v = by_id.get(c.id) or Verdict(c.id, None, "none", "", error="no verdict returned", error_kind="no_verdict")
        row = {"id": c.id, "rubric": c.rubric, "text": c.text, "points": c.points, "axis": c.axis, "tags": list(c.tags),
               "met": v.met, "grader": v.grader, "explanation": v.explanation, "error": v.error,
               "check": c.check is not None}
        if v.error_kind:
            row["error_kind"] = v.error_kind
        if v.usage is not None:
            row["usage"] = asdict(v.usage)
        if v.mode:
            row.update(grader_mode=v.mode, prompt_version=v.version)
        if v.check_met is not None or v.model_met is not None:
            row.update(check_met=v.check_met, model_met=v.model_met)
        rows.append(row)
    return rows


def result_row(case: Case, answer: Answer, criteria: Sequence[Criterion], verdicts: Sequence[Verdict],
               axes: Sequence[str]) -> dict[str, Any]:
    """The results.jsonl record of one answer: who, what, the verdicts and the scores."""
    rows = verdict_rows(criteria, verdicts) if answer.text is not None else []
    status = "ok" if answer.text is not None else ("missing" if answer.error_kind == "missing" else "error")
    return {
        "target": answer.target, "case_id": case.id, "scenario": case.scenario, "language": case.language,
        "code_switch": list(case.code_switch), "theme": case.theme, "use_case": case.use_case,
        "persona": case.persona, "sample": answer.sample, "status": status, "answer": answer.text,
        "refusal": answer.refusal,
        "error": answer.error, "error_kind": answer.error_kind, "usage": asdict(answer.usage),
        "score": score((r["points"], r["met"]) for r in rows),
        "axis_scores": {axis: score((r["points"], r["met"]) for r in rows if r["axis"] == axis) for axis in axes},
        "graded": sum(r["met"] is not None for r in rows), "ungraded": sum(r["met"] is None for r in rows),
        "answer_variety": answer_variety(answer.text),
        "verdicts": rows,
    }


def answer_variety(text: str | None) -> str | None:
    """For an answer in Arabic script: "ar" when it reads as Modern Standard Arabic, "ary" as Darija; else None.
    A reported signal, never a verdict."""
    return variety(visible_text(text)) if text else None
