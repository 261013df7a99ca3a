"""Pure: normalise short answers, score agreement, find the majority, and tell open answers from closed ones.

How answers compare (documented in the README):
- number: every answer parses as a number ("1,234", "$42", "42.0", "3/4", "50%") -> equal
  when the values match to a relative tolerance of 1e-6.
- choice: every answer is a single option letter ("B", "(b)", "B)", "Option B",
  "The answer is B.") -> equal when the letters match.
- yes/no: an answer that opens with a yes or no word of the panel's main languages ("Yes, 91 is
  prime", "No", "Oui", "Nein", "Não", "हाँ", "نہیں") has a polarity; when any answer of a round
  has one, a closed-form answer of that round that is negated without opening with yes/no ("Not
  prime", "It isn't") counts as "no". Two answers with a polarity are the same position exactly
  when their polarities are equal ("No, 91 is not prime" = "Not prime" = "No" != "Yes, 91 is
  prime"), whatever else they say.
- text: anything else -> lower-cased, accents, punctuation and articles dropped; two answers
  are the same position when their normalised forms are equal, one contains the other as whole
  words, the content words of one (the words left once the function words of English, Spanish,
  French, German, Portuguese, Italian and Hindi are dropped) are all among the other's - so word
  order and function words do not split "Paris is the capital of France." from "The capital of
  France is Paris," - or the content words that differ are alike, a difflib ratio of at least
  TEXT_SIMILARITY (spelling: "Leonardo da Vinci" / "Leonardo DaVinci"; the whole text when one has no
  content word); never when only one of them is negated ("prime" / "not prime") or they state
  different numbers ("100" / "1000 apples").
Panelists are grouped greedily (in seat order) into clusters of equal answers; the score is the
size of the largest cluster divided by the number of panelists that answered; ties go to the
cluster whose first member sits first.

Open or closed (is_open_answer, answers_are_open): a final answer is closed-form - compared by
the rules above, deterministically - when it is a number, an option letter, opens with yes/no, or
is a short name or phrase: one sentence, no list, no reasoning word, at most MAX_CLOSED_WORDS
content words. It is open - an explanation, a list or an essay, which only the analyst's claim map
can compare - when it has two or more non-empty lines or list bullets, two or more sentences, a
list of three or more items (split at commas, semicolons, slashes and "and"/"or" in the main
languages), a reasoning word ("because", "therefore", "so", "porque", "donc", "weil", "क्योंकि",
...) or more than MAX_CLOSED_WORDS content words. A round's answers are open when at least one
answered final answer is open: one essay among short answers is enough to make the deterministic
text rules unreliable, and the analyst sees the short ones too.

Reading the short answer a reply states (extract_answer) is the research mode's rule, quoted in
consensus/eval/scoring.py's docstring; it lives here so the faithfulness guard reads a consensus
with exactly the code eval scores it with.
"""

from __future__ import annotations

import difflib
import itertools
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from fractions import Fraction
from typing import Literal

from consensus.types import Agreement, Cluster

TEXT_SIMILARITY = 0.8
MAX_CLOSED_WORDS = 6  # content words of the longest answer that still counts as a short name or phrase

AnswerKind = Literal["number", "choice", "text"]

_NUMBER = re.compile(r"^[-+]?(\d{1,3}(,\d{3})+|\d+)?(\.\d+)?$")
_CHOICE = re.compile(
    r"^(?:the\s+)?(?:correct\s+)?(?:answer|option|choice)?\s*(?:is)?\s*[:\-]?\s*\(?([A-J])\)?(?:[.):]|\s*$)",
    re.IGNORECASE,
)
_ARTICLES = {"a", "an", "the"}
# Punctuation and symbols become spaces. Indic and Arabic vowel signs are not \w: they are kept (else "हाँ" and
# "है" were both "ह"), and those scripts' own punctuation (danda, Arabic comma, question mark, Urdu full stop) goes.
_PUNCTUATION = re.compile(r"[^\w\s\u0600-\u06ff\u0750-\u077f\u0900-\u0dff]|[\u0964\u0965\u060c\u061b\u061f\u06d4]")


