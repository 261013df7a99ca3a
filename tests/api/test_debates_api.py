"""The debates API on real uvicorn: create, wait, read, list, cancel, SSE, replay, idempotency."""

import asyncio
import json
import threading
import time

import httpx
import pytest
from httpx_sse import connect_sse

from service.routes_debates import wants_sse
from tests.api.conftest import ans, script_hang_in_round_1, wait_round_1_in_flight, wait_status


def script_agree(stub, final="4", delay=0.0):
    for n in ("alice", "bob", "carol"):
        stub.script(n, [{"text": ans(final), "delay_s": delay}])


def test_post_202_then_get_result(stub, service):
    script_agree(stub)
    with service.client() as c:
        r = c.post("/v1/debates", json={"question": "What is 2+2?"})
        assert r.status_code == 202
        body = r.json()
        assert body["status"] == "running" and body["links"]["events"] == f"/v1/debates/{body['id']}/events"
        assert r.headers["location"] == f"/v1/debates/{body['id']}"
        final = wait_status(c, body["id"])
        assert final["status"] == "completed" and final["consensus"]["majority"] == "4"
        assert set(final["answers"]) == {"alice", "bob", "carol"}
        listed = c.get("/v1/debates", params={"limit": 5}).json()["data"]
        assert listed[0]["id"] == body["id"] and listed[0]["status"] == "completed"


def test_wait_true_returns_the_debate_result(stub, service):
    script_agree(stub, "Paris")
    with service.client() as c:
        r = c.post("/v1/debates?wait=true", json={"question": "Capital of France?", "rounds": 0, "language": "fr"})
        assert r.status_code == 200
        d = r.json()
        assert d["status"] == "completed" and d["language"] == "fr" and d["max_rounds"] == 0
        assert "French" in stub.requests("bob")[0]["messages"][0]["content"]


def test_an_empty_language_means_detect_it_as_documented(stub, service):
    script_agree(stub, "Paris")
    with service.client() as c:
        described = c.get("/openapi.json").json()["components"]["schemas"]["DebateRequest"]["properties"]["language"]
        assert '""' in described["description"] and "detected" in described["description"]
        question = "Quelle est la capitale de la France et pourquoi ?"
        for language in ("", None):
            d = c.post("/v1/debates?wait=true", json={"question": question, "rounds": 0, "language": language}).json()
            assert d["status"] == "completed" and d["language"] == "fr"


def test_sse_stream_on_post_has_ids_and_ends_with_the_result(stub, service):
    script_agree(stub)
    with (
        service.client() as c,
        connect_sse(c, "POST", "/v1/debates", json={"question": "2+2?"}, headers={"Accept": "text/event-stream"}) as es,
    ):
        events = [(e.id, e.event, json.loads(e.data)) for e in es.iter_sse() if e.data]
    types = [t for _, t, _ in events]
    assert types[0] == "debate.started" and types[-1] == "debate.completed"
    assert "answer.delta" in types and "answer.completed" in types and "consensus.completed" in types
    ids = [int(i) for i, _, _ in events]
    stored = [int(i) for i, t, _ in events if not t.endswith(".delta")]
    assert ids == sorted(ids) and len(set(stored)) == len(stored)  # deltas repeat the stored id before them
    seqs = [p["seq"] for _, _, p in events]
    assert seqs == sorted(set(seqs))
    assert events[-1][2]["result"]["status"] == "completed"


@pytest.mark.parametrize(
    ("accept", "sse"),
    [
        ("text/event-stream", True),
        ("application/json, text/event-stream", True),  # a tie: naming the stream asks for it
        ("text/event-stream;q=0", False),  # named only to refuse it (a substring match streamed this)
        ("application/json, text/event-stream; q=0.5", False),
        ("text/event-stream;q=0.9, */*;q=0.1", True),
        ("Text/Event-Stream ; Q=1", True),
        ("text/event-stream;q=oops", False),
        ("application/json", False),
        ("*/*", False),
        ("", False),
    ],
)
def test_accept_header_is_negotiated_by_weight(accept, sse):
    assert wants_sse(accept) is sse


