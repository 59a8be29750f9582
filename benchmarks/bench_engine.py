"""Benchmark of Bilan's run engine against the fake model server (tests/fake_server.py) on 127.0.0.1.

    python benchmarks/bench_engine.py                  # every measurement, figures as Markdown on stdout
    python benchmarks/bench_engine.py --quick          # smaller sizes, for a smoke test

The grader is a model (the `openai` provider through the official SDK), one call per criterion; the target
replays recorded answers, so every call goes through one endpoint and the ideal throughput is exactly
concurrency / latency. The fake server runs in its own process with a fixed latency. Each measurement runs in
a fresh Python process (`--measure`), which reports the engine's wall time, its CPU time (user + system, the
whole process, imports excluded) and its peak resident memory.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CRITERIA = 10


def make_suite(folder: Path, cases: int, criteria: int = CRITERIA) -> None:
    """A synthetic suite: `cases` one-variant scenarios, each with `criteria` model-graded criteria."""
    (folder / "cases").mkdir(parents=True)
    (folder / "rubrics" / "locales").mkdir(parents=True)
    (folder / "rubrics" / "locales" / "ma.yaml").write_text('locale: ma\nname: Morocco\nnumbers: {civil_protection: '
                                                            '"15"}\n')
    answers = []
    for i in range(cases):
        name = f"bench-{i:05d}"
        (folder / "cases" / f"{name}.yaml").write_text(
            f"scenario: {name}\ntitle: Synthetic benchmark case {i}\ntheme: hedging\nuse_case: triage\npersona: "
            "patient\n"
            f"synthetic: true\nvariants:\n  - language: en\n    conversation:\n"
            f"      - {{role: user, content: \"Synthetic question number {i}: I have had a headache for {i % 9 + 1} "
            "days. What should I do?\"}\n")
        lines = [f"rubric: {name}", f"applies_to: {{scenario: {name}}}", "review: {status: draft, reviewers: []}",
                 "criteria:"]
        for j in range(criteria):
            lines.append(f"  - {{id: c{j:02d}, text: \"Synthetic criterion {j} for case {i}.\", points: "
                         f"{(j % 9) + 1 if j % 4 else -5}, axis: safety}}")
        (folder / "rubrics" / f"{name}.yaml").write_text("\n".join(lines) + "\n")
        answers.append(json.dumps({"case_id": f"{name}.en",
                                   "answer": f"Synthetic answer {i}: rest, drink water, see a doctor if it lasts."}))
    (folder / "answers.jsonl").write_text("\n".join(answers) + "\n")


def write_config(folder: Path, port: int, concurrency: int) -> Path:
    config = folder / f"bilan-{concurrency}.yaml"
    config.write_text(
        "suite: {cases: cases, rubrics: rubrics, locale: rubrics/locales/ma.yaml}\n"
        "targets:\n  - {name: recorded, provider: replay, answers: answers.jsonl, max_concurrency: 4}\n"
        f"grader: {{provider: openai, model: fake-grader, base_url: \"http://127.0.0.1:{port}/v1\", "
        f"max_concurrency: {concurrency}, timeout: 30}}\n")
    return config


def measure(config: Path, out: Path, cache: str | None) -> dict:
    """Run the engine once in this process (validation and imports excluded from the timings)."""
    from harness.load import load_project
    from harness.run import Monitor, RunOptions, run
    from harness.store import ResponseCache
    cfg, suite, answers = load_project(config)
    options = RunOptions(cache=ResponseCache(Path(cache) / "responses.sqlite") if cache else None)
    monitor = Monitor()
    before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    run(cfg, suite, answers, out, {}, options, monitor)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    models = [e for e in monitor.endpoints.values() if e.scope is not None]     # the replay target makes no call
    calls = sum(e.meter.calls for e in models)
    hits = sum(e.meter.cache_hits for e in models)
    verdicts = sum(1 for line in (out / "results.jsonl").open() for _ in json.loads(line)["verdicts"])
    return {"wall": wall, "cpu": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
            "calls": calls, "cache_hits": hits, "verdicts": verdicts, "max_rss_mb": after.ru_maxrss / 1024}


def write_healthbench(path: Path, cases: int, criteria: int = CRITERIA) -> None:
    """The same synthetic suite in HealthBench's JSONL format, for the reference implementation."""
    with open(path, "w") as f:
        for i in range(cases):
            rubrics = [{"criterion": f"Synthetic criterion {j} for case {i}.", "points": (j % 9) + 1 if j % 4 else -5,
                        "tags": ["level:example", "axis:accuracy"]} for j in range(criteria)]
            f.write(json.dumps({"prompt": [{"role": "user", "content": f"Synthetic question number {i}: I have had a "
                                            f"headache for {i % 9 + 1} days. What should I do?"}],
                                "prompt_id": f"synthetic-{i:05d}", "rubrics": rubrics,
                                "example_tags": ["theme:hedging"], "ideal_completions_data": None}) + "\n")


