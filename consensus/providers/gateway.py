"""The only module that calls LiteLLM: retries, throttling, timeouts, streaming, cost.

Seats with transport = "openai-compatible" go through the lean client in openai_compat.py instead, under the
same retry loop, throttle and timeouts. LiteLLM is imported on first use (about 290 MiB and several seconds
of CPU), so a panel of such seats never loads it.
"""

from __future__ import annotations

import asyncio
import functools
import os
import re
import sys
import time
from collections.abc import Iterable
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from asyncio_throttle import Throttler  # type: ignore[attr-defined]  # noqa: E402
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, stop_after_delay  # noqa: E402

from consensus.errors import ProviderError, scrub  # noqa: E402
from consensus.policy import backoff_s, is_retryable, kind_for_status  # noqa: E402
from consensus.providers.base import Completion, DeltaSink, Message  # noqa: E402
from consensus.providers.openai_compat import OpenAICompatClient, estimated_usage, retry_after_s  # noqa: E402
from consensus.rounds import ANSWER_SCHEMA  # noqa: E402
from consensus.types import DebateSettings, Seat, Usage  # noqa: E402


def load_transports(seats: Iterable[Seat]) -> None:
    """Import now what these seats' calls will need: a server calls this before it serves, or its first debate
    imported LiteLLM (~8 s here) on the event loop, and every other request waited for it."""
    if any(s.transport == "litellm" for s in seats):
        _litellm()


@functools.cache
def _litellm() -> Any:
    """LiteLLM, imported and set up on first use."""
    import litellm

    litellm.suppress_debug_info = True
    litellm.drop_params = True
    # LiteLLM's per-chunk logging is work we never use; turning it off measured within noise (bench/overhead.py).
    litellm.disable_streaming_logging = True
    litellm.turn_off_message_logging = True
    litellm.telemetry = False
    return litellm


def _scrubbed(err: ProviderError, secrets: tuple[str, ...]) -> ProviderError:
    """The error without the seat's own key: redact() knows key-like names and shapes, the gateway knows
    the exact value it sent (a server may echo it back in its error, under any env var name)."""
    err.message = scrub(err.message, secrets)
    err.args = (str(err),)  # Exception.args kept the text from before the scrub: repr() and pickling show args
    return err


_UNREADABLE = re.compile(  # json.JSONDecodeError's messages, as LiteLLM passes them on
    r"Expecting (value|property name enclosed in double quotes|',' delimiter|':' delimiter)"
    r"|Unterminated string starting at|Extra data: line|Invalid control character at"
)


def classify(exc: BaseException, secrets: tuple[str, ...] = ()) -> ProviderError:
    """Map a LiteLLM (or asyncio) exception to our ProviderError with a kind; `secrets` never reach its text."""
    if isinstance(exc, ProviderError):
        return exc
    # Not imported yet: the exception cannot be one of LiteLLM's (a lean-client seat's, or a bug's).
    llm_errors: Any = sys.modules.get("litellm.exceptions")
    original = getattr(exc, "original_exception", None)
    if llm_errors and isinstance(exc, llm_errors.MidStreamFallbackError) and isinstance(original, Exception):
        return classify(original, secrets)  # LiteLLM wraps every error raised mid-stream in this 503 subclass
    status = getattr(exc, "status_code", None)
    msg = str(getattr(exc, "message", None) or exc) or type(exc).__name__
    kind = (_litellm_kind(exc, msg, llm_errors) if llm_errors else None) or _plain_kind(exc, status)
    if "local model unavailable" in msg.lower():
        kind = "unavailable"
    return ProviderError(kind, f"{type(exc).__name__}: {msg}", status_code=status, retry_after_s=_retry_after(exc),
                         secrets=secrets)  # fmt: skip


def _litellm_kind(exc: BaseException, msg: str, llm_errors: Any) -> str | None:
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
    if isinstance(exc, llm_errors.InternalServerError | llm_errors.ServiceUnavailableError | llm_errors.BadGatewayError):
        return "server"
    return None


def _plain_kind(exc: BaseException, status: Any) -> str:
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


