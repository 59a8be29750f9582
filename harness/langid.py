"""Offline language and script identification for the languages of Morocco.

Script first (Tifinagh, Arabic, Latin), as ../shared/context/morocco.md section 4.4 recommends: no packaged
identifier separates Darija from MSA, and all of them mislabel Arabizi and Tifinagh. Latin text is then told
apart as Arabizi (digits used as letters, Darija function words), Latin Tamazight (its extra letters), or a
language that py3langid identifies among common Latin-script languages.
"""
from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

import langcodes

ARABIC_RANGES = ((0x0600, 0x06FF), (0x0750, 0x077F), (0x08A0, 0x08FF), (0xFB50, 0xFDFF), (0xFE70, 0xFEFF))
TIFINAGH_RANGE = (0x2D30, 0x2D7F)
ARABIC_LANGS = {"ar", "ary", "arb", "arq", "aeb", "apc", "arz", "acm", "ajp", "ayl", "afb"}
TAMAZIGHT_LANGS = {"zgh", "tzm", "shi", "rif", "kab", "ber"}
LATIN_CANDIDATES = ["en", "fr", "es", "pt", "it", "de", "nl", "ro", "pl", "tr", "id", "sw", "ca", "sv"]

# Common Darija function words as typed in Latin script (several spellings each).
ARABIZI_WORDS = frozenset("""
wach wech chno chnou chnu achno ach dyal dial dyali dialek dyalek bzaf bzzaf bezaf daba dba mzyan mzian
kayn kayen kain 3afak afak bghit bghina fink fayn kifach kifash 3lach alach walakin walakine wlakin hadchi
hadshi ghadi ghad khass khassek khassk khassak khask machi mashi rah raha rani rak ila ghir nta nti
ntoma howa hiya homa dik dok hadi hada hadak wakha wakhha safi llah inchallah insha2allah
fl fel l3ez b7al bhal chwiya chwia chi shi walou walo ma3ndich 3ndi 3ndo 3ndha 3andi m3a ma3a
sbitar tbib tbiba dwa ddwa skhana s5ana rasi rassi kant kanu kayna kaynin bach 3la 3ala
""".split())
_UNIT_OR_ORDINAL = re.compile(r"^\d+(e|er|ere|ème|eme|ère|nd|rd|st|th|h|min|mn|mg|ml|g|kg|l|cm|mm|km|x|j|ans?|mois|dh|mad)$")
_TOKEN = re.compile(r"[^\W_]+", re.UNICODE)
_TAMAZIGHT_LATIN = set("ḍṭṛṣẓɣɛḥčǧ")


def _in(ch: str, ranges) -> bool:
    code = ord(ch)
    return any(lo <= code <= hi for lo, hi in ranges)


def script_counts(text: str) -> dict[str, int]:
    """Count letters by script: Tfng, Arab, Latn, Cyrl, Other."""
    counts = {"Tfng": 0, "Arab": 0, "Latn": 0, "Cyrl": 0, "Other": 0}
    for ch in text:
        if _in(ch, (TIFINAGH_RANGE,)):
            counts["Tfng"] += 1
        elif not ch.isalpha():
            continue
        elif _in(ch, ARABIC_RANGES):
            counts["Arab"] += 1
        elif ord(ch) < 0x250 or 0x1E00 <= ord(ch) <= 0x1EFF or ch in "ɣɛ":
            counts["Latn"] += 1
        elif 0x0400 <= ord(ch) <= 0x04FF:
            counts["Cyrl"] += 1
        else:
            counts["Other"] += 1
    return counts


def _is_arabizi(token: str) -> bool:
    if token in ARABIZI_WORDS:
        return True
    letters = sum(c.isalpha() for c in token)
    return letters >= 2 and any(c in "235679" for c in token) and not _UNIT_OR_ORDINAL.match(token)


@lru_cache(maxsize=1)
def _latin_identifier():
    from py3langid.langid import LanguageIdentifier, MODEL_FILE
    identifier = LanguageIdentifier.from_model_file(MODEL_FILE)
    identifier.set_languages(LATIN_CANDIDATES)
    return identifier


def detect_latin(text: str) -> str:
    """Label Latin-script text: ary-Latn (Arabizi), zgh-Latn, or a language code such as fr or en."""
    tokens = [t.casefold() for t in _TOKEN.findall(text)]
    words = [t for t in tokens if any(c.isalpha() for c in t)]
    if not words:
        return "und"
    if sum(_is_arabizi(t) for t in words) / len(words) >= 0.2:
        return "ary-Latn"
    if sum(any(c in _TAMAZIGHT_LATIN for c in t) for t in words) / len(words) >= 0.15:
        return "zgh-Latn"
    lang, _ = _latin_identifier().classify(text)
    return lang


def detect(text: str) -> str:
    """Best label for a text: zgh-Tfng, ar (any Arabic-script Arabic), ary-Latn, zgh-Latn, fr, en, ..., or und."""
    text = unicodedata.normalize("NFC", text)
    counts = script_counts(text)
    script = max(counts, key=counts.get)
    if counts[script] == 0:
        return "und"
    if script == "Tfng":
        return "zgh-Tfng"
    if script == "Arab":
        return "ar"
    if script == "Latn":
        return detect_latin(text)
    if script == "Cyrl":
        return "ru"
    return "und"


@lru_cache(maxsize=256)
def family(tag: str) -> str:
    """The language-and-script family a tag belongs to, as compared by same-language checks."""
    lang = langcodes.Language.get(tag)
    primary = (lang.language or "und").lower()
    script = lang.script
    if primary in ARABIC_LANGS:
        return "ary-Latn" if script == "Latn" else "ar"
    if primary in TAMAZIGHT_LANGS:
        return "zgh-Latn" if script == "Latn" else "zgh-Tfng"
    return primary


def is_known_tag(tag: str) -> bool:
    """True for a well-formed, registered BCP 47 tag."""
    try:
        return langcodes.tag_is_valid(tag) and langcodes.Language.get(tag).is_valid()
    except (ValueError, LookupError):
        return False


def matches_language(text: str, language: str, code_switch: tuple[str, ...] = ()) -> bool:
    """True if the text's detected language family is the variant's or one of its code-switch languages."""
    allowed = {family(language)} | {family(t) for t in code_switch}
    label = detect(text)
    return label != "und" and family(label) in allowed
