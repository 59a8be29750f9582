"""Command line: the only module that reads the environment, prints, or exits."""
from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import signal
import sqlite3
import sys
import threading
import time
import traceback
from pathlib import Path

from .errors import InputError, Problem
from .load import phrase_gaps, display, load_project
from .model_apis import MODEL_APIS
from .types import Config, EndpointConfig



def resolve_keys(config: Config, environ: dict[str, str]) -> dict[str, str | None]:
    """API keys by endpoint name, from the environment only; a named variable that is unset is an input error."""
    keys: dict[str, str | None] = {}
    problems = []
    endpoints: list[tuple[str, EndpointConfig]] = [(f"targets[{i}]", t) for i, t in enumerate(config.targets)]
    endpoints.append(("grader", config.grader))
    for where, e in endpoints:
        if e.provider not in MODEL_APIS:
            continue
        var = e.api_key_env or (None if e.base_url else MODEL_APIS[e.provider].key_env)
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
    errors = [p for p in err.problems if p.severity == "error"]
    warnings = len(err.problems) - len(errors)
    print(f"{len(errors)} error(s) in {len({p.path for p in errors})} file(s)" + (f", {warnings} warning(s)" if warnings else ""), file=sys.stderr)
    return 2


def _print_warnings(suite) -> None:
    for problem in suite.warnings:
        print(problem, file=sys.stderr)


def cmd_validate(args: argparse.Namespace) -> int:
    """Check every file against its schema and across files."""
    config, suite, answers = load_project(Path(args.config))
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


def _number(convert: type, accept, expected: str):
    """An argparse type: `convert`ed text that `accept` takes, else a usage error saying what was expected."""
    what = "a whole number" if convert is int else "a number"

    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not {what}") from None
        if not accept(value):
            raise argparse.ArgumentTypeError(f"'{text}': expected {expected}")
        return value
    return parse


_positive = _number(int, lambda v: v >= 1, "a whole number of at least 1")
_dollars = _number(float, lambda v: math.isfinite(v) and v >= 0, "an amount in US dollars, 0 or more, such as 5")
_share = _number(float, lambda v: 0 <= v <= 1, "a share from 0 to 1, such as 0.8")
_fraction = _number(float, lambda v: 0 <= v < 1, "a number from 0 to 1, such as 0.05")
_alpha = _number(float, lambda v: 0 < v < 0.5, "a significance level above 0 and below 0.5, such as 0.05")
_seconds = _number(float, lambda v: math.isfinite(v) and 0 < v <= 3600, "seconds above 0, at most 3600, such as 5")


def _shard(text: str) -> tuple[int, int]:
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not i/n, such as 1/4") from None
    if not 1 <= i <= n:
        raise argparse.ArgumentTypeError(f"'{text}': expected 1 <= i <= n")
    return i, n


