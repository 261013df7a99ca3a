"""The service on PostgreSQL: migrations, timestamps, replay, LISTEN/NOTIFY, and replicas sharing work.

A throwaway PostgreSQL 15 cluster (service/testing/pg.py) serves the session; each test gets its own database.
The replica tests run `python -m consensus serve` processes on one database against the loopback stub.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest
from httpx_sse import connect_sse

from consensus.engine import DebateOptions, new_result
from consensus.types import DebateStarted
from service.settings import Settings
from service.store import Store
from service.testing.pg import children_of
from tests.api.conftest import (
    RESUMED,
    ServiceServer,
    ans,
    assert_clean_log,
    assert_resumed_after_round_0,
    follow_events,
    script_hang_in_round_1,
    stub_panel,
    wait_round_1_in_flight,
    wait_status,
)
from tests.helpers import make_panel, write_panel
from tests.service_process import REPLICA_PANEL, ServiceProcess


@pytest.fixture(scope="module", autouse=True)
def _wait_for_every_seat():
    """These tests time slow seats against leases and replays: quorum grace (on by default in the service) would
    move their rounds on without the slow seat, which is another behaviour (tested in test_debates_api.py)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CONSENSUS_QUORUM_GRACE", "false")
        yield


pytestmark = pytest.mark.postgres
LEASE_S = 3  # short, so a dead replica's debate is adopted within seconds


def db_name(url: str) -> str:
    return url.rsplit("/", 1)[1]


def script(stub, delays, final="4"):
    for n, d in delays.items():
        stub.script(n, [{"text": ans(final), "delay_s": d}])


# -- the service on PostgreSQL, in this process --------------------------------------------------
def test_debate_end_to_end_on_postgres(stub, pg_cluster, pg_database):
    script(stub, {"alice": 0, "bob": 0, "carol": 0})
    srv = ServiceServer(Settings(database_url=pg_database), stub_panel(stub)).start()
    try:
        with srv.client() as c:
            d = c.post("/v1/debates?wait=true", json={"question": "What is 2+2?"}).json()
            assert d["status"] == "completed" and d["consensus"]["majority"] == "4"
            assert datetime.fromisoformat(d["timing"]["started_at"]).tzinfo is not None
            assert c.get(f"/v1/debates/{d['id']}").json() == d
            # Text PostgreSQL cannot store or compare (asyncpg raised, the API answered 500): refused or not found.
            assert c.get("/v1/debates/a%00b").status_code == 404
            for q in ("nul \u0000?", "lone \ud800?"):
                r = c.post(
                    "/v1/debates", content=json.dumps({"question": q}), headers={"Content-Type": "application/json"}
                )
                assert r.status_code == 422 and r.json()["error"]["param"] == "question"
            listed = c.get("/v1/debates").json()["data"]
            assert [x["id"] for x in listed] == [d["id"]] and listed[0]["status"] == "completed"
            assert datetime.fromisoformat(listed[0]["created_at"]).tzinfo is not None
            events = follow_events(c, d["id"])
    finally:
        srv.stop()
    assert_clean_log(events)
    assert events[-1][2]["result"] == d  # replayed as stored: cost_usd unknown, not 0.0
    db = db_name(pg_database)
    assert pg_cluster.execute("SELECT version_num FROM alembic_version", db) == [("0004",)]
    kinds = pg_cluster.execute(
        "SELECT DISTINCT data_type FROM information_schema.columns WHERE column_name IN "
        "('created_at', 'updated_at', 'lease_until', 'revoked_at')",
        db,
    )
    assert kinds == [("timestamp with time zone",)]
    row = pg_cluster.execute("SELECT status, lease_owner, lease_until, last_seq FROM debates", db)
    assert row == [("completed", None, None, len(events))]


def test_replay_of_a_debate_with_null_fields(stub, pg_database):
    """The deadline fallback has no synthesizer; its stored events must still read back."""
    stub.script("alice", [{"text": ans("4")}])
    stub.script("bob", [{"text": ans("4")}])
    stub.script("carol", [{"fault": "hang"}])
    srv = ServiceServer(Settings(database_url=pg_database), stub_panel(stub, deadline_s=1.5)).start()
    try:
        with srv.client() as c:
            d = c.post("/v1/debates?wait=true", json={"question": "2+2?", "rounds": 0}).json()
            assert d["status"] == "degraded" and d["consensus"]["synthesizer"] is None
            events = follow_events(c, d["id"])
    finally:
        srv.stop()
    assert_clean_log(events)
    assert events[-2][1] == "consensus.completed" and events[-1][2]["result"] == d


