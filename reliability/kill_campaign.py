"""Kill campaign: `kill -9` a real `bilan run` at random moments, resume it, and check that nothing was lost.

    python reliability/kill_campaign.py --kills 25 [--seed 1]

Each trial starts `bilan run` (a model target and a model grader, through the openai SDK, against the fake
server in tests/fake_server.py on 127.0.0.1), kills it with SIGKILL after a random delay drawn over the whole
run (so kills land during generation, grading, cache writes and report writing), then runs it again with
--resume. The resumed results must equal an uninterrupted run's, with no duplicate or missing row, and the
response cache must pass SQLite's integrity check. Prints a Markdown table.
"""
from __future__ import annotations

import argparse
import json
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_engine import make_suite, start_server  # noqa: E402


def config(folder: Path, port: int) -> Path:
    path = folder / "bilan.yaml"
    path.write_text(
        "suite: {cases: cases, rubrics: rubrics, locale: rubrics/locales/ma.yaml}\n"
        f"targets:\n  - {{name: candidate, provider: openai, model: fake, base_url: \"http://127.0.0.1:{port}/v1\", "
        "samples: 2, max_concurrency: 8}\n"
        f"grader: {{provider: openai, model: fake-grader, base_url: \"http://127.0.0.1:{port}/v1\", max_concurrency: 16}}\n")
    return path


def bilan(folder: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "harness", "run", "--config", "bilan.yaml", *args], cwd=folder,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def essence(run_dir: Path) -> tuple[dict, int]:
    lines = (run_dir / "results.jsonl").read_text(encoding="utf-8").splitlines()
    rows = [json.loads(l) for l in lines]
    return ({(r["target"], r["case_id"], r["sample"]): (r["answer"], r["score"], [(v["id"], v["met"]) for v in r["verdicts"]])
             for r in rows}, len(rows))


def phase(run_dir: Path, total: int) -> str:
    results = run_dir / "results.jsonl"
    done = results.read_text(encoding="utf-8").count("\n") if results.exists() else 0
    if done == 0:
        return "start, generation and grading of the first answers"
    if done < total:
        return "generation, grading and cache writes"
    return "summary and report writing"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=25)
    parser.add_argument("--cases", type=int, default=40)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    server, port = start_server(0.1)
    work = Path(tempfile.mkdtemp(prefix="bilan-kill-"))
    try:
        make_suite(work, args.cases, criteria=5)
        config(work, port)
        start = time.perf_counter()
        reference = bilan(work, "--out", "reference", "--no-cache")
        if reference.wait():
            raise SystemExit(reference.stderr.read())
        duration = time.perf_counter() - start
        expected, total = essence(work / "reference")
        outcomes, phases, trial, missed = [], {}, 0, 0
        while len(outcomes) < args.kills:
            trial += 1
            out, cache = f"killed-{trial}", f"cache-{trial}"
            proc = bilan(work, "--out", out, "--cache-dir", cache)
            time.sleep(rng.uniform(0.2, duration * 0.97))
            if proc.poll() is not None:          # it finished before the kill: not a kill, try again
                missed += 1
                continue
            where = phase(work / out, total)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            phases[where] = phases.get(where, 0) + 1
            resumed = bilan(work, "--out", out, "--cache-dir", cache, "--resume")
            if resumed.wait():
                outcomes.append((trial, where, f"resume failed: {resumed.stderr.read()[-300:]}"))
                continue
            got, rows = essence(work / out)
            db = sqlite3.connect(work / cache / "responses.sqlite")
            integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
            db.close()
            problems = [p for p, bad in (("results differ", got != expected), ("duplicate or missing rows", rows != total),
                                        (f"cache integrity {integrity}", integrity != "ok")) if bad]
            outcomes.append((trial, where, "; ".join(problems) or "identical"))
        identical = sum(o[2] == "identical" for o in outcomes)
        print(f"{args.kills} kills (SIGKILL) of `bilan run` on {args.cases} cases x 2 samples ({total} results, "
              f"{total * 5} grader calls; an uninterrupted run took {duration:.1f} s); seed {args.seed}.\n")
        print("| where the kill landed | kills |\n|---|---:|")
        for where, n in sorted(phases.items()):
            print(f"| {where} | {n} |")
        print(f"\n({missed} draws fell after the run had finished and were redrawn.)")
        print(f"\nAfter --resume: {identical} of {len(outcomes)} runs identical to the uninterrupted run, with no "
              f"duplicate or missing row and an intact cache.")
        for trial, where, result in outcomes:
            if result != "identical":
                print(f"- trial {trial} ({where}): {result}")
        return 0 if identical == len(outcomes) else 1
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
