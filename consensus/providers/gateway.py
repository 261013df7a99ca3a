"""The gateway: the call policy every seat goes through, whatever carries its calls.

    Gateway.complete        one tenacity loop: attempts, backoff, Retry-After, the retry budget
      -> _call_once         the seat's provider throttle and concurrency cap, the per-call timeout, redaction
        -> Transport.call   one attempt over LiteLLM, the lean OpenAI-compatible client, or the embedded model

Which transport carries a seat is `Seat.route`. Costs: the panel's prices when it gives them (the embedded
model is free), else what the transport reports, else unknown (None).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterable, Mapping

from asyncio_throttle import Throttler  # type: ignore[attr-defined]
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, stop_after_delay

from consensus.errors import ProviderError, scrub
from consensus.providers.base import Completion, DeltaSink, JsonSchema, Transport
from consensus.providers.retry import backoff_s, is_retryable
from consensus.types import DebateSettings, Message, Seat, Usage

Route = str  # Seat.route: "local" | "litellm" | "openai-compatible"


def default_transport(route: Route) -> Transport:
    """The transport of a route, made on the route's first call: a panel pays only for the libraries it uses."""
    if route == "local":
        from consensus.providers.local import LocalTransport

        return LocalTransport()
    if route == "openai-compatible":
        from consensus.providers.openai_compat import OpenAICompatClient

        return OpenAICompatClient()
    from consensus.providers.litellm import LiteLLMTransport

    return LiteLLMTransport()


def load_transports(seats: Iterable[Seat]) -> None:
    """Import now what these seats' calls will need: a server calls this before it serves, or its first debate
    would import LiteLLM (seconds) on the event loop while every other request waited."""
    if any(s.route == "litellm" for s in seats):
        from consensus.providers.litellm import load

        load()


class Gateway:
    """A Provider: the retry, throttle, timeout and redaction policy over one transport per route."""

    def __init__(self, settings: DebateSettings | None = None, transports: Mapping[Route, Transport] | None = None):
        self.settings = settings or DebateSettings()
        self.transports: dict[Route, Transport] = dict(transports or {})
        self._limits: dict[tuple[str, str | None], tuple[asyncio.Semaphore, Throttler]] = {}

    async def aclose(self) -> None:
        """Close the transports' connections."""
        for transport in self.transports.values():
            await transport.aclose()

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
        schema: JsonSchema | None = None,
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
                # start, a timeout longer than the budget would never be retried.
                stop=stop_after_attempt(s.max_attempts) | stop_after_delay(timeout_s + s.retry_budget_s),
                wait=wait,
                retry=retry_if_exception(lambda e: isinstance(e, ProviderError) and is_retryable(e.kind)),
                reraise=True,
            ):
                with attempt:
                    attempts += 1
                    if sink is not None:
                        sink.new_attempt()
                    result = await self._call_once(seat, messages, timeout_s, schema, sink)
        except ProviderError as err:
            err.attempts = attempts
            raise
        result.attempts = attempts
        result.latency_ms = int((time.perf_counter() - started) * 1000)
        return result

    async def _call_once(
        self,
        seat: Seat,
        messages: list[Message],
        timeout_s: float,
        schema: JsonSchema | None,
        on_delta: DeltaSink | None,
    ) -> Completion:
        sem, throttler = self._limit(seat)
        api_key = seat_key(seat)
        secrets = (api_key,) if api_key else ()
        transport = self.transports.get(seat.route)
        if transport is None:
            transport = self.transports[seat.route] = default_transport(seat.route)
        async with sem:
            async with throttler:
                pass
            try:
                async with asyncio.timeout(timeout_s):
                    done = await transport.call(
                        seat, messages, timeout_s=timeout_s, api_key=api_key, schema=schema, on_delta=on_delta
                    )
            except TimeoutError as exc:
                raise ProviderError("timeout", f"no complete answer within {timeout_s:g} s") from exc
            except ProviderError as err:
                raise _scrubbed(err, secrets) from err.__cause__
            except Exception as exc:  # noqa: BLE001 - a transport's bug: classified, never dropped
                raise ProviderError("unknown", f"{type(exc).__name__}: {exc}", secrets=secrets) from exc
        if priced(seat):
            done.cost_usd = panel_cost(seat, done.usage)
        return done


def seat_key(seat: Seat) -> str | None:
    """The key a seat's calls send: its env var's value; "none" for a keyless OpenAI-compatible server."""
    if seat.api_key_env:
        return os.environ.get(seat.api_key_env, "")
    if seat.api_base:
        return "none"  # OpenAI-compatible servers without auth still want a key
    return None


def _scrubbed(err: ProviderError, secrets: tuple[str, ...]) -> ProviderError:
    """The error without the seat's own key: redact() knows key-like names and shapes, the gateway knows
    the exact value it sent (a server may echo it back in its error, under any env var name)."""
    err.message = scrub(err.message, secrets)
    err.args = (str(err),)  # Exception.args kept the text from before the scrub: repr() and pickling show args
    return err


class _RestartingSink:
    """The caller's sink, told to start over when a retry follows an attempt whose text it already showed."""

    def __init__(self, sink: DeltaSink) -> None:
        self.sink, self.shown, self.restart = sink, False, False

    def new_attempt(self) -> None:
        self.restart = self.shown

    def __call__(self, text: str, restart: bool = False) -> None:
        self.sink(text, restart=True) if self.restart or restart else self.sink(text)
        self.shown, self.restart = True, False


def priced(seat: Seat) -> bool:
    """The panel prices this seat (either price given, or the embedded local model at 0)."""
    return seat.input_cost_per_token is not None or seat.output_cost_per_token is not None or seat.route == "local"


def panel_cost(seat: Seat, usage: Usage) -> float:
    """A call's cost from the panel's own prices."""
    return usage.prompt_tokens * (seat.input_cost_per_token or 0.0) + usage.completion_tokens * (
        seat.output_cost_per_token or 0.0
    )
