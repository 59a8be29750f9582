"""Property-based and fuzz tests of the loaders and the checks: never a crash, never a hang, always located.

Random bytes and YAML-ish text go into every loader (cases, rubrics, locale, config, replay answers in JSONL
and CSV): each either succeeds or reports problems that name the file and a line and column inside it.
Random check structures go through the schema and the checks compiler, and random answer texts (Arabic,
Tifinagh, Latin, bidi controls, emoji, very long) through every check type: a verdict or a `timeout:`, nothing
else. Examples are derandomised so CI is stable; BILAN_FUZZ_EXAMPLES=5000 explores more on demand.
Crashes that fuzzing found are kept below as plain regression tests.
"""
from __future__ import annotations

import atexit
import csv
import io
import json
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bounded import finishes
from conftest import run_and_export
from harness import checks
from harness.checks import AnswerView, CheckTimeout, compile_check, visible_text
from harness.errors import InputError, Problem
from harness.graders.rules import RulesGrader
from harness.load import display, load_answers, load_cases, load_config, load_locale, load_rubrics
from harness.schemas import value_problems
from harness.types import AXES, Case, Criterion, Locale, Message
from harness.yamldoc import parse_yaml

SUITE = Path(__file__).parent / "data" / "suite"
EXAMPLES = int(os.environ.get("BILAN_FUZZ_EXAMPLES", "0"))
FUZZ = settings(max_examples=EXAMPLES or 60, deadline=None, derandomize=not EXAMPLES, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
LOCALE = Locale("ma", "Morocco", {"civil_protection": "15", "samu": "141", "poison_centre": "0801 000 180"},
                {"emergency_numbers": ("15", "141", "112"), "foreign_emergency_numbers": ("911", "999")})
LANGUAGES = ("ar", "ary-Arab", "ary-Latn", "fr", "en", "zgh-Tfng", "zgh-Latn")

# --- inputs ------------------------------------------------------------------------------------------

KEYS = ["scenario", "title", "theme", "use_case", "persona", "tags", "synthetic", "variants", "language", "id",
        "code_switch", "review", "conversation", "role", "content", "rubric", "applies_to", "criteria", "text",
        "points", "axis", "check", "regex", "any_of", "all_of", "mentions", "max_words", "any", "all", "not",
        "locale", "name", "numbers", "lists", "number", "confidence", "suite", "cases", "rubrics", "targets",
        "provider", "answers", "grader", "seed", "status", "reviewers", "scenario", "all", "languages"]
WORDS = ["chest-pain", "heat-stroke", "fr", "ary-Arab", "zgh-Tfng", "user", "assistant", "true", "false", "no",
         "yes", "~", "null", "15", "-3", "10", "1e3", "0x1F", "2.5", "safety", "clarity", "hedging", "triage",
         "patient", "draft", "replay", "rules", "emergency_numbers", "samu", "same_as_user", "(a|aa)+$", "[0-9",
         "{numbers.samu}", "{lists.nope}", "عيط على 15", "ⵜⵉⵢⵜⵉ", "3ayet l 15", "café", "😀", "\u202eevil\u202c"]
PUNCT = [": ", ":", "- ", "-", "[", "]", "{", "}", ", ", "&a ", "*a", "!!str ", "!tag ", "? ", "| ", "> ", "'", '"',
         "# ", "\t", "\n", "\n  ", "\n    ", "  ", "---\n", "...\n", "%YAML 1.2\n", "<<: ", "\\", "@", "`", "%",
         "\x00", "\x07", "\ufeff", "\r\n", "\u2028", "\ud7ff", "\U0001f600"]
yamlish = st.lists(st.sampled_from(KEYS + WORDS + PUNCT) | st.text(max_size=6), max_size=80).map("".join)
scalars = st.none() | st.booleans() | st.integers(-20, 20) | st.floats(allow_nan=False, width=32) | \
    st.sampled_from(WORDS) | st.text(max_size=12)
structures = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) |
                          st.dictionaries(st.sampled_from(KEYS), inner, max_size=6), max_leaves=25)


