"""The commands that run an evaluation or rebuild one: validate, run, status, batch, merge, report."""
from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path

from ..errors import InputError, Problem
from ..load import display, phrase_gaps
from .common import (Progress, _cache, _existing_run, _print_summary, _print_warnings, _run_dir, _workers, load,
                     resolve_keys)


def cmd_validate(args: argparse.Namespace) -> int:
    """Check every file against its schema and across files."""
    config, suite, answers = load(args)
    _print_warnings(suite)
    rubric_files = {c.rubric for crits in suite.criteria.values() for c in crits}
    checked = sum(c.check is not None for crits in suite.criteria.values() for c in crits)
    total = sum(len(crits) for crits in suite.criteria.values())
    print(f"ok: {len({c.scenario for c in suite.cases})} scenarios, {len(suite.cases)} cases in "
          f"{len({c.language for c in suite.cases})} languages, {len(rubric_files)} rubrics, "
          f"{total} case criteria ({checked} with a check), {len(config.targets)} targets, "
          f"{sum(len(a) for a in answers.values())} recorded answers")
    gaps = phrase_gaps(suite)
    print("phrase checks without phrases for the language (the rules grader abstains on them): " +
          ", ".join(f"{language} {missing} of {total}" for language, (missing, total) in gaps.items()))
    return 0


def _print_estimate(est: dict, total: int) -> float:
    print(f"estimate for {total} answers (an upper bound: cached calls are free):", file=sys.stderr)
    known, unknown = 0.0, []
    for name, e in est.items():
        price = f"${e['cost']:.2f}" if e["cost"] is not None else "no price in the config"
        print(f"  {name} ({e['model']}): {e['calls']} calls, ~{e['input_tokens']:,} input and ~{e['output_tokens']:,} "
              f"output tokens, {price}" + (" (batch: half price)" if e.get("batch") else ""), file=sys.stderr)
        if e["cost"] is None:
            unknown.append(name)
        else:
            known += e["cost"]
    if not est:
        print("  no model calls (replayed answers and deterministic checks only)", file=sys.stderr)
    print(f"  total: ${known:.2f}" + (f" plus unpriced calls to {', '.join(unknown)}" if unknown else ""),
          file=sys.stderr)
    return known


def _sigterm_as_interrupt(received: list[int]):
    """A SIGTERM handler that stops the run exactly as Ctrl-C does (asyncio's own SIGINT handler while a run is
    under way: the tasks are cancelled, what is written stays), noting that it came."""
    def handler(signum, frame) -> None:
        received.append(signum)
        current = signal.getsignal(signal.SIGINT)
        if not callable(current):           # SIGINT ignored (a background job): stop all the same
            raise KeyboardInterrupt
        current(signal.SIGINT, frame)
    return handler


