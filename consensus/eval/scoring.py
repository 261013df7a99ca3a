"""Pure: read the short answer out of a reply, score it against the gold, build one record per question.

How an answer is read and scored (quoted in the README):

1. Which text is read. A panelist's ``final_answer`` when it replied in the requested JSON
   format, else its whole reply. The consensus is the synthesizer's free text: everything from
   the first "Agreement:" or "Dissent:" (or their Spanish, French, Portuguese, German, Italian,
   Hindi, Arabic or Urdu words) that starts a line or follows a sentence's end on it ("... $18.
   Agreement: 2 of 3") on is cut off (those paragraphs quote the minority's answers and counts);
   if a line "Final answer: X" remains, only X is read.
2. number items: the text itself when it is one number ("1,234", "$42", "3/4", "50%", and
   decimal commas: "3,5" and "12,50 €" are 3.5 and 12.5, "1.234,5" is 1234.5),
   else the LAST number in it ("16 - 3 - 4 = 9, so $18" -> 18). Equal to the gold when the
   values match (relative tolerance 1e-6, as in agreement.py).
3. choice items, in this order: the text is an option letter ("B", "(b)", "Option B",
   "The answer is B."); else the last "answer (is) X" with an upper-case letter X, or the one
   letter named by "option/choice X" when only one is; else the text equals one choice's text, or contains exactly one choice's text
   as whole words (normalised as in agreement.normalize_text); else exactly one distinct
   stand-alone upper-case option letter appears ("A" followed by a lower-case word counts as
   the article, not a letter, unless the word is a verb such as "is"; a letter followed by "is
   wrong", "is not"... is rejected, not given). Anything else is unreadable. Equal to the gold
   when the letters match.
4. text items: the text as it is, compared with agreement.matches_gold: equal after
   normalisation (case, accents, punctuation, articles), one contains the other as whole
   words, or a difflib ratio of at least 0.8 - not when only one side is negated or they
   state different numbers, and not when the answer is a fragment of the gold shorter than
   half of it with no word of 4 letters or more ("of" or "New" for "United States of America"
   or "New York City"; "Paris" for "Paris, France" still counts).
The reading (1-3) is consensus.agreement.extract_answer, which the consensus's faithfulness guard
uses too. An unreadable answer, a failed call and a failed debate count as wrong. The round-0 and the
final vote are agreement.score_agreement's majority over the answers read this way (each
panelist's latest successful answer for the final vote; unreadable ones left out; a tie goes to
the earlier seat).

What a record keeps of the engine's own measures: each round's agreement score and method (exact,
claims, exact_fallback), and the consensus's source (synthesis, synthesis_retry, fallback_seat,
majority_answer), its checks and its fallback reason, and the writings the guard rejected before it
(Consensus.rejected: who wrote each and the checks it failed). Records written before these fields load
with them empty (None).

A comparison arm (consensus/arms.py; `consensus eval --arm`) is scored on the reply the endpoint would send, read
as the consensus is (1-3): the majority panelist's answer ending in its "Final answer: X" line, or a single
panelist's. An arm whose vote tied states no answer: it counts as wrong and as a tie, as a split consensus does.
So the consensus-vote arm and the round-0 vote score a tie differently: the arm counts it wrong, the round-0 vote
keeps its tie-break (the earlier seat), as it always has, so that its figures mean what they meant in earlier
runs. The summary counts the round-0 ties (round0_tied) and the tie-break's right answers among them, and gives
the round-0 vote's accuracy with ties counted wrong, as the arm counts them.
A record made without the debate (no `consensus` among the arms) has `debated` false and status "not_run".

A split consensus: when the final round's largest positions tie and no synthesis passed the guard,
the consensus is the guard's list of the tied positions under "The panel is split" (source
majority_answer), and on a closed-form round a last line, labelled as a tie-break by seat order and not a
majority, with the earlier seat's position: the votes' tie-break. It is read on that line only (a letter in
the list is one of the positions, not the consensus's answer; a list without the line states no answer and
counts as wrong), and it is counted as split, not as unreadable. The summary also gives the consensus's
accuracy with splits counted wrong, next to the round-0 vote's with ties counted wrong.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from pydantic import BaseModel

from consensus.agreement import extract_answer, matches_gold, score_agreement
from consensus.eval.datasets import EvalItem, ItemType
from consensus.guard import tie_break_answer
from consensus.types import AgreementMethod, Check, ConsensusSource, DebateResult, DebateStatus, ModelAnswer

if TYPE_CHECKING:  # a type only: scoring stays pure, importing no engine code
    from consensus.arms import ArmResult

__all__ = [
    "ArmRecord",
    "EvalRecord",
    "RejectedWriting",
    "extract_answer",
    "is_correct",
    "arm_record_from_error",
    "not_debated",
    "record_from_arm",
    "record_from_error",
    "record_from_result",
    "round0_tied",
]


def is_correct(answer: str | None, item: EvalItem) -> bool:
    """Whether an extracted answer matches the item's gold."""
    return answer is not None and matches_gold(answer, item.answer, item.type)