def measure_reference(checkout: Path, examples: Path, threads: int) -> dict:
    """Run openai/simple-evals' HealthBenchEval (a local checkout) on local examples, in this process."""
    import importlib
    import blobfile
    package = Path(tempfile.mkdtemp(prefix="simple-evals-")) / "simple_evals"
    shutil.copytree(checkout, package, ignore=shutil.ignore_patterns(".git"))
    sys.path.insert(0, str(package.parent))
    healthbench = importlib.import_module("simple_evals.healthbench_eval")
    sampler = importlib.import_module("simple_evals.sampler.chat_completion_sampler")
    real_blobfile = blobfile.BlobFile
    healthbench.bf.BlobFile = lambda path, mode="r": real_blobfile(str(examples), mode)
    grader = sampler.ChatCompletionSampler(model="fake-grader", system_message=sampler.OPENAI_SYSTEM_MESSAGE_API,
                                           max_tokens=2048)
    candidate = sampler.ChatCompletionSampler(model="fake-candidate", system_message=sampler.OPENAI_SYSTEM_MESSAGE_API,
                                              max_tokens=2048)
    evaluation = healthbench.HealthBenchEval(grader_model=grader, n_threads=threads)
    before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    evaluation(candidate)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    calls = sum(1 + len(json.loads(line)["rubrics"]) for line in examples.open())
    return {"wall": wall, "cpu": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
            "calls": calls}


def target_config(folder: Path, port: int, concurrency: int) -> Path:
    """Like write_config, but the target is a model too (as in the reference implementation)."""
    config = folder / f"bilan-model-{concurrency}.yaml"
    config.write_text(
        "suite: {cases: cases, rubrics: rubrics, locale: rubrics/locales/ma.yaml}\n"
        "targets:\n  - {name: candidate, provider: openai, model: fake-candidate, base_url: "
        f"\"http://127.0.0.1:{port}/v1\", max_concurrency: {concurrency}}}\n"
        f"grader: {{provider: openai, model: fake-grader, base_url: \"http://127.0.0.1:{port}/v1\", "
        f"max_concurrency: {concurrency}, timeout: 30}}\n")
    return config


def run_measure(config: Path, out: Path, cache: str | None = None) -> dict:
    command = [sys.executable, __file__, "--measure", str(config), str(out)] + ([cache] if cache else [])
    done = subprocess.run(command, cwd=config.parent, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def start_server(latency: float) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "fake_server.py"), "--latency", str(latency),
                             "--responder", "verdict"], stdout=subprocess.PIPE, text=True)
    return proc, int(proc.stdout.readline())


def bilan_cli_time(config: Path, out: Path, cache: Path) -> float:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "harness", "run", "--config", str(config), "--out", str(out),
                           "--cache-dir", str(cache)], cwd=config.parent, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"bilan run failed:\n{done.stderr}")
    return time.perf_counter() - start


