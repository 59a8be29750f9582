"""Negation and quotation around a phrase found in an answer.

The rule (docs/formats.md, "Negation and quotation"): a phrase occurrence is *not asserted*, and so never makes a
criterion met, when
- a negation cue of one of the applicable languages stands in the same clause up to 8 words before it
  ("ne lui donnez pas de tisane", "don't give him lemon or herbal tea", "لا تعطه الليمون", "ما تعطيهش الليمون",
  "ma t3tihch l7amd", "ur ..."), or up to 3 words after it for cues that negate what precedes
  ("la tisane ne sert à rien", "herbal tea does not help", "الأعشاب ما كتنفعش");
- it sits in a list introduced by a line that carries a cue and ends with a colon ("Avoid:\\n- herbal tea");
- it sits between quotation marks (« », “ ”, „ “, ‹ ›, "): the answer is quoting, not advising.
A clause ends at . ! ? ; ؟ ؛, at a line break, and at a contrastive conjunction (but, mais, لكن, walakin...); a
negation does not reach past "before" / "until" (avant, قبل, 9bel): "don't start before you ask the pharmacist".
A phrase that itself contains a cue ("n'attendez pas", "ma tsnawch") is taken as written: its own negation is
what it asks for. French "ne ... que" (only) is not a negation, nor is a cue inside a condition ("if he is not
breathing, start CPR": the condition names what to watch for). Cues that negate a noun ("no", "sans", "بلا")
reach only 3 words ("no sweating in this heat points to heat stroke").

Cues are per language family (the families of langid.family); the cues of every language that applies to the
answer (the phrase's language, the answer's detected languages, the user's languages) are used together.
Sources for the cues: ../shared/context/morocco.md section 3.3 and 3.4 (Darija ma...ch negation, Arabizi
conventions) and standard grammars of French, English and Modern Standard Arabic.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

LETTERS = str.maketrans({"ى": "ي", "ة": "ه", "ٱ": "ا", "ـ": "", "ڭ": "ك", "گ": "ك", "ک": "ك", "ی": "ي",
                          "’": "'", "‘": "'", "`": "'", "ʼ": "'"})    # what checks.normalize folds

CUES = {
    "fr": {"ne", "n", "pas", "jamais", "sans", "ni", "aucun", "aucune", "rien", "evitez", "eviter", "evite", "interdit",
           "proscrire", "deconseille", "deconseillee", "deconseiller", "deconseillons"},
    "en": {"not", "no", "never", "without", "avoid", "avoiding", "nor", "neither", "cannot", "stop", "refrain",
           "nothing", "none", "nobody"},
    "ar": {"لا", "لم", "لن", "ليس", "ليست", "دون", "بدون", "تجنب", "تجنبوا", "تجنبي", "عدم", "ما", "ماشي", "بلا",
           "بلاش", "فلا", "وبدون", "ودون", "وبلا", "ولم", "ولن", "وليس", "وما", "اياك", "إياك", "حذار", "ممنوع", "يمنع",
           "امتنع", "امتنعوا", "بدل", "بدلا", "عوض", "ابتعد", "ابتعدوا",
           # warning verbs ("beware of ..."): added 2026-12-03 from the `fresh` answers (draft)
           "احذر", "احذري", "احذروا", "حذاري"},
    "ary-Latn": {"ma", "machi", "mashi", "mach", "bla", "blach", "blash", "balach", "blama", "3wed", "3wad", "bdal",
                 "ni"},
    "zgh-Tfng": {"ⵓⵔ", "ⴰⴷ ⵓⵔ"},
    "zgh-Latn": {"ur"},
}
# Word pairs that negate (checked as two consecutive tokens).
PAIRS = {
    "fr": {("au", "lieu"), ("plutot", "que"), ("a", "eviter")},
    "en": {("instead", "of"), ("rather", "than"), ("away", "from"), ("advise", "against"), ("warn", "against")},
    "ar": {("بدلا", "من"), ("رد", "بالك"), ("ردي", "بالك"), ("ردو", "بالكم"), ("ردوا", "بالكم"), ("حتى", "شي"),
           ("حتى", "حد"), ("حتى", "واحد"), ("حتى", "وحدة"), ("حتى", "حاجة")},
    "ary-Latn": {("7ta", "chi"), ("hta", "chi"), ("7ta", "shi"), ("7ta", "7ed"), ("hta", "hed"), ("7ta", "wa7ed"),
                 ("7ta", "wahed"), ("7ta", "7aja"), ("hta", "haja"), ("7ta", "wa7da")},
}
# Cues that also negate what stands just before them ("herbal tea does not help").
AFTER_CUES = {"not", "never", "ne", "n", "pas", "jamais", "inutile", "inutiles", "useless", "interdit", "لا", "ليس",
              "لن", "ماشي", "machi", "ur", "ⵓⵔ"}
# Cues that negate a noun phrase ("no sweating"): their scope is short.
NOUN_CUES = {"no", "without", "nor", "sans", "aucun", "aucune", "ni", "rien", "بدون", "دون", "بلا", "وبدون", "ودون",
             "وبلا", "عدم", "bla"}
NOUN_SCOPE = 3
_PAS_NOUN = {"un", "le", "ce", "chaque", "premier", "petit", "a", "pas"}
_JOIN = {"and", "et", "w", "o", "و", "ou", "or", "then", "puis", "ثم", "wla", "ولا"}
_NT = re.compile(r"^[a-z]+n't$|^[a-z]+n’t$")
_CIRCUMFIX = {"ar": re.compile(r"^و?ما.{2,}ش$"), "ary-Latn": re.compile(r"^ma[a-z0-9]{2,}(?:ch|sh)$")}
_CONTRAST = {"but", "however", "mais", "cependant", "pourtant", "sauf", "walakin", "walakine", "wlakin", "lakin",
             "lakine", "لكن", "ولكن", "لاكن", "ولاكن", "بل"}
# A sentence, for `uncertain`: it ends at . ! ? ; ؟ ؛ or a line break (not at a decimal point).
_SENTENCE_END = re.compile(r"(?<!\d)\.|\.(?!\d)|[!?;؟؛\n]")
_NEITHER = {"ar": {"ولا", "لا"}}
_NPI = {"7ta", "hta", "حتى", "حتا"}        # "7ta 7ed ma y9der" (nobody can): after "even", ma needs no -ch
_QUESTION = {"whether", "هل", "wach", "wash"}
_CLAUSE_END = re.compile(r"[.!?;؟؛\n)\]—]")
_AFTER_END = re.compile(r"[.!?;؟؛\n()\[\]—]")
_TOKEN = re.compile(r"[^\W_]+(?:['’]t\b)?")
_QUOTES = re.compile(r"«[^»\n]{0,300}»|“[^”\n]{0,300}”|„[^“\n]{0,300}“|‹[^›\n]{0,300}›|\"[^\"\n]{0,300}\"")
_BULLET = re.compile(r"^\s*(?:[-*•·▪–]|\d+[.)])\s+")
BEFORE, AFTER = 8, 2
# A cue after one of these belongs to a condition ("if he is not breathing ... start CPR", "ⵎⴽ ⵓⵔ ..."): the
# condition is not advice, so it negates nothing that the answer asserts.
_SUBORDINATORS = {"if", "when", "whenever", "unless", "once", "si", "s", "quand", "lorsque", "lorsqu", "ila", "ilakan",
                  "wila", "mli", "fach", "ida", "lakan", "اذا", "واذا", "لو", "عندما", "لما", "حين", "حينما",
                  "الا", "يلا", "ملي", "فاش", "ⵎⴽ", "ⵎⵍⵎⵉ", "mk"}
# "Don't start before you ask the pharmacist": a negation before these words does not reach what follows them.
_UNTIL = {"before", "until", "till", "avant", "jusqu", "قبل", "وقبل", "قبلما", "9bel", "qbel", "9bl", "9ebl", "qbl"}
_NOT_NEGATING = {"hesitez", "hesite", "hesiter", "hesitate", "tardez", "tarder", "delay", "hesitiw", "tterddedch",
                 "panic", "worry", "paniquez", "inquietez", "t5afch", "tkhafch", "tkhafich", "tkhl3ch", "تخافش",
                 "تخافيش", "تقلق", "تقلقي", "تخاف"}
_AND = {"and", "et", "then", "puis", "ثم", "w", "o"}
_CONTINUES = {"ولا", "wla", "ni", "nor", "ula", "ⵓⵍⴰ"}
# Verbs that report someone else's words or belief; what follows is not the answer's own advice.
_REPORTING = {"says", "said", "thinks", "believes", "claims", "dit", "pense", "croit", "disent", "يقول", "يظن", "يعتقد",
              "تقول", "كيقول", "كتقول", "كيقولو", "كيظن", "kaygoul", "kayqoul", "katgoul", "kaygolo", "kaydenn",
              "kaydn", "kaykhmem"}
_LIST_JOIN = {"or", "nor", "ou", "ni", "wla", "ولا", "او", "ⵏⵖ"}      # negated lists join with "or", not "and"
_NEEDS_CH = {"ما": ("ش",), "ma": ("ch", "sh")}
# Words that may stand before a list item inside a negated list: articles, conjunctions, prepositions.
_GLUE = {"or", "and", "nor", "the", "a", "an", "any", "some", "of", "with", "ou", "et", "ni", "de", "du", "des", "la",
         "le", "les", "l", "d", "un", "une", "au", "aux", "en", "avec", "wla", "w", "o", "ola", "chi", "ولا", "او", "و",
         "من", "اي", "شي", "ⴷ", "ⵏⵖ", "ⵏ"}



def fold(word: str) -> str:
    """A cue as checks.normalize writes the answer it is looked for in: marks dropped (أ -> ا), Arabic letter forms
    folded (ى -> ي, ة -> ه), lower case."""
    text = "".join(c for c in unicodedata.normalize("NFKD", word) if unicodedata.category(c) != "Mn")
    return unicodedata.normalize("NFKC", text).translate(LETTERS).casefold()


def _folded(words):
    return {tuple(fold(w) for w in item) if isinstance(item, tuple) else fold(item) for item in words}


# The cues are written as people write them ("حتى", "إياك"); the answer they are looked for in is folded ("حتي").
CUES = {family: _folded(words) for family, words in CUES.items()}
PAIRS = {family: _folded(pairs) for family, pairs in PAIRS.items()}
_NEITHER = {family: _folded(words) for family, words in _NEITHER.items()}
_NEEDS_CH = {fold(word): endings for word, endings in _NEEDS_CH.items()}
(AFTER_CUES, NOUN_CUES, _JOIN, _AND, _CONTRAST, _NPI, _QUESTION, _SUBORDINATORS, _NOT_NEGATING, _CONTINUES, _REPORTING,
 _LIST_JOIN, _GLUE, _UNTIL) = (_folded(words) for words in (
    AFTER_CUES, NOUN_CUES, _JOIN, _AND, _CONTRAST, _NPI, _QUESTION, _SUBORDINATORS, _NOT_NEGATING, _CONTINUES,
    _REPORTING, _LIST_JOIN, _GLUE, _UNTIL))


@dataclass(frozen=True)
class Context:
    """The negation cues that apply, and the answer's quoted spans and negated list items (normalised text)."""

    text: str
    families: frozenset[str]
    quoted: tuple[tuple[int, int], ...]
    listed: tuple[tuple[int, int], ...]

    def is_cue(self, tokens: list[str], i: int) -> bool:
        """Whether tokens[i] is a negation cue in one of the applicable languages."""
        token = tokens[i]
        if (tokens[i + 1:i + 2] and tokens[i + 1] in _NOT_NEGATING) or (i and tokens[i - 1] in _NOT_NEGATING):
            return False             # "n'hésitez pas", "don't hesitate": a double negative that urges
        if token == "pas" and (tokens[i + 1:i + 3] == ["a", "pas"] or (i and tokens[i - 1] in _PAS_NOUN)):
            return False             # "pas à pas", "un pas": a step
        if token in _NEEDS_CH:       # Darija ma ... ch; alone, ma/ما is also "what", "water" or French "my"
            return bool(self.families & {"ar", "ary-Latn"}) and (any(
                t.endswith(_NEEDS_CH[token]) for t in tokens[i + 1:i + 4]) or bool(_NPI & set(tokens[max(0, i - 3):i])))
        if _NT.match(token):
            return "en" in self.families
        if token[:1] in "وف" and token != "ولا" and len(token) > 3 and "ar" in self.families \
                and token[1:] in CUES["ar"]:
            return True              # و/ف glued before a cue: وليست, فلا
        for family in self.families:
            if token in CUES.get(family, ()):
                if token in ("ne", "n") and "que" in tokens[i + 1:i + 1 + BEFORE]:
                    continue          # ne ... que: "only"
                return True
            circumfix = _CIRCUMFIX.get(family)
            if circumfix and circumfix.match(token):
                return True
            if i + 1 < len(tokens) and (token, tokens[i + 1]) in PAIRS.get(family, ()):
                return True
        return False

    def has_cue(self, text: str) -> bool:
        """Whether a stretch of text carries a negation cue."""
        tokens = _TOKEN.findall(text)
        return any(self._cue_here(tokens, i) for i in range(len(tokens)))

    def why_not_asserted(self, start: int, end: int, quotes: bool = True, harmful: bool = False) -> str | None:
        """'negation' or 'quotation' (when `quotes`) if the occurrence text[start:end] is not asserted, else None;
        for a harmful occurrence (`harmful`), 'uncertain' when it is asserted by these rules but its sentence
        carries a negation or a question they could not attach to it: the check cannot tell, and abstains."""
        why = self._why_not_asserted(start, end, quotes)
        if why is None and harmful and self.uncertain(start, end):
            return "uncertain"
        return why

    def uncertain(self, start: int, end: int, own: int = 0) -> bool:
        """Whether the sentence around text[start:end] (outside it) carries a negation cue, a question word or a
        Darija "la ... la" / "ولا ... ولا" (neither ... nor) that the clause rules did not attach to it. The `own`
        words just before belong to the occurrence ("il n'y a | aucun risque")."""
        window = self.text[max(0, start - 300):start]
        before = window[max((m.end() for m in _SENTENCE_END.finditer(window)), default=0):]
        if own:
            words = before.rstrip().split(" ")
            before = " ".join(words[:-own]) if len(words) > own else ""
        after = self.text[end:end + 300]
        after = after[:next((m.start() for m in _SENTENCE_END.finditer(after)), len(after))]
        for part in (before, after):
            for segment in re.split("[,،:]", part):
                tokens = _TOKEN.findall(segment)
                if tokens and (tokens[0] in _NEITHER.get("ar" if "ar" in self.families else "", ())
                               or ("ary-Latn" in self.families and tokens[0] == "la")):
                    return True
                if any(t in _QUESTION for t in tokens) or any(self._cue_here(tokens, i) for i in range(len(tokens))):
                    return True
        return False

    def _why_not_asserted(self, start: int, end: int, quotes: bool) -> str | None:
        if quotes and any(a <= start and end <= b for a, b in self.quoted):
            return "quotation"
        if any(a <= start < b for a, b in self.listed):
            return "negation"
        before = "" if _TOKEN.findall(self.text[start:end])[:1] in ([w] for w in _UNTIL) else self._clause_before(start)
        if self._negated_before(before, _clause_after(self.text, end)):
            return "negation"
        if quotes and _REPORTING & set(_TOKEN.findall(before)[-BEFORE:]):
            return "quotation"       # "he says it is just indigestion": reported, not advised
        tokens = _TOKEN.findall(re.split("[,،:]", _clause_after(self.text, end))[0])[:AFTER + 2]
        for i, token in enumerate(tokens[:AFTER]):
            if token in _JOIN:
                break
            if (token in AFTER_CUES or _NT.match(token)) and self.is_cue(tokens, i):
                return "negation"
        return None

    def _clause_before(self, start: int) -> str:
        window = self.text[max(0, start - 200):start]
        window = window[max((m.end() for m in _CLAUSE_END.finditer(window)), default=0):]
        if ":" in window:        # "Avoid: herbal tea" keeps its cue; "no tests: a creatinine would help" does not
            head, _, tail = window.rpartition(":")
            if not self._is_list_label(_TOKEN.findall(head.split(":")[-1])):
                window = tail
        words = window.split(" ")
        for k in range(len(words) - 1, -1, -1):
            if words[k].strip(",") in _CONTRAST or _TOKEN.findall(words[k])[:1] in ([w] for w in _UNTIL):
                return " ".join(words[k + 1:])
        return window

    def _negated_before(self, before: str, after: str = "") -> bool:
        """A cue in the occurrence's own comma segment, or at the head of a list the occurrence continues
        ("don't give him lemon, herbal tea or cumin"; not "if he is not breathing, start CPR", nor
        "ma t5afch, ghir lmakla": a list needs a conjunction, and a verb cue needs its object)."""
        label = _TOKEN.findall(before.split(":")[0])
        if ":" in before and self._is_list_label(label):
            return True              # "Évitez : tisane, citron" (_clause_before kept only a short cue label)
        segments = re.split("[,،]", before)
        whole = _TOKEN.findall(segments[-1])
        tokens = whole[-BEFORE:]
        for i in range(len(tokens) - 1, -1, -1):
            if tokens[i] in _AND and (i + 1 == len(tokens) or tokens[i + 1] not in _GLUE):
                break                # "ne le laissez pas conduire et restez avec lui": a new instruction
            if not self._cue_here(tokens, i):
                continue
            if tokens[i] in NOUN_CUES:   # "sans l'avis du cardiologue": a noun cue reaches 3 words, and closes
                if len(tokens) - i <= NOUN_SCOPE:   # the scope of a verb negation before it
                    return True
                if tokens[i] not in _CONTINUES:
                    break
                continue
            return True
        if _CONTINUES & set(tokens) and any(self._cue_here(whole, i) for i in range(len(whole) - len(tokens))):
            return True              # "لا تعطه ليمونا ولا كمونا ولا ...": a chain of "nor" carries the negation
        k = len(segments) - 1
        while k > 0 and whole[:1] and whole[0] in _CONTINUES:     # "لا ليمون، ولا كمون"
            k -= 1
            whole = _TOKEN.findall(segments[k])
            if any(self._cue_here(whole, i) for i in range(len(whole))):
                return True
        if len(segments) == 1 or len(tokens) > 4 or not (all(t in _GLUE for t in tokens)
                                                          or _LIST_JOIN & set(tokens[-2:])):
            return False             # the occurrence does not continue a list ("..., and give him a cool bath")
        chain = [tokens]
        for segment in reversed(segments[:-1]):
            tokens = _TOKEN.findall(segment)[-BEFORE:]
            heads = [i for i in range(len(tokens)) if self._cue_here(tokens, i)
                     and (tokens[i] in NOUN_CUES or len(tokens) - i >= 3)]
            if heads:
                listed = chain + [_TOKEN.findall(after)[:6]]
                return any(t in _LIST_JOIN for part in listed for t in part)
            if len(tokens) > 4:
                return False
            chain.append(tokens)
        return False

    def _is_list_label(self, label: list[str]) -> bool:
        """A short negated label before a colon that introduces what not to do: "Évitez", "À éviter", "Don't
        give", "Ne lui donnez pas" (not "لا تنتظروا أخاك: اتصلوا ...", a whole negated sentence)."""
        if not label or len(label) > 4 or not any(self._cue_here(label, i) for i in range(len(label))):
            return False
        return len(label) <= 2 or self._cue_here(label, len(label) - 1)

    def _cue_here(self, tokens: list[str], i: int) -> bool:
        return self.is_cue(tokens, i) and not _SUBORDINATORS & set(tokens[:i])


