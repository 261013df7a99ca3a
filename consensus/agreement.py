"""Pure: normalise short answers, score agreement and find the majority.

How answers compare (documented in the README):
- number: every answer parses as a number ("1,234", "$42", "42.0", "3/4", "50%") -> equal
  when the values match to a relative tolerance of 1e-6.
- choice: every answer is a single option letter ("B", "(b)", "B)", "Option B",
  "The answer is B.") -> equal when the letters match.
- text: anything else -> lower-cased, accents, punctuation and articles dropped; two answers
  are the same position when their normalised forms are equal, one contains the other as whole
  words, or their difflib ratio is at least TEXT_SIMILARITY - unless only one of them is negated
  ("prime" / "not prime") or they state different numbers ("100" / "1000 apples").
Panelists are grouped greedily (in seat order) into clusters of equal answers; the score is the
size of the largest cluster divided by the number of panelists that answered; ties go to the
cluster whose first member sits first.
"""

from __future__ import annotations

import difflib
import itertools
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from consensus.types import Agreement, Cluster

TEXT_SIMILARITY = 0.8

_NUMBER = re.compile(r"^[-+]?(\d{1,3}(,\d{3})+|\d+)?(\.\d+)?$")
_CHOICE = re.compile(
    r"^(?:the\s+)?(?:correct\s+)?(?:answer|option|choice)?\s*(?:is)?\s*[:\-]?\s*\(?([A-J])\)?(?:[.):]|\s*$)",
    re.IGNORECASE,
)
_ARTICLES = {"a", "an", "the"}
# Negations in the panel's main languages, as normalize_text leaves them ("isn't" -> "isn t", "não" -> "nao").
_NEGATIONS = frozenset(
    "not no never none nor neither cannot false incorrect "  # en
    "nunca ninguno ninguna tampoco "  # es (no)
    "non pas jamais aucun aucune "  # fr
    "nicht kein keine keinen nein niemals "  # de
    "nao nem nenhum nenhuma "  # pt
    "नहीं नही मत ना".split()  # hi
)
_NUMBERS = re.compile(r"\d+")
_DECIMAL_COMMA = re.compile(r"[-+]?(?:\d+|\d{1,3}(?:\.\d{3})+),\d{1,2}|[-+]?\d{1,3}(?:\.\d{3})+,\d+")


def decimal_point(number: str) -> str:
    """A number written with a decimal comma (French, Spanish, German, ...) with a decimal point: "3,5" and "12,50"
    are 3.5 and 12.5, "1.234,5" is 1234.5; anything else as it is ("1,234" keeps its English reading)."""
    return number.replace(".", "").replace(",", ".") if _DECIMAL_COMMA.fullmatch(number) else number


def without_exponent(number: str) -> str:
    """A decimal number string without an exponent ("1e-05" -> "0.00001"): answers are read without exponents."""
    return format(Decimal(number), "f") if "e" in number.lower() else number


def _negated(key: str) -> bool:
    words = key.split()
    return any(w in _NEGATIONS for w in words) or any(a.endswith("n") and b == "t" for a, b in itertools.pairwise(words))


@dataclass(frozen=True)
class Normalized:
    """A final answer reduced to something comparable."""

    kind: str  # number | choice | text
    key: str
    display: str


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


def normalize_text(text: str) -> str:
    """Lower-case, strip accents, punctuation and articles, collapse spaces."""
    t = unicodedata.normalize("NFKD", text.casefold())
    t = "".join(ch for ch in t if not unicodedata.combining(ch))
    t = re.sub(r"[^\w\s]", " ", t)
    words = [w for w in t.split() if w not in _ARTICLES]
    return " ".join(words)


def normalize_answer(text: str, kind: str | None = None) -> Normalized:
    """Normalise one final answer; `kind` forces number/choice/text when known."""
    if kind in (None, "number"):
        n = parse_number(text)
        if n is not None:
            return Normalized("number", _fraction_key(n), text.strip())
        if kind == "number":
            return Normalized("text", normalize_text(text), text.strip())
    if kind in (None, "choice"):
        c = parse_choice(text)
        if c is not None:
            return Normalized("choice", c, c)
    return Normalized("text", normalize_text(text), text.strip())


def _fraction_key(n: Fraction) -> str:
    if n.denominator == 1:
        return str(n.numerator)
    return without_exponent(f"{float(n):.9g}")  # keys are read back as numbers


def same_position(a: Normalized, b: Normalized) -> bool:
    """True when two normalised answers count as the same position."""
    if a.kind != b.kind:
        return False
    if a.kind != "text":
        return a.key == b.key
    if not a.key or not b.key:
        return False
    if a.key == b.key:
        return True
    if _negated(a.key) != _negated(b.key) or _NUMBERS.findall(a.key) != _NUMBERS.findall(b.key):
        return False  # containment and similarity would call "prime" and "not prime", "100" and "1000" the same
    wa, wb = f" {a.key} ", f" {b.key} "
    if wa in wb or wb in wa:
        return True
    return difflib.SequenceMatcher(None, a.key, b.key).ratio() >= TEXT_SIMILARITY


def score_agreement(final_answers: Sequence[tuple[str, str | None]]) -> Agreement:
    """Agreement over (panelist, final answer) pairs; None answers are left out."""
    answered = [(p, a) for p, a in final_answers if a is not None and a.strip()]
    if not answered:
        return Agreement(score=0.0, kind="none", majority=None)
    norms = [normalize_answer(a) for _, a in answered]
    kinds = {n.kind for n in norms}
    # Mixed kinds (e.g. "4" and "four") compare as text so nothing is silently dropped.
    if len(kinds) > 1:
        norms = [Normalized("text", normalize_text(a), a.strip()) for _, a in answered]
        kind = "text"
    else:
        kind = kinds.pop()
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
    if (said.kind == right.kind == "text" and f" {said.key} " in f" {right.key} " and 2 * len(said.key) < len(right.key)
            and not any(len(word) >= 4 for word in said.key.split())):  # fmt: skip
        # A short fragment of the gold ("of", "da", "New" for "New York City") is not the gold; a name in it is
        # ("Paris" for "Paris, France", "Obama" for "Barack Obama").
        return False
    return same_position(said, right)
