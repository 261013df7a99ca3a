"""The LiteLLM transport: one `litellm.acompletion` attempt, its exceptions classified into our error kinds.

LiteLLM reaches every named provider (OpenAI, Anthropic, Gemini, ...). It is imported on first use only: its
import costs seconds of CPU and a few hundred MiB (bench/README.md), so a panel without a LiteLLM seat never
loads it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import re
import sys
from typing import Any

from consensus.errors import ErrorKind, ProviderError
from consensus.providers.base import Completion, DeltaSink, JsonSchema
from consensus.providers.openai_compat import estimated_usage, retry_after_s
from consensus.providers.retry import kind_for_status
from consensus.types import Message, Seat, Usage

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no price-map download at import


@functools.cache
def load() -> Any:
    """LiteLLM, imported and set up on first use."""
    import litellm

    litellm.suppress_debug_info = True
    litellm.drop_params = True
    # Per-chunk logging is work we never use.
    litellm.disable_streaming_logging = True
    litellm.turn_off_message_logging = True
    litellm.telemetry = False
    return litellm


class LiteLLMTransport:
    """A Transport over `litellm.acompletion` (with `max_retries=0`: the gateway's loop is the only retry)."""

    async def aclose(self) -> None:
        """LiteLLM keeps its own connections for the process: nothing to close."""

    async def call(
        self,
        seat: Seat,
        messages: list[Message],
        *,
        timeout_s: float,
        api_key: str | None,
        schema: JsonSchema | None,
        on_delta: DeltaSink | None,
    ) -> Completion:
        """One attempt; LiteLLM's exceptions become ProviderError(kind)."""
        kwargs = _kwargs(seat, messages, timeout_s, api_key, schema)
        try:
            if on_delta is None:
                return await _plain(seat, kwargs)
            return await _streamed(seat, kwargs, on_delta)
        except ProviderError:
            raise
        except TimeoutError:
            raise
        except Exception as exc:  # noqa: BLE001 - every provider failure is classified, none dropped
            secrets = (api_key,) if api_key else ()
            raise classify(exc, secrets) from exc


def _kwargs(
    seat: Seat, messages: list[Message], timeout_s: float, api_key: str | None, schema: JsonSchema | None
) -> dict[str, Any]:
    kw: dict[str, Any] = {
        "model": seat.model,
        "messages": [{"role": m.role, "content": m.content} for m in messages],
        "timeout": timeout_s,
        "max_retries": 0,
    }
    if seat.api_base:
        kw["api_base"] = seat.api_base
    if api_key is not None:
        kw["api_key"] = api_key
    for name in ("temperature", "max_tokens", "seed"):
        value = getattr(seat, name)
        if value is not None:
            kw[name] = value
    if seat.input_cost_per_token is not None or seat.output_cost_per_token is not None:
        # LiteLLM then prices from these two numbers instead of searching its model map (a miss there also runs
        # a zero-cost diagnostic): less CPU per call. The gateway's own figure comes from the same prices.
        kw["input_cost_per_token"] = seat.input_cost_per_token or 0.0
        kw["output_cost_per_token"] = seat.output_cost_per_token or 0.0
    if schema is not None:
        kw["response_format"] = {"type": "json_object"}
    return kw


async def _plain(seat: Seat, kwargs: dict[str, Any]) -> Completion:
    resp: Any = await load().acompletion(**kwargs)
    try:
        text = resp.choices[0].message.content or ""
        u = getattr(resp, "usage", None)
    except (AttributeError, IndexError) as exc:
        raise ProviderError("malformed", f"response without a message: {exc}") from exc
    usage = _usage(u)
    reported = (getattr(resp, "_hidden_params", None) or {}).get("response_cost")
    return Completion(text=text, usage=usage, cost_usd=price(seat, usage, reported))


async def _streamed(seat: Seat, kwargs: dict[str, Any], on_delta: DeltaSink) -> Completion:
    stream: Any = await load().acompletion(**kwargs, stream=True, stream_options={"include_usage": True})
    parts: list[str] = []
    usage = Usage()
    # Closed whenever the loop ends: a sink that stops the writing (synthesis._Watch) releases the connection now.
    async with contextlib.aclosing(stream):
        async for chunk in stream:
            if chunk.choices:
                piece = chunk.choices[0].delta.content
                if piece:
                    parts.append(piece)
                    on_delta(piece)
            u = getattr(chunk, "usage", None)
            if u:
                usage = _usage(u)
    text = "".join(parts)
    usage = estimated_usage(usage, text)
    return Completion(text=text, usage=usage, cost_usd=price(seat, usage, None))


def price(seat: Seat, usage: Usage, reported: Any) -> float | None:
    """What LiteLLM says a call cost: its reported cost, else its price map; None when it cannot price the model."""
    if isinstance(reported, int | float):
        return float(reported)
    try:
        p, c = load().cost_per_token(
            model=seat.model, prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens
        )
        return float(p + c)
    except Exception:  # noqa: BLE001 - LiteLLM cannot price this model: cost unknown, not zero
        return None


def _usage(u: Any) -> Usage:
    if not u:
        return Usage()
    p = int(getattr(u, "prompt_tokens", 0) or 0)
    c = int(getattr(u, "completion_tokens", 0) or 0)
    return Usage(prompt_tokens=p, completion_tokens=c, total_tokens=int(getattr(u, "total_tokens", 0) or p + c))


_UNREADABLE = re.compile(  # json.JSONDecodeError's messages, as LiteLLM passes them on
    r"Expecting (value|property name enclosed in double quotes|',' delimiter|':' delimiter)"
    r"|Unterminated string starting at|Extra data: line|Invalid control character at"
)


def classify(exc: BaseException, secrets: tuple[str, ...] = ()) -> ProviderError:
    """Map a LiteLLM (or asyncio) exception to our ProviderError with a kind; `secrets` never reach its text."""
    if isinstance(exc, ProviderError):
        return exc
    # Not imported yet: the exception cannot be one of LiteLLM's.
    llm_errors: Any = sys.modules.get("litellm.exceptions")
    original = getattr(exc, "original_exception", None)
    if llm_errors and isinstance(exc, llm_errors.MidStreamFallbackError) and isinstance(original, Exception):
        return classify(original, secrets)  # LiteLLM wraps every error raised mid-stream in this 503 subclass
    status = getattr(exc, "status_code", None)
    msg = str(getattr(exc, "message", None) or exc) or type(exc).__name__
    kind = (_litellm_kind(exc, msg, llm_errors) if llm_errors else None) or _plain_kind(exc, status)
    return ProviderError(
        kind, f"{type(exc).__name__}: {msg}", status_code=status, retry_after_s=_retry_after(exc), secrets=secrets
    )


def _litellm_kind(exc: BaseException, msg: str, llm_errors: Any) -> ErrorKind | None:
    """The kind one of LiteLLM's exception classes means; None for an exception it does not name."""
    if _UNREADABLE.search(msg) and isinstance(exc, llm_errors.InternalServerError | llm_errors.APIConnectionError):
        # A body that is not JSON: LiteLLM reports the decoder's words as a 500 (a connection error when
        # streamed). The server answered, with something that is not a completion: not retried.
        return "malformed"
    if isinstance(exc, asyncio.TimeoutError | llm_errors.Timeout):
        return "timeout"
    if isinstance(exc, llm_errors.RateLimitError):
        return "rate_limit"
    if isinstance(exc, llm_errors.ContextWindowExceededError):
        return "context_overflow"
    if isinstance(exc, llm_errors.AuthenticationError | llm_errors.PermissionDeniedError):
        return "auth"
    if isinstance(exc, llm_errors.NotFoundError):
        return "not_found"
    if isinstance(exc, llm_errors.BadRequestError | llm_errors.UnprocessableEntityError):
        return "context_overflow" if "context" in msg.lower() and "length" in msg.lower() else "bad_request"
    if isinstance(exc, llm_errors.MidStreamFallbackError):
        return "connection"
    if isinstance(exc, llm_errors.APIConnectionError) or "connection error" in msg.lower():
        return "connection"
    if isinstance(
        exc, llm_errors.InternalServerError | llm_errors.ServiceUnavailableError | llm_errors.BadGatewayError
    ):
        return "server"
    return None


def _plain_kind(exc: BaseException, status: Any) -> ErrorKind:
    """An exception LiteLLM's classes do not name: by its HTTP status, or a broken reply, or unknown."""
    if isinstance(exc, asyncio.TimeoutError):
        return "timeout"
    if isinstance(status, int):
        return kind_for_status(status)
    if isinstance(exc, ValueError | KeyError | TypeError | AttributeError):
        return "malformed"
    return "unknown"


def _retry_after(exc: BaseException) -> float | None:
    headers: Any = getattr(exc, "litellm_response_headers", None)
    if headers is None:
        response = getattr(exc, "response", None)
        headers = getattr(response, "headers", None)
    if not headers:
        return None
    return retry_after_s(headers.get("retry-after") or headers.get("Retry-After"))


def provider_unknown(model: str, api_base: str | None) -> bool:
    """True when LiteLLM cannot tell which provider serves `model` (every call would fail as a bad request)."""
    try:
        load().get_llm_provider(model=model, api_base=api_base)
    except Exception:  # noqa: BLE001 - LiteLLM's BadRequestError "LLM Provider NOT provided"
        return True
    return False


def missing_key_env(model: str) -> list[str]:
    """Env vars LiteLLM expects for `model` that are unset (empty when none are needed)."""
    try:
        info: Any = load().validate_environment(model=model)
    except Exception:  # noqa: BLE001 - unknown provider: nothing we can check up front
        return []
    return [str(k) for k in info.get("missing_keys", [])] if not info.get("keys_in_environment", True) else []
