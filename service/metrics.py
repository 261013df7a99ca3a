"""Prometheus metrics: debates by status, LLM calls by model and outcome, latency, tokens, cost."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from consensus.types import (
    AnalysisCompleted,
    AnswerCompleted,
    ConsensusCompleted,
    DebateCompleted,
    DebateEvent,
    DebateFailed,
    DebateResult,
    Usage,
)

DEBATES = Counter("consensus_debates_total", "Debates finished, by status", ["status"])
DEBATES_RESUMED = Counter("consensus_debates_resumed_total", "Debates resumed after a restart or crash")
IN_FLIGHT = Gauge("consensus_debates_in_flight", "Debates running in this process")
REJECTED = Counter("consensus_requests_rejected_total", "Requests refused, by reason", ["reason"])
AUTH_FAILURES = Counter("consensus_auth_failures_total", "Failed authentications (401), by error code", ["reason"])
LLM_CALLS = Counter(
    "consensus_llm_calls_total", "LLM answers (after retries), by model and final outcome", ["model", "outcome"]
)
LLM_RETRIES = Counter("consensus_llm_retries_total", "Extra attempts LLM calls took (retries), by model", ["model"])
LLM_LATENCY = Histogram(
    "consensus_llm_latency_seconds",
    "LLM call latency (with retries), by model",
    ["model"],
    buckets=(0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 128),
)
DEBATE_LATENCY = Histogram(
    "consensus_debate_seconds", "Debate wall time", buckets=(0.5, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
)
TOKENS = Counter("consensus_tokens_total", "Tokens used, by model and kind", ["model", "kind"])
COST = Counter("consensus_cost_usd_total", "Cost in USD of priced calls, by model", ["model"])


def observe_event(event: DebateEvent, debate: DebateResult) -> None:
    """Count what an event reports as it happens: an answer's call, a synthesis call, a debate's end.

    Counted live, not when the debate ends: a scrape during a long debate sees its calls, and a debate that
    a crash cut short still counts the calls it made (a resumed debate does not count them again). `debate` is
    the debate so far: its panel names the synthesizer's model.
    """
    if isinstance(event, AnswerCompleted):
        a = event.answer
        observe_call(a.model, a.error.kind if a.error else "ok", a.attempts, a.latency_ms, a.usage, a.cost_usd)
    elif isinstance(event, AnalysisCompleted) and event.analysis.analyst:
        an = event.analysis
        seats = [*debate.panel, *([debate.synthesizer] if debate.synthesizer else [])]
        model = next((s.model for s in seats if s.name == an.analyst), "analyst")
        observe_call(
            model,
            "ok" if an.reason is None or an.attempts else "failed",
            an.attempts,
            an.latency_ms,
            an.usage,
            an.cost_usd,
        )
    elif isinstance(event, ConsensusCompleted) and event.consensus.synthesizer:
        c = event.consensus
        seats = [*debate.panel, *([debate.synthesizer] if debate.synthesizer else [])]
        model = next((seat.model for seat in seats if seat.name == c.synthesizer), "?")
        observe_call(model, "ok", 1, c.latency_ms, c.usage, c.cost_usd)
    if isinstance(event, DebateCompleted | DebateFailed):
        DEBATES.labels(status=event.result.status.value).inc()
        if event.result.timing.wall_ms is not None:
            DEBATE_LATENCY.observe(event.result.timing.wall_ms / 1000)


def observe_call(
    model: str, outcome: str, attempts: int, latency_ms: int, usage: Usage, cost_usd: float | None
) -> None:
    LLM_CALLS.labels(model=model, outcome=outcome).inc()
    if attempts > 1:
        LLM_RETRIES.labels(model=model).inc(attempts - 1)
    if outcome == "ok":
        LLM_LATENCY.labels(model=model).observe(latency_ms / 1000)
        TOKENS.labels(model=model, kind="prompt").inc(usage.prompt_tokens)
        TOKENS.labels(model=model, kind="completion").inc(usage.completion_tokens)
        if cost_usd:
            COST.labels(model=model).inc(cost_usd)
