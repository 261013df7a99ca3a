"""Keys, origins, CORS, rate limits, admission control and bad input — all over real HTTP."""

import asyncio
import json
import time

import pytest

from service.security import create_key
from tests.api.conftest import ans, wait_status


def make_key(srv, name, origins=()):
    async def go():
        return await create_key(srv.services.store, name, list(origins))

    fut = asyncio.run_coroutine_threadsafe(go(), srv.server_loop)
    plain, _row = fut.result(10)
    asyncio.run_coroutine_threadsafe(srv.services.keys.refresh(force=True), srv.server_loop).result(10)
    return plain


@pytest.fixture
def keyed(make_service, stub):
    for n in ("alice", "bob", "carol"):
        stub.script(n, [{"text": ans("4")}])
    srv = make_service()
    secret = make_key(srv, "backend")
    public = make_key(srv, "widget", ["https://site.example"])
    return srv, secret, public


def test_keys_are_required_once_any_exists_and_accepted_both_ways(keyed):
    srv, secret, _ = keyed
    with srv.client() as c:
        r = c.post("/v1/debates", json={"question": "2+2?"})
        assert r.status_code == 401 and r.json()["error"]["code"] == "missing_api_key"
        assert (
            c.post("/v1/debates", json={"question": "2+2?"}, headers={"Authorization": "Bearer sk_wrong"}).status_code
            == 401
        )
        ok = c.post("/v1/debates", json={"question": "2+2?"}, headers={"Authorization": f"Bearer {secret}"})
        assert ok.status_code == 202
        assert c.get(f"/v1/debates/{ok.json()['id']}", headers={"X-API-Key": secret}).status_code == 200


def test_a_key_lists_only_the_debates_started_with_it_and_a_widget_key_lists_none(keyed):
    """A widget's key sits in its page's source: listing must not show anyone else's questions. Listing by the
    widget's key showed every question its site's visitors had asked."""
    srv, secret, public = keyed
    widget = {"X-API-Key": public, "Origin": "https://site.example"}
    with srv.client() as c:
        mine = c.post("/v1/debates", json={"question": "secret plans?"}, headers={"X-API-Key": secret}).json()["id"]
        c.post("/v1/debates", json={"question": "a visitor's question?"}, headers=widget).raise_for_status()
        assert [d["id"] for d in c.get("/v1/debates", headers={"X-API-Key": secret}).json()["data"]] == [mine]
        refused = c.get("/v1/debates", headers=widget)
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "listing_not_allowed"
        assert "a visitor's question" not in refused.text
        # Reading by id stays open (share links), cancelling is for the key that started it.
        assert c.get(f"/v1/debates/{mine}", headers=widget).status_code == 200
        r = c.post(f"/v1/debates/{mine}/cancel", headers=widget)
        assert r.status_code == 403 and r.json()["error"]["code"] == "not_owner"
        assert c.get(f"/v1/debates/{mine}", headers=widget).json()["status"] != "cancelled"


def test_a_publishable_key_needs_the_cancel_token_its_starter_got(keyed, stub):
    """Every visitor of a site holds its pk_ key: only the one who started a debate can cancel it."""
    srv, secret, public = keyed
    for n in ("alice", "bob", "carol"):
        stub.script(n, [{"fault": "hang"}])
    widget = {"X-API-Key": public, "Origin": "https://site.example"}
    with srv.client() as c:
        r = c.post("/v1/debates", json={"question": "2+2?"}, headers=widget)
        token, debate_id = r.headers["X-Cancel-Token"], r.json()["id"]
        assert "x-cancel-token" in r.headers["access-control-expose-headers"].lower()  # the page's script can read it
        for headers in (widget, {**widget, "X-Cancel-Token": "guess"}):  # another visitor, same key
            r = c.post(f"/v1/debates/{debate_id}/cancel", headers=headers)
            assert r.status_code == 403 and r.json()["error"]["code"] == "cancel_token_required"
        assert c.get(f"/v1/debates/{debate_id}", headers=widget).json()["status"] == "running"
        r = c.post(f"/v1/debates/{debate_id}/cancel", headers={**widget, "X-Cancel-Token": token})
        assert r.status_code == 200 and r.json()["status"] == "cancelled"
        # A secret key's caller is the only holder of its key: no token needed, none given.
        r = c.post("/v1/debates", json={"question": "3+3?"}, headers={"X-API-Key": secret})
        assert "X-Cancel-Token" not in r.headers
        assert c.post(f"/v1/debates/{r.json()['id']}/cancel", headers={"X-API-Key": secret}).status_code == 200


