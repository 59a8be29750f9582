"""Measure the grader's fairness across languages, on text nobody wrote for the checks.

    python fairness/measure.py                 # both parts, as tables (Markdown)
    python fairness/measure.py --json OUT.json # also the figures as JSON

1. Language identification on the public corpus (`fairness/corpus/*.jsonl`, the `dev` rows only; the model is
   trained on the `train` rows by scripts/train_langid.py): per form, the same-language check's false reject
   (a text in the user's language judged another) and abstentions; its false accept (a text of another form
   judged the user's, over every user language it must not match); and the MSA/Darija variety's accuracy.
2. Checks on answer sets with expected verdicts written from the criterion text (`fairness/answers/*/` and the
   shipped `cases/answers/careful/`): per language, false "met" on harmful criteria, false "not met" on positive
   ones, abstentions, and the grader-induced gap to French (the grader's gap minus the expected verdicts' gap,
   over scenarios answered in both languages).
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness.grade import score  # noqa: E402
from harness.graders.rules import RulesGrader, view_of  # noqa: E402
from harness.langid import identify  # noqa: E402
from harness.load import load_project  # noqa: E402

# A corpus form: the user's language and code-switch languages it stands for.
FORMS = {"ar": ("ar", ()), "ary-Arab": ("ary-Arab", ()), "ary-Arab-fr": ("ary-Arab", ("fr",)),
         "ary-Latn": ("ary-Latn", ()), "ary-Latn-fr": ("ary-Latn", ("fr",)), "fr": ("fr", ()), "en": ("en", ()),
         "zgh-Tfng": ("zgh-Tfng", ()), "zgh-Latn": ("zgh-Latn", ())}
# Forms a text of a form may legitimately match (same family, or a language it mixes in).
COMPATIBLE = {"ar": {"ar", "ary-Arab", "ary-Arab-fr"}, "ary-Arab": {"ar", "ary-Arab", "ary-Arab-fr"},
              "ary-Arab-fr": {"ar", "ary-Arab", "ary-Arab-fr", "fr", "ary-Latn-fr"},
              "ary-Latn": {"ary-Latn", "ary-Latn-fr"}, "ary-Latn-fr": {"ary-Latn", "ary-Latn-fr", "fr", "ary-Arab-fr"},
              "fr": {"fr", "ary-Latn-fr", "ary-Arab-fr"}, "en": {"en"}, "zgh-Tfng": {"zgh-Tfng"},
              "zgh-Latn": {"zgh-Latn"}}
_DIGIT_LETTER = re.compile(r"[a-z][235679]|[235679][a-z]")


def corpus_rows(split: str = "dev") -> list[dict]:
    """Rows of the public corpus of one split."""
    rows = []
    for path in sorted((ROOT / "fairness" / "corpus").glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip() and (row := json.loads(line))["split"] == split:
                rows.append(row)
    return rows


def form_label(row: dict) -> str:
    """The reported form: ary-Latn split by digit-letters."""
    if row["form"] == "ary-Latn":
        return "ary-Latn (digits)" if _DIGIT_LETTER.search(row["text"].casefold()) else "ary-Latn (no digits)"
    return row["form"]


def language_figures(rows: list[dict]) -> dict[str, dict]:
    """Per form: n, false reject, abstain, false accept (with its number of trials), variety accuracy."""
    from harness.checks import AnswerView, Language
    check = Language()
    out: dict[str, dict] = defaultdict(lambda: {"n": 0, "reject": 0, "abstain": 0, "fa_trials": 0, "fa": 0,
                                                "variety_n": 0, "variety_ok": 0})
    for row in rows:
        cell = out[form_label(row)]
        language, switch = FORMS[row["form"]]
        met = check.evaluate(AnswerView(row["text"], language, switch)).met
        cell["n"] += 1
        cell["reject"] += met is False
        cell["abstain"] += met is None
        for user, (user_language, user_switch) in FORMS.items():
            if user in COMPATIBLE[row["form"]]:
                continue
            cell["fa_trials"] += 1
            cell["fa"] += check.evaluate(AnswerView(row["text"], user_language, user_switch)).met is True
        if row["form"] in ("ar", "ary-Arab"):
            cell["variety_n"] += 1
            cell["variety_ok"] += identify(row["text"]).variety == ("ar" if row["form"] == "ar" else "ary")
    return dict(out)


def answer_sets() -> list[tuple[str, Path]]:
    """The answer sets with expected verdicts that are measured."""
    sets = [(p.name, p) for p in sorted((ROOT / "fairness" / "answers").iterdir()) if p.is_dir()]
    return sets + [("careful (shipped)", ROOT / "cases" / "answers" / "careful")]


def read_answers(folder: Path) -> list[dict]:
    rows = []
    for path in sorted(folder.glob("*.jsonl")):
        rows.extend(json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    return rows


def check_figures(folder: Path, suite, errors: list | None = None) -> dict:
    """Per language: harmful false-met, positive false-not-met, abstentions; scores by grader and by truth."""
    grader, cases = RulesGrader(suite.locale), {c.id: c for c in suite.cases}
    cells: dict[str, dict] = defaultdict(lambda: {"harm_n": 0, "harm_false_met": 0, "harm_missed": 0, "pos_n": 0,
                                                  "pos_false_not_met": 0, "abstain": 0, "n": 0})
    # language -> (scenario, variant) -> {criterion: (points, met, want)}
    scores: dict[str, dict] = defaultdict(dict)
    for row in read_answers(folder):
        case = cases.get(row["case_id"])
        if case is None:
            continue
        language = case.language + ("+" + "+".join(case.code_switch) if case.code_switch else "")
        view, cell = view_of(case, row["answer"]), cells[language]
        decided = {}
        for criterion in suite.criteria[case.id]:
            if criterion.check is None or criterion.id not in row["expected"]:
                continue
            verdict = grader.verdict(case, view, criterion)
            want, met = row["expected"][criterion.id], verdict.met
            if errors is not None and met is not None and met != want:
                errors.append({"set": folder.name, "language": language, "case": case.id,
                               "variant": row.get("variant", ""), "criterion": criterion.id,
                               "points": criterion.points, "expected": want, "got": met, "why": verdict.explanation})
            cell["n"] += 1
            cell["abstain"] += met is None
            if criterion.points < 0:
                cell["harm_n"] += 1
                cell["harm_false_met"] += met is True and want is False
                cell["harm_missed"] += met is False and want is True
            else:
                cell["pos_n"] += 1
                cell["pos_false_not_met"] += met is False and want is True
            decided[criterion.id] = (criterion.points, met, want)
        key = (case.scenario, row.get("variant", ""), tuple(case.code_switch))
        scores[language][key] = decided
    return {"cells": dict(cells), "gaps": induced_gaps(scores)}


def _scores(decided: dict, ids) -> tuple[float | None, float | None]:
    """The grader's and the expected verdicts' score of one answer over some criteria."""
    return (score([(decided[i][0], decided[i][1]) for i in ids]), score([(decided[i][0], decided[i][2]) for i in ids]))


def _gap(pairs: list) -> dict | None:
    pairs = [(a, b) for a, b in pairs if None not in (*a, *b)]
    if not pairs:
        return None
    grader_gap = sum(a[0] - b[0] for a, b in pairs) / len(pairs)
    true_gap = sum(a[1] - b[1] for a, b in pairs) / len(pairs)
    return {"pairs": len(pairs), "grader_gap": grader_gap, "true_gap": true_gap, "induced": grader_gap - true_gap}


def induced_gaps(scores: dict[str, dict]) -> dict[str, dict]:
    """Per language: the grader's and the truth's mean gap to French over paired answers, and their difference;
    `paired` is the same over the criteria the grader decided in both languages (as the reports' parity gaps),
    beside it the unpaired figure over every criterion decided in each language."""
    out = {}
    french = scores.get("fr", {})
    for language, by_key in scores.items():
        if language == "fr":
            continue
        unpaired, paired = [], []
        for key, here in by_key.items():
            there = french.get((key[0], key[1], ()))
            if there is None:
                continue
            unpaired.append((_scores(here, here), _scores(there, there)))
            both = [i for i in here if i in there and here[i][1] is not None and there[i][1] is not None]
            paired.append((_scores(here, both), _scores(there, both)))
        figures = _gap(unpaired)
        if figures:
            figures["paired"] = _gap(paired)
            out[language] = figures
    return out


def _pct(a: int, b: int) -> str:
    return f"{100 * a / b:.1f}%" if b else "-"


def print_language(figures: dict) -> None:
    print("| form | texts | false reject | abstain | false accept (trials) | MSA/Darija variety right |")
    print("|---|---|---|---|---|---|")
    for form, c in sorted(figures.items()):
        variety = _pct(c["variety_ok"], c["variety_n"]) if c["variety_n"] else "-"
        print(f"| {form} | {c['n']} | {_pct(c['reject'], c['n'])} | {_pct(c['abstain'], c['n'])} | "
              f"{_pct(c['fa'], c['fa_trials'])} ({c['fa_trials']}) | {variety} |")


def print_checks(name: str, figures: dict) -> None:
    print(f"\n**{name}**\n")
    print("| language | verdicts | false met (harmful) | missed harm | false not met (positive) | abstain | "
          "grader gap to fr | expected gap to fr | grader-induced gap (pairs) | "
          "grader-induced gap, criteria decided in both (pairs) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    gaps = figures["gaps"]
    for language, c in sorted(figures["cells"].items()):
        g = gaps.get(language)
        gap = (f"{g['grader_gap']:+.3f} | {g['true_gap']:+.3f} | {g['induced']:+.3f} ({g['pairs']}) | "
               + (f"{g['paired']['induced']:+.3f} ({g['paired']['pairs']})" if g.get("paired") else "-") if g
               else "- | - | - | -")
        print(f"| {language} | {c['n']} | {_pct(c['harm_false_met'], c['harm_n'])} | "
              f"{_pct(c['harm_missed'], c['harm_n'])} | {_pct(c['pos_false_not_met'], c['pos_n'])} | "
              f"{_pct(c['abstain'], c['n'])} | {gap} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    parser.add_argument("--errors", type=Path, help="also write every wrong verdict (one JSON line each) here")
    args = parser.parse_args()
    _, suite, _ = load_project(ROOT / "bilan.yaml")
    errors: list | None = [] if args.errors else None
    figures = {"language": language_figures(corpus_rows("dev")),
               "checks": {name: check_figures(folder, suite, errors) for name, folder in answer_sets()}}
    print("### Same-language check on the public corpus (dev rows)\n")
    print_language(figures["language"])
    print("\n### Checks on answer sets with expected verdicts")
    for name, found in figures["checks"].items():
        print_checks(name, found)
    if args.errors:
        args.errors.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in errors or []),
                               encoding="utf-8")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1, ensure_ascii=False), encoding="utf-8")


if __name__ == "__main__":
    main()
