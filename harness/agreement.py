"""Agreement between raters on binary verdicts: HealthBench's meta-eval metric, as pure functions.

HealthBench compares a grader with physicians pairwise: every label of the rater is paired with every reference
label given to the same item (no majority vote). Over those pairs:
- precision_pos: share of pairs that agree among the pairs where the rater said met (TP / (TP + FP));
  precision_neg the same where the rater said not met (TN / (TN + FN));
- recall_pos: share that agree among the pairs where the reference said met (TP / (TP + FN));
  recall_neg the same where the reference said not met (TN / (TN + FP));
- f1_pos, f1_neg: harmonic means of the matching precision and recall; f1_balanced: their mean (macro F1);
  precision_balanced and recall_balanced: the means of the two classes' precisions and recalls, as the reference
  writes them beside f1_balanced (None when either class has no pair).
A physician is compared with the other physicians of each item (leave one out). Each figure comes with `n`:
the pairs behind it (f1_pos: TP + FP + FN, as HealthBench counts it; f1_balanced: all pairs, where
HealthBench adds the two classes' counts; precision_balanced and recall_balanced: all pairs, as HealthBench's sum of
the two classes' counts is). A value whose pairs are missing is None, never 0.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

Stat = dict[str, Any]          # {"value": float | None, "n": int}
METRICS = ("precision_pos", "precision_neg", "recall_pos", "recall_neg", "f1_pos", "f1_neg", "f1_balanced",
           "precision_balanced", "recall_balanced")


def _rate(agree: int, total: int) -> Stat:
    return {"value": agree / total if total else None, "n": total}


def _f1(precision: Stat, recall: Stat, n: int) -> Stat:
    p, r = precision["value"], recall["value"]
    if p is None or r is None:
        return {"value": None, "n": n}
    return {"value": 0.0 if p + r == 0 else 2 * p * r / (p + r), "n": n}


def pair_metrics(pairs: Iterable[tuple[bool, bool]]) -> dict[str, Stat]:
    """Precision, recall and F1 per class, and macro F1, from (rater label, reference label) pairs."""
    counts = {(True, True): 0, (True, False): 0, (False, True): 0, (False, False): 0}
    for rater, reference in pairs:
        counts[(bool(rater), bool(reference))] += 1
    tp, fp, fn, tn = counts[(True, True)], counts[(True, False)], counts[(False, True)], counts[(False, False)]
    out = {"precision_pos": _rate(tp, tp + fp), "precision_neg": _rate(tn, tn + fn),
           "recall_pos": _rate(tp, tp + fn), "recall_neg": _rate(tn, tn + fp)}
    out["f1_pos"] = _f1(out["precision_pos"], out["recall_pos"], tp + fp + fn)
    out["f1_neg"] = _f1(out["precision_neg"], out["recall_neg"], tn + fn + fp)
    for name in ("f1", "precision", "recall"):
        pos, neg = out[f"{name}_pos"]["value"], out[f"{name}_neg"]["value"]
        out[f"{name}_balanced"] = {"value": None if pos is None or neg is None else (pos + neg) / 2, "n": tp + fp + fn
                                   + tn}
    return out


def rater_metrics(labels: Sequence[bool], references: Sequence[Sequence[bool]],
                  groups: Sequence[str]) -> dict[str, Any]:
    """A rater's labels, item by item, against each reference label of the item: overall and by group."""
    if not len(labels) == len(references) == len(groups):
        raise ValueError("labels, references and groups must have one entry per item")
    by_group: dict[str, list[tuple[bool, bool]]] = defaultdict(list)
    for label, refs, group in zip(labels, references, groups):
        by_group[group].extend((label, ref) for ref in refs)
    everything = [pair for pairs in by_group.values() for pair in pairs]
    return {"overall": pair_metrics(everything),
            "by_group": {group: pair_metrics(pairs) for group, pairs in sorted(by_group.items())}}


