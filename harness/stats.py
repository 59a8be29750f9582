"""Statistics behind the decisions: paired bootstrap, one-sided p-values, Holm's adjustment, worst-at-k, win counts.

Pure numpy on plain arrays; analyze.py and decide.py feed it from the run's frames.
"""
from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np

CELLS_PER_CHUNK = 2_000_000     # resampled indices held in memory at once (16 MB of int64)


def rng_for(seed: int, *labels: str) -> np.random.Generator:
    """A generator of its own per analysis and label, so adding an analysis never shifts another's intervals."""
    return np.random.default_rng([int(seed)] + [zlib.crc32(label.encode("utf-8")) for label in labels])


def clipped_mean(values: np.ndarray) -> float:
    """HealthBench's aggregate: the mean clipped to [0, 1]."""
    return float(np.clip(np.mean(values), 0.0, 1.0))


def resampled_means(values: np.ndarray, rng: np.random.Generator, resamples: int) -> np.ndarray:
    """Column means of `resamples` row resamples (with replacement) of an n x m array: rows stay paired."""
    values = np.asarray(values, dtype=float)
    n = len(values)
    out = np.empty((resamples,) + values.shape[1:])
    step = max(1, CELLS_PER_CHUNK // max(n, 1))
    for start in range(0, resamples, step):
        size = min(step, resamples - start)
        idx = rng.integers(0, n, size=(size, n))
        out[start:start + size] = values[idx].mean(axis=1)
    return out


def paired_difference(a: Sequence[float], b: Sequence[float], rng: np.random.Generator, resamples: int = 1000,
                      level: float = 0.95) -> dict[str, Any]:
    """clip(mean a) - clip(mean b) over pairs, with a paired percentile bootstrap interval and one-sided p-values."""
    # p_drop tests "a is below b" (small when nearly every resample is below zero); p_rise the other way.
    pairs = np.column_stack([np.asarray(a, dtype=float), np.asarray(b, dtype=float)]) if len(a) else np.empty((0, 2))
    if len(pairs) == 0:
        return {"a": None, "b": None, "diff": None, "ci_low": None, "ci_high": None, "p_drop": None, "p_rise": None,
                "n": 0}
    means = np.clip(resampled_means(pairs, rng, resamples), 0.0, 1.0)
    diffs = means[:, 0] - means[:, 1]
    tail = (1.0 - level) / 2 * 100
    low, high = np.percentile(diffs, [tail, 100 - tail])
    # Davison & Hinkley's (1 + count) / (B + 1): never exactly 0 from a finite number of resamples.
    p_drop = (1 + int(np.sum(diffs >= 0))) / (resamples + 1)
    p_rise = (1 + int(np.sum(diffs <= 0))) / (resamples + 1)
    mean_a, mean_b = clipped_mean(pairs[:, 0]), clipped_mean(pairs[:, 1])
    return {"a": mean_a, "b": mean_b, "diff": mean_a - mean_b, "ci_low": float(low), "ci_high": float(high),
            "p_drop": min(1.0, p_drop), "p_rise": min(1.0, p_rise), "n": int(len(pairs))}


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjusted p-values (family-wise error control); None entries stay None and do not count."""
    present = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    m, running = len(present), 0.0
    out: list[float | None] = [None] * len(p_values)
    for rank, (p, i) in enumerate(present):
        running = max(running, min(1.0, (m - rank) * p))
        out[i] = running
    return out


def expected_minimum(scores: Sequence[float], k: int) -> float:
    """The mean, over all C(n, k) subsets of size k, of the subset's minimum; exact, without enumerating them."""
    # With the scores sorted ascending (x_0 <= ... <= x_{n-1}), x_i is the minimum of exactly C(n-1-i, k-1)
    # subsets (those that take it and k-1 of the n-1-i scores above it): the mean is sum_i C(n-1-i, k-1) x_i / C(n, k).
    x = sorted(float(s) for s in scores)
    n = len(x)
    if not 1 <= k <= n:
        raise ValueError(f"k={k} needs 1 <= k <= {n} scores")
    total = math.comb(n, k)
    # int / int is correctly rounded even when the binomials are far beyond float range.
    return sum(math.comb(n - 1 - i, k - 1) / total * x[i] for i in range(n - k + 1))


def worst_at_k(samples: Sequence[Sequence[float]], max_k: int | None = None) -> dict[int, dict[str, Any]]:
    """HealthBench's worst-at-k, k = 1..K: per-case expected minimum of k samples, averaged over cases, clipped."""
    # A case with fewer than k samples does not count at k; `n` says how many did.
    cases = [list(s) for s in samples if len(s)]
    top = max((len(s) for s in cases), default=0)
    out: dict[int, dict[str, Any]] = {}
    for k in range(1, min(top, max_k or top) + 1):
        values = [expected_minimum(s, k) for s in cases if len(s) >= k]
        out[k] = {"score": float(np.clip(np.mean(values), 0.0, 1.0)), "n": len(values)}
    return out


def win_counts(a: Sequence[float], b: Sequence[float]) -> tuple[int, int, int]:
    """Wins, losses and ties of a over b across every pair (one of a's samples, one of b's) of one case."""
    diff = np.subtract.outer(np.asarray(a, dtype=float), np.asarray(b, dtype=float))
    ties = np.isclose(diff, 0.0, atol=1e-12)
    return int(np.sum((diff > 0) & ~ties)), int(np.sum((diff < 0) & ~ties)), int(np.sum(ties))
