"""YAML and answer files -> validated values. Every problem in the suite is collected before anything runs."""
from __future__ import annotations

import csv
import io
import re
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

from . import jsonl
from .checks import compile_check
from .errors import InputError, Problem, display
from .langid import family as langid_family, is_known_tag
from .model_apis import MODEL_APIS, with_batch_api
from .privacy import identifiers
from .schemas import schema_errors, validator, value_problems
from .types import AXES, Case, Config, Criterion, EndpointConfig, Locale, Message, Suite
from .yamldoc import Document, dotted, parse_cache, parse_yaml, read_text

_PLACEHOLDER = re.compile(r"\{([A-Za-z_]+)\.([^{}\s]+)\}")
PARSE_CACHE = "parsed.sqlite"           # in the cache folder, beside the response cache
LANGUAGE_HINT = "a BCP 47 tag such as ar, ary-Arab, ary-Latn, fr, en, zgh-Tfng, zgh-Latn"


def _yaml_files(folder: Path, skip: frozenset[Path] | set[Path] = frozenset()) -> list[Path]:
    return sorted(p for p in folder.rglob("*.y*ml") if p.suffix in (".yaml", ".yml") and p.resolve() not in skip)


def _parse(path: Path, schema: str, problems: list[Problem], items: str | None = None) -> Document | None:
    """Parse and schema-check a file; None if it cannot be used as a whole. With `items`, errors inside
    items[i] only mark that item invalid, so the other items are still used and cross-checked."""
    doc = _check(path, schema, problems, items)
    return doc if doc is not None and doc.valid else None


def _check(path: Path, schema: str, problems: list[Problem], items: str | None = None) -> Document | None:
    """Like _parse, but returns any parsed mapping, with `valid` saying whether it can be used as a whole."""
    doc, found = parse_yaml(path, display(path))
    problems.extend(found)
    if doc is None:
        return None
    if not isinstance(doc.data, dict):
        problems.append(doc.problem((), "expected a YAML mapping at the top of the file"))
        return None
    doc.valid = not doc.broken
    for where, problem in schema_errors(doc, schema):
        problems.append(problem)
        if items and len(where) >= 2 and where[0] == items and isinstance(where[1], int):
            doc.invalid_items.add(where[1])
        else:
            doc.valid = False
    return doc


# --- locale -----------------------------------------------------------------------------------------

def load_locale(path: Path, problems: list[Problem]) -> Locale:
    """Read the locale file: named numbers and named lists (of number names or literal numbers)."""
    doc = _parse(path, "locale", problems)
    if doc is None:
        return Locale("", "")
    data = doc.data
    numbers = {name: (v["number"] if isinstance(v, dict) else v) for name, v in data["numbers"].items()}
    lists = {}
    for name, items in data.get("lists", {}).items():
        resolved = []
        for i, item in enumerate(items):
            if item in numbers:
                resolved.append(numbers[item])
            elif re.fullmatch(r"\+?[0-9][0-9 ]*", item):
                resolved.append(item)
            else:
                problems.append(doc.problem(("lists", name, i), f"'{item}' is neither a number name nor a number; "
                                                                f"expected one of {', '.join(numbers)} or digits"))
        lists[name] = tuple(resolved)
    return Locale(data["locale"], data["name"], numbers, lists)


# --- cases ------------------------------------------------------------------------------------------

def _variant_problems(doc: Document, i: int, variant: Any) -> list[Problem]:
    """Cross-checks of one variant, defensive: they run even where the schema found other problems."""
    out: list[Problem] = []
    if not isinstance(variant, dict):
        return out
    base = ("variants", i)
    switch = variant.get("code_switch")
    tags: list[tuple[int | None, Any]] = [(None, variant.get("language"))]
    tags += list(enumerate(switch)) if isinstance(switch, list) else []
    for j, tag in tags:
        if isinstance(tag, str) and not is_known_tag(tag):
            where = base + (("language",) if j is None else ("code_switch", j))
            out.append(doc.problem(where, f"'{tag}' is not a known language tag; expected {LANGUAGE_HINT}"))
    conversation = variant.get("conversation")
    if isinstance(conversation, list) and conversation and isinstance(conversation[-1], dict) \
            and conversation[-1].get("role") == "assistant":
        out.append(doc.problem(base + ("conversation", len(conversation) - 1, "role"),
                               "the conversation ends with an assistant turn; expected it to end with a user turn"))
    return out