def leave_one_out(items: Sequence[Sequence[tuple[str, bool]]], groups: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Each rater of `items` (one list of (rater, label) per item) against the other raters of the same items."""
    if len(items) != len(groups):
        raise ValueError("items and groups must have one entry per item")
    per_rater: dict[str, tuple[list, list, list]] = defaultdict(lambda: ([], [], []))
    for item, group in zip(items, groups):
        for i, (rater, label) in enumerate(item):
            others = [other for j, (_, other) in enumerate(item) if j != i]
            mine = per_rater[rater]
            mine[0].append(label)
            mine[1].append(others)
            mine[2].append(group)
    return {rater: rater_metrics(*lists) for rater, lists in sorted(per_rater.items())}


def flatten(metrics: dict[str, Any], prefix: str) -> dict[str, Stat]:
    """HealthBench-style flat keys: `<prefix>_<metric>` overall and `<group>: <prefix>_<metric>` by group."""
    out = {f"{prefix}_{name}": metrics["overall"][name] for name in METRICS}
    for group, stats in metrics["by_group"].items():
        out.update({f"{group}: {prefix}_{name}": stats[name] for name in METRICS})
    return out


# --- grader against clinicians, for `bilan agreement` ---------------------------------------------------

def kappa(pairs: Sequence[tuple[bool, bool]]) -> float | None:
    """Cohen's kappa of (rater, reference) pairs; None when agreement by chance is certain."""
    n = len(pairs)
    if not n:
        return None
    observed = sum(a == b for a, b in pairs) / n
    p_rater = sum(a for a, _ in pairs) / n
    p_ref = sum(b for _, b in pairs) / n
    chance = p_rater * p_ref + (1 - p_rater) * (1 - p_ref)
    return None if chance == 1 else (observed - chance) / (1 - chance)


def balanced_accuracy(pairs: Sequence[tuple[bool, bool]]) -> float | None:
    """Mean of the recall on met and on not-met references."""
    stats = pair_metrics(pairs)
    pos, neg = stats["recall_pos"]["value"], stats["recall_neg"]["value"]
    return None if pos is None or neg is None else (pos + neg) / 2


def _figures(items: Sequence[dict]) -> dict[str, Any]:
    pairs = [(item["grader"], label) for item in items for label in item["labels"]]
    return {"macro_f1": pair_metrics(pairs)["f1_balanced"]["value"], "kappa": kappa(pairs),
            "balanced_accuracy": balanced_accuracy(pairs), "items": len(items), "pairs": len(pairs)}


def _interval(items: Sequence[dict], metric: str, rng, resamples: int) -> tuple[float | None, float | None]:
    """95% bootstrap interval of a figure, resampling items (each with all its labels)."""
    values = []
    for _ in range(resamples):
        sample = [items[rng.randrange(len(items))] for _ in items]
        value = _figures(sample)[metric]
        if value is not None:
            values.append(value)
    if len(values) < resamples // 2:
        return None, None
    values.sort()
    return values[int(0.025 * len(values))], values[min(len(values) - 1, int(0.975 * len(values)))]


def grader_agreement(items: Sequence[dict], seed: int = 0, resamples: int = 500) -> dict[str, Any]:
    """The grader against clinicians (pairwise macro F1, Cohen's kappa, balanced accuracy) overall and by
    language, axis, criterion, theme and HealthBench category, with bootstrap intervals. Each item: {grader,
    labels, language, axis, criterion} and optionally theme and category (an item without one is in no group of
    it); items the grader did not grade are left out and counted."""
    import random
    rng = random.Random(seed)
    graded = [i for i in items if i["grader"] is not None and i["labels"]]

    def block(subset: Sequence[dict]) -> dict[str, Any]:
        figures = _figures(subset)
        for metric in ("macro_f1", "kappa", "balanced_accuracy"):
            low, high = _interval(subset, metric, rng, resamples) if subset else (None, None)
            figures[metric] = {"value": figures[metric], "ci_low": low, "ci_high": high}
        return figures

    out: dict[str, Any] = {"overall": block(graded), "ungraded_items": len(items) - len(graded)}
    for key in ("language", "axis", "criterion", "theme", "category"):
        groups: dict[str, list] = defaultdict(list)
        for item in graded:
            if item.get(key) is not None:
                groups[item[key]].append(item)
        out[f"by_{key}"] = {name: block(group) for name, group in sorted(groups.items())}
    return out
