"""Security and hardening (issue 14): key freshness, serve's settings, deep JSON, /metrics, failed
authentication, the deadline across resumes, the lease before each call, stalled bodies, the serving line."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import httpx
import pytest
from prometheus_client import REGISTRY
from typer.testing import CliRunner

from consensus.engine import DebateOptions, new_result
from consensus.providers.fake import ScriptedProvider
from service.runner import Runner
from service.security import ApiError, KeyCache, authenticate, create_key
from service.settings import Settings
from service.store import Store
from tests.api.conftest import ans, script_hang_in_round_1, stub_panel, wait_round_1_in_flight, wait_status
from tests.helpers import make_panel, write_panel
from tests.service_process import REPLICA_PANEL


def cli(*args: str) -> str:
    """`consensus ...` in this process (the environment names the database); its stdout."""
    from consensus.cli import app

    r = CliRunner().invoke(app, list(args))
    assert r.exit_code == 0, r.output
    return r.stdout


def key_id_of(name: str) -> str:
    return next(line.split("\t")[0] for line in cli("keys", "list").splitlines() if line.split("\t")[2] == name)


def statuses(url: str, key: str | None, n: int = 1) -> list[int]:
    """n concurrent GET /v1/debates with `key` (none: no key)."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}

    def one(_: int) -> int:
        with httpx.Client(base_url=url, timeout=30, trust_env=False) as c:
            return c.get("/v1/debates", headers=headers).status_code

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


# -- 1. a key created or revoked with `consensus keys` counts from the next request --------------------------
def test_keys_made_or_revoked_with_the_cli_count_from_the_next_request(make_service, tmp_path, monkeypatch):
    """The cache answered from keys up to 5 s old while it reloaded: a revoked key kept working for a request, the
    first keyless request after the first key was served open, and a new key's first request got 401."""
    srv = make_service(auth_failures_per_minute=1000)  # the refused burst is not throttled (test 5 does that)
    monkeypatch.setenv("CONSENSUS_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path}/svc.db")  # the service's store
    assert statuses(srv.url, None) == [200]  # open: loopback, no keys yet
    cli("keys", "create", "--name", "backend")  # the first key
    assert statuses(srv.url, None) == [401]  # the first keyless request after it
    key = cli("keys", "create", "--name", "c").strip()
    assert statuses(srv.url, key) == [200]  # a new key's first request
    cli("keys", "revoke", key_id_of("c"))
    assert statuses(srv.url, key, n=20) == [401] * 20  # a burst right after the revocation: none gets through


async def test_the_key_cache_never_answers_from_data_older_than_its_bound():
    from service.security import KeysUnavailable

    class Keys:
        """A store's key queries; `gate` holds a look, `fail` makes it raise."""

        def __init__(self) -> None:
            self.rows = [SimpleNamespace(key_hash="h1", origins=[], revoked_at=None)]
            self.looks = self.reads = 0
            self.gate = asyncio.Event()
            self.gate.set()
            self.fail = False

        async def keys_fingerprint(self):
            self.looks += 1
            await self.gate.wait()
            if self.fail:
                raise ConnectionError("database unavailable")
            return (len(self.rows),)

        async def keys(self):
            self.reads += 1
            return list(self.rows)

    store = Keys()
    cache = KeyCache(store)  # type: ignore[arg-type]  # max_age_s 0: every request looks
    await cache.refresh()
    assert (store.looks, store.reads) == (1, 1) and set(cache.by_hash) == {"h1"}
    await cache.refresh()
    assert (store.looks, store.reads) == (2, 1)  # looked again; nothing changed, so not read again
    # A burst while a look is in flight: those arriving after it began wait for the next look, all share it.
    store.gate.clear()
    first = asyncio.ensure_future(cache.refresh())
    await asyncio.sleep(0)
    store.rows.append(SimpleNamespace(key_hash="h2", origins=[], revoked_at=None))
    burst = asyncio.gather(*(cache.refresh() for _ in range(100)))
    await asyncio.sleep(0.01)
    store.gate.set()
    await asyncio.wait_for(asyncio.gather(first, burst), 5)
    assert store.looks == 4 and set(cache.by_hash) == {"h1", "h2"}  # two looks for 101 requests, the burst saw h2
    # Within a bound of 60 s no look is needed; a forced refresh looks whatever the bound.
    bounded = KeyCache(store, max_age_s=60)  # type: ignore[arg-type]
    await bounded.refresh()
    looks = store.looks
    await bounded.refresh()
    assert store.looks == looks
    await bounded.refresh(force=True)
    assert store.looks == looks + 1
    # A failing or hung database: no answer from the keys loaded before, a 503 instead.
    store.fail = True
    with pytest.raises(KeysUnavailable):
        await cache.refresh()
    with pytest.raises(ApiError) as refused:
        await authenticate(cache, "Bearer whatever", None, None, "127.0.0.1", open_allowed=True)
    assert refused.value.status == 503 and refused.value.code == "keys_unavailable"
    store.fail = False
    store.gate.clear()
    cache.WAIT_S = 0.2
    with pytest.raises(KeysUnavailable, match="within 0.2 s"):
        await cache.refresh()
    store.gate.set()


