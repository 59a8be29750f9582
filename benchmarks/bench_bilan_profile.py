"""Where Bilan's time goes on the HealthBench work of bench_peers.py, and a cached re-run, whole commands.

    python benchmarks/bench_bilan_profile.py                     # profile (300 examples, 32-way) + cached re-run
    python benchmarks/bench_bilan_profile.py --quick             # 30 examples; 100 for the cached re-run

1. Profile: `python -m cProfile -m harness run` on the 300 examples at 32-way (after `bilan import healthbench`),
   against benchmarks/peer_server.py. Printed: the stages' share of the profiled process (validation =
   harness.load.load_project, engine = harness.run.run, summary and reports = harness.report.rebuild, the rest is
   start-up: imports and argument parsing), the engine's and the reports' heaviest harness functions by
   cumulative time, and the heaviest functions anywhere by own time. cProfile slows Python code about twofold,
   so shares are the thing to read, not seconds; the unprofiled whole command is timed beside it.
2. Cached re-run: 1,000 examples imported, `bilan run` once with a response cache folder, then `bilan run`
   again into a new run directory with the same cache folder; both whole commands timed (bench_peers' wrapper),
   the server counting the requests of each. Then `bilan validate` and `bilan report` alone on the same project
   and run, for the share of validation and of the summary + reports in the cached command; and a third cached
   run under benchmarks/stage_times.py, for each stage's wall time inside the one command.
"""
from __future__ import annotations

import argparse
import pstats
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_peers  # noqa: E402

STAGES = {"validation (load_project)": ("harness/load.py", "load_project"),
          "engine (run.run)": ("harness/run.py", "run"),
          "summary + reports (report.rebuild)": ("harness/report.py", "rebuild")}


def _find(stats: pstats.Stats, path: str, name: str) -> tuple | None:
    for key, value in stats.stats.items():          # key: (file, line, function); value[3]: cumulative
        if key[0].endswith(path) and key[2] == name:
            return key, value
    return None


def summarize_profile(prof: Path, top: int = 15) -> list[str]:
    stats = pstats.Stats(str(prof))
    total = stats.total_tt
    lines = [f"Profiled process: {total:.2f} s of CPU-clock time in cProfile.", "",
             "| stage | cumulative s | share |", "|---|---:|---:|"]
    staged = 0.0
    for label, (path, name) in STAGES.items():
        found = _find(stats, path, name)
        cum = found[1][3] if found else 0.0
        staged += cum
        lines.append(f"| {label} | {cum:.2f} | {100 * cum / total:.0f}% |")
    lines.append(f"| start-up and the rest (imports, argument parsing, key resolution) | {total - staged:.2f} | "
                 f"{100 * (total - staged) / total:.0f}% |")
    harness = sorted(((k, v) for k, v in stats.stats.items() if "/harness/" in k[0]), key=lambda kv: -kv[1][3])
    lines += ["", "Heaviest harness functions, cumulative (a function's callees included; nested ones overlap):", "",
              "| function | calls | cumulative s | share |", "|---|---:|---:|---:|"]
    for (file, line, name), v in harness[:top]:
        lines.append(f"| `{file.split('/harness/')[-1]}:{line} {name}` | {v[1]} | {v[3]:.2f} | "
                     f"{100 * v[3] / total:.0f}% |")
    own = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])
    lines += ["", "Heaviest functions by own time (callees excluded):", "",
              "| function | calls | own s | share |", "|---|---:|---:|---:|"]
    for (file, line, name), v in own[:top]:
        where = file.split("site-packages/")[-1].split("/lib/python3.11/")[-1]
        lines.append(f"| `{where}:{line} {name}` | {v[1]} | {v[2]:.2f} | {100 * v[2] / total:.0f}% |")
    return lines


PY_SPY_STAGES = {"validation (load_project)": ("load_project (", "harness/load.py:"),
                 "engine (run.run)": ("run (", "harness/run.py:"),
                 "summary + reports (report.rebuild)": ("rebuild (", "harness/report.py:")}


# a pool thread waiting on its queue: idle, though py-spy counts it
IDLE_WORKER = "_worker (concurrent/futures/thread.py:81)"


def _where(frame: str) -> str:
    """The file of a py-spy frame 'function (file:line)', site-packages and the checkout's root taken off."""
    file = frame.rpartition(" (")[2].rstrip(")").rpartition(":")[0]
    return file.split("site-packages/")[-1].replace(str(bench_peers.ROOT) + "/", "")