def test_a_refused_event_stream_gets_json(stub, service):
    script_agree(stub)
    with service.client() as c:
        r = c.post(
            "/v1/debates", json={"question": "2+2?"}, headers={"Accept": "application/json, text/event-stream;q=0"}
        )
        assert r.status_code == 202 and r.headers["content-type"].startswith("application/json")
        wait_status(c, r.json()["id"])


def test_replay_with_last_event_id_gets_only_what_was_missed(stub, service):
    script_agree(stub)
    with service.client() as c:
        d = c.post("/v1/debates?wait=true", json={"question": "2+2?"}).json()
        with connect_sse(c, "GET", f"/v1/debates/{d['id']}/events") as es:
            full = [e for e in es.iter_sse() if e.data]
        assert full[-1].event == "debate.completed"
        cut = full[2].id
        with connect_sse(c, "GET", f"/v1/debates/{d['id']}/events", headers={"Last-Event-ID": cut}) as es:
            rest = [e for e in es.iter_sse() if e.data]
        assert [e.id for e in rest] == [e.id for e in full[3:]]
        # A resume point no event can have is refused before the 200: an EventSource then stops instead of
        # reconnecting forever to a stream the store cannot read (it overflowed the seq column mid-stream).
        for headers, params in (
            ({"Last-Event-ID": str(2**63)}, {}),
            ({"Last-Event-ID": "-"}, {}),
            ({}, {"after": 2**31}),
        ):
            r = c.get(f"/v1/debates/{d['id']}/events", headers=headers, params=params)
            assert r.status_code == 422 and r.json()["error"]["param"] in ("Last-Event-ID", "after"), r.text


def test_a_delta_resumes_from_the_last_stored_event(stub, service):
    """Deltas are not stored: their SSE id is the stored event before them, so resuming after one replays
    everything stored since (an end stored with a lower seq than the deltas, as a remote cancel does, too)."""
    script_agree(stub)
    with service.client() as c:
        with connect_sse(
            c, "POST", "/v1/debates", json={"question": "2+2?"}, headers={"Accept": "text/event-stream"}
        ) as es:
            live = [e for e in es.iter_sse() if e.data]
        assert live[-1].event == "debate.completed"
        deltas = [i for i, e in enumerate(live) if e.event.endswith(".delta")]
        assert deltas, "a watched debate streams its tokens"
        stored_id = "0"
        for e in live:
            if not e.event.endswith(".delta"):
                stored_id = e.id
                assert int(e.id) == json.loads(e.data)["seq"]
            assert e.id == stored_id
        seqs = [json.loads(e.data)["seq"] for e in live]
        assert seqs == sorted(set(seqs))  # the payload keeps every event's own seq
        last_delta = live[deltas[-1]]
        debate_id = json.loads(live[0].data)["debate_id"]
        with connect_sse(c, "GET", f"/v1/debates/{debate_id}/events", headers={"Last-Event-ID": last_delta.id}) as es:
            rest = [e for e in es.iter_sse() if e.data]
        stored_after = [e for e in live[deltas[-1] :] if not e.event.endswith(".delta")]
        assert [(e.id, e.event) for e in rest] == [(e.id, e.event) for e in stored_after]


def test_disconnecting_client_does_not_cancel_the_debate(stub, service):
    script_agree(stub, delay=0.5)
    with service.client() as c:
        with connect_sse(
            c, "POST", "/v1/debates", json={"question": "2+2?"}, headers={"Accept": "text/event-stream"}
        ) as es:
            first = next(e for e in es.iter_sse() if e.data)
            debate_id = json.loads(first.data)["debate_id"]
        # The stream is closed mid-debate; the debate goes on.
        final = wait_status(c, debate_id)
        assert final["status"] == "completed"


