"""Durable storage: debates, their events and API keys (SQLAlchemy 2 async; SQLite or PostgreSQL)."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any, cast

from sqlalchemy import (
    JSON,
    DateTime,
    Index,
    Integer,
    String,
    Table,
    Text,
    Update,
    bindparam,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_fixed

from consensus.engine import thread_turn
from consensus.types import DebateEvent, DebateResult, ThreadTurn, parse_event

FINISHED = ("completed", "degraded")  # the statuses of a debate with a consensus to follow


class UTCDateTime(TypeDecorator[datetime]):
    """DateTime(timezone=True) that always reads back aware, in UTC.

    PostgreSQL returns aware datetimes; SQLite stores no offset and returns naive ones, which then
    serialise without an offset and cannot be compared with now(). Naive values are taken as UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


class DebateRow(Base):
    __tablename__ = "debates"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    question: Mapped[str] = mapped_column(Text)
    language: Mapped[str] = mapped_column(String(32))
    request: Mapped[dict[str, Any]] = mapped_column(JSON)
    result: Mapped[dict[str, Any]] = mapped_column(JSON)
    idempotency_scope: Mapped[str | None] = mapped_column(String(300), unique=True, nullable=True)
    key_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    last_seq: Mapped[int] = mapped_column(Integer, default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(200), nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # The debate's absolute end: a resume runs only what is left of it (None: a debate stored before 0003).
    deadline_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # The thread: the id of its first debate, and this debate's position in it (None: stored before 0004, alone).
    thread_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    thread_index: Mapped[int | None] = mapped_column(Integer, nullable=True)


class EventRow(Base):
    __tablename__ = "debate_events"
    debate_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    type: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ApiKeyRow(Base):
    __tablename__ = "api_keys"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(32))
    key_hash: Mapped[str] = mapped_column(String(128), unique=True)
    origins: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


Index("ix_debates_running_lease", DebateRow.status, DebateRow.lease_until)
Index("ix_debates_key_created", DebateRow.key_id, DebateRow.created_at)
Index("ix_debates_thread", DebateRow.thread_id, DebateRow.thread_index)
DEBATES = cast(Table, DebateRow.__table__)
EVENTS = cast(Table, EventRow.__table__)


class LeaseLostError(Exception):
    """The debate ended elsewhere (a cancel on another replica) or another replica holds its lease now."""


def now() -> datetime:
    return datetime.now(UTC)


def is_overload(exc: BaseException) -> bool:
    """The database is too busy right now (no free pooled connection, SQLite's write lock held too long)."""
    return isinstance(exc, PoolTimeout) or (isinstance(exc, OperationalError) and "database is locked" in str(exc))


def overload_retrying(attempts: int, wait_s: float = 0.0) -> AsyncRetrying:
    """Try again while the database is overloaded (is_overload), up to `attempts`; then the last error."""
    return AsyncRetrying(
        retry=retry_if_exception(is_overload), stop=stop_after_attempt(attempts), wait=wait_fixed(wait_s), reraise=True
    )


WRITE_BATCH = 256
DEBATE_ID = re.compile(r"[0-9A-Za-z_-]{1,64}")
MAX_SEQ = 2**31 - 1  # the events table's seq column is a 32-bit integer on PostgreSQL


@dataclass(eq=False)
class _Write:
    debate_id: str
    events: Sequence[DebateEvent]
    result: DebateResult | EncodedResult | None
    owner: str | None
    release: bool
    insert: dict[str, Any] | None = None  # a new debate row instead of an update
    done: asyncio.Future[None] | None = None


def _row_order(w: _Write) -> str:
    """Every transaction that updates several debate rows takes their locks in id order.

    Two transactions locking the same rows in different orders deadlock: PostgreSQL aborts one after
    a 1 s stall (a heartbeat's lease renewal against a write batch, before this order).
    """
    return w.debate_id


def _groups(writes: list[_Write]) -> list[list[_Write]]:
    """Runs of updates to one debate by one owner, cut after a release; an insert stands alone."""
    out: list[list[_Write]] = []
    for w in writes:
        prev = out[-1][-1] if out else None
        if (
            prev is not None
            and w.insert is None
            and prev.insert is None
            and not prev.release
            and prev.debate_id == w.debate_id
            and prev.owner == w.owner
        ):
            out[-1].append(w)
        else:
            out.append([w])
    return out