class PanelistRecord(BaseModel):
    """One panelist's answer in one round, as scored."""

    panelist: str
    answer: str = ""
    final_answer: str | None = None
    extracted: str | None = None
    correct: bool = False
    confidence: float | None = None
    error: str | None = None
    latency_ms: int = 0


class RoundRecord(BaseModel):
    """One round: the engine's agreement score and every answer given in it."""

    index: int
    agreement: float | None = None
    method: AgreementMethod | None = None  # None: recorded before agreement had a method
    majority: str | None = None  # the engine's majority position (its raw final answer; on a tie, the tie-break's)
    tie: bool | None = None  # the largest positions tie: no majority (None: recorded before this field)
    answers: list[PanelistRecord]


class Scored(BaseModel):
    """A vote or the consensus: what was answered, what was read from it, and whether it is right."""

    answer: str | None = None
    extracted: str | None = None
    correct: bool = False


class RejectedWriting(BaseModel):
    """A consensus the guard rejected before the one shown: who wrote it and the checks it failed."""

    seat: str
    failed: list[str]


class ArmRecord(BaseModel):
    """One comparison arm's answer to one question: its reply, what was read from it, its vote and its cost."""

    arm: str
    status: str
    reason: str | None = None
    reply: str | None = None
    extracted: str | None = None
    correct: bool = False
    tie: bool = False
    majority: str | None = None
    agreement: float | None = None
    answers: list[PanelistRecord] = []
    prompt_tokens: int = 0
    completion_tokens: int = 0
    tokens: int = 0
    cost_usd: float | None = 0.0
    llm_calls: int = 0
    latency_ms: int = 0


class EvalRecord(BaseModel):
    """Everything measured for one question: one line of records.jsonl."""

    id: str
    question: str
    gold: str
    type: ItemType
    choices: list[str] | None = None
    panelists: list[str]
    status: str
    reason: str | None = None
    rounds: list[RoundRecord] = []
    round0_vote: Scored = Scored()
    final_vote: Scored = Scored()
    consensus: Scored = Scored()
    consensus_split: bool = False  # the consensus is the guard's "the panel is split" list: no answer to read
    synthesizer: str | None = None
    consensus_fallback: bool = False
    consensus_source: ConsensusSource | None = None  # None: recorded before the guard
    consensus_checks: list[Check] = []
    consensus_fallback_reason: str | None = None
    rejected: list[RejectedWriting] = []
    final_agreement: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    tokens: int = 0
    cost_usd: float | None = 0.0
    llm_calls: int = 0
    latency_ms: int = 0
    debated: bool = True  # the debate ran (False: only comparison arms were asked; records before arms: True)
    arms: dict[str, ArmRecord] = {}  # comparison arms by id (consensus-vote, ...), beside the debate


def _vote(answers: Sequence[tuple[str, str | None]], item: EvalItem) -> Scored:
    majority = score_agreement(answers).majority
    return Scored(answer=majority, extracted=majority, correct=is_correct(majority, item))


