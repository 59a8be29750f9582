"""The grader a config names, made with its endpoint."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..providers.base import Budget, Endpoint
from ..providers.endpoints import Answers, make_endpoint
from ..store import ResponseCache
from ..types import Config, Suite
from .labels import LabelsGrader, load_labels
from .llm import ModelGrader
from .rules import RulesGrader


def make_grader(config: Config, suite: Suite, answers: Answers, keys: dict[str, str | None],
                cache: ResponseCache | None = None, budget: Budget | None = None, endpoints: dict | None = None,
                wrap: Callable[[Endpoint], None] | None = None) -> RulesGrader | LabelsGrader | ModelGrader:
    """The configured grader: rules alone, clinicians' labels, or a model (with checks first when use_checks is
    on); a model grader's endpoint is added to `endpoints` as grader:<name>."""
    rules = RulesGrader(suite.locale)
    if config.grader.provider == "rules":
        return rules
    if config.grader.provider == "labels":
        return LabelsGrader(load_labels([Path(p) for p in config.grader.labels]))
    endpoint = make_endpoint(config.grader, answers, keys, config.seed, cache, budget, config.prices, wrap)
    if endpoints is not None:
        endpoints["grader:" + config.grader.name] = endpoint
    return ModelGrader(endpoint, rules, config.grader.use_checks, config.grader.mode, config.grader.compare_checks,
                       temperature=config.grader.temperature if config.grader.temperature is not None else 0.0,
                       max_tokens=config.grader.max_tokens)
