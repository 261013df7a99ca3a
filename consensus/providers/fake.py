"""Fakes on the provider seam, and the fault vocabulary they share with the loopback stub.

`ScriptedProvider` plays a script of `Step`s per seat; `FunctionProvider` asks a function (in the manner of
pydantic-ai's FunctionModel). The stub (service/testing/stub_server.py) is scripted with the same `Step`s over
HTTP, and `FAULTS` is the one table of what each fault does on either side: the fakes raise the ProviderError
the gateway raises for that fault on the stub, so a test says the same thing to both.
"""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal, NamedTuple, TypeAlias

from pydantic import BaseModel, ConfigDict, Field

from consensus.errors import ErrorKind, ProviderError
from consensus.providers.base import Completion, DeltaSink, JsonSchema
from consensus.types import Message, Seat, Usage

CHUNK_CHARS = 8  # the size of the pieces a streamed reply comes in, unless its Step says otherwise
Fault = Literal["400", "401", "404", "429", "500", "502", "503", "hang", "malformed", "cut"]


class FaultSpec(NamedTuple):
    """What a fault is: what the stub sends, and the error kind the gateway (and so the fakes) raises for it."""

    status: int | None  # the stub's HTTP status; None: the fault is in the body or the timing
    kind: ErrorKind
    stub_sends: str


# The fault vocabulary. A fault's `delay_s` runs first. The fakes raise at once (no retries: they stand for the
# gateway once its retries are spent), except "hang", which waits out the call's timeout as the gateway does.
FAULTS: dict[Fault, FaultSpec] = {
    "400": FaultSpec(400, "bad_request", "HTTP 400, an OpenAI error body (invalid_request_error)"),
    "401": FaultSpec(401, "auth", "HTTP 401 (authentication_error); with echo_auth the message quotes the key"),
    "404": FaultSpec(404, "not_found", "HTTP 404 (not_found_error)"),
    "429": FaultSpec(429, "rate_limit", "HTTP 429 with Retry-After: retry_after seconds (1 when unset)"),
    "500": FaultSpec(500, "server", "HTTP 500 (server_error)"),
    "502": FaultSpec(502, "server", "HTTP 502 (server_error)"),
    "503": FaultSpec(503, "server", "HTTP 503 (server_error)"),
    "hang": FaultSpec(None, "timeout", "nothing: the request waits until the client goes away"),
    "malformed": FaultSpec(None, "malformed", "a 200 whose body is no completion; streamed, a line of garbage"),
    "cut": FaultSpec(None, "connection", "streamed: half the text, then the connection ends; else as malformed"),
}


def answer_json(final: str, text: str | None = None, confidence: float = 0.8) -> str:
    """A panelist's JSON answer, as the answer schema asks for it: `text` defaults to "I conclude <final>."."""
    return json.dumps({"answer": text or f"I conclude {final}.", "final_answer": final, "confidence": confidence})


class Step(BaseModel):
    """One scripted reply, for the fakes and the stub alike: text or a JSON answer, optionally delayed, or a fault."""

    model_config = ConfigDict(extra="forbid")

    text: str | None = None
    final: str | None = None  # set: the reply is answer_json(final, text, confidence)
    confidence: float = 0.8
    delay_s: float = Field(default=0.0, ge=0)
    fault: Fault | None = None  # one of FAULTS
    retry_after: float | None = None  # a "429"'s Retry-After, in seconds
    chunk_chars: int = Field(default=CHUNK_CHARS, ge=1)  # the size of the pieces a streamed reply comes in
    chunk_delay_s: float = Field(default=0.0, ge=0, le=10)  # the stub only: the pause between those pieces, as tokens
    echo_auth: bool = False  # the stub only: a fault's message quotes the bearer token it got (servers that leak keys)

    def render(self) -> str:
        """The reply's text."""
        if self.final is not None:
            return answer_json(self.final, self.text, self.confidence)
        return self.text or ""


class Call(NamedTuple):
    """One call a fake received: the seat's name and the messages it was sent."""

    name: str
    messages: list[Message]


Reply: TypeAlias = str | Step | Completion
ReplyFunction: TypeAlias = Callable[[Seat, list[Message]], Reply | Awaitable[Reply]]


