"""Wire the stages: stream each (target, case, sample) through generate -> grade -> append, then report."""
from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import os
import platform
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Any

from .errors import InputError, Problem
from .load import display
from .generate import generate
from .grade import result_row
from .graders.configured import make_grader
from .graders.llm import BATCH_TEMPLATE, PROMPT_VERSION, SYSTEM, TEMPLATE
from .model_apis import MODEL_APIS
from .processes import FORK, SharedBudget, run_interruptible, run_workers
from .providers.base import Budget, BudgetExceeded, Endpoint, Meter, batch_price, cost, estimate_tokens
from .providers.endpoints import Answers, make_endpoint
from .secrets import Scrubber
from .store import (CASES, MANIFEST, RESULTS, ResponseCache, RunStore, input_differences, job_key, read_json,
                    refuse_symlinks, results_state, run_lock, sha256_file, snapshot_cases, text_sha256, write_json,
                    write_results)
from .types import Case, Config, EndpointConfig, ResultRow, Suite, Usage
from .yamldoc import parse_yaml

class RunStopped(Exception):
    """The run stopped early on purpose (error budget, cost ceiling); what it wrote is kept for --resume."""


@dataclass
class RunOptions:
    """How to run: resume, shard, cache, error and cost ceilings, and a callback per result."""

    resume: bool = False
    shard: tuple[int, int] | None = None          # (i, n): the i-th of n slices, 1-based
    cache: ResponseCache | None = None
    max_error_rate: float = 0.5
    min_answers_for_error_rate: int = 20
    max_cost: float | None = None
    allow_unpriced: bool = False                  # under max_cost, let models without a price spend uncounted
    on_result: Callable[[ResultRow], None] | None = None
    workers: int = 1                              # processes (worker_count: fewer when the run cannot use them)
    wrap: Callable[[Endpoint], None] | None = None     # set by batches.py on each batch endpoint it makes


@dataclass
class Monitor:
    """Live counts for progress displays and the error budget."""

    total: int = 0
    done: int = 0
    failed: int = 0
    meters: dict[str, Meter] = field(default_factory=dict)    # model endpoints' calls by name (replay is no call)
    budget: Budget = field(default_factory=Budget)

    def cost(self) -> float:
        """Dollars spent on calls made so far in this run."""
        return self.budget.spent

    def track(self, endpoints: dict[str, Endpoint]) -> None:
        """Count the calls of these endpoints (those that call a model)."""
        self.meters.update({name: e.meter for name, e in endpoints.items() if e.scope is not None})

    def calls(self) -> tuple[int, int]:
        """Model calls made, and calls answered from the cache, so far."""
        return sum(m.calls for m in self.meters.values()), sum(m.cache_hits for m in self.meters.values())


