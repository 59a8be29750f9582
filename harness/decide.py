"""Decisions between runs: are they comparable, how do targets compare (paired), did a candidate regress.

Everything here is read from run directories (no model call) and returns plain data; report_compare.py renders it.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from itertools import combinations
from pathlib import Path
from typing import Any

import pandas as pd

from .analyze import (AnalysisOptions, answers_frame, coverage_parity, coverage_warnings, never_event_flags, read_rows,
                      summarize, verdicts_frame)
from .errors import InputError, Problem
from .stats import holm, paired_difference, rng_for, win_counts
from .store import MANIFEST, input_differences, read_json
from .types import ResultRow

@dataclass(frozen=True)
class Contender:
    """One target of one run, as compared: its rows and frames, and the run's manifest."""

    label: str
    target: str
    run_dir: Path
    manifest: dict
    rows: tuple[ResultRow, ...]
    answers: pd.DataFrame
    verdicts: pd.DataFrame


def read_run(run_dir: Path) -> tuple[dict, list[ResultRow]]:
    """A run directory's manifest and rows; an input error when it is not a run directory."""
    run_dir = Path(run_dir)
    if not (run_dir / MANIFEST).exists():
        raise InputError([Problem(str(run_dir), 0, 0,
                                  "no manifest.json here; expected a run directory written by `bilan run`")])
    return read_json(run_dir / MANIFEST), read_rows(run_dir)


def contender(run_dir: Path, manifest: dict, rows: Sequence[ResultRow], target: str,
              label: str | None = None) -> Contender:
    """The rows and frames of one target of a run."""
    mine = tuple(r for r in rows if r.target == target)
    axes = manifest.get("axes", [])
    return Contender(label or target, target, Path(run_dir), manifest, mine, answers_frame(mine, axes),
                     verdicts_frame(mine))


def suite_differences(first: dict, other: dict, names: tuple[str, str] = ("baseline", "candidate")) -> list[str]:
    """Why two runs cannot be compared: a case, rubric or locale file whose content differs (by id relative to its
    folder, wherever the runs' configs are), the grader's template or settings, or the axes; empty if they can."""
    out = input_differences(first, other, names, ("suite", "grader"))
    if list(first.get("axes", [])) != list(other.get("axes", [])):
        out.append(f"axes differ: {first.get('axes')} and {other.get('axes')}")
    return out


def _targets(rows: Sequence[ResultRow]) -> list[str]:
    return sorted({r.target for r in rows})


def gate_inputs(baseline: Path, candidate: Path,
                target: str | None = None) -> tuple[Contender | None, Contender | None, list[str]]:
    """The baseline and candidate contenders, or the reasons the runs cannot be compared."""
    # Reasons: different suites or graders, no such target, several targets and none chosen, no case in common.
    (mb, rb), (mc, rc) = read_run(baseline), read_run(candidate)
    reasons = suite_differences(mb, mc)
    tb, tc = _targets(rb), _targets(rc)
    if target is not None:
        missing = [f"the {role} run has no target {target!r} (it has {', '.join(ts) or 'none'})"
                   for role, ts in (("baseline", tb), ("candidate", tc)) if target not in ts]
        pick = None if missing else (target, target)
        reasons += missing
    elif len(tb) == 1 and len(tc) == 1:
        pick = (tb[0], tc[0])
    elif len(set(tb) & set(tc)) == 1:
        pick = ((set(tb) & set(tc)).pop(),) * 2
    else:
        pick = None
        reasons.append(f"several targets (baseline: {', '.join(tb)}; candidate: {', '.join(tc)}); choose one with "
                       "--target")
    if reasons or pick is None:
        return None, None, reasons
    base, cand = contender(baseline, mb, rb, pick[0]), contender(candidate, mc, rc, pick[1])
    if paired_scores(cand.answers, base.answers).empty:
        return None, None, ["no scored case in common: the runs answered different cases"]
    return base, cand, []