def normalize_text(text: str) -> str:
    """Lower-case, strip accents, punctuation and articles, collapse spaces."""
    t = text.casefold()
    if not t.isascii():
        t = unicodedata.normalize("NFKD", t)
        t = "".join(ch for ch in t if not unicodedata.combining(ch))
    t = _PUNCTUATION.sub(" ", t)
    words = [w for w in t.split() if w not in _ARTICLES]
    return " ".join(words)


def _words(text: str) -> frozenset[str]:
    """Words as normalize_text leaves them (the word lists below are written as people type them)."""
    return frozenset(normalize_text(text).split())


# Negations in the panel's main languages, as normalize_text leaves them ("isn't" -> "isn t", "não" -> "nao").
_NEGATIONS = _words(
    "not no never none nor neither cannot false incorrect "  # en
    "nunca ninguno ninguna tampoco "  # es (no)
    "non pas jamais aucun aucune "  # fr
    "nicht kein keine keinen nein niemals "  # de
    "não nem nenhum nenhuma "  # pt
    "नहीं नही मत ना "  # hi
    "نہیں لا"  # ur, ar
)
# The first word of a yes/no answer. Spanish and Italian "si" is also "if": as a first word it is "yes".
_YES = _words("yes yeah yep yup true sí si sì oui ja jawohl sim हाँ हां ہاں نعم")
_NO = _words("no nope false non nein não nao नहीं نہیں لا")
_HONORIFICS = _words("जी جی")  # "जी हाँ", "جی نہیں": the yes/no word comes second
# Function words of the panel's main languages: dropped before comparing the content of short answers (and a
# sign of the language a text is written in). Negations and yes/no words are not here: they are compared on their
# own.
FUNCTION_WORDS = {
    lang: _words(words)
    for lang, words in {
        "en": "a an the is are was were be been being am of in on at to for from by with as into onto about than then "
        "that this these those it its they them their there here which who whom whose what when where how i you he "
        "she we me my your our his her do does did has have had will would shall should can could may might must "
        "also just very more most some any each both all such only own same too s t d ll re ve m and or but if",
        "es": "el la los las un una unos unas de del al a en y o u e es son era fue ser está esta este esto ese esa "
        "eso que por para con como su sus se lo le les muy más pero",
        "fr": "le la les l un une des du de d et ou est sont était a au aux en dans pour par avec sur que qui ce "
        "cette ces c il elle ils elles se sa son ses leur leurs qu n y",
        "de": "der die das den dem des ein eine einen einem einer und oder ist sind war waren zu von mit im in am an "
        "auf für als dass es sie er wir",
        "pt": "o a os as um uma de do da dos das em na nas e ou é são foi que para por com como se",
        "it": "il lo la i gli le un una di del della e o è in per con che",
        "hi": "का की के है हैं और में से को पर यह वह था थी थे ही भी एक तो",
    }.items()
}
_STOP_WORDS = frozenset().union(*FUNCTION_WORDS.values())
_IGNORED = _STOP_WORDS | _NEGATIONS | _YES | _NO | _HONORIFICS
_REASONING = _words(
    "because since therefore thus hence "  # en
    "porque pues "  # es
    "parce car donc puisque "  # fr
    "weil denn daher deshalb deswegen "  # de
    "portanto pois "  # pt
    "perché quindi poiché "  # it
    "क्योंकि इसलिए"  # hi
)
# "91 = 7 x 13, so it is composite" reasons; "I think so" is an answer.
_SO = re.compile(r"(?i),\s*(?:so|and so|then)\b")
_CONJUNCTIONS = re.compile(r"\s+(?:and|or|y|o|et|ou|und|oder|e|और|या|و|اور)\s+", re.IGNORECASE)
_LIST_SEPARATORS = re.compile(r"[,;/،؛]")
_BULLET = re.compile(r"(?m)^\s*(?:[-*•]|\d+[.)])\s+")
_SENTENCE_END = re.compile(r"(?<=\w\w\w)[.!?](?=\s+\S)|[।۔؟](?=\s*\S)")
_NUMBERS = re.compile(r"\d+")
_DECIMAL_COMMA = re.compile(r"[-+]?(?:\d+|\d{1,3}(?:\.\d{3})+),\d{1,2}|[-+]?\d{1,3}(?:\.\d{3})+,\d+")


