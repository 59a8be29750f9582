"""Core values of Bilan: frozen dataclasses, no I/O."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

THEMES = ("emergency_referrals", "global_health", "communication", "context_seeking", "hedging",
          "health_data_tasks", "complex_responses")
AXES = ("safety", "clarity", "escalation", "context")


@dataclass(frozen=True)
class Message:
    """One conversation turn."""

    role: str
    content: str


@dataclass(frozen=True)
class Case:
    """One language variant of a scenario: the unit that is answered and graded."""

    id: str
    scenario: str
    language: str
    conversation: tuple[Message, ...]
    title: str = ""
    theme: str = ""
    use_case: str = ""
    persona: str = ""
    tags: tuple[str, ...] = ()
    code_switch: tuple[str, ...] = ()
    review: str = "draft"
    file: str = ""                  # the case file it was read from, and the line of its variant
    line: int = 0

    @property
    def source(self) -> str:
        """Where the case is written, as `file:line`."""
        return f"{self.file}:{self.line}"


@dataclass(frozen=True)
class Criterion:
    """One rubric criterion, with its placeholders resolved."""

    id: str
    text: str
    points: int
    axis: str
    check: Any = None          # the check as written (dict), or None: needs a model grader
    tags: tuple[str, ...] = ()
    rubric: str = ""
    compiled: Any = field(default=None, compare=False, repr=False)   # the check compiled at load (checks.Check)


@dataclass(frozen=True)
class Locale:
    """Named phone numbers and lists that criteria refer to."""

    code: str
    name: str
    numbers: dict[str, str] = field(default_factory=dict)
    lists: dict[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class Suite:
    """Every case with the criteria that apply to it."""

    cases: tuple[Case, ...]
    criteria: dict[str, tuple[Criterion, ...]]   # case id -> criteria
    locale: Locale
    axes: tuple[str, ...] = AXES
    warnings: tuple = ()                       # Problems of severity "warning" found while loading


@dataclass(frozen=True)
class EndpointConfig:
    """A model endpoint: a target to evaluate or a model grader."""

    name: str
    provider: str
    model: str = ""
    base_url: str | None = None
    api_key_env: str | None = None
    system_prompt: str | None = None
    answers: tuple[str, ...] = ()          # replay files
    temperature: float | None = None
    max_tokens: int | None = None
    max_concurrency: int = 8
    timeout: float = 120.0
    max_attempts: int = 4
    backoff: float = 1.0                   # first retry waits up to this many seconds (doubling, with jitter)
    samples: int = 1
    description: str = ""
    use_checks: bool = False
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    mode: str = "per_criterion"            # model graders: per_criterion or batched
    compare_checks: bool = False           # model graders: also grade checked criteria, keep both verdicts
    labels: tuple[str, ...] = ()           # labels grader: folders or files of clinician labels
    max_reply_bytes: int = 1_000_000       # a reply's body larger than this is an error of kind too_large
    batch: bool = False                    # calls go through the provider's batch API (openai, anthropic)


@dataclass(frozen=True)
class Config:
    """A run configuration (bilan.yaml) with paths made absolute."""

    path: str
    cases: str
    rubrics: str
    locale: str
    targets: tuple[EndpointConfig, ...]
    grader: EndpointConfig
    seed: int = 0
    output: str = "reports"
    bootstrap: int = 1000
    axes: tuple[str, ...] = AXES
    # model -> {input, output} USD per million tokens
    prices: dict[str, dict[str, float]] = field(default_factory=dict)
    identifiers: str = "warn"                 # realistic identifiers in cases: warn, error or off


@dataclass(frozen=True)
class Usage:
    """Tokens and latency of one call."""

    input_tokens: int = 0
    output_tokens: int = 0
    latency: float = 0.0
    cached: bool = False


@dataclass(frozen=True)
class Answer:
    """A target's answer to a case, or the error that prevented one."""

    target: str
    case_id: str
    sample: int = 0
    text: str | None = None
    error: str | None = None
    usage: Usage = Usage()
    refusal: bool = False           # the model declined; its text (perhaps empty) is the answer, graded as any
    error_kind: str | None = None   # how it failed (ProviderError.kind: missing, timeout, rate_limit, server, ...)


@dataclass(frozen=True)
class Verdict:
    """A grader's decision on one criterion: met is True, False, or None (not graded)."""

    criterion_id: str
    met: bool | None
    grader: str
    explanation: str = ""
    error: str | None = None
    usage: Usage | None = None      # model graders: tokens and latency of the call(s) behind this verdict
    mode: str = ""                  # model graders: per_criterion or batched
    version: str = ""               # model graders: the grader prompt version
    check_met: bool | None = None   # compare_checks: the deterministic check's verdict
    model_met: bool | None = None   # compare_checks: the model's verdict
    error_kind: str | None = None   # why it is not graded, when error is set: parse, refusal, timeout, rate_limit, ...


class FieldLookup:
    """Read a record's fields by name too, as `row["case_id"]` or `row.get("answer")`, for scripts written
    against the JSON rows that `read_results` and the viewer's `Run.rows` used to give. The harness itself
    uses attributes."""

    __slots__ = ()

    def __getitem__(self, name: str) -> Any:
        if name not in self.__dataclass_fields__:  # type: ignore[attr-defined]
            raise KeyError(name)
        return getattr(self, name)

    def get(self, name: str, default: Any = None) -> Any:
        return getattr(self, name) if name in self.__dataclass_fields__ else default  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class CriterionResult(FieldLookup):
    """One criterion's line in a result row (results.jsonl's `verdicts`): the criterion's weight and axis beside
    the grader's decision. Written and read only by store.py; a field that a row written before it existed lacks
    takes its default."""

    id: str
    points: int
    axis: str
    met: bool | None
    rubric: str | None = None
    text: str | None = None
    tags: tuple[str, ...] = ()
    grader: str | None = None
    explanation: str | None = None
    error: str | None = None
    check: bool = False                  # the criterion has a deterministic check
    error_kind: str | None = None        # why it is not graded, when error is set (Verdict.error_kind)
    usage: Usage | None = None           # model graders: the call(s) behind this verdict
    grader_mode: str = ""                # model graders: per_criterion or batched
    prompt_version: str = ""
    check_met: bool | None = None        # compare_checks: the deterministic check's verdict and the model's
    model_met: bool | None = None


@dataclass(frozen=True, slots=True)
class ResultRow(FieldLookup):
    """One answer's record in results.jsonl: who, what, the verdicts and the scores. Written and read only by
    store.py; a field that a row written before it existed lacks takes its default."""

    target: str
    case_id: str
    language: str
    scenario: str | None = None
    code_switch: tuple[str, ...] = ()
    theme: str | None = None
    use_case: str | None = None
    persona: str | None = None
    sample: int = 0
    status: str | None = None            # ok, missing (the replay file has none) or error
    answer: str | None = None
    refusal: bool = False
    error: str | None = None
    error_kind: str | None = None        # how it failed (Answer.error_kind)
    usage: Usage = Usage()
    score: float | None = None
    axis_scores: dict[str, float | None] = field(default_factory=dict)
    graded: int = 0
    ungraded: int = 0
    answer_variety: str | None = None    # "ar" or "ary" for an Arabic-script answer (grade.answer_variety)
    verdicts: tuple[CriterionResult, ...] = ()

    @property
    def key(self) -> tuple[str, str, int]:
        """The unit this row answers: target, case, sample."""
        return (self.target, self.case_id, self.sample)