def test_keys_are_stored_hashed(keyed):
    srv, secret, public = keyed
    db = srv.services.settings.database_url.split("///")[1]
    raw = open(db, "rb").read() + (open(db + "-wal", "rb").read() if __import__("os").path.exists(db + "-wal") else b"")
    assert secret.encode() not in raw and public.encode() not in raw


def test_browser_key_only_from_its_origin_with_cors_and_no_credentials(keyed):
    srv, _, public = keyed
    with srv.client() as c:
        good = {"Authorization": f"Bearer {public}", "Origin": "https://site.example"}
        r = c.post("/v1/debates", json={"question": "2+2?"}, headers=good)
        assert r.status_code == 202
        assert r.headers["access-control-allow-origin"] == "https://site.example"
        assert "access-control-allow-credentials" not in r.headers
        bad = c.post("/v1/debates", json={"question": "2+2?"}, headers={**good, "Origin": "https://evil.example"})
        assert bad.status_code == 403 and bad.json()["error"]["code"] == "origin_not_allowed"
        assert "access-control-allow-origin" not in bad.headers
        no_origin = c.post("/v1/debates", json={"question": "2+2?"}, headers={"Authorization": f"Bearer {public}"})
        assert no_origin.status_code == 403
        pre = c.options(
            "/v1/debates",
            headers={
                "Origin": "https://site.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type",
            },
        )
        assert pre.status_code == 200 and pre.headers["access-control-allow-origin"] == "https://site.example"
        pre_bad = c.options(
            "/v1/debates", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
        )
        assert pre_bad.headers.get("access-control-allow-origin") != "https://evil.example"
        # The OpenAI JS SDK in a browser sends x-stainless-* headers: its preflight failed on them.
        sdk = "authorization,content-type,x-stainless-os,x-stainless-retry-count,openai-organization"
        pre = c.options(
            "/v1/chat/completions",
            headers={
                "Origin": "https://site.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": sdk,
            },
        )
        assert pre.status_code == 200 and "x-stainless-os" in pre.headers["access-control-allow-headers"].lower()


def test_a_key_made_while_serving_works_from_a_widget_that_only_sends_preflights(make_service, stub):
    """The CORS check read the cached origins and never reloaded them; a preflight reaches no route that does,
    so a site used only through its widget was refused until a restart."""
    srv = make_service()
    make_key(srv, "backend")  # keys exist: origins are checked

    async def create() -> str:
        plain, _row = await create_key(srv.services.store, "site", ["https://new-site.example"])  # no reload
        return plain

    asyncio.run_coroutine_threadsafe(create(), srv.server_loop).result(10)  # nothing has reloaded the keys
    preflight = {
        "Origin": "https://new-site.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type",
    }
    with srv.client() as c:
        pre = c.options("/v1/debates", headers=preflight)
        assert pre.status_code == 200 and pre.headers["access-control-allow-origin"] == "https://new-site.example"
        other = c.options("/v1/debates", headers={**preflight, "Origin": "https://other.example"})
        assert other.headers.get("access-control-allow-origin") is None


def test_rate_limit_per_key_gives_429_with_retry_after(make_service, stub):
    for n in ("alice", "bob", "carol"):
        stub.script(n, [{"text": ans("4")}])
    srv = make_service(rate_limit_per_minute=2)
    with srv.client() as c:
        rs = [c.post("/v1/debates", json={"question": f"{i}+1?"}) for i in range(3)]
        codes = [r.status_code for r in rs]
        print(rs[0].text)
        assert codes == [202, 202, 429]
        r = c.post("/v1/debates", json={"question": "x?"})
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        assert r.json()["error"]["type"] == "rate_limit_error"


def test_admission_control_gives_fast_503(make_service, stub, monkeypatch):
    from service import routes_debates

    prepared = []
    real_new_result = routes_debates.new_result
    monkeypatch.setattr(
        routes_debates, "new_result", lambda *a, **kw: prepared.append(a[0]) or real_new_result(*a, **kw)
    )
    for n in ("alice", "bob", "carol"):
        stub.script(n, [{"text": ans("4"), "delay_s": 2}])
    srv = make_service(max_in_flight=2)
    with srv.client() as c:
        first = [c.post("/v1/debates", json={"question": f"{i}?"}) for i in range(2)]
        assert [r.status_code for r in first] == [202, 202]
        r = c.post("/v1/debates", json={"question": "third?"})
        assert r.status_code == 503 and r.headers["retry-after"] == "2"
        assert r.elapsed.total_seconds() < 1.0
        assert prepared == ["0?", "1?"]  # refused before its language was detected or anything was stored
        bad = c.post("/v1/debates", json={"question": "   "})  # bad input is named even at capacity
        assert bad.status_code == 422 and bad.json()["error"]["param"] == "question"
        assert len(c.get("/v1/debates?limit=10").json()["data"]) == 2
        for f in first:
            wait_status(c, f.json()["id"])


