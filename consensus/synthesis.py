"""The synthesis step: the synthesizer's call, checked by the faithfulness guard before anyone sees it.

    synthesize_consensus
      -> the synthesizer writes; the guard checks       source "synthesis"
      -> rejected: once more, told why                  source "synthesis_retry"
      -> rejected again: the next seat, once            source "fallback_seat"
      -> nobody passed: the verified majority's answer  source "majority_answer" (labelled as such)

A seat whose call fails (a provider error) hands over to the next seat as before; every call made counts in
`attempts`. The consensus keeps every check of the text it shows, and `fallback` is true whenever the text is
not the synthesizer's first, checked, writing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from consensus.claims import claim_map_prompt, normalize_quote
from consensus.errors import ProviderError, WritingStopped
from consensus.guard import (
    check_consensus,
    guard_passed,
    majority_answer_consensus_text,
    rejection_feedback,
    scaffolding_check,
)
from consensus.providers.base import Completion, DeltaSink, Provider
from consensus.rounds import label_for, parse_reply, seat_budget, shorten, synthesis_messages
from consensus.types import (
    Agreement,
    Analysis,
    Check,
    Consensus,
    ConsensusSource,
    Dissent,
    ModelAnswer,
    RejectedWriting,
    Seat,
    Usage,
)


def consensus_text(raw: str) -> str:
    """The consensus a synthesizer wrote: a reply in the panelists' JSON format is its answer (with its final answer
    when the answer does not state it); any other reply as written."""
    parsed = parse_reply(raw)
    if not parsed.structured:
        return raw.strip()
    text = parsed.answer
    if parsed.final_answer and normalize_quote(parsed.final_answer) not in normalize_quote(text):
        text += f"\n\n{parsed.final_answer}"
    return text


def agreement_summary(agreement: Agreement, labels: dict[str, str], seats: int) -> str:
    """The measured agreement as software text: numbers and labels only (every answer text stays in the fence)."""
    answered = sum(len(c.panelists) for c in agreement.clusters)
    lines = [f"- agreement score: {agreement.score:.2f} ({answered} of {seats} panelists answered)"]
    for n, c in enumerate(agreement.clusters, start=1):
        who = ", ".join(labels.get(p, p) for p in c.panelists)
        lines.append(f"- position {n}: {who}")
    if agreement.tie:
        lines.append("- the largest positions tie: there is no majority")
    return "\n".join(lines)


def positions_text(agreement: Agreement) -> str:
    """Each position's short final answer, for the fence (model text)."""
    return "\n".join(f"position {n}: {c.answer}" for n, c in enumerate(agreement.clusters, start=1))


def dissent_from(agreement: Agreement, latest: dict[str, ModelAnswer]) -> list[Dissent]:
    """Every cluster other than the majority, with an excerpt of its first member's answer; on a tie there is no
    majority, and every position is listed (the tie-break's too, or it would be reported nowhere)."""
    out = []
    for c in agreement.clusters:
        if c.panelists == agreement.majority_panelists and not agreement.tie:
            continue
        first = latest.get(c.panelists[0])
        out.append(
            Dissent(panelists=c.panelists, final_answer=c.answer, excerpt=shorten(first.answer, 300) if first else "")
        )
    return out


