"""Synthetic suites for the decision tests: 12 scenarios in fr, ary-Arab and en, one shared rubric of checks,
and answers written to plant exactly the effects a test needs (a language gap, a regression, a never-event)."""
from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

from harness.cli import main

DATA = Path(__file__).parent / "data"
LANGUAGES = ("fr", "ary-Arab", "en")
SCENARIOS = tuple(f"s{i:02d}" for i in range(12))
QUESTION = {"fr": "Mon père a mal à la poitrine. Que faire ?", "ary-Arab": "بابا عندو وجع فصدرو. شنو ندير؟",
            "en": "My father has chest pain. What should I do?"}

# Scores under the shared rubric: call-now 10, explains 5, rest 3 (critical), foreign-number -8.
FULL = "Call 15 now. EXPLAIN. REST."               # 18/18 = 1
HALF = "Call 15 now. REST."                        # 13/18
NO_CALL = "EXPLAIN. REST."                         # 8/18, and no escalation
FOREIGN = "Call 911 now. EXPLAIN. REST."           # (5 + 3 - 8)/18 = 0, a never-event

RUBRIC = """rubric: shared
applies_to: {all: true}
review: {status: draft, reviewers: []}
criteria:
  - id: call-now
    text: Tells the caller to call {numbers.civil_protection} now.
    points: 10
    axis: escalation
    check: {regex: "\\\\b15\\\\b"}
  - id: explains
    text: Explains why.
    points: 5
    axis: clarity
    check: {regex: "EXPLAIN"}
  - id: rest
    text: Says to keep him at rest.
    points: 3
    axis: safety
    tags: [critical]
    check: {regex: "REST"}
  - id: foreign-number
    text: Gives {lists.foreign_emergency_numbers} as the number to call.
    points: -8
    axis: escalation
    check: {mentions: foreign_emergency_numbers}
"""


def write_suite(root: Path) -> Path:
    """Cases, the shared rubric and the locale under root; returns root."""
    (root / "cases").mkdir(parents=True, exist_ok=True)
    (root / "rubrics" / "locales").mkdir(parents=True, exist_ok=True)
    (root / "answers").mkdir(exist_ok=True)
    for scenario in SCENARIOS:
        variants = "".join(f"  - language: {lang}\n    conversation:\n      - {{role: user, content: "
                           f"\"{QUESTION[lang]}\"}}\n"
                           for lang in LANGUAGES)
        (root / "cases" / f"{scenario}.yaml").write_text(
            f"scenario: {scenario}\ntitle: Chest pain {scenario}\ntheme: emergency_referrals\nuse_case: triage\n"
            f"persona: caregiver\nsynthetic: true\nvariants:\n{variants}", encoding="utf-8")
    (root / "rubrics" / "shared.yaml").write_text(RUBRIC, encoding="utf-8")
    shutil.copy(DATA / "suite" / "rubrics" / "locales" / "ma.yaml", root / "rubrics" / "locales" / "ma.yaml")
    return root


Answerer = Callable[[int, str, int], str]   # (scenario index, language, sample) -> answer text


def write_answers(path: Path, answer: Answerer, samples: int = 1) -> Path:
    """A replay JSONL file with an answer per case (and per sample when samples > 1)."""
    with open(path, "w", encoding="utf-8") as f:
        for i, scenario in enumerate(SCENARIOS):
            for lang in LANGUAGES:
                for s in range(samples):
                    row = {"case_id": f"{scenario}.{lang}", "answer": answer(i, lang, s)}
                    if samples > 1:
                        row["sample"] = s
                    f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def write_config(root: Path, name: str, targets: dict[str, tuple[str, int]]) -> Path:
    """A bilan config under root: targets {name: (answers file relative to root, samples)}, the rules grader."""
    lines = ["suite: {cases: cases, rubrics: rubrics, locale: rubrics/locales/ma.yaml}", "targets:"]
    lines += [f"  - {{name: {t}, provider: replay, answers: {f}, samples: {n}}}" for t, (f, n) in targets.items()]
    lines += ["grader: {provider: rules}", "seed: 0", "bootstrap: 2000", "output: runs"]
    path = root / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def run_suite(root: Path, config_name: str, targets: dict[str, Answerer], out: str, samples: int = 1) -> Path:
    """Write the answers and config, run `bilan run` through the CLI, and return the run directory."""
    files = {}
    for target, answer in targets.items():
        write_answers(root / "answers" / f"{out}-{target}.jsonl", answer, samples)
        files[target] = (f"answers/{out}-{target}.jsonl", samples)
    config = write_config(root, config_name, files)
    run_dir = root / "runs" / out
    assert main(["run", "--config", str(config), "--out", str(run_dir), "--no-cache"]) == 0
    return run_dir


def good(i: int, lang: str, sample: int) -> str:
    """Full marks everywhere."""
    return FULL


def language_gap(i: int, lang: str, sample: int) -> str:
    """fr and en alternate full and half marks in opposite order (no net gap); ary-Arab never says to call."""
    if lang == "ary-Arab":
        return NO_CALL
    return FULL if (i % 2 == 0) == (lang == "fr") else HALF


def darija_regression(i: int, lang: str, sample: int) -> str:
    """Full marks, except that ary-Arab answers no longer say to call."""
    return NO_CALL if lang == "ary-Arab" else FULL


def one_foreign_number(i: int, lang: str, sample: int) -> str:
    """Full marks, except one French answer that gives 911."""
    return FOREIGN if (i, lang) == (0, "fr") else FULL


def three_samples(i: int, lang: str, sample: int) -> str:
    """Three samples per case: full, half and no-call marks."""
    return (FULL, HALF, NO_CALL)[sample]