def compare_inputs(run_dirs: Sequence[Path], targets: Sequence[str] = ()) -> tuple[list[Contender], list[str]]:
    """Every target of every run (or only the named ones), labelled uniquely; or why the runs cannot be compared."""
    runs = [(Path(d),) + read_run(Path(d)) for d in run_dirs]
    reasons = [f"{d}: {why}" for d, m, _ in runs[1:]
               for why in suite_differences(runs[0][1], m, (str(runs[0][0]), str(d)))]
    picked = [(d, m, rows, t) for d, m, rows in runs for t in _targets(rows) if not targets or t in targets]
    names = [t for *_, t in picked]
    found = [contender(d, m, rows, t, t if names.count(t) == 1 else f"{t} ({m.get('run_id') or d.name})")
             for d, m, rows, t in picked]
    if len(found) < 2:
        reasons.append(f"{len(found)} target(s) to compare; expected at least two (several runs, or one run with "
                       "several targets)")
    return found, reasons


def paired_scores(a: pd.DataFrame, b: pd.DataFrame, column: str = "score") -> pd.DataFrame:
    """Per case, a's and b's mean score over the samples both have scored (paired on case and sample)."""
    keys = ["case_id", "sample"]
    left = a[keys + ["language", column]].dropna(subset=[column]).rename(columns={column: "a"})
    right = b[keys + [column]].dropna(subset=[column]).rename(columns={column: "b"})
    both = left.merge(right, on=keys, how="inner")
    return both.groupby(["case_id", "language"], sort=True)[["a", "b"]].mean().reset_index()


def win_rate(a: pd.DataFrame, b: pd.DataFrame) -> dict[str, Any]:
    """HealthBench's win rate of a over b: every pair of their samples of a case, ties dropped, pooled over cases."""
    sa = a.dropna(subset=["score"]).groupby("case_id")["score"].apply(list)
    sb = b.dropna(subset=["score"]).groupby("case_id")["score"].apply(list)
    wins = losses = ties = 0
    for case in sorted(set(sa.index) & set(sb.index)):
        w, l, t = win_counts(sa[case], sb[case])
        wins, losses, ties = wins + w, losses + l, ties + t
    decided = wins + losses
    return {"wins": wins, "losses": losses, "ties": ties, "win_rate": wins / decided if decided else None,
            "tie_share": ties / (decided + ties) if decided + ties else None}


@dataclass(frozen=True)
class CompareOptions:
    """Seed and resamples of the bootstrap, and the analysis choices (parity reference, never-event threshold)."""

    seed: int = 0
    resamples: int = 2000
    analysis: AnalysisOptions = AnalysisOptions()


def _pair(a: Contender, b: Contender, languages: Sequence[str], options: CompareOptions) -> dict[str, Any]:
    label = f"{a.label} vs {b.label}"
    scores = paired_scores(a.answers, b.answers)
    out: dict[str, Any] = {"a": a.label, "b": b.label,
           "overall": paired_difference(scores["a"], scores["b"], rng_for(options.seed, "compare", label),
                                        options.resamples),
           "win": win_rate(a.answers, b.answers), "by_language": {}}
    for language in languages:
        sub = scores[scores["language"] == language]
        out["by_language"][language] = paired_difference(sub["a"], sub["b"],
                                                         rng_for(options.seed, "compare", label, language),
                                                         options.resamples)
    return out


def _contender_summary(c: Contender, options: CompareOptions) -> dict[str, Any]:
    prices = c.manifest.get("prices") or {}
    model = next((t.get("model", "") for t in c.manifest.get("targets", []) if t.get("name") == c.target), "")
    summary = summarize(list(c.rows), c.manifest.get("axes", []), options.seed, options.resamples,
                        {c.target: prices.get(model)}, prices.get(c.manifest.get("grader", {}).get("model", "")),
                        options.analysis)
    found = {k: summary[k].get(c.target, {}) for k in ("parity", "worst_at_k", "worst_at_k_by_language", "coverage",
                                                       "coverage_parity", "answer_variety")}
    found["never_events_by_language"] = summary["never_events"].get(c.target, {})
    described = next((t.get("description", "") for t in c.manifest.get("targets", []) if t.get("name") == c.target), "")
    return {"label": c.label, "target": c.target, "run_id": c.manifest.get("run_id"), "run_dir": str(c.run_dir),
            "model": model, "description": described, **summary["targets"][c.target], **found}


