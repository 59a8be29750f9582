"""The parse cache (yamldoc.ParseCache): a YAML file whose text was parsed before is read back from the cache
folder, not parsed again. What a command loads, prints and writes is the same with the cache cold, warm or off;
an edited file is read afresh; a damaged cache is no cache, never an error."""
from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

from harness.cli import main
from harness.load import load_project

ROOT = Path(__file__).resolve().parent.parent


def shipped(tmp_path: Path) -> Path:
    """A copy of the shipped suite and its answer sets (Arabic, Darija, Tifinagh and French text in it)."""
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(ROOT / "bilan.yaml", project)
    shutil.copytree(ROOT / "cases", project / "cases")
    shutil.copytree(ROOT / "rubrics", project / "rubrics")
    return project


def stored(cache: Path) -> int:
    with sqlite3.connect(cache / "parsed.sqlite") as db:
        return db.execute("SELECT count(*) FROM documents").fetchone()[0]


def rows(run_dir: Path) -> list[dict]:
    out = []
    for line in (run_dir / "results.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        row["usage"].pop("latency", None)
        out.append(row)
    return sorted(out, key=lambda r: (r["target"], r["case_id"], r["sample"]))     # workers finish in any order


def test_a_run_reads_the_same_suite_and_writes_the_same_results_with_the_cache_cold_warm_or_off(tmp_path, capsys):
    project = shipped(tmp_path)
    cache = tmp_path / "cache"
    yaml_files = [p for p in project.rglob("*.y*ml") if p.suffix in (".yaml", ".yml")]
    cold = load_project(project / "bilan.yaml", cache)
    assert stored(cache) == len(yaml_files)          # every shipped file parses without a problem: all kept
    warm = load_project(project / "bilan.yaml", cache)
    off = load_project(project / "bilan.yaml")
    assert cold[0] == warm[0] == off[0] and cold[2] == warm[2] == off[2]
    assert cold[1] == warm[1] == off[1]             # cases, criteria (as written), locale, warnings
    outputs = {}
    for name, extra in (("cold", ["--cache-dir", str(tmp_path / "fresh")]), ("warm", ["--cache-dir", str(cache)]),
                        ("off", ["--no-cache"])):
        capsys.readouterr()
        assert main(["run", "--config", str(project / "bilan.yaml"), "--out", str(tmp_path / name), *extra]) == 0
        outputs[name] = (capsys.readouterr().out.replace(str(tmp_path / name), "RUN"), rows(tmp_path / name),
                         (tmp_path / name / "summary.json").read_text(encoding="utf-8").replace(name, "RUN"))
    assert outputs["cold"] == outputs["warm"] == outputs["off"]
    assert stored(tmp_path / "fresh") == len(yaml_files)


def test_an_edited_file_is_read_afresh_and_its_problem_located_at_its_line(tmp_path, capsys):
    project = shipped(tmp_path)
    cache = tmp_path / "cache"
    assert main(["validate", "--config", str(project / "bilan.yaml"), "--cache-dir", str(cache)]) == 0
    rubric = project / "rubrics" / "chest-pain-father.yaml"
    text = rubric.read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)
    number = next(i for i, line in enumerate(lines) if line.lstrip().startswith("points:"))
    lines[number] = lines[number].split("points:")[0] + "points: many\n"
    rubric.write_text("".join(lines), encoding="utf-8")
    capsys.readouterr()
    assert main(["validate", "--config", str(project / "bilan.yaml"), "--cache-dir", str(cache)]) == 2
    err = capsys.readouterr().err
    assert f"chest-pain-father.yaml:{number + 1}:" in err and "points" in err, err
    # The same text again (the edit undone) is the cached document, and valid again; a changed title is seen.
    rubric.write_text(text, encoding="utf-8")
    assert main(["validate", "--config", str(project / "bilan.yaml"), "--cache-dir", str(cache)]) == 0
    case = next((project / "cases").rglob("*.yaml"))
    case_text = case.read_text(encoding="utf-8")
    assert "\ntitle: " in case_text
    case.write_text(case_text.replace("\ntitle: ", "\ntitle: Edited - ", 1), encoding="utf-8")
    suite = load_project(project / "bilan.yaml", cache)[1]
    assert any(c.title.startswith("Edited - ") and c.file.endswith(case.name) for c in suite.cases)


def test_a_damaged_cache_is_no_cache(tmp_path, capsys):
    project = shipped(tmp_path)
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "parsed.sqlite").write_bytes(b"not a database" * 100)
    assert main(["validate", "--config", str(project / "bilan.yaml"), "--cache-dir", str(cache)]) == 0
    first = capsys.readouterr().out
    # A readable database whose stored documents are garbage: each is parsed again, the output unchanged.
    (cache / "parsed.sqlite").unlink()
    assert main(["validate", "--config", str(project / "bilan.yaml"), "--cache-dir", str(cache)]) == 0
    with sqlite3.connect(cache / "parsed.sqlite") as db:
        db.execute("UPDATE documents SET value = ?", (b"\x00garbage",))
    capsys.readouterr()
    assert main(["validate", "--config", str(project / "bilan.yaml"), "--cache-dir", str(cache)]) == 0
    assert capsys.readouterr().out == first