def _mutate(text: str, draw) -> str:
    """Cut, duplicate or splice a line of valid YAML, so most of it stays meaningful."""
    lines = text.splitlines(keepends=True) or [""]
    i = draw(st.integers(0, len(lines) - 1))
    action = draw(st.sampled_from(["cut", "dup", "splice", "indent", "dedent", "keep"]))
    if action == "cut":
        del lines[i]
    elif action == "dup":
        lines.insert(i, lines[i])
    elif action == "splice":
        at = draw(st.integers(0, len(lines[i])))
        lines[i] = lines[i][:at] + draw(st.sampled_from(PUNCT + WORDS)) + lines[i][at:]
    elif action == "indent":
        lines[i] = "  " + lines[i]
    elif action == "dedent":
        lines[i] = lines[i].lstrip()
    return "".join(lines)


def valid_yaml_mutant(files: list[Path]):
    """A real file of the small suite, with one line cut, doubled, spliced, indented or dedented."""
    @st.composite
    def mutant(draw):
        source = draw(st.sampled_from(files))
        return _mutate(source.read_text(encoding="utf-8"), draw).encode("utf-8", "surrogatepass")
    return mutant()


def structured(top_keys: list[str]):
    """A YAML dump of a random structure whose top keys are the format's own, so the schema runs deep."""
    return st.dictionaries(st.sampled_from(top_keys), structures, min_size=1, max_size=len(top_keys)).map(
        lambda d: yaml.safe_dump(d, allow_unicode=True, sort_keys=False).encode("utf-8"))


def contents(mutants, top_keys: list[str]):
    return st.one_of(st.binary(max_size=400), yamlish.map(lambda t: t.encode("utf-8", "surrogatepass")),
                     structured(top_keys), mutants)


CASE_KEYS = ["scenario", "title", "theme", "use_case", "persona", "tags", "synthetic", "variants"]
RUBRIC_KEYS = ["rubric", "applies_to", "review", "sources", "criteria"]
LOCALE_KEYS = ["locale", "name", "numbers", "lists"]
CONFIG_KEYS = ["suite", "targets", "grader", "seed", "bootstrap", "output", "prices", "identifiers"]

# --- helpers -----------------------------------------------------------------------------------------


_ROOT: list[Path] = []


@contextmanager
def workdir():
    """A private copy of the small suite (made once) as the working directory, so messages show paths relative
    to it. Tests write only files named fuzz*, and remove them."""
    if not _ROOT:
        root = Path(tempfile.mkdtemp(prefix="bilan-fuzz-")) / "suite"
        shutil.copytree(SUITE, root, ignore=shutil.ignore_patterns("runs"))
        atexit.register(shutil.rmtree, root.parent, True)
        _ROOT.append(root)
    root, cwd = _ROOT[0], os.getcwd()
    os.chdir(root)
    try:
        yield root
    finally:
        os.chdir(cwd)
        for leftover in root.rglob("fuzz*"):
            leftover.unlink()


def _lines(raw: bytes) -> int:
    """Lines in a file, counting every line break YAML knows (\\r alone, U+2028 ...) as well as \\n."""
    text = raw.decode("utf-8", "replace")
    return max(raw.count(b"\n"), len(re.findall("\r\n|[\r\n\x85\u2028\u2029]", text))) + 1


def assert_located(problems: list[Problem], files: dict[str, bytes]) -> None:
    """Each problem names one of the files, with a line and column inside it, on one printed line."""
    assert all(isinstance(p, Problem) for p in problems)
    for p in problems:
        assert p.path in files, p
        assert 1 <= p.line <= _lines(files[p.path]), p
        assert p.col >= 1, p
        assert p.message and "Traceback" not in p.message, p
        assert str(p).isprintable(), p


