"""HealthBench's reference scoring (the formula of openai/simple-evals, written from its description) and the
export of a Bilan run in the shape of the reference code's all-results JSON."""
from __future__ import annotations

import html
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import jsonl
from .errors import InputError, Problem
from .graders.labels import answer_sha256
from .load import display, load_cases, load_config
from .store import MANIFEST, read_json, read_results
from .types import CriterionResult, ResultRow
from .stats import resampled_means

BOOTSTRAP_RESAMPLES = 1000

# --- HealthBench's reference scoring -------------------------------------------------------------------

def reference_score(items: Sequence[tuple[float, bool]]) -> float | None:
    """HealthBench's example score: met points over positive points, unclipped; None without positive points."""
    possible = sum(points for points, _ in items if points > 0)
    if possible == 0:
        return None
    return sum(points for points, met in items if met) / possible


def example_metrics(example_tags: Sequence[str], rubric_items: Sequence[dict]) -> dict[str, float]:
    """One example's metrics: overall_score, each example tag (the overall score), each rubric tag with a positive
    criterion."""
    overall = reference_score([(item["points"], item["criteria_met"]) for item in rubric_items])
    if overall is None:
        raise ValueError("an example needs a positive criterion to have a score")
    metrics = {"overall_score": overall} | {tag: overall for tag in example_tags}
    by_tag: dict[str, list[tuple[float, bool]]] = defaultdict(list)
    for item in rubric_items:
        for tag in item["tags"]:
            by_tag[tag].append((item["points"], item["criteria_met"]))
    for tag, items in by_tag.items():
        if (value := reference_score(items)) is not None:
            metrics[tag] = value
    return metrics


def clipped_stats(values: Sequence[float], rng: np.random.Generator,
                  resamples: int = BOOTSTRAP_RESAMPLES) -> tuple[float, int, float | None]:
    """Clipped mean, count, and the std of `resamples` clipped bootstrap means (None when resamples is 0)."""
    arr = np.asarray(values, dtype=float)
    mean = float(np.clip(np.mean(arr), 0, 1))
    if not resamples:
        return mean, len(arr), None
    means = np.clip(resampled_means(arr, rng, resamples), 0, 1)
    return mean, len(arr), float(np.std(means))


def aggregate_metrics(per_example: Sequence[dict[str, float]], rng: np.random.Generator,
                      resamples: int = BOOTSTRAP_RESAMPLES) -> dict[str, float | int | None]:
    """HealthBench's metrics: each metric's clipped mean over the examples that have it, `:n_samples`, `:bootstrap_std`;
    and, as the reference aggregates each example's score a second time under `score` and then moves the mean out
    to the result's `score`, `score:n_samples` and `score:bootstrap_std` (drawn last, so no other figure moves)."""
    values: dict[str, list[float]] = defaultdict(list)
    for metrics in per_example:
        for name, value in metrics.items():
            values[name].append(value)
    out: dict[str, float | int | None] = {}
    for name, vals in values.items():
        out[name], out[f"{name}:n_samples"], out[f"{name}:bootstrap_std"] = clipped_stats(vals, rng, resamples)
    if "overall_score" in values:
        _, out["score:n_samples"], out["score:bootstrap_std"] = clipped_stats(values["overall_score"], rng, resamples)
    return out


def reference_metrics(examples: Sequence[dict], verdicts: Sequence[Sequence[bool]], rng: np.random.Generator,
                      resamples: int = BOOTSTRAP_RESAMPLES) -> dict[str, Any]:
    """HealthBench's score and metrics for raw examples, given one verdict per rubric item of each."""
    per_example = [example_metrics(ex["example_tags"], [dict(item, criteria_met=met)
                                                        for item, met in zip(ex["rubrics"], mets, strict=True)])
                   for ex, mets in zip(examples, verdicts, strict=True)]
    metrics = aggregate_metrics(per_example, rng, resamples)
    return {"score": metrics["overall_score"], "metrics": metrics}


# --- export ------------------------------------------------------------------------------------------

def _pick_target(rows: Sequence[ResultRow], target: str | None, run_dir: Path) -> str:
    names = sorted({r.target for r in rows})
    if target is None and len(names) == 1:
        return names[0]
    if not names:
        raise InputError([Problem(display(run_dir), 0, 0,
                                  "this run has no results yet; expected a run directory with answers")])
    if target is None or target not in names:
        said = (f"this run has {len(names)} targets; give --target NAME" if target is None
                else f"no target '{target}' in this run")
        raise InputError([Problem(display(run_dir), 0, 0, f"{said}, one of {', '.join(names)}")])
    return target


def _snapshot(run_dir: Path) -> dict[str, dict]:
    return {case["case_id"]: case for case in jsonl.read_objects(run_dir / "cases.jsonl", "one case per line")}


def _case_tags(manifest: dict) -> dict[str, list[str]]:
    """Case tags from the suite the run was made from, when it can still be read (the run directory lacks them)."""
    try:
        config = load_config(Path(manifest["config_file"]))
    except (InputError, KeyError, TypeError, OSError):
        return {}
    return {case.id: list(case.tags) for case in load_cases(Path(config.cases), [])}