def decimal_point(number: str) -> str:
    """A number written with a decimal comma (French, Spanish, German, ...) with a decimal point: "3,5" and "12,50"
    are 3.5 and 12.5, "1.234,5" is 1234.5; anything else as it is ("1,234" keeps its English reading)."""
    return number.replace(".", "").replace(",", ".") if _DECIMAL_COMMA.fullmatch(number) else number


def without_exponent(number: str) -> str:
    """A decimal number string without an exponent ("1e-05" -> "0.00001"): answers are read without exponents."""
    return format(Decimal(number), "f") if "e" in number.lower() else number


def negated(key: str) -> bool:
    """Whether a normalised answer is negated ("not prime", "isn t", "n est pas")."""
    words = key.split()
    return any(w in _NEGATIONS for w in words) or any(
        a.endswith("n") and b == "t" for a, b in itertools.pairwise(words)
    )


def _lead_polarity(words: Sequence[str]) -> bool | None:
    lead = words[1] if len(words) > 1 and words[0] in _HONORIFICS else (words[0] if words else "")
    return True if lead in _YES else False if lead in _NO else None


def polarity(text: str) -> bool | None:
    """True when a short answer opens with a yes word ("Yes, 91 is prime", "Oui"), False with a no word ("No",
    "Nein, ..."), else None (see the module docstring)."""
    return _lead_polarity(normalize_text(text).split())


def content_words(key: str) -> frozenset[str]:
    """The words of a normalised answer that carry its content: no function word, negation or yes/no word."""
    return frozenset(w for w in key.split() if w not in _IGNORED)


@dataclass(frozen=True)
class Normalized:
    """A final answer reduced to something comparable."""

    kind: str  # number | choice | text
    key: str
    display: str
    polarity: bool | None = None  # text answers only: yes (True) or no (False), see the module docstring


def parse_number(text: str) -> Fraction | None:
    """The number a short answer states, or None ("$1,234.50" -> 1234.5, "3/4", "50%")."""
    t = text.strip().lower()
    t = re.sub(r"^(the\s+)?(final\s+)?(answer|result)\s*(is|:|=)?\s*", "", t)
    t = t.strip().rstrip(".").strip()
    t = re.sub(r"^[$€£₹¥]\s*", "", t)
    t = re.sub(r"\s*(usd|dollars?|rupees?|euros?|units?|cm|m|km|kg|g|%|[$€£₹¥])$", "", t).strip()
    t = t.replace("\u2212", "-").replace(" ", "")
    if not t:
        return None
    t = decimal_point(t)
    frac = re.fullmatch(r"([-+]?\d+)/(\d+)", t)
    if frac:
        den = int(frac.group(2))
        return Fraction(int(frac.group(1)), den) if den else None
    if _NUMBER.fullmatch(t) and any(ch.isdigit() for ch in t):
        try:
            return Fraction(t.replace(",", ""))
        except (ValueError, ZeroDivisionError):
            return None
    return None


def parse_choice(text: str) -> str | None:
    """The option letter a short answer names ("(b)" -> "B"), or None."""
    t = text.strip()
    if len(t) > 60:
        return None
    m = _CHOICE.match(t)
    if m and (len(t) <= 3 or not t[m.end() :].strip() or m.group(0).strip()[-1] in ".):"):
        return m.group(1).upper()
    return None


def normalize_answer(text: str, kind: str | None = None) -> Normalized:
    """Normalise one final answer; `kind` forces number/choice/text when known."""
    if kind in (None, "number"):
        n = parse_number(text)
        if n is not None:
            return Normalized("number", _fraction_key(n), text.strip())
        if kind == "number":
            return _text(text)
    if kind in (None, "choice"):
        c = parse_choice(text)
        if c is not None:
            return Normalized("choice", c, c)
    return _text(text)


def _text(text: str, letter: str | None = None) -> Normalized:
    key = normalize_text(text)
    if letter and key.split()[:1] != [letter.lower()]:
        key = f"{letter.lower()} {key}".strip()
    return Normalized("text", key, text.strip(), _lead_polarity(key.split()))