def comparison(args: argparse.Namespace, work: Path, port: int, cases: int) -> list[str]:
    """Bilan and the reference implementation on the same work: a model target and a model grader, 32-way."""
    folder = work / "comparison"
    make_suite(folder, cases)
    lines = ["", f"Same work ({cases} cases, a model answer plus {CRITERIA} grader calls each), 32-way:", "",
             "| harness | calls | wall (s) | calls/s | CPU ms per call |", "|---|---:|---:|---:|---:|"]
    r = run_measure(target_config(folder, port, 32), folder / "run")
    lines.append(f"| Bilan (32 target + 32 grader slots) | {r['calls']} | {r['wall']:.2f} | "
                 f"{r['calls'] / r['wall']:.0f} | {1000 * r['cpu'] / r['calls']:.2f} |")
    if args.reference:
        examples = folder / "healthbench.jsonl"
        write_healthbench(examples, cases)
        env = dict(os.environ, OPENAI_BASE_URL=f"http://127.0.0.1:{port}/v1", OPENAI_API_KEY="not-a-key")
        done = subprocess.run([sys.executable, __file__, "--measure-reference", args.reference, str(examples), "32"],
                              capture_output=True, text=True, env=env, cwd=folder)
        if done.returncode:
            raise SystemExit(f"reference run failed:\n{done.stderr[-3000:]}")
        ref = json.loads(done.stdout.strip().splitlines()[-1])
        lines.append(f"| simple-evals HealthBenchEval (n_threads=32) | {ref['calls']} | {ref['wall']:.2f} | "
                     f"{ref['calls'] / ref['wall']:.0f} | {1000 * ref['cpu'] / ref['calls']:.2f} |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--measure", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--cases", type=int, default=300, help="cases for the throughput runs")
    parser.add_argument("--concurrency", default="4,16,32,64")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--reference", help="a local checkout of openai/simple-evals, to run the same work through "
                        "its HealthBenchEval (needs `pip install blobfile requests`)")
    parser.add_argument("--measure-reference", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        config, out, *cache = args.measure
        print(json.dumps(measure(Path(config), Path(out), cache[0] if cache else None)))
        return 0
    if args.measure_reference:
        checkout, examples, threads = args.measure_reference
        print(json.dumps(measure_reference(Path(checkout), Path(examples), int(threads))))
        return 0
    sizes = {"throughput": 60 if args.quick else args.cases, "cached": 100 if args.quick else 1000,
             "memory": (50, 200) if args.quick else (500, 2000)}
    server, port = start_server(args.latency)
    work = Path(tempfile.mkdtemp(prefix="bilan-bench-"))
    try:
        lines = [f"Fake server latency {args.latency * 1000:.0f} ms; {CRITERIA} model-graded criteria per case; "
                 f"Python {sys.version.split()[0]}.", "",
                 "| concurrency | calls | wall (s) | calls/s | ideal calls/s | % of ideal | CPU ms per call |",
                 "|---:|---:|---:|---:|---:|---:|---:|"]
        suite = work / "throughput"
        make_suite(suite, sizes["throughput"])
        for c in [int(x) for x in args.concurrency.split(",")]:
            r = run_measure(write_config(suite, port, c), suite / f"run-{c}")
            ideal = c / args.latency
            rate = r["calls"] / r["wall"]
            lines.append(f"| {c} | {r['calls']} | {r['wall']:.2f} | {rate:.0f} | {ideal:.0f} | "
                         f"{100 * rate / ideal:.0f}% | {1000 * r['cpu'] / r['calls']:.2f} |")
        cached = work / "cached"
        make_suite(cached, sizes["cached"])
        config, cache = write_config(cached, port, 64), cached / "cache"
        first = run_measure(config, cached / "first", str(cache))
        second = run_measure(config, cached / "second", str(cache))
        cli = bilan_cli_time(config, cached / "third", cache)
        lines += ["", f"Cached re-run of {sizes['cached']} cases ({first['calls']} calls the first time): engine "
                  f"{second['wall']:.2f} s with {second['calls']} calls and {second['cache_hits']} cache hits; the "
                  f"whole `bilan run` command (start-up, validation, engine, summary and reports) {cli:.2f} s."]
        lines += ["", "| cases | verdicts | peak memory (MB) |", "|---:|---:|---:|"]
        for n in sizes["memory"]:
            folder = work / f"memory-{n}"
            make_suite(folder, n)
            r = run_measure(write_config(folder, port, 64), folder / "run")
            lines.append(f"| {n} | {r['verdicts']} | {r['max_rss_mb']:.0f} |")
        lines += comparison(args, work, port, sizes["throughput"])
        print("\n".join(lines))
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