@dataclass(frozen=True)
class SynthesisInput:
    """What the synthesis step is given: the debate's question, its final answers and what was measured of them."""

    question: str
    finals: Sequence[tuple[int, ModelAnswer]]  # (seat index, the panelist's latest answer), in seat order
    agreement: Agreement  # the final round's (verified) agreement
    analysis: Analysis | None  # the final round's verified claim map, when its answers were open
    language: str
    marker: str
    seats: int  # panelists on the panel, answered or not
    panelists: Sequence[str] = ()  # every panelist's name, in seat order
    choices: Sequence[str] | None = None  # a multiple-choice question's options (agreement.question_choices)

    @property
    def latest(self) -> dict[str, ModelAnswer]:
        """Each answering panelist's latest answer, by name."""
        return {a.panelist: a for _, a in self.finals}

    @property
    def answers(self) -> dict[str, str]:
        """Each answering panelist's answer text, as the synthesizer was shown it."""
        return {a.panelist: a.answer for _, a in self.finals}

    @property
    def labels(self) -> dict[str, str]:
        """Each answering panelist's anonymous label, by name."""
        return {a.panelist: label_for(i) for i, a in self.finals}

    @property
    def closed(self) -> bool:
        """Closed-form answers (no claim map): the guard compares the stated answer with the majority."""
        return self.analysis is None

    def check(self, text: str) -> list[Check]:
        """Every check of the guard on a consensus `text` written from this input."""
        return check_consensus(
            text,
            marker=self.marker,
            agreement=self.agreement,
            answers=self.answers,
            labels={label: name for name, label in self.labels.items()},
            language=self.language,
            closed=self.closed,
            choices=self.choices,
            seats=self.seats,
        )


async def synthesize_consensus(
    provider: Provider,
    synthesizer: Seat,
    fallbacks: Sequence[Seat],
    given: SynthesisInput,
    timeout_s: float,
    on_delta: Callable[[Seat], DeltaSink | None],
) -> tuple[Consensus, list[tuple[Seat, ProviderError]]]:
    """Ask the synthesizer (then each fallback seat) for the consensus, check it, and report every failure."""
    labels = given.labels
    latest = given.latest
    failures: list[tuple[Seat, ProviderError]] = []
    rejected: list[RejectedWriting] = []
    attempts = 0
    usage = Usage()
    costs: list[float | None] = []
    by_label = {label: name for name, label in labels.items()}
    claim_map = claim_map_prompt(given.analysis, by_label, given.marker) if given.analysis else ""
    summary = agreement_summary(given.agreement, labels, given.seats)
    positions = positions_text(given.agreement)

    # The synthesizer writes, and writes once more when the guard rejects it; a fallback seat writes once.
    tries: list[tuple[Seat, ConsensusSource]] = [(synthesizer, "synthesis"), (synthesizer, "synthesis_retry")]
    tries += [(seat, "fallback_seat") for seat in fallbacks]
    feedback = ""
    seat_failed: set[str] = set()
    guard_fallback_used = False
    for seat, source in tries:
        if seat.name in seat_failed:
            continue
        if source == "fallback_seat" and rejected and guard_fallback_used:
            break  # one fallback seat after the synthesizer's two rejected writings, then the majority answer
        budget = seat_budget(seat)
        messages = synthesis_messages(
            given.question,
            given.finals,
            summary,
            positions,
            claim_map,
            feedback,
            given.language,
            given.marker,
            budget,
        )
        sink = on_delta(seat)
        watch = _Watch(given.marker, sink) if sink is not None or seat.route == "local" else None
        try:
            done: Completion = await provider.complete(seat, messages, timeout_s=timeout_s, on_delta=watch)
        except WritingStopped as stopped:  # scaffolding showed part-way: rejected now, not after the rest
            attempts += stopped.attempts
            costs.append(0.0 if zero_priced(seat) else None)  # the tokens of a stopped stream are not reported
            text, latency_ms = consensus_text(stopped.text), 0
            checks = given.check(text)
        except ProviderError as err:
            failures.append((seat, err))
            attempts += err.attempts
            seat_failed.add(seat.name)
            continue
        else:
            attempts += done.attempts
            usage = usage + done.usage
            costs.append(done.cost_usd)
            text, latency_ms = consensus_text(done.text), done.latency_ms
            checks = given.check(text)
        if guard_passed(checks):
            if source == "synthesis" and failures:
                source = "fallback_seat"  # the synthesizer's call failed: this is another seat's writing
            return _consensus(
                given,
                latest,
                text,
                seat.name,
                source,
                checks,
                failures,
                rejected,
                attempts,
                usage,
                costs,
                latency_ms,
            ), failures
        rejected.append(RejectedWriting(synthesizer=seat.name, failed=[c for c in checks if not c.passed]))
        feedback = rejection_feedback(checks, given.language)
        if source == "fallback_seat":
            guard_fallback_used = True
    # Nobody wrote a consensus that passed: the verified majority's answer, labelled as such.
    text = majority_text(given)
    return _consensus(
        given, latest, text, None, "majority_answer", given.check(text), failures, rejected, attempts, usage, costs, 0
    ), failures


