"""Comparison and gate data -> HTML, Markdown, JSON, JUnit XML and PNG. Everything a model wrote is escaped."""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from .charts import bar_chart, cost_chart, curve_chart, forest_chart
from .report import b64, fmt, language_name, md_inline, render, warning_messages
from .store import refuse_symlinks, write_file, write_json


def pr_inline(text: Any) -> str:
    """Untrusted text made inert in a pull-request comment: Markdown escaped (md_inline) and no live @mention
    (a zero-width space after each @, so GitHub notifies no one)."""
    return md_inline(text).replace("@", "@\u200b")


def code_span(text: Any) -> str:
    """Untrusted text as a Markdown code span that it cannot close: fenced by more backticks than its longest run
    of them (CommonMark), padded with spaces so a leading or trailing backtick stays inside. Nothing in a code span
    is a mention or a link."""
    flat = " ".join(str(text).split())
    longest = max((len(run) for run in re.findall(r"`+", flat)), default=0)
    fence = "`" * (longest + 1)
    return f"{fence} {flat} {fence}"


def _oriented(pair: dict, label: str) -> tuple[str, dict]:
    """The pair's other contender and the overall difference, signed so that positive favours `label`."""
    d = pair["overall"]
    if pair["a"] == label:
        return pair["b"], d
    flipped = dict(d, diff=-d["diff"] if d["diff"] is not None else None,
                   ci_low=-d["ci_high"] if d["ci_high"] is not None else None,
                   ci_high=-d["ci_low"] if d["ci_low"] is not None else None)
    return pair["a"], flipped


def _win_text(pair: dict, label: str) -> str:
    w = pair["win"]
    wins, losses = (w["wins"], w["losses"]) if pair["a"] == label else (w["losses"], w["wins"])
    total = w["wins"] + w["losses"] + w["ties"]
    if not total:
        return ""
    return (f"; on the same case it gives the better answer {100 * wins / total:.0f}% of the time, the worse one "
            f"{100 * losses / total:.0f}%, and an equally scored one {100 * w['ties'] / total:.0f}%")


def _parity_text(c: dict, ref: str) -> str:
    flagged = [(l, e) for l, e in c["parity"].items() if e["flagged"]]
    if not c["parity"]:
        return f"{c['label']}: no language to set against {ref}"
    if not flagged:
        return f"{c['label']}: no language gap against {ref} beyond chance"
    return f"{c['label']}: " + ", ".join(f"{l} {e['gap']:+.2f}" for l, e in flagged)


def headline(data: dict[str, Any]) -> list[str]:
    """The comparison in a few plain sentences: who leads, whether each gap is real, never-events, language gaps."""
    ranked = sorted(data["contenders"],
                    key=lambda c: -(c["overall"]["score"] if c["overall"]["score"] is not None else -1))
    best = ranked[0]
    o = best["overall"]
    out = [f"{best['label']} has the highest overall score, {fmt(o)} (95% interval {o['ci_low']:.2f} to "
           f"{o['ci_high']:.2f}) over {o['n']} cases." if o["score"] is not None
           else f"No contender has a score ({best['label']} first)."]
    for pair in data["pairs"]:
        if best["label"] not in (pair["a"], pair["b"]):
            continue
        other, d = _oriented(pair, best["label"])
        if d["diff"] is None:
            out.append(f"{best['label']} and {other} have no scored case in common.")
        elif d["ci_low"] > 0:
            out.append(f"{best['label']} is ahead of {other} by {d['diff']:.3f} (95% interval {d['ci_low']:.3f} to "
                       f"{d['ci_high']:.3f}), a real difference{_win_text(pair, best['label'])}.")
        else:
            out.append(f"Against {other} the difference, {d['diff']:+.3f} (95% interval {d['ci_low']:+.3f} to "
                       f"{d['ci_high']:+.3f}), is within what chance alone produces on {d['n']} cases: treat them as "
                       "level.")
    rates = [f"{c['label']} {100 * c['never_events']['rate']:.1f}%" for c in data["contenders"]
             if c["never_events"]["rate"] is not None]
    if rates:
        out.append("Answers committing a never-event: " + ", ".join(rates) + ".")
    out.append(f"Language gaps against {data['reference']} beyond chance: "
               + "; ".join(_parity_text(c, data["reference"]) for c in data["contenders"]) + ".")
    return out


