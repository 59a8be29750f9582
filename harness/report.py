"""frames -> HTML, Markdown, JSON and PNG. Everything a model wrote is escaped."""
from __future__ import annotations

import base64
import io
from collections import Counter
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import langcodes
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from jinja2 import Environment, PackageLoader, select_autoescape  # noqa: E402

from .store import SUMMARY, write_json  # noqa: E402

RTL_FAMILIES = {"ar", "ary", "arb", "fa", "he", "ur"}
_MD_SPECIAL = str.maketrans({c: "\\" + c for c in "\\`*_[]<>|#"})


def language_name(tag: str) -> str:
    """English display name of a language tag (Arabizi and Tifinagh spelled out)."""
    try:
        return langcodes.Language.get(tag).display_name("en")
    except (ValueError, LookupError):
        return tag


def direction(tag: str) -> str:
    """rtl for Arabic-script languages, ltr otherwise."""
    lang = langcodes.Language.get(tag)
    return "rtl" if (lang.language in RTL_FAMILIES and lang.script in (None, "Arab")) else "ltr"


def md(text: str | None) -> str:
    """Untrusted text made inert in Markdown: special characters escaped, each line quoted."""
    if text is None:
        return "> (none)"
    return "\n".join("> " + line.translate(_MD_SPECIAL) for line in text.splitlines() or [""])


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def bar_chart(groups: Sequence[str], series: dict[str, list[dict | None]], title: str) -> bytes:
    """Grouped bars with 95% interval whiskers: one group per label, one bar per series."""
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(groups) * max(1, len(series)) * 0.55 + 2), 3.6))
    width = 0.8 / max(1, len(series))
    for i, (name, cells) in enumerate(series.items()):
        xs, ys, lo, hi = [], [], [], []
        for j, cell in enumerate(cells):
            if cell and cell.get("score") is not None:
                xs.append(j + i * width)
                ys.append(cell["score"])
                lo.append(cell["score"] - cell["ci_low"])
                hi.append(cell["ci_high"] - cell["score"])
        bars = ax.bar(xs, ys, width, label=name, yerr=[lo, hi], capsize=3)
        ax.bar_label(bars, labels=[f"{y:.2f}" for y in ys], fontsize=7, padding=2)
    ax.set_xticks([j + width * (len(series) - 1) / 2 for j in range(len(groups))], groups, rotation=0)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("score")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def _env() -> Environment:
    return Environment(loader=PackageLoader("harness", "templates"), autoescape=select_autoescape(["html", "j2"]),
                       trim_blocks=True, lstrip_blocks=True)


def _font() -> str:
    data = (Path(__file__).parent / "assets" / "NotoSansTifinagh-Tifinagh.woff2").read_bytes()
    return base64.b64encode(data).decode("ascii")


def _cases(rows: Sequence[dict], language: str, conversations: dict[str, dict]) -> list[dict[str, Any]]:
    by_case: dict[str, dict[str, Any]] = {}
    for r in sorted((r for r in rows if r["language"] == language), key=lambda r: (r["case_id"], r["target"], r.get("sample", 0))):
        info = conversations.get(r["case_id"], {})
        entry = by_case.setdefault(r["case_id"], {"case_id": r["case_id"], "scenario": r["scenario"], "theme": r.get("theme"),
                                                  "use_case": r.get("use_case"), "persona": r.get("persona"),
                                                  "code_switch": r.get("code_switch", []), "title": info.get("title", ""),
                                                  "review": info.get("review", "draft"),
                                                  "conversation": info.get("conversation", []), "results": []})
        entry["results"].append(r)
    return list(by_case.values())


def _language_md(language: str, summary: dict, cases: list[dict]) -> str:
    lines = [f"# {language} ({language_name(language)})", "", f"[All languages](index.md) · {len(cases)} cases", "",
             f"![Scores by target and axis]({language}.png)", "",
             "| target | score | 95% CI | n | " + " | ".join(summary["axes"]) + " |",
             "|---|---:|---|---:|" + "---:|" * len(summary["axes"])]
    for name, t in summary["targets"].items():
        cell = t["by_language"].get(language) or {}
        axes = [_fmt(t["by_language_axis"].get(language, {}).get(a)) for a in summary["axes"]]
        lines.append(f"| {name} | {_fmt(cell)} | {_ci(cell)} | {cell.get('n', 0)} | " + " | ".join(axes) + " |")
    lines += ["", "## Answers", ""]
    for case in cases:
        lines += [f"### {case['case_id']}", "", case["title"], ""]
        for turn in case["conversation"]:
            lines += [f"**{turn['role']}**", "", md(turn["content"]), ""]
        for r in case["results"]:
            head = f"{r['score']:.3f}" if r["score"] is not None else r["status"]
            lines += [f"#### {r['target']}" + (f" · sample {r['sample']}" if r.get("sample") else "") + f": {head}", ""]
            if r["answer"] is None:
                lines += [f"No answer: {(r.get('error') or '').translate(_MD_SPECIAL)}", ""]
                continue
            lines += [md(r["answer"]), "", "| criterion | points | axis | verdict |", "|---|---:|---|---|"]
            for v in r["verdicts"]:
                verdict = {True: "met", False: "not met"}.get(v["met"], "not graded")
                lines.append(f"| {v['id']} | {v['points']} | {v['axis']} | {verdict} |")
            lines.append("")
    return "\n".join(lines) + "\n"


