"""Comparison and gate data -> HTML, Markdown, JSON, JUnit XML and PNG. Everything a model wrote is escaped."""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from .charts import bar_chart, cost_chart, curve_chart, forest_chart
from .report import b64, ci, coverage_md, coverage_text, fmt, language_name, md_inline, render, warning_messages
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
    ranked = sorted(data["contenders"], key=lambda c: -(c["overall"]["score"] if c["overall"]["score"] is not None else -1))
    best = ranked[0]
    o = best["overall"]
    out = [f"{best['label']} has the highest overall score, {fmt(o)} (95% interval {o['ci_low']:.2f} to {o['ci_high']:.2f}) "
           f"over {o['n']} cases." if o["score"] is not None else f"No contender has a score ({best['label']} first)."]
    for pair in data["pairs"]:
        if best["label"] not in (pair["a"], pair["b"]):
            continue
        other, d = _oriented(pair, best["label"])
        if d["diff"] is None:
            out.append(f"{best['label']} and {other} have no scored case in common.")
        elif d["ci_low"] > 0:
            out.append(f"{best['label']} is ahead of {other} by {d['diff']:.3f} (95% interval {d['ci_low']:.3f} to {d['ci_high']:.3f}), "
                       f"a real difference{_win_text(pair, best['label'])}.")
        else:
            out.append(f"Against {other} the difference, {d['diff']:+.3f} (95% interval {d['ci_low']:+.3f} to "
                       f"{d['ci_high']:+.3f}), is within what chance alone produces on {d['n']} cases: treat them as level.")
    rates = [f"{c['label']} {100 * c['never_events']['rate']:.1f}%" for c in data["contenders"] if c["never_events"]["rate"] is not None]
    if rates:
        out.append("Answers committing a never-event: " + ", ".join(rates) + ".")
    out.append(f"Language gaps against {data['reference']} beyond chance: "
               + "; ".join(_parity_text(c, data["reference"]) for c in data["contenders"]) + ".")
    return out


def method_note(data: dict[str, Any]) -> str:
    """One paragraph on how the numbers were made."""
    grader = data["grader"].get("provider", "rules") + (f" ({data['grader']['model']})" if data["grader"].get("model") else "")
    return (f"Every system answered the same {data['cases']} synthetic cases in {len(data['languages'])} languages; each "
            f"answer was graded criterion by criterion by the {grader} grader and scored with HealthBench's formula (points "
            f"of the criteria met over the positive points available), and a system's score is the mean over cases, "
            f"clipped to [0, 1]. Intervals are 95% bootstrap intervals over cases ({data['resamples']} resamples, seed "
            f"{data['seed']}). Differences between two systems are paired: each case, and each repeated answer, is set "
            f"against the same case for the other system and the pairs are resampled together, which removes the "
            f"case-to-case variation both share; a difference is called real when its interval excludes zero. Win rates "
            f"compare every pair of answers to the same case. Language gaps compare each language with "
            f"{data['reference']} over the scenarios answered in both. A never-event is a criterion worth "
            f"{data['never_threshold']} points or less (or negative and tagged critical) that an answer commits, or a "
            f"critical criterion it fails. Criteria that no grader decided are left out of both sides of a score and "
            f"counted under grading coverage. Among many intervals on one page, about one in twenty excludes zero by chance "
            f"where there is no true difference: weigh an isolated flag accordingly.")


