"""Every format rule: a broken file beside the exact messages `bilan validate` must print for it.

Each file under tests/data/broken/<kind>/ is placed into a copy of the small test suite (cases/ and rubrics/
files are added; a locale, config or answers file replaces the suite's own), then `bilan validate` runs.
Its stderr, but for the final count line, must equal the `.expected` file beside the broken one, and the
exit status must be 2 with no traceback. Set BILAN_REGOLD=1 to rewrite the expected files after a reviewed
change of wording.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from harness.cli import main

BROKEN = Path(__file__).parent / "data" / "broken"
PLACE = {"cases": "cases/{name}", "rubrics": "rubrics/{name}", "locale": "rubrics/locales/ma.yaml",
         "config": "bilan.yaml", "answers": "answers/good.jsonl"}
FILES = sorted(p for p in BROKEN.rglob("*") if p.is_file() and p.suffix != ".expected")


@pytest.mark.parametrize("broken", FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_broken_file_gives_exact_messages(broken: Path, suite_dir: Path, capsys):
    destination = suite_dir / PLACE[broken.parent.name].format(name=broken.name)
    shutil.copyfile(broken, destination)
    status = main(["validate"])
    err = capsys.readouterr().err
    assert status == 2
    assert "Traceback" not in err
    lines = err.rstrip("\n").split("\n")
    assert lines[-1].endswith("file(s)")
    expected_file = broken.with_name(broken.name + ".expected")
    got = "\n".join(lines[:-1]) + "\n"
    if os.environ.get("BILAN_REGOLD"):
        expected_file.write_text(got, encoding="utf-8")
    assert got == expected_file.read_text(encoding="utf-8")
