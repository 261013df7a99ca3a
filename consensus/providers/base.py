"""The Provider protocol (the engine's only I/O seam) and the Transport protocol (one call, no policy)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from pydantic import BaseModel, Field

from consensus.types import Message, Seat, Usage

JsonSchema = Mapping[str, Any]


class Completion(BaseModel):
    """What a provider returns for one call."""

    text: str
    usage: Usage = Field(default_factory=Usage)
    cost_usd: float | None = 0.0
    latency_ms: int = 0
    attempts: int = 1

    def spent(self) -> dict[str, Any]:
        """What the call cost, as the fields an answer, an analysis or a consensus record it under."""
        return {
            "usage": self.usage,
            "cost_usd": self.cost_usd,
            "latency_ms": self.latency_ms,
            "attempts": self.attempts,
        }


class DeltaSink(Protocol):
    """Where streamed text goes. `restart=True`: what this stream showed so far is void (its attempt broke off and
    a retry, or another seat, starts over); this text begins the new one."""

    def __call__(self, text: str, restart: bool = False) -> None: ...


class Provider(Protocol):
    """Something that can answer chat messages for a seat; raises ProviderError on failure."""

    async def complete(
        self,
        seat: Seat,
        messages: list[Message],
        *,
        timeout_s: float,
        schema: JsonSchema | None = None,
        on_delta: DeltaSink | None = None,
    ) -> Completion:
        """Run one call; ask for JSON matching `schema` when given; stream text to `on_delta` when given."""
        ...


class Transport(Protocol):
    """One attempt of one call over one kind of connection: no retries, throttle or timeout (the gateway's).

    Raises ProviderError with the kind the failure means. `cost_usd` is what the transport knows of the price
    (None: unknown); the gateway applies the panel's own prices over it.
    """

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
        """One attempt."""
        ...

    async def aclose(self) -> None:
        """Release connections (a no-op for transports that hold none)."""
        ...


async def close_provider(provider: object) -> None:
    """Close a provider's connections when it holds any (the gateway's lean client does; fakes do not)."""
    aclose = getattr(provider, "aclose", None)
    if aclose is not None:
        await aclose()