def _suite_cases() -> list[Case]:
    problems: list[Problem] = []
    with workdir() as root:
        cases = load_cases(root / "cases", problems)
    assert not [p for p in problems if p.severity == "error"]
    return cases


CASES = _suite_cases()

# --- loaders -----------------------------------------------------------------------------------------


@FUZZ
@given(contents(valid_yaml_mutant(sorted((SUITE / "cases").glob("*.yaml"))), CASE_KEYS))
@example(b"a: " + b"[" * 3000 + b"]" * 3000)
@example(b"scenario: " + b"9" * 5000)
@example(b"scenario: x\ntitle: \"\\q\"\n")
def test_case_loader_never_crashes_and_locates_every_problem(raw: bytes):
    with workdir() as root:
        (root / "cases" / "fuzz.yaml").write_bytes(raw)
        problems: list[Problem] = []
        load_cases(root / "cases", problems)
        assert_located(problems, {"cases/fuzz.yaml": raw,
                                  **{display(p): p.read_bytes() for p in (root / "cases").glob("*.yaml")}})


@FUZZ
@given(contents(valid_yaml_mutant(sorted((SUITE / "rubrics").glob("*.yaml"))), RUBRIC_KEYS))
def test_rubric_loader_never_crashes_and_locates_every_problem(raw: bytes):
    with workdir() as root:
        (root / "rubrics" / "fuzz.yaml").write_bytes(raw)
        problems: list[Problem] = []
        load_rubrics(root / "rubrics", {p.resolve() for p in (root / "rubrics" / "locales").iterdir()}, CASES, LOCALE,
                     AXES, problems)
        files = {display(p): p.read_bytes()
                 for p in [*(root / "rubrics").glob("*.yaml"), *(root / "cases").glob("*.yaml")]}
        assert_located(problems, files)


@FUZZ
@given(contents(valid_yaml_mutant([SUITE / "rubrics" / "locales" / "ma.yaml"]), LOCALE_KEYS))
def test_locale_loader_never_crashes_and_locates_every_problem(raw: bytes):
    with workdir() as root:
        path = root / "rubrics" / "locales" / "fuzz.yaml"
        path.write_bytes(raw)
        problems: list[Problem] = []
        locale = load_locale(path, problems)
        assert_located(problems, {display(path): raw})
        assert isinstance(locale, Locale)


@FUZZ
@given(contents(valid_yaml_mutant([SUITE / "bilan.yaml"]), CONFIG_KEYS))
def test_config_loader_raises_located_input_errors_only(raw: bytes):
    with workdir() as root:
        path = root / "fuzz.yaml"
        path.write_bytes(raw)
        try:
            load_config(path)
        except InputError as err:
            assert err.problems
            assert_located(err.problems, {display(path): raw})


def _csv_text(rows: list[list[str]]) -> str:
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    return out.getvalue()


cells = st.sampled_from(["case_id", "answer", "sample", "expected", "chest-pain.fr", "heat-stroke.en", "0", "1",
                         "-1", "x", "", '"', "a,b", "line\nbreak", "عيط على 15", "ⵜⵉⵢⵜⵉ"]) | st.text(max_size=8)
csv_files = st.lists(st.lists(cells, max_size=5),
                     max_size=8).map(lambda rows: _csv_text(rows).encode("utf-8", "surrogatepass"))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) |
                           st.dictionaries(st.sampled_from(["case_id", "answer", "sample", "expected",
                                                            "x"]) | st.text(max_size=4),
                                           inner, max_size=5), max_leaves=12)
jsonl_files = st.lists(json_values.map(lambda v: json.dumps(v, ensure_ascii=False)) | yamlish, max_size=8).map(
    lambda lines: "\n".join(lines).encode("utf-8", "surrogatepass"))


