"""`bilan agreement`: how far the grader agrees with clinicians' labels, by language, axis, criterion, theme and
HealthBench category, and HealthBench's own meta-eval figures (the reference's keys) beside them."""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import agreement
from .charts import bar_chart
from .errors import InputError, Problem, display
from .graders.labels import answer_sha256, load_labels
from .report import b64, render
from .store import read_json, read_results, write_file, write_json
from .types import CriterionResult

NO_CATEGORY = ""


def label_folders(run_dir: Path, given: Sequence[str] = ()) -> list[Path]:
    """Where the clinicians' labels are: the folders given, else RUN/labels (`bilan review import`), else the
    labels/ folder beside the run's bilan.yaml (`bilan import healthbench-meta` writes the physicians' there)."""
    if given:
        missing = [Problem(display(Path(g)), 0, 0, "not found; expected a folder of <reviewer>.jsonl label files")
                   for g in given if not Path(g).is_dir()]
        if missing:
            raise InputError(missing)
        return [Path(g) for g in given]
    config = (read_json(run_dir / "manifest.json") if (run_dir / "manifest.json").exists() else {}).get("config_file")
    beside = [run_dir / "labels"] + ([Path(config).parent / "labels"] if config else [])
    return next(([folder] for folder in beside if folder.is_dir()), [])


def _category(verdict: CriterionResult) -> str | None:
    """A criterion's HealthBench category: its cluster:* tag (a meta-eval record's `category`), if it has one."""
    return next((t for t in verdict.tags if t.startswith("cluster:")), None)


def collect(run_dir: Path, folders: Sequence[Path] = ()) -> tuple[list[dict], dict[tuple, list], list[dict]]:
    """Items (grader verdict, clinicians' labels, language, axis, criterion, theme, category), per-item labels by
    reviewer, and the verdicts that model and deterministic checks both gave (compare_checks)."""
    labels = load_labels(folders)
    given: dict[tuple, list[tuple[str, bool]]] = defaultdict(list)
    for label in labels:
        given[(label["case_id"], label["answer_sha256"], label["criterion"])].append((label["reviewer"], label["met"]))
    items, both = [], []
    for row in read_results(run_dir):
        if row.answer is None:
            continue
        digest = answer_sha256(row.answer)
        for v in row.verdicts:
            if v.model_met is not None and v.check_met is not None:
                both.append({"language": row.language, "agree": v.check_met == v.model_met})
            reviewers = given.get((row.case_id, digest, v.id), [])
            if reviewers:
                items.append({"grader": v.met, "labels": [m for _, m in reviewers], "reviewers": reviewers,
                              "language": row.language, "axis": v.axis, "criterion": v.id, "theme": row.theme,
                              "category": _category(v), "target": row.target, "case_id": row.case_id,
                              "sample": row.sample, "text": v.text or "", "answer": row.answer})
    return items, given, both


def disagreements(items: list[dict]) -> list[dict]:
    """Items to adjudicate: clinicians split, or the grader against the clinicians' majority."""
    out = []
    for item in items:
        yes, no = sum(item["labels"]), len(item["labels"]) - sum(item["labels"])
        majority = None if yes == no else yes > no
        if majority is None or (item["grader"] is not None and item["grader"] != majority):
            out.append({k: item[k] for k in ("target", "case_id", "sample", "criterion", "language", "text", "grader",
                                             "reviewers")}
                       | {"why": "clinicians split" if majority is None else "grader against the clinicians"})
    return out


def check_agreement(both: list[dict]) -> dict[str, Any]:
    """Share of criteria where the model and the deterministic check gave the same verdict, by language."""
    by: dict[str, list[bool]] = defaultdict(list)
    for item in both:
        by[item["language"]].append(item["agree"])
        by["all"].append(item["agree"])
    return {lang: {"rate": sum(v) / len(v), "n": len(v)} for lang, v in sorted(by.items())}


def _flat(metrics: dict[str, Any], prefix: str) -> dict[str, agreement.Stat]:
    return {k: v for k, v in agreement.flatten(metrics, prefix).items() if not k.startswith(f"{NO_CATEGORY}: ")}


def healthbench_figures(items: Sequence[dict]) -> dict[str, Any]:
    """HealthBench's meta-eval output (simple-evals healthbench_meta_eval.py): the grader against every label,
    pairwise, and each physician against the others, overall and by category, under the reference's keys."""
    graded = [i for i in items if i["grader"] is not None]
    model = _flat(agreement.rater_metrics([i["grader"] for i in graded], [i["labels"] for i in graded],
                                          [i["category"] or NO_CATEGORY for i in graded]), "pairwise_model")
    physicians: dict[str, dict[str, agreement.Stat]] = defaultdict(dict)
    for name, metrics in agreement.leave_one_out([i["reviewers"] for i in items],
                                                 [i["category"] or NO_CATEGORY for i in items]).items():
        for key, stat in _flat(metrics, "pairwise_physician").items():
            physicians[key][name] = stat
    return {"score": model["pairwise_model_f1_balanced"]["value"],
            "metrics": {k: v["value"] for k, v in model.items() if v["value"] is not None},
            "model_agreement_metrics": model, "physician_agreement_metric_lists": dict(physicians)}


def agreement_summary(run_dir: Path, folders: Sequence[Path] = ()) -> dict[str, Any]:
    """Every agreement figure of a run: grader vs clinicians, clinicians among themselves, model vs checks."""
    items, _, both = collect(run_dir, folders)
    seed = read_json(run_dir / "manifest.json").get("seed", 0)
    multi = [i for i in items if len(i["reviewers"]) > 1]
    clinicians = agreement.leave_one_out([i["reviewers"] for i in multi],
                                         [i["language"] for i in multi]) if multi else {}
    by_category = agreement.leave_one_out([i["reviewers"] for i in multi],
                                          [i["category"] or NO_CATEGORY for i in multi]) if multi else {}
    return {"grader": agreement.grader_agreement(items, seed), "clinicians": {
                name: {"macro_f1": m["overall"]["f1_balanced"],
                       "by_language": {k: v["f1_balanced"] for k, v in m["by_group"].items()},
                       "by_category": {k: v["f1_balanced"] for k, v in by_category[name]["by_group"].items()
                                       if k != NO_CATEGORY}}
                for name, m in clinicians.items()},
            "healthbench": healthbench_figures(items) if items else None, "labels": [str(f) for f in folders],
            "reviewers": sorted({r for i in items for r, _ in i["reviewers"]}), "labelled_items": len(items),
            "disagreements": disagreements(items), "model_vs_checks": check_agreement(both)}


def write_agreement(run_dir: Path, summary: dict[str, Any]) -> Path:
    """agreement.json and agreement.html beside the run."""
    write_json(run_dir / "agreement.json", summary)
    cells = {lang: {"score": c["macro_f1"]["value"], "ci_low": c["macro_f1"]["ci_low"],
                    "ci_high": c["macro_f1"]["ci_high"]}
             for lang, c in summary["grader"]["by_language"].items()
             if c["macro_f1"]["value"] is not None and c["macro_f1"]["ci_low"] is not None}
    # Only languages with a figure, and no chart at all when none has one (an empty chart says nothing).
    chart = bar_chart(list(cells), {"grader vs clinicians (macro F1)": list(cells.values())},
                      "Grader-clinician agreement by language") if cells else None
    manifest = read_json(run_dir / "manifest.json")
    html = render("agreement.html.j2", manifest=manifest, s=summary, chart=b64(chart) if chart else None)
    write_file(run_dir / "agreement.html", html)
    return run_dir / "agreement.html"
