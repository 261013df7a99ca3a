"""The MCP server through the `mcp` SDK's own client: `consensus mcp` spawned on stdio, and the service's /mcp
under uvicorn, both on panels of the loopback stub (CLI or service -> engine -> LiteLLM -> stub)."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import pytest
from mcp import Client, MCPError, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

from consensus.types import DebateResult, DebateStatus
from service.store import Store
from tests.api.conftest import stub_panel
from tests.api.test_security import make_key
from tests.helpers import SEATS, ans, write_panel

ROOT = Path(__file__).resolve().parents[2]


def script_paris(stub) -> None:
    """Openings 2 to 1, then all agree on round 1; alice synthesizes."""
    stub.script("alice", [{"text": ans("Paris")}, {"text": ans("Paris")}, {"text": "The panel agrees: Paris."}])
    stub.script("bob", [{"text": ans("Paris")}])
    stub.script("carol", [{"text": ans("Lyon")}, {"text": ans("Paris")}])


def script_all(stub, step: dict[str, Any]) -> None:
    for name in SEATS:
        stub.script(name, [step])


class Progress:
    """A progress callback that keeps what it was told."""

    def __init__(self) -> None:
        self.seen: list[tuple[float, float | None, str | None]] = []
        self.changed = anyio.Event()

    async def __call__(self, progress: float, total: float | None, message: str | None) -> None:
        self.seen.append((progress, total, message))
        self.changed.set()
        self.changed = anyio.Event()

    async def wait_for(self, n: int) -> list[tuple[float, float | None, str | None]]:
        """Over a real transport a notification can land just after the result: wait a moment for it."""
        with anyio.move_on_after(5):
            while len(self.seen) < n:
                await self.changed.wait()
        return self.seen


async def polled(check: Callable[[], Any], seconds: float = 30) -> None:
    """Until check() holds (the stub and the REST API are read from outside the client)."""
    for _ in range(int(seconds / 0.05)):
        if await check():
            return
        await anyio.sleep(0.05)
    raise AssertionError(f"still not so after {seconds:g} s")


def started_id(progress: Progress) -> str:
    """The debate's id, from the first notification ("debate <id> started")."""
    assert progress.seen and progress.seen[0][0] == 0, progress.seen
    message = progress.seen[0][2] or ""
    assert message.startswith("debate ") and message.endswith(" started"), message
    return message.split()[1]


async def ask_paris_with_progress(client: Client) -> dict[str, Any]:
    progress = Progress()
    r = await client.call_tool("ask_panel", {"question": "What is the capital of France?"}, progress_callback=progress)
    assert not r.is_error, r.content
    out = r.structured_content
    assert out is not None
    assert out["status"] == "completed" and out["consensus"] == "The panel agrees: Paris."
    assert out["agreement"] == 1.0 and out["agreement_label"] == "100%" and out["majority"] == "Paris"
    assert [(a["panelist"], a["final_answer"]) for a in out["answers"]] == [(n, "Paris") for n in SEATS]
    assert out["rounds"] == 2 and out["source"] == "synthesis" and out["checks"] and out["dissent"] == []
    assert "The panel agrees: Paris." in r.content[0].text and out["id"] in r.content[0].text
    # As it starts (with its id), after each round, after the synthesis: rising, out of max_rounds + 2.
    assert await progress.wait_for(4) == [
        (0, 3, f"debate {out['id']} started"),
        (1, 3, "openings done: agreement 67%"),
        (2, 3, "debate round 1 done: agreement 100%"),
        (3, 3, "consensus written (agreement 100%)"),
    ]
    return out


async def assert_bad_arguments_are_tool_errors(client: Client) -> None:
    """Each is a tool error naming its field, and the session goes on."""
    for args, needle in (
        ({"rounds": 1}, "question"),
        ({"question": "q?", "rounds": 99}, "rounds"),
        ({"question": "q?", "rounds": "many"}, "rounds"),
        ({"question": "   "}, "question: is empty"),
        ({"question": "q?", "language": "zz-!!"}, "language: 'zz-!!' is not a language code"),
        ({"question": "q?", "follow_up_of": "0" * 32}, "follow_up_of: no debate"),
        ({"question": "q?", "follow_up_of": ""}, "follow_up_of"),
        ({"question": "q?", "follow_up_of": 7}, "follow_up_of"),
        ({"question": "q?", "follow_up_of": "x" * 65}, "follow_up_of"),
        ({"question": "q?", "colour": "red"}, "unknown argument(s) 'colour'"),
    ):
        r = await client.call_tool("ask_panel", args)
        assert r.is_error and needle in r.content[0].text, (args, r.content)
    r = await client.call_tool("get_debate", {})
    assert r.is_error and "id" in r.content[0].text