@pytest.mark.postgres
def test_two_replicas_on_postgresql_see_a_key_made_or_revoked_with_the_cli_at_their_next_request(
    stub, pg_database, service_process, tmp_path, monkeypatch
):
    panel = write_panel(tmp_path / "panel.toml", make_panel(stub=stub, **REPLICA_PANEL))
    a, b = (service_process(n, pg_database, panel, consensus_auth_failures_per_minute=1000).start() for n in "ab")
    a.wait_ready(), b.wait_ready()
    monkeypatch.setenv("DATABASE_URL", pg_database)
    assert [statuses(r.url, None) for r in (a, b)] == [[200], [200]]
    cli("keys", "create", "--name", "backend")
    assert [statuses(r.url, None) for r in (a, b)] == [[401], [401]]
    key = cli("keys", "create", "--name", "c").strip()
    assert [statuses(r.url, key) for r in (a, b)] == [[200], [200]]
    cli("keys", "revoke", key_id_of("c"))
    assert [statuses(r.url, key, n=10) for r in (a, b)] == [[401] * 10, [401] * 10]


# -- 2 and 9. serve's host and port; the serving line ------------------------------------------------------------
@pytest.fixture
def served(monkeypatch, tmp_path, stub):
    """Run `consensus serve ...` up to uvicorn's loop (not entered): the host and port it was given, and stdout."""
    import uvicorn

    seen: dict[str, object] = {}

    def run(self: uvicorn.Server, *args: object, **kw: object) -> None:
        seen.update(host=self.config.host, port=self.config.port)
        seen["gc_tuning"] = self.config.app.state.services.settings.gc_tuning  # type: ignore[union-attr]

    monkeypatch.setattr(uvicorn.Server, "run", run)
    for name in ("CONSENSUS_HOST", "CONSENSUS_PORT", "CONSENSUS_PANEL_FILE", "CONSENSUS_PANEL", "CONSENSUS_GC_TUNING"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CONSENSUS_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path}/s.db")
    folder = tmp_path / ("a-folder-with-a-long-name-" * 4)
    folder.mkdir()
    panel = write_panel(folder / "panel.toml", make_panel(stub=stub, **REPLICA_PANEL))

    def serve(*args: str, **env: str) -> tuple[dict[str, object], str]:
        from consensus.cli import app

        seen.clear()
        r = CliRunner().invoke(app, ["serve", "--panel-file", str(panel), *args], env=env)
        assert r.exit_code == 1, r.output  # uvicorn never started: Server.run returned at once
        return dict(seen), r.stdout

    return serve, panel


def test_serve_takes_host_and_port_from_its_flags_then_the_environment_then_the_defaults(served):
    serve, _ = served
    assert serve()[0] == {"host": "127.0.0.1", "port": 8000, "gc_tuning": True}
    assert serve(CONSENSUS_HOST="127.0.0.2", CONSENSUS_PORT="18330")[0] == {
        "host": "127.0.0.2",
        "port": 18330,
        "gc_tuning": True,
    }
    given = serve("--host", "127.0.0.3", "--port", "18331", CONSENSUS_HOST="127.0.0.2", CONSENSUS_PORT="18330")
    assert given[0] == {"host": "127.0.0.3", "port": 18331, "gc_tuning": True}
    from consensus.cli import app

    bad = CliRunner().invoke(app, ["serve"], env={"CONSENSUS_PORT": "eighty"})
    assert bad.exit_code == 2 and "CONSENSUS_PORT" in bad.output and "Traceback" not in bad.output


def test_serve_tunes_the_collector_unless_the_environment_turns_it_off(served):
    serve, _ = served
    assert serve()[0]["gc_tuning"] is True  # `consensus serve` turns it on (Settings' own default is off)
    assert serve(CONSENSUS_GC_TUNING="0")[0]["gc_tuning"] is False
    assert Settings().gc_tuning is False


def test_a_tuned_service_freezes_start_up_and_collects_less_often_and_undoes_it_at_shutdown(make_service):
    import gc

    from service.app import SERVING_GC_THRESHOLDS

    before = gc.get_threshold()
    srv = make_service(gc_tuning=True)
    assert gc.get_threshold() == SERVING_GC_THRESHOLDS != before
    assert gc.get_freeze_count() > 10_000  # the modules, the panel and the language profiles
    with srv.client() as c:
        assert c.get("/readyz").status_code == 200
    srv.stop()
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0


