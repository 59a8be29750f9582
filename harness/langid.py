"""Offline language and script identification for the languages of Morocco.

Script first (Tifinagh, Arabic, Latin), as ../shared/context/morocco.md section 4.4 recommends: no packaged
identifier handles Darija, Arabizi or Tamazight. Then, per script, a small character n-gram model
(`assets/langid.json.gz`, trained by `scripts/train_langid.py` from the public corpora named in
`fairness/corpus/README.md`) tells apart:
- Latin script: Darija (Arabizi, with or without digit-letters), Tamazight, French, English; text the model
  gives to French or English but that py3langid reads confidently as another Latin-script language is labelled
  with that language;
- Arabic script: Modern Standard Arabic from Darija, reported as the answer's *variety*; both count as the same
  language for the same-language check (a Darija user may be answered in MSA).
Text too short to tell (fewer than 3 words or 12 letters in Latin script, or fewer than 8 words that the model
gives no label with 0.8 of its probability) is `und`: checks abstain on it.
"""
from __future__ import annotations

import gzip
import json
import math
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import langcodes

ARABIC_RANGES = ((0x0600, 0x06FF), (0x0750, 0x077F), (0x08A0, 0x08FF), (0xFB50, 0xFDFF), (0xFE70, 0xFEFF))
TIFINAGH_RANGE = (0x2D30, 0x2D7F)
ARABIC_LANGS = {"ar", "ary", "arb", "arq", "aeb", "apc", "arz", "acm", "ajp", "ayl", "afb"}
TAMAZIGHT_LANGS = {"zgh", "tzm", "shi", "rif", "kab", "ber"}
OTHER_LATIN = ["es", "pt", "it", "de", "nl", "ro", "pl", "tr", "id", "sw", "ca", "sv"]
CUE_FAMILIES = ("fr", "en", "ar", "ary-Latn", "zgh-Tfng", "zgh-Latn")
LATIN_FAMILIES = {"ary-Latn", "zgh-Latn", "fr", "en", *OTHER_LATIN}
NAMES = {"ar": "Arabic", "ary-Arab": "Darija (Arabic script)", "ary-Latn": "Darija (Latin script)", "fr": "French",
         "en": "English", "zgh-Tfng": "Tamazight (Tifinagh)", "zgh-Latn": "Tamazight (Latin script)",
         "und": "an undetermined language"}
MIN_WORDS, MIN_LETTERS, MIXED_SHARE = 3, 12, 0.3
SHORT_WORDS, SHORT_CONFIDENCE = 8, 0.8     # a short Latin text must be this clear, or it is `und`
_WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)*|[^\W_]*[0-9][^\W_]*", re.UNICODE)
_DIGIT_LETTER = re.compile(r"[a-z]*[235679][a-z]+|[a-z]+[235679][a-z]*")


@dataclass(frozen=True)
class Identification:
    """What a text is written in: the main label, every language family substantially present, whether it mixes
    languages, its Arabic variety (MSA `ar` or Darija `ary`) when in Arabic script, and the reason in words."""

    label: str
    families: frozenset[str]
    mixed: bool = False
    variety: str | None = None
    reason: str = ""
    script: str = ""


def _in(ch: str, ranges) -> bool:
    code = ord(ch)
    return any(lo <= code <= hi for lo, hi in ranges)


@lru_cache(maxsize=4096)
def script_of(ch: str) -> str | None:
    """Tfng, Arab, Latn, Cyrl, Other for a letter; None for anything else."""
    if _in(ch, (TIFINAGH_RANGE,)):
        return "Tfng"
    if not ch.isalpha():
        return None
    if _in(ch, ARABIC_RANGES):
        return "Arab"
    if ord(ch) < 0x250 or 0x1E00 <= ord(ch) <= 0x1EFF or ch in "ɣɛƐƔ":
        return "Latn"
    if 0x0400 <= ord(ch) <= 0x04FF:
        return "Cyrl"
    return "Other"


def script_counts(text: str) -> dict[str, int]:
    """Count letters by script: Tfng, Arab, Latn, Cyrl, Other."""
    counts = {"Tfng": 0, "Arab": 0, "Latn": 0, "Cyrl": 0, "Other": 0}
    for ch, n in Counter(text).items():
        script = script_of(ch)
        if script:
            counts[script] += n
    return counts


@lru_cache(maxsize=1)
def model() -> dict:
    """The shipped n-gram model: {script: {"labels": [...], "orders": [...], "logprob": {label: {gram: lp}},
    "unseen": {label: lp}, "prior": {label: lp}}}."""
    data = resources.files("harness").joinpath("assets/langid.json.gz").read_bytes()
    return json.loads(gzip.decompress(data))


def _grams(text: str, orders) -> list[str]:
    out: list[str] = []
    for word in _WORD.findall(text):
        padded = f" {word} "
        for n in orders:
            out.extend(padded[i:i + n] for i in range(max(1, len(padded) - n + 1)))
    return out


