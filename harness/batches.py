"""Batch runs in phases: answers, then grading, then reports.

Each round runs the ordinary pipeline (generate -> grade) with the batch endpoints' providers replaced by a
collector: a call the response cache cannot answer is recorded, not made. The round's requests (the same bodies and
cache keys the synchronous path uses) are submitted in chunks within the provider's limits; the batch ids and every
request's custom id (its cache key) are written to RUN/batches.jsonl before the run waits; the replies go into the
response cache. The next round finds them there and reaches further (the answers' grading, then a grader's parse
retries). When a round has nothing left to ask, the ordinary run writes the results from the cache: the same rows
as a synchronous run. A resumed run collects the batches still open in batches.jsonl first and never sends a
request twice; expired, cancelled and failed items are resubmitted up to MAX_SUBMISSIONS times, then recorded as an
error of their kind (never as text that gets graded).
"""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

from . import jsonl
from .errors import InputError, PermanentError, Problem, ProviderError
from .generate import generate
from .model_apis import MODEL_APIS, with_batch_api
from .providers.base import (BATCH_DISCOUNT, Budget, BudgetExceeded, Endpoint, GenParams, RetryPolicy, cost,
                             estimate_tokens)
from .graders.configured import make_grader
from .providers.endpoints import Answers, make_endpoint
from .run import Monitor, RunOptions, RunStopped, jobs, run
from .store import RESULTS, read_results, refuse_symlinks, run_lock, write_file
from .types import Config, EndpointConfig, Message, Suite

BATCHES = "batches.jsonl"
MAX_SUBMISSIONS = 3          # a request expired, cancelled or failed on the server's side is sent at most this often
MAX_ROUNDS = 12              # answers, grading, the grader's parse retries, resubmissions


@dataclass
class BatchOptions:
    """How a batch run waits: whether at all (False: submit, then stop for a later --resume), and how often it polls
    (seconds, growing by half each time up to max_poll)."""

    wait: bool = True
    poll: float = 5.0
    max_poll: float = 300.0
    progress: Callable[[str], None] | None = None


@dataclass
class Ledger:
    """What RUN/batches.jsonl says: the batches submitted, which were collected, and what failed."""

    submitted: dict[str, dict] = field(default_factory=dict)       # batch id -> its submission record
    collected: set[str] = field(default_factory=set)
    sent: dict[str, int] = field(default_factory=dict)             # custom id -> times submitted
    failed: dict[str, dict] = field(default_factory=dict)          # custom id -> last {kind, message, transient}
    intents: dict[str, dict] = field(default_factory=dict)         # token -> a submission with no outcome on record
    states: dict[str, dict] = field(default_factory=dict)          # batch id -> the last state seen {status, counts}

    @classmethod
    def read(cls, run_dir: Path) -> Ledger:
        """The ledger of a run directory (empty when it has none)."""
        ledger, path = cls(), Path(run_dir) / BATCHES
        if not path.exists():
            return ledger
        raw = path.read_bytes()
        text = raw[:raw.rfind(b"\n") + 1].decode("utf-8", "replace")     # a torn last line was never written
        for number, record in jsonl.objects(text):
            if isinstance(record, jsonl.LineError):
                raise InputError([Problem(str(path), number, record.col, f"corrupt batch record: {record.message}")])
            if record.get("event") == "submitting":
                ledger.intents[record["token"]] = record
            elif record.get("event") == "abandoned":
                ledger.intents.pop(record["token"], None)
            elif record.get("event") == "submitted":
                ledger.intents.pop(record.get("token", ""), None)
                ledger.submitted[record["batch_id"]] = record
                for cid in record["custom_ids"]:
                    ledger.sent[cid] = ledger.sent.get(cid, 0) + 1
            elif record.get("event") == "state":
                ledger.states[record["batch_id"]] = record
            elif record.get("event") == "collected":
                ledger.collected.add(record["batch_id"])
                for cid, failure in record.get("failed", {}).items():
                    ledger.failed[cid] = failure
                for cid in record.get("ok", []):
                    ledger.failed.pop(cid, None)
        return ledger

    def pending(self) -> list[dict]:
        """Submitted batches not yet collected."""
        return [r for bid, r in self.submitted.items() if bid not in self.collected]

    def final_failure(self, cid: str) -> dict | None:
        """The failure a request keeps for good: a permanent one, or a transient one after MAX_SUBMISSIONS."""
        failure = self.failed.get(cid)
        if failure and (not failure["transient"] or self.sent.get(cid, 0) >= MAX_SUBMISSIONS):
            return failure
        return None


