"""Pure retry decisions: which failures to retry and how long to wait."""

from __future__ import annotations

import random
import re

from consensus.errors import ErrorKind

RETRYABLE_KINDS: frozenset[ErrorKind] = frozenset({"timeout", "rate_limit", "server", "connection"})


_CONTEXT = re.compile(
    r"context[ _-]?(length|size|window)|exceed_context|maximum context|too many tokens|prompt is too long"
)


def overflows_context(words: str) -> bool:
    """The server's words (lower-cased) say the prompt did not fit the model's context."""
    return _CONTEXT.search(words) is not None


def kind_for_status(status: int, words: str = "") -> ErrorKind:
    """The error kind an HTTP status means for the retry policy; `words` (lower-cased) tell a 4xx context overflow."""
    if status == 429:
        return "rate_limit"
    if status in (408, 504):
        return "timeout"
    if status in (401, 403, 407):
        return "auth"
    if status == 404:
        return "not_found"
    if status >= 500:
        return "server"
    return "context_overflow" if overflows_context(words) else "bad_request"


def is_retryable(kind: ErrorKind) -> bool:
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
