"""JSON Schemas of Bilan's file formats, and schema validation turned into located, readable problems."""
from __future__ import annotations

import difflib
import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema_rs
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match
from referencing import Registry, Resource

from ..errors import Problem
from ..yamldoc import Document

SCHEMA_DIR = Path(__file__).parent
_TYPE_WORDS = {"object": "a mapping", "array": "a list", "string": "a text string", "integer": "an integer",
               "number": "a number", "boolean": "true or false", "null": "nothing"}


@cache
def _registry() -> Registry:
    resources = []
    for file in sorted(SCHEMA_DIR.glob("*.schema.json")):
        schema = json.loads(file.read_text(encoding="utf-8"))
        schema["$id"] = file.resolve().as_uri()
        resources.append((schema["$id"], Resource.from_contents(schema)))
    return Registry().with_resources(resources)


@cache
def _quick(name: str) -> Any:
    """jsonschema-rs's validator for a format, compiled once: it only says whether a value is valid, some hundred
    times faster than jsonschema; a value it does not call valid goes through jsonschema, whose errors are the ones
    shown (tests/test_schemas_agree.py: both give the same verdict on every file the tests have)."""
    resources = [(uri, resource.contents) for uri, resource in _registry().items()]
    uri = (SCHEMA_DIR / f"{name}.schema.json").resolve().as_uri()
    return jsonschema_rs.validator_for(_registry().contents(uri), registry=jsonschema_rs.Registry(resources))


def is_valid(value: Any, name: str) -> bool:
    """True if the value is valid against a format's schema (False also when jsonschema-rs cannot hold it, such
    as an integer wider than 64 bits: jsonschema then decides)."""
    try:
        return bool(_quick(name).is_valid(value))
    except (ValueError, OverflowError, TypeError):
        return False


@cache
def validator(name: str) -> Draft202012Validator:
    """The validator for one format: case, rubric, locale, config, answer, check."""
    uri = (SCHEMA_DIR / f"{name}.schema.json").resolve().as_uri()
    return Draft202012Validator(_registry().contents(uri), registry=_registry())


def _describe_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "an empty value"
    if isinstance(value, str):
        return f"the text '{value[:60]}'"
    if isinstance(value, (list, dict)):
        return _TYPE_WORDS["array" if isinstance(value, list) else "object"]
    return repr(value)


def _expected(err: ValidationError) -> str | None:
    schema = err.schema if isinstance(err.schema, dict) else {}
    return schema.get("x-expected")


def _messages(err: ValidationError) -> list[tuple[tuple, str, bool]]:
    """(path, message, at_key) for one schema error, in words a clinician can act on."""
    path, kind, value = tuple(err.absolute_path), err.validator, err.instance
    expected = _expected(err)
    if "propertyNames" in err.absolute_schema_path and isinstance(value, str):   # a bad key: point at the key
        return [(path + (value,), f"{_describe_value(value)} is not valid; expected {expected or err.message}", True)]
    if kind == "additionalProperties":
        allowed = list(err.schema.get("properties", {}))
        out = []
        for key in (k for k in value if k not in allowed):
            close = difflib.get_close_matches(key, allowed, 1, 0.6)
            hint = f"did you mean '{close[0]}'?" if close else f"expected one of {', '.join(allowed)}"
            out.append((path + (key,), f"unknown key '{key}'; {hint}", True))
        return out
    if kind == "required":
        props = err.schema.get("properties", {})
        return [(path, f"missing key '{k}'"
                 + (f": {props[k]['description']}" if props.get(k, {}).get("description") else ""), False)
                for k in err.validator_value if k not in value]
    if kind == "enum":
        return [(path, f"{_describe_value(value)} is not allowed; expected one of "
                       f"{', '.join(map(str, err.validator_value))}", False)]
    if kind == "type":
        want = err.validator_value if isinstance(err.validator_value, list) else [err.validator_value]
        hint = ""
        if "string" in want and isinstance(value, dict) and len(value) == 1:
            hint = " (an unquoted ': ' makes a mapping; put the whole text in quotes)"
        return [(path, f"expected {' or '.join(_TYPE_WORDS.get(str(t), str(t)) for t in want)}, got "
                       f"{_describe_value(value)}{hint}", False)]
    if kind in ("anyOf", "oneOf") and err.context:
        branch = _matching_branch(err)
        if branch:
            return [m for e in branch for m in _messages(e)]
        if not expected:
            return _messages(best_match(err.context))
    if kind == "minLength" and not expected:
        return [(path, "is empty; expected some text", False)]
    if kind in ("minItems", "minProperties") and not expected:
        return [(path, f"is empty; expected at least {err.validator_value} item(s)", False)]
    if kind in ("minimum", "maximum") and not expected:
        word = "small; expected at least" if kind == "minimum" else "large; expected at most"
        return [(path, f"{_describe_value(value)} is too {word} {err.validator_value}", False)]
    if kind == "uniqueItems":
        return [(path, "has duplicate items; expected each item once", False)]
    if kind == "pattern" and not expected:
        return [(path, f"{_describe_value(value)} does not match the pattern {err.validator_value}", False)]
    if expected is None and kind == "not":
        expected = "a different value"
    if expected is None:
        parent = err.parent
        expected = _expected(parent) if parent is not None else None
    return [(path, f"{_describe_value(value)} is not valid; expected {expected}" if expected else err.message, False)]


def _matching_branch(err: ValidationError) -> list[ValidationError] | None:
    """The errors of the one alternative whose type fits the value, if exactly one fits."""
    branches: dict[int, list[ValidationError]] = {}
    for e in err.context:
        branches.setdefault(e.relative_schema_path[0], []).append(e)
    fitting = [errs for errs in branches.values()
               if not any(e.validator == "type" and not e.relative_path for e in errs)]
    return fitting[0] if len(fitting) == 1 else None


def schema_errors(doc: Document, name: str) -> list[tuple[tuple, Problem]]:
    """Validate a parsed document against a format's schema: (path, located problem) for each, no repeats."""
    seen: set[Problem] = set()
    out: list[tuple[tuple, Problem]] = []
    if is_valid(doc.data, name):
        return out
    for err in validator(name).iter_errors(doc.data):
        for path, message, at_key in _messages(err):
            if any(path[:len(b)] == b for b in doc.broken):
                continue
            problem = doc.problem(path, message, key=at_key)
            if problem not in seen:
                seen.add(problem)
                out.append((path, problem))
    return out


def value_problems(value: Any, name: str) -> list[tuple[tuple, str]]:
    """Validate a plain value (e.g. a JSON line) against a format's schema; (path, message) pairs."""
    if is_valid(value, name):
        return []
    found = [(path, message) for err in validator(name).iter_errors(value) for path, message, _ in _messages(err)]
    return list(dict.fromkeys(found))     # one line per problem (a `required` error lists every missing key)