def _append(run_dir: Path, record: dict) -> None:
    """Append one record to batches.jsonl, flushed to disk before the run goes on (it is what a resume reads)."""
    path = Path(run_dir) / BATCHES
    refuse_symlinks([path])
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record | {"time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")},
                           ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())


class Wanted(NamedTuple):
    """A request the cache could not answer, with the endpoint it is for and that endpoint's config (its batch
    adapter is made from the config)."""

    cfg: EndpointConfig
    endpoint: Endpoint
    messages: Sequence[Message]
    params: GenParams


BatchEndpoint = tuple[EndpointConfig, Endpoint]       # its batch adapter is made from the config


class Collector:
    """In place of a batch endpoint's provider: records each request the cache could not answer (collecting), or
    raises the error a request failed with for good (the final pass)."""

    def __init__(self, endpoint: Endpoint, cfg: EndpointConfig, ledger: Ledger, collecting: bool,
                 wanted: dict[str, Wanted]):
        self.name, self.endpoint, self.cfg, self.ledger = endpoint.name, endpoint, cfg, ledger
        self.collecting, self.wanted = collecting, wanted
        endpoint.provider = self

    async def complete(self, messages, params):
        """Record the request, then raise: the pipeline treats it as a failed call, and the round is thrown away."""
        key = self.endpoint.key(messages, params)
        failure = self.ledger.final_failure(key) if key else None
        if failure:
            raise PermanentError(f"batch: {failure['message']}", kind=failure["kind"])
        if not self.collecting:
            raise PermanentError("batch: no result for this request yet; expected bilan run --resume to collect it",
                                 kind="batch_incomplete")
        self.wanted[key] = Wanted(self.cfg, self.endpoint, messages, params)
        raise PermanentError("deferred to a batch", kind="deferred")


def _collectors(config: Config, ledger: Ledger, collecting: bool,
                wanted: dict[str, Wanted]) -> Callable[[Endpoint], None]:
    """RunOptions.wrap: puts a Collector in place of each batch endpoint's provider."""
    def wrap(endpoint: Endpoint) -> None:
        Collector(endpoint, _config_of(endpoint, config), ledger, collecting, wanted)
    return wrap


async def _collect_pass(config: Config, suite: Suite, answers: Answers, keys: dict, options: RunOptions,
                        ledger: Ledger, budget) -> dict[str, Wanted]:
    """Run the pipeline once with collectors: the requests the batch endpoints still need, by cache key."""
    wanted: dict[str, Wanted] = {}
    collect = _collectors(config, ledger, True, wanted)
    endpoints = {t.name: make_endpoint(t, answers, keys, config.seed, options.cache, budget, config.prices, collect)
                 for t in config.targets}
    grader = make_grader(config, suite, answers, keys, options.cache, budget, wrap=collect)
    limit = asyncio.Semaphore(64)

    async def one(target, case, sample) -> None:
        async with limit:
            answer = await generate(endpoints[target.name], target, case, sample)
            if answer.text is not None:
                await grader.grade(case, answer.text, suite.criteria[case.id])

    await asyncio.gather(*(one(*job) for job in jobs(config, suite, options.shard)))
    return wanted