async def test_replicas_starting_at_once_migrate_once(pg_cluster, pg_database):
    stores = [Store(pg_database) for _ in range(3)]
    try:
        await asyncio.gather(*(s.migrate() for s in stores))  # without the advisory lock, CREATE TABLE races
        await stores[0].migrate()  # a no-op at head
    finally:
        await asyncio.gather(*(s.close() for s in stores))
    assert pg_cluster.execute("SELECT version_num FROM alembic_version", db_name(pg_database)) == [("0004",)]


async def test_lease_renewals_and_event_writes_never_deadlock(pg_cluster, pg_database):
    """The heartbeat renews every lease in one transaction while the writer updates the same rows in
    batches; taken in different orders, PostgreSQL aborted one of them ("deadlock detected") after a
    1 s stall: the heartbeat failed, or a whole write batch waited and was redone row by row."""
    log_start = len(pg_cluster.log.read_bytes())
    store = Store(pg_database, pool_size=10)
    await store.migrate()
    panel = stub_panel(type("S", (), {"api_base": "http://127.0.0.1:9/v1"})())
    ids = []
    for _ in range(120):
        result = new_result("What is 2+2?", panel, DebateOptions(language="en"))
        await store.create_debate(result, {}, None, None, owner="me", lease_s=30)
        ids.append(result.id)
    loop = asyncio.get_running_loop()
    stop = loop.time() + 2.5
    rng = random.Random(7)
    renewal_errors: list[BaseException] = []
    written = 0

    async def debate(debate_id: str) -> None:
        nonlocal written
        seq = 0
        while loop.time() < stop:
            seq += 1
            await store.record(debate_id, [DebateStarted(seq=seq, debate_id=debate_id, data={})], None, "me")
            written += 1
            await asyncio.sleep(rng.random() * 0.02)

    async def heartbeat() -> None:
        while loop.time() < stop:
            try:
                await store.renew_leases("me", rng.sample(ids, len(ids)), 30)
            except Exception as exc:  # noqa: BLE001 - collected and asserted below
                renewal_errors.append(exc)
            await asyncio.sleep(0.01)

    try:
        await asyncio.gather(*(debate(i) for i in ids), heartbeat(), heartbeat())
    finally:
        await store.close()
    assert renewal_errors == []
    # Enough writes to meet the renewals (a throughput floor would be a timed test: a busy machine made 365
    # where a quiet one makes 700+; each debate writing twice still collides with 100+ renewals of its row).
    assert written >= 2 * len(ids)
    # The writer redoes an aborted batch row by row, which hides its own aborts: read the server's log.
    assert b"deadlock detected" not in pg_cluster.log.read_bytes()[log_start:]


@pytest.mark.parametrize("listen", [True, False], ids=["notify", "polling"])
def test_other_replica_relays_events_live(stub, pg_database, listen):
    script(stub, {"alice": 0.2, "bob": 0.8, "carol": 1.4})
    a = ServiceServer(Settings(database_url=pg_database, lease_s=LEASE_S), stub_panel(stub))
    # Driver options in the URL (TLS off, PgBouncer-style statement cache off) must reach LISTEN too.
    b_url = f"{pg_database}?ssl=disable&prepared_statement_cache_size=0"
    b = ServiceServer(Settings(database_url=b_url, lease_s=LEASE_S), stub_panel(stub))
    if not listen:  # B never LISTENs: only its store polling can deliver A's events

        async def no_listen() -> None:
            return None

        b.services.runner.relay.listen = no_listen
    a.start()
    b.start()
    try:
        with a.client() as ca, b.client() as cb:
            debate_id = ca.post("/v1/debates", json={"question": "2+2?", "rounds": 0}).json()["id"]
            events = follow_events(cb, debate_id)
            d = cb.get(f"/v1/debates/{debate_id}").json()
            assert d["status"] == "completed", d.get("reason")
        relayed = b.services.runner.relay.relayed
    finally:
        a.stop()
        b.stop()
    assert_clean_log(events)
    done = [(t, p["panelist"]) for t, kind, p in events if kind == "answer.completed"]
    assert [p for _, p in done] == ["alice", "bob", "carol"]
    assert done[2][0] - done[0][0] > 0.5  # live, not one batch at the end
    if listen:
        assert relayed > 0, "no event reached B through LISTEN/NOTIFY"
    else:
        assert relayed == 0  # all came from polling