class LiteLLMGateway:
    """A Provider backed by litellm.acompletion (or the lean client, per seat) with one tenacity retry loop."""

    def __init__(self, settings: DebateSettings | None = None) -> None:
        self.settings = settings or DebateSettings()
        self._limits: dict[tuple[str, str | None], tuple[asyncio.Semaphore, Throttler]] = {}
        self._lean = OpenAICompatClient()

    async def aclose(self) -> None:
        """Close the lean client's connections (LiteLLM keeps its own for the process)."""
        await self._lean.aclose()

    def _limit(self, seat: Seat) -> tuple[asyncio.Semaphore, Throttler]:
        key = (seat.provider, seat.api_base)
        if key not in self._limits:
            self._limits[key] = (
                asyncio.Semaphore(self.settings.provider_concurrency),
                Throttler(rate_limit=max(1, int(self.settings.provider_rate_per_s)), period=1.0),
            )
        return self._limits[key]

    async def complete(
        self,
        seat: Seat,
        messages: list[Message],
        *,
        timeout_s: float,
        json_output: bool = False,
        on_delta: DeltaSink | None = None,
    ) -> Completion:
        """One call with retries; raises ProviderError(kind) when it fails for good."""
        s = self.settings
        attempts = 0

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            ra = exc.retry_after_s if isinstance(exc, ProviderError) else None
            return backoff_s(state.attempt_number, ra, max_retry_after_s=s.max_retry_after_s)

        started = time.perf_counter()
        sink = _RestartingSink(on_delta) if on_delta is not None else None
        try:
            async for attempt in AsyncRetrying(
                # The budget counts from the end of a first call that used its whole timeout: counted from the
                # start, a timeout (60 s) past the budget (30 s) was never retried.
                stop=stop_after_attempt(s.max_attempts) | stop_after_delay(timeout_s + s.retry_budget_s),
                wait=wait,
                retry=retry_if_exception(lambda e: isinstance(e, ProviderError) and is_retryable(e.kind)),
                reraise=True,
            ):
                with attempt:
                    attempts += 1
                    if sink is not None:
                        sink.new_attempt()
                    result = await self._call_once(seat, messages, timeout_s, json_output, sink)
        except ProviderError as err:
            err.attempts = attempts
            raise
        result.attempts = attempts
        result.latency_ms = int((time.perf_counter() - started) * 1000)
        return result

    async def _call_once(
        self, seat: Seat, messages: list[Message], timeout_s: float, json_output: bool, on_delta: DeltaSink | None
    ) -> Completion:
        sem, throttler = self._limit(seat)
        kwargs = self._kwargs(seat, messages, timeout_s, json_output)
        secrets = (kwargs["api_key"],) if isinstance(kwargs.get("api_key"), str) else ()
        async with sem:
            async with throttler:
                pass
            try:
                async with asyncio.timeout(timeout_s):
                    if seat.transport == "openai-compatible":
                        text, usage = await self._lean.complete(seat, messages, kwargs["api_key"], json_output, on_delta)
                        return Completion(text=text, usage=usage, cost_usd=_cost(seat, usage, None))
                    if on_delta is None:
                        return await self._plain(seat, kwargs)
                    return await self._streamed(seat, kwargs, on_delta)
            except TimeoutError as exc:
                raise ProviderError("timeout", f"no complete answer within {timeout_s:g} s") from exc
            except ProviderError as err:
                raise _scrubbed(err, secrets) from err.__cause__
            except Exception as exc:  # noqa: BLE001 - every provider failure is classified, none dropped
                raise _scrubbed(classify(exc, secrets), secrets) from exc

    def _kwargs(self, seat: Seat, messages: list[Message], timeout_s: float, json_output: bool) -> dict[str, Any]:
        kw: dict[str, Any] = {
            "model": seat.model,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "timeout": timeout_s,
            "max_retries": 0,
        }
        if seat.api_base:
            kw["api_base"] = seat.api_base
        if seat.api_key_env:
            kw["api_key"] = os.environ.get(seat.api_key_env, "")
        elif seat.api_base:
            kw["api_key"] = "none"  # OpenAI-compatible servers without auth still want a key
        for name in ("temperature", "max_tokens", "seed"):
            value = getattr(seat, name)
            if value is not None:
                kw[name] = value
        if _priced(seat):
            # Same test as _cost: LiteLLM then prices from these two numbers instead of searching its model map
            # (a miss there also runs a zero-cost diagnostic); about 13 % less CPU per non-streamed call on
            # the loopback stub, paired-block median (bench/README.md). The gateway's own figure is _cost's.
            kw["input_cost_per_token"] = seat.input_cost_per_token or 0.0
            kw["output_cost_per_token"] = seat.output_cost_per_token or 0.0
        if json_output:
            kw["response_format"] = (
                {"type": "json_object", "schema": ANSWER_SCHEMA} if seat.provider == "local" else {"type": "json_object"}
            )
        return kw

    async def _plain(self, seat: Seat, kwargs: dict[str, Any]) -> Completion:
        resp: Any = await _litellm().acompletion(**kwargs)
        try:
            text = resp.choices[0].message.content or ""
            u = getattr(resp, "usage", None)
        except (AttributeError, IndexError) as exc:
            raise ProviderError("malformed", f"response without a message: {exc}") from exc
        usage = _usage(u)
        cost = (getattr(resp, "_hidden_params", None) or {}).get("response_cost")
        return Completion(text=text, usage=usage, cost_usd=_cost(seat, usage, cost))

    async def _streamed(self, seat: Seat, kwargs: dict[str, Any], on_delta: DeltaSink) -> Completion:
        stream: Any = await _litellm().acompletion(**kwargs, stream=True, stream_options={"include_usage": True})
        parts: list[str] = []
        usage = Usage()
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
        return Completion(text=text, usage=usage, cost_usd=_cost(seat, usage, None))