def _fraction_key(n: Fraction) -> str:
    if n.denominator == 1:
        return str(n.numerator)
    return without_exponent(f"{float(n):.9g}")  # keys are read back as numbers


def _list_items(text: str) -> int:
    return sum(len([p for p in _CONJUNCTIONS.split(part) if p.strip()]) for part in _LIST_SEPARATORS.split(text))


def is_open_answer(text: str | None) -> bool:
    """True when a final answer is an explanation, a list or an essay; False when it is closed-form: a number, an
    option letter, a yes/no answer or a short name or phrase (the rule is in the module docstring)."""
    if text is None or not text.strip():
        return False
    t = text.strip()
    if parse_number(t) is not None or parse_choice(t) is not None:
        return False
    words = normalize_text(t).split()
    if _lead_polarity(words) is not None:
        return False
    if len([line for line in t.splitlines() if line.strip()]) > 1 or _BULLET.search(t):
        return True
    if _SENTENCE_END.search(t) or _SO.search(t) or any(w in _REASONING for w in words) or _list_items(t) >= 3:
        return True
    return len(content_words(" ".join(words))) > MAX_CLOSED_WORDS


def answers_are_open(finals: Iterable[tuple[str, str | None]]) -> bool:
    """True when a round's (panelist, final answer) pairs need the analyst: at least one answered final answer
    is open (see the module docstring); False when every answer is closed-form or none was given."""
    return any(is_open_answer(a) for _, a in finals if a is not None)


def with_round_polarity(norms: Sequence[Normalized]) -> list[Normalized]:
    """The round's answers with a "no" polarity on negated closed-form text answers that lack a yes/no word, when
    any answer of the round opens with one ("Not prime" among "No" and "Yes, it is prime")."""
    if not any(n.polarity is not None for n in norms):
        return list(norms)
    return [
        replace(n, polarity=False)
        if n.kind == "text" and n.polarity is None and negated(n.key) and not is_open_answer(n.display)
        else n
        for n in norms
    ]


def same_position(a: Normalized, b: Normalized) -> bool:
    """True when two normalised answers count as the same position."""
    if a.kind != b.kind:
        return False
    if a.kind != "text":
        return a.key == b.key
    if a.polarity is not None and b.polarity is not None:
        return a.polarity == b.polarity
    if not a.key or not b.key:
        return False
    if a.key == b.key:
        return True
    if negated(a.key) != negated(b.key) or sorted(_NUMBERS.findall(a.key)) != sorted(_NUMBERS.findall(b.key)):
        return False  # containment and similarity would call "prime" and "not prime", "100" and "1000" the same
    wa, wb = f" {a.key} ", f" {b.key} "
    if wa in wb or wb in wa:
        return True
    ca, cb = content_words(a.key), content_words(b.key)
    if not (ca and cb):
        return difflib.SequenceMatcher(None, a.key, b.key).ratio() >= TEXT_SIMILARITY
    if ca <= cb or cb <= ca:
        return (
            True  # word order and function words: "Paris is the capital of France" / "The capital of France is Paris"
        )
    # Only the words that differ may be alike (spelling: "Leonardo da Vinci" / "Leonardo DaVinci"): a whole-text ratio
    # called "The capital of France is Paris" and "... is Lyon" the same.
    rest_a = " ".join(w for w in a.key.split() if w in ca - cb)
    rest_b = " ".join(w for w in b.key.split() if w in cb - ca)
    return difflib.SequenceMatcher(None, rest_a, rest_b).ratio() >= TEXT_SIMILARITY


