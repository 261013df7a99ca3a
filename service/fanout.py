"""Fan-out of live events to this replica's followers (SSE streams, ?wait requests, the OpenAI stream).

The Hub hands each event to every queue subscribed to its debate; `follow` replays the stored events after a
cursor, then the live ones, until the debate ends.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Protocol, TypeVar

from consensus.types import (
    AnswerDelta,
    ConsensusDelta,
    DebateCompleted,
    DebateEvent,
    DebateFailed,
    DebateStatus,
)
from service.store import Store, overload_retrying


class Relay(Protocol):
    """The relay's side a follower uses (service.relay.PgRelay)."""

    @property
    def listening(self) -> bool: ...

    async def pg_notify(self, messages: Callable[[], list[tuple[str, str]]]) -> None: ...


class Followed(Protocol):
    """What `follow` reads of the runner: its hub, store, relay, running debates and drain flag."""

    @property
    def hub(self) -> Hub: ...
    @property
    def store(self) -> Store: ...
    @property
    def relay(self) -> Relay: ...
    @property
    def tasks(self) -> Mapping[str, Any]: ...
    @property
    def draining(self) -> asyncio.Event: ...

    def stored_seq(self, debate_id: str) -> int | None: ...


T = TypeVar("T")
FINAL_STATUSES = {s.value for s in DebateStatus} - {"running"}
WATCH_S = 4.0  # a follower re-announces itself this often; the owner streams for 3 x this after
WATCH_CHANNEL = "consensus_watch"  # "<debate id>": a replica has a follower for a debate it does not run


class Draining(Exception):
    """The server is shutting down: a waiting request should come back later (another replica, or after restart)."""


DRAIN: Any = object()  # put into every follower's queue when the server starts shutting down


class Hub:
    """In-process fan-out of live events to SSE subscribers."""

    def __init__(self) -> None:
        self.subscribers: dict[str, set[asyncio.Queue[DebateEvent]]] = {}

    def wake_all(self) -> None:
        for subs in self.subscribers.values():
            for q in subs:
                q.put_nowait(DRAIN)

    def subscribe(self, debate_id: str) -> asyncio.Queue[DebateEvent]:
        q: asyncio.Queue[DebateEvent] = asyncio.Queue()
        self.subscribers.setdefault(debate_id, set()).add(q)
        return q

    def unsubscribe(self, debate_id: str, q: asyncio.Queue[DebateEvent]) -> None:
        subs = self.subscribers.get(debate_id)
        if subs is not None:
            subs.discard(q)
            if not subs:
                del self.subscribers[debate_id]

    def watched(self, debate_id: str) -> bool:
        return bool(self.subscribers.get(debate_id))

    def publish(self, event: DebateEvent) -> None:
        for q in self.subscribers.get(event.debate_id, ()):
            q.put_nowait(event)


async def follow(runner: Followed, debate_id: str, after: int) -> AsyncIterator[DebateEvent | None]:
    """Replay stored events after `after`, then live ones, until the debate ends (None = keep-alive)."""
    async for batch in follow_batches(runner, debate_id, after):
        if batch is None:
            yield None
            continue
        for e in batch:
            yield e


async def follow_batches(runner: Followed, debate_id: str, after: int) -> AsyncIterator[list[DebateEvent] | None]:
    """follow(), handing out together the events that are already waiting: a stream writes them in one go.

    A streamed answer's deltas arrive a handful at a time (one network read of the provider's stream); one
    write (and one pass through the ASGI stack) per delta was much of the service's CPU per debate.
    """
    q = runner.hub.subscribe(debate_id)
    sent = shown = after  # the last stored event handed out / the last event of any kind
    try:
        # Subscribed first, so every event stored from now on reaches q. A debate running here whose last stored
        # event the follower has seen (a new debate's own stream) has nothing to replay: no read of the store.
        known = runner.stored_seq(debate_id)
        if known is None or known > sent:
            replay, ended = _upto_end(await _patiently(runner.store.events_after, debate_id, sent))
            if replay:
                sent = shown = replay[-1].seq
                yield replay
            if ended:
                return
        announced = -WATCH_S
        while True:
            local = debate_id in runner.tasks
            if not local and runner.relay.listening and loop_time() - announced >= WATCH_S:
                announced = loop_time()
                await runner.relay.pg_notify(lambda: [(WATCH_CHANNEL, debate_id)])  # the owner: stream its tokens
            if runner.draining.is_set():
                return  # the stream ends cleanly; the client resumes with Last-Event-ID elsewhere or later
            try:
                if q.empty():
                    async with asyncio.timeout(15.0 if local else 1.0):  # no task per event, as wait_for makes
                        e = await q.get()
                else:
                    e = q.get_nowait()
            except TimeoutError:
                replay, ended = _upto_end(await _patiently(runner.store.events_after, debate_id, sent))
                if replay:
                    sent, shown = replay[-1].seq, max(shown, replay[-1].seq)
                    yield replay
                if ended:
                    return
                row = await _patiently(runner.store.get, debate_id)
                if row is None or row.status in FINAL_STATUSES and row.last_seq <= sent:
                    return
                yield None
                continue
            batch: list[DebateEvent] = []
            while True:
                if e is DRAIN:
                    if batch:
                        yield batch
                    return
                # Deltas are never stored, so they do not move the store cursor: an end stored by another
                # replica (a remote cancel) takes the seq after the last *stored* event, below deltas seen.
                delta = isinstance(e, AnswerDelta | ConsensusDelta)
                if e.seq > (shown if delta else sent):
                    batch.append(e)
                    shown = max(shown, e.seq)
                    if not delta:
                        sent = e.seq
                    if isinstance(e, DebateCompleted | DebateFailed):
                        yield batch
                        return
                if q.empty():
                    break
                e = q.get_nowait()
            if batch:
                yield batch
    finally:
        runner.hub.unsubscribe(debate_id, q)


def _upto_end(events: list[DebateEvent]) -> tuple[list[DebateEvent], bool]:
    """Stored events up to the debate's end, and whether the end is among them."""
    for i, e in enumerate(events):
        if isinstance(e, DebateCompleted | DebateFailed):
            return events[: i + 1], True
    return events, False


async def _patiently(read: Callable[..., Awaitable[T]], *args: Any) -> T:
    """A follower's read, retried while the database is overloaded: a stream waits, it does not break."""
    async for attempt in overload_retrying(10, wait_s=0.5):
        with attempt:
            return await read(*args)
    raise AssertionError("unreachable")  # overload_retrying re-raises the last error


def loop_time() -> float:
    return asyncio.get_running_loop().time()
