"""What the per-request key check and the per-call lease check cost, on SQLite and PostgreSQL; prints figures.

    python bench/checks.py            # 2,000 repetitions of each figure
    python bench/checks.py --quick    # 300

The key check (service.security.KeyCache) looks at the keys table once per request (CONSENSUS_KEY_CACHE_S=0):
one aggregate query, the keys read again only when it changed. The lease check (service.runner.Runner.check_lease)
runs before every provider call: free while the last renewal is recent, else one UPDATE. PostgreSQL is a
throwaway cluster (service.testing.pg, fsync off as in the tests); SQLite a WAL file in a temp dir.
Figures are medians and 99th percentiles of one call at a time, then a burst of concurrent requests.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

from consensus.engine import DebateOptions, new_result
from consensus.types import DebateSettings, Panel, Seat
from service.app import create_app
from service.runner import Runner
from service.security import KeyCache, create_key
from service.settings import Settings
from service.store import Store
from service.testing.pg import PgCluster

PANEL = Panel(
    panelists=[Seat(name=n, model=f"openai/{n}", api_base="http://127.0.0.1:9/v1") for n in ("a", "b", "c")],
    synthesizer=Seat(name="a", model="openai/a", api_base="http://127.0.0.1:9/v1"),
    debate=DebateSettings(max_rounds=0),
    source="bench",
)


def figures(samples: list[float]) -> str:
    """'median 123 us, p99 456 us' from seconds."""
    s = sorted(samples)
    p99 = s[min(len(s) - 1, int(len(s) * 0.99))]
    return f"median {statistics.median(s) * 1e6:7.0f} us, p99 {p99 * 1e6:7.0f} us"


async def timed(n: int, call: Callable[[], Awaitable[object]]) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        await call()
        out.append(time.perf_counter() - t)
    return out


async def keys_on(label: str, url: str, n: int) -> None:
    store = Store(url)
    await store.migrate()
    try:
        for count in (5, 1000):
            have = len(await store.keys())
            for i in range(have, count):
                await create_key(store, f"k{i}", [f"https://site{i}.example"] if i % 2 else [])
            look = await timed(n, store.keys_fingerprint)
            read = await timed(max(30, n // 10), store.keys)
            print(f"{label:10} {count:5} keys  look (aggregate): {figures(look)}   read all keys: {figures(read)}")
        cache = KeyCache(store)
        await cache.refresh()
        per_request = await timed(n, cache.refresh)
        print(f"{label:10} KeyCache.refresh per request, one at a time: {figures(per_request)}")
        for burst in (50, 500):
            before, t = cache.looks, time.perf_counter()
            await asyncio.gather(*(cache.refresh() for _ in range(burst)))
            wall = time.perf_counter() - t
            print(f"{label:10} a burst of {burst} requests: {cache.looks - before} looks, {wall * 1000:.1f} ms for all")
    finally:
        await store.close()


async def leases_on(label: str, url: str, n: int) -> None:
    store = Store(url)
    await store.migrate()
    runner = Runner(store, PANEL, provider=None, settings=Settings(database_url=url, replica_id="bench"))  # type: ignore[arg-type]
    try:
        result = new_result("How much is 2+2?", PANEL, DebateOptions())
        await store.create_debate(result, {}, None, None, owner="bench", lease_s=30)
        runner.held(result.id, time.monotonic())
        cached = await timed(n, lambda: runner.check_lease(result.id))

        async def uncached() -> None:
            runner.leases.pop(result.id, None)  # as after a stall: the last renewal is too old to trust
            await runner.check_lease(result.id)

        queried = await timed(n, uncached)
        print(f"{label:10} lease check per call, trusted (renewed recently): {figures(cached)}")
        print(f"{label:10} lease check per call, renewed with one UPDATE:   {figures(queried)}")
    finally:
        await store.close()


async def http_on(label: str, urls: tuple[str, str], n: int) -> None:
    """GET /v1/debates with a key, in process (ASGI): the key looked at per request against a 60 s bound, in
    interleaved blocks of 50 so that load from other processes falls on both alike."""
    samples: dict[float, list[float]] = {0.0: [], 60.0: []}
    async with contextlib.AsyncExitStack() as stack:
        clients = {}
        for db, max_age in zip(urls, samples, strict=True):
            app = create_app(
                Settings(database_url=db, key_cache_s=max_age, auth_failures_per_minute=10**6), PANEL, object()
            )
            await stack.enter_async_context(app.router.lifespan_context(app))
            plain, _row = await create_key(app.state.services.store, "bench", [])
            client = httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app),
                base_url="http://bench",
                headers={"Authorization": f"Bearer {plain}"},
            )
            clients[max_age] = await stack.enter_async_context(client)
            await client.get("/v1/debates?limit=1")
        for _ in range(max(1, n // 50)):
            for max_age, c in clients.items():
                samples[max_age] += await timed(50, lambda c=c: c.get("/v1/debates?limit=1"))
    for max_age, got in samples.items():
        print(f"{label:10} GET /v1/debates (ASGI), CONSENSUS_KEY_CACHE_S={max_age:<2g}: {figures(got)}")


async def main(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        sqlite = f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
        await keys_on("SQLite", sqlite, n)
        await leases_on("SQLite", sqlite, n)
        await http_on("SQLite", tuple(f"sqlite+aiosqlite:///{Path(tmp) / f}" for f in ("a.db", "b.db")), n)  # type: ignore[arg-type]
    cluster = PgCluster().start()
    try:
        await keys_on("PostgreSQL", cluster.create_database("keys"), n)
        await leases_on("PostgreSQL", cluster.create_database("leases"), n)
        await http_on("PostgreSQL", (cluster.create_database("http"), cluster.create_database("http")), n)
    finally:
        cluster.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="300 repetitions instead of 2,000")
    args = parser.parse_args()
    asyncio.run(main(300 if args.quick else 2000))