async def follow_up(client: Client, stub, of: str, question: str = "How many people live there?") -> dict[str, Any]:
    """A follow-up of the Paris debate `of`: each panelist is shown the earlier question and its consensus."""
    stub.reset()
    stub.script("alice", [{"text": ans("2.1 million")}, {"text": "About 2.1 million people."}])
    for name in SEATS[1:]:
        stub.script(name, [{"text": ans("2.1 million")}])
    r = await client.call_tool("ask_panel", {"question": question, "follow_up_of": of, "rounds": 0})
    assert not r.is_error, r.content
    out = r.structured_content
    assert out is not None and out["status"] == "completed" and out["consensus"] == "About 2.1 million people."
    assert out["id"] != of and out["question"] == question
    for name in SEATS:
        opening = json.dumps(stub.requests(name)[0]["messages"])
        assert "What is the capital of France?" in opening and "The panel agrees: Paris." in opening, name
    return out


async def assert_failed_debate_is_a_tool_error(client: Client, stub) -> None:
    """Every seat refuses (401): the debate fails, and the call is a tool error with the reason."""
    stub.reset()
    script_all(stub, {"fault": "401"})
    r = await client.call_tool("ask_panel", {"question": "Is this going to work?", "rounds": 0})
    assert r.is_error
    text = r.content[0].text
    assert "No consensus: the debate failed (fewer than 2 panelists answered" in text and "auth" in text, text
    assert r.structured_content is not None and r.structured_content["status"] == "failed"
    assert stub.hits() == dict.fromkeys(SEATS, 1)  # a 401 is not retried


SLOW_S = 1.0  # how long each opening takes in the cancelled call


async def cancel_once_asked(client: Client, stub) -> str:
    """Call ask_panel on seats whose openings take SLOW_S and disagree, cancel the call once every opening reached
    the stub, and check the debate stopped there: had it gone on, round 1 would reach the stub once the openings
    came back. The debate's id."""
    stub.reset()
    for name, first in zip(SEATS, ("4", "5", "6"), strict=True):
        stub.script(name, [{"text": ans(first), "delay_s": SLOW_S}, {"text": ans("4")}])
    progress = Progress()
    async with anyio.create_task_group() as tg:

        async def call() -> None:
            await client.call_tool("ask_panel", {"question": "What is 2 + 2?"}, progress_callback=progress)
            raise AssertionError("the call returned")

        tg.start_soon(call)

        async def every_opening_asked() -> bool:
            return stub.hits() == dict.fromkeys(SEATS, 1) and bool(progress.seen)

        await polled(every_opening_asked)
        tg.cancel_scope.cancel()
    await anyio.sleep(2 * SLOW_S + 0.5)  # the openings would have come back, and round 1 started
    assert stub.hits() == dict.fromkeys(SEATS, 1), "the debate went on after its call was cancelled"
    return started_id(progress)


async def outcome_of(client: Client, debate_id: str) -> dict[str, Any]:
    r = await client.call_tool("get_debate", {"id": debate_id})
    assert not r.is_error and r.structured_content is not None, r.content
    return r.structured_content