def test_a_503_at_capacity_does_not_use_up_the_callers_rate_limit(make_service, stub):
    """Busy periods drained every visitor's allowance: 202, 503, 503, then 429 though one debate ran."""
    for n in ("alice", "bob", "carol"):
        stub.script(n, [{"text": ans("4"), "delay_s": 0.5}])
    srv = make_service(max_in_flight=1, rate_limit_per_minute=2)
    with srv.client() as c:
        first = c.post("/v1/debates", json={"question": "1?"})
        busy = [c.post("/v1/debates", json={"question": f"{i}?"}).status_code for i in range(3)]
        assert first.status_code == 202 and busy == [503, 503, 503]
        wait_status(c, first.json()["id"])
        second = c.post("/v1/debates", json={"question": "2?"})
        assert second.status_code == 202, second.text  # the second of 2 per minute
        wait_status(c, second.json()["id"])
        assert c.post("/v1/debates", json={"question": "3?"}).status_code == 429


def test_an_exhausted_database_pool_is_a_503_and_a_running_debate_waits_it_out(make_service, stub):
    for n in ("alice", "bob", "carol"):
        stub.script(n, [{"text": ans("4"), "delay_s": 0.5}])
    srv = make_service(db_pool_size=1, db_pool_timeout_s=0.3)  # 1 pooled + 2 overflow connections
    loop, engine = srv.server_loop, srv.services.store.engine
    held: list = []

    async def hold() -> None:
        held.extend([await engine.connect() for _ in range(3)])

    async def release() -> None:
        for conn in held:
            await conn.close()
        held.clear()

    with srv.client() as c:
        running = c.post("/v1/debates", json={"question": "2+2?"}).json()["id"]
        asyncio.run_coroutine_threadsafe(hold(), loop).result(10)  # the debate's next writes find no connection
        try:
            r = c.post("/v1/debates", json={"question": "and 3+3?"})
            assert r.status_code == 503 and r.headers["retry-after"] == "5"
            assert r.json()["error"]["code"] == "overloaded"
            time.sleep(1.0)  # the answers arrive meanwhile: the debate's write times out at least once
        finally:
            asyncio.run_coroutine_threadsafe(release(), loop).result(10)
        assert wait_status(c, running)["status"] == "completed"  # it retried its write, it did not crash
        listed = c.get("/v1/debates").json()["data"]
    assert [d["id"] for d in listed] == [running]  # the refused one left nothing behind


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"question": ""}, 422, "question"),
        ({"question": "   "}, 422, "question"),
        ({"question": "x" * 9000}, 422, "question"),
        ({}, 422, "question"),
        ({"question": "ok?", "colour": "red"}, 422, "colour"),
        ({"question": "ok?", "language": "not a code"}, 422, "language"),
        ({"question": "ok?", "language": "zz"}, 422, "language"),
        ({"question": "ok?", "rounds": 99}, 422, "rounds"),
        ({"question": "ok?", "rounds": "two"}, 422, "rounds"),
        ({"question": "ok?", "rounds": "2"}, 422, "rounds"),  # lax parsing took these for 2 and 1
        ({"question": "ok?", "rounds": True}, 422, "rounds"),
        ({"question": 42}, 422, "question"),
        ({"question": "hi \ud800 there?"}, 422, "question"),  # a lone surrogate used to reach the store: 500
        ({"question": "nul \u0000 inside?"}, 422, "question"),  # PostgreSQL refused it: 500
        ({"question": "\u200b\u200b"}, 422, "question"),  # invisible only
        ([{"question": "ok?"}], 422, "body"),
        (None, 422, "body"),
    ],
)
def test_bad_input_names_the_field_and_stores_nothing(service, body, status, param):
    with service.client() as c:
        # Sent as written: httpx would refuse to encode a lone surrogate itself.
        r = c.post("/v1/debates", content=json.dumps(body), headers={"Content-Type": "application/json"})
        assert r.status_code == status, r.text
        assert r.json()["error"]["param"] == param
        assert c.get("/v1/debates").json()["data"] == []


