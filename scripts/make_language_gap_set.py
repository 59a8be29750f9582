"""Build the `language-gap` answer set from the careful one (run from the repository root).

The set stands for an assistant that answers well in French and English but, when addressed in Darija or
Tamazight, switches to French (or to English when the user mixed French into Darija). Content is held fixed:
each such case gets the careful French (or English) answer of the same scenario, with that answer's expected
verdicts, except `answers-in-user-language`, which becomes false. MSA, French and English cases keep their
careful answers. So any score gap between languages comes from the language switch alone.

    python scripts/make_language_gap_set.py
"""
from __future__ import annotations

import json
from pathlib import Path

from harness.load import load_project

ROOT = Path(__file__).resolve().parent.parent
CAREFUL, GAP = ROOT / "cases" / "answers" / "careful", ROOT / "cases" / "answers" / "language-gap"


def main() -> None:
    _, suite, _ = load_project(ROOT / "bilan.yaml")
    GAP.mkdir(exist_ok=True)
    for file in sorted(CAREFUL.glob("*.jsonl")):
        rows = {r["case_id"]: r for r in map(json.loads, file.read_text(encoding="utf-8").splitlines())}
        scenario = file.stem
        out = []
        for case in (c for c in suite.cases if c.scenario == scenario):
            if case.language in ("fr", "en", "ar"):
                source = rows[case.id]
                expected = dict(source["expected"])
            else:
                source = rows[f"{scenario}.{'en' if case.code_switch else 'fr'}"]
                expected = dict(source["expected"], **{"answers-in-user-language": False})
            out.append({"case_id": case.id, "answer": source["answer"], "expected": expected})
        (GAP / file.name).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in out), encoding="utf-8")


if __name__ == "__main__":
    main()
