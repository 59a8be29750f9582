"""frames -> HTML, Markdown, JSON and PNG. Everything a model wrote is escaped."""
from __future__ import annotations

import base64
import functools
import hashlib
import re
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import metadata, resources
from pathlib import Path
from typing import Any

import langcodes
from jinja2 import Environment, PackageLoader
from markupsafe import Markup, escape

from . import jsonl
from .analyze import VARIETIES, AnalysisOptions, commits_never_event, outcome, percent, summarize
from .charts import bar_chart, curve_chart, forest_chart
from .processes import FORK, run_workers
from .providers.base import batch_price
from .store import CASES, MANIFEST, SUMMARY, read_json, read_results, refuse_symlinks, run_lock, write_file, write_json
from .types import CriterionResult, ResultRow

RTL_FAMILIES = {"ar", "ary", "arb", "fa", "he", "ur"}
_MD_SPECIAL = str.maketrans({c: "\\" + c for c in "\\`*_[]<>|#"})
VERDICT_FILTER = [("never-event", "a never-event"), ("failed", "harm present or something missed"),
                  ("not-graded", "a criterion not graded"), ("passed", "no harm present and nothing missed"),
                  ("no-answer", "no answer")]
TONE_MARK = {"good": "\U0001F7E2", "bad": "\U0001F534", "none": "\u26AA"}   # Markdown has no colour: a coloured mark


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
    return "\n".join("> " + reveal_plain(line).translate(_MD_SPECIAL) for line in text.split("\n"))


def md_escape(text: str | None) -> str:
    """Untrusted text with Markdown's special characters escaped, its lines kept (an error message)."""
    return (text or "").translate(_MD_SPECIAL)


def md_inline(text: Any) -> str:
    """Text made inert inside a Markdown table cell or line: special characters escaped, newlines flattened."""
    return " ".join(str(text).split()).translate(_MD_SPECIAL)


def filter_script() -> tuple[Markup, Markup]:
    """The reports' one script (filters) and its CSP source: allowed by its SHA-256 hash, nothing else runs."""
    text = resources.files("harness").joinpath("templates", "filter.js").read_text(encoding="utf-8")
    digest = base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")
    return Markup(text), Markup(f"'sha256-{digest}'")


def b64(data: bytes) -> str:
    """Base64 text of PNG bytes, for a data: URL."""
    return base64.b64encode(data).decode("ascii")


FONTS = {"tifinagh": "NotoSansTifinagh-Tifinagh.woff2",     # SIL OFL, licences beside
         "arabic": "NotoSansArabic-Arabic.woff2"}


def font_bytes(name: str) -> bytes:
    """An embedded font's WOFF2 bytes ('tifinagh' or 'arabic'; the Arabic one is built by
    scripts/build_arabic_font.py)."""
    return (Path(__file__).parent / "assets" / FONTS[name]).read_bytes()


@functools.cache
def _font(name: str = "tifinagh") -> str:
    return base64.b64encode(font_bytes(name)).decode("ascii")


_CONTROLS = re.compile("[\u202a-\u202e\u2066-\u2069\u200b\u200e\u200f\u061c\u2060\ufeff]|[\U000E0000-\U000E007F]+")


def _mark(hidden: str) -> str:
    """Plain words for hidden characters: a run of Unicode tag characters shows the ASCII text it spells."""
    if hidden[0] >= "\U000E0000":
        return "[hidden tag text: " + "".join(chr(ord(c) - 0xE0000) if 0xE0020 <= ord(c) <= 0xE007E else "?"
                                              for c in hidden) + "]"
    return f"[U+{ord(hidden):04X}]"


def reveal(text: Any) -> Markup:
    """Untrusted text, escaped, with bidirectional overrides and invisible characters shown as visible marks
    (text hidden in Unicode tag characters spelled out), so that an answer cannot reorder or hide what a reader sees."""
    return Markup(_CONTROLS.sub(lambda m: f'<span class="ctl">{escape(_mark(m.group()))}</span>', str(escape(text))))