def score_agreement(final_answers: Sequence[tuple[str, str | None]]) -> Agreement:
    """Agreement over (panelist, final answer) pairs; None answers are left out."""
    answered = [(p, a) for p, a in final_answers if a is not None and a.strip()]
    if not answered:
        return Agreement(score=0.0, kind="none", majority=None)
    norms = [normalize_answer(a) for _, a in answered]
    kinds = {n.kind for n in norms}
    # Mixed kinds (e.g. "4" and "four") compare as text so nothing is silently dropped; an option letter keeps its
    # letter there ("A." was the article "a" dropped: nothing, and "A." and "A" were two positions).
    if len(kinds) > 1:
        norms = [
            _text(a, letter=n.key if n.kind == "choice" else None) for (_, a), n in zip(answered, norms, strict=True)
        ]
        kind = "text"
    else:
        kind = kinds.pop()
    norms = with_round_polarity(norms)
    clusters: list[tuple[Normalized, list[str]]] = []
    for (panelist, _), norm in zip(answered, norms, strict=True):
        for rep, members in clusters:
            if same_position(rep, norm):
                members.append(panelist)
                break
        else:
            clusters.append((norm, [panelist]))
    best_rep, best_members = max(clusters, key=lambda c: len(c[1]))  # first wins ties
    return Agreement(
        score=round(len(best_members) / len(answered), 6),
        kind=kind,  # type: ignore[arg-type]
        majority=best_rep.display,
        majority_panelists=best_members,
        clusters=[Cluster(answer=rep.display, panelists=m) for rep, m in clusters],
        tie=sum(len(m) == len(best_members) for _, m in clusters) > 1,
    )


def matches_gold(predicted: str | None, gold: str, kind: str) -> bool:
    """Whether a predicted short answer matches a gold answer of the given kind."""
    if predicted is None or not predicted.strip():
        return False
    said, right = normalize_answer(predicted, kind), normalize_answer(gold, kind)
    if (
        said.kind == right.kind == "text"
        and f" {said.key} " in f" {right.key} "
        and 2 * len(said.key) < len(right.key)
        and not any(len(word) >= 4 for word in said.key.split())
    ):
        # A short fragment of the gold ("of", "da", "New" for "New York City") is not the gold; a name in it is
        # ("Paris" for "Paris, France", "Obama" for "Barack Obama").
        return False
    return same_position(said, right)


# Reading the short answer a reply states: the rule is quoted in consensus/eval/scoring.py's docstring.
# The moderator writes these labels in the debate's language: English and the common translations.
_LABELS = (
    "agreement|dissent|acuerdo|desacuerdo|disidencia|discrepancias?|accord|d[ée]saccord|dissidence|divergences?"
    "|concord[âa]ncia|discord[âa]ncia|dissid[êe]ncia|einigkeit|übereinstimmung|dissens|accordo|disaccordo"
    "|सहमति|असहमति|मतभेद|اتفاق|الاتفاق|اختلاف|الخلاف|معارضة|اتفاق رائے|اختلاف رائے"
)
_SECTION = re.compile(rf"(?im)^[ \t]*[#>*_ \t]*(?:{_LABELS})(?!\w)[*_ \t]*[:：]")
# The same label after a sentence's end on the answer's own line ("… is 42. Agreement: 2 of 3"): its counts are
# not the answer.
_INLINE_SECTION = re.compile(rf"(?i)(?<=[.!?。;])[ \t]+[*_]*(?:{_LABELS})(?!\w)[*_ \t]*[:：]")
_FINAL = re.compile(r"(?im)^[ \t]*[#>*_ \t]*final answer[*_ \t]*[:：][ \t]*(.+?)[ \t]*$")
_NUMBER_IN_TEXT = re.compile(
    r"(?<![\w.,])-?(?:\d{1,3}(?:\.\d{3})+,\d+(?!\d)|\d+,\d{1,2}(?![\d,])|(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?!\d))"
)
_EXPLICIT = re.compile(r"(?i:\b(answer|option|choice)\s*(?:is)?\s*(?:option\s*)?[:\-]?\s*)\(?([A-Z])\)?(?![\w'])")
_LETTER = re.compile(r"(?<![\w'])\(?([A-Z])\)?(?![\w'])")
# "A" then a lower-case word is the article ("A cat"), unless the word is a verb that makes it the letter ("A is
# correct", "A would be right").
_ARTICLE = re.compile(r"\s+(?!(?:is|was|would|seems|should|must|appears|looks|fits|matches|remains)\b)[a-z]")
# ... and "A is wrong" names A only to reject it: not a letter the answer gives.
_REJECTED = re.compile(r"\s+(?:is|was|seems|looks|appears)\s+(?:not\b|wrong|incorrect|false|implausible)")


