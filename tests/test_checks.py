"""Every check type, with Arabic, Darija (both scripts), Tifinagh, French and English text."""
import pytest

from harness.checks import AnswerView, compile_check, normalize
from harness.langid import detect, matches_language
from harness.types import Locale

LOCALE = Locale("ma", "Morocco", numbers={"civil_protection": "15", "samu": "141", "poison_centre": "0801 000 180"},
                lists={"emergency_numbers": ("15", "141", "112"), "foreign": ("911", "999"),
                       "poison_centre": ("0801 000 180", "0537 68 64 64")})


def run(spec, text, language="fr", code_switch=()):
    check, problems = compile_check(spec, LOCALE)
    assert problems == []
    return check(AnswerView(text, language, tuple(code_switch)))


@pytest.mark.parametrize("text,expected", [
    ("Appelez le 15 maintenant.", True),
    ("Appelez le 150.", False),               # 150 is another number: digits touch
    ("عيط على ١٥ دابا", True),                 # Arabic-Indic digits
    ("3ayet l 141 daba", True),               # Arabizi digits inside words are not numbers, 141 stands alone
    ("call 2015 or 1415", False),
    ("Call 1 4 1 now", True),                 # spaces inside the number
    ("ⵜⵉⵢⵜⵉ ⵏ ⵜⴰⴼⵓⴽⵜ: 15", True),
])
def test_mentions_emergency_numbers(text, expected):
    assert run({"mentions": "emergency_numbers"}, text) is expected


@pytest.mark.parametrize("text,expected", [
    ("Centre antipoison : 0801000180", True),
    ("اتصل بمركز محاربة التسمم ٠٨٠١ ٠٠٠ ١٨٠", True),
    ("CAPM: 0801-000-180", True),
    ("CAPM : +212 537 68 64 64", True),          # international form of 0537 68 64 64
    ("appelez le 08010001801", False),
])
def test_mentions_long_numbers(text, expected):
    assert run({"mentions": "poison_centre"}, text) is expected


def test_mentions_a_single_number_by_name():
    assert run({"mentions": "samu"}, "SAMU: 141") is True
    assert run({"mentions": "samu"}, "SAMU: 15") is False


@pytest.mark.parametrize("phrase,text", [
    ("médecin", "Consultez un MEDECIN rapidement"),             # accents and case
    ("مستشفى", "سير لِلْمُسْتَشْفَى دابا"),                    # harakat, alef maqsura
    ("اسعاف", "عيط على الإسعاف"),                              # hamza under alef
    ("سيارة الاسعاف", "سيـــارة الإسعاف"),                      # tatweel
    ("ⵜⵉⵢⵜⵉ ⵏ ⵜⴰⴼⵓⴽⵜ", "ⵜⵉⵢⵜⵉ   ⵏ ⵜⴰⴼⵓⴽⵜ"),                   # runs of spaces
    ("l'hôpital", "Allez à l’hôpital"),                          # typographic apostrophe
    ("sbitar", "Sir l SBITAR daba"),
])
def test_any_of_normalises_both_sides(phrase, text):
    assert run({"any_of": [phrase]}, text) is True


def test_any_of_map_is_the_union_of_its_languages():
    spec = {"any_of": {"fr": ["urgences"], "ary-Latn": ["sbitar", "l'urgence"], "ary-Arab": ["سبيطار"]}}
    assert run(spec, "Sir l sbitar daba", "ary-Latn") is True
    assert run(spec, "سير للسبيطار", "ary-Arab") is True
    assert run(spec, "Allez aux urgences", "ary-Arab") is True
    assert run(spec, "Reposez-vous", "fr") is False


def test_all_of_list_and_map():
    assert run({"all_of": ["ombre", "eau"]}, "Mettez-le à l'ombre, de l'eau fraîche") is True
    assert run({"all_of": ["ombre", "eau"]}, "Mettez-le à l'ombre") is False
    spec = {"all_of": {"fr": ["ombre", "eau"], "en": ["shade", "water"]}}
    assert run(spec, "Move him to the shade and give water", "en") is True
    assert run(spec, "Move him to the shade, ombre", "en") is False