def test_an_untuned_service_leaves_the_collector_alone(make_service):
    import gc

    before = gc.get_threshold()
    make_service()
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0


def test_the_serving_line_is_one_line_however_long(served):
    serve, panel = served
    _, out = serve("--port", "18332")
    assert len(f"consensus serving on http://127.0.0.1:18332 (panel: {panel})") > 120
    assert f"consensus serving on http://127.0.0.1:18332 (panel: {panel})\n" in out


# -- 3. JSON nested too deep ----------------------------------------------------------------------------------------
def test_json_nested_too_deep_is_invalid_json_with_the_routes_own_status(service):
    deep = b"[" * 10_000 + b"]" * 10_000
    body = b'{"question": "q?", "language": ' + deep + b"}"
    with service.client() as c:
        for path, status in (("/v1/debates", 422), ("/v1/chat/completions", 400)):
            r = c.post(path, content=body, headers={"Content-Type": "application/json"})
            assert r.status_code == status, r.text
            assert r.json()["error"]["param"] == "body" and "nested too deeply" in r.json()["error"]["message"]
            other = c.post(path, content=b"{not json", headers={"Content-Type": "application/json"})
            assert other.status_code == status  # the status of any other invalid JSON on that route
        assert c.get("/v1/debates").json()["data"] == []


# -- 4. /metrics ------------------------------------------------------------------------------------------------------
def make_key(srv, name: str, origins: tuple[str, ...] = ()) -> str:
    """A key made in the server's store, then a forced look (so these tests do not depend on the fix of 1)."""

    async def go() -> str:
        plain, _row = await create_key(srv.services.store, name, list(origins))
        await srv.services.keys.refresh(force=True)
        return plain

    return asyncio.run_coroutine_threadsafe(go(), srv.server_loop).result(10)


def test_metrics_need_a_secret_key_once_keys_exist(make_service):
    srv = make_service()
    with srv.client() as c:
        assert c.get("/metrics").status_code == 200  # open service: loopback, no keys
        secret, public = make_key(srv, "ops"), make_key(srv, "site", ("https://site.example",))
        refused = c.get("/metrics")
        assert refused.status_code == 401 and "consensus_llm_calls_total" not in refused.text
        assert c.get("/metrics", headers={"Authorization": f"Bearer {secret}"}).status_code == 200
        widget = c.get("/metrics", headers={"Authorization": f"Bearer {public}", "Origin": "https://site.example"})
        assert widget.status_code == 403 and widget.json()["error"]["code"] == "metrics_not_allowed"
        assert c.get("/healthz").status_code == 200 and c.get("/readyz").status_code == 200