# -- stdio: `consensus mcp` ---------------------------------------------------------------------------------------
async def test_stdio_server_runs_debates_reports_progress_and_keeps_the_session(tmp_path, stub):
    """One `consensus mcp` process: tools listed, a debate with progress, get_debate and debate://, follow-ups,
    bad arguments, a cancelled call, a failed debate; the session outlives each error."""
    store_url = f"sqlite+aiosqlite:///{tmp_path}/store.db"  # made by the test midway: a lookup makes no store
    panel_file = write_panel(tmp_path / "panel.toml", stub_panel(stub))
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "consensus", "mcp", "--panel-file", str(panel_file)],
        env={"LITELLM_LOCAL_MODEL_COST_MAP": "True", "DATABASE_URL": store_url},
        cwd=ROOT,
    )
    script_paris(stub)
    with (tmp_path / "stderr.txt").open("w+") as errlog:
        try:
            async with Client(stdio_client(params, errlog=errlog)) as client:
                tools = {t.name: t for t in (await client.list_tools()).tools}
                assert set(tools) == {"ask_panel", "get_debate"}
                assert set(tools["ask_panel"].input_schema["properties"]) == {
                    "question",
                    "rounds",
                    "language",
                    "follow_up_of",
                }
                assert tools["ask_panel"].input_schema["required"] == ["question"]
                out_fields = set((tools["ask_panel"].output_schema or {})["properties"])
                assert {"consensus", "agreement", "agreement_label", "answers", "dissent", "claims"} <= out_fields
                assert {"checks", "source", "id", "permalink"} <= out_fields
                templates = (await client.list_resource_templates()).resource_templates
                assert [t.uri_template for t in templates] == ["debate://{debate_id}"]

                done = await ask_paris_with_progress(client)
                assert done["permalink"] is None  # no page serves a stdio server's debates
                assert await outcome_of(client, done["id"]) == done
                record = json.loads((await client.read_resource(f"debate://{done['id']}")).contents[0].text)
                assert record["id"] == done["id"] and [r["index"] for r in record["rounds"]] == [0, 1]
                missing = await client.call_tool("get_debate", {"id": "0" * 32})
                assert missing.is_error and "no debate" in missing.content[0].text
                with pytest.raises(MCPError, match="no debate"):
                    await client.read_resource("debate://nothing-here")

                await assert_bad_arguments_are_tool_errors(client)
                assert not (tmp_path / "store.db").exists()

                # A follow-up of a debate this process ran: its thread stays in memory, and so does the next one's.
                second = await follow_up(client, stub, done["id"])
                assert not (tmp_path / "store.db").exists()
                await follow_up(client, stub, second["id"], "And in 1900?")
                assert "How many people live there?" in json.dumps(stub.requests("bob")[0]["messages"])

                # A follow-up of a debate in the local store (as `consensus ask --follow-up`): stored in its thread.
                stored_id = await store_a_finished_debate(store_url, record)
                third = await follow_up(client, stub, stored_id)
                fourth = await follow_up(client, stub, third["id"], "And in 1900?")  # read back from the store
                assert "How many people live there?" in json.dumps(stub.requests("bob")[0]["messages"])
                assert await stored_thread(store_url, stored_id) == [
                    (stored_id, None, "completed"),
                    (third["id"], stored_id, "completed"),
                    (fourth["id"], third["id"], "completed"),
                ]

                cancelled_id = await cancel_once_asked(client, stub)
                cancelled = await outcome_of(client, cancelled_id)
                assert cancelled["status"] == "cancelled" and cancelled["reason"] == "cancelled by the client"
                r = await client.call_tool("ask_panel", {"question": "q?", "follow_up_of": cancelled_id})
                assert r.is_error and "follow_up_of: that debate has no consensus to follow (cancelled)" in (
                    r.content[0].text
                )

                await assert_failed_debate_is_a_tool_error(client, stub)
        finally:
            errlog.seek(0)
            sys.stderr.write(errlog.read())


async def store_a_finished_debate(url: str, record: dict[str, Any]) -> str:
    """The finished debate `record` under a new id in the store at `url`, as the service stores one; its id."""
    result = DebateResult.model_validate({**record, "id": uuid.uuid4().hex})
    store = Store(url)
    try:
        await store.migrate()
        running = result.model_copy(update={"status": DebateStatus.running})
        await store.create_debate(running, {"question": result.question}, None, None, "test", 5.0)
        await store.finish(result.id, result, [], "test")
    finally:
        await store.close()
    return result.id


async def stored_thread(url: str, debate_id: str) -> list[tuple[str, str | None, str]]:
    """The thread of `debate_id` in the store at `url`: (id, the debate it follows, status) of each, in order."""
    store = Store(url)
    try:
        rows = await store.thread(debate_id)
    finally:
        await store.close()
    return [(r.id, (r.request or {}).get("follow_up_of"), r.status) for r in rows]


# -- HTTP: the service's /mcp ------------------------------------------------------------------------------------


