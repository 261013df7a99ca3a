"""Fixtures: the real service under uvicorn on a loopback port, with stub-backed panels."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import httpx
import pytest
import uvicorn

from consensus.types import Panel
from service.app import create_app
from service.settings import Settings
from tests.helpers import SEATS, ans, make_panel


def stub_panel(stub, names=SEATS, **settings) -> Panel:
    """The service tests' panel: make_panel on the stub, one debate round."""
    return make_panel(names, stub=stub, source="stub", **{"max_rounds": 1, **settings})


class ServiceServer:
    """uvicorn serving create_app() in a background thread on 127.0.0.1:<free port>."""

    def __init__(self, settings: Settings, panel: Panel, provider=None) -> None:
        self.app = create_app(settings, panel, provider)
        self.server = uvicorn.Server(
            uvicorn.Config(self.app, host="127.0.0.1", port=0, log_level="warning", access_log=False, lifespan="on")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> ServiceServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("service did not start")
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.server_loop = self.services.runner.loop
        self.url = f"http://127.0.0.1:{port}"
        return self

    @property
    def services(self):
        return self.app.state.services

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)

    def client(self, **kw) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, **kw)


@pytest.fixture
def make_service(tmp_path, stub):
    started: list[ServiceServer] = []

    def make(panel=None, provider=None, **settings) -> ServiceServer:
        s = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/svc.db", **settings)
        srv = ServiceServer(s, panel or stub_panel(stub), provider).start()
        started.append(srv)
        return srv

    yield make
    for srv in started:
        srv.stop()


@pytest.fixture
def service(make_service):
    return make_service()


def wait_status(client: httpx.Client, debate_id: str, timeout: float = 20) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = client.get(f"/v1/debates/{debate_id}").json()
        if r["status"] != "running":
            return r
        time.sleep(0.05)
    raise AssertionError(f"debate {debate_id} still running")


def run_coro(coro):
    return asyncio.run(coro)


# -- PostgreSQL and service processes (tests/api/test_postgres.py, tests/api/test_restart.py) -----
from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402

from service.testing.pg import PgCluster, PgUnavailable  # noqa: E402
from tests.service_process import ServiceProcess  # noqa: E402


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """A throwaway PostgreSQL 15 cluster for the session; fails (never skips) when it cannot run."""
    try:
        cluster = PgCluster()
    except PgUnavailable as exc:
        pytest.fail(f"cannot start the test PostgreSQL cluster: {exc}", pytrace=False)
    try:
        cluster.start()
    except Exception as exc:  # noqa: BLE001 - report why, with the server log
        cluster.stop()
        pytest.fail(f"cannot start the test PostgreSQL cluster: {exc}", pytrace=False)
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def pg_url(pg_cluster: PgCluster) -> str:
    """postgresql+asyncpg://postgres@127.0.0.1:PORT/postgres of the session's cluster."""
    return pg_cluster.url


@pytest.fixture
def pg_database(pg_cluster: PgCluster) -> str:
    """The URL of a fresh, empty database on the session's cluster (one per test)."""
    return pg_cluster.create_database()


@pytest.fixture
def service_process(tmp_path: Path) -> Iterator[object]:
    """Factory of `python -m consensus serve` processes; every one is SIGKILLed at teardown."""
    made: list[ServiceProcess] = []

    def make(
        name: str, database_url: str, panel_file: Path, args: tuple[str, ...] = (), **env: object
    ) -> ServiceProcess:
        proc = ServiceProcess(name, database_url, panel_file, tmp_path, args, **env)
        made.append(proc)
        return proc

    yield make
    for p in made:
        p.kill()


# -- helpers of the replica and restart tests -------------------------------------------------------
RESUMED = "consensus_debates_resumed_total"


def follow_events(client: httpx.Client, debate_id: str) -> list[tuple[float, str, dict]]:
    """Every event of a debate over SSE as (arrival time, type, payload), until the stream ends."""
    from httpx_sse import connect_sse

    seen = []
    with connect_sse(client, "GET", f"/v1/debates/{debate_id}/events") as es:
        for e in es.iter_sse():
            if e.data:
                seen.append((time.monotonic(), e.event, json.loads(e.data)))
    return seen


def assert_clean_log(events: list[tuple[float, str, dict]], last: str = "debate.completed") -> None:
    """Ids count 1, 2, 3, ... (nothing lost or written twice), one debate.started, and the end event.

    Token deltas are never stored: a follower on another replica that falls back to polling the store
    may skip some, so when deltas came, ids must only rise (stored events are checked by type count).
    """
    seqs = [p["seq"] for _, _, p in events]
    if any(t.endswith(".delta") for _, t, _ in events):
        assert seqs[0] == 1 and all(a < b for a, b in zip(seqs, seqs[1:], strict=False)), seqs
    else:
        assert seqs == list(range(1, len(events) + 1))
    types = [t for _, t, _ in events]
    assert types.count("debate.started") == 1 and types[-1] == last and types.count(last) == 1


def script_hang_in_round_1(stub) -> None:
    """Openings disagree (so round 1 runs); round-1 calls hang until the caller goes away; then answers."""
    for n, first in (("alice", "4"), ("bob", "5"), ("carol", "6")):
        stub.script(n, [{"text": ans(first)}, {"fault": "hang"}, {"text": ans("4")}])


def wait_round_1_in_flight(client: httpx.Client, stub, debate_id: str, timeout: float = 20) -> None:
    """Until round 0 is stored and every panelist's round-1 call has reached the stub."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rounds = client.get(f"/v1/debates/{debate_id}").json()["rounds"]
        if rounds and all(stub.hits(n) == 2 for n in ("alice", "bob", "carol")):
            return
        time.sleep(0.05)
    raise AssertionError(f"round 0 of {debate_id} was not stored, or round 1 did not start")


def assert_resumed_after_round_0(final: dict, stub, exact_hits: bool = True) -> None:
    """Round 0 kept, round 1 run again, no opening asked twice."""
    assert final["status"] == "completed", final.get("reason")
    assert [r["index"] for r in final["rounds"]] == [0, 1]
    assert [a["final_answer"] for a in final["rounds"][0]["answers"]] == ["4", "5", "6"]
    for n in ("alice", "bob", "carol"):
        asked = [json.dumps(r["messages"]) for r in stub.requests(n)]
        assert sum("on your own" in m for m in asked) == 1, f"{n}'s opening was asked again"
    if exact_hits:  # the opening + the round-1 call cut short + round 1 again; alice also synthesizes.
        assert stub.hits() == {"alice": 4, "bob": 3, "carol": 3}
    assert "I conclude 6." in json.dumps(stub.requests("bob")[2]["messages"])  # built from the stored openings
