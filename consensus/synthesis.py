"""The synthesizer call, its fallback to another panelist, and the dissent report."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from consensus.errors import ProviderError
from consensus.providers.base import DeltaSink, Provider
from consensus.rounds import label_for, shorten, synthesis_messages
from consensus.types import Agreement, Consensus, Dissent, ModelAnswer, Seat


def agreement_summary(agreement: Agreement, labels: dict[str, str]) -> str:
    """A short, model-readable description of the measured agreement (labels, not names)."""
    lines = [f"- agreement score: {agreement.score:.2f} ({agreement.kind} answers)"]
    for c in agreement.clusters:
        who = ", ".join(labels.get(p, p) for p in c.panelists)
        lines.append(f"- position {c.answer!r}: {who}")
    return "\n".join(lines)


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


async def synthesize_consensus(
    provider: Provider,
    synthesizer: Seat,
    fallbacks: Sequence[Seat],
    question: str,
    finals: Sequence[tuple[int, ModelAnswer]],
    agreement: Agreement,
    language: str,
    marker: str,
    timeout_s: float,
    on_delta: Callable[[Seat], DeltaSink | None],
) -> tuple[Consensus, list[tuple[Seat, ProviderError]]]:
    """Ask the synthesizer (then each fallback seat) for the consensus; report every failure."""
    labels = {a.panelist: label_for(i) for i, a in finals}
    latest = {a.panelist: a for _, a in finals}
    dissent = dissent_from(agreement, latest)
    failures: list[tuple[Seat, ProviderError]] = []
    for seat in [synthesizer, *fallbacks]:
        budget = seat.context_window - (seat.max_tokens or 256) if seat.context_window else None
        messages = synthesis_messages(question, finals, agreement_summary(agreement, labels), language, marker, budget)
        try:
            done = await provider.complete(seat, messages, timeout_s=timeout_s, on_delta=on_delta(seat))
        except ProviderError as err:
            failures.append((seat, err))
            continue
        if not done.text.strip():
            failures.append((seat, ProviderError("malformed", "empty synthesis", attempts=done.attempts)))
            continue
        reason = None
        if failures:
            reason = "; ".join(f"{s.name} failed ({e.kind}: {e.message})" for s, e in failures)
        consensus = Consensus(
            answer=done.text.strip(),
            agreement=agreement.score,
            majority=agreement.reported_majority,
            dissent=dissent,
            synthesizer=seat.name,
            fallback=bool(failures),
            fallback_reason=reason,
            usage=done.usage,
            cost_usd=done.cost_usd,
            latency_ms=done.latency_ms,
            attempts=done.attempts + sum(e.attempts for _, e in failures),
        )
        return consensus, failures
    # Nobody could synthesize: report the measured majority, and say so.
    majority_answer = next((latest[p].answer for p in agreement.majority_panelists if p in latest), "")
    reason = "; ".join(f"{s.name} failed ({e.kind}: {e.message})" for s, e in failures)
    return (
        Consensus(
            answer=majority_answer,
            agreement=agreement.score,
            majority=agreement.reported_majority,
            dissent=dissent,
            synthesizer=None,
            fallback=True,
            fallback_reason=f"no synthesis; majority answer shown. {reason}",
            attempts=sum(e.attempts for _, e in failures),
        ),
        failures,
    )
