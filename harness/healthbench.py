"""HealthBench interoperability: its data as a Bilan suite, its reference scoring, its all-results export, and
its meta-eval labels in the clinician-label store.

The reference formula here is written from HealthBench's description (../shared/context/healthbench.md
sections 2.4 to 2.6), independently of Bilan's own scoring, so that a test can show the two agree.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import agreement, jsonl
from .errors import InputError, Problem
from .langid import detect, is_known_tag
from .load import display
from .store import read_results, text_sha256
from .types import THEMES
from .yamldoc import read_text
from .graders.labels import answer_sha256
from .healthbench_export import BOOTSTRAP_RESAMPLES, export_healthbench

HB_AXES = ("accuracy", "completeness", "communication_quality", "context_awareness", "instruction_following")
META_TARGET = "meta-eval"
META_AXIS = "unspecified"
MAX_INPUT_BYTES = 2_000_000_000
PERSONAS = {"physician_agreed_category:health-professional": "health_professional",
            "physician_agreed_category:not-health-professional": "layperson"}
SYNTHETIC_NOTE = ("# HealthBench conversations were written by physicians for the benchmark; they are not real "
                  "patient\n"
                  "# data, which is what `synthetic: true` asserts.\n")
MODEL_GRADER_NOTE = ("# These criteria have no deterministic check, so the rules grader leaves every one not graded: a "
                     "run\n"
                     "# checks the plumbing and scores nothing. To score as HealthBench does, grade with a model:\n"
                     "#   grader: {provider: openai, model: gpt-4.1, api_key_env: OPENAI_API_KEY}\n")


# --- reading JSONL with located problems --------------------------------------------------------------

@dataclass(frozen=True)
class Line:
    """One JSONL record and where it came from, to locate problems."""

    path: str
    number: int
    text: str
    data: Any

    def problem(self, key: str, message: str, severity: str = "error") -> Problem:
        """A problem about a field of this record, at the column where the field's name appears."""
        name = re.split(r"[.\[]", key)[0]
        col = self.text.find(json.dumps(name) + ":") + 1 or self.text.find(json.dumps(name)) + 1
        return Problem(self.path, self.number, max(col, 1), f"{key}: {message}", severity)


def read_jsonl(path: Path, problems: list[Problem]) -> list[Line]:
    """Every JSON object of a JSONL file; malformed lines and non-objects become problems."""
    shown = display(path)
    if not path.is_file():
        problems.append(Problem(shown, 0, 0, "file not found; expected a JSONL file"))
        return []
    text, found = read_text(path, shown, limit=MAX_INPUT_BYTES)
    problems.extend(found)
    lines = []
    for number, raw in jsonl.lines(text or ""):     # "\n" only: HealthBench's records hold raw U+2028
        try:
            data = jsonl.loads(raw)
        except jsonl.LineError as exc:
            problems.append(Problem(shown, number, exc.col, f"{exc.message}; expected one JSON object per line"))
            continue
        if not isinstance(data, dict):
            problems.append(Problem(shown, number, 1, "expected a JSON object"))
            continue
        lines.append(Line(shown, number, raw, data))
    if text is not None and not lines and not problems:
        problems.append(Problem(shown, 1, 1, "no records; expected one JSON object per line"))
    return lines


def _show(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)[:60]


def _message_problems(line: Line, key: str) -> list[Problem]:
    messages = line.data.get(key)
    if not isinstance(messages, list) or not messages:
        return [line.problem(key, "expected a non-empty list of {role, content} messages")]
    out = []
    for i, m in enumerate(messages):
        role = m.get("role") if isinstance(m, dict) else None
        if role not in ("user", "assistant"):
            out.append(line.problem(f"{key}[{i}].role", f"expected user or assistant, got {_show(role)}"))
        elif not isinstance(m.get("content"), str) or not m["content"]:
            out.append(line.problem(f"{key}[{i}].content", "expected non-empty text"))
    if not out and messages[-1]["role"] != "user":
        out.append(line.problem(f"{key}[{len(messages) - 1}].role",
                                "the conversation ends with an assistant turn; expected a user turn last"))
    return out


def _is_points(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool) and float(value).is_integer()
            and -10 <= value <= 10 and value != 0)