def test_token_deltas_reach_a_follower_on_another_replica(stub, pg_database):
    script(stub, {"bob": 0.8, "carol": 1.4})
    consensus_text = "The panel agrees the answer is 4; every panelist reached it independently."
    # Its pieces come 50 ms apart, as a model writes: the pieces that arrive together go out as one delta.
    written = {"text": consensus_text, "delay_s": 0.3, "chunk_delay_s": 0.05}
    stub.script("alice", [{"text": ans("4"), "delay_s": 0.2}, written])
    a = ServiceServer(Settings(database_url=pg_database, lease_s=LEASE_S), stub_panel(stub)).start()
    b = ServiceServer(Settings(database_url=pg_database, lease_s=LEASE_S), stub_panel(stub)).start()
    try:
        with a.client() as ca, b.client() as cb:
            debate_id = ca.post("/v1/debates", json={"question": "2+2?", "rounds": 0}).json()["id"]
            events = follow_events(cb, debate_id)  # b announces itself; a streams the synthesis for it
    finally:
        a.stop()
        b.stop()
    assert_clean_log(events)
    deltas = [p for _, kind, p in events if kind == "consensus.delta"]
    assert len(deltas) > 1, "no token deltas reached the other replica"
    assert "".join(d["delta"] for d in deltas).strip() == events[-1][2]["result"]["consensus"]["answer"].strip()
    seqs = [p["seq"] for _, _, p in events]
    assert seqs == sorted(seqs) and len(seqs) == len(set(seqs))  # in order, none twice


def test_a_lost_listen_connection_is_reopened(stub, pg_database):
    script(stub, {"alice": 0.2, "bob": 0.8, "carol": 1.4})
    a = ServiceServer(Settings(database_url=pg_database, lease_s=LEASE_S), stub_panel(stub))
    b = ServiceServer(Settings(database_url=pg_database, lease_s=LEASE_S), stub_panel(stub))
    a.start()
    b.start()
    try:
        runner = b.services.runner
        old = runner.relay._listen_driver
        pid = old.get_server_pid()

        async def kill_listener() -> None:
            from sqlalchemy import text

            async with a.services.store.engine.begin() as conn:  # as an operator or a failover would
                await conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})

        asyncio.run_coroutine_threadsafe(kill_listener(), a.server_loop).result(10)
        deadline = time.monotonic() + 10
        while not (runner.relay.listening and runner.relay._listen_driver is not old) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert runner.relay.listening and runner.relay._listen_driver is not old, "b did not LISTEN again"
        with a.client() as ca, b.client() as cb:
            debate_id = ca.post("/v1/debates", json={"question": "2+2?", "rounds": 0}).json()["id"]
            events = follow_events(cb, debate_id)
        relayed = runner.relay.relayed
    finally:
        a.stop()
        b.stop()
    assert_clean_log(events)
    assert relayed > 0, "no event reached b through the new LISTEN connection"


# -- replicas as separate processes ---------------------------------------------------------------
@pytest.fixture(scope="module")
def trio(pg_cluster, stub_server, tmp_path_factory):
    """Replicas a, b, c (`python -m consensus serve` processes) on one fresh database."""
    d = tmp_path_factory.mktemp("replicas")
    url = pg_cluster.create_database("replicas")
    panel = write_panel(d / "panel.toml", make_panel(stub=stub_server, **REPLICA_PANEL))
    procs = [ServiceProcess(n, url, panel, d, consensus_lease_s=LEASE_S) for n in ("a", "b", "c")]
    try:
        for p in procs:
            p.start()  # all at once: their migrations meet at the advisory lock
        for p in procs:
            p.wait_ready()
        yield procs
    finally:
        for p in procs:
            p.kill()


def resumed(*procs: ServiceProcess) -> list[float]:
    return [p.metric(RESUMED) for p in procs]


