"""Comparison arms: the baselines a debate is measured against, run on the same panel and the same seam.

    consensus                     the debate itself (engine.run_debate): openings, debate rounds, synthesis
    consensus-vote                the openings (round 0 of a debate, the same prompts) and their majority vote:
                                  no debate, no synthesis; the reply is the majority panelist's answer
    consensus-single-<name>       one panelist alone: one call, its opening
    consensus-sample-<name>-<k>   one panelist's opening sampled k times, majority-voted (self-consistency)

The service's OpenAI-compatible endpoint serves them as model ids and `consensus eval --arm` runs them: both call
run_arm() here, so the two routes give the same answers, votes and usage on the same panel.

Voting is agreement.score_agreement over the final answers, as the debate scores a round. A vote needs 2 answers,
as a debate does. When the largest positions tie there is no majority, and the reply says so (tie_reply) instead
of picking one. Samples: k from MIN_SAMPLES to MAX_SAMPLES; each sample is the seat at its own temperature, or
SAMPLE_TEMPERATURE when that is unset or 0 (k greedy samples would be one sample paid k times), and with a seed
the seat's seed + i for sample i, so seeded providers give distinct samples too. /v1/models advertises
sample_counts(panel): 3, 5 and the most calls a debate on this panel makes (equal cost); any k in range is served.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, Field

from consensus.agreement import choice_positions, question_choices, score_agreement
from consensus.engine import DebateOptions, ask_seat, follow_up_language, sum_spent, threaded, validate_request
from consensus.errors import UnknownArmError
from consensus.language import detect_language
from consensus.providers.base import Provider
from consensus.rounds import new_marker, opening_messages
from consensus.types import (
    Agreement,
    AnswerError,
    DebateStatus,
    ModelAnswer,
    Panel,
    Seat,
    ThreadContext,
    UsageTotals,
)

__all__ = [
    "MAX_SAMPLES",
    "MIN_SAMPLES",
    "MODEL_ID",
    "SAMPLE_TEMPERATURE",
    "Arm",
    "ArmResult",
    "arm_ids",
    "arms_of",
    "debate_calls",
    "parse_arm",
    "parse_arms",
    "reply_text",
    "run_arm",
    "sample_counts",
    "tie_reply",
]

MODEL_ID = "consensus"
PREFIX = MODEL_ID + "-"
MIN_SAMPLES = 2
MAX_SAMPLES = 32
ADVERTISED_SAMPLES = (3, 5)
SAMPLE_TEMPERATURE = 0.7

ArmKind = Literal["consensus", "vote", "single", "sample"]


@dataclass(frozen=True)
class Arm:
    """One arm: its kind, the panelist it asks (single, sample) and how many samples."""

    kind: ArmKind
    seat: str | None = None
    k: int = 1

    @property
    def id(self) -> str:
        """The model id that names this arm on the endpoint (and in `consensus eval --arm`)."""
        if self.kind == "consensus":
            return MODEL_ID
        if self.kind == "vote":
            return f"{PREFIX}vote"
        if self.kind == "single":
            return f"{PREFIX}single-{self.seat}"
        return f"{PREFIX}sample-{self.seat}-{self.k}"


class ArmResult(BaseModel):
    """What one arm answered for one question: the reply, every answer it asked for, the vote, and the usage."""

    arm: str
    kind: ArmKind
    question: str
    language: str
    status: DebateStatus
    reason: str | None = None
    reply: str | None = Field(default=None, description="the assistant message; None when the arm failed")
    answers: list[ModelAnswer] = Field(default_factory=list, description="in asking order; samples: alice#1, ...")
    vote: Agreement | None = Field(default=None, description="the majority vote (None for a single panelist)")
    tie: bool = False
    majority: str | None = Field(default=None, description="the majority position; None on a tie")
    chosen: str | None = Field(default=None, description="whose answer the reply is (None on a tie)")
    usage: UsageTotals = Field(default_factory=UsageTotals)
    wall_ms: int = 0


def debate_calls(panel: Panel) -> int:
    """The most panelist and synthesis calls a debate on this panel makes: every panelist in every round, then one
    synthesis (the analyst, asked only about open answers, and retries left out)."""
    return len(panel.panelists) * (panel.debate.max_rounds + 1) + 1


def sample_counts(panel: Panel) -> list[int]:
    """The sample counts /v1/models lists for each panelist: 3, 5, and a debate's calls (any k in range is served)."""
    return sorted({*ADVERTISED_SAMPLES, min(MAX_SAMPLES, max(MIN_SAMPLES, debate_calls(panel)))})


def arms_of(panel: Panel) -> list[Arm]:
    """Every arm the panel advertises: the debate, the vote, each panelist alone, each panelist sampled."""
    names = [s.name for s in panel.panelists]
    return [
        Arm("consensus"),
        Arm("vote"),
        *(Arm("single", n) for n in names),
        *(Arm("sample", n, k) for n in names for k in sample_counts(panel)),
    ]