@functools.cache
def _group_update(events: bool, result: bool, release: bool, owned: bool) -> Update:
    """The UPDATE of a debate's row for a group of writes of this shape, built once: parameters per execution.

    Built per write, the statement (and its cache key) cost more CPU than running it.
    """
    values: dict[str, Any] = {"updated_at": bindparam("w_updated_at")}
    if events:
        values["last_seq"] = bindparam("w_last_seq")
    if result:
        values["result"], values["status"] = bindparam("w_result"), bindparam("w_status")
    if release:
        values["lease_owner"] = values["lease_until"] = None
    mine = (DEBATES.c.id == bindparam("w_id")) & (DEBATES.c.status == "running")
    if owned:
        mine &= DEBATES.c.lease_owner == bindparam("w_owner")
    return update(DEBATES).where(mine).values(**values)


def _settle(w: _Write, exc: BaseException | None) -> None:
    if w.done is not None and not w.done.done():
        if exc is None:
            w.done.set_result(None)
        else:
            w.done.set_exception(exc)


class StoreInUseError(Exception):
    """Another process serves this SQLite file (one file, one serving process)."""


def sqlite_path(url: str) -> str | None:
    """The file behind a SQLite URL (None for PostgreSQL and in-memory databases)."""
    if not url.startswith("sqlite"):
        return None
    database = make_url(url).database
    return None if not database or database == ":memory:" else database


def lock_sqlite_file(url: str) -> int | None:
    """Hold `<db>.lock` (flock) for as long as the returned descriptor stays open; StoreInUseError if taken."""
    path = sqlite_path(url)
    if path is None:
        return None
    fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StoreInUseError(
            f"{path} is in use by another `consensus serve`: one SQLite file serves one process "
            "(several processes share a PostgreSQL database: DATABASE_URL=postgresql://...)"
        ) from None
    return fd


