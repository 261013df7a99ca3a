"""The store's group-commit writer: writes queued together commit together, each judged alone."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy.exc import IntegrityError

from consensus.engine import DebateOptions, new_result
from consensus.types import AnswerCompleted, DebateCompleted, DebateEvent, DebateStarted, ModelAnswer
from service.store import LeaseLostError, Store
from tests.api.conftest import stub_panel


class _Stub:
    api_base = "http://127.0.0.1:9/v1"


def test_a_batch_commits_the_good_writes_and_fails_only_the_bad_ones(tmp_path):
    async def go() -> None:
        store = Store(f"sqlite+aiosqlite:///{tmp_path}/s.db")
        await store.migrate()
        panel = stub_panel(_Stub())
        ids = []
        for q in ("one?", "two?", "three?"):
            result = new_result(q, panel, DebateOptions())
            await store.create_debate(result, {}, None, None, owner="me", lease_s=30)
            ids.append(result.id)
        good, other, dup = ids

        def ev(debate_id: str, seq: int) -> list[DebateEvent]:
            return [DebateStarted(seq=seq, debate_id=debate_id, data={})]

        await store.record(dup, ev(dup, 1), None, "me")
        # Queued in one go: the writer takes them as one batch.
        outcomes = await asyncio.gather(
            store.record(good, ev(good, 1), None, "me"),
            store.record(other, ev(other, 1), None, "someone-else"),  # not its lease
            store.record(dup, ev(dup, 1), None, "me"),  # seq 1 again
            return_exceptions=True,
        )
        assert outcomes[0] is None
        assert isinstance(outcomes[1], LeaseLostError) and isinstance(outcomes[2], IntegrityError)
        assert [e.seq for e in await store.events_after(good, 0)] == [1]
        assert await store.events_after(other, 0) == []
        assert [e.seq for e in await store.events_after(dup, 0)] == [1]
        assert (await store.get(good)).last_seq == 1 and (await store.get(other)).last_seq == 0
        await store.close()

    asyncio.run(go())


def test_one_debates_writes_in_a_batch_share_an_update_as_if_they_ran_one_by_one(tmp_path):
    """A round's answers land together: one UPDATE stores them all, with the last result; a write after a finish
    in the same batch is refused, as it would be alone (the finish ended the lease)."""
    from sqlalchemy import event

    async def go() -> None:
        store = Store(f"sqlite+aiosqlite:///{tmp_path}/s.db")
        await store.migrate()
        result = new_result("q?", stub_panel(_Stub()), DebateOptions())
        await store.create_debate(result, {}, None, None, owner="me", lease_s=30)
        updates: list[str] = []
        event.listen(
            store.engine.sync_engine,
            "before_cursor_execute",
            lambda _c, _cur, sql, *_a: updates.append(sql) if sql.startswith("UPDATE debates") else None,
        )
        snapshot = result.model_copy(update={"max_rounds": 7})
        done = result.model_copy(update={"status": result.status.__class__("completed")})

        def ev(seq: int) -> list[DebateEvent]:
            answer = ModelAnswer(panelist="a", model="m", round=0)
            return [AnswerCompleted(seq=seq, debate_id=result.id, round=0, panelist="a", answer=answer)]

        outcomes = await asyncio.gather(
            store.record(result.id, ev(1), None, "me"),
            store.record(result.id, ev(2), snapshot, "me"),
            store.record(result.id, ev(3), None, "me"),
            store.finish(result.id, done, ev(4), "me"),
            store.record(result.id, ev(5), None, "me"),  # after the finish: not leased any more
            return_exceptions=True,
        )
        assert outcomes[:4] == [None] * 4 and isinstance(outcomes[4], LeaseLostError)
        assert len(updates) == 2  # the four up to the finish together, the late one alone
        row = await store.get(result.id)
        assert [e.seq for e in await store.events_after(result.id, 0)] == [1, 2, 3, 4]
        assert (row.status, row.last_seq, row.lease_owner) == ("completed", 4, None)
        await store.close()

    asyncio.run(go())


def test_finish_stores_the_end_and_releases_the_lease_only_for_its_owner(tmp_path):
    async def go() -> None:
        store = Store(f"sqlite+aiosqlite:///{tmp_path}/s.db")
        await store.migrate()
        result = new_result("q?", stub_panel(_Stub()), DebateOptions())
        await store.create_debate(result, {}, None, None, owner="me", lease_s=30)
        with pytest.raises(LeaseLostError):
            await store.finish(result.id, result, [], owner="thief")
        assert (await store.get(result.id)).lease_owner == "me"
        result.status = result.status.__class__("completed")
        await store.finish(result.id, result, [DebateCompleted(seq=1, debate_id=result.id, result=result)], "me")
        row = await store.get(result.id)
        assert (row.status, row.lease_owner, row.lease_until, row.last_seq) == ("completed", None, None, 1)
        await store.close()

    asyncio.run(go())


def test_migrations_build_exactly_the_models_schema_and_upgrade_a_0001_database(tmp_path):
    """A database made by an older release upgrades in place, keeps its debates, and ends up with
    the schema the models declare (no drift between service/store.py and the migrations)."""
    from alembic import command
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlalchemy import create_engine

    from service.store import Base, _alembic_config

    url = f"sqlite:///{tmp_path}/old.db"
    sync = create_engine(url)
    with sync.begin() as conn:
        cfg = _alembic_config()
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
        conn.exec_driver_sql(
            "INSERT INTO debates (id, status, question, language, request, result, last_seq, created_at, updated_at) "
            "VALUES ('old', 'completed', 'q?', 'en', '{}', '{}', 0, '2026-01-01 00:00:00', '2026-01-01 00:00:00')"
        )

    async def go() -> None:
        store = Store(f"sqlite+aiosqlite:///{tmp_path}/old.db")
        await store.migrate()
        assert (await store.get("old")).question == "q?"
        await store.close()

    asyncio.run(go())
    with sync.connect() as conn:
        assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == "0004"
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    sync.dispose()


# Rows as the code before the event union wrote them (one DebateEvent class, its unset top-level fields left out).
TODAYS_ROWS = [
    {
        "type": "debate.started",
        "seq": 1,
        "debate_id": "D",
        "data": {"question": "q?", "language": "en", "panel": [], "max_rounds": 1},
    },
    {
        "type": "answer.completed",
        "seq": 2,
        "debate_id": "D",
        "round": 0,
        "panelist": "a",
        "answer": {
            "panelist": "a",
            "model": "m",
            "round": 0,
            "answer": "4",
            "final_answer": "4",
            "confidence": 0.9,
            "structured": True,
            "error": None,
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            "cost_usd": None,
            "latency_ms": 5,
            "attempts": 1,
        },
    },
    {
        "type": "round.completed",
        "seq": 3,
        "debate_id": "D",
        "round": 0,
        "round_result": {
            "index": 0,
            "answers": [],
            "agreement": {
                "score": 1.0,
                "kind": "number",
                "majority": "4",
                "majority_panelists": ["a"],
                "clusters": [],
                "tie": False,
            },
        },
    },
    {
        "type": "consensus.completed",
        "seq": 4,
        "debate_id": "D",
        "consensus": {
            "answer": "4",
            "agreement": 1.0,
            "majority": "4",
            "dissent": [],
            "synthesizer": None,
            "fallback": True,
            "fallback_reason": "x",
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
            "cost_usd": 0.0,
            "latency_ms": 0,
            "attempts": 0,
        },
    },
    {"type": "debate.resumed", "seq": 5, "debate_id": "D", "data": {"after_round": 0}},
]


def test_events_stored_in_todays_format_replay_as_typed_events(tmp_path):
    """The event union reads rows the single-class code wrote: same types, same fields, and the stored and
    SSE encodings of each replayed event are what that code produced."""
    from datetime import UTC, datetime

    from sqlalchemy import insert

    from consensus.types import AnswerCompleted, ConsensusCompleted, DebateResumed, RoundCompleted
    from service.store import EventRow, event_payload

    async def go() -> list[DebateEvent]:
        store = Store(f"sqlite+aiosqlite:///{tmp_path}/s.db")
        await store.migrate()
        result = new_result("q?", stub_panel(_Stub()), DebateOptions())
        await store.create_debate(result, {}, None, None, owner="me", lease_s=30)
        rows = [{**r, "debate_id": result.id} for r in TODAYS_ROWS]
        async with store.engine.begin() as conn:
            await conn.execute(
                insert(EventRow),
                [
                    {
                        "debate_id": result.id,
                        "seq": r["seq"],
                        "type": r["type"],
                        "payload": r,
                        "created_at": datetime.now(UTC),
                    }
                    for r in rows
                ],
            )
        try:
            return await store.events_after(result.id, 0)
        finally:
            await store.close()

    events = asyncio.run(go())
    assert [type(e) for e in events] == [
        DebateStarted,
        AnswerCompleted,
        RoundCompleted,
        ConsensusCompleted,
        DebateResumed,
    ]
    import json

    def within(old: object, new: object) -> bool:
        """Every field the old row had, with its value (fields added since may appear beside them)."""
        if isinstance(old, dict):
            return isinstance(new, dict) and all(k in new and within(v, new[k]) for k, v in old.items())
        return old == new

    for e, row in zip(events, TODAYS_ROWS, strict=True):
        row = {**row, "debate_id": e.debate_id}
        stored = json.loads(event_payload(e))
        assert list(stored) == list(row) and within(row, stored)
        wire = json.loads(e.wire_json())
        assert list(wire) == [
            "type",
            "seq",
            "debate_id",
            "round",
            "panelist",
            "delta",
            "answer",
            "round_result",
            "consensus",
            "result",
            "data",
        ]
        assert within(row, wire) and all(wire[k] is None for k in wire if k not in row)
