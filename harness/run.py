"""Wire the stages: stream each (target, case, sample) through generate -> grade -> append, then report."""
from __future__ import annotations

import asyncio
import json
import datetime as dt
import platform
import sys
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

from .generate import generate
from .grade import result_row
from .graders.llm import PROMPT_VERSION, ModelGrader
from .graders.rules import RulesGrader
from .providers.anthropic import AnthropicProvider
from .providers.base import Endpoint, RetryPolicy
from .providers.openai import OpenAIProvider
from .providers.replay import ReplayProvider
from .analyze import summarize
from .report import write_reports
from .store import MANIFEST, RunStore, read_json, read_results, sha256_file, write_json
from .types import Case, Config, EndpointConfig, Suite

PROVIDERS = {"openai": OpenAIProvider, "anthropic": AnthropicProvider}
Answers = dict[str, dict[tuple[str, int], str]]


def make_endpoint(cfg: EndpointConfig, answers: Answers, keys: dict[str, str | None], seed: int) -> Endpoint:
    """A provider for an endpoint config, under its own concurrency limit and retry policy."""
    if cfg.provider == "replay":
        provider = ReplayProvider(cfg, answers.get(cfg.name, {}))
    else:
        provider = PROVIDERS[cfg.provider](cfg, keys.get(cfg.name))
    policy = RetryPolicy(max_attempts=cfg.max_attempts, timeout=cfg.timeout)
    return Endpoint(provider, asyncio.Semaphore(cfg.max_concurrency), policy, seed)


def make_grader(config: Config, suite: Suite, answers: Answers, keys: dict[str, str | None]):
    """The configured grader: rules alone, or a model (with checks first when use_checks is on)."""
    rules = RulesGrader(suite.locale)
    if config.grader.provider == "rules":
        return rules
    return ModelGrader(make_endpoint(config.grader, answers, keys, config.seed), rules, config.grader.use_checks)


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
    base = Path(config.path).parent
    files = [Path(config.path)] + sorted({Path(c.source.rsplit(":", 1)[0]).resolve() for c in suite.cases})
    files += sorted(p for p in Path(config.rubrics).rglob("*.y*ml"))
    files += [Path(f) for t in config.targets for f in t.answers]
    hashes = {}
    for f in files:
        try:
            hashes[str(Path(f).resolve().relative_to(base.resolve()))] = sha256_file(Path(f))
        except ValueError:
            hashes[str(f)] = sha256_file(Path(f))
    endpoint = lambda e: {k: v for k, v in vars(e).items() if k not in ("system_prompt", "answers") and v not in (None, "", ())}
    return {
        "run_id": run_id, "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": argv or sys.argv, "config_file": config.path,
        "targets": [endpoint(t) | {"system_prompt_sha256": _sha(t.system_prompt)} for t in config.targets],
        "grader": endpoint(config.grader) | {"prompt_version": PROMPT_VERSION},
        "seed": config.seed, "bootstrap": config.bootstrap, "axes": list(config.axes),
        "languages": sorted({c.language for c in suite.cases}), "cases": len(suite.cases),
        "files": hashes, "versions": _versions(),
    }


def _sha(text: str | None) -> str | None:
    import hashlib
    return hashlib.sha256(text.encode("utf-8")).hexdigest() if text else None


def jobs(config: Config, suite: Suite) -> Iterator[tuple[EndpointConfig, Case, int]]:
    """Every unit of work, in a stable order: target, then case, then sample."""
    for target in config.targets:
        for case in suite.cases:
            for sample in range(target.samples):
                yield target, case, sample


async def run_async(config: Config, suite: Suite, answers: Answers, run_dir: Path,
                    keys: dict[str, str | None], on_result: Callable[[dict], None] | None = None) -> int:
    """Generate, grade and append every result; returns the number of rows written."""
    endpoints = {t.name: make_endpoint(t, answers, keys, config.seed) for t in config.targets}
    grader = make_grader(config, suite, answers, keys)
    work = jobs(config, suite)
    written = 0

    async def worker(store: RunStore) -> None:
        nonlocal written
        for target, case, sample in work:
            answer = await generate(endpoints[target.name], target, case, sample)
            criteria = suite.criteria[case.id]
            verdicts = await grader.grade(case, answer.text, criteria) if answer.text is not None else []
            row = result_row(case, answer, criteria, verdicts, suite.axes)
            store.append(row)
            written += 1
            if on_result:
                on_result(row)

    width = max(1, sum(t.max_concurrency for t in config.targets))
    with RunStore(run_dir) as store:
        await asyncio.gather(*(worker(store) for _ in range(width)))
    return written


def run(config: Config, suite: Suite, answers: Answers, run_dir: Path, keys: dict[str, str | None],
        on_result: Callable[[dict], None] | None = None, argv: list[str] | None = None) -> Path:
    """Run the evaluation into run_dir (manifest first, results as they come); returns run_dir."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / MANIFEST, manifest(config, suite, run_dir.name, argv))
    asyncio.run(run_async(config, suite, answers, run_dir, keys, on_result))
    return run_dir


CASES = "cases.jsonl"


def snapshot_cases(suite: Suite, run_dir: Path) -> None:
    """Keep each case's title and conversation in the run directory, so reports need nothing else."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / CASES, "w", encoding="utf-8") as f:
        for c in suite.cases:
            f.write(json.dumps({"case_id": c.id, "scenario": c.scenario, "language": c.language, "title": c.title,
                                "review": c.review, "source": c.source,
                                "conversation": [{"role": m.role, "content": m.content} for m in c.conversation]},
                               ensure_ascii=False) + "\n")


def rebuild(run_dir: Path) -> dict[str, Any]:
    """Summarise a run directory's results and write its reports; no model call. Returns the summary."""
    run_dir = Path(run_dir)
    manifest_data = read_json(run_dir / MANIFEST)
    rows = read_results(run_dir)
    conversations = {}
    if (run_dir / CASES).exists():
        for line in (run_dir / CASES).read_text(encoding="utf-8").splitlines():
            if line.strip():
                case = json.loads(line)
                conversations[case["case_id"]] = case
    summary = summarize(rows, manifest_data.get("axes", []), manifest_data.get("seed", 0), manifest_data.get("bootstrap", 1000))
    summary["run_id"] = manifest_data.get("run_id")
    write_reports(run_dir, rows, summary, manifest_data, conversations)
    return summary