def test_debate_on_one_process_is_followed_live_on_another_and_keeps_its_lease(stub, trio):
    a, b, c = trio
    script(stub, {"alice": 0.2, "bob": 1.0, "carol": 1.6 * LEASE_S})  # outlives its first lease
    before = resumed(a, c)
    with b.client() as cb, c.client() as cc:
        debate_id = cb.post("/v1/debates", json={"question": "2+2?", "rounds": 0}).json()["id"]
        events = follow_events(cc, debate_id)
        got = cc.get(f"/v1/debates/{debate_id}").json()
    assert_clean_log(events)
    done = [(t, p["panelist"]) for t, kind, p in events if kind == "answer.completed"]
    assert [p for _, p in done] == ["alice", "bob", "carol"]
    assert done[1][0] - done[0][0] > 0.5  # delivered as they happened on b
    assert got["status"] == "completed" and got == events[-1][2]["result"]
    # b renewed its lease all along: nobody adopted the debate, no call ran twice.
    assert resumed(a, c) == before
    assert stub.hits() == {"alice": 2, "bob": 1, "carol": 1}


def test_cancel_on_another_process_ends_the_debate_cancelled(stub, trio):
    _, b, c = trio
    script(stub, {"alice": 0.2, "bob": 1.2, "carol": 5.0})
    with b.client() as cb, b.client() as cb2, c.client() as cc, c.client() as cc2:
        debate_id = cb.post("/v1/debates", json={"question": "2+2?", "rounds": 0}).json()["id"]
        on_owner: list[list[tuple[float, str, dict]]] = []
        owner = threading.Thread(target=lambda: on_owner.append(follow_events(cb2, debate_id)))
        owner.start()  # a follower on b, the replica running the debate
        events = []
        with connect_sse(cc, "GET", f"/v1/debates/{debate_id}/events") as es:
            for e in es.iter_sse():
                if e.data:
                    events.append((0.0, e.event, json.loads(e.data)))
                if e.event == "answer.completed":  # alice's: b still waits for bob and carol
                    r = cc2.post(f"/v1/debates/{debate_id}/cancel")
                    cancelled_at = time.monotonic()
                    assert r.status_code == 200 and r.json()["status"] == "cancelled"
        owner.join(timeout=20)
        # b's follower hears the end as soon as b notices the cancel (its heartbeat), not after a 15 s poll.
        assert on_owner and on_owner[0][-1][1] == "debate.failed"
        assert on_owner[0][-1][0] - cancelled_at < LEASE_S / 3 + 2.5
        deadline = time.monotonic() + 15
        while b.metric("consensus_debates_in_flight") and time.monotonic() < deadline:
            time.sleep(0.1)  # until b has noticed (its next write, or its heartbeat) and let go
        assert b.metric("consensus_debates_in_flight") == 0
        final = cb.get(f"/v1/debates/{debate_id}").json()
    assert (final["status"], final["reason"]) == ("cancelled", "cancelled by a client")
    assert_clean_log(events, last="debate.failed")
    assert events[-1][2]["result"]["status"] == "cancelled"
    assert stub.hits() == {"alice": 1, "bob": 1, "carol": 1}  # nothing ran after the cancel


def test_stalled_replica_that_lost_its_lease_stops_writing(stub, trio):
    a, b, c = trio
    for n, first in (("alice", "4"), ("bob", "5"), ("carol", "6")):
        steps = [{"text": ans(first)}, {"text": ans("4"), "delay_s": 0.5}, {"text": ans("4"), "delay_s": 1.5}]
        stub.script(n, steps)
    before = sum(resumed(a, c))
    with b.client() as cb:
        debate_id = cb.post("/v1/debates", json={"question": "2+2?", "rounds": 1}).json()["id"]
        wait_round_1_in_flight(cb, stub, debate_id)
    b.pause()  # frozen longer than its lease, with its round-1 answers arriving in its sockets
    try:
        deadline = time.monotonic() + 15
        while sum(resumed(a, c)) == before and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        b.cont()  # wakes while the adopter re-runs round 1, and tries to store its own answers
    assert sum(resumed(a, c)) == before + 1
    with c.client() as cc:
        final = wait_status(cc, debate_id, timeout=30)
        events = follow_events(cc, debate_id)
    deadline = time.monotonic() + 10
    while "is leased to another replica; stopped here" not in b.log_tail(400) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "is leased to another replica; stopped here" in b.log_tail(400)
    assert "crashed" not in b.log_tail(400)
    # b may have asked for a synthesis before its first write was refused; nothing of it was stored.
    assert_resumed_after_round_0(final, stub, exact_hits=False)
    assert stub.hits("bob") == stub.hits("carol") == 3
    assert_clean_log(events)
    assert [p["round"] for _, t, p in events if t == "answer.completed"] == [0, 0, 0, 1, 1, 1]


