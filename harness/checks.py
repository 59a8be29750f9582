"""Deterministic checks: compile a check as written in a rubric, then run it on an answer's text."""
from __future__ import annotations

import re
import unicodedata

import regex
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

from .langid import is_known_tag, matches_language
from .types import Locale

_DIGITS = {ord(c): str(i) for i, c in enumerate("٠١٢٣٤٥٦٧٨٩")} | {ord(c): str(i) for i, c in enumerate("۰۱۲۳۴۵۶۷۸۹")}
_LETTERS = str.maketrans({"ى": "ي", "ة": "ه", "ٱ": "ا", "ـ": "", "ڭ": "ك", "گ": "ك", "ک": "ك", "ی": "ي",
                          "’": "'", "‘": "'", "`": "'", "ʼ": "'"})
_SPACES = re.compile(r"\s+")
_SEP = "[ \u00a0.\\-]?"
REGEX_SECONDS = 1.0
CHECK_KEYS = ("regex", "any_of", "all_of", "mentions", "language", "max_words", "any", "all", "not")


class CheckTimeout(Exception):
    """A check took too long on an answer (a regular expression with catastrophic backtracking)."""


@dataclass(frozen=True)
class AnswerView:
    """What a check sees: the answer's visible text (see visible_text) and the language the user wrote in;
    derived forms computed once."""

    text: str
    language: str = "und"
    code_switch: tuple[str, ...] = ()

    @cached_property
    def normalized(self) -> str:
        """The text folded for phrase matching."""
        return normalize(self.text)

    @cached_property
    def digits(self) -> str:
        """The text with Arabic-Indic digits as ASCII digits."""
        return self.text.translate(_DIGITS)

    @cached_property
    def same_language(self) -> bool:
        """Whether the text is in the user's language and script (or a code-switch language)."""
        return matches_language(self.text, self.language, self.code_switch)


Check = Callable[[AnswerView], bool]


_COMMENT = re.compile(r"<!--.*?(?:-->|\Z)", re.S)
_HIDDEN_ELEMENT = re.compile(r"<([A-Za-z][\w-]*)\b[^>]*?(?:display\s*:\s*none|visibility\s*:\s*hidden|\shidden\b)[^>]*>.*?</\1\s*>",
                             re.S | re.I)
_TAG = re.compile(r"</?[A-Za-z][^<>]*>")
_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad\u202a\u202b\u202d\u2066\u2067\u2068\u2069"))
_OVERRIDE = re.compile("\u202e([^\u202c\n]*)\u202c?")


def visible_text(text: str) -> str:
    """The answer as a reader of the rendered text sees it: HTML comments, hidden elements, tags, link targets
    and invisible characters removed, and text under a right-to-left override put in display order."""
    text = _COMMENT.sub(" ", text)
    text = _HIDDEN_ELEMENT.sub(" ", text)
    text = _LINK.sub(lambda m: m.group(1), text)
    text = _TAG.sub(" ", text)
    text = _OVERRIDE.sub(lambda m: m.group(1)[::-1], text)
    return text.translate(_INVISIBLE).replace("\u202c", "")


def normalize(text: str) -> str:
    """Fold text for phrase matching: marks, Arabic letter forms, digits, case and spaces."""
    text = unicodedata.normalize("NFKD", text.translate(_DIGITS))
    text = "".join(c for c in text if unicodedata.category(c) != "Mn")
    text = unicodedata.normalize("NFKC", text).translate(_LETTERS).casefold()
    return _SPACES.sub(" ", text).strip()


def number_pattern(number: str) -> str:
    """Regex for a phone number standing alone: separators allowed between digits, +212/00212 for a leading 0."""
    digits = re.sub(r"\D", "", number)
    body = _SEP.join(digits)
    if digits.startswith("0") and len(digits) > 4:
        body = f"(?:{body}|(?:\\+|00)212{_SEP}\\(?0?\\)?{_SEP.join(digits[1:])})"
    return f"(?<![0-9]){body}(?![0-9])"


def word_count(text: str) -> int:
    """Whitespace-separated words."""
    return len(text.split())


class _Compiler:
    def __init__(self, locale: Locale):
        self.locale = locale
        self.problems: list[tuple[tuple, str]] = []

    def fail(self, path: tuple, message: str) -> Check:
        self.problems.append((path, message))
        return lambda view: False

    def compile(self, spec: dict, path: tuple) -> Check:
        (key, value), = spec.items()
        return getattr(self, "_" + key)(value, path + (key,))

    def _regex(self, value: str, path: tuple) -> Check:
        try:
            pattern = regex.compile(value)
        except (regex.error, OverflowError, RecursionError) as exc:
            return self.fail(path, f"invalid regular expression: {exc}; expected a regular expression in Python syntax")

        def search(view: AnswerView) -> bool:
            try:
                return pattern.search(view.text, timeout=REGEX_SECONDS) is not None
            except TimeoutError:
                raise CheckTimeout(f"the regular expression ran for over {REGEX_SECONDS:g} s on this answer") from None
        return search

    def _phrases(self, value, path: tuple) -> list[list[str]]:
        if isinstance(value, list):
            return [[normalize(p) for p in value]]
        groups = []
        for tag, phrases in value.items():
            if not is_known_tag(tag):
                self.fail(path + (tag,), f"'{tag}' is not a known language tag; expected a BCP 47 tag such as fr, ary-Arab, zgh-Tfng")
            groups.append([normalize(p) for p in phrases])
        return groups

    def _any_of(self, value, path: tuple) -> Check:
        phrases = [p for group in self._phrases(value, path) for p in group]
        return lambda view: any(p in view.normalized for p in phrases)

    def _all_of(self, value, path: tuple) -> Check:
        groups = self._phrases(value, path)
        return lambda view: any(all(p in view.normalized for p in g) for g in groups)

    def _mentions(self, value: str, path: tuple) -> Check:
        numbers = self.locale.lists.get(value) or ((self.locale.numbers[value],) if value in self.locale.numbers else None)
        if numbers is None and not self.locale.code:    # broken locale: reported on its own
            return lambda view: False
        if numbers is None:
            known = ", ".join(sorted(self.locale.lists) + sorted(self.locale.numbers))
            return self.fail(path, f"'{value}' is not a list or number of locale '{self.locale.code}'; expected one of {known}")
        pattern = re.compile("|".join(number_pattern(n) for n in numbers))
        return lambda view: pattern.search(view.digits) is not None

    def _language(self, value: str, path: tuple) -> Check:
        return lambda view: view.same_language

    def _max_words(self, value: int, path: tuple) -> Check:
        return lambda view: word_count(view.text) <= value

    def _any(self, value: list, path: tuple) -> Check:
        checks = [self.compile(c, path + (i,)) for i, c in enumerate(value)]
        return lambda view: any(c(view) for c in checks)

    def _all(self, value: list, path: tuple) -> Check:
        checks = [self.compile(c, path + (i,)) for i, c in enumerate(value)]
        return lambda view: all(c(view) for c in checks)

    def _not(self, value: dict, path: tuple) -> Check:
        check = self.compile(value, path)
        return lambda view: not check(view)


def compile_check(spec: dict, locale: Locale) -> tuple[Check, list[tuple[tuple, str]]]:
    """Compile a schema-valid check; return it with (relative path, message) problems found."""
    compiler = _Compiler(locale)
    return compiler.compile(spec, ()), compiler.problems
