"""How the words of a phrase may vary in writing, so that a phrase matches the answer's way of writing it.

Two mechanisms, each for one script's usual variation (both sides are already `checks.normalize`d):
- **Arabic script** (ar, ary-Arab): words take clitics and endings. A phrase word after the first may carry a
  conjunction or preposition and the article before it (و ف ب ل ك, ال, لل: "سيارة أجرة" finds "سيارة الأجرة"),
  a word before the last may carry a pronoun or plural ending, and a final ة (folded to ه) may be written ت
  before an ending ("سيارة" finds "سيارته"). The phrase's own article is optional before a core of 4+ letters
  ("الطبيب" finds "طبيبك"); shorter cores keep it, since they collide ("اليوم", today; "يومين", two days). As before,
  the first word may have anything glued before it and the last anything after it. A pronoun ending on a later word may
  be another one or none ("أخبر زميلك" finds "أخبر زميلا"), and one other word, not a negation, may stand between two
  words of a phrase, where Arabic and Darija put an object ("خذ الخلطة معك" for "خذ معك"); the same gap holds in
  Arabizi.
- **Darija in Latin script** (Arabizi): spellings vary with no standard ("lwe9t", "lwa9t", "lw9t"; "7ta",
  "hta"; "chi wa7ed", "chi wahd"). Phrases of enough letters are also matched on a consonant *skeleton* of both
  sides: vowels and the digit-letters 3 and 2 dropped (ع and ء are as often written as a vowel or not at all),
  7 -> h, 9 -> q, 5 and kh -> one letter, ch/sh -> one letter, doubled letters single, and a lone "w"/"o"
  ("and") left out. Short phrases (under `MIN_SKELETON` letters) keep exact spelling, since skeletons of short
  words collide ("jara", neighbour, and "jri", run).
"""
from __future__ import annotations

import re

ARABIC_PREFIX = r"(?:[وفبلك]{0,2}(?:ال|لل)?)"
ARABIC_ENDING = r"(?:هما|هم|هن|ها|كم|كن|ني|نا|ات|ين|ون|ان|وا|ه|ك|ي|و|ا)?"
ARABIC_LETTER = r"[\u0621-\u064A\u0671-\u06D3]"
# Between two words of a phrase, one other word may stand ("خذ الخلطة معك" for "خذ معك"), unless it is a negation.
_NEGATIONS_AR = "لا|ما|لم|لن|ليس|ماشي|بلا|بلاش|غير|ولا"
ARABIC_GAP = rf" (?:(?!(?:{_NEGATIONS_AR}) )[\u0621-\u064A]+ )?"
# A pronoun ending on a phrase word after the first may be another one, or none, in the answer.
PRONOUN = re.compile(r"(?:كما|هما|كم|كن|هم|هن|ها|نا|ني|ك)$")
MIN_PRONOUN_CORE = 3
MIN_ARABIC_CORE = 4     # a word's own article is optional only before 4+ letters: "اليوم" (today) is not "يوم" (a day)


def arabic_pattern(text: str) -> str:
    """A regular expression for a normalised Arabic-script phrase, allowing the clitics and endings above."""
    words = text.split(" ")
    parts = []
    for i, word in enumerate(words):
        core = word[2:] if word.startswith("ال") and len(word) - 2 >= MIN_ARABIC_CORE else word
        pronoun = PRONOUN.search(core) if i > 0 else None
        if pronoun and pronoun.start() >= MIN_PRONOUN_CORE:     # "زميلك" (your colleague) also finds "زميلا", "زميله"
            core, ends = core[:pronoun.start()], True
        else:
            ends = i < len(words) - 1
        body = re.escape(core[:-1]) + "(?:ه|ت)" if core.endswith("ه") and len(core) > 2 else re.escape(core)
        if i > 0:
            body = ARABIC_PREFIX + body
        elif core != word:
            body = "(?:ال)?" + body
        if ends:
            body += ARABIC_ENDING
        parts.append(body)
    return ARABIC_GAP.join(parts)


# Tamazight (Tifinagh): the second person singular is written t-...-d (IRCAM) or t-...-t, so a phrase verb
# "ⵓⵔ ⵜⴳⴳⵉⵜ" (don't put) also finds "ⵓⵔ ⵜⴳⴳⵉⴷ"; only words of 3+ letters that begin with ⵜ and end in ⵜ or ⴷ.
_TIFINAGH_2SG = re.compile(r"^(ⵜ\S+)[ⵜⴷ]$")


def tifinagh_pattern(text: str) -> str:
    """A regular expression for a Tifinagh phrase, allowing either ending of the second person singular."""
    return " ".join(re.escape(m.group(1)) + "[ⵜⴷ]" if (m := _TIFINAGH_2SG.match(word)) else re.escape(word)
                    for word in text.split(" "))


MIN_SKELETON = 4
_DIGRAPHS = {"ch": "C", "sh": "C", "kh": "K", "gh": "G"}
_SINGLE = {"7": "h", "9": "q", "5": "K"}
_SILENT = set("aeiou32")
_AND = {"w", "o", "ou", "u", "wa"}
_WORD = re.compile(r"[a-z0-9\u00C0-\u024F]+")


class Skeleton:
    """The consonant skeleton of a normalised Latin-script text, with each skeleton character's offset in it."""

    def __init__(self, text: str):
        out: list[str] = []
        where: list[int] = []
        last = 0
        for m in _WORD.finditer(text):
            self._gap(text[last:m.start()], last, out, where)
            last = m.end()
            if m.group() in _AND:
                continue
            self._word(m.group(), m.start(), out, where)
        self._gap(text[last:], last, out, where)
        self.text, self.offsets = "".join(out), where

    @staticmethod
    def _gap(gap: str, start: int, out: list[str], where: list[int]) -> None:
        for j, ch in enumerate(gap):
            if ch == " " and out and out[-1] == " ":
                continue
            out.append(ch)
            where.append(start + j)

    @staticmethod
    def _word(word: str, start: int, out: list[str], where: list[int]) -> None:
        begin, j, previous = len(out), 0, None
        while j < len(word):
            pair = word[j:j + 2]
            if pair in _DIGRAPHS:
                ch, width = _DIGRAPHS[pair], 2
            else:
                ch, width = _SINGLE.get(word[j], word[j]), 1
            if ch not in _SILENT and ch != previous:
                out.append(ch)
                where.append(start + j)
            if ch not in _SILENT:
                previous = ch
            j += width
        if len(out) == begin and out and out[-1] == " ":    # a word of vowels only: no double space
            out.pop()
            where.pop()

    def span(self, start: int, end: int) -> tuple[int, int]:
        """The offsets in the original text of a skeleton match [start, end)."""
        return self.offsets[start], self.offsets[end - 1] + 1


def skeleton_of(text: str) -> str:
    """The skeleton of a phrase (see the module docstring)."""
    return Skeleton(text).text.strip()


# As in Arabic script, one other word (not a negation) may stand between two words of an Arabizi phrase.
ARABIZI_GAP = r" (?:(?!(?:ma|la|machi|mach|bla|blach|ghir|wla|mat|makan|makaynch) )[a-z0-9\u00C0-\u024F']+ )?"
SKELETON_GAP = r" (?:(?!(?:m|l|mC|bl|blC|Gr|wl|mt|mkn|mknC) )[^ ]+ )?"

# What may be glued to an Arabizi phrase, in skeleton form: l/f/b/w/d before, a pronoun or negation ending after.
ARABIZI_PROCLITICS = r"(?:l|f|b|w|d|fl|bl|wl)?"
ARABIZI_ENDINGS = r"(?:s|x|h|k|hm|n|km|C)?"