def _rubric_problems(line: Line) -> list[Problem]:
    rubrics = line.data.get("rubrics")
    if not isinstance(rubrics, list) or not rubrics:
        return [line.problem("rubrics", "expected a non-empty list of rubric items")]
    out = []
    for i, item in enumerate(rubrics):
        key = f"rubrics[{i}]"
        if not isinstance(item, dict):
            out.append(line.problem(key, "expected an object with criterion, points and tags"))
            continue
        if not isinstance(item.get("criterion"), str) or not item["criterion"].strip():
            out.append(line.problem(key + ".criterion", "expected non-empty text"))
        if not _is_points(item.get("points")):
            out.append(line.problem(key + ".points",
                                    f"expected a non-zero integer from -10 to 10, got {_show(item.get('points'))}"))
        tags = item.get("tags")
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            out.append(line.problem(key + ".tags", "expected a list of tags such as axis:accuracy"))
            continue
        axes = [t for t in tags if t.startswith("axis:")]
        if len(axes) != 1 or axes[0][5:] not in HB_AXES:
            out.append(line.problem(key + ".tags", "expected exactly one axis tag, one of "
                                                   f"{', '.join('axis:' + a for a in HB_AXES)}; got {_show(axes)}"))
    if not out and not any(item["points"] > 0 for item in rubrics):
        out.append(line.problem("rubrics", "no criterion has positive points; expected at least one (HealthBench's "
                                           "score needs it)"))
    return out


def _example_problems(line: Line) -> list[Problem]:
    data, out = line.data, _message_problems(line, "prompt") + _rubric_problems(line)
    if not isinstance(data.get("prompt_id"), str) or not scenario_id(data["prompt_id"]):
        out.append(line.problem("prompt_id",
                                f"expected an id of letters and digits, got {_show(data.get('prompt_id'))}"))
    tags = data.get("example_tags")
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        out.append(line.problem("example_tags", "expected a list of tags such as theme:hedging"))
    elif len(themes := [t for t in tags if t.startswith("theme:")]) != 1 or themes[0][6:] not in THEMES:
        out.append(line.problem("example_tags", "expected exactly one theme tag, one of "
                                                f"{', '.join('theme:' + t for t in THEMES)}; got {_show(themes)}"))
    ideal = data.get("ideal_completions_data")
    if ideal is not None:
        refs = ideal.get("ideal_completions_ref_completions") if isinstance(ideal, dict) else None
        if not isinstance(ideal, dict) or not isinstance(ideal.get("ideal_completion"), str):
            out.append(line.problem("ideal_completions_data.ideal_completion",
                                    "expected text (or ideal_completions_data: null)"))
        elif refs is not None and (not isinstance(refs, list) or not all(isinstance(r, str) for r in refs)):
            out.append(line.problem("ideal_completions_data.ideal_completions_ref_completions",
                                    "expected a list of texts"))
        if isinstance(ideal, dict) and (group := ideal.get("ideal_completions_group")) is not None and not (
                isinstance(group, str) and normalise_tag(group)):
            out.append(line.problem("ideal_completions_data.ideal_completions_group",
                                    f'expected a group name such as "Group 1", got {_show(group)}'))
    return out


# --- turning records into Bilan files ------------------------------------------------------------------

def scenario_id(prompt_id: str) -> str:
    """A kebab-case scenario id from a HealthBench prompt_id (a UUID stays as it is)."""
    return re.sub(r"[^a-z0-9]+", "-", prompt_id.lower()).strip("-")


def normalise_tag(tag: str) -> str:
    """A tag reshaped to the case-tag pattern: lowercase words joined by single '-', '_' or ':'."""
    text = re.sub(r"[^a-z0-9_:-]+", "-", tag.lower())
    text = re.sub(r"[-_:]{2,}", lambda m: m.group(0)[0], text)
    return text.strip("-_:")


def detect_language(messages: Sequence[dict]) -> str:
    """The language of a conversation's user turns (any Arabic-script Arabic as ar), or en when unsure."""
    label = detect("\n".join(m["content"] for m in messages if m["role"] == "user"))
    return label if label != "und" and is_known_tag(label) else "en"


