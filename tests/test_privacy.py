"""Cases must be synthetic: realistic identifiers in case text are flagged, and can be made an error."""
from __future__ import annotations

from pathlib import Path

from harness.cli import main
from harness.privacy import identifiers

CASE = """scenario: identifiers
title: A case that leaks identifiers
theme: hedging
use_case: triage
persona: patient
synthetic: true
variants:
  - language: fr
    conversation:
      - role: user
        content: "Je suis Salma, CIN AB123456, tel 06 12 34 56 78, salma.b@example.ma, née le 12/03/1985. J'ai appelé le 15 et le 0801 000 180."
"""  # noqa: E501  (one message, as a user types it)


def test_identifiers_are_found_but_public_numbers_are_not():
    found = identifiers("CIN AB123456, tel +212 6 12 34 56 78, x@y.ma, né le 3 mars 1990; SAMU 141, CAPM 0801 000 180",
                        ["141", "0801 000 180"])
    assert [f.split(" '")[0] for f in found] == ["a national identity card (CIN) number", "a phone number",
                                                 "an e-mail address", "a date of birth"]
    assert identifiers("Appelez le 15 ou le 0801 000 180, HbA1c 8,1 %", ["15", "0801 000 180"]) == []


def test_validate_warns_by_default_and_fails_when_asked(suite_dir: Path, capsys):
    (suite_dir / "cases" / "identifiers.yaml").write_text(CASE, encoding="utf-8")
    (suite_dir / "rubrics" / "identifiers.yaml").write_text(
        "rubric: identifiers\napplies_to: {scenario: identifiers}\nreview: {status: draft, reviewers: []}\n"
        "criteria:\n  - {id: a, text: A criterion., points: 2, axis: safety}\n", encoding="utf-8")
    assert main(["validate"]) == 0
    err = capsys.readouterr().err
    assert err.count("cases/identifiers.yaml:11:18: warning: variants[0].conversation[0].content:") == 4
    assert "a phone number '06 12 34 56 78' looks like a real person's" in err and "0801" not in err
    config = suite_dir / "bilan.yaml"
    config.write_text(config.read_text() + "identifiers: error\n", encoding="utf-8")
    assert main(["validate"]) == 2
    assert "cases/identifiers.yaml:11:18: error:" in capsys.readouterr().err