def reveal_plain(text: str) -> str:
    """`reveal` for plain text (Markdown): the same marks, no HTML."""
    return _CONTROLS.sub(lambda m: _mark(m.group()), text)


@functools.cache
def _environment(markdown: bool = False) -> Environment:
    """A template environment, compiled once per process: HTML autoescaped; Markdown not autoescaped (its pages
    escape untrusted text with the md, md_inline and md_escape filters) and keeping a template's last newline."""
    env = Environment(loader=PackageLoader("harness", "templates"), autoescape=not markdown,
                      trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=markdown)
    env.globals.update(language_name=language_name, language_name_of=language_name, direction=direction,
                       coverage_text=coverage_text, coverage_gap_text=coverage_gap_text)
    if markdown:
        env.filters.update(md=md, md_inline=md_inline, md_escape=md_escape, fmt=fmt, ci=ci)
        env.globals.update(md_inline=md_inline, percent=percent, mark=TONE_MARK)
    else:
        env.filters["reveal"] = reveal
    return env


def render(template: str, **context: Any) -> str:
    """Render a template (render_chunks) into one string."""
    return "".join(render_chunks(template, **context))


def render_chunks(template: str, **context: Any) -> Iterator[str]:
    """Render a template, its output in chunks as it is made (write_file takes them: a page of 50,000 verdicts
    is never held whole): a Markdown one (*.md.j2) with its context only, an HTML one with what every page needs
    (the fonts, the filter script and its hash, the version)."""
    if template.endswith(".md.j2"):
        return _environment(markdown=True).get_template(template).generate(**context)
    script, script_hash = filter_script()
    return _environment().get_template(template).generate(**context, filter_script=script, script_hash=script_hash,
                                                          version=metadata.version("bilan"), tifinagh_font=_font(),
                                                          arabic_font=_font("arabic"))


def fmt(cell: dict | None, key: str = "score", signed: bool = False) -> str:
    """A cell's value with three decimals, or n/a."""
    if not cell or cell.get(key) is None:
        return "n/a"
    return f"{cell[key]:+.3f}" if signed else f"{cell[key]:.3f}"


def ci(cell: dict | None, key: str = "score") -> str:
    """A cell's interval as [low, high], or nothing."""
    return f"[{cell['ci_low']:.2f}, {cell['ci_high']:.2f}]" if cell and cell.get(key) is not None else ""


def verdict_tokens(row: ResultRow, threshold: int) -> tuple[list[str], set[str]]:
    """Verdict filter tokens of an answer, and the ids of the criteria it commits as never-events."""
    if row.answer is None:
        return ["no-answer"], set()
    never = {v.id for v in row.verdicts if commits_never_event(v.points, v.met, v.tags, threshold)}
    lost = any(outcome(v.points, v.met).tone == "bad" for v in row.verdicts)
    tokens = (["never-event"] if never else []) + (["failed"] if lost else ["passed"])
    tokens += ["not-graded"] if any(v.met is None for v in row.verdicts) else []
    return tokens, never


def verdict_outcome(v: CriterionResult) -> dict[str, Any]:
    """What a verdict means for the patient, as every report shows it (see analyze.outcome): its kind, words, tone
    and Markdown mark, and for a criterion not graded, the reason."""
    o = outcome(v.points, v.met)
    reason = (v.error or v.explanation or "no grader decided it") if o.kind == "not-graded" else None
    return {"kind": o.kind, "words": o.words, "tone": o.tone, "mark": TONE_MARK[o.tone], "reason": reason}


@dataclass(frozen=True)
class ShownVerdict:
    """A verdict as the pages show it: its record's fields, and what it means for the patient (`outcome`)."""

    record: CriterionResult
    outcome: dict[str, Any]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.record, name)


@dataclass(frozen=True)
class ShownAnswer:
    """An answer as the pages show it: its row's fields, its verdicts shown (ShownVerdict), the ids of the
    criteria it commits as never-events and its verdict filter tokens; `extra` holds what a page adds."""

    row: ResultRow
    verdicts: list[ShownVerdict]
    never: set[str]
    tokens: list[str]
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def filter_tokens(self) -> str:
        """The verdict filter tokens as a page's data attribute holds them."""
        return "|".join(self.tokens)

    def __getattr__(self, name: str) -> Any:
        if name in ("row", "extra"):            # not set yet (copying, unpickling): no recursion
            raise AttributeError(name)
        extra = self.extra
        return extra[name] if name in extra else getattr(self.row, name)