def method_note(data: dict[str, Any]) -> str:
    """One paragraph on how the numbers were made."""
    grader = data["grader"].get("provider", "rules") + (f" ({data['grader']['model']})" if data["grader"].get("model")
                                                        else "")
    return (f"Every system answered the same {data['cases']} synthetic cases in {len(data['languages'])} languages; "
            f"each answer was graded criterion by criterion by the {grader} grader and scored with HealthBench's "
            "formula (points of the criteria met over the positive points available), and a system's score is the "
            "mean over cases, clipped to [0, 1]. Intervals are 95% bootstrap intervals over cases "
            f"({data['resamples']} resamples, seed {data['seed']}). Differences between two systems are paired: each "
            "case, and each repeated answer, is set against the same case for the other system and the pairs are "
            "resampled together, which removes the case-to-case variation both share; a difference is called real "
            "when its interval excludes zero. Win rates compare every pair of answers to the same case. Language gaps "
            f"compare each language with {data['reference']} over the scenarios answered in both. A never-event is a "
            f"criterion worth {data['never_threshold']} points or less (or negative and tagged critical) that an "
            "answer commits, or a critical criterion it fails. Criteria that no grader decided are left out of both "
            "sides of a score and counted under grading coverage. Among many intervals on one page, about one in "
            f"twenty excludes zero by chance where there is no true difference: weigh an isolated flag accordingly.")


def _charts(data: dict[str, Any]) -> dict[str, bytes]:
    """One chart per question the comparison answers."""
    cs, langs, ref = data["contenders"], data["languages"], data["reference"]
    charts = {"overall": forest_chart([(c["label"], c["overall"]) for c in cs], "Which system scores best overall?",
                                      "overall score (95% interval)", key="score", zero=False),
              "languages": bar_chart(langs, {c["label"]: [c["by_language"].get(l) for l in langs] for c in cs},
                                     "How does each system score in each language?")}
    if data["pairs"]:
        charts["differences"] = forest_chart([(f"{p['a']} - {p['b']}", p["overall"]) for p in data["pairs"]],
                                             "Are the differences real?",
                                             "paired difference in overall score (95% interval)")
    rows = [(f"{c['label']} · {l}", e) for c in cs for l, e in c["parity"].items()]
    if rows:
        charts["parity"] = forest_chart(rows, f"Is each system as good in every language as in {ref}?",
                                        f"score minus {ref}, paired by scenario (95% interval)", key="gap")
    charts["never"] = bar_chart(langs, {c["label"]: [{"score": c["never_events_by_language"][l]["rate"]}
                                                     if l in c["never_events_by_language"] else None
                                                     for l in langs] for c in cs},
                                "How often does each system commit a never-event?", ylabel="share of answers")
    priced = [(c["label"], c["cost"]["per_100_cases_usd"], c["overall"]) for c in cs
              if c["cost"]["per_100_cases_usd"] is not None and c["overall"]["score"] is not None]
    if priced:
        charts["cost"] = cost_chart(priced, "What does the quality cost?")
    curves = {c["label"]: c["worst_at_k"] for c in cs if c["worst_at_k"]}
    if curves:
        charts["reliability"] = curve_chart(curves, "How bad is the worst of k answers?")
    return charts


def write_comparison(out_dir: Path, data: dict[str, Any], listed: list[dict]) -> list[Path]:
    """Write compare.html and compare.md (the same sections, from one `page`), compare.json and one PNG per chart;
    returns the files written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    charts = _charts(data)
    refuse_symlinks([out_dir / f"compare-{name}.png" for name in charts]
                    + [out_dir / f"compare.{e}" for e in ("html", "md", "json")])
    written = []
    for name, data_png in charts.items():
        write_file(out_dir / f"compare-{name}.png", data_png)
        written.append(out_dir / f"compare-{name}.png")
    page = {"data": data, "headline": headline(data), "method": method_note(data),
            "warnings": warning_messages(data.get("coverage_warnings", []))}
    html = render("compare.html.j2", **page, listed=listed, charts={k: b64(v) for k, v in charts.items()},
                  labels=[c["label"] for c in data["contenders"]],
                  target_options=[(c["label"], c["label"]) for c in data["contenders"]],
                  language_options=[(l, f"{l} ({language_name(l)})") for l in data["languages"]])
    write_file(out_dir / "compare.html", html)
    write_file(out_dir / "compare.md", render("compare.md.j2", **page, charts=charts, pr_inline=pr_inline))
    write_json(out_dir / "compare.json", data)
    return [out_dir / "compare.html", out_dir / "compare.md", out_dir / "compare.json"] + written


# --- the gate -----------------------------------------------------------------------------------------


def _cell(check: dict, key: str) -> str:
    value = check.get(key)
    if check["scope"] == "never_events":
        return f"{value} of {check['n']}" if key in ("baseline", "candidate") else f"{value:+d}"
    return f"{value:.3f}" if value is not None else "n/a"


def _ordered(checks: list[dict]) -> list[dict]:
    """Regressions first, then the largest drops."""
    return sorted(checks, key=lambda c: (not c["regression"], c["scope"] == "never_events",
                                         c["change"] if c["change"] is not None else 0))


def _gate_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The gate's checks as table cells, regressions first; names stay raw for the template to escape."""
    rows = []
    for c in _ordered(result["checks"]):
        change = _cell(c, "change") if c["scope"] == "never_events" else (f"{c['change']:+.3f}"
                                                                          if c["change"] is not None else "n/a")
        rows.append({"overall": c["scope"] == "overall", "scope": c["scope"].replace("_", "-"), "name": c["name"],
                     "baseline": _cell(c, "baseline"), "candidate": _cell(c, "candidate"), "change": change,
                     "interval": f"[{c['ci_low']:+.3f}, {c['ci_high']:+.3f}]" if c.get("ci_low") is not None else "",
                     "p": f"{c['p_holm']:.3f}" if c.get("p_holm") is not None else "",
                     "outcome": c["outcome"], "regression": c["regression"]})
    return rows


