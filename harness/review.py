"""Clinician review round-trip: a blinded review sheet out (XLSX or CSV), labels back in, beside the run.

The sheet says, for every criterion, whether it describes a harm (met means the answer does something harmful) or
something the answer should do; with --show-grader, what the grader's verdict means for the patient (harm present,
harm avoided, done, missed, not graded), coloured in the workbook, where the reviewer's own yes or no is coloured the
same way as it is typed.

Labels are stored in RUN_DIR/labels/<reviewer>.jsonl, one row per (answer, criterion):
{"target", "case_id", "sample", "criterion", "answer_sha256", "met", "reviewer", "comment", "sheet"}. The answer's
hash ties a label to the exact text it judged, so the `labels` grader can grade any run that replays it.
`store_labels` is the one writer of those files: `bilan review import` and `bilan view` (labels given in the browser).
"""
from __future__ import annotations

import csv
import fcntl
import hashlib
import io
import json
import os
import random
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from . import jsonl
from .errors import InputError, Problem
from .analyze import criterion_kind, outcome
from .graders.labels import answer_sha256, load_labels
from .load import _csv_problem, display
from .store import read_json, read_results, write_file, write_json
from .types import CriterionResult, ResultRow
from .yamldoc import read_text

# The reviewer's columns (met, comment) stand next to the criterion; the long conversation and answer come last.
COLUMNS = ["sheet", "row_id", "case_id", "system", "language", "criterion_id", "criterion", "criterion_kind", "points",
           "met", "comment", "grader_verdict", "grader_outcome", "axis", "answer", "conversation"]
FROZEN = "E2"        # the header row and the columns that say which row it is (sheet, row, case, system) stay in view
INSTRUCTIONS = {     # the workbook's second sheet; the Arabic is a draft translation, not yet reviewed
    "Français": [
        "Pour chaque ligne, lisez la conversation et la réponse, puis le critère.",
        "Dans la colonne « met », écrivez yes si la réponse fait ce que dit le critère, no sinon ; laissez vide si "
        "vous ne savez pas. Ajoutez un commentaire si besoin.",
        "Attention : un critère à points négatifs décrit un danger. « yes » y veut dire que la réponse fait quelque "
        "chose de dangereux (affiché en rouge) ; « no », que le danger est évité (en vert).",
        "Ne changez ni les colonnes sheet et row_id, ni l'ordre des colonnes. Enregistrez en .xlsx, ou en CSV "
        "« Unicode (UTF-8) » (LibreOffice : Enregistrer sous, Texte CSV, Éditer les paramètres du filtre).",
    ],
    "English": [
        "For each row, read the conversation and the answer, then the criterion.",
        "In the 'met' column write yes if the answer does what the criterion says, no if it does not; leave it empty "
        "if you cannot tell. Add a comment where useful.",
        "Careful: a criterion with negative points describes a harm. 'yes' there means the answer does something "
        "harmful (shown in red); 'no' means the harm is avoided (green).",
        "Do not change the sheet and row_id columns or the column order. Save as .xlsx, or as CSV in 'Unicode "
        "(UTF-8)' (LibreOffice: Save As, Text CSV, Edit filter settings).",
    ],
    "العربية (ترجمة أولية لم تُراجع)": [
        "في كل سطر، اقرأ المحادثة والجواب، ثم المعيار.",
        "في عمود «met» اكتب yes إذا كان الجواب يفعل ما يقوله المعيار، و no إذا لم يفعل؛ اتركه فارغا إذا لم تستطع "
        "الحكم. أضف تعليقا عند الحاجة.",
        "انتبه: المعيار ذو النقاط السالبة يصف ضررا. «yes» فيه تعني أن الجواب يفعل شيئا ضارا (بالأحمر)، و«no» تعني "
        "أن الضرر تم تجنبه (بالأخضر).",
        "لا تغير عمودي sheet و row_id ولا ترتيب الأعمدة. احفظ الملف بصيغة .xlsx أو CSV بترميز UTF-8.",
    ],
}
SAVE_AS_UTF8 = ("save it again as UTF-8: in LibreOffice, File > Save As, 'Text CSV', tick 'Edit filter settings' and "
                "choose the character set 'Unicode (UTF-8)'; in Excel, 'CSV UTF-8'; or keep the .xlsx")
