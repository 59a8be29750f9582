"""Command line: the only module that reads the environment, prints, or exits."""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sqlite3
import sys
import time
import traceback
from pathlib import Path

from .errors import InputError, Problem
from .load import display, load_project
from .types import Config, EndpointConfig

DEFAULT_KEY_ENV = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}


def resolve_keys(config: Config, environ: dict[str, str]) -> dict[str, str | None]:
    """API keys by endpoint name, from the environment only; a named variable that is unset is an input error."""
    keys: dict[str, str | None] = {}
    problems = []
    endpoints: list[tuple[str, EndpointConfig]] = [(f"targets[{i}]", t) for i, t in enumerate(config.targets)]
    endpoints.append(("grader", config.grader))
    for where, e in endpoints:
        if e.provider not in DEFAULT_KEY_ENV:
            continue
        var = e.api_key_env or (None if e.base_url else DEFAULT_KEY_ENV[e.provider])
        if var and not environ.get(var):
            problems.append(Problem(display(config.path), 0, 0, f"{where} ({e.name}): environment variable {var} is not set; "
                                    f"export it, or set api_key_env to the variable that holds the key"))
        keys[e.name] = environ.get(var) if var else None
    if problems:
        raise InputError(problems)
    return keys


def _print_problems(err: InputError) -> int:
    for problem in err.problems:
        print(problem, file=sys.stderr)
    errors = sum(p.severity == "error" for p in err.problems)
    print(f"{errors} error(s) in {len({p.path for p in err.problems})} file(s)", file=sys.stderr)
    return 2


def cmd_validate(args: argparse.Namespace) -> int:
    """Check every file against its schema and across files."""
    config, suite, answers = load_project(Path(args.config))
    rubric_files = {c.rubric for crits in suite.criteria.values() for c in crits}
    checked = sum(c.check is not None for crits in suite.criteria.values() for c in crits)
    total = sum(len(crits) for crits in suite.criteria.values())
    print(f"ok: {len({c.scenario for c in suite.cases})} scenarios, {len(suite.cases)} cases in "
          f"{len({c.language for c in suite.cases})} languages, {len(rubric_files)} rubrics, "
          f"{total} case criteria ({checked} with a check), {len(config.targets)} targets, "
          f"{sum(len(a) for a in answers.values())} recorded answers")
    return 0


def _run_dir(config: Config, out: str | None) -> Path:
    if out:
        return Path(out)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    path, n = Path(config.output) / stamp, 1
    while path.exists():
        n += 1
        path = Path(config.output) / f"{stamp}-{n}"
    return path


