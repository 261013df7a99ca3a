"""Pure retry decisions: which failures to retry and how long to wait."""

from __future__ import annotations

import random

RETRYABLE_KINDS = frozenset({"timeout", "rate_limit", "server", "connection"})


def is_retryable(kind: str) -> bool:
    """Retry timeouts, 429, 5xx and connection errors; never 4xx, auth or context overflow."""
    return kind in RETRYABLE_KINDS


def backoff_s(
    attempt: int,
    retry_after_s: float | None,
    *,
    base_s: float = 0.5,
    cap_s: float = 8.0,
    max_retry_after_s: float = 20.0,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait before retry number `attempt` (1-based).

    A server's Retry-After is honoured up to `max_retry_after_s`; otherwise full-jitter
    exponential backoff, capped.
    """
    if retry_after_s is not None and retry_after_s >= 0:
        return min(retry_after_s, max_retry_after_s)
    r = rng or random
    return r.uniform(0, min(cap_s, base_s * (2 ** (attempt - 1))))
