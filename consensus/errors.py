"""The error tree of the engine.

    ConsensusError
    ├── ConfigError            bad panel file / settings (carries source and field)
    │   └── MissingKeyError    a provider's key env var is unset
    ├── QuestionError          empty or over-long question, bad language code
    ├── UnknownArmError        a model id (or --arm) that names no comparison arm of the panel (lists the valid)
    ├── LocalModelUnavailable  the embedded model (or llama-cpp-python) is missing or broken
    └── ProviderError          one LLM call failed after retries (carries `kind`)

`ProviderError.kind` is an ErrorKind, checked by mypy and at run time; providers.retry.is_retryable() decides on
it alone.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from typing import Literal, get_args

ErrorKind = Literal[
    "timeout",  # per-call timeout, 408, 504
    "rate_limit",  # 429
    "server",  # 5xx
    "connection",  # refused / reset / DNS
    "auth",  # 401 / 403
    "bad_request",  # 400, 422
    "not_found",  # 404, unknown model
    "context_overflow",  # prompt too long for the model
    "malformed",  # response that is not a valid completion
    "unavailable",  # local model missing / failed to load
    "deadline",  # the whole-debate deadline ran out
    "cancelled",
    "unknown",  # an exception no rule classifies (a bug, or a provider's novelty): never retried
]
ERROR_KINDS: tuple[ErrorKind, ...] = get_args(ErrorKind)


class ConsensusError(Exception):
    """Base of every error the engine raises on purpose."""


class ConfigError(ConsensusError):
    """A panel file or setting is invalid; `source` and `field` say where."""

    def __init__(self, source: str, field: str | None, message: str) -> None:
        self.source = source
        self.field = field
        self.message = message
        where = f"{source}: {field}: " if field else f"{source}: "
        super().__init__(where + message)


class MissingKeyError(ConfigError):
    """A configured provider needs an API key whose environment variable is unset."""


class QuestionError(ConsensusError):
    """The question (or its language) cannot be debated; `field` names the input."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


class UnknownArmError(ConsensusError):
    """A model id names no comparison arm of this panel; `valid` lists the ids that do (consensus/arms.py)."""

    def __init__(self, model: str, reason: str, valid: Sequence[str]) -> None:
        self.model = model
        self.reason = reason
        self.valid = list(valid)
        super().__init__(f"model {model!r} {reason}; valid: {', '.join(self.valid)}")


class LocalModelUnavailable(ConsensusError):
    """The embedded local model cannot run; the message says what to install."""


class ProviderError(ConsensusError):
    """An LLM call failed for good; `kind` classifies it, the message is redacted."""

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        *,
        status_code: int | None = None,
        retry_after_s: float | None = None,
        attempts: int = 1,
        secrets: Sequence[str] = (),
    ) -> None:
        if kind not in ERROR_KINDS:
            raise ValueError(f"unknown error kind {kind!r}; one of {', '.join(ERROR_KINDS)}")
        self.kind: ErrorKind = kind
        self.message = redact(scrub(message, secrets))  # the exact values first: redact() shortens the text
        self.status_code = status_code
        self.retry_after_s = retry_after_s
        self.attempts = attempts
        super().__init__(f"{self.kind}: {self.message}")

    def __str__(self) -> str:  # from the fields: a message redacted further later shows as redacted
        return f"{self.kind}: {self.message}"


_KEY_PATTERNS = [
    re.compile(r"\b(sk|pk|rk|ck)[-_][A-Za-z0-9_\-]{8,}"),
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._\-]{8,}"),
    re.compile(r"(?i)((?:api[_-]?key|token|secret|password)[\"']?\s*[:=]\s*[\"']?)[^\s\"',}]{4,}"),
    re.compile(r"\bAIza[0-9A-Za-z_\-]{20,}"),
    re.compile(r"(?i)(\b[a-z][a-z0-9+.\-]*://)[^\s/:@'\"]+:[^\s/@'\"]+@"),  # user:password@ in a URL (a proxy's)
]


def scrub(text: str, secrets: Sequence[str]) -> str:
    """`text` without these exact values (the keys a call sent: a server may echo them under any name)."""
    for secret in secrets:
        if len(secret) >= 4 and secret != "none":  # "none": what keyless OpenAI-compatible servers are sent
            text = text.replace(secret, "[REDACTED]")
    return text


def redact(text: str) -> str:
    """Remove anything that looks like a credential, and the values of key env vars."""
    out = text
    for name, value in os.environ.items():
        if value and len(value) >= 8 and any(t in name.upper() for t in ("KEY", "TOKEN", "SECRET")):
            out = out.replace(value, "[REDACTED]")
    for pat in _KEY_PATTERNS:
        out = pat.sub(_keep_prefix, out)
    return out[:2000]


def _keep_prefix(m: re.Match[str]) -> str:
    # Patterns with a label group keep the label ("api_key=") and drop the value.
    if m.re.groups and m.group(1) and not re.fullmatch(r"sk|pk|rk|ck", m.group(1)):
        return m.group(1) + ("[REDACTED]@" if m.group(0).endswith("@") else "[REDACTED]")
    return "[REDACTED]"


class WritingStopped(ProviderError):
    """A streamed writing its caller stopped part-way, because what had arrived can only be rejected (the guard's
    scaffolding check failed on it); `text` is what had arrived. Kind "cancelled": never retried."""

    def __init__(self, text: str, reason: str) -> None:
        super().__init__("cancelled", reason)
        self.text = text