def arm_ids(panel: Panel) -> list[str]:
    """The advertised ids, then the rule for any sample count."""
    return [a.id for a in arms_of(panel)] + [f"{PREFIX}sample-<name>-<k> for k from {MIN_SAMPLES} to {MAX_SAMPLES}"]


def parse_arm(model: str, panel: Panel, *, short: bool = False) -> Arm:
    """The arm a model id names on this panel, or UnknownArmError saying why and listing the valid ids.

    With `short`, as `consensus eval --arm` takes them, the `consensus-` prefix may be left out (`vote`,
    `single-alice`, `sample-alice-5`); the endpoint takes the model ids exactly as /v1/models lists them.
    """
    names = {s.name for s in panel.panelists}
    if model == MODEL_ID:
        return Arm("consensus")
    if model.startswith(PREFIX):
        body = model.removeprefix(PREFIX)
    elif short:
        body = model
    else:
        raise UnknownArmError(model, "does not exist", arm_ids(panel))
    if body == "vote":
        return Arm("vote")
    if body.startswith("single-") and body.removeprefix("single-") in names:
        return Arm("single", body.removeprefix("single-"))
    if body.startswith("sample-"):
        rest = body.removeprefix("sample-")
        name, _, count = rest.rpartition("-")
        if name in names:
            if not (count.isascii() and re.fullmatch(r"[1-9][0-9]*", count)):  # as listed: "05" and "٣" are not
                raise UnknownArmError(
                    model,
                    f"does not exist: {count!r} is not a sample count (k is written in ASCII digits, no leading 0)",
                    arm_ids(panel),
                )
            k = int(count)
            if not MIN_SAMPLES <= k <= MAX_SAMPLES:
                raise UnknownArmError(
                    model, f"does not exist: k = {k}, and k must be from {MIN_SAMPLES} to {MAX_SAMPLES}", arm_ids(panel)
                )
            return Arm("sample", name, k)
        if rest in names:
            raise UnknownArmError(
                model, f"does not exist: it needs a sample count: {PREFIX}sample-{rest}-<k>", arm_ids(panel)
            )
        if not name and (not rest or rest.startswith("-")):
            raise UnknownArmError(
                model, f"does not exist: it names no panelist: {PREFIX}sample-<name>-<k>", arm_ids(panel)
            )
        who = name or rest
        raise UnknownArmError(model, f"does not exist: no panelist {who!r} on this panel", arm_ids(panel))
    if body.startswith("single-"):
        who = body.removeprefix("single-")
        raise UnknownArmError(model, f"does not exist: no panelist {who!r} on this panel", arm_ids(panel))
    raise UnknownArmError(model, "does not exist", arm_ids(panel))


def parse_arms(values: Sequence[str], panel: Panel) -> list[Arm]:
    """The arms of repeated and comma-separated values (`--arm vote,single-alice --arm consensus`), each once, in
    order; UnknownArmError for the first that names none."""
    out: list[Arm] = []
    for value in values:
        for part in value.split(","):
            if part.strip():
                arm = parse_arm(part.strip(), panel, short=True)
                if arm not in out:
                    out.append(arm)
    return out


def reply_text(answer: ModelAnswer) -> str:
    """A panelist's answer as the reply a client reads: its text, then its final answer when it stated one apart."""
    text, final = answer.answer.strip(), (answer.final_answer or "").strip()
    if final and final != text:
        return f"{text}\n\nFinal answer: {final}" if text else final
    return text or final


def tie_reply(vote: Agreement, samples_of: str | None = None, missing: Sequence[str] = ()) -> str:
    """The reply when the largest positions tie: no majority, each tied position with who gave it, and the calls
    that gave no answer (`missing`: "carol (server)"), so a split of fewer answers is not read as the panel's."""
    absent = f" No answer from {', '.join(missing)}." if missing else ""
    return _split(vote, samples_of) + absent


def _split(vote: Agreement, samples_of: str | None) -> str:
    if not vote.clusters:
        return "No majority: no answer states a final answer that can be compared."
    top = max(len(c.panelists) for c in vote.clusters)
    tied = [c for c in vote.clusters if len(c.panelists) == top]
    n = sum(len(c.panelists) for c in vote.clusters)
    if samples_of:  # which sample said what is arrival order, not information: the positions alone, sorted
        listed = "; ".join(f'"{c.answer}"' for c in sorted(tied, key=lambda c: c.answer))
        return (
            f"No majority: {samples_of}'s {n} samples are split, {top} vote{'s' if top > 1 else ''} each for {listed}."
        )
    positions = "; ".join(f'"{c.answer}" ({", ".join(c.panelists)})' for c in tied)
    return f"No majority: the panel is split, {top} vote{'s' if top > 1 else ''} each for {positions}."


