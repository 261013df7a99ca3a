"""The Provider protocol: the engine's only I/O seam."""

from __future__ import annotations

from typing import Protocol

from pydantic import BaseModel, Field

from consensus.types import Seat, Usage


class Message(BaseModel):
    """A chat message sent to a model."""

    role: str
    content: str


class Completion(BaseModel):
    """What a provider returns for one call."""

    text: str
    usage: Usage = Field(default_factory=Usage)
    cost_usd: float | None = 0.0
    latency_ms: int = 0
    attempts: int = 1


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
        json_output: bool = False,
        on_delta: DeltaSink | None = None,
    ) -> Completion:
        """Run one call; stream text to `on_delta` when given."""
        ...


async def close_provider(provider: object) -> None:
    """Close a provider's connections when it holds any (the gateway's lean client does; fakes do not)."""
    aclose = getattr(provider, "aclose", None)
    if aclose is not None:
        await aclose()