def _identifier_problems(doc: Document, i: int, variant: dict, public: tuple[str, ...], severity: str) -> list[Problem]:
    out = []
    for j, message in enumerate(variant["conversation"]):
        for what in identifiers(message["content"], public):
            out.append(doc.problem(("variants", i, "conversation", j, "content"), f"{what} looks like a real person's; "
                                   "expected synthetic cases only (invent a clearly fictitious value, or remove it)",
                                   severity=severity))
    return out


def _cases_of(doc: Document, problems: list[Problem], public: tuple[str, ...] = (),
              identifiers_mode: str = "warn") -> list[Case]:
    data, cases = doc.data, []
    for i, variant in enumerate(data["variants"]):
        problems.extend(_variant_problems(doc, i, variant))
        if identifiers_mode != "off" and i not in doc.invalid_items:
            problems.extend(_identifier_problems(doc, i, variant, public, "error" if identifiers_mode == "error"
                                                 else "warning"))
        if i in doc.invalid_items:
            continue
        cases.append(Case(
            id=variant.get("id", f"{data['scenario']}.{variant['language']}"), scenario=data["scenario"],
            language=variant["language"], title=data["title"], theme=data["theme"], use_case=data["use_case"],
            persona=data["persona"], tags=tuple(data.get("tags", ())),
            code_switch=tuple(variant.get("code_switch", ())),
            review=variant.get("review", "draft"), file=doc.path,
            line=doc.where(("variants", i))[0],
            conversation=tuple(Message(m["role"], m["content"]) for m in variant["conversation"])))
    return cases


def load_cases(folder: Path, problems: list[Problem], public: tuple[str, ...] = (),
               identifiers_mode: str = "warn") -> list[Case]:
    """Read every case file under a folder; scenario ids and case ids must be unique."""
    cases: list[Case] = []
    scenarios: dict[str, str] = {}
    if not folder.is_dir():
        problems.append(Problem(display(folder), 0, 0, "cases folder not found; expected a folder of case files"))
        return cases
    for path in _yaml_files(folder):
        doc = _check(path, "case", problems, items="variants")
        if doc is None:
            continue
        if not doc.valid:     # still cross-check its variants, so every problem shows in one pass
            for i, variant in enumerate(doc.data.get("variants") or [] if isinstance(doc.data.get("variants"), list)
                                        else []):
                problems.extend(_variant_problems(doc, i, variant))
            continue
        scenario = doc.data["scenario"]
        if scenario in scenarios:
            problems.append(doc.problem(("scenario",), f"scenario '{scenario}' is already defined in "
                                                       f"{scenarios[scenario]}; expected a unique id"))
            continue
        scenarios[scenario] = doc.path
        cases.extend(_cases_of(doc, problems, public, identifiers_mode))
    seen: dict[str, Case] = {}
    for case in cases:
        if case.id in seen:
            problems.append(Problem(case.file, case.line, 1, f"case id '{case.id}' is already used at "
                                                          f"{seen[case.id].source}; expected a unique id (give "
                                                          "variants that share a language an explicit id)"))
        seen[case.id] = case
    if not cases and folder.is_dir() and not problems:
        problems.append(Problem(display(folder), 0, 0, "no case files found; expected *.yaml files"))
    return cases


# --- rubrics ----------------------------------------------------------------------------------------

def _one_of(value: str, wanted: str | list[str]) -> bool:
    return value in ([wanted] if isinstance(wanted, str) else wanted)


def selects(selector: dict, case: Case) -> bool:
    """True if a rubric's applies_to selector matches the case (every given key must match)."""
    for key, value in (("scenario", case.scenario), ("theme", case.theme), ("use_case", case.use_case)):
        if key in selector and not _one_of(value, selector[key]):
            return False
    if "tags" in selector and not set(selector["tags"]) <= set(case.tags):
        return False
    return "languages" not in selector or case.language in selector["languages"]


