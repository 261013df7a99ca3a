"""The bare-client floor the benchmarks judge the service and the engine against.

n debates' calls in a debate's pattern (the openings at once, then each later step one call after the other),
made by one bare aiohttp session straight to the stub: no engine, no gateway, no service. Its wall time over the
same critical path is what the stub and the machine allow any client at that concurrency, in that run.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

import aiohttp
import procs  # noqa: F401 - first: it puts the repository on sys.path (consensus from a checkout not installed)

from consensus.providers.openai_compat import request_body
from consensus.rounds import new_marker, opening_messages
from consensus.types import Seat

QUESTION = "What is six times seven? Check the arithmetic before you answer."


async def bare_floor(
    url: str,
    latency_ms: int,
    n: int,
    openings: int = 3,
    steps: int = 2,
    streamed: Callable[[int], bool] = lambda _i: False,
) -> float:
    """Wall / critical path of n concurrent debates' calls made by a bare aiohttp session to `url` (the stub).

    Each debate makes `openings` calls at once, then `steps - 1` calls one after the other (2 steps with no
    debate round: the openings, the synthesis). Debate i streams its calls when `streamed(i)`, read line by line
    with every data line parsed, as a client of an SSE stream does; else each reply is read and parsed whole. The
    request is the one the gateway's lean client sends for an opening on a `latency-<ms>` seat.
    """
    model = f"latency-{latency_ms}"
    seat = Seat(name="p0", model=f"openai/{model}", api_base=f"{url}/v1", transport="openai-compatible")
    messages = opening_messages(seat, QUESTION, "en", new_marker())
    bodies = {s: request_body(seat, messages, json_output=True, stream=s) for s in (False, True)}
    endpoint = f"{url}/v1/chat/completions"
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0), headers={"Authorization": "Bearer none"}
    ) as http:

        async def call(stream: bool) -> None:
            async with http.post(endpoint, json=bodies[stream]) as r:
                r.raise_for_status()
                if not stream:
                    json.loads(await r.read())
                    return
                async for line in r.content:
                    if line.startswith(b"data: ") and not line.startswith(b"data: [DONE]"):
                        json.loads(line[6:])

        async def one(i: int) -> None:
            stream = streamed(i)
            await asyncio.gather(*(call(stream) for _ in range(openings)))
            for _ in range(steps - 1):
                await call(stream)

        t0 = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        return (time.perf_counter() - t0) / (steps * latency_ms / 1000)
