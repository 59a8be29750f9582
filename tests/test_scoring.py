"""HealthBench's scoring formula, aggregation and intervals."""
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, strategies as st

from harness.analyze import aggregate, bootstrap, summarize
from harness.grade import score


def test_healthbench_unit_test_example():
    # simple-evals healthbench_eval_test.py: points 7, 5, 10, -6 with verdicts T, F, T, T.
    assert score([(7, True), (5, False), (10, True), (-6, True)]) == pytest.approx((7 + 10 - 6) / 22)


def test_healthbench_worked_example():
    # healthbench.md 1.7: criteria worth 9, 4 and -8.
    assert score([(9, True), (4, True), (-8, True)]) == pytest.approx(5 / 13)
    assert score([(9, True), (4, True), (-8, False)]) == pytest.approx(1.0)
    assert score([(9, False), (4, False), (-8, True)]) == pytest.approx(-8 / 13)   # not clipped per answer


def test_ungraded_criteria_leave_both_sides():
    assert score([(10, True), (5, None)]) == pytest.approx(1.0)
    assert score([(10, None), (-8, True)]) is None       # nothing positive graded: no score, not zero
    assert score([]) is None


def test_aggregate_clips_the_mean_not_each_answer():
    result = aggregate(pd.Series([-0.5, 0.5, 1.0]), np.random.default_rng(0), 500)
    assert result["score"] == pytest.approx(1.0 / 3)
    result = aggregate(pd.Series([-0.5, -0.2]), np.random.default_rng(0), 500)
    assert result["score"] == 0.0 and result["n"] == 2
    assert aggregate(pd.Series([None, None], dtype=float), np.random.default_rng(0), 100)["n"] == 0


def test_bootstrap_is_seeded_and_brackets_the_mean():
    values = np.array([0.1, 0.9, 0.5, 0.7, 0.3, 0.6])
    a = bootstrap(values, np.random.default_rng(7), 1000)
    b = bootstrap(values, np.random.default_rng(7), 1000)
    assert a == b
    assert a[0] < values.mean() < a[1]


@given(st.lists(st.tuples(st.integers(-10, 10).filter(bool), st.sampled_from([True, False, None])), max_size=30))
def test_score_bounds(items):
    result = score(items)
    positive = [p for p, m in items if m is not None and p > 0]
    if not positive:
        assert result is None
    else:
        assert result <= 1.0 + 1e-9
        assert result >= -sum(-p for p, m in items if m is not None and p < 0) / sum(positive) - 1e-9


def _row(target, case, language, score_value, axis_scores=None, sample=0):
    return {"target": target, "case_id": case, "scenario": case.split(".")[0], "language": language, "theme": "t",
            "sample": sample, "status": "ok", "score": score_value, "axis_scores": axis_scores or {}, "graded": 1,
            "ungraded": 0, "usage": {}, "verdicts": [{"id": "c", "points": 5, "axis": "safety", "met": True}]}


def test_summary_averages_samples_before_bootstrapping_cases():
    rows = [_row("t", "a.fr", "fr", 1.0, sample=0), _row("t", "a.fr", "fr", 0.0, sample=1),
            _row("t", "b.fr", "fr", 1.0)]
    summary = summarize(rows, ["safety"], seed=0, resamples=200)
    overall = summary["targets"]["t"]["overall"]
    assert overall["n"] == 2                    # two cases, not three answers
    assert overall["score"] == pytest.approx(0.75)