def test_invalid_json_and_oversized_body(service):
    with service.client() as c:
        r = c.post("/v1/debates", content=b"{not json", headers={"Content-Type": "application/json"})
        assert r.status_code == 422 and r.json()["error"]["param"] == "body"
        r = c.post("/v1/debates", content=b'{"question": "\xff\xfe?"}', headers={"Content-Type": "application/json"})
        assert r.status_code in (400, 422) and r.json()["error"]["param"] == "body"
        for raw, says in ((b"", "required"), (b'{"question": "ok?"}', "Content-Type: application/json")):
            r = c.post("/v1/debates", content=raw, headers={"Content-Type": "text/plain"})
            assert (
                r.status_code == 422 and r.json()["error"]["param"] == "body" and says in r.json()["error"]["message"]
            )
        r = c.post("/v1/debates", json={"question": "ok?"}, headers={"Idempotency-Key": "k" * 300})
        assert r.status_code == 422 and r.json()["error"]["param"] == "Idempotency-Key"
        big = json.dumps({"question": "x" * 200_000})
        r = c.post("/v1/debates", content=big, headers={"Content-Type": "application/json"})
        assert r.status_code == 413 and r.json()["error"]["param"] == "body"
        assert c.get("/v1/debates").json()["data"] == []


def test_public_interface_without_keys_refuses_to_start(tmp_path):
    from service.app import create_app
    from service.settings import Settings
    from tests.api.conftest import stub_panel

    class S:
        api_base = "http://127.0.0.1:9/v1"

    app = create_app(Settings(host="0.0.0.0", database_url=f"sqlite+aiosqlite:///{tmp_path}/x.db"), stub_panel(S()))

    async def boot():
        async with app.router.lifespan_context(app):
            pass

    with pytest.raises(RuntimeError, match="refusing to serve on 0.0.0.0 without API keys"):
        asyncio.run(boot())


def test_serve_on_a_public_interface_without_a_live_key_is_one_clear_line(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from consensus.cli import app

    monkeypatch.setenv("CONSENSUS_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path}/k.db")
    runner = CliRunner()
    created = runner.invoke(app, ["keys", "create", "--name", "old"])
    assert created.exit_code == 0, created.output
    listed = runner.invoke(app, ["keys", "list"]).output
    key_id = next(w for w in listed.split() if len(w) == 12 and w.isalnum())
    assert runner.invoke(app, ["keys", "revoke", key_id]).exit_code == 0
    refused = runner.invoke(app, ["serve", "--host", "0.0.0.0", "--port", "1"])  # a revoked key does not count
    assert refused.exit_code == 2
    assert "--host 0.0.0.0: refusing to serve a public interface without API keys" in refused.output
    assert "Traceback" not in refused.output


def test_browser_key_on_a_same_origin_get_without_origin_header(keyed):
    srv, secret, public = keyed
    with srv.client() as c:
        d = c.post("/v1/debates", json={"question": "2+2?"}, headers={"Authorization": f"Bearer {secret}"}).json()
        auth = {"Authorization": f"Bearer {public}"}
        assert c.get(f"/v1/debates/{d['id']}", headers={**auth, "Sec-Fetch-Site": "same-origin"}).status_code == 200
        assert c.get(f"/v1/debates/{d['id']}", headers={**auth, "Sec-Fetch-Site": "cross-site"}).status_code == 403
        post = c.post("/v1/debates", json={"question": "2+2?"}, headers={**auth, "Sec-Fetch-Site": "same-origin"})
        assert post.status_code == 403  # a POST always carries Origin from a browser: none means not a browser


def test_admission_holds_under_a_burst_of_concurrent_posts(make_service, stub):
    """Concurrent POSTs cannot overshoot the in-flight limit while their rows are being stored."""
    import threading

    for n in ("alice", "bob", "carol"):
        stub.script(n, [{"text": ans("4"), "delay_s": 2}])
    srv = make_service(max_in_flight=3)
    codes = []

    def post(i):
        with srv.client() as c:
            codes.append(c.post("/v1/debates", json={"question": f"{i}?"}).status_code)

    threads = [threading.Thread(target=post, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(codes) == [202] * 3 + [503] * 9


def test_overload_is_told_apart_from_other_database_errors():
    import sqlite3

    from sqlalchemy.exc import IntegrityError, OperationalError
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    from service.store import is_overload

    locked = OperationalError("INSERT ...", {}, sqlite3.OperationalError("database is locked"))
    missing = OperationalError("SELECT ...", {}, sqlite3.OperationalError("no such table: debates"))
    assert is_overload(PoolTimeout("QueuePool limit reached")) and is_overload(locked)
    assert not is_overload(missing) and not is_overload(IntegrityError("INSERT", {}, Exception("dup")))
