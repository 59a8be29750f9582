"""Realistic identifiers in case text: cases must be synthetic, so these are flagged by `bilan validate`."""
from __future__ import annotations

import re
from collections.abc import Iterable

_CIN = re.compile(r"\b[A-Z]{1,2}[0-9]{5,6}\b")
_PHONE = re.compile(r"(?<![\d+])(?:\+212|00212|0)[\s.-]?[5-8](?:[\s.-]?\d){8}(?!\d)")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_DATE = (r"(?:\b\d{1,2}[/.-]\d{1,2}[/.-](?:19|20)\d{2}\b|\b\d{1,2}\s+(?:janv|févr|fevr|mars|avr|mai|juin|juil|"
         r"août|aout|sept|oct|nov|déc|dec|jan|feb|mar|apr|may|jun|jul|aug|sep)\w*\.?\s+(?:19|20)\d{2}\b)")
_BIRTH = re.compile(r"(?i)(?:\bné(?:e)?\b|\bborn\b|naissance|\bDOB\b|date of birth|ولد|مزداد|الازدياد|تاريخ "
                    r"الميلاد)[^\n]{0,40}?" + _DATE)
_ARABIC_DIGITS = str.maketrans("٠١٢٣٤٥٦٧٨٩۰۱۲۳۴۵۶۷۸۹", "01234567890123456789")


def identifiers(text: str, public_numbers: Iterable[str] = ()) -> list[str]:
    """What in a text looks like a real person's identifier: a CIN number, a phone number that is not one of
    the public service numbers, an e-mail address, or a date of birth."""
    text = text.translate(_ARABIC_DIGITS)
    public = {re.sub(r"\D", "", n) for n in public_numbers}
    found = [f"a national identity card (CIN) number '{m}'" for m in _CIN.findall(text)]
    found += [f"a phone number '{m.strip()}'" for m in _PHONE.findall(text)
              if re.sub(r"\D", "", m).lstrip("0").removeprefix("212") not in {p.lstrip("0") for p in public}]
    found += [f"an e-mail address '{m}'" for m in _EMAIL.findall(text)]
    found += [f"a date of birth '{m.group(0)[-40:]}'" for m in _BIRTH.finditer(text)]
    return found
