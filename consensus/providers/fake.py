"""Scripted providers for unit and load tests: answer, fail, sleep or return garbage."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field

from consensus.errors import ProviderError
from consensus.providers.base import Completion, DeltaSink, JsonSchema
from consensus.types import Message, Seat, Usage


@dataclass
class Step:
    """One scripted reply: text, an error kind, a delay, or a JSON answer."""

    text: str | None = None
    error: str | None = None
    delay_s: float = 0.0
    final: str | None = None
    confidence: float = 0.8

    def render(self) -> str:
        if self.final is not None:
            return json.dumps({"answer": self.text or f"The answer is {self.final}.",
                               "final_answer": self.final, "confidence": self.confidence})  # fmt: skip
        return self.text or ""


@dataclass
class ScriptedProvider:
    """Replies per seat name from a script; the last step repeats. Records every call."""

    script: dict[str, list[Step]] = field(default_factory=dict)
    calls: list[tuple[str, list[Message]]] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0

    async def complete(
        self,
        seat: Seat,
        messages: list[Message],
        *,
        timeout_s: float,
        schema: JsonSchema | None = None,
        on_delta: DeltaSink | None = None,
    ) -> Completion:
        """Play the next step of this seat's script."""
        steps = self.script.get(seat.name) or [Step(final="42")]
        n = sum(1 for name, _ in self.calls if name == seat.name)
        step = steps[min(n, len(steps) - 1)]
        self.calls.append((seat.name, list(messages)))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if step.delay_s:
                try:
                    async with asyncio.timeout(timeout_s):
                        await asyncio.sleep(step.delay_s)
                except TimeoutError:
                    raise ProviderError("timeout", f"no answer within {timeout_s:g} s") from None
            if step.error:
                raise ProviderError(step.error, f"scripted {step.error}")
            text = step.render()
            if on_delta:
                for i in range(0, len(text), 16):
                    on_delta(text[i : i + 16])
            tokens = max(1, len(text) // 4)
            prompt = sum(len(m.content) for m in messages) // 4
            return Completion(text=text, usage=Usage(prompt_tokens=prompt, completion_tokens=tokens,
                                                     total_tokens=prompt + tokens), cost_usd=0.0)  # fmt: skip
        finally:
            self.in_flight -= 1

    def calls_for(self, name: str) -> list[list[Message]]:
        """The messages of every call made for seat `name`."""
        return [m for n, m in self.calls if n == name]