def _is_harness(frame: str) -> bool:
    return _where(frame).startswith("harness/")


def _function(frame: str) -> str:
    return f"{_where(frame)} {frame.rpartition(' (')[0]}"


def _package(frame: str) -> str:
    where = _where(frame)
    if where.startswith("harness/"):
        return where
    if where.startswith("<frozen importlib"):
        return "importing (importlib)"
    return where.split("/")[0] if "/" in where else f"{where} (stdlib)"


def summarize_py_spy(raw: Path, top: int = 15) -> list[str]:
    """Shares of py-spy's samples (collapsed stacks, idle excluded): by stage, by harness function (inclusive),
    and by leaf function (own)."""
    stacks = []
    for line in raw.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if stack and count.isdigit() and not frames[-1].startswith(IDLE_WORKER):
            stacks.append((frames, int(count)))
    total = sum(c for _, c in stacks)
    lines = [f"py-spy: {total} samples of the running (not idle) main thread and its helpers.", "",
             "| stage | share of samples |", "|---|---:|"]
    staged = 0
    for label, marker in PY_SPY_STAGES.items():
        name, path = marker
        n = sum(c for frames, c in stacks if any(f.startswith(name) and path in f for f in frames))
        staged += n
        lines.append(f"| {label} | {100 * n / total:.0f}% |")
    lines.append(f"| start-up and the rest (imports, argument parsing) | {100 * (total - staged) / total:.0f}% |")
    inclusive: dict[str, int] = {}
    own: dict[str, int] = {}
    package: dict[str, int] = {}
    for frames, c in stacks:
        for f in {_function(f) for f in frames if _is_harness(f)}:
            inclusive[f] = inclusive.get(f, 0) + c
        leaf = _function(frames[-1])
        own[leaf] = own.get(leaf, 0) + c
        package[_package(frames[-1])] = package.get(_package(frames[-1]), 0) + c
    lines += ["", "Harness functions, inclusive share (callees included; nested ones overlap):", "",
              "| function | share |", "|---|---:|"]
    lines += [f"| `{f}` | {100 * n / total:.1f}% |" for f, n in sorted(inclusive.items(), key=lambda kv: -kv[1])[:top]]
    lines += ["", "Own time by where the leaf frame is (package, or harness module):", "", "| where | share |",
              "|---|---:|"]
    lines += [f"| {f} | {100 * n / total:.1f}% |" for f, n in sorted(package.items(), key=lambda kv: -kv[1])[:top]]
    lines += ["", "Leaf functions (own time):", "", "| function | share |", "|---|---:|"]
    lines += [f"| `{f}` | {100 * n / total:.1f}% |" for f, n in sorted(own.items(), key=lambda kv: -kv[1])[:top]]
    return lines


def profile(args, server: bench_peers.Server, work: Path, data: Path, n: int) -> list[str]:
    commands = bench_peers.bilan_commands(args, work, data, server.port, n)
    unprofiled = bench_peers.measure(server, commands if args.unprofiled else commands[:2],
                                     expect_requests=args.unprofiled)
    run_dir = Path(commands[2]["argv"][commands[2]["argv"].index("--out") + 1])
    prof = work / "bilan-run.prof"
    profiled = dict(commands[2])
    profiled["argv"] = [sys.executable, "-m", "cProfile", "-o", str(prof), "-m", "harness", "run",
                        *commands[2]["argv"][2:]]
    profiled["argv"][profiled["argv"].index("--out") + 1] = str(run_dir) + "-profiled"
    profiled["argv"][profiled["argv"].index("--cache-dir") + 1] = str(run_dir) + "-profiled-cache"
    result = bench_peers.measure(server, [profiled]) if args.cprofile else None
    spy = []
    if args.py_spy:
        raw = work / "bilan-run.pyspy"
        sampled = dict(profiled)
        sampled["argv"] = [args.py_spy, "record", "-f", "raw", "-r", "250", "-o", str(raw), "--", sys.executable, "-m",
                           "harness", "run", *commands[2]["argv"][2:]]
        sampled["argv"][sampled["argv"].index("--out") + 1] = str(run_dir) + "-sampled"
        sampled["argv"][sampled["argv"].index("--cache-dir") + 1] = str(run_dir) + "-sampled-cache"
        spied = bench_peers.measure(server, [sampled])
        if args.raw_out:
            shutil.copy(raw, args.raw_out)
        spy = ["", f"Under py-spy (250 samples/s) the run took {spied['wall']:.2f} s.", ""] + summarize_py_spy(raw)
    lines = []
    if args.unprofiled:
        lines += [f"Unprofiled whole command (import + run): {unprofiled['wall']:.2f} s wall (import "
                  f"{unprofiled['walls'][0]:.2f} s, run {unprofiled['walls'][2]:.2f} s), "
                  f"{unprofiled['server']['requests']} requests.", ""]
    if args.cprofile:
        lines += [f"Under cProfile the run took {result['wall']:.2f} s.", ""] + summarize_profile(prof)
    return lines + spy


