"""Runs debates as their own tasks: persists events, fans them out, leases, resumes, cancels."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from consensus.engine import DebateOptions, run_debate
from consensus.providers.base import Completion, Provider
from consensus.types import (
    AnswerDelta,
    ConsensusDelta,
    DebateCompleted,
    DebateEvent,
    DebateFailed,
    DebateResult,
    DebateStatus,
    Message,
    Panel,
    RoundCompleted,
    Seat,
    new_event,
)
from service import metrics
from service.settings import Settings
from service.store import DebateRow, LeaseLostError, Store, overload_retrying

log = logging.getLogger("consensus.service")
T = TypeVar("T")
FINAL_STATUSES = {s.value for s in DebateStatus} - {"running"}
NOTIFY_CHANNEL = "consensus_events"
WATCH_CHANNEL = "consensus_watch"  # "<debate id>": a replica has a follower for a debate it does not run
DELTA_CHANNEL = "consensus_deltas"  # token deltas, batched, for those followers
WATCH_S = 4.0  # a follower re-announces itself this often; the owner streams for 3 x this after
DELTA_FLUSH_S = 0.1
NOTIFY_MAX_BYTES = 7000  # PostgreSQL's payload limit is 8000 bytes


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


class LeasedProvider:
    """The provider as one debate sees it: a call starts only while this replica holds the debate's lease.

    Writes were checked against the lease, calls were not: a replica woken from SIGSTOP after another had
    adopted its debates went on calling models (spend on debates run elsewhere) until its next write.
    LeaseLostError ends the debate here the way a refused write does.
    """

    def __init__(self, provider: Provider, runner: Runner, debate_id: str) -> None:
        self.provider = provider
        self.runner = runner
        self.debate_id = debate_id

    async def complete(self, seat: Seat, messages: list[Message], **kw: Any) -> Completion:
        """Check the lease (LeaseLostError), then make the call."""
        await self.runner.check_lease(self.debate_id)
        return await self.provider.complete(seat, messages, **kw)


class Runner:
    """Owns this replica's running debates."""

    def __init__(self, store: Store, panel: Panel, provider: Provider, settings: Settings) -> None:
        self.store = store
        self.panel = panel
        self.provider = provider
        self.settings = settings
        self.hub = Hub()
        self.tasks: dict[str, asyncio.Task[DebateResult | None]] = {}
        self.remote_seq: dict[str, int] = {}
        self.accepting = True
        self.reserved = 0
        self.shutting_down = False
        self._background: list[asyncio.Task[Any]] = []
        self._listener: Any = None
        self._listen_driver: Any = None  # the asyncpg connection holding our LISTEN
        self._relays: set[asyncio.Task[None]] = set()
        self.relayed = 0  # events (and deltas) published here from another replica's NOTIFY
        self.remote_watch: dict[str, float] = {}  # debate id -> loop time until which another replica watches
        self._deltas: dict[str, list[AnswerDelta | ConsensusDelta]] = {}
        self._flush: asyncio.TimerHandle | None = None
        self._notify_lock = asyncio.Lock()
        self._relay_locks: dict[str, asyncio.Lock] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        self.draining = asyncio.Event()
        # debate id -> (trusted until, held until), monotonic: from when a lease was last taken or renewed. Within
        # half the lease a call needs no query (the heartbeat renews every third); until its end a failing
        # database does not stop a call; after it, the lease is renewed with one UPDATE before the call.
        self.leases: dict[str, tuple[float, float]] = {}

    @property
    def in_flight(self) -> int:
        return len(self.tasks)

    def has_room(self) -> bool:
        return self.accepting and self.in_flight + self.reserved < self.settings.max_in_flight

    def reserve(self) -> bool:
        """Take a slot for a debate about to be stored (synchronously, so concurrent POSTs can't overshoot)."""
        if not self.has_room():
            return False
        self.reserved += 1
        return True

    def unreserve(self) -> None:
        self.reserved -= 1

    # -- lifecycle -------------------------------------------------------------------------------
    async def start_background(self) -> None:
        """Resume orphaned debates now, then keep leases fresh and adopt orphans periodically."""
        self.loop = asyncio.get_running_loop()
        # Holding the SQLite file's lock, no other process can be running its debates: resume them now instead
        # of after their dead owner's lease (a crash left them `running` for up to lease_s).
        await self.adopt_orphans(everything=self.store.exclusive)
        self._background.append(asyncio.create_task(self._heartbeat()))
        if self.store.is_postgres:
            await self._listen()

    async def shutdown(self) -> None:
        """Stop taking debates, let running ones finish within the grace period, checkpoint the rest."""
        self.accepting = False
        if self.tasks:
            await asyncio.wait(list(self.tasks.values()), timeout=self.settings.shutdown_grace_s)
        self.shutting_down = True
        left = list(self.tasks)
        for t in list(self.tasks.values()):
            t.cancel()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)
        with contextlib.suppress(Exception):
            await self.store.release(self.settings.replica_id, left)
        if self._flush is not None:
            self._flush.cancel()
        for b in self._background:
            b.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.invalidate()  # closed, not pooled again with its LISTEN
                await self._listener.close()

    def held(self, debate_id: str, since: float) -> None:
        """This replica took or renewed the debate's lease with a write that began at monotonic `since`."""
        self.leases[debate_id] = (since + self.settings.lease_s / 2, since + self.settings.lease_s)

    async def check_lease(self, debate_id: str) -> None:
        """Return while this replica holds the debate's lease; LeaseLostError once another one does (or it ended).

        Free while the last renewal is recent; else one UPDATE renews it, or finds it gone.
        """
        t = time.monotonic()
        trusted, until = self.leases.get(debate_id, (0.0, 0.0))
        if t < trusted:
            return
        try:
            held = await self.store.renew_leases(self.settings.replica_id, [debate_id], self.settings.lease_s)
        except Exception as exc:  # noqa: BLE001 - a database hiccup: the lease is ours to its end by our clock
            if time.monotonic() < until:
                log.warning("debate %s: could not check its lease (%s: %s); it runs to %.0f s from now",
                            debate_id, type(exc).__name__, exc, until - time.monotonic())  # fmt: skip
                return
            log.warning("debate %s: its lease ran out and could not be renewed (%s: %s); stopped here",
                        debate_id, type(exc).__name__, exc)  # fmt: skip
            raise LeaseLostError(debate_id) from exc
        if debate_id not in held:
            self.leases.pop(debate_id, None)
            raise LeaseLostError(debate_id)
        self.held(debate_id, t)

    def deadline_for(self, result: DebateResult) -> datetime:
        """A debate's absolute end: its start plus the panel's deadline_s."""
        return result.timing.started_at + timedelta(seconds=self.panel.debate.deadline_s)

    async def _renew(self) -> None:
        """Renew every running debate's lease; one another replica took is trusted no more (its next call checks)."""
        ids, began = list(self.tasks), time.monotonic()
        held = await self.store.renew_leases(self.settings.replica_id, ids, self.settings.lease_s)
        for debate_id in ids:
            if debate_id in held:
                self.held(debate_id, began)
            elif self.leases.pop(debate_id, None) is not None and debate_id in self.tasks:
                log.warning("debate %s: its lease is gone (adopted elsewhere, or ended); it stops at its next call "
                            "or write", debate_id)  # fmt: skip

    async def _heartbeat(self) -> None:
        interval = max(0.5, self.settings.lease_s / 3)
        while True:
            await asyncio.sleep(interval)
            try:
                await self._renew()
                await self._honour_remote_cancels()
                await self.adopt_orphans()
                if self.store.is_postgres and not self.listening:
                    log.warning("the LISTEN connection was lost; listening again")
                    await self._listen()
            except Exception as exc:  # noqa: BLE001 - a store hiccup must not kill the heartbeat
                log.exception("heartbeat failed (%s: %s); trying again in %.0f s", type(exc).__name__, exc, interval)

    async def _honour_remote_cancels(self) -> None:
        for debate_id in await self.store.cancelled_among(list(self.tasks)):
            task = self.tasks.get(debate_id)
            if task is not None:
                task.cancel()

    async def adopt_orphans(self, everything: bool = False) -> None:
        """Claim running debates whose lease ran out (crash, kill), or all running ones, and resume them."""
        room = self.settings.max_in_flight - self.in_flight
        if room <= 0 or not self.accepting:
            return
        began = time.monotonic()
        for row in await self.store.claim_orphans(self.settings.replica_id, self.settings.lease_s, room, everything):
            if row.id not in self.tasks:  # still running here (a late lease renewal): resuming would run it twice
                await self.resume(row, leased_at=began)

    async def resume(self, row: DebateRow, leased_at: float | None = None) -> None:
        """Go on with a stored running debate after its last complete round, within what is left of its deadline."""
        result = DebateResult.model_validate(row.result)
        known = {s.name for s in self.panel.panelists}
        if {p.name for p in result.panel} != known:
            result.status = DebateStatus.interrupted
            result.reason = "the service restarted with a different panel; the debate could not resume"
            await self._end(result, row.last_seq, self.settings.replica_id)
            return
        log.info("resuming debate %s after round %s", row.id, len(result.rounds) - 1)
        metrics.DEBATES_RESUMED.inc()
        self.launch(result, start_seq=row.last_seq, leased_at=leased_at, deadline_at=row.deadline_at or self.deadline_for(result))

    async def _end(self, result: DebateResult, last_seq: int, owner: str | None) -> None:
        """Store a final result and its event; `owner` None writes whoever holds the lease (a remote cancel)."""
        now = datetime.now(UTC)
        result.timing.finished_at = now
        result.timing.wall_ms = int((now - result.timing.started_at).total_seconds() * 1000)
        event = DebateFailed(seq=last_seq + 1, debate_id=result.id, result=result)
        await self.store.finish(result.id, result, [event], owner)
        await self._notify(result.id, event.seq)
        self.hub.publish(event)
        metrics.DEBATES.labels(status=result.status.value).inc()

    # -- running -----------------------------------------------------------------------------------
    def launch(self, result: DebateResult, start_seq: int = 0, leased_at: float | None = None,
               deadline_at: datetime | None = None) -> asyncio.Task[DebateResult | None]:  # fmt: skip
        """Run a stored debate as its own task; `leased_at`: when its lease was taken (monotonic; None: check it
        before the first call); `deadline_at`: its absolute end (default: deadline_s from its start)."""
        if leased_at is not None:
            self.held(result.id, leased_at)
        task = asyncio.create_task(self._run(result, start_seq, deadline_at or self.deadline_for(result)))
        self.tasks[result.id] = task
        task.add_done_callback(functools.partial(self._forget, result.id))
        return task

    def _forget(self, debate_id: str, _task: object = None) -> None:
        self.tasks.pop(debate_id, None)
        self.leases.pop(debate_id, None)

    async def _run(self, initial: DebateResult, start_seq: int, deadline_at: datetime) -> DebateResult | None:
        debate_id = initial.id
        latest: dict[str, DebateResult] = {"r": initial}
        seq = stored = start_seq  # the last event emitted (deltas too) / the last one stored
        opts = DebateOptions(
            stream=lambda: self.hub.watched(debate_id) or self.remotely_watched(debate_id),
            start_seq=start_seq,
            on_checkpoint=lambda r: latest.__setitem__("r", r),
            deadline_at=deadline_at,
        )
        me = self.settings.replica_id
        provider = LeasedProvider(self.provider, self, debate_id)
        metrics.IN_FLIGHT.inc()
        try:
            async for event in run_debate(initial.question, self.panel, provider, opts, resume=initial):
                seq = event.seq
                if isinstance(event, AnswerDelta | ConsensusDelta):
                    self.hub.publish(event)
                    if self.remotely_watched(debate_id):
                        self._queue_delta(event)
                    continue
                if isinstance(event, DebateCompleted | DebateFailed):
                    await self.store.finish(debate_id, event.result, [event], me)
                else:
                    snapshot = latest["r"] if isinstance(event, RoundCompleted) else None
                    await self.store.record(debate_id, [event], snapshot, me)
                metrics.observe_event(event, latest["r"])
                stored = event.seq
                await self._notify(debate_id, event.seq)
                self.hub.publish(event)
                if isinstance(event, DebateCompleted | DebateFailed):
                    return event.result
            return None
        except LeaseLostError:
            # Cancelled on another replica, or adopted by one while this one stalled: stop, write nothing.
            log.warning("debate %s ended elsewhere or is leased to another replica; stopped here", debate_id)
            await self._publish_stored(debate_id, stored)
            return None
        except asyncio.CancelledError:
            if self.shutting_down:
                raise  # stays running in the store; resumed from its last round by whoever restarts first
            r = latest["r"]
            r.status = DebateStatus.cancelled
            r.reason = "cancelled by a client"
            try:
                await asyncio.shield(self._end(r, seq, me))
            except LeaseLostError:  # a remote cancel already stored the end: tell the followers here
                await asyncio.shield(self._publish_stored(debate_id, stored))
            return r
        except Exception as exc:  # noqa: BLE001 - a bug must end the debate visibly, not leave it running
            log.exception("debate %s crashed", debate_id)
            r = latest["r"]
            r.status = DebateStatus.failed
            r.reason = f"internal error: {type(exc).__name__}"
            with contextlib.suppress(LeaseLostError):
                await self._end(r, seq, me)
            return r
        finally:
            metrics.IN_FLIGHT.dec()

    async def _publish_stored(self, debate_id: str, after: int) -> None:
        """Hand this replica's followers what another replica stored (its end, when it took over)."""
        with contextlib.suppress(Exception):  # followers fall back to polling the store
            for e in await self.store.events_after(debate_id, after):
                self.hub.publish(e)

    async def cancel(self, debate_id: str) -> bool:
        """Cancel a running debate here, or flag it for the replica that runs it."""
        task = self.tasks.get(debate_id)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            return True
        for _ in range(5):
            row = await self.store.get(debate_id)
            if row is None or row.status != "running":
                return False
            result = DebateResult.model_validate(row.result)
            result.status = DebateStatus.cancelled
            result.reason = "cancelled by a client"
            try:
                await self._end(result, row.last_seq, None)
            except IntegrityError:
                continue  # the owner stored an event after our read: read last_seq again
            except LeaseLostError:
                return False  # it ended meanwhile
            return True
        raise RuntimeError(f"could not cancel debate {debate_id}: its events kept moving")

    def drain(self) -> None:
        """Shutting down (SIGTERM): end SSE streams and ?wait requests now, so the server need not wait out its
        graceful timeout for them; clients come back with Last-Event-ID. Debates go on to checkpoint. Safe to
        call from a signal handler."""
        if self.loop is not None and not self.draining.is_set():
            self.loop.call_soon_threadsafe(self.draining.set)
            self.loop.call_soon_threadsafe(self.hub.wake_all)

    async def wait(self, debate_id: str) -> DebateResult | None:
        """Wait for a debate to end (a client going away does not cancel it); Draining when shutting down."""
        task = self.tasks.get(debate_id)
        if task is not None:
            drained = asyncio.ensure_future(self.draining.wait())
            try:
                await asyncio.wait({task, drained}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                drained.cancel()
        while True:
            row = await self.store.get(debate_id)
            if row is None:
                return None
            if row.status in FINAL_STATUSES:  # finished, even while shutting down: the result, not a 503
                return DebateResult.model_validate(row.result)
            if self.draining.is_set():
                raise Draining(debate_id)
            await asyncio.sleep(0.5)

    async def follow(self, debate_id: str, after: int) -> AsyncIterator[DebateEvent | None]:
        """Replay stored events after `after`, then live ones, until the debate ends (None = keep-alive)."""
        q = self.hub.subscribe(debate_id)
        sent = shown = after  # the last stored event handed out / the last event of any kind
        try:
            for e in await self._patiently(self.store.events_after, debate_id, sent):
                yield e
                sent = shown = e.seq
                if isinstance(e, DebateCompleted | DebateFailed):
                    return
            announced = -WATCH_S
            while True:
                local = debate_id in self.tasks
                if not local and self.listening and self.loop_time() - announced >= WATCH_S:
                    announced = self.loop_time()
                    await self._pg_notify(lambda: [(WATCH_CHANNEL, debate_id)])  # the owner: stream its tokens
                if self.draining.is_set():
                    return  # the stream ends cleanly; the client resumes with Last-Event-ID elsewhere or later
                try:
                    e = await asyncio.wait_for(q.get(), timeout=15.0 if local else 1.0)
                    if e is DRAIN:
                        return
                except TimeoutError:
                    for e in await self._patiently(self.store.events_after, debate_id, sent):
                        yield e
                        sent, shown = e.seq, max(shown, e.seq)
                        if isinstance(e, DebateCompleted | DebateFailed):
                            return
                    row = await self._patiently(self.store.get, debate_id)
                    if row is None or row.status in FINAL_STATUSES and row.last_seq <= sent:
                        return
                    yield None
                    continue
                # Deltas are never stored, so they do not move the store cursor: an end stored by another
                # replica (a remote cancel) takes the seq after the last *stored* event, below deltas seen.
                delta = isinstance(e, AnswerDelta | ConsensusDelta)
                if e.seq <= (shown if delta else sent):
                    continue
                yield e
                shown = max(shown, e.seq)
                if not delta:
                    sent = e.seq
                if isinstance(e, DebateCompleted | DebateFailed):
                    return
        finally:
            self.hub.unsubscribe(debate_id, q)

    @staticmethod
    async def _patiently(read: Callable[..., Awaitable[T]], *args: Any) -> T:
        """A follower's read, retried while the database is overloaded: a stream waits, it does not break."""
        async for attempt in overload_retrying(10, wait_s=0.5):
            with attempt:
                return await read(*args)
        raise AssertionError("unreachable")  # overload_retrying re-raises the last error

    # -- PostgreSQL LISTEN/NOTIFY: live events from other replicas -------------------------------
    async def _notify(self, debate_id: str, seq: int) -> None:
        if self.store.is_postgres:
            await self._pg_notify(lambda: [*self._take_deltas(debate_id), (NOTIFY_CHANNEL, f"{debate_id}:{seq}")])

    def _take_deltas(self, debate_id: str | None = None) -> list[tuple[str, str]]:
        """Buffered deltas (of one debate, or all) as NOTIFY messages; they leave the buffer."""
        if debate_id is None:
            batches, self._deltas = self._deltas, {}
        else:
            batches = {debate_id: self._deltas.pop(debate_id)} if debate_id in self._deltas else {}
        return [(DELTA_CHANNEL, p) for p in delta_payloads(batches)]

    async def _pg_notify(self, messages: Callable[[], list[tuple[str, str]]]) -> None:
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
                        await conn.execute(text("SELECT pg_notify(:channel, :payload)"),
                                           {"channel": channel, "payload": payload})  # fmt: skip

    @staticmethod
    def loop_time() -> float:
        return asyncio.get_running_loop().time()

    def remotely_watched(self, debate_id: str) -> bool:
        until = self.remote_watch.get(debate_id)
        return until is not None and until > self.loop_time()

    def _queue_delta(self, event: AnswerDelta | ConsensusDelta) -> None:
        self._deltas.setdefault(event.debate_id, []).append(event)
        if self._flush is None:
            self._flush = asyncio.get_running_loop().call_later(DELTA_FLUSH_S, self._start_flush)

    def _start_flush(self) -> None:
        self._flush = None
        self._spawn(self._pg_notify(self._take_deltas))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run a relay or NOTIFY in the background, holding its task (the loop keeps only a weak one)."""
        task = asyncio.get_running_loop().create_task(coro)
        self._relays.add(task)
        task.add_done_callback(self._relays.discard)

    @property
    def listening(self) -> bool:
        driver = self._listen_driver
        return driver is not None and not driver.is_closed()

    async def _listen(self) -> None:
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
            if debate_id in self.tasks or not self.hub.watched(debate_id) or not seq.isdigit():
                return
            self._spawn(self._relay(debate_id, upto=int(seq)))

        def on_watch(_conn: Any, _pid: int, _channel: str, debate_id: str) -> None:
            if debate_id in self.tasks:
                self.remote_watch[debate_id] = self.loop_time() + 3 * WATCH_S
                for gone in [i for i in self.remote_watch if i not in self.tasks]:
                    del self.remote_watch[gone]

        def on_deltas(_conn: Any, _pid: int, _channel: str, payload: str) -> None:
            with contextlib.suppress(ValueError, KeyError, TypeError):
                data = json.loads(payload)
                debate_id = data["d"]
                if debate_id in self.tasks or not self.hub.watched(debate_id):
                    return
                deltas = [new_event(type_, seq=seq, debate_id=debate_id, round=round_, panelist=panelist, delta=delta,
                                    data={"restart": True} if restart else None)
                          for seq, type_, round_, panelist, delta, restart in data["e"]]  # fmt: skip
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