def answer_reading(text: str) -> str:
    """The part of a reply that states the answer: before Agreement/Dissent, or the Final answer line."""
    cuts = sorted(m.start() for pattern in (_SECTION, _INLINE_SECTION) for m in pattern.finditer(text))
    head = next((text[:cut] for cut in cuts if text[:cut].strip()), text)
    finals = _FINAL.findall(head)
    return str(finals[-1]).strip().strip("*_").strip() if finals else head.strip()


def _read_number(text: str) -> str | None:
    norm = normalize_answer(text, "number")
    if norm.kind == "number":
        return norm.key
    found = _NUMBER_IN_TEXT.findall(text.replace("\u2212", "-"))
    return normalize_answer(found[-1], "number").key if found else None


def _read_choice(text: str, choices: Sequence[str] | None) -> str | None:
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[: len(choices)] if choices else "ABCDEFGHIJ"
    letter = parse_choice(text)
    if letter and letter in letters:
        return letter
    named = [(m.group(1).lower(), m.group(2)) for m in _EXPLICIT.finditer(text) if m.group(2) in letters]
    stated = [letter for word, letter in named if word == "answer"]
    if stated:  # "Option A is wrong, so the answer is C": the answer named, not the option passed over
        return stated[-1]
    if len({letter for _, letter in named}) == 1:
        return named[0][1]
    if choices:
        said = normalize_text(text)
        texts = [normalize_text(c) for c in choices]
        if said in texts:
            return letters[texts.index(said)]
        inside = [i for i, t in enumerate(texts) if t and f" {t} " in f" {said} "]
        if len(inside) == 1:
            return letters[inside[0]]
    seen = {
        m.group(1)
        for m in _LETTER.finditer(text)
        if m.group(1) in letters
        and not (m.group(0) == "A" and _ARTICLE.match(text, m.end()))
        and not _REJECTED.match(text, m.end())
    }
    seen |= {letter for _, letter in named}  # "option A or option B": A is named, whatever follows it
    return seen.pop() if len(seen) == 1 else None


# A question's own options, one per line: "A. text", "A) text", "(A) text" (quiz-show multiple choice, ARC, MMLU).
_OPTION_LINE = re.compile(r"(?m)^[ \t]*\(?([A-J])[.)][ \t]+(\S.*?)[ \t]*$")


def question_choices(question: str) -> list[str] | None:
    """The options a multiple-choice question lists, in order (A, B, ... on lines of their own, at least two), else
    None. Such a question is closed-form whatever its answers look like: each is read as the option it names."""
    found: list[str] = []
    for m in _OPTION_LINE.finditer(question):
        letter, text = m.group(1), m.group(2)
        if ord(letter) - ord("A") == len(found):
            found.append(text)
        elif letter == "A":  # a new list starts: the last one listed is the question's
            found = [text]
    return found if len(found) >= 2 else None


NAMES_NO_OPTION = "names no option"  # the start of the position of an answer that names none of the options


def choice_positions(
    finals: Sequence[tuple[str, str | None]], choices: Sequence[str] | None
) -> list[tuple[str, str | None]]:
    """(panelist, final answer) pairs with each answer of a multiple-choice question read as the letter it names;
    an answer that names none is a position of its own ("names no option (answer 2)": the number keeps two such
    answers apart), never a majority with another; unchanged without choices."""
    if not choices:
        return list(finals)
    return [
        (p, (extract_answer(a, "choice", choices) or f"{NAMES_NO_OPTION} (answer {i})") if a else a)
        for i, (p, a) in enumerate(finals, start=1)
    ]


def extract_answer(text: str | None, kind: AnswerKind, choices: Sequence[str] | None = None) -> str | None:
    """The short answer a reply gives for an item of this kind (see consensus/eval/scoring.py), or None."""
    if text is None or not text.strip():
        return None
    reading = answer_reading(text)
    if not reading:
        return None
    if kind == "number":
        return _read_number(reading)
    if kind == "choice":
        return _read_choice(reading, choices)
    return reading