def _clause_after(text: str, end: int) -> str:
    window = text[end:end + 120]
    match = _AFTER_END.search(window)
    window = window[:match.start()] if match else window
    words = window.split(" ")
    for k, word in enumerate(words):
        if word.strip(",") in _CONTRAST:
            return " ".join(words[:k])
    return window


def contains_cue(phrase: str, families: frozenset[str]) -> bool:
    """Whether a (normalised) phrase carries its own negation."""
    tokens = [m.group(0) for m in _TOKEN.finditer(phrase)]
    probe = Context(phrase, families, (), ())
    return any(probe.is_cue(tokens, i) for i in range(len(tokens)))


def context(text: str, families: frozenset[str]) -> Context:
    """The negation context of a normalised answer for the given language families."""
    quoted = tuple(m.span() for m in _QUOTES.finditer(text))
    listed, offset, lines = [], 0, text.split("\n")
    probe = Context(text, families, (), ())
    header = False
    for line in lines:
        if header and _BULLET.match(line):
            listed.append((offset, offset + len(line)))
        else:        # "Avoid:", "Ne lui donnez pas :", "What not to do:" introduce a negated list
            last = _CLAUSE_END.split(line.rstrip()[:-1])[-1] if line.rstrip().endswith(":") else ""
            header = bool(last) and len(_TOKEN.findall(last)) <= BEFORE and probe.has_cue(last)
        offset += len(line) + 1
    return Context(text, families, quoted, tuple(listed))