@dataclass(kw_only=True)
class _Recorder:
    """What both fakes keep: every call, and how many were in flight at once."""

    calls: list[Call] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0

    def calls_for(self, name: str) -> list[list[Message]]:
        """The messages of every call made for seat `name`."""
        return [c.messages for c in self.calls if c.name == name]

    def _started(self, seat: Seat, messages: list[Message]) -> None:
        self.calls.append(Call(seat.name, list(messages)))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)


async def play(step: Step, messages: list[Message], timeout_s: float, on_delta: DeltaSink | None) -> Completion:
    """Play one step as a provider call: wait its delay within `timeout_s`, then raise its fault or answer."""
    if step.delay_s or step.fault == "hang":
        try:
            async with asyncio.timeout(timeout_s):
                await asyncio.sleep(step.delay_s)
                if step.fault == "hang":
                    await asyncio.Event().wait()
        except TimeoutError:
            raise ProviderError("timeout", f"no answer within {timeout_s:g} s") from None
    text = step.render()
    if step.fault == "cut" and on_delta is not None:
        stream(text[: max(1, len(text) // 2)], step.chunk_chars, on_delta)
    if step.fault is not None:
        spec = FAULTS[step.fault]
        kind: ErrorKind = "malformed" if step.fault == "cut" and on_delta is None else spec.kind
        retry_after = step.retry_after if step.fault == "429" else None
        raise ProviderError(kind, f"scripted fault {step.fault}", status_code=spec.status, retry_after_s=retry_after)
    if on_delta is not None:
        stream(text, step.chunk_chars, on_delta)
    return Completion(text=text, usage=usage_of(text, messages), cost_usd=0.0)


def stream(text: str, size: int, on_delta: DeltaSink) -> None:
    """Hand `text` to `on_delta` in pieces of `size` characters."""
    for i in range(0, len(text), size):
        on_delta(text[i : i + size])


def usage_of(text: str, messages: list[Message]) -> Usage:
    """Tokens as the stub counts them: characters // 4 (a reply at least 1)."""
    prompt, tokens = sum(len(m.content) for m in messages) // 4, max(1, len(text) // 4)
    return Usage(prompt_tokens=prompt, completion_tokens=tokens, total_tokens=prompt + tokens)


@dataclass(kw_only=True)
class ScriptedProvider(_Recorder):
    """Replies per seat name from a script of Steps; the last step repeats. Records every call."""

    script: dict[str, list[Step]] = field(default_factory=dict)

    async def complete(
        self,
        seat: Seat,
        messages: list[Message],
        *,
        timeout_s: float,
        schema: JsonSchema | None = None,
        on_delta: DeltaSink | None = None,
    ) -> Completion:
        """Play the next step of this seat's script (an unscripted seat answers 42)."""
        steps = self.script.get(seat.name) or [Step(final="42")]
        step = steps[min(len(self.calls_for(seat.name)), len(steps) - 1)]
        self._started(seat, messages)
        try:
            return await play(step, messages, timeout_s, on_delta)
        finally:
            self.in_flight -= 1


@dataclass
class FunctionProvider(_Recorder):
    """Replies with `fn(seat, messages)`: text, a Step (an answer, a delay or a fault) or a Completion; sync or async.

    `fn` may also raise ProviderError itself. Records every call, as ScriptedProvider does.
    """

    fn: ReplyFunction

    async def complete(
        self,
        seat: Seat,
        messages: list[Message],
        *,
        timeout_s: float,
        schema: JsonSchema | None = None,
        on_delta: DeltaSink | None = None,
    ) -> Completion:
        """Ask `fn` for the reply, then play it like a scripted step."""
        self._started(seat, messages)
        try:
            reply = self.fn(seat, list(messages))
            if inspect.isawaitable(reply):
                reply = await reply
            if isinstance(reply, Completion):
                if on_delta is not None:
                    stream(reply.text, CHUNK_CHARS, on_delta)
                return reply
            return await play(reply if isinstance(reply, Step) else Step(text=reply), messages, timeout_s, on_delta)
        finally:
            self.in_flight -= 1