def _fmt(cell: dict | None) -> str:
    return f"{cell['score']:.3f}" if cell and cell.get("score") is not None else "n/a"


def _ci(cell: dict | None) -> str:
    return f"[{cell['ci_low']:.2f}, {cell['ci_high']:.2f}]" if cell and cell.get("score") is not None else ""


def _index_md(summary: dict, manifest: dict) -> str:
    targets = list(summary["targets"])
    lines = [f"# Bilan report {manifest['run_id']}", "", f"{summary['rows']} answers · grader {manifest['grader']['provider']}", "",
             "![Overall score by language](index.png)", "", "## Overall", "",
             "| target | score | 95% CI | n | missing | errors | criteria not graded |", "|---|---:|---|---:|---:|---:|---:|"]
    for name, t in summary["targets"].items():
        lines.append(f"| {name} | {_fmt(t['overall'])} | {_ci(t['overall'])} | {t['overall']['n']} | {t['missing']} | {t['errors']} | {t['ungraded_criteria']} |")
    for title, key, labels in (("By language", "by_language", summary["languages"]), ("By axis", "by_axis", summary["axes"]),
                               ("By theme", "by_theme", summary["themes"])):
        lines += ["", f"## {title}", "", "| | " + " | ".join(targets) + " |", "|---|" + "---:|" * len(targets)]
        for label in labels:
            link = f"[{label}]({label}.md)" if key == "by_language" else label
            cells = [f"{_fmt(summary['targets'][t][key].get(label))} {_ci(summary['targets'][t][key].get(label))}" for t in targets]
            lines.append(f"| {link} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_reports(run_dir: Path, rows: Sequence[dict], summary: dict, manifest: dict,
                  conversations: dict[str, dict]) -> list[Path]:
    """Write summary.json, index.html/.md/.png and <language>.html/.md/.png; returns the files written."""
    run_dir = Path(run_dir)
    write_json(run_dir / SUMMARY, summary)
    env, font = _env(), _font()
    common = {"manifest": manifest, "summary": summary, "version": metadata.version("bilan"), "tifinagh_font": font}
    written = [run_dir / SUMMARY]
    languages = summary["languages"]
    index_png = bar_chart(languages, {n: [t["by_language"].get(l) for l in languages] for n, t in summary["targets"].items()},
                          "Overall score by language")
    (run_dir / "index.png").write_bytes(index_png)
    descriptions = {t["name"]: t.get("description", "") for t in manifest.get("targets", [])}
    html = env.get_template("index.html.j2").render(**common, targets=list(summary["targets"]), descriptions=descriptions,
                                                    language_names={l: language_name(l) for l in languages},
                                                    any_ungraded=any(t["ungraded_criteria"] for t in summary["targets"].values()),
                                                    charts={"index": base64.b64encode(index_png).decode()})
    (run_dir / "index.html").write_text(html, encoding="utf-8")
    (run_dir / "index.md").write_text(_index_md(summary, manifest), encoding="utf-8")
    written += [run_dir / "index.html", run_dir / "index.md", run_dir / "index.png"]
    for language in languages:
        cases = _cases(rows, language, conversations)
        axes = summary["axes"] + ["overall"]
        png = bar_chart(axes, {n: [t["by_language_axis"].get(language, {}).get(a) for a in summary["axes"]] + [t["by_language"].get(language)]
                               for n, t in summary["targets"].items()}, f"{language}: score by axis")
        (run_dir / f"{language}.png").write_bytes(png)
        html = env.get_template("language.html.j2").render(
            **common, language=language, language_name=language_name(language), direction=direction(language),
            cases=cases, review_counts=dict(Counter(c["review"] for c in cases)), chart=base64.b64encode(png).decode())
        (run_dir / f"{language}.html").write_text(html, encoding="utf-8")
        (run_dir / f"{language}.md").write_text(_language_md(language, summary, cases), encoding="utf-8")
        written += [run_dir / f"{language}.{ext}" for ext in ("html", "md", "png")]
    return written