def test_killed_replica_debate_is_resumed_by_exactly_one_other(stub, trio):
    a, b, c = trio
    script_hang_in_round_1(stub)
    before = resumed(b, c)
    with a.client() as ca:
        debate_id = ca.post("/v1/debates", json={"question": "2+2?", "rounds": 1}).json()["id"]
        wait_round_1_in_flight(ca, stub, debate_id)
    a.kill()
    with b.client() as cb:
        final = wait_status(cb, debate_id, timeout=30)
        events = follow_events(cb, debate_id)
    assert_resumed_after_round_0(final, stub)
    assert sorted(x - y for x, y in zip(resumed(b, c), before, strict=True)) == [0.0, 1.0]
    assert_clean_log(events)
    assert [p["round"] for _, t, p in events if t == "round.completed"] == [0, 1]


# -- `consensus serve --workers N` ---------------------------------------------------------------
def worker_pids(parent: int) -> list[int]:
    """uvicorn's worker processes under `parent` (multiprocessing spawn children, not its resource tracker)."""
    pids = []
    for pid in children_of(parent):
        try:
            if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                pids.append(pid)
        except OSError:
            continue
    return pids


async def running_lease_owners(url: str) -> set[str]:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(text("SELECT lease_owner FROM debates WHERE status = 'running'"))
            return {r[0] for r in rows if r[0]}
    finally:
        await engine.dispose()


def test_two_workers_share_the_port_and_serve_each_others_debates(stub, pg_database, service_process, tmp_path):
    script(stub, {"alice": 1.0, "bob": 1.0, "carol": 1.0})
    panel = write_panel(tmp_path / "panel.toml", make_panel(stub=stub, **REPLICA_PANEL))
    server = service_process("multi", pg_database, panel, args=("--workers", "2")).start().wait_ready()
    assert server.proc is not None
    deadline = time.monotonic() + 30
    while len(worker_pids(server.proc.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(worker_pids(server.proc.pid)) == 2
    ids: list[str] = []
    owners: set[str] = set()
    for i in range(40):  # each POST on a new connection: whichever worker accepts it runs the debate
        with server.client() as c:
            r = c.post("/v1/debates", json={"question": f"What is {i} + {i}?", "rounds": 0})
        assert r.status_code == 202, r.text
        ids.append(r.json()["id"])
        owners |= asyncio.run(running_lease_owners(pg_database))
        if len(owners) == 2:
            break
    # Two processes each took debates, under ids of their own derived from the server's.
    assert len(owners) == 2 and all(o.startswith("multi-w") for o in owners), owners
    for debate_id in ids:  # a follower reaches its debate whichever worker accepts the stream
        with server.client() as c:
            events = follow_events(c, debate_id)
            d = c.get(f"/v1/debates/{debate_id}").json()
            assert d["status"] == "completed", d.get("reason")
        assert_clean_log(events)
    assert server.terminate() == 0
    assert "Traceback" not in server.log_tail(200)


def test_workers_need_postgresql(tmp_path, stub):
    import subprocess
    import sys

    panel = write_panel(tmp_path / "panel.toml", make_panel(stub=stub, **REPLICA_PANEL))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONSENSUS_")}
    env.update(
        DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'x.db'}", LITELLM_LOCAL_MODEL_COST_MAP="True", COLUMNS="400"
    )  # one line, unwrapped
    r = subprocess.run(
        [sys.executable, "-m", "consensus", "serve", "--port", "0", "--panel-file", str(panel), "--workers", "2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2
    assert r.stderr.startswith("error: --workers 2:") and "PostgreSQL" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    # PostgreSQL that cannot be reached: one line naming DATABASE_URL, before any worker starts.
    env["DATABASE_URL"] = "postgresql://postgres@127.0.0.1:1/nowhere"
    r = subprocess.run(
        [sys.executable, "-m", "consensus", "serve", "--port", "0", "--panel-file", str(panel), "--workers", "2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2 and r.stderr.startswith("error: DATABASE_URL: cannot migrate the database")
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
