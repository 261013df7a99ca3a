"""The PostgreSQL relay between replicas: NOTIFY of stored events and batched token deltas, LISTEN for others'.

A replica that runs a debate NOTIFYs each stored event (and, while another replica follows it, its token deltas);
a replica with followers of a debate it does not run LISTENs, reads the stored events back, and publishes them to
its Hub in seq order.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from sqlalchemy import text

from consensus.types import AnswerDelta, ConsensusDelta, DebateEvent, new_event
from service.fanout import WATCH_CHANNEL, WATCH_S, Hub, loop_time
from service.store import Store

NOTIFY_CHANNEL = "consensus_events"
DELTA_CHANNEL = "consensus_deltas"  # token deltas, batched, for those followers
DELTA_FLUSH_S = 0.1
NOTIFY_MAX_BYTES = 7000  # PostgreSQL's payload limit is 8000 bytes


class PgRelay:
    """This replica's side of the relay; `owns(debate_id)` says whether this replica runs that debate."""

    def __init__(self, store: Store, hub: Hub, owns: Callable[[str], bool]) -> None:
        self.store = store
        self.hub = hub
        self.owns = owns
        self.remote_seq: dict[str, int] = {}
        self._listener: Any = None
        self._listen_driver: Any = None  # the asyncpg connection holding our LISTEN
        self._relays: set[asyncio.Task[None]] = set()
        self.relayed = 0  # events (and deltas) published here from another replica's NOTIFY
        self.remote_watch: dict[str, float] = {}  # debate id -> loop time until which another replica watches
        self._deltas: dict[str, list[AnswerDelta | ConsensusDelta]] = {}
        self._flush: asyncio.TimerHandle | None = None
        self._notify_lock = asyncio.Lock()
        self._relay_locks: dict[str, asyncio.Lock] = {}

    async def close(self) -> None:
        """Stop the delta flush and close the LISTEN connection."""
        if self._flush is not None:
            self._flush.cancel()
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.invalidate()  # closed, not pooled again with its LISTEN
                await self._listener.close()

    async def notify(self, debate_id: str, seq: int) -> None:
        """NOTIFY a stored event (after the deltas buffered before it)."""
        if self.store.is_postgres:
            await self.pg_notify(lambda: [*self._take_deltas(debate_id), (NOTIFY_CHANNEL, f"{debate_id}:{seq}")])

    def _take_deltas(self, debate_id: str | None = None) -> list[tuple[str, str]]:
        """Buffered deltas (of one debate, or all) as NOTIFY messages; they leave the buffer."""
        if debate_id is None:
            batches, self._deltas = self._deltas, {}
        else:
            batches = {debate_id: self._deltas.pop(debate_id)} if debate_id in self._deltas else {}
        return [(DELTA_CHANNEL, p) for p in delta_payloads(batches)]

    async def pg_notify(self, messages: Callable[[], list[tuple[str, str]]]) -> None:
        """Send (channel, payload) NOTIFYs in order, one transaction at a time.

        `messages` runs under the lock, so deltas taken from the buffer go out before any event
        whose NOTIFY is sent after them: a follower drops a delta older than an event it has.
        """
        with contextlib.suppress(Exception):  # best effort: followers also poll the store
            async with self._notify_lock:
                batch = messages()
                if not batch:
                    return
                async with self.store.engine.begin() as conn:
                    for channel, payload in batch:
                        await conn.execute(
                            text("SELECT pg_notify(:channel, :payload)"), {"channel": channel, "payload": payload}
                        )

    def remotely_watched(self, debate_id: str) -> bool:
        until = self.remote_watch.get(debate_id)
        return until is not None and until > loop_time()

    def queue_delta(self, event: AnswerDelta | ConsensusDelta) -> None:
        self._deltas.setdefault(event.debate_id, []).append(event)
        if self._flush is None:
            self._flush = asyncio.get_running_loop().call_later(DELTA_FLUSH_S, self._start_flush)

    def _start_flush(self) -> None:
        self._flush = None
        self._spawn(self.pg_notify(self._take_deltas))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run a relay or NOTIFY in the background, holding its task (the loop keeps only a weak one)."""
        task = asyncio.get_running_loop().create_task(coro)
        self._relays.add(task)
        task.add_done_callback(self._relays.discard)

    @property
    def listening(self) -> bool:
        driver = self._listen_driver
        return driver is not None and not driver.is_closed()

    async def listen(self) -> None:
        """LISTEN on a connection of our own; the heartbeat calls it again when that connection dies."""
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.invalidate()
            self._listener = self._listen_driver = None
        # A connection of the engine itself: the same URL handling (ssl=..., prepared_statement_cache_size,
        # connect_args) as every query; a hand-made asyncpg DSN rejects those query parameters.
        self._listener = await self.store.engine.connect()
        driver = (await self._listener.get_raw_connection()).driver_connection

        def on_notify(_conn: Any, _pid: int, _channel: str, payload: str) -> None:
            debate_id, _, seq = payload.rpartition(":")
            if self.owns(debate_id) or not self.hub.watched(debate_id) or not seq.isdigit():
                return
            self._spawn(self._relay(debate_id, upto=int(seq)))

        def on_watch(_conn: Any, _pid: int, _channel: str, debate_id: str) -> None:
            if self.owns(debate_id):
                self.remote_watch[debate_id] = loop_time() + 3 * WATCH_S
                for gone in [i for i in self.remote_watch if not self.owns(i)]:
                    del self.remote_watch[gone]

        def on_deltas(_conn: Any, _pid: int, _channel: str, payload: str) -> None:
            with contextlib.suppress(ValueError, KeyError, TypeError):
                data = json.loads(payload)
                debate_id = data["d"]
                if self.owns(debate_id) or not self.hub.watched(debate_id):
                    return
                deltas = [
                    new_event(
                        type_,
                        seq=seq,
                        debate_id=debate_id,
                        round=round_,
                        panelist=panelist,
                        delta=delta,
                        data={"restart": True} if restart else None,
                    )
                    for seq, type_, round_, panelist, delta, restart in data["e"]
                ]
                self._spawn(self._relay(debate_id, deltas))

        await driver.add_listener(NOTIFY_CHANNEL, on_notify)
        await driver.add_listener(WATCH_CHANNEL, on_watch)
        await driver.add_listener(DELTA_CHANNEL, on_deltas)
        self._listen_driver = driver

    async def _relay(self, debate_id: str, deltas: Sequence[DebateEvent] = (), upto: int | None = None) -> None:
        """Publish another replica's stored events (and deltas) here, in seq order, one relay at a time.

        Deltas ride NOTIFY while stored events are read back from the database, so a batch of deltas
        waits for the stored events before it, and a NOTIFY of event N relays stored events up to N only:
        the store may already hold later events, whose deltas' NOTIFY is still on its way, and a follower
        drops anything older than what it has.
        """
        lock = self._relay_locks.setdefault(debate_id, asyncio.Lock())
        async with lock:
            after = self.remote_seq.get(debate_id, 0)
            last = deltas[0].seq - 1 if deltas else upto  # the newest stored event this relay may publish
            stored = [e for e in await self.store.events_after(debate_id, after) if last is None or e.seq <= last]
            for e in [*stored, *deltas]:
                if e.seq > self.remote_seq.get(debate_id, 0):
                    self.remote_seq[debate_id] = e.seq
                    self.relayed += 1
                    self.hub.publish(e)
        if not self.hub.watched(debate_id) and not lock.locked():  # nobody here follows it any more
            self._relay_locks.pop(debate_id, None)
            self.remote_seq.pop(debate_id, None)


def delta_payloads(batches: dict[str, list[AnswerDelta | ConsensusDelta]]) -> list[str]:
    """NOTIFY payloads for token deltas, each under PostgreSQL's size limit (a huge delta is dropped)."""
    out: list[str] = []
    for debate_id, events in batches.items():
        rows: list[list[Any]] = []
        size = 0
        for e in events:
            row = [e.seq, e.type, e.round, e.panelist, e.delta, bool(e.data and e.data.get("restart"))]
            n = len(json.dumps(row, ensure_ascii=False).encode())
            if n > NOTIFY_MAX_BYTES - 200:
                continue  # followers still get the whole answer with answer.completed
            if rows and size + n > NOTIFY_MAX_BYTES - 200:
                out.append(json.dumps({"d": debate_id, "e": rows}, ensure_ascii=False))
                rows, size = [], 0
            rows.append(row)
            size += n + 1
        if rows:
            out.append(json.dumps({"d": debate_id, "e": rows}, ensure_ascii=False))
    return out