@FUZZ
@given(st.sampled_from([".jsonl", ".csv"]), st.one_of(st.binary(max_size=300), csv_files, jsonl_files,
                                                      valid_yaml_mutant([SUITE / "answers" / "good.jsonl",
                                                                         SUITE / "answers" / "poor.csv"])))
@example(".jsonl", b'{"case_id": "chest-pain.fr", "answer": "x", "sample": ' + b"1" * 5000 + b"}")
@example(".jsonl", b"[" * 100_000)
@example(".csv", b"case_id,answer\nchest-pain.fr,\"" + b"x" * 200_000 + b'"\n')
@example(".csv", b"case_id,answer\nchest-pain.fr\n")
def test_answer_loader_never_crashes_and_locates_every_problem(suffix: str, raw: bytes):
    with workdir() as root:
        path = root / "answers" / f"fuzz{suffix}"
        path.write_bytes(raw)
        problems: list[Problem] = []
        answers = load_answers((str(path),), {c.id for c in CASES}, problems)
        assert_located(problems, {display(path): raw})
        assert all(isinstance(a, str) for a in answers.values())


@pytest.fixture(scope="module")
def review_run() -> Path:
    """The small suite run once, with a review sheet exported: the target of fuzzed review sheets."""
    root = Path(tempfile.mkdtemp()) / "suite"
    shutil.copytree(SUITE, root, ignore=shutil.ignore_patterns("runs"))
    run_and_export(root)
    yield root
    shutil.rmtree(root.parent)


sheet_cells = st.sampled_from(["sheet", "row_id", "met", "comment", "a8abe0f8", "deadbeef", "../../x", "R00001",
                               "R00002", "R99999", "yes", "no", "oui", "نعم", "maybe", "", "=1+1", "a,b",
                               "line\nbreak"]) | st.text(max_size=6)
sheets = st.lists(st.lists(sheet_cells, max_size=5),
                  max_size=6).map(lambda rows: _csv_text(rows).encode("utf-8", "surrogatepass"))


@FUZZ
@given(st.sampled_from([".csv", ".xlsx"]),
       st.one_of(st.binary(max_size=300), sheets,
                 st.just(b"sheet,row_id,met\n").flatmap(lambda h: sheets.map(lambda b: h + b))))
def test_review_import_accepts_or_locates_every_problem(review_run: Path, suffix: str, raw: bytes):
    from harness.review import import_review
    cwd = os.getcwd()
    os.chdir(review_run)
    path = review_run / f"fuzz{suffix}"
    try:
        path.write_bytes(raw)
        try:
            import_review(path, review_run / "run", "Dr Fuzz")
        except InputError as err:
            assert err.problems
            assert_located(err.problems, {display(path): raw if suffix == ".csv" else b""})
    finally:
        os.chdir(cwd)
        path.unlink()
        shutil.rmtree(review_run / "run" / "labels", ignore_errors=True)


# --- checks ------------------------------------------------------------------------------------------

phrases = st.lists(st.sampled_from(["15", "samu", "appelez", "sbitar", "عيط", "ⵜⵉⵢⵜⵉ", "é", " ",
                                    "ـ"]) | st.text(min_size=1, max_size=5),
                   min_size=1, max_size=3)
leaf_checks = st.one_of(
    st.builds(lambda r: {"regex": r}, st.sampled_from(["15", "(?i)appelez", "[0-9", "(a|aa)+$", "\\bsamu\\b", "(?<=a)b",
                                                       "\\p{Arabic}+", "(?V1)[[a-z]--[aeiou]]", "x{2,1}",
                                                       "(?P<n>a)(?P=n)"])
              | st.text(min_size=1, max_size=6)),
    st.builds(lambda p: {"any_of": p},
              phrases | st.dictionaries(st.sampled_from(LANGUAGES + ("darija",)), phrases, min_size=1, max_size=3)),
    st.builds(lambda p: {"all_of": p},
              phrases | st.dictionaries(st.sampled_from(LANGUAGES), phrases, min_size=1, max_size=3)),
    st.builds(lambda m: {"mentions": m}, st.sampled_from(["emergency_numbers", "foreign_emergency_numbers", "samu",
                                                          "poison_centre", "police", "nope"])),
    st.just({"language": "same_as_user"}),
    st.builds(lambda n: {"max_words": n}, st.integers(-1, 400)),
)
check_specs = st.recursive(leaf_checks, lambda inner: st.builds(lambda c: {"not": c}, inner) |
                           st.builds(lambda cs: {"any": cs}, st.lists(inner, min_size=1, max_size=3)) |
                           st.builds(lambda cs: {"all": cs}, st.lists(inner, min_size=1, max_size=3)), max_leaves=6)
