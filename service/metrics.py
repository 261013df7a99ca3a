"""Prometheus metrics: debates by status, LLM calls by model and outcome, latency, tokens, cost."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from consensus.types import DebateResult

DEBATES = Counter("consensus_debates_total", "Debates finished, by status", ["status"])
DEBATES_RESUMED = Counter("consensus_debates_resumed_total", "Debates resumed after a restart or crash")
IN_FLIGHT = Gauge("consensus_debates_in_flight", "Debates running in this process")
REJECTED = Counter("consensus_requests_rejected_total", "Requests refused, by reason", ["reason"])
LLM_CALLS = Counter("consensus_llm_calls_total", "LLM answers (after retries), by model and final outcome", ["model", "outcome"])
LLM_RETRIES = Counter("consensus_llm_retries_total", "Extra attempts LLM calls took (retries), by model", ["model"])
LLM_LATENCY = Histogram(
    "consensus_llm_latency_seconds", "LLM call latency (with retries), by model", ["model"],
    buckets=(0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 128),
)  # fmt: skip
DEBATE_LATENCY = Histogram(
    "consensus_debate_seconds", "Debate wall time", buckets=(0.5, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
)
TOKENS = Counter("consensus_tokens_total", "Tokens used, by model and kind", ["model", "kind"])
COST = Counter("consensus_cost_usd_total", "Cost in USD of priced calls, by model", ["model"])


def observe_result(r: DebateResult) -> None:
    """Count a finished debate and every call in it."""
    DEBATES.labels(status=r.status.value).inc()
    if r.timing.wall_ms is not None:
        DEBATE_LATENCY.observe(r.timing.wall_ms / 1000)
    for rnd in r.rounds:
        for a in rnd.answers:
            LLM_CALLS.labels(model=a.model, outcome=a.error.kind if a.error else "ok").inc()
            if a.attempts > 1:
                LLM_RETRIES.labels(model=a.model).inc(a.attempts - 1)
            if a.ok:
                LLM_LATENCY.labels(model=a.model).observe(a.latency_ms / 1000)
                TOKENS.labels(model=a.model, kind="prompt").inc(a.usage.prompt_tokens)
                TOKENS.labels(model=a.model, kind="completion").inc(a.usage.completion_tokens)
                if a.cost_usd:
                    COST.labels(model=a.model).inc(a.cost_usd)
    c = r.consensus
    if c is not None and c.synthesizer:
        model = next((p.model for p in r.panel if p.name == c.synthesizer), r.synthesizer.model if r.synthesizer else "?")
        LLM_CALLS.labels(model=model, outcome="ok").inc()
        LLM_LATENCY.labels(model=model).observe(c.latency_ms / 1000)
        TOKENS.labels(model=model, kind="prompt").inc(c.usage.prompt_tokens)
        TOKENS.labels(model=model, kind="completion").inc(c.usage.completion_tokens)
        if c.cost_usd:
            COST.labels(model=model).inc(c.cost_usd)