def _workers(text: str) -> int:
    from .processes import MAX_WORKERS, available_cpus
    return min(available_cpus(), MAX_WORKERS) if text == "auto" else _positive(text)


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
              f"output tokens, {price}" + (" (batch: half price)" if e.get("batch") else ""), file=sys.stderr)
        if e["cost"] is None:
            unknown.append(name)
        else:
            known += e["cost"]
    if not est:
        print("  no model calls (replayed answers and deterministic checks only)", file=sys.stderr)
    print(f"  total: ${known:.2f}" + (f" plus unpriced calls to {', '.join(unknown)}" if unknown else ""), file=sys.stderr)
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
    from .run import Monitor, RunOptions, RunStopped, check_resume, count_jobs, estimate, rebuild, run, unpriced
    config, suite, answers = load_project(Path(args.config))
    _print_warnings(suite)
    if args.batch:
        from .batches import with_batch
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
            print(f"bilan: the estimate (${cost:.2f}) is above --max-cost ${args.max_cost:g}; not starting", file=sys.stderr)
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
    previous = signal.signal(signal.SIGTERM, _sigterm_as_interrupt(terminated)) if threading.current_thread() is threading.main_thread() else None
    try:
        from .batches import BatchOptions, run_batched, uses_batches
        if uses_batches(config):
            say = lambda line: print(f"bilan: {line}", file=sys.stderr, flush=True)
            run_batched(config, suite, answers, run_dir, keys, options, monitor,
                        BatchOptions(wait=not args.no_wait, poll=args.poll, progress=say), argv=sys.argv)
        else:
            run(config, suite, answers, run_dir, keys, options, monitor, argv=sys.argv)
    except RunStopped as stop:
        progress.close()
        print(f"bilan: stopped: {stop}\nbilan: the {monitor.done} results written are kept in {run_dir}; {resume}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        progress.close()
        print(f"bilan: {'terminated (SIGTERM)' if terminated else 'interrupted'}; the {monitor.done} results written in this "
              f"session are kept in {run_dir}; {resume}", file=sys.stderr)
        return 143 if terminated else 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        progress.close()
        if options.cache is not None:
            options.cache.close()
    calls, hits = monitor.calls()
    print(f"bilan: {calls} model calls made, {hits} answered from the cache, ${monitor.cost():.4f} spent", file=sys.stderr)
    _print_summary(rebuild(run_dir, workers=args.workers), run_dir)
    return 0


# --- batch runs (issue 16) ---
def cmd_status(args: argparse.Namespace) -> int:
    """Print where a (batch) run stands, reading only its run directory."""
    from .batches import BATCHES, status
    run_dir = Path(args.run_dir)
    if not (run_dir / BATCHES).exists() and not (run_dir / "results.jsonl").exists():
        raise InputError([Problem(display(run_dir), 0, 0, "neither batches.jsonl nor results.jsonl here; expected a "
                                  "run directory written by `bilan run`")])
    print(*status(run_dir), sep="\n")
    return 0


def cmd_batch(args: argparse.Namespace) -> int:
    """`bilan batch export RUN` / `bilan batch import RUN FILE`: request files for vLLM's offline runner, and back."""
    from .batches import export_requests, import_results
    from .run import RunOptions
    options = RunOptions(cache=_cache(args, dict(os.environ)))
    try:
        if args.batch_command == "export":
            config, suite, answers = load_project(Path(args.config))
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


def cmd_agreement(args: argparse.Namespace) -> int:
    """Report how far the run's grader agrees with the clinicians' labels stored beside it."""
    from .agreement_report import agreement_summary, label_folders, write_agreement
    run_dir = _existing_run(args.run_dir)
    folders = label_folders(run_dir, args.labels or ())
    summary = agreement_summary(run_dir, folders)
    if not summary["labelled_items"] and not summary["model_vs_checks"]:
        where = ", ".join(map(str, folders)) if folders else "labels/ in the run or beside its bilan.yaml"
        raise InputError([Problem(display(run_dir / "labels"), 0, 0, f"no clinician labels for this run's answers and no "
                                  f"compare_checks verdicts (looked in {where}); expected labels from `bilan review import` or "
                                  "`bilan import healthbench-meta` (or --labels DIR), or a run graded with compare_checks: true")])
    page = write_agreement(run_dir, summary)
    if args.json:
        print(json.dumps(summary, ensure_ascii=False, indent=2))
        return 0
    g = summary["grader"]
    show = lambda c: f"{c['value']:.3f} [{c['ci_low']:.2f}, {c['ci_high']:.2f}]" if c["value"] is not None and c["ci_low"] is not None else "n/a"
    print(f"{summary['labelled_items']} labelled answer-criterion pairs, {len(summary['reviewers'])} reviewer(s); "
          f"grader: macro F1 {show(g['overall']['macro_f1'])}, kappa {show(g['overall']['kappa'])}, "
          f"balanced accuracy {show(g['overall']['balanced_accuracy'])}")
    for name, c in [*g["by_language"].items(), *g["by_category"].items()]:
        print(f"  {name}: macro F1 {show(c['macro_f1'])} over {c['pairs']} pairs")
    for lang, c in summary["model_vs_checks"].items():
        print(f"  model grader and checks agree on {100 * c['rate']:.1f}% of {c['n']} checked criteria ({lang})")
    print(f"{len(summary['disagreements'])} to adjudicate; report: {page}")
    return 0


def cmd_review_export(args: argparse.Namespace) -> int:
    """Write a blinded review sheet for clinicians."""
    from .review import export_review
    run_dir = _existing_run(args.run_dir)
    shown = lambda done, total: print(f"  {done:,}/{total:,} rows written to {args.out}", file=sys.stderr, flush=True)
    key = export_review(run_dir, Path(args.out), args.seed, args.sample, args.show_grader, progress=shown)
    print(f"wrote {args.out}: {len(key['rows'])} rows for review (sheet {key['sheet']}; systems blinded as "
          f"{', '.join(sorted(key['systems'].values()))}; key kept in {run_dir / 'review'})")
    return 0


def cmd_review_import(args: argparse.Namespace) -> int:
    """Store a filled review sheet's labels beside the run."""
    from .review import import_review
    out, count = import_review(Path(args.file), _existing_run(args.run), args.reviewer)
    print(f"stored {count} labels from {args.reviewer} in {out}")
    return 0


def cmd_view(args: argparse.Namespace) -> int:
    """Serve run directories in the browser (grid, case pages, labelling) until interrupted."""
    from .view.app import prepare
    passphrase = os.environ.get(args.passphrase_env) if args.passphrase_env else None     # read here only, kept nowhere
    served = prepare([Path(p) for p in args.runs], args.host, args.port, passphrase, args.passphrase_env)
    if served.warning:
        print(served.warning, file=sys.stderr)
    print(f"bilan view: open {served.link} (Ctrl-C to stop)", flush=True)
    return served.serve()


def _existing_run(path: str) -> Path:
    run_dir = Path(path)
    if not (run_dir / "results.jsonl").exists():
        raise InputError([Problem(display(run_dir), 0, 0, "no results.jsonl here; expected a run directory written by `bilan run`")])
    return run_dir


def cmd_merge(args: argparse.Namespace) -> int:
    """Combine shard run directories into one, then rebuild its reports."""
    from .run import merge, rebuild
    merge([Path(d) for d in args.run_dirs], Path(args.out))
    _print_summary(rebuild(Path(args.out), workers=_workers("auto")), Path(args.out))
    return 0


def _print_summary(summary: dict, run_dir: Path) -> None:
    for name, t in summary["targets"].items():
        o = t["overall"]
        score = f"{o['score']:.3f} [{o['ci_low']:.3f}, {o['ci_high']:.3f}]" if o["score"] is not None else "n/a"
        langs = ", ".join(f"{l} {c['score']:.2f}" for l, c in t["by_language"].items() if c["score"] is not None)
        print(f"{name}: {score} over {o['n']} cases; {t['missing']} missing, {t['errors']} errors, "
              f"{t['ungraded_criteria']} criteria not graded. By language: {langs}")
        where = ", ".join(f"{lang} {c['count']}" for lang, c in summary.get("never_events", {}).get(name, {}).items() if c["count"])
        print(f"  never-events: {t['never_events']['count']} of {t['never_events']['n']} answers" + (f" ({where})" * bool(where)))
    for warning in summary.get("coverage_warnings", []):
        print(f"warning: {warning['message']}")
    print(f"reports: {run_dir / 'index.html'} (and one page per language)")


def cmd_report(args: argparse.Namespace) -> int:
    """Rebuild a run directory's reports from its results, with no model call."""
    from .run import rebuild
    run_dir = _existing_run(args.run_dir)
    if args.redact_answers:
        if not args.out or Path(args.out).resolve() == run_dir.resolve():
            raise InputError([Problem("bilan report", 0, 0, "--redact-answers needs --out DIR, a folder other than the run's")])
        _print_summary(rebuild(run_dir, redacted_to=Path(args.out)), Path(args.out))
        return 0
    _print_summary(rebuild(run_dir, workers=_workers("auto")), run_dir)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """Compare targets across runs (or within one run) and write the comparison report."""
    from .analyze import AnalysisOptions
    from .decide import CompareOptions, compare, compare_inputs
    from .report import never_event_answers
    from .report_compare import headline, write_comparison
    contenders, reasons = compare_inputs([Path(d) for d in args.run_dirs], args.target or ())
    if reasons:
        raise InputError([Problem(display(Path(args.run_dirs[0])), 0, 0, f"cannot compare: {r}") for r in reasons])
    analysis = AnalysisOptions(reference=args.reference, never_threshold=args.never_threshold)
    data = compare(contenders, CompareOptions(seed=contenders[0].manifest.get("seed", 0), resamples=args.resamples, analysis=analysis))
    listed = [dict(a, target=c.label) for c in contenders for a in never_event_answers(c.rows, args.never_threshold)]
    out = Path(args.out) if args.out else Path(args.run_dirs[0]).resolve().parent / f"compare-{dt.datetime.now():%Y%m%d-%H%M%S}"
    write_comparison(out, data, listed)
    print(" ".join(headline(data)))
    for warning in data["coverage_warnings"]:
        print(f"warning: {warning['message']}")
    print(f"comparison: {out / 'compare.html'} (and compare.md, compare.json)")
    return 0


def cmd_gate(args: argparse.Namespace) -> int:
    """Gate a candidate run against a baseline: exit 1 on a significant regression, 2 when they cannot be compared."""
    from .decide import GateOptions, gate, gate_inputs, incomparable
    from .report_compare import gate_markdown, write_gate
    base, cand, reasons = gate_inputs(Path(args.baseline), Path(args.candidate), args.target)
    if reasons or base is None or cand is None:
        write_gate(incomparable(reasons), args.markdown, args.junit, args.json)
        for reason in reasons:
            print(f"bilan gate: cannot compare: {reason}", file=sys.stderr)
        return 2
    options = GateOptions(max_drop=args.max_drop, alpha=args.alpha, seed=base.manifest.get("seed", 0),
                          never_threshold=args.never_threshold, reference=args.reference, min_coverage=args.min_coverage)
    result = gate(base, cand, options)
    write_gate(result, args.markdown, args.junit, args.json)
    print(gate_markdown(result), end="")
    return result["exit_code"]


def _decision_parsers(sub) -> None:
    """The `compare` and `gate` subcommands."""
    p = sub.add_parser("compare", help="compare targets across runs, or within one run: an HTML and Markdown report")
    p.add_argument("run_dirs", nargs="+", help="run directories (one run with several targets is enough)")
    p.add_argument("--out", help="folder to write (default: compare-<timestamp> beside the first run)")
    p.add_argument("--target", action="append", help="compare only this target (repeatable)")
    p.add_argument("--reference", default="fr", help="language that parity gaps are measured against (default fr)")
    p.add_argument("--never-threshold", type=int, default=-8, help="criteria worth this many points or fewer are never-events (default -8)")
    p.add_argument("--resamples", type=_positive, default=2000, help="bootstrap resamples (default 2000)")
    p.set_defaults(func=cmd_compare)
    p = sub.add_parser("gate", help="CI gate: exit 1 when the candidate run regresses against the baseline run")
    p.add_argument("--baseline", required=True, help="the baseline run directory (e.g. the main branch's)")
    p.add_argument("--candidate", required=True, help="the candidate run directory (e.g. the pull request's)")
    p.add_argument("--max-drop", type=_fraction, default=0.02, help="largest tolerated drop in a score (default 0.02)")
    p.add_argument("--alpha", type=_alpha, default=0.05, help="significance level, one-sided, Holm-adjusted (default 0.05)")
    p.add_argument("--target", help="the target to gate when the runs have several")
    p.add_argument("--reference", default="fr", help="language whose grading coverage the others are held against (default fr)")
    p.add_argument("--never-threshold", type=int, default=-8, help="criteria worth this many points or fewer are never-events (default -8)")
    p.add_argument("--min-coverage", type=_share, default=0.95,
                   help="fail when fewer than this share of the paired answers are scored in both runs (default 0.95)")
    p.add_argument("--markdown", help="write a Markdown summary (for a pull-request comment) here")
    p.add_argument("--junit", help="write JUnit XML here")
    p.add_argument("--json", help="write the full result as JSON here")
    p.set_defaults(func=cmd_gate)


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
    p.add_argument("--workers", type=_workers, default="auto", help="processes sharing the work and each endpoint's "
                   "limits (default auto: one per core, at most 8; one without fork, i.e. off Linux)")
    p.add_argument("--cache-dir", help="response cache folder (default: $BILAN_CACHE_DIR or the user cache folder)")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the response cache")
    p.add_argument("--max-error-rate", type=_share, default=0.5, help="stop when more than this share of answers fail (default 0.5)")
    p.add_argument("--max-cost", type=_dollars, help="refuse to start, or stop cleanly, before spending more than this many US dollars")
    p.add_argument("--allow-unpriced", action="store_true",
                   help="with --max-cost: let models that have no price in the config spend without being counted")
    p.add_argument("--dry-run", action="store_true", help="print the calls, tokens and cost a run would need; call nothing")
    p.add_argument("--batch", action="store_true", help="send every openai and anthropic endpoint's calls through its "
                   "batch API (half price, up to 24 h; see README: Batch runs)")
    p.add_argument("--no-wait", action="store_true", help="batch runs: submit, then stop; finish later with --resume")
    p.add_argument("--poll", type=_seconds, default=5.0, help="batch runs: seconds between status reads at first "
                   "(default 5; each wait grows by half, up to 300)")
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("status", help="where a batch run stands, from its run directory (calls nothing)")
    p.add_argument("run_dir")
    p.set_defaults(func=cmd_status)
    batch = sub.add_parser("batch", help="request files for an offline batch runner (vllm run-batch), and back")
    bsub = batch.add_subparsers(dest="batch_command", required=True)
    for name, text in (("export", "write RUN/requests/<endpoint>.jsonl in the OpenAI batch format"),
                       ("import", "take an OpenAI batch output file into the response cache")):
        p = bsub.add_parser(name, help=text)
        p.add_argument("run_dir")
        if name == "import":
            p.add_argument("file")
        p.add_argument("--config", default="bilan.yaml", help="run configuration (default: bilan.yaml)")
        p.add_argument("--cache-dir", help="response cache folder")
        p.add_argument("--no-cache", action="store_true", help=argparse.SUPPRESS)
        p.set_defaults(func=cmd_batch)
    p = sub.add_parser("attack-grader", help="measure how often the configured grader is fooled by adversarial answers")
    p.add_argument("--config", default="bilan.yaml", help="run configuration whose grader is tested (default: bilan.yaml)")
    p.add_argument("--answers", default="cases/adversarial", help="adversarial answers: a .jsonl file or a folder of them")
    p.add_argument("--out", help="run directory for the graded attacks")
    p.add_argument("--cache-dir", help="response cache folder")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the response cache")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.set_defaults(func=cmd_attack)
    review = sub.add_parser("review", help="clinician review: export a blinded sheet, import the filled one")
    rsub = review.add_subparsers(dest="review_command", required=True)
    p = rsub.add_parser("export", help="write a blinded review sheet (.xlsx or .csv) of a run's answers and criteria")
    p.add_argument("run_dir")
    p.add_argument("--out", required=True, help="the sheet to write: .xlsx or .csv")
    p.add_argument("--sample", type=_positive, help="only this many rows, spread evenly over languages")
    p.add_argument("--seed", type=int, default=0, help="seed for blinding, shuffling and sampling (default 0)")
    p.add_argument("--show-grader", action="store_true", help="show the grader's verdict (hidden by default)")
    p.set_defaults(func=cmd_review_export)
    p = rsub.add_parser("import", help="store a filled review sheet's labels beside the run")
    p.add_argument("file")
    p.add_argument("--run", required=True, help="the run directory the sheet was exported from")
    p.add_argument("--reviewer", required=True, help="the reviewer's name, as it should appear in reports")
    p.set_defaults(func=cmd_review_import)
    p = sub.add_parser("agreement", help="grader against clinicians' labels: macro F1, kappa, balanced accuracy by language")
    p.add_argument("run_dir")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.add_argument("--labels", action="append", metavar="DIR",
                   help="a folder of <reviewer>.jsonl labels (repeatable); default: RUN/labels, else labels/ beside the run's bilan.yaml")
    p.set_defaults(func=cmd_agreement)
    p = sub.add_parser("merge", help="combine shard run directories into one run directory")
    p.add_argument("out", help="the merged run directory to write")
    p.add_argument("run_dirs", nargs="+", help="shard run directories")
    p.set_defaults(func=cmd_merge)
    p = sub.add_parser("report", help="rebuild reports from a run directory (no model calls)")
    p.add_argument("run_dir")
    p.add_argument("--redact-answers", action="store_true",
                   help="write aggregates only (no answer, verdict reason or conversation) to --out, for sharing")
    p.add_argument("--out", help="with --redact-answers: the folder to write the shareable reports to")
    p.set_defaults(func=cmd_report)
    from .view import add_arguments; add_arguments(sub, cmd_view)  # noqa: E702  (bilan view)
    from .healthbench import register; register(sub)  # noqa: E702  (bilan import / export healthbench)
    _decision_parsers(sub)
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
    except (OSError, sqlite3.Error) as exc:     # disk full, read-only folder, permissions: the environment, not a bug
        where = f" ({getattr(exc, 'filename')})" if getattr(exc, "filename", None) else ""
        reason = getattr(exc, "strerror", None) or str(exc)
        print(f"bilan: cannot read or write a file{where}: {reason}. Results already written are kept; free space or "
              f"fix the folder, then finish with --resume.", file=sys.stderr)
        return 1
    except Exception as exc:  # the last line of defence: a clear message, a traceback only with --debug
        if args.debug:
            traceback.print_exc()
        else:
            print(f"bilan: internal error: {type(exc).__name__}: {exc} (run with --debug for a traceback)", file=sys.stderr)
        return 1
