"""Pure: the analyst's claim map - its schema, its prompt, our code's verification of it, and its renderings.

The analyst (an LLM) is not trusted; our code keeps only what it can check by provenance.

Reading the reply: the first JSON object in it with a "claims" or "positions" key, found inside prose or a
Markdown fence, parsed with ``pydantic_core.from_json(..., allow_partial=True)`` so that a reply cut off by
max_tokens keeps what it completed (a string cut in the middle is dropped, so a cut quote is an empty one).

Attributions (a panelist asserts or contradicts a claim, with a quote):
- The panelist is named by its anonymous label: "A", "Panelist A", "panelist a", "(A)". Any other name
  is an unknown label: the attribution is rejected and recorded in ``Analysis.dropped``.
- The quote must occur in the answer of the panelist it is attributed to, compared after normalising case,
  whitespace, Unicode forms, typographic quotes, dashes and ellipses, with the quote's surrounding quote
  marks and end punctuation trimmed, and at word boundaries ("rime" is not found in "prime"). An empty
  quote (nothing but punctuation) is not evidence. An attribution whose quote is not found is dropped and
  recorded with the reason; so is a second, opposite stance of the same panelist on the same claim.
- A claim keeps its verified attributions only, by panelist name. Its kind: ``agreed`` (two or more
  supporters, no opponent), ``contested`` (supporters and opponents), ``unique`` (exactly one supporter, no
  opponent: a unique insight, kept and attributed). A claim no verified quote asserts is left out.

Positions (groups of panelists giving the same overall answer): the analyst proposes them; our code
keeps a panelist in a group only when the evidence backs it. Two panelists are compatible when they
both assert (verified) at least one same claim, and neither asserts (verified) a claim the other
contradicts (verified). Each proposed position is split, greedily in the analyst's order, into groups
whose members are all compatible with each other; a member without any verified assertion is placed
in no group. Unknown labels in a position are recorded as dropped (stance "asserts", claim "position
N"); a panelist proposed in two positions stays in the first. Every panelist whose answer was shown
and who is in no verified group is a position of its own. So an analyst claiming unanimity the quotes
do not support gets the groups that did verify.

Verified (``Analysis.verified``; the round's agreement then has method "claims"): the reply held a claim
map with a claims list, at least one of its attributions verified, and at least one group formed from
the analyst's own positions. Otherwise ``verified`` is false with a ``reason``, and the round's agreement
is the deterministic one with method "exact_fallback"; the verified claims are kept all the same.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic_core import from_json

from consensus.language import language_name
from consensus.prompts import render
from consensus.rounds import CHARS_PER_TOKEN, escape_untrusted, fence, label_for, shorten
from consensus.types import Agreement, Analysis, Claim, Cluster, DroppedAttribution, Message, ModelAnswer

__all__ = [
    "CLAIM_MAP_HEADING",
    "CLAIM_MAP_SCHEMA",
    "CONTESTED_HEADING",
    "agreement_from_analysis",
    "analysis_messages",
    "claim_map_prompt",
    "contested_claims_prompt",
    "label_letter",
    "normalize_quote",
    "quotable_answer",
    "quote_in",
    "verbatim",
    "verify_claim_map",
]

_ATTRIBUTION = {
    "type": "object",
    "properties": {"panelist": {"type": "string"}, "quote": {"type": "string"}},
    "required": ["panelist", "quote"],
    "additionalProperties": False,
}
CLAIM_MAP_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "claims": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "text": {"type": "string"},
                    "asserts": {"type": "array", "items": _ATTRIBUTION},
                    "contradicts": {"type": "array", "items": _ATTRIBUTION},
                },
                "required": ["text", "asserts", "contradicts"],
                "additionalProperties": False,
            },
        },
        "positions": {"type": "array", "items": {"type": "array", "items": {"type": "string"}}},
    },
    "required": ["claims", "positions"],
    "additionalProperties": False,
}

Stance = Literal["asserts", "contradicts"]
_STANCES: tuple[Stance, ...] = ("asserts", "contradicts")
# Typographic forms a model (or a keyboard) swaps for the plain ones, and the fence escapes of rounds.py.
_PLAIN = str.maketrans(
    "\u2018\u2019\u201a\u201b\u2032`\u00b4\u201c\u201d\u201e\u201f\u2033\u00ab\u00bb"
    "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\u2039\u203a\u00a0",
    "'''''''\"\"\"\"\"\"\"-------<> ",
)
_TRIM = " \t\n\"'.,;:!?…()[]*_"
_SPACES = re.compile(r"\s+")
_LABEL = re.compile(r"^[\W_]*(?:pan[eé]ll?(?:ist|ista|iste)?s?[\W_]*)?([a-z])[\W_]*$", re.IGNORECASE)
CLAIM_MAP_HEADING = "Claim map (checked by software: every quote below occurs in the answer it is attributed to):"
CONTESTED_HEADING = "Contested claims (who holds what was checked by software against each quoted answer):"
_MAX_STARTS = 20  # "{" positions tried when a reply has prose around its JSON


def normalize_quote(text: str) -> str:
    """Text as quotes are compared: NFKC, case-folded, plain quotes and dashes, "..." for an ellipsis, one space."""
    t = unicodedata.normalize("NFKC", text).translate(_PLAIN).replace("…", "...").casefold()
    return _SPACES.sub(" ", t).strip()


def quote_in(quote: str, answer: str) -> bool:
    """Whether `quote` occurs in `answer` (both as normalize_quote leaves them, the quote's surrounding quote marks
    and end punctuation trimmed), starting and ending at word boundaries; an empty quote is never found."""
    return _find(normalize_quote(quote).strip(_TRIM), normalize_quote(answer)) != -1


def _find(q: str, haystack: str) -> int:
    """Where `q` starts in `haystack` at word boundaries, or -1; -1 for a quote without a letter or digit."""
    if not any(ch.isalnum() for ch in q):
        return -1
    start = haystack.find(q)
    while start != -1:
        end = start + len(q)
        before = start == 0 or not (haystack[start - 1].isalnum() and q[0].isalnum())
        after = end == len(haystack) or not (haystack[end].isalnum() and q[-1].isalnum())
        if before and after:
            return start
        start = haystack.find(q, start + 1)
    return -1


def verbatim(quote: str, answer: str) -> str | None:
    """The span of `answer` a quote matches (see quote_in), as the panelist wrote it: the analyst's typographic
    quotes, case or spacing are not what the user is shown; None when it is not found."""
    q = normalize_quote(quote).strip(_TRIM)
    if q.isascii() and answer.isascii():  # only case and spacing can differ: match the answer itself
        edges = (r"(?<!\w)" if q[:1].isalnum() else "", r"(?!\w)" if q[-1:].isalnum() else "")
        words = r"\s+".join(re.escape(w) for w in q.split())
        found = re.search(edges[0] + words + edges[1], answer, re.IGNORECASE) if words else None
        return found.group(0) if found else None
    chars: list[str] = []
    where: list[int] = []
    # normalize_quote one character at a time, remembering where each character came from
    for i, ch in enumerate(answer):
        for c in unicodedata.normalize("NFKC", ch).translate(_PLAIN).replace("…", "...").casefold():
            if c.isspace():
                if not chars or chars[-1] == " ":
                    continue
                c = " "
            chars.append(c)
            where.append(i)
    start = _find(q, "".join(chars))
    return answer[where[start] : where[start + len(q) - 1] + 1] if start != -1 else None


def quotable_answer(answer: ModelAnswer) -> str:
    """The text of a panelist's answer the analyst is shown and its quotes are checked against."""
    text = answer.answer.strip()
    final = (answer.final_answer or "").strip()
    if final and normalize_quote(final) not in normalize_quote(text):
        text = f"{text}\nFinal answer: {final}" if text else final
    return text