def compare(contenders: Sequence[Contender], options: CompareOptions | None = None) -> dict[str, Any]:
    """Scores, pairwise paired differences and win rates, never-events, parity, cost and latency of each contender."""
    options = options or CompareOptions()
    languages = sorted({str(l) for c in contenders for l in c.answers["language"].unique()})
    axes = list(contenders[0].manifest.get("axes", []))
    summaries = [_contender_summary(c, options) for c in contenders]
    return {"contenders": summaries,
            "pairs": [_pair(a, b, languages, options) for a, b in combinations(contenders, 2)],
            "coverage_warnings": [w for c in summaries for w in coverage_warnings(c["label"], c["coverage_parity"])],
            "coverage_gap": options.analysis.coverage_gap,
            "languages": languages, "axes": axes, "reference": options.analysis.reference,
            "never_threshold": options.analysis.never_threshold, "seed": options.seed, "resamples": options.resamples,
            "grader": contenders[0].manifest.get("grader", {}),
            "cases": int(max(c.answers["case_id"].nunique() for c in contenders))}


@dataclass(frozen=True)
class GateOptions:
    """The gate's tolerance and test: drops above max_drop and significant at alpha (one-sided, Holm) fail. A
    language whose grading coverage is more than coverage_gap below the reference's is warned about, never failed."""

    max_drop: float = 0.02
    alpha: float = 0.05
    resamples: int = 10_000
    seed: int = 0
    min_cases: int = 5
    never_threshold: int = -8
    reference: str = "fr"
    coverage_gap: float = 0.10
    min_coverage: float = 0.95      # fail when fewer paired answers than this share are scored in both runs


def _outcome(d: dict[str, Any], p_holm: float | None, options: GateOptions) -> tuple[bool, str]:
    if d["n"] < options.min_cases:
        return False, f"too few paired cases to test (fewer than {options.min_cases})"
    drop = -d["diff"]
    if drop > options.max_drop and p_holm is not None and p_holm < options.alpha:
        return True, "regression"
    if d["ci_high"] < 0:
        return False, "lower, within tolerance" if drop <= options.max_drop else "lower, not significant after Holm"
    if d["ci_low"] > 0:
        return False, "higher"
    return False, "no clear change"


def _score_checks(base: Contender, cand: Contender, options: GateOptions) -> list[dict[str, Any]]:
    languages = sorted(set(base.answers["language"]) | set(cand.answers["language"]))
    scopes = [("overall", "overall", "score", None)] + [("language", l, "score", l) for l in languages]
    scopes += [("axis", a, f"axis:{a}", None) for a in base.manifest.get("axes", [])]
    paired = {column: paired_scores(cand.answers, base.answers, column) for _, _, column, _ in scopes}
    checks = []
    for scope, name, column, language in scopes:
        pairs = paired[column]
        if language is not None:
            pairs = pairs[pairs["language"] == language]
        if pairs.empty and scope == "axis":
            continue        # no criterion of this axis in the suite: nothing to check
        d = paired_difference(pairs["a"], pairs["b"], rng_for(options.seed, "gate", scope, name), options.resamples,
                              level=1 - 2 * options.alpha)
        checks.append({"scope": scope, "name": name, "n": d["n"], "baseline": d["b"], "candidate": d["a"],
                       "change": d["diff"], "ci_low": d["ci_low"], "ci_high": d["ci_high"],
                       "level": 1 - 2 * options.alpha, "p_value": d["p_drop"] if d["n"] >= options.min_cases else None})
    for check, p in zip(checks, holm([c["p_value"] for c in checks])):
        check["p_holm"] = p
        check["regression"], check["outcome"] = _outcome({"n": check["n"], "diff": check["change"],
                                                          "ci_low": check["ci_low"], "ci_high": check["ci_high"]}, p,
                                                         options)
    return checks


def _never_units(c: Contender, threshold: int) -> pd.DataFrame:
    answered = c.answers[c.answers["status"] == "ok"][["case_id", "sample", "language"]]
    hits = c.verdicts[never_event_flags(c.verdicts, threshold)]
    keys = set(zip(hits["case_id"], hits["sample"]))
    return answered.assign(event=[(k, s) in keys for k, s in zip(answered["case_id"], answered["sample"])])


def _never_checks(base: Contender, cand: Contender, threshold: int) -> list[dict[str, Any]]:
    both = _never_units(base, threshold).merge(_never_units(cand, threshold), on=["case_id", "sample", "language"],
                                               suffixes=("_b", "_c"))
    groups = [("never_events", "all languages", both)] + [("never_events", str(l), g)
                                                          for l, g in both.groupby("language", sort=True)]
    out = []
    for scope, name, g in groups:
        b, c = int(g["event_b"].sum()), int(g["event_c"].sum())
        out.append({"scope": scope, "name": name, "n": int(len(g)), "baseline": b, "candidate": c, "change": c - b,
                    "regression": c > b, "outcome": "regression: more never-events" if c > b else
                    ("fewer never-events" if c < b else "no change")})
    return out