def _resolve_text(doc: Document, path: tuple, text: str, locale: Locale, problems: list[Problem]) -> str:
    if not locale.code:     # the locale itself is broken: its own problems are reported instead
        return text

    def sub(match: re.Match) -> str:
        space, name = match.groups()
        table = {"numbers": locale.numbers, "lists": {k: ", ".join(v) for k, v in locale.lists.items()}}.get(space)
        if table is None:
            problems.append(doc.problem(path, f"unknown placeholder '{{{space}.{name}}}'; expected {{numbers.NAME}} or "
                                              "{lists.NAME}"))
        elif name not in table:
            problems.append(doc.problem(path, f"'{{{space}.{name}}}' is not in locale '{locale.code}'; expected one of "
                                              f"{', '.join(sorted(table))}"))
        else:
            return table[name]
        return match.group(0)
    return _PLACEHOLDER.sub(sub, text)


def _criteria_of(doc: Document, locale: Locale, axes: tuple[str, ...], problems: list[Problem]) -> list[Criterion]:
    out: list[Criterion] = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(doc.data["criteria"]):
        path = ("criteria", i)
        if i in doc.invalid_items:
            continue
        if raw["id"] in seen:
            problems.append(doc.problem(path + ("id",), f"criterion id '{raw['id']}' is already used at "
                                                        f"criteria[{seen[raw['id']]}]; expected a unique id"))
        seen[raw["id"]] = i
        if raw["axis"] not in axes:
            problems.append(doc.problem(path + ("axis",),
                                        f"unknown axis '{raw['axis']}'; expected one of {', '.join(axes)}"))
        compiled = None
        if "check" in raw:
            compiled, found = compile_check(raw["check"], locale, harmful=raw["points"] < 0)
            problems.extend(doc.problem(path + ("check",) + sub, msg) for sub, msg in found)
        out.append(Criterion(id=raw["id"], text=_resolve_text(doc, path + ("text",), raw["text"], locale, problems),
                             points=raw["points"], axis=raw["axis"], check=raw.get("check"),
                             tags=tuple(raw.get("tags", ())), rubric=doc.data["rubric"], compiled=compiled))
    return out


def _selector_problems(doc: Document, selector: dict, scenarios: set[str]) -> list[Problem]:
    """Selector values that name nothing: an unknown scenario, theme or language."""
    out = []
    themes = validator("case").schema["properties"]["theme"]["enum"]
    for key in ("scenario", "theme", "languages"):
        value = selector.get(key)
        for j, name in ([(None, value)] if isinstance(value, str) else list(enumerate(value or []))):
            where = ("applies_to", key) + (() if j is None else (j,))
            if key == "scenario" and name not in scenarios:
                out.append(doc.problem(where, f"no scenario '{name}' in the suite; expected an existing scenario id"))
            elif key == "theme" and name not in themes:
                out.append(doc.problem(where, f"'{name}' is not a theme; expected one of {', '.join(themes)}"))
            elif key == "languages" and not is_known_tag(name):
                out.append(doc.problem(where, f"'{name}' is not a known language tag; expected {LANGUAGE_HINT}"))
    return out