def unpriced(config: Config) -> list[Problem]:
    """A located problem for each model (target or grader) without a price in `prices:`: a cost ceiling cannot
    count what it spends."""
    endpoints = [(("targets", i), t) for i, t in enumerate(config.targets)] + [(("grader",), config.grader)]
    missing = [(path, e) for path, e in endpoints if e.provider in MODEL_APIS and e.model not in config.prices]
    if not missing:
        return []
    doc, _ = parse_yaml(Path(config.path), display(config.path))
    problems = []
    for path, e in missing:
        message = (f"model '{e.model}' ({e.name}) has no price, so --max-cost cannot count what it spends; expected "
                   f"its price under prices: ({e.model}: {{input: USD per million tokens, output: USD per million "
                   f"tokens}}), or --allow-unpriced to let it spend uncounted")
        problems.append(doc.problem(path + ("model",), message) if doc else Problem(display(config.path), 0, 0,
                                                                                    message))
    return problems


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in ("bilan", "openai", "anthropic", "pandas", "jsonschema", "pyyaml", "matplotlib"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


def manifest(config: Config, suite: Suite, run_id: str, argv: list[str] | None = None) -> dict[str, Any]:
    """What produced this run: configuration (no secrets: only variable names), file hashes, versions."""
    files = _Files()
    base = files.resolve(Path(config.path).parent)
    listed = [Path(config.path)] + files.cases(suite)
    listed += files.rubrics(config)
    listed += [Path(f) for t in config.targets for f in t.answers]
    hashes = {}
    for f in listed:
        inside = _under(files.resolve(f), base)
        hashes[str(f) if inside is None else inside] = files.sha256(f)
    endpoint = lambda e: {k: v for k, v in vars(e).items() if k not in ("system_prompt", "answers") and v not in (None,
                                                                                                                  "",
                                                                                                                  ())}
    return {
        "run_id": run_id, "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": argv or sys.argv, "config_file": config.path,
        "targets": [endpoint(t) | {"system_prompt_sha256": _sha(t.system_prompt)} for t in config.targets],
        "grader": endpoint(config.grader) | {"prompt_version": PROMPT_VERSION},
        "seed": config.seed, "bootstrap": config.bootstrap, "axes": list(config.axes), "prices": config.prices,
        "languages": sorted({c.language for c in suite.cases}), "cases": len(suite.cases),
        "files": hashes, "inputs": inputs(config, suite, files), "versions": _versions(),
    }


def _sha(text: str | None) -> str | None:
    return text_sha256(text) if text else None


class _Files:
    """Each path resolved once and each file hashed once, for one manifest: a suite of 1,000 case files lists
    each of them in both the manifest's files and its inputs. Paths are kept as text (pathlib's objects cost
    more to make than the lookups they serve)."""

    def __init__(self) -> None:
        self._resolved: dict[str, str] = {}
        self._hashes: dict[str, str] = {}
        self._cases: list[Path] | None = None
        self._rubrics: list[Path] | None = None

    def resolve(self, path: Path | str) -> str:
        """The path made absolute, symbolic links resolved (as Path.resolve), as text."""
        key = os.fspath(path)
        if (real := self._resolved.get(key)) is None:
            head, name = os.path.split(key)
            # a file that is not a link is its resolved folder's entry: each folder is resolved once
            if head and name not in ("", ".", "..") and not os.path.islink(key):
                real = os.path.join(self.resolve(head), name)
            else:
                real = os.path.realpath(key)
            self._resolved[key] = real
        return real

    def sha256(self, path: Path | str) -> str:
        real = self.resolve(path)
        if (digest := self._hashes.get(real)) is None:
            digest = self._hashes[real] = sha256_file(Path(real))
        return digest

    def cases(self, suite: Suite) -> list[Path]:
        """The suite's case files, resolved, sorted, each once."""
        if self._cases is None:
            self._cases = sorted(Path(real) for real in {self.resolve(c.file) for c in suite.cases})
        return self._cases

    def rubrics(self, config: Config) -> list[Path]:
        """The rubrics folder's *.y*ml files, sorted, the folder walked once."""
        if self._rubrics is None:
            self._rubrics = sorted(Path(config.rubrics).rglob("*.y*ml"))
        return self._rubrics

    def relative(self, path: Path | str, root: Path | str) -> str:
        return os.path.relpath(self.resolve(path), self.resolve(root)).replace(os.sep, "/")


def _under(real: str, base: str) -> str | None:
    """`real` relative to the folder `base` if it is inside it (both resolved), else None."""
    prefix = base.rstrip(os.sep) + os.sep
    return real[len(prefix):] if real.startswith(prefix) else None


def _tree(entry: Path) -> list[Path]:
    return sorted(p for p in entry.rglob("*") if p.is_file()) if entry.is_dir() else [entry]


def inputs(config: Config, suite: Suite,
           files: _Files | None = None) -> dict[str, dict[str, str] | dict[str, dict[str, str]]]:
    """The content of everything that can change a verdict, hashed, by ids that do not depend on where the files
    are: case and rubric files relative to their folders, the locale, the grader's template and settings, each
    target's system prompt and replayed answers, and the config. `suite` and `grader` must match for runs to be
    compared or gated; every section must match for a run to be resumed or shards merged."""
    files = files or _Files()
    rel, digest = files.relative, files.sha256
    locale = files.resolve(config.locale)
    rubrics = [p for p in files.rubrics(config) if p.suffix in (".yaml", ".yml") and files.resolve(p) != locale]
    suite_part = {f"cases/{rel(f, config.cases)}": digest(f) for f in files.cases(suite)}
    suite_part |= {f"rubrics/{rel(f, config.rubrics)}": digest(f) for f in rubrics}
    suite_part["locale"] = digest(locale)
    g = config.grader
    grader = {"provider": g.provider, "model": g.model, "prompt_version": PROMPT_VERSION, "mode": g.mode,
              "use_checks": str(g.use_checks), "compare_checks": str(g.compare_checks),
              "temperature": str(g.temperature),
              "max_tokens": str(g.max_tokens), "template": text_sha256(SYSTEM + TEMPLATE + BATCH_TEMPLATE)}
    grader |= {f"labels/{rel(f, entry)}": digest(f) for entry in map(Path, g.labels) for f in _tree(entry)}
    targets = {t.name: {"system_prompt": _sha(t.system_prompt) or "none"}
               | {f"answers/{rel(Path(f), Path(config.path).parent)}": digest(Path(f)) for f in t.answers}
               for t in config.targets}
    return {"suite": suite_part, "grader": grader, "config": {"config": digest(Path(config.path))},
            "targets": targets}


def in_shard(key: tuple[str, str, int], shard: tuple[int, int] | None) -> bool:
    """True if the unit belongs to shard i of n: a stable hash, the same on every machine."""
    if shard is None:
        return True
    digest = hashlib.sha256(json.dumps(list(key)).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % shard[1] == shard[0] - 1


def jobs(config: Config, suite: Suite, shard: tuple[int, int] | None = None,
         done: set | frozenset = frozenset()) -> Iterator[tuple[EndpointConfig, Case, int]]:
    """Every unit of work still to do, in a stable order: target, then case, then sample."""
    for target in config.targets:
        for case in suite.cases:
            for sample in range(target.samples):
                key = job_key(target.name, case.id, sample)
                if key not in done and in_shard(key, shard):
                    yield target, case, sample


def _final(row: ResultRow) -> bool:
    """A row that a resumed run keeps: an answer (or a definite 'missing') with no failed grading call."""
    return row.status in ("ok", "missing") and not any(
        v.error and v.error_kind not in ("parse", "refusal") for v in row.verdicts)


def _resume_rows(run_dir: Path) -> tuple[dict[tuple, ResultRow], bool]:
    """The final rows of an interrupted run (one per unit), and whether results.jsonl must be rewritten to hold
    only them (failed rows are done again, their successful calls coming back from the cache; a torn line is cut)."""
    rows, torn = results_state(run_dir)
    kept = {row.key: row for row in rows if _final(row)}
    return kept, torn or len(kept) != len(rows)


def check_resume(config: Config, suite: Suite, run_dir: Path, new_manifest: dict | None = None) -> set[tuple[str, str,
                                                                                                             int]]:
    """The units a resumed run keeps, after checking (and changing nothing) that every input is as it was when
    the run started; an input error naming each input that changed."""
    run_dir = Path(run_dir)
    if not (run_dir / MANIFEST).exists():
        return set()
    new_manifest = new_manifest or manifest(config, suite, run_dir.name)
    changed = input_differences(read_json(run_dir / MANIFEST), new_manifest, ("earlier", "new"))
    if changed:
        raise InputError([Problem(str(run_dir / MANIFEST), 0, 0,
                                  f"cannot resume: an input changed since this run started "
                                  f"({why}); expected the same inputs, or a new --out folder") for why in changed])
    return set(_resume_rows(run_dir)[0])


def _failed(row: ResultRow) -> bool:
    return row.status == "error" or any(v.error for v in row.verdicts)


class _Results:
    """The parent's side of a run, the only writer of results.jsonl: append each row as it comes (from this
    process's workers or from worker processes), count it, report it, and say when the error ceiling stops the run."""

    def __init__(self, store: RunStore, options: RunOptions, monitor: Monitor):
        self.store, self.options, self.monitor = store, options, monitor

    def accept(self, row: ResultRow) -> str | None:
        """Keep one row; the reason to stop, if the share of failed answers is now over the ceiling."""
        m, options = self.monitor, self.options
        self.store.append(row)
        m.done += 1
        m.failed += _failed(row)
        if options.on_result:
            options.on_result(row)
        if m.done >= options.min_answers_for_error_rate and m.failed / m.done > options.max_error_rate:
            return (f"{m.failed} of {m.done} answers failed (more than --max-error-rate {options.max_error_rate:g}); "
                    f"last error: {row.error or _verdict_error(row)}")
        return None


async def run_async(config: Config, suite: Suite, answers: Answers, keys: dict[str, str | None], options: RunOptions,
                    monitor: Monitor, done: set, accept: Callable[[ResultRow], str | None],
                    part: tuple[int, int] = (0, 1), stopped: Callable[[], bool] = lambda: False) -> list[str]:
    """Generate and grade the remaining units of `part` (index, count: every count-th unit from the index-th, so
    the parts of a run are as even as can be), giving each row to `accept` as soon as it exists; returns why the
    run stopped early (empty when it did not): the error or cost ceiling, reached here or (`stopped`) elsewhere."""
    budget = monitor.budget
    endpoints = {t.name: make_endpoint(t, answers, keys, config.seed, options.cache, budget, config.prices,
                                       options.wrap) for t in config.targets}
    monitor.track(endpoints)
    graders: dict[str, Endpoint] = {}
    grader = make_grader(config, suite, answers, keys, options.cache, budget, graders, options.wrap)
    monitor.track(graders)
    work = (job for i, job in enumerate(jobs(config, suite, options.shard, done)) if i % part[1] == part[0])
    stops: list[str] = []      # why the run stops; workers then finish the answer in hand and take no other

    async def worker() -> None:
        while not stops and not stopped() and (job := next(work, None)) is not None:
            target, case, sample = job
            try:
                answer = await generate(endpoints[target.name], target, case, sample)
                criteria = suite.criteria[case.id]
                verdicts = await grader.grade(case, answer.text, criteria) if answer.text is not None else []
            except BudgetExceeded as exc:      # this answer is left for --resume; calls in flight are still counted
                stops.append(f"cost ceiling reached: {exc}")
                return
            if (reason := accept(result_row(case, answer, criteria, verdicts, suite.axes))) is not None:
                stops.append(reason)

    # Enough workers to keep every endpoint busy: the targets' limits, plus the grader's when it is a model.
    width = max(1, sum(t.max_concurrency for t in config.targets)
                + (config.grader.max_concurrency if config.grader.provider in MODEL_APIS else 0))
    tasks = [asyncio.ensure_future(worker()) for _ in range(width)]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return stops


def _stopped(stops: list[str], budget: Budget) -> RunStopped:
    ceiling = f" of --max-cost ${budget.max_cost:g}" if budget.max_cost is not None else ""
    return RunStopped(stops[0] + (f"; spent ${budget.spent:.4f}{ceiling}" if ceiling or budget.spent else ""))


def worker_count(config: Config, options: RunOptions, units: int) -> int:
    """How many processes a run uses: `options.workers`, no more than the units to do nor the smallest concurrency
    limit of a model endpoint (each process gets a share of every limit), and one where processes cannot be forked
    or the endpoints are batch collectors (batches.py), which gather requests in this process."""
    if options.workers <= 1 or not FORK or options.wrap is not None:
        return 1
    limits = [e.max_concurrency for e in (*config.targets, config.grader) if e.provider in MODEL_APIS]
    return max(1, min(options.workers, units, *limits))


def _share(config: Config, index: int, count: int) -> Config:
    """The config a worker process runs: its share of each endpoint's concurrency and rate limits."""
    def part(e: EndpointConfig) -> EndpointConfig:
        split = lambda limit: limit / count if limit else limit
        return replace(e, max_concurrency=e.max_concurrency // count + (index < e.max_concurrency % count),
                       requests_per_minute=split(e.requests_per_minute), tokens_per_minute=split(e.tokens_per_minute))
    return replace(config, targets=tuple(part(t) for t in config.targets), grader=part(config.grader))


def _run_in_processes(config: Config, suite: Suite, answers: Answers, keys: dict[str, str | None],
                      options: RunOptions, monitor: Monitor, done: set, results: _Results, count: int) -> list[str]:
    """The units split over `count` forked worker processes; rows, stops and call counts come back to this one."""
    budget = SharedBudget(monitor.budget.max_cost, monitor.budget.spent)
    monitor.budget = budget

    def child(index: int, send: Callable[[Any], None], stopped: Callable[[], bool]) -> None:
        cache = ResponseCache(options.cache.path) if options.cache is not None else None   # never the parent's
        mine = Monitor(budget=budget)
        try:
            stops = run_interruptible(run_async(_share(config, index, count), suite, answers, keys,
                                              replace(options, cache=cache, on_result=None), mine, done,
                                              lambda row: send(("row", row)), (index, count), stopped))
        finally:
            send(("meters", {name: (m.calls, m.cache_hits) for name, m in mine.meters.items()}))
            if cache is not None:
                cache.close()
        send(("stops", stops))

    stops: list[str] = []

    def on_message(message: tuple) -> bool:
        kind, value = message
        if kind == "row":
            if (reason := results.accept(value)) is not None:
                stops.append(reason)
        elif kind == "meters":
            for name, (calls, hits) in value.items():
                meter = monitor.meters.setdefault(name, Meter())
                meter.calls += calls
                meter.cache_hits += hits
        else:
            stops.extend(value)
        return bool(stops)

    run_workers(count, child, on_message)
    return stops


def _verdict_error(row: ResultRow) -> str:
    return next((v.error for v in row.verdicts if v.error), "")


def count_jobs(config: Config, suite: Suite, shard: tuple[int, int] | None = None,
               done: set | frozenset = frozenset()) -> int:
    """How many units of work remain."""
    return sum(1 for _ in jobs(config, suite, shard, done))


def run(config: Config, suite: Suite, answers: Answers, run_dir: Path, keys: dict[str, str | None],
        options: RunOptions | None = None, monitor: Monitor | None = None, argv: list[str] | None = None) -> Monitor:
    """Run the evaluation into run_dir (manifest first, each result as soon as it exists); returns the monitor.
    Raises RunStopped when a ceiling stops it; everything written so far stays for --resume."""
    options, monitor = options or RunOptions(), monitor or Monitor()
    if options.max_cost is not None and not options.allow_unpriced and (problems := unpriced(config)):
        raise InputError(problems)
    monitor.budget.max_cost = options.max_cost
    run_dir = Path(run_dir)
    with run_lock(run_dir):
        new_manifest = manifest(config, suite, run_dir.name, argv)
        # Every check first: a refused command leaves every file in the run directory as it was.
        resuming = options.resume and (run_dir / MANIFEST).exists()
        if resuming:
            check_resume(config, suite, run_dir, new_manifest)
            old = read_json(run_dir / MANIFEST)
            kept, rewrite = _resume_rows(run_dir)
        elif (run_dir / RESULTS).exists() and (run_dir / RESULTS).stat().st_size:
            raise InputError([Problem(str(run_dir), 0, 0,
                                      "this run directory already has results; expected --resume to "
                                      "finish it, or a new --out folder")])
        refuse_symlinks([run_dir / name for name in (MANIFEST, RESULTS, CASES)])
        done: set = set()
        if resuming:
            if rewrite:
                write_results(run_dir / RESULTS, kept.values())
            done = set(kept)
            new_manifest["run_id"], new_manifest["created"] = old.get("run_id", run_dir.name), old.get("created")
            new_manifest["resumed"] = old.get("resumed", 0) + 1
        new_manifest["shard"] = list(options.shard) if options.shard else None
        scrubber = Scrubber(keys.values())
        write_json(run_dir / MANIFEST, scrubber.value(new_manifest))
        snapshot_cases(suite, run_dir)
        monitor.total = count_jobs(config, suite, options.shard, done)
        count = worker_count(config, options, monitor.total)
        with RunStore(run_dir) as store:
            results = _Results(store, options, monitor)
            if count > 1:
                stops = _run_in_processes(config, suite, answers, keys, options, monitor, done, results, count)
            else:
                stops = asyncio.run(run_async(config, suite, answers, keys, options, monitor, done, results.accept))
        if stops:
            raise RunStopped(scrubber.text(str(_stopped(stops, monitor.budget))))
    return monitor


ASSUMED_ANSWER_TOKENS = 600
ASSUMED_VERDICT_TOKENS = 80


def estimate(config: Config, suite: Suite, shard: tuple[int, int] | None = None,
             done: set | frozenset = frozenset()) -> dict[str, dict[str, Any]]:
    """Calls, tokens and cost a run would need, per endpoint, without calling anything (an upper bound:
    cache hits are not subtracted), following the grader's mode. Answers are assumed to be max_tokens long, or
    600 tokens."""
    out: dict[str, dict[str, Any]] = {}
    grader = config.grader

    def add(name: str, model: str, tokens_in: int, tokens_out: int, batch: bool = False) -> None:
        entry = out.setdefault(name, {"calls": 0, "input_tokens": 0, "output_tokens": 0, "model": model,
                                      "batch": batch})
        entry["calls"] += 1
        entry["input_tokens"] += tokens_in
        entry["output_tokens"] += tokens_out

    for target, case, _ in jobs(config, suite, shard, done):
        answer_tokens = target.max_tokens or ASSUMED_ANSWER_TOKENS
        if target.provider != "replay":
            add(target.name, target.model, estimate_tokens(case.conversation, target.system_prompt), answer_tokens,
                target.batch)
        if grader.provider not in MODEL_APIS:
            continue
        # As ModelGrader does: with use_checks (and no compare_checks) the checked criteria are not the model's.
        asked = [c for c in suite.criteria[case.id]
                 if not (grader.use_checks and not grader.compare_checks and c.check is not None)]
        context = estimate_tokens(case.conversation, None) + answer_tokens
        if grader.mode == "batched" and asked:       # one call per answer, every criterion in it
            listing = sum(len(c.id) + len(c.text) + 16 for c in asked) // 4
            add("grader:" + grader.name, grader.model, context + len(BATCH_TEMPLATE) // 4 + listing,
                ASSUMED_VERDICT_TOKENS * len(asked), grader.batch)
            continue
        for criterion in asked:
            add("grader:" + grader.name, grader.model, context + len(TEMPLATE) // 4 + len(criterion.text) // 4,
                ASSUMED_VERDICT_TOKENS, grader.batch)
    for entry in out.values():
        price = batch_price(config.prices.get(entry["model"]), entry["batch"])
        entry["cost"] = cost(Usage(entry["input_tokens"], entry["output_tokens"]), price) if price else None
    return out