def _chunks(lines: list[tuple[str, bytes]], adapter) -> list[list[tuple[str, bytes]]]:
    out: list[list[tuple[str, bytes]]] = [[]]
    size = 0
    for cid, line in lines:
        if out[-1] and (len(out[-1]) >= adapter.max_requests or size + len(line) > adapter.max_bytes):
            out.append([])
            size = 0
        out[-1].append((cid, line))
        size += len(line)
    return [c for c in out if c]


def _adapter(adapters: dict, cfg, keys: dict):
    """One batch adapter (one SDK client) per endpoint for the whole run; closed when the phases end."""
    if cfg.name not in adapters:
        adapters[cfg.name] = MODEL_APIS[cfg.provider].load("batch_adapter")(cfg, keys.get(cfg.name))
    return adapters[cfg.name]


async def _submit(run_dir: Path, wanted: dict[str, Wanted], keys: dict, budget, say,
                  adapters: dict) -> dict[str, float]:
    """Submit the round's requests (per endpoint, in chunks); each batch is on record before the next is sent.
    Returns the budget reserved per batch id."""
    by_endpoint: dict[str, list] = {}
    for key, (cfg, endpoint, messages, params) in wanted.items():
        by_endpoint.setdefault(cfg.name, []).append((key, cfg, endpoint, messages, params))
    plans, problems = [], []
    for name, items in by_endpoint.items():
        _, cfg, endpoint, _, _ = items[0]
        adapter = _adapter(adapters, cfg, keys)
        lines = [(key, adapter.line(key, messages, params)) for key, _, _, messages, params in items]
        problems += [Problem(name, 0, 0, f"request {key[:12]} is {len(line):,} bytes, more than a batch may hold "
                             f"({adapter.max_bytes:,}); expected a shorter conversation, or batch: false")
                     for key, line in lines if len(line) > adapter.max_bytes]
        reserve = sum(endpoint.reservation(params, estimate_tokens(messages, params.system))
                      for _, _, _, messages, params in items)
        plans.append((name, cfg, adapter, _chunks(lines, adapter), reserve / max(1, len(items))))
    if problems:          # reported before anything is sent
        raise InputError(problems)
    for _, _, adapter, _, _ in plans:
        await adapter.check()
    reserved: dict[str, float] = {}
    for name, cfg, adapter, chunks, each in plans:
        for chunk in chunks:
            try:
                budget.reserve(each * len(chunk))
            except BudgetExceeded:
                raise BudgetExceeded(f"the next batch ({len(chunk)} requests to {name}, up to ${each * len(chunk):.4f} "
                                     f"at batch prices, x{BATCH_DISCOUNT:g}) could pass --max-cost "
                                     f"${budget.max_cost:g}; it was not submitted") from None
            # On record before the call: a kill between the provider creating the batch and the line below leaves
            # this, and a resume finds the batch (by its token) instead of sending it again.
            intent = {"event": "submitting", "endpoint": name, "provider": cfg.provider,
                      "token": os.urandom(16).hex(), "custom_ids": [cid for cid, _ in chunk]}
            _append(run_dir, intent)
            batch_id = await adapter.submit([line for _, line in chunk], intent["token"])
            reserved[batch_id] = each * len(chunk)
            _append(run_dir, intent | {"event": "submitted", "batch_id": batch_id})
            say(f"batch {batch_id} ({name}): submitted, {len(chunk)} requests")
    return reserved