def load_rubrics(folder: Path, skip: set[Path], cases: list[Case], locale: Locale, axes: tuple[str, ...],
                 problems: list[Problem]) -> dict[str, tuple[Criterion, ...]]:
    """Read every rubric file and merge its criteria into the cases its selector matches."""
    merged: dict[str, list[Criterion]] = {c.id: [] for c in cases}
    origin: dict[tuple[str, str], str] = {}
    rubric_ids: dict[str, str] = {}
    scenarios = {c.scenario for c in cases}
    by_scenario: dict[str, list[Case]] = {}
    for case in cases:
        by_scenario.setdefault(case.scenario, []).append(case)
    for path in _yaml_files(folder, skip) if folder.is_dir() else []:
        doc = _parse(path, "rubric", problems, items="criteria")
        if doc is None:
            continue
        data = doc.data
        if data["rubric"] in rubric_ids:
            problems.append(doc.problem(("rubric",), f"rubric '{data['rubric']}' is already defined in "
                                                     f"{rubric_ids[data['rubric']]}; expected a unique id"))
        rubric_ids[data["rubric"]] = doc.path
        review = data["review"]
        if review["status"] == "clinician_reviewed" and not review.get("reviewers"):
            problems.append(doc.problem(("review", "reviewers"),
                                        "status is clinician_reviewed but no reviewer is named; "
                                        "expected the real names of the clinicians who reviewed it, or status: draft"))
        selector = data["applies_to"]
        wanted = selector.get("scenario")
        found = _selector_problems(doc, selector, scenarios)
        problems.extend(found)
        criteria = _criteria_of(doc, locale, axes, problems)
        pool = [c for name in ([wanted] if isinstance(wanted, str) else wanted) for c in by_scenario.get(name, [])] \
            if wanted else cases
        matched = [c for c in pool if selects(selector, c)]
        if not matched and not found and (not wanted or any(selects({"scenario": wanted}, c) for c in cases)):
            problems.append(doc.problem(("applies_to",),
                                        "this selector matches no case; expected it to select at least one"))
        clashes: dict[tuple[str, str], list[str]] = {}
        for case in matched:
            for crit in criteria:
                key = (case.id, crit.id)
                if key in origin and origin[key] != doc.path:
                    clashes.setdefault((crit.id, origin[key]), []).append(case.id)
                    continue
                origin[key] = doc.path
                merged[case.id].append(crit)
        index = {raw.get("id"): i for i, raw in reversed(list(enumerate(data["criteria"]))) if isinstance(raw, dict)}
        for (crit_id, other), case_ids in clashes.items():
            problems.append(doc.problem(("criteria", index[crit_id], "id"),
                                        f"criterion id '{crit_id}' also comes from {other} for "
                                        f"case(s) {', '.join(sorted(case_ids))}; expected ids unique per case"))
    for case in cases:
        if not any(c.points > 0 for c in merged[case.id]):
            problems.append(Problem(case.file, case.line, 1, f"case '{case.id}' has no positive criterion; expected a "
                                                          "rubric that applies to it"))
    return {k: tuple(v) for k, v in merged.items()}


def _suite(config: Config, problems: list[Problem]) -> Suite:
    locale = load_locale(Path(config.locale), problems)
    public = tuple(locale.numbers.values()) + tuple(n for ns in locale.lists.values() for n in ns)
    cases = load_cases(Path(config.cases), problems, public, config.identifiers)
    criteria = load_rubrics(Path(config.rubrics), {Path(config.locale).resolve()}, cases, locale, config.axes, problems)
    return Suite(cases=tuple(cases), criteria=criteria, locale=locale, axes=config.axes)


# --- configuration ----------------------------------------------------------------------------------