def gate_markdown(result: dict[str, Any]) -> str:
    """A pull-request comment (templates/gate.md.j2): the verdict, one sentence on the rule, and a table with
    regressions first."""
    if result["status"] == "incomparable":
        return render("gate.md.j2", result=result, pr_inline=pr_inline)
    floor = result.get("answer_coverage") or {}
    why = ([f"{result['regressions']} regression{'s' if result['regressions'] > 1 else ''}"] if result["regressions"]
           else [])
    why += ([f"{100 * floor['share']:.0f}% of the answers scored in both runs, below {100 * floor['min_coverage']:g}%"]
            if floor.get("below") else [])
    return render("gate.md.j2", result=result, why=why, rows=_gate_rows(result), pr_inline=pr_inline,
                  code_span=code_span)


def _detail(c: dict) -> str:
    """One line on a check: both values, the change with its interval and adjusted p, the count, the outcome."""
    text = f"baseline {_cell(c, 'baseline')}, candidate {_cell(c, 'candidate')}"
    if c["scope"] == "never_events":
        return text + f" answers with a never-event: {c['outcome']}"
    if c["change"] is not None:
        text += f", change {c['change']:+.3f} [{c['ci_low']:+.3f}, {c['ci_high']:+.3f}]"
    if c.get("p_holm") is not None:
        text += f", p (Holm) {c['p_holm']:.4f}"
    return text + f", {c['n']} paired cases: {c['outcome']}"


def gate_junit(result: dict[str, Any]) -> str:
    """JUnit XML: one test case per check (overall, each language, each axis, never-events), a failure per
    regression."""
    floor = result.get("answer_coverage") or {}
    suite = ET.Element("testsuite", name="bilan-gate", tests=str(len(result.get("checks", [])) + bool(floor) or 1),
                       failures=str(result.get("regressions", 0) + bool(floor.get("below"))),
                       errors="0" if result["status"] != "incomparable" else "1")
    if result["status"] == "incomparable":
        case = ET.SubElement(suite, "testcase", classname="bilan.gate", name="comparable runs")
        ET.SubElement(case, "error", message="the runs cannot be compared").text = "\n".join(result["reasons"])
    floor = result.get("answer_coverage")
    if floor:
        case = ET.SubElement(suite, "testcase", classname="bilan.gate.coverage", name="answers scored in both runs")
        if floor["below"]:
            ET.SubElement(case, "failure", message="too few answers to gate", type="coverage").text = floor["message"]
        else:
            ET.SubElement(case, "system-out").text = (f"{floor['scored_in_both']} of {floor['units']} paired answers "
                                                      "scored in both runs")
    for c in result.get("checks", []):
        case = ET.SubElement(suite, "testcase", classname=f"bilan.gate.{c['scope']}", name=str(c["name"]))
        if c["regression"]:
            ET.SubElement(case, "failure", message=c["outcome"], type="regression").text = _detail(c)
        else:
            ET.SubElement(case, "system-out").text = _detail(c)
    return ET.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"


def write_gate(result: dict[str, Any], markdown: Path | None = None, junit: Path | None = None,
               json_path: Path | None = None) -> None:
    """Write the gate's result where asked: Markdown, JUnit XML, JSON."""
    refuse_symlinks([Path(p) for p in (markdown, junit, json_path) if p])
    if markdown:
        write_file(Path(markdown), gate_markdown(result))
    if junit:
        write_file(Path(junit), gate_junit(result))
    if json_path:
        write_json(Path(json_path), result)