def _sampled(seat: Seat, i: int) -> Seat:
    """Sample i of a seat: temperature above 0, and a distinct seed when the seat has one."""
    temperature = seat.temperature if seat.temperature else SAMPLE_TEMPERATURE
    seed = None if seat.seed is None else seat.seed + i
    return seat.model_copy(update={"temperature": temperature, "seed": seed})


def _seats(arm: Arm, panel: Panel) -> list[tuple[str, Seat]]:
    """(label, seat) of every call the arm makes."""
    if arm.kind == "vote":
        return [(s.name, s) for s in panel.panelists]
    seat = panel.seat(str(arm.seat))
    if arm.kind == "single":
        return [(seat.name, seat)]
    return [(f"{seat.name}#{i + 1}", _sampled(seat, i)) for i in range(arm.k)]


async def _ask_all(
    calls: list[tuple[str, Seat]],
    question: str,
    language: str,
    panel: Panel,
    provider: Provider,
    thread: ThreadContext | None,
) -> list[ModelAnswer]:
    """Every call's opening answer, asked at once, within the panel's deadline (a call still running then is an
    answer with error kind `deadline`, counted as one attempt)."""
    marker = new_marker()

    async def one(label: str, seat: Seat) -> ModelAnswer:
        messages = threaded(opening_messages(seat, question, language, marker), seat, seat.name, thread, marker)
        answer = await ask_seat(provider, seat, 0, messages, seat.timeout_s or panel.debate.call_timeout_s)
        return answer.model_copy(update={"panelist": label})

    tasks = [asyncio.create_task(one(label, seat)) for label, seat in calls]
    try:
        done, pending = await asyncio.wait(tasks, timeout=panel.debate.deadline_s)
    except BaseException:  # cancelled (a client went away): no call may go on, or retry, on its own
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    limit = f"the deadline of {panel.debate.deadline_s:g} s ran out"
    # A call cut off was started: it counts as one attempt (it may have reached the provider, which may charge
    # for it), though its tokens, and any retries it made before the cut, are unknown.
    cut = AnswerError(kind="deadline", message=limit, attempts=1)
    return [
        t.result() if t in done else ModelAnswer(panelist=label, model=seat.model, round=0, error=cut, attempts=1)
        for t, (label, seat) in zip(tasks, calls, strict=True)
    ]


async def run_arm(
    arm: Arm,
    question: str,
    panel: Panel,
    provider: Provider,
    *,
    language: str | None = None,
    thread: ThreadContext | None = None,
) -> ArmResult:
    """Run a vote, single or sample arm for one question (QuestionError for a bad question or language; the
    debate itself, arm `consensus`, is engine.run_debate's)."""
    if arm.kind == "consensus":
        raise ValueError("the consensus arm is the debate: run engine.run_debate or engine.debate")
    q, code, _ = validate_request(question, panel, DebateOptions(language=language))
    if code is None and thread is not None and thread.language:
        code = follow_up_language(q, thread.language)  # as a follow-up debate keeps its thread's language
    lang = code or detect_language(q)
    t0 = time.monotonic()
    answers = await _ask_all(_seats(arm, panel), q, lang, panel, provider, thread)
    result = ArmResult(arm=arm.id, kind=arm.kind, question=q, language=lang, status=DebateStatus.completed)
    result.answers = answers
    result.usage = sum_spent([(a.usage, a.attempts, a.cost_usd if a.ok else 0.0) for a in answers])
    result.wall_ms = int((time.monotonic() - t0) * 1000)
    ok = [a for a in answers if a.ok]
    failed = sorted({f"{a.panelist} ({a.error.kind})" for a in answers if a.error})
    result.reason = f"failed: {', '.join(failed)}" if failed else None
    needed = 1 if arm.kind == "single" else 2
    if len(ok) < needed:
        errors = "; ".join(f"{a.panelist}: {a.error.kind}: {a.error.message}" for a in answers if a.error)
        result.status = DebateStatus.failed
        result.reason = (
            f"{arm.seat} did not answer ({errors})"
            if arm.kind == "single"
            else f"fewer than 2 {'samples' if arm.kind == 'sample' else 'panelists'} answered ({errors or 'no answers'})"
        )
        return result
    if failed:
        result.status = DebateStatus.degraded
    if arm.kind == "single":
        result.reply, result.chosen, result.majority = reply_text(ok[0]), ok[0].panelist, ok[0].final_answer
        return result
    # Read as the debate reads its rounds: a multiple-choice question's answers as the options they name.
    choices = question_choices(q)
    finals = [(a.panelist, a.read_text if choices else a.final_answer) for a in ok]
    vote = score_agreement(choice_positions(finals, choices))
    result.vote, result.tie = vote, vote.tie
    if vote.tie or not vote.majority_panelists:
        result.reply = tie_reply(vote, arm.seat if arm.kind == "sample" else None, failed)
        result.tie = True
        return result
    chosen = next(a for a in ok if a.panelist == vote.majority_panelists[0])
    result.reply, result.chosen, result.majority = reply_text(chosen), chosen.panelist, vote.majority
    return result
