"""A `python -m consensus serve` process on SQLite, killed or stopped mid-debate, then started again."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from datetime import datetime

from tests.api.conftest import (
    RESUMED,
    assert_clean_log,
    assert_resumed_after_round_0,
    follow_events,
    script_hang_in_round_1,
    wait_round_1_in_flight,
    wait_status,
)
from tests.helpers import make_panel, write_panel
from tests.service_process import REPLICA_PANEL


def sqlite_setup(tmp_path, stub):
    db = tmp_path / "svc.db"
    return db, f"sqlite+aiosqlite:///{db}", write_panel(tmp_path / "panel.toml", make_panel(stub=stub, **REPLICA_PANEL))


def start_debate(proc, stub) -> str:
    """Start a debate and return once round 0 is stored and round 1 is waiting on the models."""
    with proc.client() as c:
        debate_id = c.post("/v1/debates", json={"question": "2+2?", "rounds": 1}).json()["id"]
        wait_round_1_in_flight(c, stub, debate_id)
    return debate_id


def test_sigkill_mid_debate_resumes_from_the_last_round_on_restart(stub, service_process, tmp_path):
    """A SQLite file serves one process (a lock file says which): the next start resumes a crashed
    process's debates at once, not after their lease, and a second server on the same file is refused."""
    script_hang_in_round_1(stub)
    _, url, panel = sqlite_setup(tmp_path, stub)
    first = service_process("first", url, panel, consensus_lease_s=600).start().wait_ready()
    debate_id = start_debate(first, stub)
    intruder = service_process("intruder", url, panel).start()
    assert intruder.proc.wait(60) == 2
    log = intruder.log_tail().splitlines()
    assert "in use by another `consensus serve`" in log[-1] and not any("Traceback" in x for x in log)
    first.kill()
    second = service_process("second", url, panel, consensus_lease_s=600).start().wait_ready()
    with second.client() as c:
        final = wait_status(c, debate_id, timeout=30)  # resumed at start: the dead owner's lease has 10 min left
        events = follow_events(c, debate_id)
        listed = c.get("/v1/debates").json()["data"]
    assert_resumed_after_round_0(final, stub)
    assert second.metric(RESUMED) == 1
    assert_clean_log(events)
    resumed = [i for i, (_, t, _) in enumerate(events) if t == "debate.resumed"]
    assert len(resumed) == 1 and events[resumed[0]][2]["data"] == {"after_round": 0}
    # Every round-1 answer after the marker comes from the resumed run; a replaying client knows which to keep.
    after = [p["answer"] for _, t, p in events[resumed[0] :] if t == "answer.completed"]
    assert sorted(a["panelist"] for a in after) == ["alice", "bob", "carol"] and {a["round"] for a in after} == {1}
    assert datetime.fromisoformat(listed[0]["created_at"]).tzinfo is not None  # SQLite too


def test_sigterm_checkpoints_the_debate_and_the_next_start_resumes_it(stub, service_process, tmp_path):
    script_hang_in_round_1(stub)
    db, url, panel = sqlite_setup(tmp_path, stub)
    # A long lease: the next start resumes at once only if the shutdown released it.
    env = {"consensus_lease_s": 60, "consensus_shutdown_grace_s": 0.5}
    first = service_process("first", url, panel, **env).start().wait_ready()
    debate_id = start_debate(first, stub)
    # A client following the debate live: SIGTERM ends its stream cleanly (it resumes with Last-Event-ID);
    # before, uvicorn waited out its graceful timeout for it and then cut it mid-chunk.
    followed: list[object] = []

    def follow() -> None:
        try:
            with first.client() as c:
                followed.extend(t for _, t, _ in follow_events(c, debate_id))
        except Exception as exc:  # noqa: BLE001 - recorded and asserted below
            followed.append(exc)

    follower = threading.Thread(target=follow)
    follower.start()
    time.sleep(1.0)  # subscribed (the replay of round 0 arrives first)
    first.terminate()
    follower.join(30)
    assert followed[:1] == ["debate.started"] and all(isinstance(t, str) for t in followed), followed
    assert not {"debate.completed", "debate.failed"} & set(followed)
    with sqlite3.connect(db) as conn:
        status, owner, until, last_seq, result = conn.execute(
            "SELECT status, lease_owner, lease_until, last_seq, result FROM debates WHERE id = ?", (debate_id,)
        ).fetchone()
        stored = [
            t for (t,) in conn.execute("SELECT type FROM debate_events WHERE debate_id = ? ORDER BY seq", (debate_id,))
        ]
    assert (status, owner, until) == ("running", None, None)
    assert [r["index"] for r in json.loads(result)["rounds"]] == [0]
    assert stored == ["debate.started", *["answer.completed"] * 3, "round.completed"] and last_seq == len(stored)

    second = service_process("second", url, panel, **env).start().wait_ready()
    with second.client() as c:
        final = wait_status(c, debate_id, timeout=20)
        events = follow_events(c, debate_id)
    assert_resumed_after_round_0(final, stub)
    assert second.metric(RESUMED) == 1
    assert_clean_log(events)
    resumed = [i for i, (_, t, _) in enumerate(events) if t == "debate.resumed"]
    assert len(resumed) == 1 and events[resumed[0]][2]["data"] == {"after_round": 0}
    # Every round-1 answer after the marker comes from the resumed run; a replaying client knows which to keep.
    after = [p["answer"] for _, t, p in events[resumed[0] :] if t == "answer.completed"]
    assert sorted(a["panelist"] for a in after) == ["alice", "bob", "carol"] and {a["round"] for a in after} == {1}