def _letters(labels: Sequence[str]) -> str:
    letters = [label_letter(x) or x for x in labels]
    return ", ".join(letters[:-1]) + f" and {letters[-1]}" if len(letters) > 1 else "".join(letters)


def label_letter(label: str) -> str | None:
    """The letter of an anonymous label as a model may write it ("A", "Panelist A", "panelist a", "(A)")."""
    m = _LABEL.match(label.strip())
    return m.group(1).upper() if m else None


def analysis_messages(
    question: str,
    finals: Sequence[tuple[int, ModelAnswer]],
    language: str,
    marker: str,
    budget_tokens: int | None = None,
) -> list[Message]:
    """Messages asking the analyst for the claim map of a round's answers (seat index, answer), fenced and labelled
    anonymously; each answer and then the question are shortened to fit `budget_tokens` when it is given."""
    system = render("analysis.system.md", language_name=language_name(language), language_code=language, marker=marker)
    texts = [(label_for(i), quotable_answer(a)) for i, a in finals]
    q = question
    limit = None
    if budget_tokens is not None:
        budget_chars = budget_tokens * CHARS_PER_TOKEN - len(system) - 200
        q = shorten(question, max(200, budget_chars // 4))
        limit = max(120, (budget_chars - len(q)) // max(1, len(texts)) - 60)
    answers = "\n\n".join(
        fence(f"ANSWER OF {label.upper()}", shorten(t, limit) if limit else t, marker) for label, t in texts
    )
    user = render(
        "analysis.user.md",
        question=escape_untrusted(q, marker),
        answers=answers,
        labels=_letters([label for label, _ in texts]),
        marker=marker,
    )
    return [Message(role="system", content=system), Message(role="user", content=user)]


def _claim_map(text: str) -> dict[str, Any] | None:
    start = text.find("{")
    for _ in range(_MAX_STARTS):
        if start == -1:
            return None
        try:
            obj = from_json(text[start:], allow_partial=True)
        except ValueError:
            obj = None
        if isinstance(obj, dict) and ("claims" in obj or "positions" in obj):
            return obj
        start = text.find("{", start + 1)
    return None


def _attributions(raw: object) -> list[tuple[str, str]]:
    """(label, quote) pairs from the shapes models write: [{"panelist", "quote"}], {"A": "quote"}, ["A"]."""
    if isinstance(raw, dict):
        return [(str(k), v if isinstance(v, str) else "") for k, v in raw.items()]
    if not isinstance(raw, list):
        return []
    out = []
    for item in raw:
        if isinstance(item, dict):
            who = item.get("panelist", item.get("label", ""))
            quote = item.get("quote", "")
            out.append((str(who) if isinstance(who, str | int) else "", quote if isinstance(quote, str) else ""))
        elif isinstance(item, str):
            out.append((item, ""))
    return out


def _members(raw: object) -> list[str]:
    if isinstance(raw, dict):
        raw = raw.get("panelists", [])
    if isinstance(raw, str):
        raw = re.split(r"[,;&]|\band\b", raw)
    return [str(x).strip() for x in raw if isinstance(x, str) and x.strip()] if isinstance(raw, list) else []


@dataclass
class _Evidence:
    asserts: set[int] = field(default_factory=set)
    contradicts: set[int] = field(default_factory=set)


class _Verifier:
    """One verification: the labels, the normalised answers, what verified and what was dropped."""

    def __init__(self, labels: Mapping[str, str], answers: Mapping[str, str]) -> None:
        self.by_letter = {letter: name for label, name in labels.items() if (letter := label_letter(label))}
        self.order = {name: i for i, name in enumerate(labels.values())}
        self.texts = dict(answers)
        self.answers = {name: normalize_quote(text) for name, text in answers.items()}
        self.evidence = {name: _Evidence() for name in labels.values()}
        self.dropped: list[DroppedAttribution] = []
        self.verified = 0

    def name(self, label: str) -> str | None:
        letter = label_letter(label)
        return self.by_letter.get(letter) if letter else None

    def drop(self, claim: str, label: str, stance: Stance, quote: str, reason: str) -> None:
        self.dropped.append(DroppedAttribution(claim=claim, panelist=label, stance=stance, quote=quote, reason=reason))

    def claim(self, raw: object, index: int) -> Claim | None:
        if not isinstance(raw, dict):
            return None
        text = raw.get("text", raw.get("claim", ""))
        text = text.strip() if isinstance(text, str) else ""
        sides: dict[Stance, list[str]] = {"asserts": [], "contradicts": []}
        quotes: dict[str, str] = {}
        for stance in _STANCES:
            for label, quote in _attributions(raw.get(stance)):
                name = self.name(label)
                reason = self.refusal(text, name, label, quote, stance, sides)
                if reason is not None or name is None:
                    self.drop(text, label, stance, quote, reason or "unknown label")
                elif name not in quotes:  # a second quote of the same stance adds nothing
                    sides[stance].append(name)
                    quotes[name] = verbatim(quote, self.texts[name]) or quote.strip()
                    self.verified += 1
        supporters, opponents = sides["asserts"], sides["contradicts"]
        if not supporters:
            return None
        for name in supporters:
            self.evidence[name].asserts.add(index)
        for name in opponents:
            self.evidence[name].contradicts.add(index)
        kind: Literal["agreed", "contested", "unique"] = (
            "contested" if opponents else "agreed" if len(supporters) > 1 else "unique"
        )
        return Claim(text=text, kind=kind, supporters=supporters, opponents=opponents, quotes=quotes)

    def refusal(
        self, text: str, name: str | None, label: str, quote: str, stance: Stance, sides: Mapping[Stance, list[str]]
    ) -> str | None:
        """Why an attribution is refused, or None when it verified."""
        if not text:
            return "the claim has no text"
        if name is None:
            return f"unknown label {label!r}: the panelists are {', '.join(sorted(self.by_letter))}"
        if not any(ch.isalnum() for ch in quote):
            return "no quote: an attribution needs a verbatim quote from the panelist's answer"
        if _find(normalize_quote(quote).strip(_TRIM), self.answers.get(name, "")) == -1:
            return f"quote not found in the answer of Panelist {label_letter(label)}"
        other: Stance = "contradicts" if stance == "asserts" else "asserts"
        if name in sides[other]:
            return f"Panelist {label_letter(label)} already {other} this claim"
        return None

    def compatible(self, a: str, b: str) -> bool:
        ea, eb = self.evidence[a], self.evidence[b]
        return bool(ea.asserts & eb.asserts) and not (ea.asserts & eb.contradicts or eb.asserts & ea.contradicts)

    def positions(self, raw: object) -> tuple[list[list[str]], int]:
        """The verified groups (seat order) and how many came from the analyst's own positions."""
        placed: set[str] = set()
        groups: list[list[str]] = []
        for p, proposal in enumerate(raw if isinstance(raw, list) else [], start=1):
            members: list[str] = []
            for label in _members(proposal):
                name = self.name(label)
                if name is None:
                    self.drop(f"position {p}", label, "asserts", "", f"unknown label {label!r} in a position")
                elif name in placed:
                    if name not in members:
                        self.drop(f"position {p}", label, "asserts", "", "already in an earlier position")
                else:
                    members.append(name)
                    placed.add(name)
            pending = [m for m in members if self.evidence[m].asserts]
            while pending:
                group: list[str] = []
                for m in pending:
                    if all(self.compatible(m, g) for g in group):
                        group.append(m)
                groups.append(group)
                pending = [m for m in pending if m not in group]
        from_analyst = len(groups)
        grouped = {m for g in groups for m in g}
        groups += [[name] for name in self.answers if name not in grouped and name in self.order]
        groups.sort(key=lambda g: min(self.order[m] for m in g))
        return [sorted(g, key=self.order.__getitem__) for g in groups], from_analyst


def verify_claim_map(text: str, labels: Mapping[str, str], answers: Mapping[str, str]) -> Analysis:
    """The analyst's reply `text` verified against the panel: `labels` maps each anonymous label ("Panelist A") to
    its panelist's name, `answers` each name to the text the analyst was shown (quotable_answer). Never raises; the
    rules are in the module docstring. The caller fills in analyst, usage, cost and latency."""
    raw = _claim_map(text)
    if raw is None:
        return Analysis(verified=False, reason="the analyst's reply holds no claim map (no JSON object)")
    v = _Verifier(labels, answers)
    raw_claims = raw.get("claims")
    claims = [c for i, r in enumerate(raw_claims) if (c := v.claim(r, i))] if isinstance(raw_claims, list) else []
    positions, from_analyst = v.positions(raw.get("positions"))
    reason = None
    if not isinstance(raw_claims, list):
        reason = "the claim map has no claims list"
    elif not v.verified:
        reason = "no quote of the claim map was found in the answer it was attributed to"
    elif not raw.get("positions"):
        reason = "the claim map has no positions"
    elif not from_analyst:
        reason = "no position of the claim map is backed by verified quotes"
    return Analysis(verified=reason is None, reason=reason, claims=claims, positions=positions, dropped=v.dropped)


def agreement_from_analysis(analysis: Analysis, answered: list[str], fallback: Agreement) -> Agreement:
    """The round's agreement from the verified positions: the largest group over the panelists that `answered`
    (seat order; anyone in no group counts alone), method "claims"; when the analysis did not verify (see the
    module docstring), the deterministic `fallback` with method "exact_fallback"."""
    if not analysis.verified or not answered:
        return fallback.model_copy(update={"method": "exact_fallback"})
    order = {name: i for i, name in enumerate(answered)}
    groups = [[p for p in g if p in order] for g in analysis.positions]
    groups = [g for g in groups if g]
    grouped = {p for g in groups for p in g}
    groups += [[p] for p in answered if p not in grouped]
    groups.sort(key=lambda g: min(order[p] for p in g))
    best = max(groups, key=len)  # the first wins ties
    shown = {p: c.answer for c in fallback.clusters for p in c.panelists}
    return Agreement(
        score=round(len(best) / len(answered), 6),
        kind=fallback.kind if fallback.kind != "none" else "text",
        method="claims",
        majority=shown.get(best[0], best[0]),
        majority_panelists=best,
        clusters=[Cluster(answer=shown.get(g[0], g[0]), panelists=g) for g in groups],
        tie=sum(len(g) == len(best) for g in groups) > 1,
    )


def _who(names: Sequence[str], label_of: Mapping[str, str]) -> str:
    return ", ".join(label_of.get(n, n) for n in names)


def _claim_block(n: int, claim: Claim, label_of: Mapping[str, str], marker: str, quote_chars: int) -> str:
    head = f"Claim {n} ({claim.kind}): asserted by {_who(claim.supporters, label_of)}"
    if claim.opponents:
        head += f"; contradicted by {_who(claim.opponents, label_of)}"
    lines = [claim.text] + [
        f'{label_of.get(name, name)}: "{shorten(quote, quote_chars)}"'
        for name in [*claim.supporters, *claim.opponents]
        if (quote := claim.quotes.get(name))
    ]
    body = "\n".join(lines)
    return f"{head}.\n{fence(f'CLAIM {n}', body, marker)}"


def contested_claims_prompt(analysis: Analysis, labels: Mapping[str, str], marker: str, quote_chars: int = 160) -> str:
    """The contested claims for a debate round's prompt: who asserts and who contradicts each (labels, software
    text) and the claim with its quotes (model text, fenced); "" when no claim is contested. `labels` maps each
    label to its panelist's name, as in verify_claim_map."""
    label_of = {name: label for label, name in labels.items()}
    contested = [c for c in analysis.claims if c.kind == "contested"]
    if not contested:
        return ""
    blocks = [_claim_block(n, c, label_of, marker, quote_chars) for n, c in enumerate(contested, start=1)]
    return "\n\n".join([CONTESTED_HEADING, *blocks])


def claim_map_prompt(analysis: Analysis, labels: Mapping[str, str], marker: str, quote_chars: int = 160) -> str:
    """The verified claim map for the synthesizer's prompt: the verified positions and each claim's kind and holders
    (labels, software text), each claim's text and quotes fenced (model text); "" when there is no verified claim."""
    if not analysis.claims:
        return ""
    label_of = {name: label for label, name in labels.items()}
    order = {"agreed": 0, "contested": 1, "unique": 2}
    claims = sorted(analysis.claims, key=lambda c: order[c.kind])
    lines = [CLAIM_MAP_HEADING]
    if analysis.verified and analysis.positions:
        lines.append("Positions: " + " | ".join(_who(g, label_of) for g in analysis.positions))
    blocks = [_claim_block(n, c, label_of, marker, quote_chars) for n, c in enumerate(claims, start=1)]
    return "\n".join(lines) + "\n\n" + "\n\n".join(blocks)
