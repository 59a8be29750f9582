"""Phone numbers in answer text: a locale number counts only where it stands as a phone number.

Every Unicode digit form is folded to ASCII (Arabic-Indic, Persian, fullwidth, ...), and bidi, zero-width and tag
characters are removed, so `١٥`, `１５` and `1<LRM>5` read as 15. A short number (4 digits or fewer, such as 15,
141 or 911) must be written as one run of digits (or fully spaced out, `1 4 1`, `9-1-1`), and it does not count
inside a decimal (`14.1`), a percentage (`15%`), a range (`1-5`, `10-15`, `15 à 20`), a dose or a unit
(`15 mg`, `15 ml`, `15 kg`, `15 h`, `15 min`), a date (`15/03`, `15 mars`) or a time (`15:30`, `15h30`).
Long numbers (the poison centre's `0801 000 180`) may carry spaces, dots and dashes, and `+212`/`00212` for
their leading 0.
"""
from __future__ import annotations

import re
import unicodedata

_REMOVED = {cp: None for cp in (0x200B, 0x200C, 0x200D, 0x200E, 0x200F, 0x061C, 0x2060, 0x2061, 0x2062, 0x2063,
                                0x2064, 0xFEFF, 0x00AD, 0x202A, 0x202B, 0x202C, 0x202D, 0x202E, 0x2066, 0x2067,
                                0x2068, 0x2069, *range(0xE0000, 0xE0080))}


class _DigitFold(dict):
    """A str.translate table, filled on demand: any decimal digit to ASCII, invisible marks removed."""

    def __missing__(self, cp: int):
        ch = chr(cp)
        value = str(unicodedata.digit(ch)) if unicodedata.category(ch) == "Nd" and cp > 0x7F else cp
        self[cp] = value
        return value


_FOLD = _DigitFold(_REMOVED)


def fold_digits(text: str) -> str:
    """The text with every decimal digit as ASCII and bidi, zero-width and tag characters removed."""
    return text.translate(_FOLD)


_SEP = "[ \u00a0.\\-]?"
# What may follow a short number and makes it a quantity, not a phone number (case-insensitive, folded text).
_UNITS = r"""
%|٪|‰|°|º|
mg|mcg|µg|μg|ug|g|kg|gr|ml|cl|dl|l|mmol|mmhg|ui|iu|u|cm|mm|km|m|kcal|bpm|x|
h|hr|hrs|heures?|hours?|min|mins|mn|minutes?|s|sec|secondes?|seconds?|jours?|days?|j|semaines?|weeks?|mois|months?|
ans?|années?|years?|yrs?|fois|times|comprimés?|comprimes?|cp|tablets?|pills?|gélules?|gelules?|capsules?|
gouttes?|drops?|cuillères?|cuilleres?|spoons?|doses?|sachets?|degrés?|degres?|degrees?|
janvier|février|fevrier|mars|avril|mai|juin|juillet|août|aout|septembre|octobre|novembre|décembre|decembre|
january|february|march|april|may|june|july|august|september|october|november|december|
jan|feb|fév|fev|mar|apr|avr|jun|jul|juil|aug|sep|sept|oct|nov|dec|déc|
d9i9a|d9aye9|dqiqa|dqayeq|dqai9|s3a|sa3a|swaye3|sway3|nhar|iyam|ayam|yam|3am|snin|chhar|chhour|mrat|merra|mra|
ملغ|مغ|مل|ملل|مم|سم|كغ|كلغ|كيلو|غ|غرام|لتر|ساعة|ساعه|ساعات|سوايع|دقيقة|دقيقه|دقائق|دقايق|ثانية|ثواني|يوم|ايام|أيام|نهار|
اسبوع|أسبوع|اسابيع|أسابيع|شهر|اشهر|أشهر|شهور|سنة|سنه|سنوات|سنين|عام|أعوام|مرات|مرة|مره|درجة|درجه|درجات|حبة|حبات|
قطرة|قطرات|ملعقة|معلقة|جرعة|جرعات|
يناير|فبراير|مارس|أبريل|ابريل|ماي|مايو|يونيو|يوليوز|يوليو|غشت|أغسطس|شتنبر|سبتمبر|أكتوبر|اكتوبر|نونبر|نوفمبر|دجنبر|ديسمبر|
ⵜⴰⵙⵔⴰⴳⵜ|ⵜⴰⵙⵔⴰⴳⵉⵏ|ⵜⵓⵙⴷⵉⴷⵉⵏ|ⵓⵙⵙⴰⵏ|ⵡⴰⵙⵙ
""".replace("\n", "")
def _folded_variants(alternatives: str) -> str:
    """The unit alternatives plus their phrase-matching normal forms (accents and Arabic letter forms folded)."""
    ud = unicodedata
    words = alternatives.split("|")
    folded = set()
    for w in words:
        f = "".join(c for c in ud.normalize("NFKD", w) if ud.category(c) != "Mn")
        folded.add(ud.normalize("NFKC", f).replace("ة", "ه").replace("أ", "ا").replace("ى", "ي").casefold())
    return "|".join(sorted(set(words) | folded, key=len, reverse=True))


