"""results -> pandas frames: means with seeded bootstrap intervals, broken down by language, axis and theme."""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

ANSWER_COLUMNS = ["target", "case_id", "scenario", "language", "theme", "use_case", "persona", "sample", "status",
                  "score", "graded", "ungraded", "input_tokens", "output_tokens", "latency", "cached",
                  "grader_input_tokens", "grader_output_tokens"]


def answers_frame(rows: Sequence[dict[str, Any]], axes: Sequence[str] = ()) -> pd.DataFrame:
    """One row per target x case x sample, with its score and one `axis:<name>` column per axis."""
    records = []
    for r in rows:
        rec = {k: r.get(k) for k in ANSWER_COLUMNS if k in r}
        usage = r.get("usage") or {}
        graded = [v.get("usage") or {} for v in r.get("verdicts", [])]
        rec.update(input_tokens=usage.get("input_tokens", 0), output_tokens=usage.get("output_tokens", 0),
                   latency=usage.get("latency", 0.0), cached=bool(usage.get("cached", False)),
                   grader_input_tokens=sum(u.get("input_tokens", 0) for u in graded),
                   grader_output_tokens=sum(u.get("output_tokens", 0) for u in graded))
        for axis in axes:
            rec[f"axis:{axis}"] = (r.get("axis_scores") or {}).get(axis)
        records.append(rec)
    frame = pd.DataFrame.from_records(records, columns=ANSWER_COLUMNS + [f"axis:{a}" for a in axes])
    return frame.sort_values(["target", "case_id", "sample"], kind="stable").reset_index(drop=True)


def verdicts_frame(rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """One row per target x case x sample x criterion (long format)."""
    records = [{"target": r["target"], "case_id": r["case_id"], "language": r["language"], "theme": r.get("theme"),
                "sample": r.get("sample", 0), "criterion": v["id"], "rubric": v.get("rubric"), "points": v["points"],
                "axis": v["axis"], "met": v["met"], "grader": v.get("grader"), "error": v.get("error")}
               for r in rows for v in r.get("verdicts", [])]
    return pd.DataFrame.from_records(records, columns=["target", "case_id", "language", "theme", "sample", "criterion",
                                                       "rubric", "points", "axis", "met", "grader", "error"])


def bootstrap(values: np.ndarray, rng: np.random.Generator, resamples: int) -> tuple[float, float]:
    """95% percentile interval of the clipped mean, resampling the values with replacement."""
    if len(values) == 0:
        return (math.nan, math.nan)
    idx = rng.integers(0, len(values), size=(resamples, len(values)))
    means = np.clip(values[idx].mean(axis=1), 0, 1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def aggregate(values: pd.Series, rng: np.random.Generator, resamples: int) -> dict[str, Any]:
    """Clipped mean, bootstrap interval and count of the non-missing values."""
    arr = values.dropna().to_numpy(dtype=float)
    if len(arr) == 0:
        return {"score": None, "ci_low": None, "ci_high": None, "n": 0}
    low, high = bootstrap(arr, rng, resamples)
    return {"score": float(np.clip(arr.mean(), 0, 1)), "ci_low": low, "ci_high": high, "n": int(len(arr))}


def per_case(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    """Average a score column over samples, so that intervals resample cases, not repeated answers."""
    keep = ["target", "case_id", "scenario", "language", "theme"]
    return frame.groupby(keep, dropna=False, sort=True)[column].mean().reset_index()


def _breakdown(frame: pd.DataFrame, column: str, by: str, rng, resamples: int) -> dict[str, Any]:
    cases = per_case(frame, column)
    return {str(key): aggregate(group[column], rng, resamples) for key, group in cases.groupby(by, sort=True)}


def summarize_target(frame: pd.DataFrame, verdicts: pd.DataFrame, axes: Sequence[str], seed: int,
                     resamples: int) -> dict[str, Any]:
    """Overall, by language, by axis, by theme and by language x axis for one target."""
    rng = np.random.default_rng(seed)
    overall = aggregate(per_case(frame, "score")["score"], rng, resamples)
    out: dict[str, Any] = {"overall": overall,
                           "by_language": _breakdown(frame, "score", "language", rng, resamples),
                           "by_axis": {a: aggregate(per_case(frame, f"axis:{a}")[f"axis:{a}"], rng, resamples) for a in axes},
                           "by_theme": _breakdown(frame, "score", "theme", rng, resamples),
                           "by_language_axis": {}}
    for language, group in frame.groupby("language", sort=True):
        out["by_language_axis"][language] = {a: aggregate(per_case(group, f"axis:{a}")[f"axis:{a}"], rng, resamples) for a in axes}
    status = frame["status"].value_counts()
    out.update(answers=int(len(frame)), ok=int(status.get("ok", 0)), missing=int(status.get("missing", 0)),
               errors=int(status.get("error", 0)), unscored=int(((frame["status"] == "ok") & frame["score"].isna()).sum()),
               graded_criteria=int(verdicts["met"].notna().sum()), ungraded_criteria=int(verdicts["met"].isna().sum()),
               grading_errors=int(verdicts["error"].notna().sum()),
               ungraded_by_language={str(k): int(v) for k, v in verdicts[verdicts["met"].isna()].groupby("language").size().items()},
               input_tokens=int(frame["input_tokens"].sum()), output_tokens=int(frame["output_tokens"].sum()),
               grader_input_tokens=int(frame["grader_input_tokens"].sum()),
               grader_output_tokens=int(frame["grader_output_tokens"].sum()))
    live = frame[(frame["status"] == "ok") & ~frame["cached"] & (frame["latency"] > 0)]["latency"]
    out["latency"] = {"p50": float(live.quantile(0.5)), "p95": float(live.quantile(0.95)), "n": int(len(live))} if len(live) else None
    return out


def _usd(tokens_in: int, tokens_out: int, price: dict | None) -> float | None:
    return (tokens_in * price["input"] + tokens_out * price["output"]) / 1e6 if price else None


def add_costs(target: dict[str, Any], price: dict | None, grader_price: dict | None) -> None:
    """Cost of a target's answers and of grading them, in US dollars (None without a price)."""
    answers = _usd(target["input_tokens"], target["output_tokens"], price)
    grading = _usd(target["grader_input_tokens"], target["grader_output_tokens"], grader_price)
    known = [c for c in (answers, grading) if c is not None]
    n = target["overall"]["n"] or 0
    total = sum(known) if known else None
    target["cost"] = {"answers_usd": answers, "grading_usd": grading, "total_usd": total,
                      "per_100_cases_usd": (total / n * 100) if total is not None and n else None}


def summarize(rows: Sequence[dict[str, Any]], axes: Sequence[str], seed: int = 0, resamples: int = 1000,
              prices: dict[str, dict | None] | None = None, grader_price: dict | None = None) -> dict[str, Any]:
    """The summary.json content for a run's rows; prices are per target name, USD per million tokens."""
    frame, verdicts = answers_frame(rows, axes), verdicts_frame(rows)
    targets = {}
    for name in sorted(frame["target"].unique()):
        targets[str(name)] = summarize_target(frame[frame["target"] == name], verdicts[verdicts["target"] == name],
                                              axes, seed, resamples)
        add_costs(targets[str(name)], (prices or {}).get(str(name)), grader_price)
    return {"targets": targets, "languages": sorted(frame["language"].unique().tolist()), "axes": list(axes),
            "themes": sorted(frame["theme"].dropna().unique().tolist()), "rows": len(rows)}
