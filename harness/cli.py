"""Command line: the only module that reads the environment, prints, or exits."""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
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


def _progress(total: int):
    state = {"done": 0, "errors": 0}
    every = max(1, total // 10)

    def on_result(row: dict) -> None:
        state["done"] += 1
        state["errors"] += row["status"] == "error"
        if state["done"] % every == 0 or state["done"] == total:
            print(f"  {state['done']}/{total} answers graded, {state['errors']} errors", file=sys.stderr)
    return on_result


def cmd_run(args: argparse.Namespace) -> int:
    """Validate, generate, grade, write the run directory and its reports."""
    from .run import rebuild
    from .run import run, snapshot_cases
    config, suite, answers = load_project(Path(args.config))
    keys = resolve_keys(config, dict(os.environ))
    run_dir = _run_dir(config, args.out)
    total = sum(t.samples for t in config.targets) * len(suite.cases)
    print(f"bilan: {total} answers to get and grade ({len(config.targets)} targets x {len(suite.cases)} cases) -> {run_dir}", file=sys.stderr)
    snapshot_cases(suite, run_dir)
    run(config, suite, answers, run_dir, keys, on_result=_progress(total), argv=sys.argv)
    summary = rebuild(run_dir)
    _print_summary(summary, run_dir)
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
    p.set_defaults(func=cmd_run)
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