def record_from_result(item: EvalItem, result: DebateResult, latency_ms: int) -> EvalRecord:
    """Score a finished debate against the item's gold."""
    rounds: list[RoundRecord] = []
    latest: dict[str, str | None] = {}
    for rnd in result.rounds:
        answers = []
        for a in rnd.answers:
            scored = _panelist_record(a, item)
            answers.append(scored)
            if a.ok:
                latest[a.panelist] = scored.extracted
        agreement = rnd.agreement
        rounds.append(
            RoundRecord(
                index=rnd.index,
                agreement=agreement.score if agreement else None,
                method=agreement.method if agreement else None,
                majority=agreement.majority if agreement else None,
                tie=agreement.tie if agreement else None,
                answers=answers,
            )
        )
    failed = result.status == DebateStatus.failed
    order = [p.name for p in result.panel]
    record = EvalRecord(
        id=item.id,
        question=item.question,
        gold=item.answer,
        type=item.type,
        choices=item.choices,
        panelists=order,
        status=result.status.value,
        reason=result.reason,
        rounds=rounds,
        final_agreement=(rounds[-1].agreement or 0.0) if rounds else 0.0,
        prompt_tokens=result.usage.prompt_tokens,
        completion_tokens=result.usage.completion_tokens,
        tokens=result.usage.total_tokens,
        cost_usd=result.usage.cost_usd,
        llm_calls=result.usage.llm_calls,
        latency_ms=latency_ms,
    )
    if rounds and not failed:
        record.round0_vote = _vote([(a.panelist, a.extracted) for a in rounds[0].answers], item)
        record.final_vote = _vote([(p, latest[p]) for p in order if p in latest], item)
    c = result.consensus
    if c is not None:
        split = c.source == "majority_answer" and bool(rounds) and bool(rounds[-1].tie)
        # A split consensus is read on its tie-break line only: a letter in the list is one of the positions.
        said = tie_break_answer(c.answer) if split else c.answer
        got = None if said is None else extract_answer(said, item.type, item.choices)
        record.consensus = Scored(answer=c.answer, extracted=got, correct=not failed and is_correct(got, item))
        record.consensus_split = split
        record.synthesizer, record.consensus_fallback = c.synthesizer, c.fallback
        record.consensus_source, record.consensus_checks = c.source, list(c.checks)
        record.consensus_fallback_reason = c.fallback_reason
        record.rejected = [RejectedWriting(seat=w.synthesizer, failed=[k.name for k in w.failed]) for w in c.rejected]
    return record


def round0_tied(record: EvalRecord) -> bool:
    """Whether the round-0 vote's largest positions tied, so that its answer is the tie-break's (the earlier seat);
    computed from the stored answers, so records written before this function count too."""
    if not record.rounds or record.status == DebateStatus.failed.value:
        return False
    return score_agreement([(a.panelist, a.extracted) for a in record.rounds[0].answers]).tie


def record_from_error(item: EvalItem, panelists: list[str], error: BaseException, latency_ms: int) -> EvalRecord:
    """A failed record for a debate that raised instead of returning a result."""
    return EvalRecord(
        id=item.id,
        question=item.question,
        gold=item.answer,
        type=item.type,
        choices=item.choices,
        panelists=panelists,
        status=DebateStatus.failed.value,
        reason=f"{type(error).__name__}: {error}",
        latency_ms=latency_ms,
    )


def _panelist_record(a: ModelAnswer, item: EvalItem) -> PanelistRecord:
    got = extract_answer(a.read_text, item.type, item.choices) if a.ok else None
    return PanelistRecord(
        panelist=a.panelist,
        answer=a.answer,
        final_answer=a.final_answer,
        extracted=got,
        correct=is_correct(got, item),
        confidence=a.confidence,
        error=a.error.kind if a.error else None,
        latency_ms=a.latency_ms,
    )


def record_from_arm(item: EvalItem, result: ArmResult, latency_ms: int) -> ArmRecord:
    """Score a comparison arm's reply against the item's gold (a tie states no answer: wrong)."""
    got = None if result.tie or result.reply is None else extract_answer(result.reply, item.type, item.choices)
    u = result.usage
    return ArmRecord(
        arm=result.arm,
        status=result.status.value,
        reason=result.reason,
        reply=result.reply,
        extracted=got,
        correct=is_correct(got, item),
        tie=result.tie,
        majority=result.majority,
        agreement=result.vote.score if result.vote else None,
        answers=[_panelist_record(a, item) for a in result.answers],
        prompt_tokens=u.prompt_tokens,
        completion_tokens=u.completion_tokens,
        tokens=u.total_tokens,
        cost_usd=u.cost_usd,
        llm_calls=u.llm_calls,
        latency_ms=latency_ms,
    )


def arm_record_from_error(arm: str, error: BaseException, latency_ms: int) -> ArmRecord:
    """A failed arm record for an arm that raised instead of returning a result."""
    return ArmRecord(
        arm=arm, status=DebateStatus.failed.value, reason=f"{type(error).__name__}: {error}", latency_ms=latency_ms
    )


def not_debated(item: EvalItem, panelists: list[str]) -> EvalRecord:
    """The record of a question asked only of comparison arms: no debate ran."""
    return EvalRecord(
        id=item.id,
        question=item.question,
        gold=item.answer,
        type=item.type,
        choices=item.choices,
        panelists=panelists,
        status="not_run",
        debated=False,
    )
