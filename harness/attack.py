"""How often a grader is fooled by answers aimed at it (cases/adversarial/): `bilan attack-grader`."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any

from . import jsonl
from .errors import InputError, Problem
from .load import display
from .types import Config, EndpointConfig, ResultRow, Suite

TARGET = "adversarial"


def load_attacks(folder: Path, suite: Suite) -> list[dict[str, Any]]:
    """Every adversarial answer row, checked: known case, an attack name, an answer, expected verdicts."""
    rows, problems = [], []
    cases = {c.id: c for c in suite.cases}
    files = sorted(folder.glob("*.jsonl")) if folder.is_dir() else [folder]
    for file in files:
        for n, row in jsonl.objects(file.read_text(encoding="utf-8")):
            if isinstance(row, jsonl.LineError):
                problems.append(Problem(display(file), n, row.col, f"{row.message}; expected one object per line"))
            elif not {"case_id", "attack", "answer", "expected"} <= set(row):
                problems.append(Problem(display(file), n, 1,
                                        "expected an object with case_id, attack, answer and expected"))
            elif row["case_id"] not in cases:
                problems.append(Problem(display(file), n, 1, f"case_id: unknown case '{row['case_id']}'"))
            else:
                known = {c.id for c in suite.criteria[row["case_id"]]}
                unknown = sorted(set(row["expected"]) - known)
                if unknown:
                    problems.append(Problem(display(file), n, 1, f"expected: unknown criteria {', '.join(unknown)}; "
                                                                 "expected ids of the case's criteria"))
                rows.append(row | {"line": f"{display(file)}:{n}"})
    if not files or (not rows and not problems):
        problems.append(Problem(display(folder), 0, 0, "no adversarial answers found; expected .jsonl files"))
    if problems:
        raise InputError(problems)
    return rows


def attack_setup(config: Config, suite: Suite, attacks: list[dict]) -> tuple[Config, Suite, dict]:
    """A config whose only target replays the attacks (one sample per attack on a case) on the attacked cases."""
    answers: dict = {}
    per_case: defaultdict[str, int] = defaultdict(int)
    for row in attacks:
        row["sample"] = per_case[row["case_id"]]
        answers[(row["case_id"], row["sample"])] = row["answer"]
        per_case[row["case_id"]] += 1
    target = EndpointConfig(name=TARGET, provider="replay", samples=max(per_case.values()),
                            description="Adversarial answers aimed at the grader")
    cases = tuple(c for c in suite.cases if c.id in per_case)
    return replace(config, targets=(target,)), replace(suite, cases=cases), {TARGET: answers}


def fooled(rows: list[ResultRow], attacks: list[dict]) -> dict[str, Any]:
    """Share of targeted criteria where the grader moved in the attacker's favour, by attack and by language."""
    by_key = {(r.case_id, r.sample): r for r in rows}
    table: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: {"judged": 0, "fooled": 0, "ungraded": 0})
    for attack in attacks:
        row = by_key.get((attack["case_id"], attack["sample"]))
        verdicts = {v.id: v for v in row.verdicts} if row else {}
        for cid, want in attack["expected"].items():
            v = verdicts.get(cid)
            for key in ((attack["attack"], "all"), ("all", row.language if row else "?"), ("all", "all")):
                cell = table[key]
                if v is None or v.met is None:
                    cell["ungraded"] += 1
                    continue
                cell["judged"] += 1
                favour = v.met is True if v.points > 0 else v.met is False
                cell["fooled"] += int(v.met != want and favour)
    out = {f"{a}|{l}": dict(c, rate=(c["fooled"] / c["judged"]) if c["judged"] else None)
           for (a, l), c in table.items()}
    return {"by": out, "attacks": len(attacks)}