def test_live_follow_gets_events_as_they_happen(stub, service):
    for n, d in (("alice", 0.2), ("bob", 0.6), ("carol", 1.0)):
        stub.script(n, [{"text": ans("4"), "delay_s": d}])
    with service.client() as c:
        debate_id = c.post("/v1/debates", json={"question": "2+2?", "rounds": 0}).json()["id"]
        seen = []
        with connect_sse(c, "GET", f"/v1/debates/{debate_id}/events") as es:
            for e in es.iter_sse():
                if e.data:
                    seen.append((time.monotonic(), e.event, json.loads(e.data).get("panelist")))
        completions = [(t, p) for t, ev, p in seen if ev == "answer.completed"]
        assert [p for _, p in completions] == ["alice", "bob", "carol"]
        assert completions[2][0] - completions[0][0] > 0.5  # they arrived live, not in one batch


def test_idempotency_key_returns_the_same_debate(stub, service):
    script_agree(stub)
    with service.client() as c:
        h = {"Idempotency-Key": "abc-123"}
        a = c.post("/v1/debates", json={"question": "2+2?"}, headers=h).json()
        b = c.post("/v1/debates", json={"question": "2+2?"}, headers=h).json()
        assert a["id"] == b["id"]
        wait_status(c, a["id"])
        assert stub.hits("bob") == 1  # one debate ran, not two
        clash = c.post("/v1/debates", json={"question": "3+3?"}, headers=h)
        assert clash.status_code == 409 and clash.json()["error"]["param"] == "Idempotency-Key"


def test_cancel_a_running_debate(stub, service):
    script_agree(stub, delay=3)
    with service.client() as c:
        debate_id = c.post("/v1/debates", json={"question": "2+2?"}).json()["id"]
        time.sleep(0.3)
        r = c.post(f"/v1/debates/{debate_id}/cancel")
        assert r.status_code == 200 and r.json()["status"] == "cancelled"
        assert c.get(f"/v1/debates/{debate_id}").json()["status"] == "cancelled"
        again = c.post(f"/v1/debates/{debate_id}/cancel")
        assert again.status_code == 409


def test_a_debate_cancelled_after_its_first_round_keeps_that_round_and_the_panels_answers(stub, service):
    script_hang_in_round_1(stub)
    with service.client() as c:
        debate_id = c.post("/v1/debates", json={"question": "2+2?"}).json()["id"]
        wait_round_1_in_flight(c, stub, debate_id)
        assert c.post(f"/v1/debates/{debate_id}/cancel").json()["status"] == "cancelled"
        final = c.get(f"/v1/debates/{debate_id}").json()
    assert (final["status"], final["reason"]) == ("cancelled", "cancelled by a client")
    assert [r["index"] for r in final["rounds"]] == [0]  # the checkpoint the engine handed over after round 0
    assert {n: a["final_answer"] for n, a in final["answers"].items()} == {"alice": "4", "bob": "5", "carol": "6"}


def test_unknown_debate_is_404_in_the_error_shape(service):
    with service.client() as c:
        r = c.get("/v1/debates/nope")
        assert r.status_code == 404 and r.json()["error"]["type"] == "not_found_error"
        for path in (
            "/v1/debates/a%00b",
            "/v1/debates/%00/events",
            "/v1/debates/x%20y",
            "/d/%00",
            "/v1/debates/" + "a" * 65,
        ):
            assert c.get(path).status_code == 404, path  # never sent to the store (PostgreSQL refused a NUL: 500)
        assert c.post("/v1/debates/%00/cancel").status_code == 404


def test_health_ready_metrics(stub, service):
    script_agree(stub)
    stub.script("bob", [{"fault": "500"}, {"text": ans("4")}])  # one retry

    def retries(text: str) -> float:
        line = next(
            (x for x in text.splitlines() if x.startswith('consensus_llm_retries_total{model="openai/bob"}')), None
        )
        return float(line.split()[-1]) if line else 0.0

    with service.client() as c:
        assert c.get("/healthz").json() == {"status": "ok"}
        assert c.get("/readyz").json()["status"] == "ready"
        before = retries(c.get("/metrics").text)
        c.post("/v1/debates?wait=true", json={"question": "2+2?"})
        m = c.get("/metrics").text
        assert 'consensus_debates_total{status="completed"}' in m
        assert 'consensus_llm_calls_total{model="openai/bob",outcome="ok"}' in m
        assert "consensus_llm_latency_seconds_bucket" in m and "consensus_tokens_total" in m
        assert retries(m) - before == 1  # the 500 that was retried is counted, not only the final answer