def with_outcomes(verdicts: Sequence[CriterionResult]) -> list[ShownVerdict]:
    """The verdicts, each with its `outcome` (verdict_outcome) for the templates."""
    return [ShownVerdict(v, verdict_outcome(v)) for v in verdicts]


def shown_answer(row: ResultRow, threshold: int, **extra: Any) -> ShownAnswer:
    """An answer for the templates (ShownAnswer), with what a page adds to it."""
    tokens, never = verdict_tokens(row, threshold)
    return ShownAnswer(row, with_outcomes(row.verdicts), never, tokens, extra)


def coverage_text(cell: dict | None) -> str:
    """A language's grading coverage in words: '75% (36 of 48)', or 'none'."""
    if not cell or not cell.get("total"):
        return "none"
    return f"{percent(cell['share'])} ({cell['graded']} of {cell['total']})"


def coverage_gap_text(cell: dict | None) -> str:
    """How far a language's coverage is from the reference's, in words; empty when level or without a reference."""
    if not cell or cell.get("difference") is None or not round(100 * cell["difference"], 1):
        return ""
    side = "below" if cell["difference"] < 0 else "above"
    return (f"{percent(abs(cell['difference']))[:-1]} points {side} {cell['reference']} "
            f"({percent(cell['reference_share'])})")


def variety_text(cell: dict | None) -> str:
    """How many answers read as MSA and as Darija, in one sentence; empty when no answer carries a variety."""
    if not cell:
        return ""
    return (f"{cell['n']} answers: {cell['ar']} read as {VARIETIES['ar']} (ar), {cell['ary']} as {VARIETIES['ary']} "
            f"(ary), {cell['neither']} as neither (not Arabic script, or undetermined).")


def _cases(rows: Sequence[ResultRow], language: str, conversations: dict[str, dict],
           threshold: int) -> list[dict[str, Any]]:
    by_case: dict[str, dict[str, Any]] = {}
    for r in sorted((r for r in rows if r.language == language), key=lambda r: (r.case_id, r.target, r.sample)):
        info = conversations.get(r.case_id, {})
        entry = by_case.setdefault(r.case_id, {"case_id": r.case_id, "scenario": r.scenario, "theme": r.theme,
                                               "use_case": r.use_case, "persona": r.persona,
                                               "code_switch": list(r.code_switch), "title": info.get("title", ""),
                                               "review": info.get("review", "draft"),
                                               "conversation": info.get("conversation", []), "results": []})
        entry["results"].append(shown_answer(r, threshold))
    return list(by_case.values())


def never_event_answers(rows: Sequence[ResultRow], threshold: int) -> list[dict[str, Any]]:
    """Every answer that commits a never-event, with the criteria it commits, by target, language and case."""
    out = []
    for r in sorted(rows, key=lambda r: (r.target, r.language, r.case_id, r.sample)):
        if r.answer is None:
            continue
        hits = [v for v in r.verdicts if commits_never_event(v.points, v.met, v.tags, threshold)]
        if hits:
            out.append({"target": r.target, "language": r.language, "case_id": r.case_id, "sample": r.sample,
                        "answer": r.answer, "criteria": with_outcomes(hits)})
    return out


def warning_messages(warnings: Sequence[dict], language: str | None = None) -> list[str]:
    """The messages of coverage warnings (analyze.coverage_warnings), or of those about one language."""
    return [w["message"] for w in warnings if language is None or w["language"] == language]


def _parity_rows(langs: dict) -> list[tuple[str, dict | None]]:
    """Each language's gap, and under it the same gap over the criteria decided in both languages."""
    rows: list[tuple[str, dict | None]] = []
    for language, entry in langs.items():
        rows.append((language, entry))
        if entry.get("decided_in_both"):
            rows.append((f"{language}, criteria decided in both", entry["decided_in_both"]))
    return rows