messy_checks = st.one_of(check_specs, structures, st.dictionaries(st.sampled_from(KEYS), structures, max_size=3))

ALPHABET = st.one_of(
    st.characters(min_codepoint=0x0600, max_codepoint=0x06FF),        # Arabic
    st.characters(min_codepoint=0x2D30, max_codepoint=0x2D7F),        # Tifinagh
    st.characters(min_codepoint=0x20, max_codepoint=0x24F),           # Latin
    st.sampled_from(list("\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200b\u200d\ufeff\u00ad")),
    st.characters(min_codepoint=0x1F300, max_codepoint=0x1FAFF),      # emoji
    st.sampled_from(list("٠١٢٣٤٥٦٧٨٩0123456789 \n\t<>/=\"'-.+()[]!:")),
    st.characters(),
)
fragments = st.sampled_from(["Appelez le 15", "3ayet l 141", "عيط على 15", "ⵜⵉⵢⵜⵉ ⵏ ⵜⴰⴼⵓⴽⵜ", "+212 801 000 180",
                             "<!-- 911 -->", "<span style=\"display:none\">999</span>", "[15](javascript:alert(1))",
                             "<script>alert(1)</script>", "\u202e511\u202c", "a" * 40 + "!", "😀" * 5])
texts = st.one_of(st.text(ALPHABET, max_size=200),
                  st.lists(fragments | st.text(ALPHABET, max_size=10), max_size=20).map(" ".join))
long_texts = st.tuples(texts, st.integers(1, 2000)).map(lambda t: (t[0] or "a") * t[1])


@pytest.fixture(autouse=True)
def short_regex_timeout(monkeypatch):
    """Catastrophic patterns are in the mix: a short time limit keeps the examples fast."""
    monkeypatch.setattr(checks, "REGEX_SECONDS", 0.05)


@FUZZ
@given(messy_checks)
def test_check_schema_and_compiler_never_crash(spec):
    found = value_problems(spec, "check")
    assert all(isinstance(path, tuple) and isinstance(message, str) and message for path, message in found)
    if found:
        return                       # the loader compiles only schema-valid checks
    check, problems = compile_check(spec, LOCALE)
    assert callable(check)
    for path, message in problems:
        assert isinstance(path, tuple) and "expected" in message
    try:
        assert check(AnswerView("Appelez le 15 tout de suite.", "fr")) in (True, False)
    except CheckTimeout:
        pass


@FUZZ
@given(check_specs, texts | long_texts, st.sampled_from(LANGUAGES), st.lists(st.sampled_from(LANGUAGES), max_size=2))
@example({"regex": "(a|aa)+$"}, "a" * 5000 + "!", "fr", [])
@example({"language": "same_as_user"}, "\u202e" * 3000, "ar", [])
@example({"any_of": ["ـ"]}, "ـ" * 10_000, "ary-Arab", [])
def test_every_check_gives_a_verdict_or_a_timeout_on_any_answer(spec, text: str, language: str, switch: list[str]):
    if value_problems(spec, "check"):
        return
    case = Case(id="fuzz.fr", scenario="fuzz", language=language, title="t", theme="hedging", use_case="triage",
                persona="patient", code_switch=tuple(switch), conversation=(Message("user", "x"),))
    criterion = Criterion(id="c", text="t", points=1, axis="safety", check=spec, rubric="fuzz")
    verdict = finishes(RulesGrader(LOCALE).verdict, case, text, criterion)     # never a hang (regexes have a limit)
    if verdict.error:
        assert verdict.met is None and verdict.error.startswith("timeout:")
    else:       # met, not met, or an abstention that says why
        assert verdict.met in (True, False) or (verdict.met is None and verdict.explanation)
    assert isinstance(visible_text(text), str)