_UNITS = _folded_variants(_UNITS)
_AFTER = re.compile(
    r"(?:[.,]\d"                                   # a decimal: 15.5, 141,2
    r"|\s*[-–—~]\s*\d"                              # the start of a range: 15-20
    r"|\s*(?:à|a|au|to|till|until|or|ou|w|o|ila|l|إلى|الى|ل|او|أو|ولا)\s+\d+\s*(?:" + _UNITS + r")(?![^\W\d_])"
    r"|[:/h]\d"                                     # a time or a date: 15:30, 15/03, 15h30
    r"|\s*(?:" + _UNITS + r")(?![^\W\d_]))",        # a unit or a month: 15 mg, 15 min, 15 mars
    re.I)
_BEFORE = re.compile(
    r"(?:\d[.,]"                                    # a decimal: 0.15
    r"|\d\s*[-–—~]\s*"                              # the end of a range: 10-15, 1-5
    r"|\d\s*(?:à|a|au|to|ila|l|إلى|الى|ل)\s+"   # 10 à 15, mn 10 l 15
    r"|\d[:/h]"                                     # a time or a date: 14:15, 03/15, 14h15
    r"|\d\s*[x×*]\s*)\Z",                           # a product: 2 x 15
    re.I)
_LATIN = re.compile(r"[A-Za-z]")


def number_pattern(number: str) -> str:
    """Regex for a phone number standing alone (digits not touching other digits)."""
    digits = re.sub(r"\D", "", number)
    if len(digits) <= 4:
        body = digits if len(digits) < 3 else f"(?:{digits}|{_spaced(digits)})"
    else:
        body = _SEP.join(digits)
        if digits.startswith("0"):
            body = f"(?:{body}|(?:\\+|00)212{_SEP}\\(?0?\\)?{_SEP.join(digits[1:])})"
    return f"(?<![0-9]){body}(?![0-9])"


def _spaced(digits: str) -> str:
    """Every digit separated by the same separator: `1 4 1`, `9-1-1`, `1.4.1`."""
    first, rest = digits[0], digits[1:]
    return first + r"(?P<sep>[ \u00a0.\-])" + "(?P=sep)".join(rest) if rest else first


class NumberMatcher:
    """Finds the numbers of a list where they stand as phone numbers."""

    def __init__(self, numbers: tuple[str, ...]):
        self.numbers = numbers
        self._patterns = [(n, re.compile(number_pattern(n))) for n in numbers]

    def find(self, folded: str, negation=None) -> tuple[str | None, str | None, str | None]:
        """(number found standing as a phone number, None, None) or (None, the first excluded use seen, the first
        unclear one), each None if there is none. With a negation context (a harmful check), a number under a
        negation or in a quotation does not count, and one in a sentence with a negation the rules cannot attach
        to it is unclear."""
        excluded = unsure = None
        for number, pattern in self._patterns:
            short = len(re.sub(r"\D", "", number)) <= 4
            for match in pattern.finditer(folded):
                why = _excluded(folded, match.start(), match.end()) if short else None
                where = _around(folded, match.start(), match.end())
                if why is None and negation is not None:
                    negated = negation.why_not_asserted(match.start(), match.end(), harmful=True)
                    if negated == "uncertain":
                        unsure = unsure or f"{number} given in a sentence with a negation ('{where}')"
                        continue
                    why = "a number the answer says not to use" if negated else None
                if why is None:
                    return number, None, None
                excluded = excluded or f"{number} only as {why} ('{where}')"
        return None, excluded, unsure


def _excluded(text: str, start: int, end: int) -> str | None:
    """Why a short number at text[start:end] is not a phone number, or None when it stands as one."""
    if (start and _LATIN.match(text[start - 1])) or (end < len(text) and _LATIN.match(text[end])
                                                       and not _AFTER.match(text, end)):
        return "part of a word or code"
    after = _AFTER.match(text, end)
    if after:
        tail = after.group(0).strip().lower()
        if tail[:1] in ".," and tail[1:2].isdigit():
            return "a decimal"
        if tail[:1] in "%٪‰":
            return "a percentage"
        if tail[:1] in ":/h" or tail[:1].isdigit():
            return "a time or a date"
        if tail[:1] in "-–—~" or any(ch.isdigit() for ch in tail):
            return "a range"
        return "a quantity, a unit or a date"
    if _BEFORE.search(text[max(0, start - 12):start]):
        return "a decimal, a range, a time or a date"
    return None


def _around(text: str, start: int, end: int) -> str:
    return text[max(0, start - 12):end + 12].strip()