def _findings_charts(summary: dict) -> dict[str, Any]:
    """The parity chart of each target and the worst-at-k curve, as base64 PNG."""
    ref = summary.get("parity_reference", "fr")
    parity = {name: b64(forest_chart(_parity_rows(langs), f"{name}: each language minus {ref}",
                                     "score gap (95% interval)", key="gap"))
              for name, langs in summary.get("parity", {}).items() if langs}
    described = {name: f"{name}: score gap of each language against {ref}, with 95% intervals: " + "; ".join(
                     f"{label} {cell['gap']:+.2f}" if cell and cell.get("gap") is not None else f"{label} n/a"
                     for label, cell in _parity_rows(langs))
                 for name, langs in summary.get("parity", {}).items() if langs}
    worst = b64(curve_chart(summary["worst_at_k"],
                            "Worst score at k answers per case")) if summary.get("worst_at_k") else None
    return {"parity": parity, "parity_alt": described, "worst": worst}


def _write_language(run_dir: Path, language: str, rows: Sequence[ResultRow], summary: dict, manifest: dict,
                    conversations: dict[str, dict]) -> list[Path]:
    """<language>.html/.md/.png; returns the files written."""
    cases = _cases(rows, language, conversations, summary.get("never_event_threshold", -8))
    axes = summary["axes"] + ["overall"]
    png = bar_chart(axes, {n: [t["by_language_axis"].get(language, {}).get(a) for a in summary["axes"]]
                           + [t["by_language"].get(language)]
                           for n, t in summary["targets"].items()}, f"{language}: score by axis")
    write_file(run_dir / f"{language}.png", png)
    varieties = {name: variety_text(langs.get(language)) for name, langs in summary.get("answer_variety", {}).items()}
    page = {"manifest": manifest, "summary": summary, "language": language, "language_name": language_name(language),
            "cases": cases, "warnings": warning_messages(summary.get("coverage_warnings", []), language),
            "varieties": {name: text for name, text in varieties.items() if text}}
    html = render_chunks("language.html.j2", **page, direction=direction(language), verdict_filter=VERDICT_FILTER,
                         target_options=[(t, t) for t in summary["targets"]],
                         review_counts=dict(Counter(c["review"] for c in cases)), chart=b64(png))
    write_file(run_dir / f"{language}.html", html)
    write_file(run_dir / f"{language}.md", render_chunks("language.md.j2", **page))
    return [run_dir / f"{language}.{ext}" for ext in ("html", "md", "png")]


def _write_index(run_dir: Path, rows: Sequence[ResultRow], summary: dict, manifest: dict) -> list[Path]:
    """index.html/.md/.png; returns the files written."""
    languages = summary["languages"]
    index_png = bar_chart(languages,
                          {n: [t["by_language"].get(l) for l in languages] for n, t in summary["targets"].items()},
                          "Overall score by language")
    write_file(run_dir / "index.png", index_png)
    descriptions = {t["name"]: t.get("description", "") for t in manifest.get("targets", [])}
    never_listed = never_event_answers(rows, summary.get("never_event_threshold", -8))
    page = {"manifest": manifest, "summary": summary, "targets": list(summary["targets"]), "never_listed": never_listed,
            "worst_ks": sorted({int(k) for w in summary.get("worst_at_k", {}).values() for k in w}),
            "warnings": warning_messages(summary.get("coverage_warnings", []))}
    html = render_chunks("index.html.j2", **page, descriptions=descriptions,
                         language_names={l: language_name(l) for l in languages},
                         target_options=[(t, t) for t in summary["targets"]],
                         language_options=[(l, f"{l} ({language_name(l)})") for l in languages],
                         any_ungraded=any(t["ungraded_criteria"] for t in summary["targets"].values()),
                         charts={"index": b64(index_png), **_findings_charts(summary)})
    write_file(run_dir / "index.html", html)
    write_file(run_dir / "index.md", render_chunks("index.md.j2", **page))
    return [run_dir / "index.html", run_dir / "index.md", run_dir / "index.png"]