def _endpoint(doc: Document, path: tuple, raw: dict, base: Path, problems: list[Problem]) -> EndpointConfig:
    fields = {k: v for k, v in raw.items() if k not in ("answers", "system_prompt", "labels")}
    if raw["provider"] == "labels":
        entries = [raw["labels"]] if isinstance(raw.get("labels"), str) else raw.get("labels") or []
        if not entries:
            problems.append(doc.problem(path,
                                        "missing key 'labels': the labels grader needs the clinicians' label files"))
        for i, entry in enumerate(entries):
            if not (base / entry).exists():
                where = path + (("labels",) if isinstance(raw["labels"], str) else ("labels", i))
                problems.append(doc.problem(where, f"{display(base / entry)} not found; expected label files from "
                                                   "`bilan review import`"))
        fields["labels"] = tuple(str(base / e) for e in entries)
    elif "labels" in raw:
        problems.append(doc.problem(path + ("labels",), "'labels' is only for the labels grader, not "
                                                        f"{raw['provider']}; expected no labels here, or provider: "
                                                        "labels", key=True))
    provider = raw["provider"]
    if raw.get("batch") and provider not in with_batch_api():
        problems.append(doc.problem(path + ("batch",), f"the {provider} provider has no batch API; expected batch only "
                                    f"on an endpoint of {' or '.join(with_batch_api())}"))
    if provider in MODEL_APIS and "model" not in raw:
        problems.append(doc.problem(path, f"missing key 'model': the {provider} provider needs a model name"))
    if "system_prompt" in raw:
        file = base / raw["system_prompt"]
        text, found = read_text(file, display(file))
        if text is None:
            problems.append(doc.problem(path + ("system_prompt",),
                                        f"cannot read system prompt file {display(file)}; expected a text file"))
        fields["system_prompt"] = text
    answers = raw.get("answers")
    if provider == "replay":
        files: list[str] = []
        for i, entry in enumerate([answers] if isinstance(answers, str) else answers or []):
            where = path + (("answers",) if isinstance(answers, str) else ("answers", i))
            target = base / entry
            if target.is_dir():
                found = sorted(p for p in target.rglob("*") if p.suffix in (".jsonl", ".csv"))
                if not found:
                    problems.append(doc.problem(where, f"folder {display(target)} holds no .jsonl or .csv file"))
                files.extend(str(p) for p in found)
            elif target.is_file():
                files.append(str(target))
            else:
                problems.append(doc.problem(where, f"{display(target)} not found; expected a JSONL or CSV file, or a "
                                                   "folder of them"))
        if answers is None:
            problems.append(doc.problem(path, "missing key 'answers': a replay target needs its answer files"))
        fields["answers"] = tuple(files)
    elif answers is not None:
        problems.append(doc.problem(path + ("answers",), f"'answers' is only for the replay provider, not {provider}; "
                                                         "expected no answers here, or provider: replay", key=True))
    fields.setdefault("name", raw.get("model") or provider)
    return EndpointConfig(**fields)


def load_config(path: Path) -> Config:
    """Read bilan.yaml; raise InputError with every problem in it."""
    return _read_config(path)[0]


def _read_config(path: Path) -> tuple[Config, Document]:
    """The configuration and its parsed file, which says what was declared and where."""
    problems: list[Problem] = []
    if not path.is_file():
        raise InputError([Problem(display(path), 0, 0, "configuration file not found; expected a bilan.yaml")])
    doc = _parse(path, "config", problems, items="targets")
    if doc is None:
        raise InputError(problems)
    data, base = doc.data, path.parent
    suite = data["suite"]
    for key, what in (("cases", "a folder of case files"), ("rubrics", "a folder of rubric files"),
                      ("locale", "a locale file")):
        if not (base / suite[key]).exists():
            problems.append(doc.problem(("suite", key), f"{display(base / suite[key])} not found; expected {what}"))
    targets = []
    for i, raw in enumerate(data["targets"]):
        if i in doc.invalid_items:
            continue
        if "name" not in raw:
            problems.append(doc.problem(("targets", i),
                                        "missing key 'name': every target needs a name for the reports"))
        if raw["provider"] in ("rules", "labels"):
            problems.append(doc.problem(("targets", i, "provider"), f"'{raw['provider']}' grades answers but cannot "
                                                                    "give them; expected replay, openai or anthropic"))
        targets.append(_endpoint(doc, ("targets", i), raw, base, problems))
    for name, count in Counter(t.name for t in targets).items():
        if count > 1:
            problems.append(doc.problem(("targets",),
                                        f"target name '{name}' is used {count} times; expected unique names"))
    grader_raw = data.get("grader", {"provider": "rules"})
    if grader_raw["provider"] == "replay":
        problems.append(doc.problem(("grader", "provider"),
                                    "a grader cannot be replay; expected rules, openai or anthropic"))
    grader = _endpoint(doc, ("grader",), grader_raw, base, problems)
    if problems:
        raise InputError(problems)
    return Config(path=str(path.resolve()), cases=str(base / suite["cases"]), rubrics=str(base / suite["rubrics"]),
                  locale=str(base / suite["locale"]), targets=tuple(targets), grader=grader,
                  seed=data.get("seed", 0), output=str(base / data.get("output", "reports")),
                  bootstrap=data.get("bootstrap", 1000), axes=tuple(suite.get("axes", AXES)),
                  prices=data.get("prices", {}), identifiers=data.get("identifiers", "warn")), doc


