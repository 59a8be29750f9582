"""`bilan agreement`: how far the grader agrees with clinicians' labels, by language, axis and criterion."""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from . import agreement
from .charts import bar_chart
from .graders.labels import answer_sha256, load_labels
from .report import b64, render
from .store import read_json, read_results, write_json


def collect(run_dir: Path) -> tuple[list[dict], dict[str, list], list[dict]]:
    """Items (grader verdict, clinicians' labels, language, axis, criterion), per-item labels by reviewer,
    and the verdicts that model and deterministic checks both gave (compare_checks)."""
    labels = load_labels([run_dir / "labels"]) if (run_dir / "labels").exists() else []
    given: dict[tuple, list[tuple[str, bool]]] = defaultdict(list)
    for label in labels:
        given[(label["case_id"], label["answer_sha256"], label["criterion"])].append((label["reviewer"], label["met"]))
    items, both = [], []
    for row in read_results(run_dir):
        if row.get("answer") is None:
            continue
        digest = answer_sha256(row["answer"])
        for v in row["verdicts"]:
            if "check_met" in v and v.get("model_met") is not None and v.get("check_met") is not None:
                both.append({"language": row["language"], "agree": v["check_met"] == v["model_met"]})
            reviewers = given.get((row["case_id"], digest, v["id"]), [])
            if reviewers:
                items.append({"grader": v["met"], "labels": [m for _, m in reviewers], "reviewers": reviewers,
                              "language": row["language"], "axis": v["axis"], "criterion": v["id"],
                              "target": row["target"], "case_id": row["case_id"], "sample": row.get("sample", 0),
                              "text": v.get("text", ""), "answer": row["answer"]})
    return items, given, both


def disagreements(items: list[dict]) -> list[dict]:
    """Items to adjudicate: clinicians split, or the grader against the clinicians' majority."""
    out = []
    for item in items:
        yes, no = sum(item["labels"]), len(item["labels"]) - sum(item["labels"])
        majority = None if yes == no else yes > no
        if majority is None or (item["grader"] is not None and item["grader"] != majority):
            out.append({k: item[k] for k in ("target", "case_id", "sample", "criterion", "language", "text", "grader", "reviewers")}
                       | {"why": "clinicians split" if majority is None else "grader against the clinicians"})
    return out


def check_agreement(both: list[dict]) -> dict[str, Any]:
    """Share of criteria where the model and the deterministic check gave the same verdict, by language."""
    by: dict[str, list[bool]] = defaultdict(list)
    for item in both:
        by[item["language"]].append(item["agree"])
        by["all"].append(item["agree"])
    return {lang: {"rate": sum(v) / len(v), "n": len(v)} for lang, v in sorted(by.items())}


def agreement_summary(run_dir: Path) -> dict[str, Any]:
    """Every agreement figure of a run: grader vs clinicians, clinicians among themselves, model vs checks."""
    items, _, both = collect(run_dir)
    seed = read_json(run_dir / "manifest.json").get("seed", 0)
    multi = [i for i in items if len(i["reviewers"]) > 1]
    clinicians = agreement.leave_one_out([i["reviewers"] for i in multi], [i["language"] for i in multi]) if multi else {}
    return {"grader": agreement.grader_agreement(items, seed), "clinicians": {
                name: {"macro_f1": m["overall"]["f1_balanced"], "by_language": {k: v["f1_balanced"] for k, v in m["by_group"].items()}}
                for name, m in clinicians.items()},
            "reviewers": sorted({r for i in items for r, _ in i["reviewers"]}), "labelled_items": len(items),
            "disagreements": disagreements(items), "model_vs_checks": check_agreement(both)}


def write_agreement(run_dir: Path, summary: dict[str, Any]) -> Path:
    """agreement.json and agreement.html beside the run."""
    write_json(run_dir / "agreement.json", summary)
    languages = list(summary["grader"]["by_language"])
    chart = bar_chart(languages, {"grader vs clinicians (macro F1)": [
        {"score": c["macro_f1"]["value"], "ci_low": c["macro_f1"]["ci_low"], "ci_high": c["macro_f1"]["ci_high"]}
        if c["macro_f1"]["value"] is not None and c["macro_f1"]["ci_low"] is not None else None
        for c in summary["grader"]["by_language"].values()]}, "Grader-clinician agreement by language") if languages else None
    manifest = read_json(run_dir / "manifest.json")
    html = render("agreement.html.j2", manifest=manifest, s=summary, chart=b64(chart) if chart else None)
    (run_dir / "agreement.html").write_text(html, encoding="utf-8")
    return run_dir / "agreement.html"
