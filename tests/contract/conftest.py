"""Gateways made by a test are closed after it (the lean client holds an aiohttp connection pool)."""

from collections.abc import AsyncIterator, Callable

import pytest

from consensus.providers.gateway import LiteLLMGateway
from consensus.types import DebateSettings


@pytest.fixture
async def gateway() -> AsyncIterator[Callable[..., LiteLLMGateway]]:
    """LiteLLMGateway(settings), closed when the test ends."""
    made: list[LiteLLMGateway] = []

    def make(settings: DebateSettings | None = None) -> LiteLLMGateway:
        made.append(LiteLLMGateway(settings))
        return made[-1]

    yield make
    for gw in made:
        await gw.aclose()