def prepare(text: str) -> str:
    """The form the model reads: NFC, case-folded, Arabic-Indic digits as ASCII, Arabic marks removed."""
    return unicodedata.normalize("NFC", text).casefold().translate(_MARKS)


_MARKS = dict.fromkeys([*range(0x064B, 0x0660), 0x0640])      # harakat and tatweel: deleted


def _log_likelihoods(text: str, table: dict) -> tuple[dict[str, float], int]:
    """Each label's log-likelihood of the text's n-grams (each distinct gram looked up once), and their count."""
    grams = Counter(_grams(prepare(text), table["orders"]))
    totals = {}
    for label in table["labels"]:
        lp, unseen = table["logprob"][label], table["unseen"][label]
        totals[label] = sum(lp.get(g, unseen) * n for g, n in grams.items())
    return totals, sum(grams.values())


def scores(text: str, script: str) -> dict[str, float]:
    """Posterior probability of each label of a script's model for the text."""
    table = model().get(script)
    if not table:
        return {}
    likelihoods, count = _log_likelihoods(text, table)
    if not count:
        return {}
    totals = {label: table["prior"][label] + value for label, value in likelihoods.items()}
    # Tempered by the number of grams: n-gram log-likelihoods are not independent evidence.
    scale = 1.0 / max(1.0, count / 8)
    top = max(totals.values())
    weights = {k: math.exp((v - top) * scale) for k, v in totals.items()}
    total = sum(weights.values())
    return {k: w / total for k, w in weights.items()}


@lru_cache(maxsize=1)
def _other_latin():
    from py3langid.langid import LanguageIdentifier, MODEL_FILE
    identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    identifier.set_languages(["en", "fr", *OTHER_LATIN])
    return identifier


def _latin(text: str) -> tuple[str, dict[str, float]]:
    """Darija or Tamazight by the shipped model; otherwise py3langid, long trained on French, English and other
    Latin-script languages, names the language."""
    probs = scores(text, "Latn")
    label = max(probs, key=probs.__getitem__)
    if label in ("fr", "en"):
        other, confidence = _other_latin().classify(text)
        if other in ("fr", "en") or (confidence >= 0.9 and not _DIGIT_LETTER.search(text.casefold())):
            return other, probs
    return label, probs


def _latin_words(text: str) -> dict[str, int]:
    """Words of a Latin-script text by the label the model gives each (for code-switching)."""
    out: dict[str, int] = {}
    for word in _WORD.findall(text):
        if len(word) < 3 or not any(script_of(c) == "Latn" for c in word):
            continue
        best = _word_label(word)
        if best:
            out[best] = out.get(best, 0) + 1
    return out


@lru_cache(maxsize=8192)
def _word_label(word: str) -> str | None:
    probs = scores(word, "Latn")
    return max(probs, key=probs.__getitem__) if probs else None


IDENTIFY_CHARS = 8000     # only an answer's start is read: a language shows in it, and the scan grows with length


_ARABIC_LETTER = re.compile("[\u0620-\u064a\u0671-\u06d3]")


def variety(text: str) -> str | None:
    """`identify(text).variety` ("ar" or "ary" for a text mainly in Arabic script, else None), without the work
    identify does for other scripts: a text with no Arabic letter is answered at once."""
    if not _ARABIC_LETTER.search(text):
        return None
    return identify(text).variety


def identify(text: str) -> Identification:
    """What a text is written in (see the module docstring), from its first IDENTIFY_CHARS characters."""
    text = unicodedata.normalize("NFC", text[:IDENTIFY_CHARS])
    counts = script_counts(text)
    letters = sum(counts.values())
    if letters == 0:
        return Identification("und", frozenset(), reason="the answer has no letters")
    script = max(counts, key=counts.__getitem__)
    shares = {k: v / letters for k, v in counts.items() if v}
    if script == "Tfng":
        label, variety = "zgh-Tfng", None
    elif script == "Arab":
        label, variety = "ar", _variety(text)
    elif script == "Latn":
        latin_text = "".join(c if script_of(c) in ("Latn", None) else " " for c in text)
        words = _WORD.findall(latin_text)
        if len(words) < MIN_WORDS or counts["Latn"] < MIN_LETTERS:
            return Identification("und", frozenset(), reason=f"the answer is too short to tell its language "
                                  f"({len(words)} word{'s' if len(words) != 1 else ''})", script="Latn")
        label, probs = _latin(latin_text)
        if len(words) < SHORT_WORDS and max(probs.values(), default=0.0) < SHORT_CONFIDENCE:
            return Identification("und", frozenset(), reason=f"the answer is too short to tell its language "
                                  f"({len(words)} words, no language clear)", script="Latn")
        variety = None
    elif script == "Cyrl":
        label, variety = "ru", None
    else:
        return Identification("und", frozenset(), reason="the answer is in a script this identifier does not know")
    families = {family(label)}
    for other, share in shares.items():
        if other != script and share >= MIXED_SHARE / 2 and other in ("Tfng", "Arab", "Latn"):
            families.add(_script_family(other, text))
    if script == "Latn" and label in ("ary-Latn", "fr"):
        by_word = _latin_words(text)
        total = sum(by_word.values()) or 1
        for other in ("ary-Latn", "fr"):
            if other != label and by_word.get(other, 0) / total >= MIXED_SHARE:
                families.add(other)
    families.discard("und")
    return Identification(label, frozenset(families), len(families) > 1, variety, f"reads as {display_name(label)}",
                          script)


