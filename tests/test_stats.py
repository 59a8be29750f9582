"""The decision statistics on hand-worked examples: worst-at-k, paired bootstrap, Holm, win counts."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.stats import expected_minimum, holm, paired_difference, rng_for, win_counts, worst_at_k


def _enumerated(scores: list[float], k: int) -> float:
    subsets = list(itertools.combinations(scores, k))
    return sum(min(s) for s in subsets) / len(subsets)


def test_expected_minimum_by_hand():
    # Subsets of size 2 of {0.2, 0.5, 0.9}: minima 0.2, 0.2, 0.5, so the mean is 0.3;
    # by the formula, 0.2 is the minimum of C(2, 1) = 2 subsets and 0.5 of C(1, 1) = 1, over C(3, 2) = 3.
    assert expected_minimum([0.9, 0.2, 0.5], 2) == pytest.approx(0.3)
    assert expected_minimum([0.9, 0.2, 0.5], 1) == pytest.approx(1.6 / 3)
    assert expected_minimum([0.9, 0.2, 0.5], 3) == pytest.approx(0.2)
    with pytest.raises(ValueError):
        expected_minimum([0.5], 2)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(-2, 1, allow_nan=False), min_size=1, max_size=8), st.data())
def test_expected_minimum_equals_enumeration(scores, data):
    k = data.draw(st.integers(1, len(scores)))
    assert expected_minimum(scores, k) == pytest.approx(_enumerated(scores, k), abs=1e-9)
    if k > 1:
        assert expected_minimum(scores, k) <= expected_minimum(scores, k - 1) + 1e-12


def test_expected_minimum_of_many_samples_stays_finite():
    scores = list(np.linspace(0, 1, 1200))
    assert expected_minimum(scores, 600) == pytest.approx(_closed_form_uniform(1200, 600), rel=1e-9)


def _closed_form_uniform(n: int, k: int) -> float:
    # For x_i = i / (n - 1), E[min index] over k-subsets of 0..n-1 is (n - k) / (k + 1).
    return (n - k) / (k + 1) / (n - 1)


def test_worst_at_k_averages_cases_that_have_k_samples_and_clips():
    curve = worst_at_k([[1.0, 0.0], [0.5, 0.5, 0.5]])
    assert curve[1] == {"score": pytest.approx(0.5), "n": 2}
    assert curve[2] == {"score": pytest.approx(0.25), "n": 2}          # (0.0 + 0.5) / 2
    assert curve[3] == {"score": pytest.approx(0.5), "n": 1}           # only the case with three samples
    assert worst_at_k([[-0.5, -0.25]])[2]["score"] == 0.0              # mean -0.5, clipped
    assert worst_at_k([]) == {}


def test_paired_bootstrap_with_a_constant_difference_is_exact():
    b = np.array([0.1, 0.4, 0.7, 0.2, 0.9])
    d = paired_difference(b - 0.05, b, rng_for(0, "t"), resamples=2000)
    assert d["diff"] == pytest.approx(-0.05)
    assert d["ci_low"] == pytest.approx(-0.05) and d["ci_high"] == pytest.approx(-0.05)   # pairing removes case spread
    assert d["p_drop"] == pytest.approx(1 / 2001) and d["p_rise"] == 1.0
    assert d["n"] == 5


def test_paired_bootstrap_matches_the_exact_bootstrap_distribution():
    # Differences 0, 0, 0.3: a resample's mean is 0.1 x (times the third pair is drawn), and that count is
    # Binomial(3, 1/3): P(0) = 8/27, P(1) = 12/27, P(2) = 6/27, P(3) = 1/27. So the 2.5th percentile is 0,
    # the 97.5th is 0.3 (P(mean <= 0.2) = 26/27 < 0.975), and P(mean <= 0) = 8/27.
    a, b = [0.5, 0.5, 0.8], [0.5, 0.5, 0.5]
    d = paired_difference(a, b, rng_for(1, "exact"), resamples=40_000)
    assert d["diff"] == pytest.approx(0.1)
    assert d["ci_low"] == pytest.approx(0.0) and d["ci_high"] == pytest.approx(0.3)
    assert d["p_rise"] == pytest.approx(8 / 27, abs=0.01)
    assert d["p_drop"] == 1.0


def test_paired_bootstrap_clips_each_mean_and_handles_no_pairs():
    d = paired_difference([-1.0, -1.0], [0.5, 0.5], rng_for(0, "clip"), resamples=100)
    assert d["a"] == 0.0 and d["diff"] == -0.5
    empty = paired_difference([], [], rng_for(0, "none"))
    assert empty["n"] == 0 and empty["diff"] is None and empty["ci_low"] is None


def test_seeded_generators_are_reproducible_and_independent():
    assert rng_for(3, "a").random() == rng_for(3, "a").random()
    assert rng_for(3, "a").random() != rng_for(3, "b").random()


def test_holm_by_hand():
    # Sorted: 0.01 x 3 = 0.03; 0.03 x 2 = 0.06; 0.04 x 1 = 0.04, raised to 0.06 to keep the order.
    assert holm([0.01, 0.04, 0.03, None]) == [pytest.approx(0.03), pytest.approx(0.06), pytest.approx(0.06), None]
    assert holm([0.6, 0.9]) == [1.0, 1.0]
    assert holm([]) == []


def test_win_counts_compare_every_pair_of_samples():
    assert win_counts([1.0, 0.5], [0.5]) == (1, 0, 1)
    assert win_counts([0.2, 0.4], [0.3, 0.5, 0.1]) == (3, 3, 0)
    assert math.isclose(sum(win_counts([0.1, 0.2, 0.3], [0.2, 0.2])), 6)