class Store:
    """All reads and writes of the service; one instance per process."""

    def __init__(self, url: str, pool_size: int = 20, pool_timeout_s: float = 30.0) -> None:
        self.url = url
        # Every running debate writes after each event: a pool of 5 starved under load (bench/load.py).
        kw: dict[str, Any] = {"pool_size": pool_size, "max_overflow": 2 * pool_size, "pool_timeout": pool_timeout_s}
        if url.startswith("sqlite"):
            kw["connect_args"] = {"timeout": 30}
        else:
            kw["pool_pre_ping"] = True
        self.engine: AsyncEngine = create_async_engine(url, json_serializer=_json_column, **kw)
        if url.startswith("sqlite"):
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self.is_postgres = url.startswith("postgresql")
        self._queue: asyncio.Queue[_Write] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self._writer_loop: asyncio.AbstractEventLoop | None = None
        self._file_lock: int | None = None

    @property
    def exclusive(self) -> bool:
        """This process holds the SQLite file's lock: every debate left running in it is an orphan."""
        return self._file_lock is not None

    def lock_for_serving(self) -> None:
        """On SQLite, take the file's lock (StoreInUseError when another server holds it); PostgreSQL shares."""
        if self._file_lock is None:
            self._file_lock = lock_sqlite_file(self.url)

    async def migrate(self) -> None:
        """Bring the schema to the latest Alembic revision (serialised across replicas on PostgreSQL)."""
        async with self.engine.begin() as conn:
            if self.is_postgres:
                await conn.exec_driver_sql("SELECT pg_advisory_xact_lock(720301)")
            await conn.run_sync(_alembic_upgrade)

    async def close(self) -> None:
        if self._writer is not None and self._writer_loop is asyncio.get_running_loop():
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
        await self.engine.dispose()
        if self._file_lock is not None:
            os.close(self._file_lock)  # releases the flock
            self._file_lock = None

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.exec_driver_sql("SELECT 1")

    # -- debates -------------------------------------------------------------------------------
    async def create_debate(
        self,
        result: DebateResult,
        request: dict[str, Any],
        key_id: str | None,
        idem_scope: str | None,
        owner: str,
        lease_s: float,
        deadline_at: datetime | None = None,
        thread: tuple[str, int] | None = None,
    ) -> tuple[DebateRow, bool]:
        """Insert a debate leased to `owner`; returns (row, created). An idempotency hit returns the old row."""
        t = now()
        row = DebateRow(
            id=result.id,
            status=result.status.value,
            question=result.question,
            language=result.language,
            request=request,
            result=Encoded(result.model_dump_json()),
            idempotency_scope=idem_scope,
            key_id=key_id,
            last_seq=0,
            lease_owner=owner,
            lease_until=t + timedelta(seconds=lease_s),
            created_at=t,
            updated_at=t,
            deadline_at=deadline_at,
            thread_id=thread[0] if thread else result.id,
            thread_index=thread[1] if thread else 0,
        )
        values = {c.name: getattr(row, c.name) for c in DEBATES.columns}
        try:
            await self._write(_Write(result.id, (), None, owner, release=False, insert=values))
        except IntegrityError:
            if idem_scope is None:
                raise
            async with self.sessions() as s:
                existing = (
                    await s.execute(select(DebateRow).where(DebateRow.idempotency_scope == idem_scope))
                ).scalar_one()
            return existing, False
        return row, True

    async def find_idempotent(self, idem_scope: str) -> DebateRow | None:
        async with self.sessions() as s:
            return (
                await s.execute(select(DebateRow).where(DebateRow.idempotency_scope == idem_scope))
            ).scalar_one_or_none()

    async def get(self, debate_id: str) -> DebateRow | None:
        """The debate, or None; a string that cannot be a debate id (e.g. a NUL from a URL) is never looked up."""
        if not DEBATE_ID.fullmatch(debate_id):
            return None
        async with self.sessions() as s:
            return await s.get(DebateRow, debate_id)

    async def thread(self, thread_id: str) -> Sequence[DebateRow]:
        """A thread's debates in order (a debate stored before threads is the thread of its own id)."""
        if not DEBATE_ID.fullmatch(thread_id):
            return []
        q = select(DebateRow).where(DebateRow.thread_id == thread_id).order_by(DebateRow.thread_index)
        async with self.sessions() as s:
            rows = (await s.execute(q)).scalars().all()
            if not rows:
                alone = await s.get(DebateRow, thread_id)
                return [alone] if alone is not None and alone.thread_id is None else []
            return rows

    async def thread_upto(self, row: DebateRow) -> tuple[str, int, list[ThreadTurn]]:
        """The thread `row` belongs to: its id, how many debates it holds, and its finished debates up to `row`
        (branches included: what a follow-up of `row` is given), oldest first, as turns."""
        thread_id = row.thread_id or row.id
        rows = await self.thread(thread_id)
        upto = row.thread_index or 0
        turns = [
            thread_turn(DebateResult.model_validate(r.result))
            for r in rows
            if (r.thread_index or 0) <= upto and r.status in FINISHED
        ]
        return thread_id, len(rows), turns

    async def cancelled_among(self, ids: Sequence[str]) -> set[str]:
        """Which of these debates a client cancelled: one query on ids and status (no results loaded)."""
        if not ids:
            return set()
        q = select(DebateRow.id).where(DebateRow.id.in_(list(ids)), DebateRow.status == "cancelled")
        async with self.sessions() as s:
            return set((await s.execute(q)).scalars().all())

    async def recent(self, limit: int, key_id: str | None = None) -> Sequence[DebateRow]:
        """The newest debates; given a key, only the ones started with it."""
        q = select(DebateRow).order_by(DebateRow.created_at.desc()).limit(limit)
        if key_id is not None:
            q = q.where(DebateRow.key_id == key_id)
        async with self.sessions() as s:
            return (await s.execute(q)).scalars().all()

    async def record(
        self,
        debate_id: str,
        events: Sequence[DebateEvent],
        result: DebateResult | EncodedResult | None,
        owner: str | None = None,
    ) -> None:
        """Append events and (optionally) a result snapshot, atomically.

        Only while the debate is running (and, given `owner`, leased to it): otherwise LeaseLostError, and
        nothing is written. The row is updated first, so its lock orders concurrent writers.
        """
        await self._write(_Write(debate_id, events, result, owner, release=False))

    async def finish(
        self, debate_id: str, result: DebateResult, events: Sequence[DebateEvent] = (), owner: str | None = None
    ) -> None:
        """Store a final result and its events and release the lease, atomically."""
        await self._write(_Write(debate_id, events, result, owner, release=True))

    # Group commit: every running debate writes after each of its events. One writer task commits
    # whatever is queued in one transaction on one connection, instead of a transaction (and a pooled
    # connection held across event-loop turns) per event; under load that starved the pool and, on
    # SQLite, queued every writer behind the single write lock (bench/load.py).
    async def _write(self, w: _Write) -> None:
        loop = asyncio.get_running_loop()
        if self._writer is None or self._writer.done() or self._writer_loop is not loop:
            self._queue = asyncio.Queue()
            self._writer_loop = loop
            self._writer = loop.create_task(self._write_batches(self._queue))
        w.done = loop.create_future()
        self._queue.put_nowait(w)
        await w.done

    async def _write_batches(self, queue: asyncio.Queue[_Write]) -> None:
        while True:
            batch = [await queue.get()]
            while not queue.empty() and len(batch) < WRITE_BATCH:
                batch.append(queue.get_nowait())
            try:
                await self._commit(batch)
            except Exception as exc:  # noqa: BLE001 - one bad write must not fail the others: retry alone
                if len(batch) == 1:
                    _settle(batch[0], exc)
                    continue
                for w in batch:
                    try:
                        await self._commit([w])
                    except Exception as alone:  # noqa: BLE001 - goes to the debate that wrote it
                        _settle(w, alone)

    async def _commit(self, batch: list[_Write]) -> None:
        """One transaction for the batch; each write's lease check decides for that write alone.

        Consecutive writes of one debate by one owner (the answers of a round land together) share one UPDATE:
        only the last may release the lease and only the last result is stored, as if they ran one by one.
        """
        t = now()
        lost: list[_Write] = []
        async for attempt in overload_retrying(4):
            with attempt:
                lost = []
                rows: list[dict[str, Any]] = []  # every accepted write's events: one executemany at the end
                async with self.engine.begin() as conn:
                    for group in _groups(sorted(batch, key=_row_order)):  # stable: a debate's writes keep their order
                        first, last = group[0], group[-1]
                        if first.insert is not None:
                            await conn.execute(insert(DEBATES).values(**first.insert))
                            continue
                        params: dict[str, Any] = {"w_id": first.debate_id, "w_updated_at": t}
                        events = [e for w in group for e in w.events]
                        if events:
                            params["w_last_seq"] = max(e.seq for e in events)
                        result = next((w.result for w in reversed(group) if w.result is not None), None)
                        if result is not None:
                            encoded = result if isinstance(result, EncodedResult) else EncodedResult.of(result)
                            params["w_result"], params["w_status"] = encoded.json, encoded.status
                        if first.owner is not None:
                            params["w_owner"] = first.owner
                        shape = (bool(events), result is not None, last.release, first.owner is not None)
                        res = await conn.execute(_group_update(*shape), params)
                        if not res.rowcount:
                            lost += group
                            continue
                        rows += [
                            {
                                "debate_id": first.debate_id,
                                "seq": e.seq,
                                "type": e.type,
                                "payload": event_payload(e),
                                "created_at": t,
                            }
                            for e in events
                        ]
                    if (
                        rows
                    ):  # one statement for the batch, not one per write: each is a round trip to the driver thread
                        await conn.execute(insert(EVENTS), rows)
        for w in batch:
            _settle(w, LeaseLostError(w.debate_id) if w in lost else None)

    async def events_after(self, debate_id: str, seq: int) -> list[DebateEvent]:
        q = select(EventRow.payload).where(EventRow.debate_id == debate_id, EventRow.seq > seq).order_by(EventRow.seq)
        async with self.sessions() as s:
            return [parse_event(p) for p in (await s.execute(q)).scalars().all()]

    # -- leases --------------------------------------------------------------------------------
    async def renew_leases(self, owner: str, ids: Sequence[str], lease_s: float) -> set[str]:
        """Extend `owner`'s leases on these running debates; returns the ids it still held (and now holds on)."""
        return await self._update_leases(owner, ids, lease_until=now() + timedelta(seconds=lease_s))

    async def release(self, owner: str, ids: Sequence[str]) -> None:
        """Give up leases now (graceful shutdown) so another replica resumes at once."""
        await self._update_leases(owner, ids, lease_owner=None, lease_until=None)

    async def _update_leases(self, owner: str, ids: Sequence[str], **values: Any) -> set[str]:
        if not ids:
            return set()
        mine = DebateRow.id.in_(list(ids)) & (DebateRow.lease_owner == owner) & (DebateRow.status == "running")
        async with self.sessions.begin() as s:
            if self.is_postgres and len(ids) > 1:  # lock the rows in id order, as the writer does: see _row_order
                await s.execute(select(DebateRow.id).where(mine).order_by(DebateRow.id).with_for_update())
            res = await s.execute(update(DebateRow).where(mine).values(**values).returning(DebateRow.id))
            return set(res.scalars().all())

    async def claim_orphans(self, owner: str, lease_s: float, limit: int, everything: bool = False) -> list[DebateRow]:
        """Lease running debates whose lease expired (`everything`: all running ones, whoever held them);
        each is claimed by exactly one replica."""
        t = now()
        orphan = DebateRow.status == "running"
        if not everything:
            orphan &= DebateRow.lease_until.is_(None) | (DebateRow.lease_until < t)
        async with self.sessions.begin() as s:
            q = select(DebateRow).where(orphan).order_by(DebateRow.created_at).limit(limit)
            if self.is_postgres:
                q = q.with_for_update(skip_locked=True)
            rows = list((await s.execute(q)).scalars().all())
            for r in rows:
                r.lease_owner = owner
                r.lease_until = t + timedelta(seconds=lease_s)
        return rows

    async def count_by_status(self) -> dict[str, int]:
        async with self.sessions() as s:
            rows = (await s.execute(select(DebateRow.status, func.count()).group_by(DebateRow.status))).all()
        return {str(k): int(v) for k, v in rows}

    # -- API keys ------------------------------------------------------------------------------
    async def add_key(self, row: ApiKeyRow) -> None:
        async with self.sessions.begin() as s:
            s.add(row)

    async def key_by_hash(self, key_hash: str) -> ApiKeyRow | None:
        async with self.sessions() as s:
            return (await s.execute(select(ApiKeyRow).where(ApiKeyRow.key_hash == key_hash))).scalar_one_or_none()

    async def keys(self) -> Sequence[ApiKeyRow]:
        async with self.sessions() as s:
            return (await s.execute(select(ApiKeyRow).order_by(ApiKeyRow.created_at))).scalars().all()

    async def revoke_key(self, key_id: str) -> bool:
        async with self.sessions.begin() as s:
            res = await s.execute(
                update(ApiKeyRow).where(ApiKeyRow.id == key_id, ApiKeyRow.revoked_at.is_(None)).values(revoked_at=now())
            )
        return bool(res.rowcount)  # type: ignore[attr-defined]

    async def keys_fingerprint(self) -> tuple[Any, ...]:
        """What changes whenever a key is created, revoked or deleted: one aggregate row over the keys table.

        Counting rows and revocations catches every create, revoke and delete; the newest timestamps catch a
        delete and a create between two looks. Cheaper than reading the keys, and nothing to keep in step with
        the writers (`consensus keys`, or SQL by hand), unlike a version counter every writer must bump.
        """
        q = select(
            func.count(),
            func.count(ApiKeyRow.revoked_at),
            func.max(ApiKeyRow.created_at),
            func.max(ApiKeyRow.revoked_at),
        )
        async with self.engine.connect() as conn:
            return tuple((await conn.execute(q)).one())

    async def active_key_count(self) -> int:
        async with self.sessions() as s:
            return int(
                (
                    await s.execute(select(func.count()).select_from(ApiKeyRow).where(ApiKeyRow.revoked_at.is_(None)))
                ).scalar_one()
            )