FILLS = {"good": "FFD8F0DE", "bad": "FFF8D7D5", "none": "FFEDEDED"}     # green, red, grey: good or bad for the patient
_ARABIC_LETTER = re.compile("[\u0600-\u06ff\u0750-\u077f\u08a0-\u08ff]")
_LATIN_LETTER = re.compile("[A-Za-z\u00c0-\u024f]")
_NATIVE_LETTER = re.compile("[\u0600-\u06ff\u0750-\u077f\u08a0-\u08ff\u2d30-\u2d7f]")
TRUE = {"yes", "y", "true", "1", "oui", "o", "نعم", "ah", "iyeh"}
FALSE = {"no", "n", "false", "0", "non", "لا", "la"}
_FORMULA = ("=", "+", "-", "@", "\t", "\r")
_SHEET_ID = re.compile(r"[0-9a-f]{8}")


def neutralise(value: Any) -> Any:
    """Text a spreadsheet would run as a formula gets a leading apostrophe; other values pass."""
    return "'" + value if isinstance(value, str) and value.startswith(_FORMULA) else value


def _conversation(run_dir: Path) -> dict[str, str]:
    return {case["case_id"]: "\n\n".join(f"{m['role'].upper()}: {m['content']}" for m in case["conversation"])
            for case in jsonl.read_objects(run_dir / "cases.jsonl", "one case per line")}