# --- replay answers ---------------------------------------------------------------------------------

def _csv_problem(path: str, line: int, exc: csv.Error) -> Problem:
    text = str(exc)
    if "unexpected end of data" in text:
        text = "a quoted text that starts in this row is never closed; expected a closing quote (\")"
    elif "expected after" in text:
        text = "text after a closing quote; expected ',' after it (write a quote inside a quoted text as \"\")"
    elif "field larger than field limit" in text:
        text = f"a field longer than {csv.field_size_limit():,} characters; expected shorter answers, or a JSONL file"
    else:
        text = f"invalid CSV: {text}; expected comma-separated rows"
    return Problem(path, line, 1, text)


def _csv_rows(path: str, text: str, problems: list[Problem]) -> list[tuple[int, Any]]:
    if not text.strip():
        problems.append(Problem(path, 1, 1, "file is empty; expected a header line with case_id and answer, then one "
                                            "row per answer"))
        return []
    reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)
    try:
        header = list(reader.fieldnames or [])
    except csv.Error as exc:
        problems.append(_csv_problem(path, 1, exc))
        return []
    missing = {"case_id", "answer"} - set(header)
    if missing:
        hint = " (columns must be separated by commas, not semicolons)" if len(header) == 1 and ";" in header[0] else ""
        problems.append(Problem(path, 1, 1, f"missing column(s) {', '.join(sorted(missing))}; expected a header with "
                                            f"case_id and answer{hint}"))
        return []
    rows = []
    while True:
        before = reader.line_num
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:        # a syntax error: what follows cannot be trusted
            problems.append(_csv_problem(path, before + 1, exc))
            break
        values = [v for v in row.values() if isinstance(v, str)] + list(row.get(None) or [])
        line = reader.line_num - sum(v.count("\n") for v in values)
        if None in row or None in row.values():
            extra = None in row
            count = len(header) + len(row[None]) if extra else sum(v is not None for v in row.values())
            problems.append(Problem(path, line, 1,
                                    f"row has {count} field(s); expected {len(header)}, as in the header "
                                    f"({', '.join(header)})" + ("; a text holding ',' needs quotes" if extra else "")))
            continue
        row = {k: v for k, v in row.items() if v != "" or k == "answer"}
        if "sample" in row and re.fullmatch(r"[-+]?[0-9]{1,9}", row["sample"]):
            row["sample"] = int(row["sample"])
        rows.append((line, row))
    return rows


def _rows(path: Path, problems: list[Problem]) -> list[tuple[int, Any]]:
    text, found = read_text(path, display(path), limit=200_000_000)
    problems.extend(found)
    if text is None:
        return []
    if path.suffix == ".csv":
        return _csv_rows(display(path), text, problems)
    rows = []
    for n, line in jsonl.lines(text):
        try:
            rows.append((n, jsonl.loads(line)))
        except jsonl.LineError as exc:
            problems.append(Problem(display(path), n, exc.col, f"{exc.message}; expected one JSON object per line"))
    return rows


def load_answers(files: tuple[str, ...], case_ids: set[str], problems: list[Problem], samples: int | None = None,
                 declared_by: str = "") -> dict[tuple[str, int], str]:
    """Read replay answer files into {(case_id, sample): answer}; unknown cases and duplicates are problems, and so
    is a sample at or beyond `samples` when the configuration declares that many (`declared_by` says where)."""
    answers: dict[tuple[str, int], str] = {}
    where: dict[tuple[str, int], str] = {}
    for file in files:
        path = Path(file)
        for line, row in _rows(path, problems):
            found = value_problems(row, "answer") if isinstance(row, dict) else [((), "expected a JSON object")]
            if found:
                problems.extend(Problem(display(path), line, 1, (f"{dotted(p)}: " if p else "") + m) for p, m in found)
                continue
            key = (row["case_id"], row.get("sample", 0))
            if row["case_id"] not in case_ids:
                problems.append(Problem(display(path), line, 1, f"case_id: unknown case '{row['case_id']}'; expected "
                                                                "an id of the suite such as <scenario>.<language>"))
            elif samples is not None and key[1] >= samples:
                problems.append(Problem(display(path), line, 1, _beyond(key[1], samples, declared_by)))
            elif key in answers:
                problems.append(Problem(display(path), line, 1, f"case '{key[0]}' sample {key[1]} is already answered "
                                                                f"at {where[key]}; expected one answer per case and "
                                                                "sample"))
            else:
                answers[key], where[key] = row["answer"], f"{display(path)}:{line}"
    return answers