def cached(args, server: bench_peers.Server, work: Path, examples: int, n: int) -> list[str]:
    data = work / f"healthbench-{examples}.jsonl"
    count, items = bench_peers.write_examples(data, examples)
    commands = bench_peers.bilan_commands(args, work, data, server.port, n)
    first = bench_peers.measure(server, commands)
    run_cmd = commands[2]
    argv = list(run_cmd["argv"])
    out = Path(argv[argv.index("--out") + 1])
    second_cmd = dict(run_cmd, argv=argv[:argv.index("--out") + 1] + [str(out) + "-again"]
                      + argv[argv.index("--out") + 2:])
    second = bench_peers.measure(server, [second_cmd], expect_requests=False)
    config = argv[argv.index("--config") + 1]
    cache = argv[argv.index("--cache-dir") + 1]           # the runs' cache folder: its parse cache too
    validate = bench_peers.measure(server, [dict(run_cmd, argv=[args.bilan, "validate", "--config", config,
                                                                "--cache-dir", cache])], expect_requests=False)
    report = bench_peers.measure(server, [dict(run_cmd, argv=[args.bilan, "report", str(out) + "-again"])],
                                 expect_requests=False)
    staged = subprocess.run([sys.executable, str(Path(__file__).parent / "stage_times.py"), "run",
                             *argv[argv.index("--config"):argv.index("--out") + 1], str(out) + "-staged",
                             *argv[argv.index("--out") + 2:]], env=run_cmd["env"], cwd=run_cmd["cwd"],
                            capture_output=True, text=True, check=True)
    stages = [line for line in staged.stderr.splitlines() if line.startswith("stages (s):")][-1]
    w = second["wall"]
    return [f"{count} examples, {items} rubric items, {n}-way. First `bilan run`: {first['walls'][2]:.2f} s, "
            f"{first['server']['requests']} requests. Second `bilan run` (new run directory, same cache folder), "
            f"whole command: {w:.2f} s wall, {second['cpu']:.2f} s CPU, {second['server']['requests']} requests, "
            f"peak RSS {second['max_rss_mb']:.0f} MB.",
            f"`bilan validate` alone: {validate['wall']:.2f} s ({100 * validate['wall'] / w:.0f}% of the cached run); "
            f"`bilan report` alone (summary + reports rebuilt from the run directory): {report['wall']:.2f} s "
            f"({100 * report['wall'] / w:.0f}%); both include their own start-up.",
            f"A third cached `bilan run` with its stages timed (benchmarks/stage_times.py): {stages}."]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bilan", default=str(Path(sys.executable).parent / "bilan"))
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--cprofile", action="store_true", help="also profile the run with cProfile (twice as slow)")
    parser.add_argument("--unprofiled", action="store_true", help="also time the run unprofiled")
    parser.add_argument("--py-spy", default="", help="a py-spy command, to sample the run as well (pip install py-spy)")
    parser.add_argument("--skip-profile", action="store_true")
    parser.add_argument("--skip-cached", action="store_true")
    parser.add_argument("--raw-out", default="", help="keep py-spy's raw samples in this file")
    parser.add_argument("--summarize-raw", default="", help="only summarize a raw py-spy file kept before")
    args = parser.parse_args()
    if args.summarize_raw:
        print("\n".join(summarize_py_spy(Path(args.summarize_raw))))
        return 0
    work = Path(tempfile.mkdtemp(prefix="bilan-profile-"))
    server = bench_peers.Server(args.latency)
    try:
        lines = []
        if not args.skip_profile:
            data = work / "healthbench.jsonl"
            bench_peers.write_examples(data, 30 if args.quick else 300)
            lines += ["### Profile", ""] + profile(args, server, work, data, 32)
        if not args.skip_cached:
            lines += ["", "### Cached re-run", ""] + cached(args, server, work, 100 if args.quick else 1000, 32)
        print("\n".join(lines))
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