def test_metrics_take_the_metrics_token(make_service):
    token = "m-" + "t" * 30
    srv = make_service(metrics_token=token)
    with srv.client() as c:
        assert c.get("/metrics").status_code == 401  # a token is set: even an open service asks for it
        ok = c.get("/metrics", headers={"Authorization": f"Bearer {token}"})
        assert ok.status_code == 200 and "consensus_debates_in_flight" in ok.text
        make_key(srv, "ops")
        assert c.get("/metrics", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        assert c.get("/metrics", headers={"Authorization": "Bearer m-wrong"}).status_code == 401
    with pytest.raises(ValueError, match="CONSENSUS_METRICS_TOKEN must be at least 16 characters"):
        Settings(metrics_token="short")


# -- 5. failed authentication -----------------------------------------------------------------------------------------
class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_failed_authentications_are_logged_counted_and_throttled_per_address(make_service):
    srv = make_service(auth_failures_per_minute=5)
    secret = make_key(srv, "backend")
    wrong = "sk_" + "x" * 32
    logger = logging.getLogger("consensus.service")
    seen = Records()
    logger.addHandler(seen)
    before = REGISTRY.get_sample_value("consensus_auth_failures_total", {"reason": "invalid_api_key"}) or 0
    try:
        with srv.client() as c:
            codes = [c.get("/v1/debates", headers={"Authorization": f"Bearer {wrong}"}).status_code for _ in range(5)]
            assert codes == [401] * 5
            throttled = c.get("/v1/debates", headers={"Authorization": f"Bearer {wrong}"})
            assert throttled.status_code == 429 and int(throttled.headers["Retry-After"]) >= 1
            assert throttled.json()["error"]["code"] == "auth_throttled"
            # While throttled a right key is refused too: answering it would tell a guesser which guess was right.
            assert c.get("/v1/debates", headers={"Authorization": f"Bearer {secret}"}).status_code == 429
    finally:
        logger.removeHandler(seen)
    failures = [r for r in seen.records if r.getMessage().startswith("authentication failed")]
    assert len(failures) == 5
    assert all(r.client == "127.0.0.1" and r.key_start == "sk_xxxx" for r in failures)  # type: ignore[attr-defined]
    assert not any(wrong in r.getMessage() or wrong in str(r.__dict__) for r in seen.records)
    after = REGISTRY.get_sample_value("consensus_auth_failures_total", {"reason": "invalid_api_key"})
    assert after == before + 5
    from service.security import key_start

    assert key_start("sk_short") == "sk" and key_start(wrong) == "sk_xxxx"  # a short key is not logged nearly whole


# -- 6. the deadline belongs to the debate ------------------------------------------------------------------------------
def test_a_debate_resumed_after_its_deadline_makes_no_more_calls_and_ends_with_what_it_has(
    make_service, stub, tmp_path
):
    script_hang_in_round_1(stub)
    panel = stub_panel(stub, deadline_s=30)
    srv = make_service(panel=panel, shutdown_grace_s=0)
    with srv.client() as c:
        debate_id = c.post("/v1/debates", json={"question": "2+2?"}).json()["id"]
        wait_round_1_in_flight(c, stub, debate_id)
    srv.stop()  # round 1 is cut short; the debate stays running in the store
    db = sqlite3.connect(tmp_path / "svc.db")
    started, deadline = db.execute(
        "SELECT json_extract(result, '$.timing.started_at'), deadline_at FROM debates"
    ).fetchone()
    assert abs((_utc(deadline) - _utc(started)).total_seconds() - 30) < 0.01  # stored when it was accepted
    with db:  # time passes beyond its end while no replica runs it
        db.execute("UPDATE debates SET deadline_at = ?", ((datetime.now(UTC) - timedelta(seconds=1)).isoformat(),))
    db.close()
    hits = stub.hits()
    again = make_service(panel=panel)
    with again.client() as c:
        final = wait_status(c, debate_id)
    assert final["status"] == "degraded" and "deadline of 30 s ran out" in final["reason"]
    assert [r["index"] for r in final["rounds"]] == [0] and final["consensus"]["fallback"] is True
    assert stub.hits() == hits  # not round 1 again, nor a synthesis: its time was spent


def _utc(text: str) -> datetime:
    t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t


# -- 7. the lease before each provider call --------------------------------------------------------------------------
async def test_a_debate_leased_to_another_replica_makes_no_provider_call(tmp_path):
    store = Store(f"sqlite+aiosqlite:///{tmp_path}/l.db")
    await store.migrate()
    panel = make_panel(max_rounds=1)
    provider = ScriptedProvider()
    runner = Runner(store, panel, provider, Settings(database_url=store.url, replica_id="me"))
    try:
        result = new_result("2+2?", panel, DebateOptions())
        await store.create_debate(result, {}, None, None, owner="me", lease_s=30)
        async with store.engine.begin() as conn:  # adopted by another replica while this one stalled
            await conn.exec_driver_sql("UPDATE debates SET lease_owner = 'other'")
        assert await asyncio.wait_for(runner.launch(result), 10) is None
        assert provider.calls == []  # today's code made the three opening calls before its first write failed
        row = await store.get(result.id)
        assert (row.status, row.lease_owner, row.last_seq) == ("running", "other", 0)  # nothing written here
        # The heartbeat: a renewal that finds a lease gone drops it, so the debate's next call checks again.
        kept = new_result("3+3?", panel, DebateOptions())
        await store.create_debate(kept, {}, None, None, owner="me", lease_s=30)
        runner.tasks.update({result.id: asyncio.Future(), kept.id: asyncio.Future()})
        runner.held(result.id, 0.0), runner.held(kept.id, 0.0)
        await runner._renew()
        assert set(runner.leases) == {kept.id}
    finally:
        runner.tasks.clear()
        await store.close()


# -- 8. a stalled body ----------------------------------------------------------------------------------------------------
def test_a_stalled_body_gets_408_and_the_connection_closes_while_streams_go_on(make_service, stub):
    for n in ("alice", "bob", "carol"):
        stub.script(n, [{"text": ans("4"), "delay_s": 0.6}])
    srv = make_service(body_timeout_s=0.3)
    port = int(srv.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(
            b"POST /v1/debates HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n"
            b'\r\n{"question": '
        )
        got = b""
        while chunk := s.recv(65536):  # until the server closes the connection
            got += chunk
    head, _, body = got.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 ") and b"connection: close" in head.lower()
    assert json.loads(body)["error"]["code"] == "body_timeout" and json.loads(body)["error"]["param"] == "body"
    with srv.client() as c:  # a stream long past the body timeout is not cut: the timeout is for the body only
        debate_id = c.post("/v1/debates", json={"question": "2+2?"}).json()["id"]
        with c.stream("GET", f"/v1/debates/{debate_id}/events") as r:
            text = "".join(r.iter_text())
    assert "event: debate.completed" in text
    assert wait_status(srv.client(), debate_id)["status"] == "completed"