class _Watch:
    """The caller's sink, with the guard's scaffolding check run on the writing as it streams in: a writing that
    echoes the prompt's scaffolding is stopped there (WritingStopped), as the guard would reject it whole. The
    check runs on every piece of the first 256 characters (an echo usually opens the writing), then each time 64
    more characters or a line end arrived."""

    def __init__(self, marker: str, sink: DeltaSink | None) -> None:
        self.marker, self.sink, self.text, self.checked = marker, sink, "", 0

    def __call__(self, text: str, restart: bool = False) -> None:
        if self.sink is not None:
            self.sink(text, restart=True) if restart else self.sink(text)
        self.text = text if restart else self.text + text
        if restart:
            self.checked = 0
        if len(self.text) <= 256 or len(self.text) - self.checked >= 64 or "\n" in text:
            self.checked = len(self.text)
            check = scaffolding_check(consensus_text(self.text), self.marker)
            if not check.passed:
                raise WritingStopped(self.text, check.detail)


def zero_priced(seat: Seat) -> bool:
    """Every token of this seat costs 0 by the panel's prices (the embedded model, or both prices 0)."""
    return seat.route == "local" or (seat.input_cost_per_token == 0 and seat.output_cost_per_token == 0)


def majority_text(given: SynthesisInput) -> str:
    """The verified majority's answer verbatim, labelled as the majority answer in the debate's language."""
    text = majority_answer_consensus_text(given.agreement, given.answers, given.language, closed=given.closed)
    return text or next((a.answer for _, a in given.finals if a.answer.strip()), "")


def majority_consensus(given: SynthesisInput, reason: str) -> Consensus:
    """A consensus of the verified majority's answer when no synthesis could run (the deadline ran out first)."""
    text = majority_text(given)
    return _consensus(
        given, given.latest, text, None, "majority_answer", given.check(text), [], [], 0, Usage(), [], 0, reason
    )


def _consensus(
    given: SynthesisInput,
    latest: dict[str, ModelAnswer],
    text: str,
    synthesizer: str | None,
    source: ConsensusSource,
    checks: list[Check],
    failures: list[tuple[Seat, ProviderError]],
    rejected: list[RejectedWriting],
    attempts: int,
    usage: Usage,
    costs: list[float | None],
    latency_ms: int,
    why_majority: str | None = None,
) -> Consensus:
    reasons = [f"{s.name} failed ({e.kind}: {e.message})" for s, e in failures]
    if rejected:
        reasons.append(
            "rejected by the checks: "
            + "; ".join(f"{w.synthesizer} ({', '.join(c.name for c in w.failed)})" for w in rejected)
        )
    if source == "majority_answer":
        why = why_majority or ("no synthesis passed the checks" if rejected else "every synthesizer call failed")
        reasons.insert(0, f"{why}; the verified majority's answer is shown")
    return Consensus(
        answer=text,
        agreement=given.agreement.score,
        majority=given.agreement.reported_majority,
        dissent=dissent_from(given.agreement, latest),
        synthesizer=synthesizer,
        fallback=source != "synthesis",
        fallback_reason="; ".join(reasons) or None,
        usage=usage,
        cost_usd=None if any(c is None for c in costs) else sum(c or 0.0 for c in costs),
        latency_ms=latency_ms,
        attempts=attempts,
        claims=list(given.analysis.claims) if given.analysis else [],
        checks=checks,
        source=source,
        rejected=rejected,
        answered=len(given.finals),
        seats=given.seats,
        missing=[n for n in given.panelists if n not in latest],
    )