def event_payload(e: DebateEvent) -> Encoded:
    """An event as stored: unset top-level fields left out, nested nulls kept.

    exclude_none on the whole event would also drop nulls inside it (majority, synthesizer, cost_usd),
    and the stored event would then no longer validate, or read back with defaults (cost 0.0 for unknown).
    """
    return Encoded(e.model_dump_json(exclude={k for k in type(e).model_fields if getattr(e, k) is None}))


@dataclass(frozen=True, slots=True)
class EncodedResult:
    """A result as its JSON column and status: a running debate's checkpoint, encoded when it was taken (the
    engine's state goes on changing after), so the write needs no copy of it."""

    json: Encoded
    status: str

    @classmethod
    def of(cls, result: DebateResult) -> EncodedResult:
        return cls(Encoded(result.model_dump_json()), result.status.value)

    def decoded(self) -> DebateResult:
        return DebateResult.model_validate_json(self.json)


class Encoded(str):
    """A JSON column's value already encoded by pydantic-core: stored as it is.

    Dumping a result to a dict and then through `json` was most of the service's JSON time under load;
    pydantic's own encoder does it in one step (figures: bench/README.md).
    """


def _json_column(value: Any) -> str:
    """The engine's JSON serializer: pre-encoded values as they are, anything else through `json`."""
    return str(value) if isinstance(value, Encoded) else json.dumps(value)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _alembic_config() -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(resources.files("service").joinpath("migrations")))
    return cfg


def _alembic_upgrade(sync_conn: Any) -> None:
    from alembic import command

    cfg = _alembic_config()
    cfg.attributes["connection"] = sync_conn
    command.upgrade(cfg, "head")
