"""Fault campaign: every kind of failure at 10-30% on the target and the grader at once, and what became of it.

    python reliability/fault_campaign.py [--samples 20]

The fake server (tests/fake_server.py, 127.0.0.1) answers each call, target and grader alike, with a fault
drawn at the given rate (429 with and without Retry-After, 500, a dropped connection, a hang past the
client's timeout, or, for the grader, malformed JSON), else properly. Faults are drawn from each request and its
attempt number, so a run is reproducible. Prints a Markdown table: every answer accounted for, every failure by
kind, and the number of verdicts that differ from the fake grader's honest decision (invented verdicts).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from fake_server import FakeModelServer  # noqa: E402
from test_reliability import faulty, honest  # noqa: E402

from harness.cli import main as bilan  # noqa: E402


def campaign(rate: float, samples: int, work: Path) -> dict:
    folder = work / f"rate-{rate}"
    shutil.copytree(ROOT / "tests" / "data" / "suite", folder, ignore=shutil.ignore_patterns("runs"))
    with FakeModelServer(faulty(rate)) as server:
        (folder / "bilan.yaml").write_text(f"""
suite: {{cases: cases, rubrics: rubrics, locale: rubrics/locales/ma.yaml}}
targets:
  - {{name: vendor, provider: openai, model: m, base_url: "{server.openai_base_url}", samples: {samples}, timeout: 0.5,
      max_attempts: 3, backoff: 0.01, max_concurrency: 16}}
grader: {{provider: openai, model: judge, base_url: "{server.openai_base_url}", timeout: 0.5, max_attempts: 3,
          backoff: 0.01, max_concurrency: 16}}
""", encoding="utf-8")
        status = bilan(["run", "--config", str(folder / "bilan.yaml"), "--out", str(folder / "out"), "--no-cache",
                        "--max-error-rate", "0.5"])
        calls = server.count
    rows = [json.loads(l) for l in (folder / "out" / "results.jsonl").read_text(encoding="utf-8").splitlines()]
    verdicts = [(r, v) for r in rows for v in r["verdicts"]]
    return {"rate": rate, "status": status, "calls": calls, "answers": len(rows), "expected": 5 * samples,
            "answer_errors": Counter(r["error"].split(":")[0] for r in rows if r["status"] == "error"),
            "graded": sum(v["met"] is not None for _, v in verdicts),
            "ungraded": Counter(v["error"].split(":")[0] for _, v in verdicts if v["met"] is None),
            "invented": sum(v["met"] is not None and v["met"] != honest(r, v) for r, v in verdicts)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=20)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bilan-faults-"))
    try:
        results = [campaign(rate, args.samples, work) for rate in (0.1, 0.2, 0.3)]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("| fault rate | exit | HTTP requests | answers written / expected | answers failed (by kind) | verdicts graded | "
          "verdicts not graded (by kind) | invented verdicts |\n|---:|---:|---:|---|---|---:|---|---:|")
    for r in results:
        kinds = lambda c: ", ".join(f"{k} {n}" for k, n in sorted(c.items())) or "none"
        print(f"| {r['rate']:.0%} | {r['status']} | {r['calls']} | {r['answers']} / {r['expected']} | {kinds(r['answer_errors'])} | "
              f"{r['graded']} | {kinds(r['ungraded'])} | {r['invented']} |")
    return 0 if all(r["invented"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