class Progress:
    """A live bar on a terminal; plain periodic lines otherwise (CI logs)."""

    def __init__(self, monitor, stream=None, every_seconds: float = 30.0):
        self.monitor, self.stream = monitor, stream or sys.stderr
        self.start = time.monotonic()
        self.last_line = self.start
        self.every = every_seconds
        self.bar = None
        if self.stream.isatty():
            from tqdm import tqdm
            self.bar = tqdm(total=monitor.total, file=self.stream, unit="answer", dynamic_ncols=True, smoothing=0.1)

    def __call__(self, row: dict) -> None:
        m = self.monitor
        if self.bar is not None:
            self.bar.total = m.total
            self.bar.update(1)
            self.bar.set_postfix_str(f"failed {m.failed}, ${m.cost():.2f}", refresh=False)
            return
        now = time.monotonic()
        if m.done == m.total or now - self.last_line >= self.every or m.done == 1:
            self.last_line = now
            rate = m.done / max(now - self.start, 1e-9)
            eta = (m.total - m.done) / rate if rate else 0
            print(f"  {m.done}/{m.total} answers ({100 * m.done / max(m.total, 1):.0f}%), {rate:.1f}/s, "
                  f"ETA {eta:.0f}s, {m.failed} failed, ${m.cost():.2f} spent", file=self.stream, flush=True)

    def close(self) -> None:
        """Finish the bar."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _shard(text: str) -> tuple[int, int]:
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not i/n, such as 1/4") from None
    if not 1 <= i <= n:
        raise argparse.ArgumentTypeError(f"'{text}': expected 1 <= i <= n")
    return i, n


def _cache(args: argparse.Namespace, environ: dict[str, str]):
    from platformdirs import user_cache_dir

    from .store import ResponseCache
    if args.no_cache:
        return None
    folder = Path(args.cache_dir or environ.get("BILAN_CACHE_DIR") or user_cache_dir("bilan"))
    try:
        return ResponseCache(folder / "responses.sqlite")
    except (OSError, sqlite3.Error) as exc:
        raise InputError([Problem(str(folder), 0, 0, f"cannot open the response cache here: {exc}; expected a writable "
                                  "folder (--cache-dir, BILAN_CACHE_DIR), or --no-cache")]) from None


def _print_estimate(est: dict, total: int) -> float:
    print(f"estimate for {total} answers (an upper bound: cached calls are free):", file=sys.stderr)
    known, unknown = 0.0, []
    for name, e in est.items():
        price = f"${e['cost']:.2f}" if e["cost"] is not None else "no price in the config"
        print(f"  {name} ({e['model']}): {e['calls']} calls, ~{e['input_tokens']:,} input and ~{e['output_tokens']:,} "
              f"output tokens, {price}", file=sys.stderr)
        if e["cost"] is None:
            unknown.append(name)
        else:
            known += e["cost"]
    if not est:
        print("  no model calls (replayed answers and deterministic checks only)", file=sys.stderr)
    print(f"  total: ${known:.2f}" + (f" plus unpriced calls to {', '.join(unknown)}" if unknown else ""), file=sys.stderr)
    return known


def cmd_run(args: argparse.Namespace) -> int:
    """Validate, generate, grade, write the run directory and its reports."""
    from .run import Monitor, RunOptions, RunStopped, count_jobs, estimate, prepare_resume, rebuild, run
    config, suite, answers = load_project(Path(args.config))
    if args.resume and not args.out:
        raise InputError([Problem("bilan run", 0, 0, "--resume needs --out DIR: the run directory to finish")])
    run_dir = _run_dir(config, args.out)
    done = prepare_resume(run_dir) if args.resume and (run_dir / "results.jsonl").exists() else set()
    total = count_jobs(config, suite, args.shard, done)
    if args.dry_run or args.max_cost is not None:
        cost = _print_estimate(estimate(config, suite, args.shard, done), total)
        if args.dry_run:
            return 0
        if cost > args.max_cost:
            print(f"bilan: the estimate (${cost:.2f}) is above --max-cost ${args.max_cost:g}; not starting", file=sys.stderr)
            return 1
    keys = resolve_keys(config, dict(os.environ))
    print(f"bilan: {total} answers to get and grade -> {run_dir}" + (f" ({len(done)} already done)" if done else ""),
          file=sys.stderr)
    monitor = Monitor(total=total)
    progress = Progress(monitor)
    options = RunOptions(resume=args.resume, shard=args.shard, cache=_cache(args, dict(os.environ)),
                         max_error_rate=args.max_error_rate, max_cost=args.max_cost, on_result=progress)
    try:
        run(config, suite, answers, run_dir, keys, options, monitor, argv=sys.argv)
    except RunStopped as stop:
        progress.close()
        print(f"bilan: stopped: {stop}\nbilan: the {monitor.done} results written are kept in {run_dir}; finish with: "
              f"bilan run --config {args.config} --out {run_dir} --resume", file=sys.stderr)
        return 1
    finally:
        progress.close()
        if options.cache is not None:
            options.cache.close()
    models = [e for e in monitor.endpoints.values() if e.scope is not None]     # replayed answers are not calls
    calls = sum(e.meter.calls for e in models)
    hits = sum(e.meter.cache_hits for e in models)
    print(f"bilan: {calls} model calls made, {hits} answered from the cache, ${monitor.cost():.4f} spent", file=sys.stderr)
    _print_summary(rebuild(run_dir), run_dir)
    return 0


def cmd_attack(args: argparse.Namespace) -> int:
    """Grade the adversarial answers with the configured grader and report how often it is fooled."""
    from .attack import attack_setup, fooled, load_attacks
    from .run import RunOptions, run
    from .store import read_results, write_json
    config, suite, _ = load_project(Path(args.config))
    attacks = load_attacks(Path(args.answers), suite)
    config, suite, answers = attack_setup(config, suite, attacks)
    keys = resolve_keys(config, dict(os.environ))
    out = Path(args.out) if args.out else _run_dir(config, None).with_name("attack-" + _run_dir(config, None).name)
    options = RunOptions(cache=_cache(args, dict(os.environ)), max_error_rate=1.0)
    try:
        run(config, suite, answers, out, keys, options, argv=sys.argv)
    finally:
        if options.cache is not None:
            options.cache.close()
    result = fooled(read_results(out), attacks) | {"grader": config.grader.provider + (f" {config.grader.model}" if config.grader.model else "")}
    write_json(out / "attack.json", result)
    if args.json:
        print(json.dumps(result, ensure_ascii=False, indent=2))
        return 0
    print(f"grader {result['grader']}: {result['attacks']} adversarial answers (results in {out})")
    for key, cell in sorted(result["by"].items()):
        rate = f"{100 * cell['rate']:.0f}%" if cell["rate"] is not None else "n/a"
        print(f"  {key.replace('|', ' / '):32} fooled {cell['fooled']:3} of {cell['judged']:3} judged ({rate}), {cell['ungraded']} not graded")
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    """Combine shard run directories into one, then rebuild its reports."""
    from .run import merge, rebuild
    merge([Path(d) for d in args.run_dirs], Path(args.out))
    _print_summary(rebuild(Path(args.out)), Path(args.out))
    return 0


def _print_summary(summary: dict, run_dir: Path) -> None:
    for name, t in summary["targets"].items():
        o = t["overall"]
        score = f"{o['score']:.3f} [{o['ci_low']:.3f}, {o['ci_high']:.3f}]" if o["score"] is not None else "n/a"
        langs = ", ".join(f"{l} {c['score']:.2f}" for l, c in t["by_language"].items() if c["score"] is not None)
        print(f"{name}: {score} over {o['n']} cases; {t['missing']} missing, {t['errors']} errors, "
              f"{t['ungraded_criteria']} criteria not graded. By language: {langs}")
    print(f"reports: {run_dir / 'index.html'} (and one page per language)")


def cmd_report(args: argparse.Namespace) -> int:
    """Rebuild a run directory's reports from its results, with no model call."""
    from .run import rebuild
    run_dir = Path(args.run_dir)
    if not (run_dir / "results.jsonl").exists():
        raise InputError([Problem(display(run_dir), 0, 0, "no results.jsonl here; expected a run directory written by `bilan run`")])
    _print_summary(rebuild(run_dir), run_dir)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    parser = argparse.ArgumentParser(prog="bilan", description="Evaluate health chatbots for Morocco, HealthBench style.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("validate", help="check the suite, rubrics, locale, config and answer files")
    p.add_argument("--config", default="bilan.yaml", help="run configuration (default: bilan.yaml)")
    p.set_defaults(func=cmd_validate)
    p = sub.add_parser("run", help="generate answers, grade them, write the run directory and reports")
    p.add_argument("--config", default="bilan.yaml", help="run configuration (default: bilan.yaml)")
    p.add_argument("--out", help="run directory (default: <output>/<timestamp>)")
    p.add_argument("--resume", action="store_true", help="finish the run in --out: keep its results, do the rest")
    p.add_argument("--shard", type=_shard, help="run only slice i of n (e.g. 2/4); combine with `bilan merge`")
    p.add_argument("--cache-dir", help="response cache folder (default: $BILAN_CACHE_DIR or the user cache folder)")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the response cache")
    p.add_argument("--max-error-rate", type=float, default=0.5, help="stop when more than this share of answers fail (default 0.5)")
    p.add_argument("--max-cost", type=float, help="refuse to start, or stop cleanly, before spending more than this many US dollars")
    p.add_argument("--dry-run", action="store_true", help="print the calls, tokens and cost a run would need; call nothing")
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("attack-grader", help="measure how often the configured grader is fooled by adversarial answers")
    p.add_argument("--config", default="bilan.yaml", help="run configuration whose grader is tested (default: bilan.yaml)")
    p.add_argument("--answers", default="cases/adversarial", help="adversarial answers: a .jsonl file or a folder of them")
    p.add_argument("--out", help="run directory for the graded attacks")
    p.add_argument("--cache-dir", help="response cache folder")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the response cache")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.set_defaults(func=cmd_attack)
    p = sub.add_parser("merge", help="combine shard run directories into one run directory")
    p.add_argument("out", help="the merged run directory to write")
    p.add_argument("run_dirs", nargs="+", help="shard run directories")
    p.set_defaults(func=cmd_merge)
    p = sub.add_parser("report", help="rebuild reports from a run directory (no model calls)")
    p.add_argument("run_dir")
    p.set_defaults(func=cmd_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `bilan` command."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except InputError as err:
        return _print_problems(err)
    except KeyboardInterrupt:
        print("interrupted; results written so far are kept", file=sys.stderr)
        return 130
    except Exception as exc:  # the last line of defence: a clear message, a traceback only with --debug
        if args.debug:
            traceback.print_exc()
        else:
            print(f"bilan: internal error: {type(exc).__name__}: {exc} (run with --debug for a traceback)", file=sys.stderr)
        return 1