async def _wait_and_collect(run_dir: Path, ledger: Ledger, endpoints: dict[str, BatchEndpoint], keys: dict, budget,
                            reserved: dict[str, float], batch: BatchOptions, say, adapters: dict) -> None:
    """Poll every pending batch until it ends (backoff), then put its replies into the cache and record them."""
    pending = ledger.pending()
    delay = batch.poll
    last: dict = {}
    while pending:
        still = []
        for record in pending:
            found = endpoints.get(record["endpoint"])
            if found is None:
                continue            # an endpoint no longer in the config: its batch is left as it is
            cfg, endpoint = found
            adapter = _adapter(adapters, cfg, keys)
            state = await adapter.state(record["batch_id"])
            line = f"batch {record['batch_id']} ({record['endpoint']}): {state.status}" + (
                " (" + ", ".join(f"{k} {v}" for k, v in state.counts.items()) + ")" if state.counts else "")
            if last.get(record["batch_id"]) != line:
                last[record["batch_id"]] = line
                say(line)
                _append(run_dir, {"event": "state", "batch_id": record["batch_id"], "status": state.status,
                                  "counts": state.counts})          # for `bilan status`, which calls nothing
            if not state.ended:
                still.append(record)
                continue
            results = await adapter.results(record["batch_id"], record["custom_ids"])
            ok, failed, spent = [], {}, 0.0
            for cid in record["custom_ids"]:
                result = results.get(cid) or ProviderError(f"batch {state.status} before this request was done",
                                                           kind=state.status)
                if isinstance(result, ProviderError):
                    failed[cid] = {"kind": result.kind, "message": str(result)[:300],
                                   "transient": result.transient or cid not in results}
                else:
                    endpoint.store(cid, result)
                    spent += cost(result.usage, endpoint.price)
                    ok.append(cid)
            budget.settle(reserved.pop(record["batch_id"], 0.0), spent)
            _append(run_dir, {"event": "collected", "batch_id": record["batch_id"], "ok": ok, "failed": failed,
                              "cost": spent})
            ledger.collected.add(record["batch_id"])
            for cid in ok:
                ledger.failed.pop(cid, None)
            ledger.failed.update(failed)
        pending = still
        if pending:
            if not batch.wait:
                raise RunStopped(f"{len(pending)} batch(es) submitted and not finished; `bilan status` shows where "
                                 "they "
                                 "stand, `bilan run --resume` collects them")
            await asyncio.sleep(delay)
            delay = min(batch.max_poll, delay * 1.5)


async def _recover(run_dir: Path, ledger: Ledger, endpoints: dict[str, BatchEndpoint], keys: dict, say,
                   adapters: dict) -> None:
    """Settle the submissions a kill interrupted during the create call: the batch the provider made is put on
    record (and collected like any other); a batch that was never made leaves its requests to be sent again."""
    for token, intent in list(ledger.intents.items()):
        found = endpoints.get(intent["endpoint"])
        if found is None:
            continue
        batch_id = await _adapter(adapters, found[0], keys).find(intent, set(ledger.submitted))
        if batch_id is None:
            _append(run_dir, {"event": "abandoned", "token": token})
            say(f"a submission to {intent['endpoint']} interrupted before the batch was created: sent again")
        else:
            _append(run_dir, {k: v for k, v in intent.items() if k != "time"} | {"event": "submitted",
                                                                                "batch_id": batch_id, "found": True})
            say(f"batch {batch_id} ({intent['endpoint']}): found after an interrupted submission")
        ledger.intents.pop(token)


def _batch_endpoints(config: Config, answers: Answers, keys: dict, options: RunOptions,
                     budget) -> dict[str, BatchEndpoint]:
    out = {}
    for cfg in list(config.targets) + [config.grader]:
        if cfg.batch:
            out[cfg.name] = (cfg, make_endpoint(cfg, answers, keys, config.seed, options.cache, budget, config.prices,
                                                options.wrap))
    return out


async def _phases(config: Config, suite: Suite, answers: Answers, run_dir: Path, keys: dict, options: RunOptions,
                  monitor: Monitor, batch: BatchOptions) -> Ledger:
    say = batch.progress or (lambda line: None)
    budget = monitor.budget
    endpoints = _batch_endpoints(config, answers, keys, options, budget)
    reserved: dict[str, float] = {}
    adapters: dict = {}
    try:
        return await _rounds(config, suite, answers, run_dir, keys, options, budget, batch, say, endpoints, reserved,
                             adapters)
    finally:
        for adapter in adapters.values():
            await adapter.client.close()