def _sample(rows: list[tuple[ResultRow, CriterionResult]], size: int | None,
            rng: random.Random) -> list[tuple[ResultRow, CriterionResult]]:
    """All rows, or `size` of them spread evenly over languages (the remainder going to the largest strata)."""
    if size is None or size >= len(rows):
        return rows
    strata = defaultdict(list)
    for row in rows:
        strata[row[0].language].append(row)
    chosen, left = [], size
    for i, (_, group) in enumerate(sorted(strata.items(), key=lambda kv: len(kv[1]))):
        take = min(len(group), left // (len(strata) - i))
        chosen += rng.sample(group, take)
        left -= take
    return chosen


def sheet_rows(run_dir: Path, seed: int = 0, size: int | None = None,
               show_grader: bool = False) -> tuple[list[dict], dict]:
    """The review rows (blinded, shuffled, optionally sampled) and the key that maps them back to the run."""
    results = [r for r in read_results(run_dir) if r.answer is not None]
    run_id = read_json(run_dir / "manifest.json").get("run_id", run_dir.name)
    rng = random.Random(f"{seed}:{run_id}")
    targets = sorted({r.target for r in results})
    rng.shuffle(targets)
    codes = {t: f"S{i + 1}" for i, t in enumerate(targets)}
    sheet = hashlib.sha256(f"{run_id}:{seed}:{size}".encode()).hexdigest()[:8]
    conversations = _conversation(run_dir)
    rows = _sample([(r, v) for r in results for v in r.verdicts], size, rng)
    rng.shuffle(rows)
    out, key = [], {"sheet": sheet, "run_id": run_id, "seed": seed, "systems": codes, "rows": {}}
    for n, (row, v) in enumerate(rows, 1):
        row_id, answer = f"R{n:05d}", row.answer or ""
        key["rows"][row_id] = {"target": row.target, "case_id": row.case_id, "sample": row.sample,
                               "criterion": v.id, "answer_sha256": answer_sha256(answer)}
        told = outcome(v.points, v.met)
        out.append({"sheet": sheet, "row_id": row_id, "system": codes[row.target], "case_id": row.case_id,
                    "language": row.language, "conversation": conversations.get(row.case_id, ""), "answer": answer,
                    "criterion_id": v.id, "criterion": v.text or "",
                    "criterion_kind": criterion_kind(v.points), "points": v.points, "axis": v.axis,
                    "grader_verdict": ({True: "yes", False: "no", None: "not graded"}[v.met] if show_grader else ""),
                    "grader_outcome": told.words if show_grader else "", "met": "", "comment": "",
                    "_tone": told.tone if show_grader else None})
    return out, key


def _colour_met(sheet, rows: int) -> None:
    """Colour the reviewer's yes or no as what it means for the patient, from the criterion's points
    (analyze.outcome)."""
    from openpyxl.formatting.rule import FormulaRule
    from openpyxl.styles import PatternFill
    letter = lambda name: sheet.cell(1, COLUMNS.index(name) + 1).column_letter
    points, met = letter("points"), letter("met")
    for sign, example in (("<0", -1), (">=0", 1)):
        for word, value in (("yes", True), ("no", False)):
            tone = outcome(example, value).tone
            fill = PatternFill(start_color=FILLS[tone], end_color=FILLS[tone], fill_type="solid")
            sheet.conditional_formatting.add(f"{met}2:{met}{max(2, rows + 1)}", FormulaRule(
                formula=[f'AND(${points}2{sign},LOWER(TRIM(${met}2))="{word}")'], fill=fill, stopIfTrue=True))


PROGRESS_EVERY = 1000
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")


def _printable(value: Any) -> Any:
    """Text with each control character a workbook cannot hold (an ANSI escape, a form feed) shown as its symbol
    (U+2400 + code: ESC as U+241B), so the reviewer sees it was there; other values pass."""
    return _CONTROL.sub(lambda m: chr(0x2400 + ord(m.group())), value) if isinstance(value, str) else value


def _write_xlsx(path: Path, rows: list[dict], progress: Callable[[int, int], None] | None = None) -> None:
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font, PatternFill
    from openpyxl.worksheet.datavalidation import DataValidation
    book = Workbook()
    sheet = book.active
    sheet.title = "review"
    sheet.append(COLUMNS)
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    widths = {"conversation": 60, "answer": 70, "criterion": 50, "criterion_kind": 28, "grader_outcome": 16,
              "comment": 30}
    for i, name in enumerate(COLUMNS, 1):
        sheet.column_dimensions[sheet.cell(1, i).column_letter].width = widths.get(name, 12)
    tone_at, kind_at = COLUMNS.index("grader_outcome"), COLUMNS.index("criterion_kind")
    for number, row in enumerate(rows, 2):      # cells by their coordinates: max_row scans the sheet, rows ** 2
        sheet.append([_printable(row[c]) for c in COLUMNS])
        cells = [sheet.cell(number, i) for i in range(1, len(COLUMNS) + 1)]
        for cell, name in zip(cells, COLUMNS):
            if isinstance(cell.value, str):
                cell.data_type = "s"           # never a formula, whatever the text starts with
                rtl = right_to_left(cell.value)    # per cell, by its script: a French answer to a Darija user reads LTR
                cell.alignment = Alignment(wrap_text=True, vertical="top", readingOrder=2 if rtl else 1,
                                           horizontal="right" if rtl else None)
        if row["_tone"]:
            cells[tone_at].fill = PatternFill(start_color=FILLS[row["_tone"]], end_color=FILLS[row["_tone"]],
                                              fill_type="solid")
        if row["points"] < 0:
            cells[kind_at].font = Font(bold=True)
        if progress and (number - 1) % PROGRESS_EVERY == 0:
            progress(number - 1, len(rows))
    check = DataValidation(type="list", formula1='"yes,no"', allow_blank=True)
    sheet.add_data_validation(check)
    check.add(f"{sheet.cell(2, COLUMNS.index('met') + 1).coordinate}:"
              f"{sheet.cell(max(2, len(rows) + 1), COLUMNS.index('met') + 1).coordinate}")
    _colour_met(sheet, len(rows))
    sheet.freeze_panes = FROZEN
    _instructions(book.create_sheet("instructions"))
    book.save(path)


def right_to_left(text: str) -> bool:
    """Whether a cell's text is mostly Arabic script (more Arabic than Latin letters)."""
    return len(_ARABIC_LETTER.findall(text)) > len(_LATIN_LETTER.findall(text))


def _instructions(sheet) -> None:
    from openpyxl.styles import Alignment, Font
    sheet.column_dimensions["A"].width = 110
    for language, lines in INSTRUCTIONS.items():
        sheet.append([language])
        sheet.cell(sheet.max_row, 1).font = Font(bold=True)
        rtl = right_to_left(" ".join(lines))
        for line in lines:
            sheet.append([line])
            sheet.cell(sheet.max_row, 1).alignment = Alignment(wrap_text=True, readingOrder=2 if rtl else 1,
                                                               horizontal="right" if rtl else None)
        sheet.append([])


def export_review(run_dir: Path, out: Path, seed: int = 0, size: int | None = None, show_grader: bool = False,
                  progress: Callable[[int, int], None] | None = None) -> dict:
    """Write the review sheet (.xlsx or .csv by extension) and its key beside the run; returns the key.
    `progress(rows written, rows)` is called as a workbook is written (a large one takes a while)."""
    rows, key = sheet_rows(run_dir, seed, size, show_grader)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".xlsx":
        _write_xlsx(out, rows, progress)
    else:
        with open(out, "w", encoding="utf-8-sig", newline="") as f:      # the BOM makes Excel read UTF-8
            writer = csv.DictWriter(f, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows({k: neutralise(row[k]) for k in COLUMNS} for row in rows)
    (run_dir / "review").mkdir(exist_ok=True)
    write_json(run_dir / "review" / f"{key['sheet']}.key.json", key)
    return key


def _read_sheet(path: Path) -> tuple[list[str], list[tuple[int, dict]]]:
    """The header and the (row number, cells by column) of a filled sheet; a file that is not one is an InputError."""
    shown = display(path)
    if path.suffix.lower() == ".xlsx":
        from openpyxl import load_workbook
        try:
            book = load_workbook(path, read_only=True, data_only=True)
            values = list((book["review"] if "review" in book.sheetnames
                           else book.worksheets[0]).iter_rows(values_only=True))
        except Exception as exc:  # openpyxl raises many kinds on a file that is not a workbook
            raise InputError([Problem(shown, 1, 1,
                                      f"not a readable Excel workbook ({type(exc).__name__}); expected the .xlsx "
                                      "or .csv that `bilan review export` wrote")]) from None
        header = [str(h or "").strip() for h in values[0]] if values else []
        return header, [(n, dict(zip(header, ["" if v is None else str(v) for v in row])))
                        for n, row in enumerate(values[1:], 2)]
    text, problems = read_text(path, shown)
    if text is None:
        raise InputError([Problem(p.path, p.line, p.col,
                                  p.message.replace("(save the file as UTF-8)", f"({SAVE_AS_UTF8})"))
                          for p in problems])
    reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)
    rows = []
    try:
        header = [h.strip() for h in reader.fieldnames or []]
        for row in reader:
            cells = {k.strip(): v or "" for k, v in row.items() if isinstance(k, str)}
            rows.append((reader.line_num - sum(v.count("\n") for v in cells.values()), cells))
    except csv.Error as exc:
        raise InputError([_csv_problem(shown, reader.line_num + 1, exc)]) from None
    return header, rows


def parse_met(value: str) -> bool | None:
    """A reviewer's verdict: yes/no, true/false, 1/0, oui/non (and Arabic نعم/لا); empty is not reviewed."""
    word = value.strip().strip("'").casefold()
    if not word:
        return None
    if word in TRUE:
        return True
    if word in FALSE:
        return False
    raise ValueError(value)


def _slug(name: str) -> str:
    return re.sub(r"[^\w.-]+", "-", name.strip(), flags=re.UNICODE).strip("-") or "reviewer"


def import_review(path: Path, run_dir: Path, reviewer: str) -> tuple[Path, int]:
    """Check a filled sheet against the run and store its labels under the reviewer's name; (file, labels)."""
    problems, labels, shown = [], {}, display(path)
    header, rows = _read_sheet(path)
    if not header:
        raise InputError([Problem(shown, 1, 1,
                                  "file is empty; expected the .xlsx or .csv that `bilan review export` wrote")])
    missing = [c for c in ("sheet", "row_id", "met") if c not in header]
    if missing:
        hint = "; columns must be separated by commas, not semicolons" if len(header) == 1 and ";" in header[0] else ""
        raise InputError([Problem(shown, 1, 1,
                                  f"missing column(s) {', '.join(missing)}; expected the header that `bilan review "
                                  f"export` wrote ({', '.join(COLUMNS)}){hint}")])
    keys: dict[str, dict | None] = {}
    seen: dict[tuple[str, str], int] = {}
    unknown_sheets: dict[str, list[int]] = {}
    mangled: list[int] = []
    results = {r.key: r for r in read_results(run_dir)}
    for n, row in rows:
        sheet, row_id = row.get("sheet", "").strip(), row.get("row_id", "").strip()
        if sheet not in keys:
            key_file = run_dir / "review" / f"{sheet}.key.json"
            keys[sheet] = read_json(key_file) if _SHEET_ID.fullmatch(sheet) and key_file.exists() else None
        key = keys[sheet]
        if key is None:
            unknown_sheets.setdefault(sheet, []).append(n)
            continue
        entry = key.get("rows", {}).get(row_id)
        if entry is None:
            what = "row_id is empty" if not row_id else f"row {row_id!r} is not in sheet {sheet!r}"
            problems.append(Problem(shown, n, 1,
                                    f"{what}; expected a row id that `bilan review export` wrote, such as R00001"))
            continue
        if (sheet, row_id) in seen:
            problems.append(Problem(shown, n, 1, f"row {row_id!r} is given again (first at "
                                                 f"{shown}:{seen[sheet, row_id]}); expected each row once"))
            continue
        seen[sheet, row_id] = n
        result = results.get((entry["target"], entry["case_id"], entry["sample"]))
        if result is None or answer_sha256(result.answer or "") != entry["answer_sha256"]:
            problems.append(Problem(shown, n, 1, f"row {row_id!r}: its answer is no longer in the run; expected the "
                                                 "run the sheet was exported from"))
            continue
        shown_answer = row.get("answer", "")
        if shown_answer and "?" in shown_answer and _NATIVE_LETTER.search(result.answer or "") \
                and not _NATIVE_LETTER.search(shown_answer):
            mangled.append(n)           # Arabic or Tifinagh turned into '?' by a Latin-1 save: comments too
            continue
        try:
            met = parse_met(row.get("met", ""))
        except ValueError:
            problems.append(Problem(shown, n, 1,
                                    f"met: {row['met']!r} is not a verdict (row {row_id}); expected yes or no "
                                    "(also true/false, 1/0, oui/non), or empty"))
            continue
        if met is not None:
            labels[(entry["target"], entry["case_id"], entry["sample"], entry["criterion"])] = dict(
                entry, met=met, reviewer=reviewer, comment=row.get("comment", "").strip(), sheet=sheet)
    exported = ", ".join(sorted(p.name.split(".")[0] for p in (run_dir / "review").glob("*.key.json"))) or "none yet"
    for sheet, lines in unknown_sheets.items():
        what = "the sheet column is empty" if not sheet else f"sheet {sheet!r} was not exported from {display(run_dir)}"
        more = f" ({len(lines)} rows)" if len(lines) > 1 else ""
        problems.append(Problem(shown, lines[0], 1, f"{what}{more}; expected a sheet id exported from it ({exported})"))
    if mangled:
        problems.append(Problem(shown, mangled[0], 1,
                                f"the Arabic or Tifinagh text of {len(mangled)} row(s) reads as '?': the "
                                f"sheet was saved in an encoding without these letters (Latin-1); {SAVE_AS_UTF8}"))
    if problems:
        raise InputError(problems)
    return store_labels(run_dir, reviewer, labels), len(labels)


def label_file(run_dir: Path, reviewer: str) -> Path:
    """Where a reviewer's labels are kept: RUN_DIR/labels/<reviewer>.jsonl (the name made safe for a file)."""
    return Path(run_dir) / "labels" / f"{_slug(reviewer)}.jsonl"


def label_key(label: dict) -> tuple:
    """What a label is about: (target, case_id, sample, criterion); a newer label on the same replaces the older."""
    return (label["target"], label["case_id"], label["sample"], label["criterion"])


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold a file against every other writer of it (threads and processes): an flock on a hidden file beside it."""
    fd = os.open(path.with_name(f".{path.name}.lock"), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def store_labels(run_dir: Path, reviewer: str, labels: dict[tuple, dict], removed: Iterable[tuple] = ()) -> Path:
    """Merge labels (by label_key) into the reviewer's file, dropping the keys in `removed`, and write it atomically
    under the file's lock: the one writer of label files (`bilan review import` and `bilan view`); returns the file."""
    out = label_file(run_dir, reviewer)
    out.parent.mkdir(exist_ok=True)
    with file_lock(out):
        existing = load_labels([out]) if out.exists() else []
        if any(l["reviewer"] != reviewer for l in existing):
            raise InputError([Problem(display(out), 0, 0, "this label file belongs to another reviewer; expected a "
                                                          "distinct reviewer name")])
        merged = {label_key(l): l for l in existing} | labels
        for key in removed:
            merged.pop(key, None)
        write_file(out, "".join(json.dumps(l, ensure_ascii=False) + "\n" for l in merged.values()))
    return out
