"""Every format rule: a broken file beside the exact messages Bilan must print for it.

Each file under tests/data/broken/<kind>/ is placed into a copy of the small test suite (cases/ and rubrics/
files are added; a locale, config or answers file replaces the suite's own), then `bilan validate` runs.
Its stderr, but for the final count line, must equal the `.expected` file beside the broken one, and the
exit status must be 2 with no traceback. Review sheets (review/) are imported with `bilan review import` into
a run of the small suite; the grading/ files are valid input that must fail safely while grading. Files too
big or too slow to commit (a 6 MB case, 10,000 levels of nesting, a large alias bomb) are generated here.
Set BILAN_REGOLD=1 to rewrite the expected files after a reviewed change of wording.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from bounded import finishes
from conftest import run_and_export
from harness.cli import main
from harness.yamldoc import MAX_BYTES, parse_yaml

DATA = Path(__file__).parent / "data"
BROKEN = DATA / "broken"
PLACE = {"cases": "cases/{name}", "rubrics": "rubrics/{name}", "locale": "rubrics/locales/ma.yaml",
         "config": "bilan.yaml", "answers": "answers/good.jsonl", "answers.csv": "answers/poor.csv"}
VALIDATED = ("cases", "rubrics", "locale", "config", "answers")
FILES = sorted(p for kind in VALIDATED for p in (BROKEN / kind).iterdir() if p.suffix != ".expected")
SHEETS = sorted(p for p in (BROKEN / "review").iterdir() if p.suffix != ".expected")
SHEET_ID = "a8abe0f8"          # what `bilan review export` names the sheet of a run directory called `run`, seed 0
# gcc style, located: path:line:col: error: what was wrong; what was expected
LOCATED = re.compile(r"^(?P<path>[^:\n]+):(?P<line>[1-9][0-9]*):(?P<col>[1-9][0-9]*): error: (?P<message>.+)$")


def _place(broken: Path) -> str:
    kind = broken.parent.name + (".csv" if broken.suffix == ".csv" else "")
    return PLACE[kind].format(name=broken.name)


def _messages(err: str) -> str:
    """stderr without the final count line, which must be there."""
    assert "Traceback" not in err and "internal error" not in err, err
    lines = err.rstrip("\n").split("\n")
    assert re.fullmatch(r"\d+ error\(s\) in \d+ file\(s\)", lines[-1]), lines[-1]
    return "\n".join(lines[:-1]) + "\n"


def _golden(broken: Path, got: str) -> None:
    expected_file = broken.with_name(broken.name + ".expected")
    if os.environ.get("BILAN_REGOLD"):
        expected_file.write_text(got, encoding="utf-8")
    assert got == expected_file.read_text(encoding="utf-8")


def _read_messages(text: str) -> list[re.Match]:
    return [LOCATED.match(line) for line in text.splitlines()]


@pytest.mark.parametrize("broken", FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_broken_file_gives_exact_messages(broken: Path, suite_dir: Path, capsys):
    shutil.copyfile(broken, suite_dir / _place(broken))
    status = finishes(main, ["validate"])
    err = capsys.readouterr().err
    assert status == 2, err
    _golden(broken, _messages(err))


@pytest.fixture(scope="module")
def review_run(tmp_path_factory) -> Path:
    """The small suite run once into `run`, with a review sheet exported from it."""
    root = tmp_path_factory.mktemp("review") / "suite"
    shutil.copytree(DATA / "suite", root, ignore=shutil.ignore_patterns("runs"))
    run_and_export(root)
    assert [p.name for p in (root / "run" / "review").iterdir()] == [f"{SHEET_ID}.key.json"]
    return root


@pytest.mark.parametrize("broken", SHEETS, ids=lambda p: f"review/{p.name}")
def test_broken_review_sheet_gives_exact_messages(broken: Path, review_run: Path, monkeypatch, capsys):
    monkeypatch.chdir(review_run)
    shutil.copyfile(broken, review_run / broken.name)
    try:
        status = main(["review", "import", broken.name, "--run", "run", "--reviewer", "Dr Golden"])
    finally:
        (review_run / broken.name).unlink()
    err = capsys.readouterr().err
    assert status == 2, err
    assert not (review_run / "run" / "labels").exists()            # nothing stored from a broken sheet
    _golden(broken, _messages(err))


def test_every_golden_message_is_located_and_says_what_was_expected():
    goldens = sorted(BROKEN.rglob("*.expected"))
    broken = [p for p in BROKEN.rglob("*") if p.is_file() and p.suffix != ".expected"]
    assert len(broken) >= 60 and len(goldens) == len(broken)
    for golden in goldens:
        if golden.parent.name == "grading":
            continue
        text = golden.read_text(encoding="utf-8")
        assert text.strip(), golden
        lines = text.splitlines()
        assert len(lines) == len(set(lines)), f"{golden}: a message is repeated"
        for line, match in zip(lines, _read_messages(text)):
            assert match, f"{golden}: not located: {line}"
            message = match["message"]
            assert ("expected" in message or "did you mean" in message or message.startswith("missing key")
                    or ": missing key" in message), f"{golden}: says nothing of what was expected: {line}"


def test_huge_file_is_refused_before_parsing(suite_dir: Path, capsys):
    head = (suite_dir / "cases" / "heat.yaml").read_text(encoding="utf-8").replace("heat-stroke", "huge")
    filler = "# " + "x" * 98 + "\n"
    (suite_dir / "cases" / "huge.yaml").write_text(head + filler * 60_000, encoding="utf-8")
    size = (suite_dir / "cases" / "huge.yaml").stat().st_size
    assert size > MAX_BYTES
    assert finishes(main, ["validate"]) == 2          # refused by its size, before any parsing (the message says so)
    assert _messages(capsys.readouterr().err) == (
        f"cases/huge.yaml:1:1: error: file is {size:,} bytes; expected at most {MAX_BYTES:,} bytes (split it into "
        "several files)\n")


def test_alias_bomb_is_refused_fast_at_the_first_alias(tmp_path: Path):
    """A billion-laughs file 30 levels deep would expand to 30**30 nodes; the loader never expands an alias."""
    lines = ['lol0: &a0 ["lol", "lol", "lol"]']
    lines += [f"lol{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 30) + "]" for i in range(1, 31)]
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(lines) + "\n", encoding="utf-8")
    doc, problems = finishes(parse_yaml, bomb, "bomb.yaml")      # how fast: benchmarks/bench_tests.py
    assert [str(p) for p in problems] == ["bomb.yaml:2:12: error: lol1[0]: anchors and aliases (&name, *name) are not "
                                          "supported; expected the value written out (900 aliases in this file)"]
    assert doc.data["lol0"] == ["lol", "lol", "lol"] and doc.data["lol30"] == [None] * 30


@pytest.mark.parametrize("depth", [100, 1_000, 10_000])
def test_deep_nesting_is_located_without_recursion_error(depth: int, tmp_path: Path):
    block = min(depth, 2_000)        # indented one space a level: 10,000 levels would be 50 MB
    for name, text in {"flow": "a: " + "[" * depth + "]" * depth + "\n",
                       "block": "".join(" " * i + f"k{i}:\n" for i in range(block)) + " " * block + "x\n"}.items():
        path = tmp_path / f"{name}.yaml"
        path.write_text(text, encoding="utf-8")
        doc, problems = finishes(parse_yaml, path, path.name)
        assert len(problems) == 1 and "nesting deeper than 40 levels; expected at most 40 levels" in problems[0].message
        assert problems[0].line >= 1 and problems[0].col >= 1


def test_catastrophic_regex_validates_then_times_out_at_grading(suite_dir: Path, capsys):
    """`(a|aa)+$` is a valid regular expression; on a long run of "a" it would backtrack for ages. Grading
    gives that criterion a `timeout:` error (not graded, never "not met"), and the run finishes."""
    broken = BROKEN / "grading" / "catastrophic-regex.yaml"
    shutil.copyfile(broken, suite_dir / "rubrics" / broken.name)
    assert main(["validate"]) == 0
    answers = suite_dir / "answers" / "good.jsonl"
    rows = [json.loads(line) for line in answers.read_text(encoding="utf-8").splitlines()]
    for row in rows:
        if row["case_id"] == "chest-pain.fr":
            row["answer"] += " " + "a" * 5000 + "!"
    answers.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    assert finishes(main, ["run", "--out", "run", "--no-cache"]) == 0
    capsys.readouterr()
    results = [json.loads(line)
               for line in (suite_dir / "run" / "results.jsonl").read_text(encoding="utf-8").splitlines()]
    verdicts = [(r["target"], r["case_id"], v) for r in results for v in r["verdicts"] if v["id"] == "backtracks"]
    assert len(verdicts) == 5                                     # every chest-pain answer of both targets was graded
    failed = [f"{target} {case} {v['id']}: met={v['met']}; {v['error']}\n" for target, case, v in verdicts
              if v.get("error")]
    _golden(broken, "".join(failed))
