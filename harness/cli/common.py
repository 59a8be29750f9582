"""What the commands share: API keys from the environment, problems and summaries printed, the run folder, the
progress display, argument types, the project as loaded and the caches."""
from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import sqlite3
import sys
import time
from pathlib import Path

from ..errors import InputError, Problem
from ..load import display, load_project
from ..model_apis import MODEL_APIS
from ..store import RESULTS
from ..types import Config, EndpointConfig, ResultRow, Suite


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
            problems.append(Problem(display(config.path), 0, 0,
                                    f"{where} ({e.name}): environment variable {var} is not set; "
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
    print(f"{len(errors)} error(s) in {len({p.path for p in errors})} file(s)"
          + (f", {warnings} warning(s)" if warnings else ""), file=sys.stderr)
    return 2


def _print_warnings(suite) -> None:
    for problem in suite.warnings:
        print(problem, file=sys.stderr)


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

    def __call__(self, row: ResultRow) -> None:
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
    from ..processes import MAX_WORKERS, available_cpus
    return min(available_cpus(), MAX_WORKERS) if text == "auto" else _positive(text)


def cache_folder(args: argparse.Namespace, environ: dict[str, str]) -> Path | None:
    """The folder of the response and parse caches: --cache-dir, else $BILAN_CACHE_DIR, else the user cache
    folder; None with --no-cache."""
    from platformdirs import user_cache_dir
    if getattr(args, "no_cache", False):
        return None
    return Path(getattr(args, "cache_dir", None) or environ.get("BILAN_CACHE_DIR") or user_cache_dir("bilan"))


def load(args: argparse.Namespace) -> tuple[Config, Suite, dict[str, dict[tuple[str, int], str]]]:
    """The project at --config, its unchanged YAML files read from the parse cache."""
    return load_project(Path(args.config), cache_folder(args, dict(os.environ)))


def _cache(args: argparse.Namespace, environ: dict[str, str]):
    from ..store import ResponseCache
    folder = cache_folder(args, environ)
    if folder is None:
        return None
    try:
        return ResponseCache(folder / "responses.sqlite")
    except (OSError, sqlite3.Error) as exc:
        raise InputError([Problem(str(folder), 0, 0, f"cannot open the response cache here: {exc}; expected a writable "
                                  "folder (--cache-dir, BILAN_CACHE_DIR), or --no-cache")]) from None


def _existing_run(path: str) -> Path:
    run_dir = Path(path)
    if not (run_dir / RESULTS).exists():
        raise InputError([Problem(display(run_dir), 0, 0,
                                  "no results.jsonl here; expected a run directory written by `bilan run`")])
    return run_dir


def _print_summary(summary: dict, run_dir: Path) -> None:
    for name, t in summary["targets"].items():
        o = t["overall"]
        score = f"{o['score']:.3f} [{o['ci_low']:.3f}, {o['ci_high']:.3f}]" if o["score"] is not None else "n/a"
        langs = ", ".join(f"{l} {c['score']:.2f}" for l, c in t["by_language"].items() if c["score"] is not None)
        print(f"{name}: {score} over {o['n']} cases; {t['missing']} missing, {t['errors']} errors, "
              f"{t['ungraded_criteria']} criteria not graded. By language: {langs}")
        counts = summary.get("never_events", {}).get(name, {})
        where = ", ".join(f"{lang} {c['count']}" for lang, c in counts.items() if c["count"])
        never = t["never_events"]
        print(f"  never-events: {never['count']} of {never['n']} answers" + (f" ({where})" * bool(where)))
    for warning in summary.get("coverage_warnings", []):
        print(f"warning: {warning['message']}")
    print(f"reports: {run_dir / 'index.html'} (and one page per language)")