def _usage(row: ResultRow, replay: bool) -> dict[str, int | None]:
    u = row.usage
    return (dict.fromkeys(("input_tokens", "input_cached_tokens", "output_tokens", "output_reasoning_tokens",
                           "total_tokens")) if replay
            else {"input_tokens": u.input_tokens, "input_cached_tokens": None, "output_tokens": u.output_tokens,
                  "output_reasoning_tokens": None, "total_tokens": u.input_tokens + u.output_tokens})


def _item(verdict: CriterionResult) -> dict:
    tags = list(verdict.tags) + [f"axis:{verdict.axis}"]
    item = {"criterion": verdict.text, "points": verdict.points, "tags": tags, "criteria_met": verdict.met,
            "explanation": verdict.explanation or ""}
    return item | ({"error": verdict.error} if verdict.error else {})


def _html(convo: Sequence[dict], score: float, items: Sequence[dict]) -> str:
    turns = "".join(f"<div class=\"message {html.escape(m['role'])}\"><b>{html.escape(m['role'])}</b><pre>"
                    f"{html.escape(m['content'])}</pre></div>" for m in convo)
    grades = "<br>".join(html.escape(f"[{i['criteria_met']}] [{i['points']}] {i['criterion']}\n\tExplanation: "
                                     f"{i['explanation']}")
                         for i in sorted(items, key=lambda i: i["criteria_met"] is not False))
    return f"{turns}<h3>Score: {score:.3f}</h3><p>Rubrics with grades: {grades}</p>"


def _example(row: ResultRow, case: dict, prompt_id: str, tags: list[str], replay: bool) -> tuple[dict, dict, list]:
    graded = [_item(v) for v in row.verdicts if v.met is not None]
    prompt = [{"role": m["role"], "content": m["content"]} for m in case.get("conversation", [])]
    completion = [{"content": row.answer, "role": "assistant"}]
    metrics = example_metrics([f"theme:{row.theme}"] + [t for t in tags if not t.startswith("theme:")], graded)
    meta = {"score": row.score, "usage": _usage(row, replay), "rubric_items": graded,
            "ungraded_rubric_items": [_item(v) for v in row.verdicts if v.met is None],
            "prompt": prompt, "completion": completion, "prompt_id": prompt_id,
            "completion_id": answer_sha256(prompt_id + (row.answer or "")),
            "bilan": {"target": row.target, "case_id": row.case_id, "sample": row.sample, "language": row.language}}
    return meta, metrics, prompt + completion


def _intervals(rows: Sequence[ResultRow], target: str, manifest: dict) -> dict[str, dict]:
    from .analyze import summarize     # pandas: loaded only when exporting, not on every command
    summary = summarize(rows, manifest.get("axes", []), manifest.get("seed", 0),
                        manifest.get("bootstrap", BOOTSTRAP_RESAMPLES))
    t = summary["targets"][target]
    parts = (("theme", "by_theme"), ("axis", "by_axis"), ("language", "by_language"))
    return {"overall_score": t["overall"]} | {f"{prefix}:{k}": v for prefix, key in parts for k, v in t[key].items()}


def export_healthbench(run_dir: Path, target: str | None = None) -> dict[str, Any]:
    """One target of a run in the shape of HealthBench's all-results JSON; ungraded criteria are left out of
    rubric_items (listed apart) and scoring, answers without a score are left out, and both are counted."""
    if not (run_dir / MANIFEST).exists():
        raise InputError([Problem(display(run_dir), 0, 0,
                                  "no manifest.json here; expected a run directory written by `bilan run`")])
    manifest, rows = read_json(run_dir / MANIFEST), read_results(run_dir)
    target = _pick_target(rows, target, run_dir)
    rows = sorted((r for r in rows if r.target == target), key=lambda r: (r.case_id, r.sample))
    cases, tags = _snapshot(run_dir), _case_tags(manifest)
    per_scenario = Counter(c["scenario"] for c in cases.values())
    replay = any(t.get("name") == target and t.get("provider") == "replay" for t in manifest.get("targets", []))
    examples, per_example, convos, htmls = [], [], [], []
    for row in rows:
        if row.status != "ok" or row.score is None:
            continue
        case = cases.get(row.case_id, {})
        prompt_id = row.scenario if row.scenario and per_scenario.get(row.scenario) == 1 else row.case_id
        meta, metrics, convo = _example(row, case, prompt_id, tags.get(row.case_id, []), replay)
        examples.append(meta)
        per_example.append(metrics)
        convos.append(convo)
        htmls.append(_html(convo, row.score, meta["rubric_items"]))
    metrics = aggregate_metrics(per_example, np.random.default_rng(manifest.get("seed", 0))) if per_example else {}
    answered = sum(r.status == "ok" for r in rows)
    metrics.update({"bilan:answers": len(rows), "bilan:not_answered": len(rows) - answered,
                    "bilan:unscored_answers": answered - len(examples),
                    "bilan:graded_criteria": sum(len(e["rubric_items"]) for e in examples),
                    "bilan:ungraded_criteria": sum(v.met is None for r in rows for v in r.verdicts)})
    bilan = {"run_id": manifest.get("run_id"), "target": target, "intervals": _intervals(rows, target, manifest)}
    return {"score": metrics.get("overall_score"), "metrics": metrics, "htmls": htmls, "convos": convos,
            "metadata": {"example_level_metadata": examples, "bilan": bilan}}