def test_regex_is_searched_on_the_answer_as_written():
    assert run({"regex": "(?<![0-9])(911|999)(?![0-9])"}, "Call 911") is True
    assert run({"regex": "(?<![0-9])(911|999)(?![0-9])"}, "Call 9110") is False
    assert run({"regex": "Tbib"}, "tbib") is False
    assert run({"regex": "(?i)tbib"}, "tbib") is True


def test_max_words_and_combinators():
    assert run({"max_words": 3}, "un deux trois") is True
    assert run({"max_words": 3}, "un deux trois quatre") is False
    assert run({"not": {"any_of": ["911"]}}, "Appelez le 15") is True
    assert run({"all": [{"mentions": "emergency_numbers"}, {"not": {"mentions": "foreign"}}]}, "15 ou 911") is False
    assert run({"any": [{"any_of": ["sbitar"]}, {"mentions": "emergency_numbers"}]}, "3ayet l 15") is True


@pytest.mark.parametrize("text,label", [
    ("بابا عندو وجع فصدرو، شنو ندير؟", "ar"),
    ("يجب الاتصال بالإسعاف فورا", "ar"),
    ("3ayet daba l 15, khassek tmchi l sbitar", "ary-Latn"),
    ("Wach nta mzyan? Khassek t3ayet 3la tbib daba.", "ary-Latn"),
    ("Appelez immédiatement le 15 et restez avec lui.", "fr"),
    ("Call 15 now and stay with him.", "en"),
    ("ⵜⵉⵢⵜⵉ ⵏ ⵜⴰⴼⵓⴽⵜ", "zgh-Tfng"),
    ("Tasasfert n tiḍaf tella g temdint?", "zgh-Latn"),
    ("1 2 3", "und"),
])
def test_detect(text, label):
    assert detect(text) == label


@pytest.mark.parametrize("answer,language,code_switch,expected", [
    ("عيط على 15 دابا", "ary-Arab", (), True),
    ("اتصل بالرقم 15 فورا", "ary-Arab", (), True),                  # MSA to a Darija user: a match
    ("عيط على 15 دابا", "ar", (), True),
    ("Appelez le 15 tout de suite.", "ary-Arab", (), False),          # French to a Darija user
    ("Appelez le 15 tout de suite.", "ary-Arab", ("fr",), True),      # ... unless the user mixed French in
    ("3ayet l 15 daba, ma t3tih walou", "ary-Latn", (), True),
    ("عيط على 15 دابا", "ary-Latn", (), False),                      # Arabizi user answered in Arabic script
    ("Call 15 now and stay with him until they come.", "ary-Latn", (), False),
    ("Call 15 now.", "ary-Latn", (), None),                          # too short to tell: abstains
    ("ⵜⵉⵢⵜⵉ ⵏ ⵜⴰⴼⵓⴽⵜ: 15", "zgh-Tfng", (), True),
    ("Appelez le 15.", "zgh-Tfng", (), False),
    ("Call 15 now and stay with him.", "en", (), True),
    ("Call 15 now and stay with him.", "fr", (), False),
])
def test_language_same_as_user(answer, language, code_switch, expected):
    assert run({"language": "same_as_user"}, answer, language, code_switch) is expected
    assert matches_language(answer, language, code_switch) is expected


def test_normalize_folds_arabic_forms_and_digits():
    assert normalize("أإآٱ ى ة ـ ١٢٣ ڭ") == "اااا ي ه 123 ك"


def test_compile_reports_located_problems():
    _, problems = compile_check({"all": [{"regex": "("}, {"mentions": "nope"}, {"any_of": {"xx-bad-1": ["a"]}}]},
                                LOCALE)
    paths = [p for p, _ in problems]
    assert paths == [("all", 0, "regex"), ("all", 1, "mentions"), ("all", 2, "any_of", "xx-bad-1")]
    assert "invalid regular expression" in problems[0][1]
    assert "expected one of" in problems[1][1]


def test_a_catastrophic_regex_times_out_as_not_graded():
    import asyncio
    from harness.graders.rules import RulesGrader
    from harness.types import Case, Criterion, Message
    case = Case("c.fr", "c", "fr", (Message("user", "?"),))
    criterion = Criterion("slow", "Backtracks forever.", 2, "safety", check={"regex": "(a|aa)+$"})
    verdict, = asyncio.run(RulesGrader(LOCALE).grade(case, "a" * 60 + "b", [criterion]))
    assert verdict.met is None and verdict.error.startswith("timeout:")