# libyaml's emitter where PyYAML was built with it: ~7x faster than the pure-Python one, the same text.
_BaseDumper: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class _Dumper(_BaseDumper):  # type: ignore[valid-type,misc]
    """Block-style YAML: multi-line text as literal blocks, text the loader would read as another type quoted."""


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    # Plain only for text that starts with a letter and is no keyword, so "null", "12" or "1e3" stay text under
    # both YAML 1.1 and 1.2 readings; line breaks other than \n are escaped only inside double quotes.
    style: str | None
    if _OTHER_BREAKS.search(value):
        style = '"'
    elif "\n" in value:
        style = "|"                         # a block scalar is always text
    else:
        style = '"' if not value[:1].isalpha() or value.lower() in _KEYWORDS else None
    return dumper.represent_scalar(_STR, value, style=style)


_STR = "tag:yaml.org,2002:str"
_OTHER_BREAKS = re.compile("[\r\x85\u2028\u2029]")
_KEYWORDS = {"null", "true", "false", "yes", "no", "on", "off", "y", "n"}
_Dumper.add_representer(str, _text)


def dump_yaml(data: dict) -> str:
    """YAML text that Bilan's loader reads back to exactly `data`."""
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100, default_flow_style=False)


def _case_yaml(scenario: str, title: str, theme: str, persona: str, tags: list[str], language: str,
               messages: Sequence[dict], origin: str) -> str:
    head: dict[str, Any] = {"scenario": scenario, "title": title, "theme": theme, "use_case": "healthbench",
                            "persona": persona}
    if tags:
        head["tags"] = tags
    variant = {"language": language, "conversation": [{"role": m["role"], "content": m["content"]} for m in messages]}
    return (f"# Imported by `bilan import` from {origin}.\n" + dump_yaml(head) + SYNTHETIC_NOTE
            + "synthetic: true\n" + dump_yaml({"variants": [variant]}))


def _rubric_yaml(scenario: str, criteria: list[dict], origin: str, sources: list[str]) -> str:
    return (f"# Criteria written by HealthBench's physicians, imported as they are from {origin}.\n"
            + dump_yaml({"rubric": scenario, "applies_to": {"scenario": scenario}})
            + "# draft for Bilan: HealthBench's physicians wrote these criteria; no Bilan clinician has reviewed "
              "them.\n"
            + dump_yaml({"review": {"status": "draft", "reviewers": []}, "sources": sources, "criteria": criteria}))


def _criteria(rubrics: Sequence[dict]) -> list[dict]:
    out = []
    for i, item in enumerate(rubrics, 1):
        criterion = {"id": f"c{i:02d}", "text": item["criterion"], "points": int(item["points"]),
                     "axis": next(t[5:] for t in item["tags"] if t.startswith("axis:"))}
        if tags := [t for t in item["tags"] if not t.startswith("axis:")]:
            criterion["tags"] = tags
        out.append(criterion)
    return out


LOCALE_YAML = """\
# HealthBench has no locale: its criteria name no phone number. The format needs one number, so this file
# holds 112, the emergency number that mobile networks route in most countries.
locale: hb
name: HealthBench (no locale)
numbers:
  gsm_emergency: {number: "112", label: GSM emergency number, confidence: medium}
"""


def _config_yaml(header: str, axes: Sequence[str], targets: list[dict], grader_note: str) -> str:
    suite = {"cases": "cases", "rubrics": "rubrics", "locale": "locale.yaml", "axes": list(axes)}
    return (header + dump_yaml({"suite": suite, "targets": targets}) + grader_note
            + dump_yaml({"grader": {"provider": "rules"}, "seed": 0, "bootstrap": BOOTSTRAP_RESAMPLES,
                         "output": "runs"}))


@dataclass
class ImportSummary:
    """What an import wrote."""

    out: Path
    records: int = 0
    cases: int = 0
    criteria: int = 0
    languages: Counter = field(default_factory=Counter)
    answer_sets: dict[str, int] = field(default_factory=dict)
    labels: int = 0
    reviewers: int = 0
    warnings: list[Problem] = field(default_factory=list)