def cmd_run(args: argparse.Namespace) -> int:
    """Validate, generate, grade, write the run directory and its reports."""
    from ..report import rebuild
    from ..run import Monitor, RunOptions, RunStopped, check_resume, count_jobs, estimate, run, unpriced
    config, suite, answers = load(args)
    _print_warnings(suite)
    if args.batch:
        from ..batches import with_batch
        config = with_batch(config)
    if args.resume and not args.out:
        raise InputError([Problem("bilan run", 0, 0, "--resume needs --out DIR: the run directory to finish")])
    run_dir = _run_dir(config, args.out)
    done = check_resume(config, suite, run_dir) if args.resume else set()
    total = count_jobs(config, suite, args.shard, done)
    if args.max_cost is not None and not args.allow_unpriced and (problems := unpriced(config)):
        raise InputError(problems)
    if args.dry_run or args.max_cost is not None:
        cost = _print_estimate(estimate(config, suite, args.shard, done), total)
        if args.dry_run:
            return 0
        if cost > args.max_cost:
            print(f"bilan: the estimate (${cost:.2f}) is above --max-cost ${args.max_cost:g}; not starting",
                  file=sys.stderr)
            return 1
    keys = resolve_keys(config, dict(os.environ))
    print(f"bilan: {total} answers to get and grade -> {run_dir}" + (f" ({len(done)} already done)" if done else ""),
          file=sys.stderr)
    monitor = Monitor(total=total)
    progress = Progress(monitor)
    options = RunOptions(resume=args.resume, shard=args.shard, cache=_cache(args, dict(os.environ)),
                         max_error_rate=args.max_error_rate, max_cost=args.max_cost,
                         allow_unpriced=args.allow_unpriced, on_result=progress, workers=args.workers)
    resume = f"finish with: bilan run --config {args.config} --out {run_dir} --resume"
    terminated: list[int] = []
    # Signal handlers can only be set from the main thread (a host program may run bilan in another one).
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _sigterm_as_interrupt(terminated)) if main_thread else None
    try:
        from ..batches import BatchOptions, run_batched, uses_batches
        if uses_batches(config):
            say = lambda line: print(f"bilan: {line}", file=sys.stderr, flush=True)
            run_batched(config, suite, answers, run_dir, keys, options, monitor,
                        BatchOptions(wait=not args.no_wait, poll=args.poll, progress=say), argv=sys.argv)
        else:
            run(config, suite, answers, run_dir, keys, options, monitor, argv=sys.argv)
    except RunStopped as stop:
        progress.close()
        print(f"bilan: stopped: {stop}\nbilan: the {monitor.done} results written are kept in {run_dir}; {resume}",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        progress.close()
        print(f"bilan: {'terminated (SIGTERM)' if terminated else 'interrupted'}; the {monitor.done} results written "
              f"in this session are kept in {run_dir}; {resume}", file=sys.stderr)
        return 143 if terminated else 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        progress.close()
        if options.cache is not None:
            options.cache.close()
    calls, hits = monitor.calls()
    print(f"bilan: {calls} model calls made, {hits} answered from the cache, ${monitor.cost():.4f} spent",
          file=sys.stderr)
    del suite, answers, config          # the reports read the run directory: the suite's memory is theirs now
    _print_summary(rebuild(run_dir, workers=args.workers), run_dir)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    """Print where a (batch) run stands, reading only its run directory."""
    from ..batches import BATCHES, status
    from ..store import RESULTS
    run_dir = Path(args.run_dir)
    if not (run_dir / BATCHES).exists() and not (run_dir / RESULTS).exists():
        raise InputError([Problem(display(run_dir), 0, 0, "neither batches.jsonl nor results.jsonl here; expected a "
                                  "run directory written by `bilan run`")])
    print(*status(run_dir), sep="\n")
    return 0


def cmd_batch(args: argparse.Namespace) -> int:
    """`bilan batch export RUN` / `bilan batch import RUN FILE`: request files for vLLM's offline runner, and back."""
    from ..batches import export_requests, import_results
    from ..run import RunOptions
    options = RunOptions(cache=_cache(args, dict(os.environ)))
    try:
        if args.batch_command == "export":
            config, suite, answers = load(args)
            keys = resolve_keys(config, dict(os.environ))
            files = export_requests(config, suite, answers, Path(args.run_dir), keys, options)
            for name, path in files.items():
                print(f"{name}: {sum(1 for _ in path.open(encoding='utf-8'))} requests -> {path}")
            if not files:
                print("nothing to export: the cache answers every request; `bilan run` can write the results")
        else:
            stored, errors = import_results(Path(args.file), options)
            print(f"{stored} replies into the response cache, {errors} items with an error left out")
    finally:
        if options.cache is not None:
            options.cache.close()
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    """Combine shard run directories into one, then rebuild its reports."""
    from ..report import rebuild
    from ..store import merge
    merge([Path(d) for d in args.run_dirs], Path(args.out))
    _print_summary(rebuild(Path(args.out), workers=_workers("auto")), Path(args.out))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """Rebuild a run directory's reports from its results, with no model call."""
    from ..report import rebuild
    run_dir = _existing_run(args.run_dir)
    if args.redact_answers:
        if not args.out or Path(args.out).resolve() == run_dir.resolve():
            raise InputError([Problem("bilan report", 0, 0,
                                      "--redact-answers needs --out DIR, a folder other than the run's")])
        _print_summary(rebuild(run_dir, redacted_to=Path(args.out)), Path(args.out))
        return 0
    _print_summary(rebuild(run_dir, workers=_workers("auto")), run_dir)
    return 0
