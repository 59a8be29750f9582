"""Validation's quick path (issue 14): jsonschema-rs says whether a file is valid; only a file it does not call
valid goes through jsonschema, whose errors are shown. That is only right if jsonschema-rs never calls valid what
jsonschema rejects: checked here on every YAML and JSON file the project and its tests hold, valid and broken,
against every schema, and on values at the edges where the two libraries differ."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.schemas import SCHEMA_DIR, is_valid, validator
from harness.yamldoc import parse_yaml

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = sorted(p.name.removesuffix(".schema.json") for p in SCHEMA_DIR.glob("*.schema.json"))


def values() -> list[tuple[str, object]]:
    """Every value the project's files hold: each YAML document, and each line of each JSON Lines file."""
    out = []
    for folder in ("rubrics", "cases", "tests/data", "fairness"):
        for path in sorted((ROOT / folder).rglob("*")):
            if path.suffix in (".yaml", ".yml"):
                doc, _ = parse_yaml(path, str(path))
                if doc is not None:
                    out.append((str(path.relative_to(ROOT)), doc.data))
            elif path.suffix == ".jsonl":
                text = path.read_bytes().decode("utf-8", "replace")      # some are broken on purpose
                for number, line in enumerate(text.splitlines()[:50], 1):
                    try:
                        out.append((f"{path.relative_to(ROOT)}:{number}", json.loads(line)))
                    except ValueError:
                        continue
    return out


def rejected(value: object, schema: str) -> bool:
    return next(iter(validator(schema).iter_errors(value)), None) is not None


def test_the_quick_path_never_accepts_what_jsonschema_rejects():
    pairs = values()
    assert len(pairs) > 100
    wrong = [(where, schema) for where, value in pairs for schema in SCHEMAS
             if is_valid(value, schema) and rejected(value, schema)]
    assert not wrong, wrong[:10]


def test_the_quick_path_is_taken_on_the_shipped_suite():
    """Most of the speed: the shipped rubrics and cases are valid for both, so jsonschema never runs on them."""
    for folder, schema in (("rubrics", "rubric"), ("cases", "case")):
        paths = [p for p in (ROOT / folder).rglob("*.yaml") if "locales" not in p.parts]
        assert paths
        for path in paths:
            doc, problems = parse_yaml(path, str(path))
            assert doc is not None, problems
            assert is_valid(doc.data, schema) and not rejected(doc.data, schema), path


@pytest.mark.parametrize("value", [
    {"scenario": "chest-pain\n"},           # Python's `$` matches before a final newline; Rust's does not
    {"points": 10 ** 30},                   # wider than jsonschema-rs's 64-bit integers
    {"points": True},                       # a boolean is not an integer for either
    {"points": 5.0},                        # 5.0 is an integer in JSON Schema
    {"tags": ["a", "a"]},
    {"text": "ⵜⴰⵎⴰⵣⵉⵖⵜ العربية"},
    json.loads('{"id": "x", "nested": [[[[[]]]]]}'),
])
def test_edge_values_are_never_accepted_by_the_quick_path_alone(value):
    for schema in SCHEMAS:
        assert not (is_valid(value, schema) and rejected(value, schema)), schema