def mcp_client(srv, key: str | None, answers: list[httpx2.Response] | None = None, mode: str = "auto") -> Client:
    """The SDK's client on the service's /mcp, with the key as a bearer token; `answers` keeps every HTTP
    response it gets."""

    async def keep(response: httpx2.Response) -> None:
        if answers is not None:
            await response.aread()
            answers.append(response)

    headers = {"Authorization": f"Bearer {key}"} if key else {}
    http = httpx2.AsyncClient(
        headers=headers,
        follow_redirects=True,
        timeout=httpx2.Timeout(30, read=300),
        event_hooks={"response": [keep]} if answers is not None else {},
    )
    return Client(streamable_http_client(f"{srv.url}/mcp", http_client=http), mode=mode)


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_http_mcp_runs_debates_with_progress_for_the_callers_key_only(make_service, stub, mode):
    """Either protocol era: a debate with progress, read back by its key only."""
    srv = make_service()
    mine, theirs = make_key(srv, "mine"), make_key(srv, "theirs")
    script_paris(stub)
    async with mcp_client(srv, mine, mode=mode) as client:
        assert {t.name for t in (await client.list_tools()).tools} == {"ask_panel", "get_debate"}
        done = await ask_paris_with_progress(client)
        assert done["permalink"] == f"/d/{done['id']}"
        assert await outcome_of(client, done["id"]) == done
        record = json.loads((await client.read_resource(f"debate://{done['id']}")).contents[0].text)
        assert record["status"] == "completed"
        await assert_bad_arguments_are_tool_errors(client)
        second = await follow_up(client, stub, done["id"])
        assert second["permalink"] == f"/d/{second['id']}"
    async with httpx.AsyncClient(base_url=srv.url, headers={"Authorization": f"Bearer {mine}"}) as rest:
        stored = (await rest.get(f"/v1/debates/{done['id']}")).json()
        assert stored["consensus"]["answer"] == "The panel agrees: Paris."
        thread = (await rest.get(f"/v1/threads/{done['id']}")).json()
        assert [d["id"] for d in thread["data"]] == [done["id"], second["id"]]
    # Another key learns nothing of it: the same answer as for an id that does not exist.
    async with mcp_client(srv, theirs) as client:
        r = await client.call_tool("get_debate", {"id": done["id"]})
        assert r.is_error and f"no debate {done['id']!r}" in r.content[0].text
        r = await client.call_tool("ask_panel", {"question": "And in 1900?", "follow_up_of": done["id"]})
        assert r.is_error and "follow_up_of: only the API key that started this thread" in r.content[0].text
        with pytest.raises(MCPError, match="no debate"):
            await client.read_resource(f"debate://{done['id']}")


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_http_mcp_cancelled_call_cancels_the_debate_and_a_failed_one_is_a_tool_error(make_service, stub, mode):
    srv = make_service()
    key = make_key(srv, "k")
    async with mcp_client(srv, key, mode=mode) as client:
        debate_id = await cancel_once_asked(client, stub)
        async with httpx.AsyncClient(base_url=srv.url, headers={"Authorization": f"Bearer {key}"}) as rest:
            final: dict[str, Any] = {}

            async def ended() -> bool:
                final.update((await rest.get(f"/v1/debates/{debate_id}")).json())
                return final["status"] != "running"

            await polled(ended)
        assert final["status"] == "cancelled" and final["reason"] == "cancelled by a client"
        assert (await outcome_of(client, debate_id))["status"] == "cancelled"
        assert not srv.services.runner.tasks  # nothing left running
        await assert_failed_debate_is_a_tool_error(client, stub)


def test_http_mcp_needs_a_key_like_the_rest_of_the_api(make_service, stub):
    srv = make_service()
    make_key(srv, "k")
    site = make_key(srv, "site", ("https://site.example",))
    hello = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    accept = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    with httpx.Client(base_url=srv.url) as http:
        for headers, status, code in (
            ({}, 401, "missing_api_key"),
            ({"Authorization": "Bearer sk_not-a-key"}, 401, "invalid_api_key"),
            ({"Authorization": f"Bearer {site}", "Origin": "https://elsewhere.example"}, 403, "origin_not_allowed"),
        ):
            r = http.post("/mcp", json=hello, headers={**accept, **headers})
            assert r.status_code == status and r.json()["error"]["code"] == code, (headers, r.text)
    assert stub.hits() == {}

    answers: list[httpx2.Response] = []

    async def connect_without_a_key() -> None:
        async with mcp_client(srv, None, answers) as client:
            await client.list_tools()

    with pytest.raises(Exception, match="unhandled errors|error response"):  # the SDK's client cannot connect
        asyncio.run(connect_without_a_key())
    assert answers and all(a.status_code == 401 for a in answers), [(a.status_code, a.text) for a in answers]
    assert all(a.json()["error"]["code"] == "missing_api_key" for a in answers)