def _beyond(sample: int, samples: int, declared_by: str) -> str:
    allowed = f"a sample from 0 to {samples - 1}" if samples > 1 else "sample 0"
    return (f"sample: {sample} is beyond the {samples} sample{'s' if samples != 1 else ''} that {declared_by}; "
            f"expected {allowed}, or samples: {sample + 1} or more, or no samples key on a replay target (then its "
            "files decide)")


def _replay_target(doc: Document, index: int, target: EndpointConfig, case_ids: set[str],
                   problems: list[Problem]) -> tuple[EndpointConfig, dict[tuple[str, int], str]]:
    """A replay target's answers, and the target with as many samples as they hold unless `samples` is declared:
    then a sample beyond it is a problem, never dropped."""
    if "samples" in doc.data["targets"][index]:
        line, _ = doc.where(("targets", index, "samples"))
        declared_by = f"target '{target.name}' declares ({doc.path}:{line})"
        return target, load_answers(target.answers, case_ids, problems, target.samples, declared_by)
    answers = load_answers(target.answers, case_ids, problems)
    return replace(target, samples=max((sample for _, sample in answers), default=0) + 1), answers


def load_expected(files: tuple[str, ...]) -> dict[tuple[str, int], dict[str, bool]]:
    """The expected verdicts written beside replay answers, for testing checks."""
    out = {}
    for file in files:
        for _, row in _rows(Path(file), []):
            if isinstance(row, dict) and "expected" in row:
                out[(row["case_id"], row.get("sample", 0))] = row["expected"]
    return out


def load_project(config_path: Path, cache_dir: Path | None = None) -> tuple[Config, Suite,
                                                                          dict[str, dict[tuple[str, int], str]]]:
    """Configuration, suite and replay answers, checked together: one InputError with every problem. With
    `cache_dir`, a YAML file whose text was parsed before is read from its parse cache (yamldoc.ParseCache)."""
    with parse_cache(cache_dir / PARSE_CACHE if cache_dir is not None else None):
        config, doc = _read_config(config_path)
        problems: list[Problem] = []
        suite = _suite(config, problems)
    case_ids = {c.id for c in suite.cases}
    answers, targets = {}, []
    for i, target in enumerate(config.targets):
        if target.provider == "replay":
            target, answers[target.name] = _replay_target(doc, i, target, case_ids, problems)
        targets.append(target)
    if any(p.severity == "error" for p in problems):
        raise InputError(problems)
    return replace(config, targets=tuple(targets)), replace(suite, warnings=tuple(sorted(problems))), answers


def phrase_gaps(suite: Suite) -> dict[str, tuple[int, int]]:
    """Per case language: (phrase checks with no phrases for it, phrase checks applying to its cases), counted once
    per rubric criterion. Where the first is high, the rules grader abstains and leaves the most to a model."""
    seen: dict[str, dict[tuple[str, str, int], bool]] = {}
    for case in suite.cases:
        family = langid_family(case.language)
        cell = seen.setdefault(case.language, {})
        for criterion in suite.criteria[case.id]:
            if criterion.compiled is None:
                continue
            for k, phrases in enumerate(criterion.compiled.phrase_checks()):
                cell[(criterion.rubric, criterion.id, k)] = phrases.covers(family)
    return {language: (sum(not v for v in cell.values()), len(cell)) for language, cell in sorted(seen.items())}