def _refuse_used(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError([Problem(display(out), 0, 0, "already exists and is not an empty folder; expected a new or "
                                                      "empty folder for the suite")])


def _write(out: Path, files: dict[str, str]) -> None:
    for relative, text in files.items():
        path = out / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def _jsonl(rows: Sequence[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def _example_files(line: Line, source: str) -> tuple[str, dict[str, str], dict[str, dict]]:
    """Case language, case and rubric files, and the answers by set, for one valid example."""
    data = line.data
    scenario, tags = scenario_id(data["prompt_id"]), data["example_tags"]
    theme = next(t[6:] for t in tags if t.startswith("theme:"))
    # The physician completion's group (who wrote it, with which model references shown) stays as a case tag, so
    # that each group's baseline (simple-evals' physician_completions mode) is that tag's metric in an export.
    group = (data.get("ideal_completions_data") or {}).get("ideal_completions_group")
    grouped = [normalise_tag(f"ideal_completions_group:{group}")] if group else []
    kept = list(dict.fromkeys([t for t in map(normalise_tag, tags) if t and not t.startswith("theme:")] + grouped))
    language = detect_language(data["prompt"])
    origin = f"{source} line {line.number} (HealthBench prompt_id {data['prompt_id']})"
    case_id, persona = f"{scenario}.{language}", next((PERSONAS[t] for t in tags if t in PERSONAS), "unspecified")
    files = {f"cases/{theme}/{scenario}.yaml": _case_yaml(scenario,
                                                          f"HealthBench example {data['prompt_id']} ({theme})", theme,
                                                          persona, kept, language, data["prompt"], origin),
             f"rubrics/{scenario}.yaml": _rubric_yaml(scenario, _criteria(data["rubrics"]), origin,
                                                      [f"HealthBench {source}:{line.number}"])}
    answers = {}
    if (ideal := data.get("ideal_completions_data")) is not None:
        answers["physician-ideal"] = {"case_id": case_id, "answer": ideal["ideal_completion"]}
        for k, ref in enumerate(ideal.get("ideal_completions_ref_completions") or [], 1):
            answers[f"reference-{k}"] = {"case_id": case_id, "answer": ref}
    return language, files, answers


def _answer_targets(sets: dict[str, list[dict]]) -> list[dict]:
    notes = {name: f"Model-written reference completion {name[10:]} shown to the physicians (HealthBench "
                   "ideal_completions_ref_completions)." for name in sets} | {
        "physician-ideal": "Physician-written ideal completion (HealthBench ideal_completions_data)."}
    return [{"name": name, "provider": "replay", "answers": f"answers/{name}.jsonl", "description": notes[name]}
            for name in sorted(sets, key=lambda n: (n != "physician-ideal", n))]


def import_healthbench(source: Path, out: Path) -> ImportSummary:
    """Write a Bilan suite (cases, rubrics, locale, answer sets, bilan.yaml) from a HealthBench JSONL file."""
    problems: list[Problem] = []
    lines = read_jsonl(source, problems)
    seen: dict[str, int] = {}
    for line in lines:
        found = _example_problems(line)
        problems.extend(found)
        if not found and (first := seen.setdefault(scenario_id(line.data["prompt_id"]), line.number)) != line.number:
            problems.append(line.problem("prompt_id", f"'{line.data['prompt_id']}' is already used on line {first}; "
                                                      "expected unique ids"))
    if problems:
        raise InputError(problems)
    _refuse_used(out)
    summary, files, sets = ImportSummary(out, records=len(lines)), {}, defaultdict(list)
    for line in lines:
        language, example_files, answers = _example_files(line, source.name)
        _write(out, example_files)          # as it is made: 4,300 examples' YAML is never held at once
        for name, row in answers.items():
            sets[name].append(row)
        summary.languages[language] += 1
        summary.criteria += len(line.data["rubrics"])
    summary.cases, summary.answer_sets = len(lines), {k: len(v) for k, v in sets.items()}
    files.update({f"answers/{name}.jsonl": _jsonl(rows) for name, rows in sets.items()})
    targets = _answer_targets(sets) or [{"name": "gpt-4.1-mini", "provider": "openai", "model": "gpt-4.1-mini",
                                         "api_key_env": "OPENAI_API_KEY",
                                         "description": "No example has a physician completion to replay."}]
    header = (f"# HealthBench suite imported by `bilan import healthbench {source.name}`: {len(lines)} examples; the\n"
              "# targets replay the physicians' ideal completions and the model references they were shown.\n")
    files["bilan.yaml"] = _config_yaml(header, HB_AXES, targets, MODEL_GRADER_NOTE)
    files["locale.yaml"] = LOCALE_YAML
    _write(out, files)
    return summary


# --- meta-eval import ----------------------------------------------------------------------------------

def _meta_problems(line: Line) -> list[Problem]:
    data, out = line.data, _message_problems(line, "prompt")
    for key in ("completion", "rubric", "category"):
        if not isinstance(data.get(key), str) or not data[key].strip():
            out.append(line.problem(key, "expected non-empty text"))
    labels, ids = data.get("binary_labels"), data.get("anonymized_physician_ids")
    if not isinstance(labels, list) or not labels or not all(isinstance(v, bool) for v in labels):
        out.append(line.problem("binary_labels", "expected a non-empty list of true/false labels"))
    elif not isinstance(ids, list) or len(ids) != len(labels) or not all(isinstance(i, (str, int))
                                                                         and not isinstance(i, bool) for i in ids):
        out.append(line.problem("anonymized_physician_ids", f"expected one physician id per label ({len(labels)})"))
    if isinstance(data.get("category"), str) and _theme_of(data["category"]) is None:
        out.append(line.problem("category",
                                f"{_show(data['category'])} names no HealthBench theme; expected cluster:<theme>_..."))
    return out


def _theme_of(category: str) -> str | None:
    name = category.removeprefix("cluster:")
    return next((t for t in sorted(THEMES, key=len, reverse=True) if name.startswith(t + "_")), None)


def _reviewer_file(reviewer: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", reviewer).strip("._") or "reviewer"
    return safe if safe == reviewer else f"{safe}-{answer_sha256(reviewer)[:8]}"


@dataclass
class _MetaCase:
    scenario: str
    language: str
    line: Line
    criteria: dict[tuple[str, str], str] = field(default_factory=dict)    # (rubric, category) -> criterion id

    @property
    def case_id(self) -> str:
        return f"{self.scenario}.{self.language}"


def _meta_case(line: Line, cases: dict[str, _MetaCase]) -> _MetaCase:
    prompt, completion = line.data["prompt"], line.data["completion"]
    key = json.dumps(prompt, ensure_ascii=False, sort_keys=True) + "\x00" + completion
    digest = text_sha256(key)
    if digest not in cases:
        scenario = f"meta-{digest[:16]}"
        cases[digest] = _MetaCase(scenario, detect_language(prompt), line)
    return cases[digest]


def _meta_labels(lines: Sequence[Line], summary: ImportSummary) -> tuple[dict[str, _MetaCase], dict[str, list[dict]]]:
    cases: dict[str, _MetaCase] = {}
    labels: dict[str, list[dict]] = defaultdict(list)
    given: dict[tuple, bool] = {}
    for line in lines:
        case = _meta_case(line, cases)
        key = (line.data["rubric"], line.data["category"])
        criterion = case.criteria.setdefault(key, f"c{len(case.criteria) + 1:02d}")
        for met, reviewer in zip(line.data["binary_labels"], map(str, line.data["anonymized_physician_ids"])):
            label_key = (reviewer, case.case_id, criterion)
            if label_key in given:
                if given[label_key] != met:
                    summary.warnings.append(line.problem("binary_labels", f"physician {reviewer} already labelled this "
                                                         "criterion differently; the first label is kept", "warning"))
                continue
            given[label_key] = met
            labels[reviewer].append({"target": META_TARGET, "case_id": case.case_id, "sample": 0,
                                     "criterion": criterion, "met": met, "reviewer": reviewer,
                                     "answer_sha256": answer_sha256(line.data["completion"])})
    return cases, labels


def _meta_case_files(case: _MetaCase, source: str) -> dict[str, str]:
    data = case.line.data
    theme = _theme_of(next(iter(case.criteria))[1])
    assert theme is not None, case.scenario     # every category was checked when its line was read
    criteria = [{"id": cid, "text": rubric, "points": 1, "axis": META_AXIS, "tags": [category]}
                for (rubric, category), cid in case.criteria.items()]
    language = case.language
    origin = f"{source} line {case.line.number}" + (f" (HealthBench prompt_id {data['prompt_id']})"
                                                    if isinstance(data.get("prompt_id"), str) else "")
    return {f"cases/{theme}/{case.scenario}.yaml": _case_yaml(case.scenario, "HealthBench meta-eval completion "
                                                                             f"{case.scenario[5:]} ({theme})",
                                                              theme, "unspecified", ["healthbench-meta"], language,
                                                              data["prompt"], origin),
            f"rubrics/{case.scenario}.yaml": _rubric_yaml(case.scenario, criteria, origin,
                                                          [f"HealthBench meta-eval {source}"])}


def import_meta_eval(source: Path, out: Path) -> ImportSummary:
    """Write a Bilan suite from HealthBench meta-eval records, with the physicians' labels in DIR/labels/."""
    problems: list[Problem] = []
    lines = read_jsonl(source, problems)
    for line in lines:
        problems.extend(_meta_problems(line))
    if problems:
        raise InputError(problems)
    summary = ImportSummary(out, records=len(lines))
    cases, labels = _meta_labels(lines, summary)
    files: dict[str, str] = {}
    for case in cases.values():
        files.update(_meta_case_files(case, source.name))
        summary.languages[case.language] += 1
        summary.criteria += len(case.criteria)
    files[f"answers/{META_TARGET}.jsonl"] = _jsonl([{"case_id": c.case_id, "answer": c.line.data["completion"]}
                                                    for c in cases.values()])
    files.update({f"labels/{_reviewer_file(r)}.jsonl": _jsonl(rows) for r, rows in labels.items()})
    header = (f"# HealthBench meta-eval imported by `bilan import healthbench-meta {source.name}`: one case per "
              "distinct\n"
              "# prompt and completion, one +1 criterion per rubric (the meta-eval judges each on its own), and the\n"
              "# physicians' labels in labels/<physician>.jsonl. Meta-eval records carry no axis.\n")
    target = {"name": META_TARGET, "provider": "replay", "answers": f"answers/{META_TARGET}.jsonl",
              "description": "The completions that HealthBench's physicians labelled."}
    files["bilan.yaml"] = _config_yaml(header, (META_AXIS,), [target], MODEL_GRADER_NOTE.replace(
        "To score as HealthBench does", "To compare a grader with the physicians"))
    files["locale.yaml"] = LOCALE_YAML
    _refuse_used(out)
    _write(out, files)
    summary.cases, summary.answer_sets = len(cases), {META_TARGET: len(cases)}
    summary.labels, summary.reviewers = sum(map(len, labels.values())), len(labels)
    return summary


# --- meta-eval agreement on a graded run ----------------------------------------------------------------

def read_labels(folder: Path) -> dict[tuple[str, str, int, str], list[tuple[str, bool, str | None]]]:
    """Clinician labels from DIR/labels/*.jsonl: (target, case_id, sample, criterion) ->
    [(reviewer, met, answer hash)]."""
    if not folder.is_dir():
        raise InputError([Problem(display(folder), 0, 0,
                                  "labels folder not found; expected DIR/labels with <reviewer>.jsonl files")])
    problems: list[Problem] = []
    out: dict[tuple[str, str, int, str], list[tuple[str, bool, str | None]]] = defaultdict(list)
    for path in sorted(folder.glob("*.jsonl")):
        for line in read_jsonl(path, problems):
            d = line.data
            if not (isinstance(d.get("target"), str) and isinstance(d.get("case_id"), str)
                    and isinstance(d.get("criterion"), str)
                    and isinstance(d.get("sample", 0), int) and isinstance(d.get("met"), bool)
                    and isinstance(d.get("reviewer"), str)):
                problems.append(Problem(line.path, line.number, 1,
                                        "expected a label {target, case_id, sample, criterion, met, reviewer}"))
                continue
            out[(d["target"], d["case_id"], d.get("sample", 0), d["criterion"])].append(
                (d["reviewer"], d["met"], d.get("answer_sha256")))
    if problems:
        raise InputError(problems)
    return out


def meta_agreement(run_dir: Path, labels_dir: Path, target: str = META_TARGET) -> dict[str, Any]:
    """HealthBench's meta-eval figures for a graded run: the grader against every clinician label, and each
    clinician against the others (leave one out), overall and by category (a criterion's first tag)."""
    labels = read_labels(labels_dir)
    grader, references, grader_groups, items, groups = [], [], [], [], []
    for row in read_results(run_dir):
        digest = answer_sha256(row.answer or "")
        for v in row.verdicts if row.target == target else ():
            given = [(who, met) for who, met, sha in labels.get((*row.key, v.id), []) if sha in (None, digest)]
            if not given:
                continue
            group = (v.tags or (v.id,))[0]
            items.append(given)
            groups.append(group)
            if v.met is not None:
                grader.append(v.met)
                references.append([met for _, met in given])
                grader_groups.append(group)
    model = agreement.rater_metrics(grader, references, grader_groups)
    return {"score": model["overall"]["f1_balanced"]["value"], "model": model,
            "physicians": agreement.leave_one_out(items, groups), "items": len(items),
            "ungraded": len(items) - len(grader)}


# --- command line -------------------------------------------------------------------------------------

def _print_summary(summary: ImportSummary, what: str) -> None:
    for warning in summary.warnings:
        print(warning, file=sys.stderr)
    langs = ", ".join(f"{lang} {n}" for lang, n in summary.languages.most_common())
    sets = ", ".join(f"{name} ({n})" for name, n in summary.answer_sets.items())
    labels = f"; {summary.labels} labels from {summary.reviewers} physicians in labels/" if summary.reviewers else ""
    print(f"imported {summary.records} {what} -> {summary.out}: {summary.cases} cases ({langs}), {summary.criteria} "
          f"criteria, answer sets {sets or '(none)'}{labels}\nnext: bilan validate --config "
          f"{summary.out / 'bilan.yaml'}")


def cmd_import(args: argparse.Namespace) -> int:
    """Convert a HealthBench or HealthBench meta-eval JSONL file into a Bilan suite."""
    if args.format == "healthbench":
        _print_summary(import_healthbench(Path(args.file), Path(args.out)), "examples")
    else:
        _print_summary(import_meta_eval(Path(args.file), Path(args.out)), "meta-eval records")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Write one target of a run as HealthBench's all-results JSON."""
    result = export_healthbench(Path(args.run_dir), args.target)
    Path(args.out).write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    m = result["metrics"]
    score = (f"{result['score']:.3f} (bootstrap std {m['overall_score:bootstrap_std']:.3f})"
             if result["score"] is not None else "n/a")
    print(f"{args.out}: score {score} over {len(result['metadata']['example_level_metadata'])} answers; "
          f"left out: {m['bilan:not_answered']} cases not answered, {m['bilan:unscored_answers']} answers without a "
          f"score, {m['bilan:ungraded_criteria']} criteria not graded")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `bilan import healthbench|healthbench-meta FILE --out DIR` and
    `bilan export healthbench RUN_DIR --out FILE`."""
    p = subparsers.add_parser("import", help="convert HealthBench data into a Bilan suite")
    kinds = p.add_subparsers(dest="format", required=True)
    for name, text in (("healthbench", "HealthBench examples (main, hard or consensus JSONL)"),
                       ("healthbench-meta", "HealthBench meta-eval records, with the physicians' labels")):
        q = kinds.add_parser(name, help=text)
        q.add_argument("file", help="the JSONL file")
        q.add_argument("--out", required=True, help="a new or empty folder for the suite")
        q.set_defaults(func=cmd_import)
    p = subparsers.add_parser("export", help="write a run in another benchmark's result format")
    kinds = p.add_subparsers(dest="format", required=True)
    q = kinds.add_parser("healthbench", help="HealthBench's all-results JSON, for its notebooks and plots")
    q.add_argument("run_dir", help="a run directory written by `bilan run`")
    q.add_argument("--out", required=True, help="the JSON file to write")
    q.add_argument("--target", help="the target to export (needed when the run has several)")
    q.set_defaults(func=cmd_export)