async def _rounds(config, suite, answers, run_dir, keys, options, budget, batch, say, endpoints, reserved,
                  adapters) -> Ledger:
    for round_number in range(MAX_ROUNDS):
        ledger = Ledger.read(run_dir)          # what was submitted and collected so far, as a resume would see it
        if ledger.intents:
            await _recover(run_dir, ledger, endpoints, keys, say, adapters)
            ledger = Ledger.read(run_dir)
        await _wait_and_collect(run_dir, ledger, endpoints, keys, budget, reserved, batch, say, adapters)
        wanted = await _collect_pass(config, suite, answers, keys, options, ledger, budget)
        if not wanted:
            break
        say(f"batch round {round_number + 1}: {len(wanted)} requests to send")
        try:
            reserved |= await _submit(run_dir, wanted, keys, budget, say, adapters)
        except BudgetExceeded as exc:
            raise RunStopped(f"cost ceiling reached: {exc}; spent ${budget.spent:.4f} in this session") from None
    return Ledger.read(run_dir)


def _config_of(endpoint: Endpoint, config: Config) -> EndpointConfig:
    """The config an endpoint was made from (make_endpoint names it after the config)."""
    return next(c for c in list(config.targets) + [config.grader] if c.name == endpoint.name)


def run_batched(config: Config, suite: Suite, answers: Answers, run_dir: Path, keys: dict[str, str | None],
                options: RunOptions, monitor: Monitor | None = None, batch: BatchOptions | None = None,
                argv: list[str] | None = None) -> Monitor:
    """A run whose batch endpoints go through the providers' batch APIs: rounds of batches until every reply is in
    the response cache, then the ordinary run writes the results (nothing is called again)."""
    monitor, batch = monitor or Monitor(), batch or BatchOptions()
    if options.cache is None:
        raise InputError([Problem(str(run_dir), 0, 0, "a batch run keeps its replies in the response cache; expected "
                                  "no --no-cache with batch endpoints")])
    run_dir = Path(run_dir)
    if (run_dir / BATCHES).exists() and not options.resume:
        raise InputError([Problem(str(run_dir / BATCHES), 0, 0, "this run directory already has batches; expected "
                                  "--resume to collect them, or a new --out folder")])
    monitor.budget.max_cost = options.max_cost
    with run_lock(run_dir):
        ledger = asyncio.run(_phases(config, suite, answers, run_dir, keys, options, monitor, batch))
    spent = monitor.budget.spent
    final = replace(options, wrap=_collectors(config, ledger, False, {}))
    monitor = run(config, suite, answers, run_dir, keys, final, monitor, argv)
    monitor.budget.spent = max(monitor.budget.spent, spent)
    return monitor


def status(run_dir: Path) -> list[str]:
    """Where a run stands, from RUN/batches.jsonl and results.jsonl alone (no model or provider is called)."""
    run_dir = Path(run_dir)
    ledger = Ledger.read(run_dir)
    lines = []
    for bid, record in ledger.submitted.items():
        state = "collected" if bid in ledger.collected else "submitted, waiting"
        if seen := ledger.states.get(bid):
            counts = ", ".join(f"{k} {v}" for k, v in seen.get("counts", {}).items())
            state += f"; {seen['status']}" + (f" ({counts})" if counts else "") + f" at {seen.get('time', '?')}"
        lines.append(f"batch {bid} ({record['endpoint']}): {len(record['custom_ids'])} requests, {state} "
                     f"(submitted {record.get('time', '?')})")
    for intent in ledger.intents.values():
        lines.append(f"a submission of {len(intent['custom_ids'])} requests to {intent['endpoint']} was interrupted "
                     f"(at {intent.get('time', '?')}); `bilan run --resume` looks for its batch before sending it "
                     "again")
    failed = [cid for cid in ledger.failed if ledger.final_failure(cid)]
    rows = read_results(run_dir) if (run_dir / RESULTS).exists() else []
    lines.append(f"{len(ledger.submitted)} batches, {len(ledger.pending())} waiting; {len(failed)} requests failed for "
                 f"good; {len(rows)} results written")
    return lines