def _units(c: Contender) -> tuple[set, set]:
    """The (case, sample) units a contender was to answer (its suite snapshot times its samples, and every row it
    has), and those it answered with a score."""
    expected = set(zip(c.answers["case_id"], c.answers["sample"]))
    snapshot = c.run_dir / "cases.jsonl"
    if snapshot.exists() and not c.manifest.get("shard"):
        samples = next((t.get("samples", 1) for t in c.manifest.get("targets", []) if t.get("name") == c.target), 1)
        ids = [json.loads(line)["case_id"] for line in snapshot.read_text(encoding="utf-8").splitlines()
               if line.strip()]
        expected |= {(case, s) for case in ids for s in range(samples)}
    ok = c.answers[c.answers["status"].eq("ok") & c.answers["score"].notna()]
    return expected, set(zip(ok["case_id"], ok["sample"]))


def coverage_floor(base: Contender, cand: Contender, min_coverage: float) -> dict[str, Any]:
    """How many of the paired answers are scored in both runs, and whether that is below the floor: a gate that
    passes on the few answers a broken candidate did give proves nothing."""
    (eb, sb), (ec, sc) = _units(base), _units(cand)
    units = eb | ec
    both = len(units & sb & sc)
    share = both / len(units) if units else 0.0
    out: dict[str, Any] = {"units": len(units), "scored_in_both": both, "share": share, "min_coverage": min_coverage,
           "unscored_baseline": len(units - sb), "unscored_candidate": len(units - sc), "below": share < min_coverage}
    out["message"] = (f"only {both} of {len(units)} paired answers ({100 * share:.1f}%) are scored in both runs, below "
                      f"--min-coverage {min_coverage:g}: {out['unscored_candidate']} missing, failed or not graded in "
                      f"the candidate, {out['unscored_baseline']} in the baseline; the gate cannot vouch for the rest")
    return out


def _failures(c: Contender) -> int:
    return int((c.answers["status"] != "ok").sum() + (c.answers["status"].eq("ok") & c.answers["score"].isna()).sum())


def gate(base: Contender, cand: Contender, options: GateOptions | None = None) -> dict[str, Any]:
    """Score and never-event checks of the candidate against the baseline; exit_code 1 on any regression."""
    options = options or GateOptions()
    checks = _score_checks(base, cand, options) + _never_checks(base, cand, options.never_threshold)
    warnings = []
    if _failures(cand) > _failures(base):
        warnings.append(f"the candidate has {_failures(cand)} unscored answers (errors, missing, nothing graded), the "
                        f"baseline {_failures(base)}: unscored answers are left out of the paired comparison")
    analysis = AnalysisOptions(reference=options.reference, coverage_gap=options.coverage_gap)
    coverage = {role: coverage_parity(c.verdicts, analysis) for role, c in (("candidate", cand), ("baseline", base))}
    covered = [w for role, entries in coverage.items() for w in coverage_warnings(f"the {role} run", entries)]
    regressions = sum(c["regression"] for c in checks)
    floor = coverage_floor(base, cand, options.min_coverage)
    failed = bool(regressions) or floor["below"]
    describe = lambda c: {"run_id": c.manifest.get("run_id"), "run_dir": str(c.run_dir), "target": c.target,
                          "answers": int(len(c.answers))}
    return {"status": "fail" if failed else "pass", "exit_code": 1 if failed else 0, "regressions": regressions,
            "answer_coverage": floor, "baseline": describe(base), "candidate": describe(cand),
            "options": asdict(options), "paired_cases": checks[0]["n"],
            "tested": sum(c.get("p_value") is not None for c in checks), "checks": checks, "warnings": warnings
            + [w["message"] for w in covered], "coverage_parity": coverage, "coverage_warnings": covered}


def incomparable(reasons: Sequence[str]) -> dict[str, Any]:
    """The gate's result when the runs cannot be compared: exit code 2 and the reasons."""
    return {"status": "incomparable", "exit_code": 2, "reasons": list(reasons), "regressions": 0, "checks": [],
            "warnings": [], "coverage_warnings": []}