def _charts(data: dict[str, Any]) -> dict[str, bytes]:
    """One chart per question the comparison answers."""
    cs, langs, ref = data["contenders"], data["languages"], data["reference"]
    charts = {"overall": forest_chart([(c["label"], c["overall"]) for c in cs], "Which system scores best overall?",
                                      "overall score (95% interval)", key="score", zero=False),
              "languages": bar_chart(langs, {c["label"]: [c["by_language"].get(l) for l in langs] for c in cs},
                                     "How does each system score in each language?")}
    if data["pairs"]:
        charts["differences"] = forest_chart([(f"{p['a']} - {p['b']}", p["overall"]) for p in data["pairs"]],
                                             "Are the differences real?", "paired difference in overall score (95% interval)")
    rows = [(f"{c['label']} · {l}", e) for c in cs for l, e in c["parity"].items()]
    if rows:
        charts["parity"] = forest_chart(rows, f"Is each system as good in every language as in {ref}?",
                                        f"score minus {ref}, paired by scenario (95% interval)", key="gap")
    charts["never"] = bar_chart(langs, {c["label"]: [{"score": c["never_events_by_language"][l]["rate"]} if l in c["never_events_by_language"] else None
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


def _money(value: float | None) -> str:
    return f"${value:,.2f}" if value is not None else "n/a"


def _latency(c: dict) -> str:
    lat = c.get("latency")
    return f"{lat['p50']:.2f} s / {lat['p95']:.2f} s" if lat else "n/a"


def _parity_cell(e: dict | None) -> str:
    """A parity gap in a Markdown cell, with the gap over the criteria decided in both languages after it."""
    text = f"{fmt(e, 'gap', True)} {ci(e, 'gap')}{' (flagged)' if e and e['flagged'] else ''}"
    d = (e or {}).get("decided_in_both")
    return text + (f"; decided in both: {fmt(d, 'gap', True)} {ci(d, 'gap')}{' (flagged)' if d['flagged'] else ''}" if d else "")


def compare_markdown(data: dict[str, Any], charts: dict[str, bytes]) -> str:
    """The comparison as Markdown, the charts linked as PNG files beside it."""
    cs, langs = data["contenders"], data["languages"]
    said = headline(data)
    lines = ["# Bilan comparison: " + ", ".join(pr_inline(c["label"]) for c in cs), "", f"**{pr_inline(said[0])}**", ""]
    lines += [f"- {pr_inline(sentence)}" for sentence in said[1:]] + [""]
    lines += [f"> **Warning:** {pr_inline(w)}" for w in warning_messages(data.get("coverage_warnings", []))]
    lines += ["", "## Which system scores best overall?", "", "![overall](compare-overall.png)", "",
             "| system | score | 95% CI | cases | never-events | cost per 100 cases | latency p50 / p95 |", "|---|---:|---|---:|---:|---:|---|"]
    for c in cs:
        ne = c["never_events"]
        lines.append(f"| {pr_inline(c['label'])} | {fmt(c['overall'])} | {ci(c['overall'])} | {c['overall']['n']} | "
                     f"{ne['count']} of {ne['n']} | {_money(c['cost']['per_100_cases_usd'])} | {_latency(c)} |")
    lines += ["", "## Are the differences real?", ""] + (["![differences](compare-differences.png)", ""] if "differences" in charts else [])
    lines += ["| pair | difference | 95% CI | cases | real? | wins / losses / ties |", "|---|---:|---|---:|---|---|"]
    for p in data["pairs"]:
        d, w = p["overall"], p["win"]
        real = "yes" if d["diff"] is not None and (d["ci_low"] > 0 or d["ci_high"] < 0) else "no"
        lines.append(f"| {pr_inline(p['a'])} - {pr_inline(p['b'])} | {fmt(d, 'diff', True)} | {ci(d, 'diff')} | {d['n']} | {real} | "
                     f"{w['wins']} / {w['losses']} / {w['ties']} |")
    lines += ["", "## How does each system score in each language?", "", "![languages](compare-languages.png)", "",
              "| language | " + " | ".join(pr_inline(c["label"]) for c in cs) + " |", "|---|" + "---:|" * len(cs)]
    lines += [f"| {l} ({language_name(l)}) | " + " | ".join(f"{fmt(c['by_language'].get(l))} {ci(c['by_language'].get(l))}" for c in cs) + " |"
              for l in langs]
    lines += ["", f"## Is each system as good in every language as in {data['reference']}?", ""]
    lines += (["![parity](compare-parity.png)", ""] if "parity" in charts else [])
    lines += ["| language | " + " | ".join(pr_inline(c["label"]) for c in cs) + " |", "|---|" + "---:|" * len(cs)]
    lines += [f"| {l} | " + " | ".join(_parity_cell(c["parity"].get(l)) for c in cs) + " |" for l in langs if l != data["reference"]]
    lines += ["", "## How often does each system commit a never-event?", "", "![never-events](compare-never.png)", "",
              "| language | " + " | ".join(pr_inline(c["label"]) for c in cs) + " |", "|---|" + "---:|" * len(cs)]
    events = lambda c, l: c["never_events_by_language"].get(l)
    lines += [f"| {l} | " + " | ".join(f"{events(c, l)['count']} of {events(c, l)['n']}" if events(c, l) else "n/a" for c in cs) + " |"
              for l in langs]
    lines += ["", "## What does it cost, and how fast is it?", ""] + (["![cost](compare-cost.png)", ""] if "cost" in charts else [])
    lines += ["| system | per 100 cases | total | latency p50 / p95 |", "|---|---:|---:|---|"]
    lines += [f"| {pr_inline(c['label'])} | {_money(c['cost']['per_100_cases_usd'])} | {_money(c['cost']['total_usd'])} | {_latency(c)} |" for c in cs]
    if "reliability" in charts:
        lines += ["", "## How bad is the worst of k answers?", "", "![reliability](compare-reliability.png)"]
    lines += ["", "## Grading coverage", "", "| system | criteria graded | " + " | ".join(langs) + " |", "|---|---:|" + "---|" * len(langs)]
    lines += [f"| {pr_inline(c['label'])} | {coverage_text(c['coverage'])} | " + " | ".join(coverage_md(c["coverage_parity"].get(l)) for l in langs)
              + " |" for c in cs]
    lines += ["", "## Method", "", pr_inline(method_note(data)), ""]
    return "\n".join(lines)


def write_comparison(out_dir: Path, data: dict[str, Any], listed: list[dict]) -> list[Path]:
    """Write compare.html, compare.md, compare.json and one PNG per chart; returns the files written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    charts = _charts(data)
    refuse_symlinks([out_dir / f"compare-{name}.png" for name in charts] + [out_dir / f"compare.{e}" for e in ("html", "md", "json")])
    written = []
    for name, data_png in charts.items():
        write_file(out_dir / f"compare-{name}.png", data_png)
        written.append(out_dir / f"compare-{name}.png")
    html = render("compare.html.j2", data=data, headline=headline(data), method=method_note(data), listed=listed,
                  charts={k: b64(v) for k, v in charts.items()}, labels=[c["label"] for c in data["contenders"]],
                  target_options=[(c["label"], c["label"]) for c in data["contenders"]],
                  language_options=[(l, f"{l} ({language_name(l)})") for l in data["languages"]])
    write_file(out_dir / "compare.html", html)
    write_file(out_dir / "compare.md", compare_markdown(data, charts))
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


def gate_markdown(result: dict[str, Any]) -> str:
    """A pull-request comment: the verdict, one sentence on the rule, and a table with regressions first."""
    if result["status"] == "incomparable":
        return "\n".join(["## Bilan gate: cannot compare", "", "The baseline and candidate runs cannot be compared:", ""]
                         + [f"- {pr_inline(r)}" for r in result["reasons"]]) + "\n"
    o, floor = result["options"], result.get("answer_coverage") or {}
    head = f"## Bilan gate: {'FAIL' if result['status'] == 'fail' else 'pass'}"
    why = [f"{result['regressions']} regression{'s' if result['regressions'] > 1 else ''}"] if result["regressions"] else []
    why += [f"{100 * floor['share']:.0f}% of the answers scored in both runs, below {100 * floor['min_coverage']:g}%"] if floor.get("below") else []
    head += f" ({'; '.join(why)})" if why else ""
    lines = [head, ""] + ([f"**Too few answers to gate:** {pr_inline(floor['message'])}.", ""] if floor.get("below") else [])
    lines += [f"Candidate {code_span(result['candidate']['run_id'])} against baseline {code_span(result['baseline']['run_id'])} "
             f"(target {code_span(result['candidate']['target'])}) on {result['paired_cases']} paired cases. A regression is a drop "
             f"larger than {o['max_drop']:g} that is significant at alpha {o['alpha']:g} (one-sided paired bootstrap, "
             f"Holm-adjusted over {result['tested']} score checks), or more answers committing a never-event.", "",
             f"| check | baseline | candidate | change | {100 * (1 - 2 * o['alpha']):.0f}% CI | p of a drop (Holm) | result |",
             "|---|---:|---:|---:|---|---:|---|"]
    for c in _ordered(result["checks"]):
        name = f"{c['scope'].replace('_', '-')}: {pr_inline(c['name'])}" if c["scope"] != "overall" else "overall"
        interval = f"[{c['ci_low']:+.3f}, {c['ci_high']:+.3f}]" if c.get("ci_low") is not None else ""
        p = f"{c['p_holm']:.3f}" if c.get("p_holm") is not None else ""
        change = _cell(c, "change") if c["scope"] == "never_events" else (f"{c['change']:+.3f}" if c["change"] is not None else "n/a")
        verdict = f"**{c['outcome']}**" if c["regression"] else c["outcome"]
        row = f"| {'**' + name + '**' if c['regression'] else name} | {_cell(c, 'baseline')} | {_cell(c, 'candidate')} | {change} | {interval} | {p} | {verdict} |"
        lines.append(row)
    lines += [""] + [f"> warning: {pr_inline(w)}" for w in result["warnings"]]
    return "\n".join(lines).rstrip() + "\n"


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
    """JUnit XML: one test case per check (overall, each language, each axis, never-events), a failure per regression."""
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
            ET.SubElement(case, "system-out").text = f"{floor['scored_in_both']} of {floor['units']} paired answers scored in both runs"
    for c in result.get("checks", []):
        case = ET.SubElement(suite, "testcase", classname=f"bilan.gate.{c['scope']}", name=str(c["name"]))
        if c["regression"]:
            ET.SubElement(case, "failure", message=c["outcome"], type="regression").text = _detail(c)
        else:
            ET.SubElement(case, "system-out").text = _detail(c)
    return ET.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"


def write_gate(result: dict[str, Any], markdown: Path | None = None, junit: Path | None = None, json_path: Path | None = None) -> None:
    """Write the gate's result where asked: Markdown, JUnit XML, JSON."""
    refuse_symlinks([Path(p) for p in (markdown, junit, json_path) if p])
    if markdown:
        write_file(Path(markdown), gate_markdown(result))
    if junit:
        write_file(Path(junit), gate_junit(result))
    if json_path:
        write_json(Path(json_path), result)
