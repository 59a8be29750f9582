"""Clinician review round-trip: blinded sheets out, labels in, the labels grader; Arabic and Tifinagh text."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from openpyxl import load_workbook

from harness.cli import main


@pytest.fixture
def run_dir(suite_dir: Path) -> Path:
    hostile = "=HYPERLINK(\"https://x.invalid\",\"click\") ⵜⵉⵢⵜⵉ"
    with open(suite_dir / "answers" / "poor.csv", "a", encoding="utf-8") as f:
        f.write(f'heat-stroke.zgh-Tfng,"{hostile.replace(chr(34), chr(34) * 2)}"\n')
    assert main(["run", "--out", "run"]) == 0
    return suite_dir / "run"


def _csv(path: Path) -> list[dict]:
    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")                                 # UTF-8 with a byte-order mark
    return list(csv.DictReader(raw.decode("utf-8-sig").splitlines()))


def test_export_is_blinded_shuffled_and_safe(run_dir: Path, suite_dir: Path):
    assert main(["review", "export", str(run_dir), "--out", "sheet.xlsx"]) == 0
    assert main(["review", "export", str(run_dir), "--out", "sheet.csv"]) == 0
    rows = _csv(suite_dir / "sheet.csv")
    assert len(rows) == sum(len(json.loads(l)["verdicts"])
                            for l in (run_dir / "results.jsonl").read_text().splitlines())
    text = (suite_dir / "sheet.csv").read_text(encoding="utf-8-sig")
    assert "good" not in {r["system"] for r in rows} and {r["system"] for r in rows} == {"S1", "S2"}
    assert all(r["met"] == "" and r["grader_verdict"] == "" for r in rows)    # the grader's verdict stays hidden
    assert "'=HYPERLINK" in text and "ⵜⵉⵢⵜⵉ" in text                        # formula neutralised, Tifinagh intact
    order = [r["case_id"] + r["criterion_id"] for r in rows]
    assert order != sorted(order)                                         # shuffled ...
    assert main(["review", "export", str(run_dir), "--out", "again.csv"]) == 0
    assert [r["row_id"] + r["case_id"] for r in _csv(suite_dir / "again.csv")] == [r["row_id"] + r["case_id"]
                                                                                   for r in rows]

    sheet = load_workbook(suite_dir / "sheet.xlsx").active
    header = [c.value for c in sheet[1]]
    for row in sheet.iter_rows(min_row=2):
        cells = dict(zip(header, row))
        assert cells["answer"].data_type == "s"                            # never a formula
        arabic = sum("\u0600" <= ch <= "\u06ff" for ch in str(cells["answer"].value))
        assert cells["answer"].alignment.readingOrder == (2 if arabic > len(str(cells["answer"].value)) / 3 else 1)
        assert cells["criterion"].alignment.readingOrder == 1               # per cell: the English criterion reads LTR
    assert any(c.alignment.readingOrder == 2 for c in sheet["O"][1:])      # some Arabic answer right to left
    assert header.index("met") == header.index("criterion") + 3 and header.index("comment") == header.index("met") + 1
    assert sheet.freeze_panes == "E2"
    book = load_workbook(suite_dir / "sheet.xlsx")
    guide = " ".join(str(c.value) for row in book["instructions"].iter_rows() for c in row if c.value)
    assert "points négatifs" in guide and "negative points" in guide and "النقاط السالبة" in guide
    assert any(str(c.value).startswith("=HYPERLINK") for row in sheet.iter_rows() for c in row)


def test_sample_is_spread_over_languages(run_dir: Path, suite_dir: Path):
    assert main(["review", "export", str(run_dir), "--out", "sample.csv", "--sample", "10", "--show-grader"]) == 0
    rows = _csv(suite_dir / "sample.csv")
    assert len(rows) == 10
    languages = [r["language"] for r in rows]
    assert len(set(languages)) == 5 and max(map(languages.count, set(languages))) == 2
    assert all(r["grader_verdict"] in ("yes", "no", "not graded") for r in rows)


def _fill(path: Path, verdict) -> None:
    rows = _csv(path)
    for n, row in enumerate(rows):
        row["met"] = verdict(n, row)
    with open(path, "w", encoding="utf-8-sig", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_import_stores_labels_per_reviewer_and_the_labels_grader_uses_them(run_dir: Path, suite_dir: Path, capsys):
    assert main(["review", "export", str(run_dir), "--out", "a.csv"]) == 0
    _fill(suite_dir / "a.csv",
          lambda n, r: ["oui", "non", "yes", "no", "1", "0", "true", "false", "نعم", "لا", ""][n % 11])
    assert main(["review", "import", "a.csv", "--run", str(run_dir), "--reviewer", "Dr A"]) == 0
    labels = [json.loads(l) for l in (run_dir / "labels" / "Dr-A.jsonl").read_text(encoding="utf-8").splitlines()]
    assert labels and all(l["reviewer"] == "Dr A" and isinstance(l["met"], bool) for l in labels)
    assert len(labels) == len(_csv(suite_dir / "a.csv")) - sum(1 for n in range(len(_csv(suite_dir / "a.csv")))
                                                               if n % 11 == 10)

    _fill(suite_dir / "a.csv", lambda n, r: "yes")
    assert main(["review", "import", "a.csv", "--run", str(run_dir), "--reviewer", "Dr B"]) == 0
    assert (run_dir / "labels" / "Dr-A.jsonl").read_text(encoding="utf-8").count("Dr A") == len(labels)   # untouched

    config = (suite_dir / "bilan.yaml").read_text().replace("grader: {provider: rules}",
                                                            "grader: {provider: labels, labels: run/labels}")
    (suite_dir / "labelled.yaml").write_text(config, encoding="utf-8")
    assert main(["run", "--config", "labelled.yaml", "--out", "by-humans"]) == 0
    rows = [json.loads(l) for l in (suite_dir / "by-humans" / "results.jsonl").read_text(encoding="utf-8").splitlines()]
    verdicts = [v for r in rows for v in r["verdicts"]]
    assert {v["grader"] for v in verdicts} == {"labels"}
    assert any(v["met"] is True for v in verdicts)
    assert any(v["met"] is None and "split" in v["explanation"] for v in verdicts)   # Dr A said no, Dr B yes


def test_import_rejects_bad_verdicts_and_foreign_rows(run_dir: Path, suite_dir: Path, capsys):
    assert main(["review", "export", str(run_dir), "--out", "a.csv"]) == 0
    _fill(suite_dir / "a.csv", lambda n, r: "maybe" if n == 2 else "yes")
    rows = _csv(suite_dir / "a.csv")
    rows[4]["row_id"] = "R99999"
    with open(suite_dir / "a.csv", "w", encoding="utf-8-sig", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    assert main(["review", "import", "a.csv", "--run", str(run_dir), "--reviewer", "Dr A"]) == 2
    err = capsys.readouterr().err
    assert "a.csv:4:1: error: met: 'maybe' is not a verdict" in err and "expected yes or no" in err
    assert "a.csv:6:1: error:" in err and "R99999" in err and "Traceback" not in err
    assert not (run_dir / "labels").exists()


def test_import_of_a_sheet_saved_as_latin1_says_how_to_save_it_as_utf8(run_dir: Path, suite_dir: Path, capsys):
    assert main(["review", "export", str(run_dir), "--out", "a.csv"]) == 0
    _fill(suite_dir / "a.csv", lambda n, r: "yes")
    rows = _csv(suite_dir / "a.csv")
    assert any("\u0600" <= ch <= "\u06ff" or "\u2d30" <= ch <= "\u2d7f" for r in rows for ch in r["answer"])
    text = (suite_dir / "a.csv").read_text(encoding="utf-8-sig")
    # What a save in a Western encoding leaves of Arabic and Tifinagh: '?' (here nothing else is accented, so the
    # file still decodes as UTF-8 and only its rows tell).
    (suite_dir / "mangled.csv").write_bytes(text.encode("ascii", errors="replace"))
    assert main(["review", "import", "mangled.csv", "--run", str(run_dir), "--reviewer", "Dr A"]) == 2
    err = capsys.readouterr().err
    assert "reads as '?'" in err and "Latin-1" in err and "Unicode (UTF-8)" in err and "Traceback" not in err
    # A Latin-1 byte (é in a comment) is located, with the same advice.
    rows[0]["comment"] = "réponse correcte"
    buffer = __import__("io").StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    (suite_dir / "latin1.csv").write_bytes(buffer.getvalue().encode("latin-1", errors="replace"))
    assert main(["review", "import", "latin1.csv", "--run", str(run_dir), "--reviewer", "Dr A"]) == 2
    err = capsys.readouterr().err
    assert "latin1.csv:2:" in err and "is not UTF-8" in err and "Unicode (UTF-8)" in err
    assert not (run_dir / "labels").exists()


def test_agreement_by_language_with_a_hand_worked_example(suite_dir: Path, capsys):
    from harness.agreement import balanced_accuracy, kappa
    # Hand-worked: pairs (grader, clinician) = TT, TT, TF, FF, FT, FF -> observed 4/6; P(grader yes) = 3/6,
    # P(clinician yes) = 3/6, chance = 0.5*0.5 + 0.5*0.5 = 0.5; kappa = (2/3 - 1/2) / (1 - 1/2) = 1/3.
    pairs = [(True, True), (True, True), (True, False), (False, False), (False, True), (False, False)]
    assert kappa(pairs) == pytest.approx(1 / 3)
    assert balanced_accuracy(pairs) == pytest.approx((2 / 3 + 2 / 3) / 2)
    assert kappa([(True, True)] * 3) is None                       # chance agreement is certain: undefined

    assert main(["run", "--out", "run"]) == 0
    run_dir = suite_dir / "run"
    assert main(["review", "export", str(run_dir), "--out", "a.csv"]) == 0
    key = json.loads(next((run_dir / "review").glob("*.key.json")).read_text())
    results = {(r["target"], r["case_id"], r.get("sample", 0)): r
               for r in map(json.loads, (run_dir / "results.jsonl").read_text().splitlines())}
    def grader_says(row):
        entry = key["rows"][row["row_id"]]
        met = {v["id"]: v["met"]
               for v in results[(entry["target"], entry["case_id"], entry["sample"])]["verdicts"]}[entry["criterion"]]
        return met
    # Dr A agrees with the grader everywhere it graded; Dr B disagrees on French rows.
    _fill(suite_dir / "a.csv", lambda n, r: "" if grader_says(r) is None else ("yes" if grader_says(r) else "no"))
    assert main(["review", "import", "a.csv", "--run", str(run_dir), "--reviewer", "Dr A"]) == 0
    _fill(suite_dir / "a.csv", lambda n, r: "" if grader_says(r) is None
          else ("yes" if grader_says(r) != (r["language"] == "fr") else "no"))
    assert main(["review", "import", "a.csv", "--run", str(run_dir), "--reviewer", "Dr B"]) == 0
    capsys.readouterr()
    assert main(["agreement", str(run_dir), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    by_language = summary["grader"]["by_language"]
    assert by_language["en"]["kappa"]["value"] == pytest.approx(1.0)               # both agree with the grader
    assert by_language["fr"]["kappa"]["value"] == pytest.approx(0.0)               # half the pairs disagree, evenly
    assert {d["why"] for d in summary["disagreements"]} == {"clinicians split"}
    assert all(d["language"] == "fr" for d in summary["disagreements"])
    assert set(summary["clinicians"]) == {"Dr A", "Dr B"}
    page = (run_dir / "agreement.html").read_text(encoding="utf-8")
    assert "Dr B" in page and "-0.000" not in page and "-0.00]" not in page and "[-0.00," not in page
    # The headline counts items and pairs as the table does: two reviewers give two pairs per item.
    assert f"({summary['grader']['overall']['pairs']} in all)" in page
    assert (summary["grader"]["overall"]["pairs"]
            == 2 * (summary["labelled_items"] - summary["grader"]["ungraded_items"]))