# --- crashes found by fuzzing, kept as regression tests ------------------------------------------------

def test_a_number_too_long_for_python_stays_text(tmp_path: Path):
    """int() refuses more than 4,300 digits (ValueError): the YAML loader used to crash on `scenario: 999...`."""
    path = tmp_path / "long.yaml"
    path.write_text("scenario: " + "9" * 5000 + "\n", encoding="utf-8")
    doc, problems = parse_yaml(path, "long.yaml")
    assert not problems and doc.data["scenario"] == "9" * 5000


def test_answer_lines_that_json_cannot_convert_are_located(tmp_path: Path):
    """A 5,000-digit sample number (ValueError) and 100,000 nested lists (RecursionError) used to escape as crashes."""
    path = tmp_path / "a.jsonl"
    path.write_bytes(b'{"case_id": "chest-pain.fr", "answer": "x", "sample": ' + b"1" * 5000 + b"}\n" + b"[" * 100_000
                     + b"\n")
    problems: list[Problem] = []
    assert load_answers((str(path),), {"chest-pain.fr"}, problems) == {}
    assert [(p.line, p.message.split(";")[0]) for p in problems] == [
        (1, "invalid JSON: a number with too many digits"),
        (2, "invalid JSON: nesting too deep")]


def test_csv_answers_longer_than_the_csv_field_limit_are_located(tmp_path: Path):
    """Python's csv module refuses fields over 131,072 characters (csv.Error): it used to escape as a crash."""
    path = tmp_path / "a.csv"
    path.write_text('case_id,answer\nchest-pain.fr,"' + "x" * 200_000 + '"\n', encoding="utf-8")
    problems: list[Problem] = []
    assert load_answers((str(path),), {"chest-pain.fr"}, problems) == {}
    assert [str(p).split(";")[0]
            for p in problems] == [f"{display(path)}:2:1: error: a field longer than 131,072 characters"]


def test_a_raw_line_separator_inside_a_json_answer_is_not_a_line_break(tmp_path: Path):
    """JSON allows U+2028 unescaped in a string (json.dumps(ensure_ascii=False) writes it); splitting the file
    with str.splitlines() cut such a row in two and reported two invalid lines."""
    path = tmp_path / "a.jsonl"
    path.write_text(json.dumps({"case_id": "chest-pain.fr", "answer": "Appelez le 15.\u2028Restez avec lui.\x0c"},
                               ensure_ascii=False) + "\n", encoding="utf-8")
    problems: list[Problem] = []
    assert load_answers((str(path),), {"chest-pain.fr"},
                        problems) == {("chest-pain.fr", 0): "Appelez le 15.\u2028Restez avec lui.\x0c"}
    assert problems == []


def test_a_value_quoted_with_line_breaks_or_bidi_controls_stays_on_one_printed_line(tmp_path: Path):
    """`suite: '\\n\\n'` echoed the text in the message: one problem printed on three lines."""
    path = tmp_path / "bilan.yaml"
    path.write_text("suite: \"\\n\\u202e\\n\"\ntargets: []\n", encoding="utf-8")
    with pytest.raises(InputError) as caught:
        load_config(path)
    printed = [str(p) for p in caught.value.problems]
    assert all(line.isprintable() for line in printed)
    assert any("got the text '\\u000a\\u202e\\u000a'" in line for line in printed), printed