class _RestartingSink:
    """The caller's sink, told to start over when a retry follows an attempt whose text it already showed."""

    def __init__(self, sink: DeltaSink) -> None:
        self.sink, self.shown, self.restart = sink, False, False

    def new_attempt(self) -> None:
        self.restart = self.shown

    def __call__(self, text: str, restart: bool = False) -> None:
        self.sink(text, restart=True) if self.restart or restart else self.sink(text)
        self.shown, self.restart = True, False


def _usage(u: Any) -> Usage:
    if not u:
        return Usage()
    p = int(getattr(u, "prompt_tokens", 0) or 0)
    c = int(getattr(u, "completion_tokens", 0) or 0)
    return Usage(prompt_tokens=p, completion_tokens=c, total_tokens=int(getattr(u, "total_tokens", 0) or p + c))


def _priced(seat: Seat) -> bool:
    """The panel prices this seat (either price given, or the embedded local model at 0)."""
    return seat.input_cost_per_token is not None or seat.output_cost_per_token is not None or seat.provider == "local"


def _cost(seat: Seat, usage: Usage, reported: Any) -> float | None:
    """The one place a call's cost is decided: panel prices, else LiteLLM's price map, else unknown (None)."""
    if _priced(seat):
        return usage.prompt_tokens * (seat.input_cost_per_token or 0.0) + usage.completion_tokens * (
            seat.output_cost_per_token or 0.0
        )
    if isinstance(reported, int | float):
        return float(reported)
    if seat.transport != "litellm":  # the lean client prices only from the panel: no price map without LiteLLM
        return None
    try:
        p, c = _litellm().cost_per_token(
            model=seat.model, prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens
        )
        return float(p + c)
    except Exception:  # noqa: BLE001 - LiteLLM cannot price this model: cost unknown, not zero
        return None


def provider_unknown(model: str, api_base: str | None) -> bool:
    """True when LiteLLM cannot tell which provider serves `model` (every call would fail as a bad request)."""
    try:
        _litellm().get_llm_provider(model=model, api_base=api_base)
    except Exception:  # noqa: BLE001 - LiteLLM's BadRequestError "LLM Provider NOT provided"
        return True
    return False


def missing_key_env(model: str) -> list[str]:
    """Env vars LiteLLM expects for `model` that are unset (empty when none are needed)."""
    try:
        info: Any = _litellm().validate_environment(model=model)
    except Exception:  # noqa: BLE001 - unknown provider: nothing we can check up front
        return []
    return [str(k) for k in info.get("missing_keys", [])] if not info.get("keys_in_environment", True) else []