def test_metrics_count_each_call_when_it_happens_not_when_the_debate_ends(stub, service):
    for n, opening in (("alice", "1"), ("bob", "2"), ("carol", "3")):  # a disagreement: a slow debate round runs
        stub.script(n, [{"text": ans(opening)}, {"text": ans("4"), "delay_s": 1.5}])

    def calls(text: str) -> float:
        line = next(
            (
                x
                for x in text.splitlines()
                if x.startswith('consensus_llm_calls_total{model="openai/carol",outcome="ok"}')
            ),
            None,
        )
        return float(line.split()[-1]) if line else 0.0

    with service.client() as c:
        before = calls(c.get("/metrics").text)
        debate_id = c.post("/v1/debates", json={"question": "2+2?"}).json()["id"]
        deadline = time.monotonic() + 10
        while calls(c.get("/metrics").text) == before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert calls(c.get("/metrics").text) == before + 1  # carol's opening, counted while round 1 still runs
        assert c.get(f"/v1/debates/{debate_id}").json()["status"] == "running"
        assert wait_status(c, debate_id)["status"] == "completed"
        assert calls(c.get("/metrics").text) == before + 2  # and its debate answer (alice synthesizes), once each


def test_concurrent_posts_all_complete(stub, service):
    script_agree(stub, delay=0.2)
    results = []

    def one():
        with httpx.Client(base_url=service.url, timeout=30) as c:
            results.append(c.post("/v1/debates?wait=true", json={"question": "2+2?"}).json()["status"])

    threads = [threading.Thread(target=one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == ["completed"] * 8


def test_a_replica_never_adopts_a_debate_it_is_still_running(stub, service):
    # Under load a heartbeat can renew a lease late; the expired row then looks orphaned to its own
    # replica. Claiming it again is fine (the lease is ours), resuming it would run it twice.
    for n in ("alice", "bob", "carol"):
        stub.script(n, [{"text": ans("4"), "delay_s": 1.5}, {"text": ans("4")}])
    srv = service
    with srv.client() as c:
        debate_id = c.post("/v1/debates", json={"question": "2+2?"}).json()["id"]
        runner, store = srv.services.runner, srv.services.store

        async def expire_and_adopt() -> tuple[bool, int]:
            from sqlalchemy import update

            from service.store import DebateRow

            async with store.sessions.begin() as s:
                await s.execute(update(DebateRow).where(DebateRow.id == debate_id).values(lease_until=None))
            task = runner.tasks[debate_id]
            await runner.adopt_orphans()
            return runner.tasks.get(debate_id) is task, len(runner.tasks)

        same_task, running = asyncio.run_coroutine_threadsafe(expire_and_adopt(), srv.server_loop).result(10)
        assert same_task and running == 1
        final = wait_status(c, debate_id)
    assert final["status"] == "completed"
    assert [stub.hits(n) for n in ("alice", "bob", "carol")] == [2, 1, 1]  # 3 openings + 1 synthesis, once
    row = asyncio.run_coroutine_threadsafe(store.get(debate_id), srv.server_loop).result(10)
    assert row.lease_owner == srv.services.settings.replica_id or row.lease_owner is None


def test_shutting_down_ends_streams_and_waits_without_waiting_for_the_debate(stub, make_service):
    """What SIGTERM triggers (runner.drain): a ?wait request gets a 503 naming where to look, an SSE stream
    ends cleanly; the debate itself goes on to its checkpoint."""
    for n in ("alice", "bob", "carol"):
        stub.script(n, [{"fault": "hang"}])
    service = make_service(shutdown_grace_s=0.2)
    out: dict[str, object] = {}

    def wait_for_it() -> None:
        with service.client() as c:
            out["wait"] = c.post("/v1/debates?wait=true", json={"question": "2+2?", "rounds": 0})

    t = threading.Thread(target=wait_for_it)
    t.start()
    with service.client() as c:
        deadline = time.monotonic() + 10
        while not c.get("/v1/debates").json()["data"] and time.monotonic() < deadline:
            time.sleep(0.05)
        debate_id = c.get("/v1/debates").json()["data"][0]["id"]
        with connect_sse(c, "GET", f"/v1/debates/{debate_id}/events") as es:
            seen = []
            for e in es.iter_sse():
                if not e.data:  # the retry/keep-alive frame
                    continue
                seen.append(e.event)
                if e.event == "debate.started":
                    service.services.runner.drain()
        t.join(10)
        assert seen[0] == "debate.started" and "debate.completed" not in seen  # ended, not cut: no exception
        r = out["wait"]
        assert r.status_code == 503 and r.json()["error"]["code"] == "shutting_down"
        assert r.headers["Location"] == f"/v1/debates/{debate_id}" and r.headers["Retry-After"]
        assert c.get(f"/v1/debates/{debate_id}").json()["status"] == "running"


def test_the_service_loads_what_its_calls_need_before_it_serves(monkeypatch, stub):
    """LiteLLM was imported lazily by the first debate, on the event loop: every request waited ~8 s for it
    (a 503 took 9 s). The service loads it while starting, and only when a seat uses it."""
    from consensus.providers import litellm as litellm_transport
    from service.app import build_provider
    from tests.api.conftest import stub_panel

    loaded: list[str] = []
    monkeypatch.setattr(litellm_transport, "load", lambda: loaded.append("litellm"))
    panel = stub_panel(stub)
    seats = [s.model_copy(update={"transport": "openai-compatible"}) for s in panel.panelists]
    build_provider(panel.model_copy(update={"panelists": seats, "synthesizer": seats[0]}))
    assert loaded == []
    build_provider(stub_panel(stub))
    assert loaded == ["litellm"]


def test_no_route_runs_a_plain_function_in_a_worker_thread(service):
    """FastAPI runs a `def` dependency in a worker thread: `services` was one, four thread hops per request,
    and a burst of 300 requests queued for the pool (admission 503s took ~1 s; ~0.5 s without)."""
    import inspect

    from fastapi.routing import APIRoute

    def calls(dependant):
        for d in dependant.dependencies:
            yield d.call
            yield from calls(d)

    def api_routes(routes):
        for route in routes:
            if isinstance(route, APIRoute):
                yield route
            elif hasattr(route, "original_router"):  # FastAPI >= 0.160 keeps an included router as one entry
                yield from api_routes(route.original_router.routes)

    checked = list(api_routes(service.app.routes))
    sync = {
        f"{route.path}: {call.__name__}"
        for route in checked
        for call in calls(route.dependant)
        if call is not None and not inspect.iscoroutinefunction(call)
    }
    sync |= {
        f"{route.path}: {route.endpoint.__name__}"
        for route in checked
        if not inspect.iscoroutinefunction(route.endpoint)
    }
    assert len(checked) > 10 and sync == set()


@pytest.mark.parametrize("grace", [True, False], ids=["grace", "no-grace"])
def test_the_service_does_not_wait_for_a_straggler_unless_told_to(stub, make_service, grace):
    """Quorum grace is on by default in the service: carol's 3 s answer is late (kept, marked) while the round
    moves on after 0.2 s; with CONSENSUS_QUORUM_GRACE off the round waits for her."""
    for n in ("alice", "bob"):
        stub.script(n, [{"text": ans("4")}, {"text": "The answer is 4."}])
    stub.script("carol", [{"text": ans("4"), "delay_s": 3.0}])
    svc = make_service(quorum_grace=grace, grace_s=0.2, grace_factor=0.0)
    with svc.client() as c:
        r = c.post("/v1/debates?wait=true", json={"question": "2+2?", "rounds": 0}).json()
    opening = r["rounds"][0]["answers"]
    if grace:
        assert [a["panelist"] for a in opening] == ["alice", "bob"] and r["consensus"]["answered"] == 2
    else:
        assert sorted(a["panelist"] for a in opening) == ["alice", "bob", "carol"]
        assert not any(a["late"] for a in opening)
