"""Gateways made by a test are closed after it (the lean client holds an aiohttp connection pool)."""

from collections.abc import AsyncIterator, Callable

import pytest

from consensus.providers.gateway import Gateway
from consensus.types import DebateSettings


@pytest.fixture
async def gateway() -> AsyncIterator[Callable[..., Gateway]]:
    """Gateway(settings), closed when the test ends."""
    made: list[Gateway] = []

    def make(settings: DebateSettings | None = None) -> Gateway:
        made.append(Gateway(settings))
        return made[-1]

    yield make
    for gw in made:
        await gw.aclose()