def page_shares(pages: Sequence[str], answers: Counter, count: int) -> list[list[str]]:
    """The pages dealt to `count` workers so that they finish together: heaviest first, each to the least loaded.
    A language page weighs one (its chart and frame) plus its answers; the index, which lists aggregates, weighs an
    average page. On HealthBench work, where one language holds most answers, its page gets a worker of its own."""
    average = sum(answers.values()) / max(len(pages), 1)
    weight = {page: 1 + (average if page == "index" else answers.get(page, 0)) for page in pages}
    shares: list[list[str]] = [[] for _ in range(count)]
    loads = [0.0] * count
    for page in sorted(pages, key=lambda p: -weight[p]):      # stable: equal weights keep the pages' order
        least = loads.index(min(loads))
        shares[least].append(page)
        loads[least] += weight[page]
    return shares


def write_reports(run_dir: Path, rows: Sequence[ResultRow], summary: dict, manifest: dict,
                  conversations: dict[str, dict], workers: int = 1) -> list[Path]:
    """Write summary.json, index.html/.md/.png and <language>.html/.md/.png; returns the files written. With
    `workers` above 1 (where processes fork), the pages are written by that many processes at once: charts and
    templates are CPU work, and pages share nothing."""
    run_dir = Path(run_dir)
    pages = ["index", *summary["languages"]]
    refuse_symlinks([run_dir / SUMMARY] + [run_dir / f"{page}.{ext}" for page in pages for ext in ("html", "md",
                                                                                                   "png")])
    write_json(run_dir / SUMMARY, summary)

    def write(page: str) -> list[Path]:
        if page == "index":
            return _write_index(run_dir, rows, summary, manifest)
        return _write_language(run_dir, page, rows, summary, manifest, conversations)

    count = min(workers, len(pages)) if FORK else 1
    files: dict[str, list[Path]] = {}
    if count <= 1:
        files = {page: write(page) for page in pages}
    else:
        shares = page_shares(pages, Counter(row.language for row in rows), count)

        def child(index: int, send: Callable[[Any], None], stopped: Callable[[], bool]) -> None:
            for page in shares[index]:
                send((page, [str(path) for path in write(page)]))

        def on_message(message: tuple) -> bool:
            files[message[0]] = [Path(path) for path in message[1]]
            return False
        run_workers(count, child, on_message)
    return [run_dir / SUMMARY] + [path for page in pages for path in files[page]]


def rebuild(run_dir: Path, options: AnalysisOptions | None = None, redacted_to: Path | None = None,
            workers: int = 1) -> dict[str, Any]:
    """Summarise a run directory's results and write its reports (no model call); returns the summary.
    With `redacted_to`, write aggregates only to that folder: no answer, verdict reason or conversation."""
    # options: parity's reference language and the never-event threshold (default fr, -8).
    run_dir = Path(run_dir)
    manifest_data = read_json(run_dir / MANIFEST)
    rows = read_results(run_dir)
    conversations = {case["case_id"]: case for case in jsonl.read_objects(run_dir / CASES, "one case per line")}
    prices = manifest_data.get("prices") or {}
    target_prices = {t["name"]: batch_price(prices.get(t.get("model", "")), bool(t.get("batch")))
                     for t in manifest_data.get("targets", [])}
    grader = manifest_data.get("grader", {})
    grader_price = batch_price(prices.get(grader.get("model", "")), bool(grader.get("batch")))
    summary = summarize(rows, manifest_data.get("axes", []), manifest_data.get("seed", 0),
                        manifest_data.get("bootstrap", 1000), target_prices, grader_price, options)
    summary["run_id"] = manifest_data.get("run_id")
    if redacted_to is None:
        with run_lock(run_dir):
            write_reports(run_dir, rows, summary, manifest_data, conversations, workers)
    else:
        with run_lock(redacted_to):
            write_json(redacted_to / MANIFEST, manifest_data | {"redacted": True})
            write_reports(redacted_to, [], summary, manifest_data | {"redacted": True}, {})
    return summary