def with_batch(config: Config) -> Config:
    """`bilan run --batch`: batch: true on every target and grader whose provider has a batch API."""
    on = lambda e: replace(e, batch=True) if e.provider in with_batch_api() else e
    return replace(config, targets=tuple(on(t) for t in config.targets), grader=on(config.grader))


def uses_batches(config: Config) -> bool:
    """True when any endpoint goes through a batch API."""
    return any(e.batch for e in list(config.targets) + [config.grader])


REQUESTS = "requests"        # RUN/requests/<endpoint>.jsonl: `bilan batch export`, in the OpenAI batch format


def export_requests(config: Config, suite: Suite, answers: Answers, run_dir: Path, keys: dict,
                    options: RunOptions) -> dict[str, Path]:
    """Write the requests the cache cannot answer, per openai endpoint, in the OpenAI batch input format (what
    `vllm run-batch -i` reads); one round: import the output, then export again for the grading."""
    if options.cache is None:
        raise InputError([Problem(str(run_dir), 0, 0, "batch export needs the response cache; expected no --no-cache")])
    on = lambda e: replace(e, batch=e.provider == "openai")
    config = replace(config, targets=tuple(on(t) for t in config.targets), grader=on(config.grader))
    wanted = asyncio.run(_collect_pass(config, suite, answers, keys, options, Ledger(), Budget()))
    out: dict[str, Path] = {}
    by_endpoint: dict[str, list[bytes]] = {}
    for key, (cfg, _, messages, params) in wanted.items():
        adapter = MODEL_APIS["openai"].load("batch_adapter")(cfg, None)
        by_endpoint.setdefault(cfg.name, []).append(adapter.line(key, messages, params))
    folder = Path(run_dir) / REQUESTS
    folder.mkdir(parents=True, exist_ok=True)
    for name, lines in by_endpoint.items():
        out[name] = folder / f"{name.replace('/', '_')}.jsonl"
        write_file(out[name], b"".join(lines))
    return out


def import_results(file: Path, options: RunOptions) -> tuple[int, int]:
    """Take an OpenAI batch output file (vLLM's `run-batch -o`, or OpenAI's) into the response cache: (replies
    stored, items with an error, left out)."""
    from .providers.openai import reply_of
    if options.cache is None:
        raise InputError([Problem(str(file), 0, 0, "batch import needs the response cache; expected no --no-cache")])
    from types import SimpleNamespace          # only Endpoint.store is used: no provider is called
    stub: Any = SimpleNamespace(name="import")
    store = Endpoint(stub, asyncio.Semaphore(1), RetryPolicy(), cache=options.cache, scope={})
    stored = errors = 0
    problems = []
    if not Path(file).is_file():
        raise InputError([Problem(str(file), 0, 0, "not found; expected an OpenAI batch output file")])
    for number, item in enumerate(jsonl.read_objects(Path(file), "one batch result per line"), 1):
        response, cid = item.get("response") or {}, item.get("custom_id")
        if not isinstance(cid, str) or len(cid) != 64:
            problems.append(Problem(str(file), number, 1, "expected a custom_id written by `bilan batch export`"))
            continue
        if response.get("status_code") != 200 or item.get("error"):
            errors += 1
            continue
        try:
            reply = reply_of(response["body"], 0.0)
        except Exception as exc:        # a malformed body is named with its line, never a traceback
            why = str(exc) if isinstance(exc, ProviderError) else type(exc).__name__      # reply_of says what lacks
            problems.append(Problem(str(file), number, 1, f"not a chat completion ({why}); expected "
                                    "the OpenAI batch output format"))
            continue
        store.store(cid, reply)
        stored += 1
    if problems:
        raise InputError(problems)
    return stored, errors