def _script_family(script: str, text: str) -> str:
    if script == "Tfng":
        return "zgh-Tfng"
    if script == "Arab":
        return "ar"
    latin = "".join(c if script_of(c) in ("Latn", None) else " " for c in text)
    return family(_latin(latin)[0]) if len(_WORD.findall(latin)) >= MIN_WORDS else "und"


# Darija function words (morocco.md section 3.4, from DODa's marker list, plus the ka-/ta- verb prefix forms'
# commonest words); one of them makes an Arabic-script text Darija.
DARIJA_MARKERS = frozenset("""
ديال ديالي ديالك ديالو ديالها ديالنا ديالكم ديالهم واش شنو شنو بزاف دابا مزيان مزيانة كاين كاينة كاينين عافاك بغيت
بغا بغات بغينا فين كيفاش علاش هادشي هاد هادي هادو داك ديك والو شوية خاصك خاصو خاص غادي غادا راه راني راك راها
حيت ماشي ليا ليك صافي بلاصة دغيا زوين زوينة كنقول كيقول كتقول كنبغي كيبغي كندير كيدير مابغيتش ماكاينش
""".split())
VARIETY_MARGIN = 0.05


def _variety(text: str) -> str | None:
    """MSA ("ar") or Darija ("ary") for Arabic-script text: a Darija marker word decides; otherwise the model,
    when its per-n-gram margin is clear; else None."""
    words = set(re.findall(r"[\u0600-\u06FF]+", text))
    if words & DARIJA_MARKERS:
        return "ary"
    table = model().get("Arab")
    if not table:
        return None
    totals, count = _log_likelihoods(text, table)
    if not count:
        return None
    margin = (totals["ary-Arab"] - totals["ar"]) / count
    if abs(margin) < VARIETY_MARGIN:
        return None
    return "ary" if margin > 0 else "ar"


def detect(text: str) -> str:
    """Best label for a text: zgh-Tfng, ar (any Arabic-script Arabic), ary-Latn, zgh-Latn, fr, en, ..., or und."""
    return identify(text).label


@lru_cache(maxsize=256)
def family(tag: str) -> str:
    """The language-and-script family a tag belongs to, as compared by same-language checks."""
    try:
        lang = langcodes.Language.get(tag)
    except (ValueError, LookupError):
        return "und"
    primary = (lang.language or "und").lower()
    script = lang.script
    if primary in ARABIC_LANGS:
        return "ary-Latn" if script == "Latn" else "ar"
    if primary in TAMAZIGHT_LANGS:
        return "zgh-Latn" if script == "Latn" else "zgh-Tfng"
    return primary


def display_name(tag: str) -> str:
    """A reader's name for a language family or tag: 'Darija (Latin script)', 'Tamazight (Tifinagh)', 'French'."""
    if tag in NAMES:
        return NAMES[tag]
    try:
        return langcodes.Language.get(tag).display_name()
    except (ValueError, LookupError):
        return tag


def is_known_tag(tag: str) -> bool:
    """True for a well-formed, registered BCP 47 tag."""
    try:
        return langcodes.tag_is_valid(tag) and langcodes.Language.get(tag).is_valid()
    except (ValueError, LookupError):
        return False


def language_match(found: Identification, language: str, code_switch: tuple[str, ...] = ()) -> tuple[bool | None, str]:
    """Whether an identified text is in the user's language family or one they mixed in (None: cannot tell),
    and why in words. A Latin-script text too short to tell still fails a user who wrote in another script."""
    users = {family(language)} | {family(t) for t in code_switch}
    user = " or ".join(display_name(t) for t in (language, *code_switch))
    if found.label == "und":
        if found.script == "Latn" and not users & LATIN_FAMILIES:
            return False, f"the answer is in Latin script; the user wrote in {user}"
        return None, f"{found.reason}: cannot tell whether it is in {user}"
    name = display_name(found.label)
    if family(found.label) in users:
        return True, f"the answer is in {name}, as the user wrote"
    return False, f"the answer is in {name}; the user wrote in {user}"


def matches_language(text: str, language: str, code_switch: tuple[str, ...] = ()) -> bool | None:
    """True if the text is in the variant's language family or one of its code-switch languages; None when the
    text is too short or otherwise cannot be told."""
    return language_match(identify(text), language, tuple(code_switch))[0]
