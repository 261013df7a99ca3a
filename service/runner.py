"""Runs debates as their own tasks: launches, leases, resumes, persists, cancels and ends them.

Fan-out to followers is service/fanout.py; the PostgreSQL relay between replicas is service/relay.py."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError

from consensus.engine import DebateOptions, QuorumGrace, copy_result, run_debate
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
    ThreadContext,
)
from service import metrics
from service.fanout import FINAL_STATUSES, Draining, Hub, follow, follow_batches
from service.relay import PgRelay
from service.settings import Settings
from service.store import DebateRow, EncodedResult, LeaseLostError, Store

log = logging.getLogger("consensus.service")


def thread_of(row: DebateRow) -> ThreadContext | None:
    """The thread context a follow-up was started with (kept in its stored request, so a resume sees it too)."""
    stored = (row.request or {}).get("thread_context")
    return ThreadContext.model_validate(stored) if stored else None


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
        """Check the lease (LeaseLostError) and that no write of the debate failed, then make the call."""
        outbox = self.runner.outboxes.get(self.debate_id)
        if outbox is not None:
            outbox.check()
        await self.runner.check_lease(self.debate_id)
        return await self.provider.complete(seat, messages, **kw)


class Outbox:
    """One debate's events on their way out: stored (all but token deltas), then published, in emission order.

    The engine does not wait for the store: an event is queued and the debate goes on (its next calls start) while
    it is written. At most one write per debate is in flight; the events that arrive meanwhile go out together in
    the next one (a round's answers and its end, the consensus and the debate's end: one transaction each). Nothing
    is published before it is stored, and a token delta waits behind the stored events before it, so followers see
    the order the engine made. A failed write ends the debate at its next event or call (`error`).
    """

    def __init__(self, debate_id: str) -> None:
        self.debate_id = debate_id
        self.pending: list[DebateEvent] = []  # not yet published, in order; the stored kinds not yet written
        self.snapshot: EncodedResult | None = None  # the newest round checkpoint among them
        self.final: DebateResult | None = None  # the debate's end among them: the write that finishes it
        self.error: Exception | None = None
        self.flushing: asyncio.Task[None] | None = None

    @property
    def idle(self) -> bool:
        return not self.pending

    def check(self) -> None:
        """Raise the error of a write that failed (LeaseLostError: it ended elsewhere, or is leased elsewhere)."""
        if self.error is not None:
            raise self.error


class Latest:
    """A running debate's state as of its last round: the result it started from, then each round's checkpoint,
    encoded when the engine hands it over (no copy of the engine's state is made)."""

    def __init__(self, initial: DebateResult) -> None:
        self.initial = initial
        self.checkpoint: EncodedResult | None = None

    def keep(self, result: DebateResult) -> None:
        self.checkpoint = EncodedResult.of(result)

    def result(self) -> DebateResult:
        """A result of its own (to end the debate with): the last checkpoint, or the one it started from."""
        return self.checkpoint.decoded() if self.checkpoint is not None else copy_result(self.initial)


class Runner:
    """Owns this replica's running debates."""

    def __init__(self, store: Store, panel: Panel, provider: Provider, settings: Settings) -> None:
        self.store = store
        self.panel = panel
        self.provider = provider
        self.settings = settings
        self.hub = Hub()
        self.relay = PgRelay(store, self.hub, lambda debate_id: debate_id in self.tasks)
        self.tasks: dict[str, asyncio.Task[DebateResult | None]] = {}
        self.accepting = True
        self.reserved = 0
        self.shutting_down = False
        self._background: list[asyncio.Task[Any]] = []
        self.loop: asyncio.AbstractEventLoop | None = None
        self.draining = asyncio.Event()
        # debate id -> (trusted until, held until), monotonic: from when a lease was last taken or renewed. Within
        # half the lease a call needs no query (the heartbeat renews every third); until its end a failing
        # database does not stop a call; after it, the lease is renewed with one UPDATE before the call.
        self.leases: dict[str, tuple[float, float]] = {}
        # debate id -> seq of the last event stored, for the debates running here: a follower that has seen it
        # needs no read of the store (what comes later reaches it through the hub, once stored).
        self.stored: dict[str, int] = {}
        self.outboxes: dict[str, Outbox] = {}

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
            await self.relay.listen()

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
        # Events already queued are written before the leases go: a resume starts from the newest round stored.
        await asyncio.gather(*(o.flushing for o in self.outboxes.values() if o.flushing), return_exceptions=True)
        with contextlib.suppress(Exception):
            await self.store.release(self.settings.replica_id, left)
        for b in self._background:
            b.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await self.relay.close()

    def stored_seq(self, debate_id: str) -> int | None:
        """The seq of the last event stored of a debate running here (None: not running here)."""
        return self.stored.get(debate_id)

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
                log.warning(
                    "debate %s: could not check its lease (%s: %s); it runs to %.0f s from now",
                    debate_id,
                    type(exc).__name__,
                    exc,
                    until - time.monotonic(),
                )
                return
            log.warning(
                "debate %s: its lease ran out and could not be renewed (%s: %s); stopped here",
                debate_id,
                type(exc).__name__,
                exc,
            )
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
                log.warning(
                    "debate %s: its lease is gone (adopted elsewhere, or ended); it stops at its next call or write",
                    debate_id,
                )

    async def _heartbeat(self) -> None:
        interval = max(0.5, self.settings.lease_s / 3)
        while True:
            await asyncio.sleep(interval)
            try:
                await self._renew()
                await self._honour_remote_cancels()
                await self.adopt_orphans()
                if self.store.is_postgres and not self.relay.listening:
                    log.warning("the LISTEN connection was lost; listening again")
                    await self.relay.listen()
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
        self.launch(
            result,
            start_seq=row.last_seq,
            leased_at=leased_at,
            deadline_at=row.deadline_at or self.deadline_for(result),
            thread=thread_of(row),
        )

    async def _end(self, result: DebateResult, last_seq: int, owner: str | None) -> None:
        """Store a final result and its event; `owner` None writes whoever holds the lease (a remote cancel)."""
        now = datetime.now(UTC)
        result.timing.finished_at = now
        result.timing.wall_ms = int((now - result.timing.started_at).total_seconds() * 1000)
        event = DebateFailed(seq=last_seq + 1, debate_id=result.id, result=result)
        await self.store.finish(result.id, result, [event], owner)
        await self.relay.notify(result.id, event.seq)
        self.hub.publish(event)
        metrics.DEBATES.labels(status=result.status.value).inc()

    # -- running -----------------------------------------------------------------------------------
    def launch(
        self,
        result: DebateResult,
        start_seq: int = 0,
        leased_at: float | None = None,
        deadline_at: datetime | None = None,
        thread: ThreadContext | None = None,
    ) -> asyncio.Task[DebateResult | None]:
        """Run a stored debate as its own task; `leased_at`: when its lease was taken (monotonic; None: check it
        before the first call); `deadline_at`: its absolute end (default: deadline_s from its start)."""
        if leased_at is not None:
            self.held(result.id, leased_at)
        task = asyncio.create_task(self._run(result, start_seq, deadline_at or self.deadline_for(result), thread))
        self.tasks[result.id] = task
        self.stored[result.id] = start_seq
        task.add_done_callback(functools.partial(self._forget, result.id))
        return task

    def _forget(self, debate_id: str, _task: object = None) -> None:
        self.tasks.pop(debate_id, None)
        self.leases.pop(debate_id, None)
        self.stored.pop(debate_id, None)
        outbox = self.outboxes.get(debate_id)
        if outbox is not None and (outbox.flushing is None or outbox.flushing.done()):
            del self.outboxes[debate_id]

    async def _run(
        self, initial: DebateResult, start_seq: int, deadline_at: datetime, thread: ThreadContext | None = None
    ) -> DebateResult | None:
        """Run the debate to its end; the final result as this replica stored it, or None when it stored none."""
        debate_id = initial.id
        latest = Latest(initial)
        seq = start_seq  # the last event emitted (deltas too)
        outbox = self.outboxes[debate_id] = Outbox(debate_id)
        opts = DebateOptions(
            stream=lambda: self.hub.watched(debate_id) or self.relay.remotely_watched(debate_id),
            start_seq=start_seq,
            on_checkpoint=latest.keep,
            deadline_at=deadline_at,
            thread=thread,
            quorum_grace=QuorumGrace(grace_s=self.settings.grace_s, grace_factor=self.settings.grace_factor)
            if self.settings.quorum_grace
            else None,
        )
        me = self.settings.replica_id
        provider = LeasedProvider(self.provider, self, debate_id)
        metrics.IN_FLIGHT.inc()
        try:
            async for event in run_debate(initial.question, self.panel, provider, opts, resume=initial):
                seq = event.seq
                outbox.check()
                if isinstance(event, AnswerDelta | ConsensusDelta) and outbox.idle:
                    self._publish(event)  # nothing before it waits for the store
                    continue
                outbox.pending.append(event)
                if isinstance(event, RoundCompleted):
                    outbox.snapshot = latest.checkpoint  # the engine's checkpoint, taken before the event
                if isinstance(event, DebateCompleted | DebateFailed):
                    outbox.final = event.result
                    await self._flushed(outbox, latest)
                    return event.result
                self._flush_soon(outbox, latest)
            return None
        except LeaseLostError:
            # Cancelled on another replica, or adopted by one while this one stalled: stop, write nothing.
            log.warning("debate %s ended elsewhere or is leased to another replica; stopped here", debate_id)
            await self._publish_stored(debate_id, self._stored_or(debate_id, start_seq))
            return None
        except asyncio.CancelledError:
            if self.shutting_down:
                raise  # stays running in the store; resumed from its last round by whoever restarts first
            r = latest.result()
            r.status = DebateStatus.cancelled
            r.reason = "cancelled by a client"
            try:
                await asyncio.shield(self._drain(outbox, latest))  # what it said so far, then its end
                if isinstance(outbox.error, LeaseLostError):
                    raise outbox.error
                await asyncio.shield(self._end(r, seq, me))
            except LeaseLostError:  # a remote cancel already stored the end: tell the followers here
                await asyncio.shield(self._publish_stored(debate_id, self._stored_or(debate_id, start_seq)))
                return None
            return r
        except Exception as exc:  # noqa: BLE001 - a bug must end the debate visibly, not leave it running
            log.exception("debate %s crashed", debate_id)
            r = latest.result()
            r.status = DebateStatus.failed
            r.reason = f"internal error: {type(exc).__name__}"
            try:
                await self._drain(outbox, latest)
                await self._end(r, seq, me)
            except LeaseLostError:
                return None
            return r
        finally:
            metrics.IN_FLIGHT.dec()

    def _stored_or(self, debate_id: str, default: int) -> int:
        return self.stored.get(debate_id, default)

    def _publish(self, event: DebateEvent) -> None:
        """Hand an event to this replica's followers (and a token delta to other replicas' that follow it)."""
        self.hub.publish(event)
        if isinstance(event, AnswerDelta | ConsensusDelta) and self.relay.remotely_watched(event.debate_id):
            self.relay.queue_delta(event)

    def _flush_soon(self, outbox: Outbox, latest: Latest) -> None:
        """Start writing the outbox unless a write of it is in flight (that one goes on with what came since)."""
        if outbox.flushing is None or outbox.flushing.done():
            outbox.flushing = asyncio.create_task(self._flush(outbox, latest))

    async def _drain(self, outbox: Outbox, latest: Latest) -> None:
        """Write and publish everything queued (the debate's end too, when it is there), or up to a failed write."""
        self._flush_soon(outbox, latest)
        assert outbox.flushing is not None
        await outbox.flushing

    async def _flushed(self, outbox: Outbox, latest: Latest) -> None:
        """_drain, then raise the error of a write that failed."""
        await self._drain(outbox, latest)
        outbox.check()

    async def _flush(self, outbox: Outbox, latest: Latest) -> None:
        """Write what the outbox holds, one transaction at a time, and publish each write's events once stored.

        Never raises: a failed write is kept in `outbox.error` and nothing after it is written or published.
        """
        debate_id, me = outbox.debate_id, self.settings.replica_id
        while outbox.pending and outbox.error is None:
            taken, snapshot, final = len(outbox.pending), outbox.snapshot, outbox.final
            events = [e for e in outbox.pending[:taken] if not isinstance(e, AnswerDelta | ConsensusDelta)]
            outbox.snapshot = outbox.final = None
            try:
                if final is not None:
                    await self.store.finish(debate_id, final, events, me)
                    self.leases.pop(debate_id, None)  # released with it: a renewal meanwhile is no lost lease
                elif events:
                    await self.store.record(debate_id, events, snapshot, me)
            except Exception as exc:  # noqa: BLE001 - the debate raises it at its next event or call
                outbox.error = exc
                return
            for event in outbox.pending[:taken]:
                if not isinstance(event, AnswerDelta | ConsensusDelta):
                    metrics.observe_event(event, latest.initial)  # its panel and synthesizer
                    if debate_id in self.stored:
                        self.stored[debate_id] = event.seq  # before it is published: see follow()
                    await self.relay.notify(debate_id, event.seq)
                self._publish(event)
            del outbox.pending[:taken]
        if debate_id not in self.tasks:
            self.outboxes.pop(debate_id, None)

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
            # Its end as stored here: no read of the store (and no decoding of it) for every waiting request.
            if task.done() and not task.cancelled() and task.exception() is None and task.result() is not None:
                return task.result()
        while True:
            row = await self.store.get(debate_id)
            if row is None:
                return None
            if row.status in FINAL_STATUSES:  # finished, even while shutting down: the result, not a 503
                return DebateResult.model_validate(row.result)
            if self.draining.is_set():
                raise Draining(debate_id)
            await asyncio.sleep(0.5)

    def follow(self, debate_id: str, after: int) -> AsyncIterator[DebateEvent | None]:
        """Replay stored events after `after`, then live ones, until the debate ends (None = keep-alive)."""
        return follow(self, debate_id, after)

    def follow_batches(self, debate_id: str, after: int) -> AsyncIterator[list[DebateEvent] | None]:
        """follow(), with the events already waiting handed out together (fanout.follow_batches)."""
        return follow_batches(self, debate_id, after)
