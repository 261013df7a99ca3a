"""`consensus serve` (the HTTP service) and `consensus keys` (its API keys): service is imported inside the commands."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any

import typer

from consensus.cli.common import fail
from consensus.errors import ConsensusError

if TYPE_CHECKING:
    from service.store import ApiKeyRow, Store

keys_app = typer.Typer(no_args_is_help=True, help="Manage API keys (stored hashed in the service's database).")


def serve(
    host: Annotated[
        str | None,
        typer.Option(
            help="interface to bind; a public one requires API keys [default: $CONSENSUS_HOST, else 127.0.0.1]"
        ),
    ] = None,
    port: Annotated[
        int | None, typer.Option(min=0, max=65535, help="TCP port [default: $CONSENSUS_PORT, else 8000]")
    ] = None,
    panel_file: Annotated[str | None, typer.Option("--panel-file", help="TOML panel file")] = None,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            max=64,
            help="processes sharing the port, one per core (PostgreSQL only; CONSENSUS_MAX_IN_FLIGHT is per process)",
        ),
    ] = 1,
) -> None:
    """Serve the HTTP API (the default local panel when nothing is configured)."""
    import uvicorn
    from pydantic import ValidationError

    from consensus.config import check_keys
    from service.settings import WORKER_OF_ENV, Settings, configured_panel
    from service.store import StoreInUseError

    try:
        # Flags win when given, then the environment (CONSENSUS_HOST, CONSENSUS_PORT), then Settings' defaults.
        overrides = {k: v for k, v in {"host": host, "port": port, "panel_file": panel_file}.items() if v is not None}
        if "CONSENSUS_GC_TUNING" not in os.environ:
            overrides["gc_tuning"] = True  # on when serving; bench/README.md (load.py) has why
        settings = Settings(**overrides)  # type: ignore[arg-type]
        if workers > 1 and not settings.is_postgres:
            raise fail(
                f"--workers {workers}: worker processes need DATABASE_URL to name a PostgreSQL database; "
                "on one SQLite file they would share neither live events nor leases"
            )
        _sqlite_free(settings.database_url)  # first: a second server on the file is told at once
        panel = configured_panel(settings)  # a bad panel is one line and exit 2, before anything starts
        if workers == 1:  # the supervisor of --workers stays without LiteLLM (its memory); this one loads it anyway
            check_keys(panel)  # a model no provider serves, or an unset key: every debate would fail
    except (ConsensusError, StoreInUseError) as exc:
        raise fail(str(exc)) from None
    except ValidationError as exc:
        raise fail(_setting_error(exc)) from None
    given = f"--host {host}" if host is not None else f"CONSENSUS_HOST={settings.host}"
    host, port = settings.host, settings.port
    if not settings.loopback and not asyncio.run(_active_keys()):
        # Checked before uvicorn starts: its lifespan check (kept for other launchers) ends in a traceback.
        raise fail(
            f"{given}: refusing to serve a public interface without API keys; create one with "
            "`consensus keys create --name NAME`, or bind to 127.0.0.1"
        )
    common: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_level": "warning",
        "access_log": False,
        "timeout_graceful_shutdown": int(settings.shutdown_grace_s) + 5,
        "lifespan": "on",
    }
    where = f"http://{host}:{port}"
    if workers > 1:
        # The parent migrates once and supervises; it never builds an app (nor imports LiteLLM for one).
        # Workers read the same environment: each takes a replica id of its own under this server's.
        try:
            asyncio.run(_migrate())
        except Exception as exc:  # noqa: BLE001 - unreachable or refusing database: one line, not a traceback
            raise fail(f"DATABASE_URL: cannot migrate the database ({type(exc).__name__}: {exc})") from None
        os.environ[WORKER_OF_ENV] = os.environ.pop("CONSENSUS_REPLICA_ID", "") or settings.replica_id
        os.environ.update(
            {"CONSENSUS_HOST": host, "CONSENSUS_PORT": str(port), "CONSENSUS_GC_TUNING": str(int(settings.gc_tuning))}
        )
        if panel_file:
            os.environ["CONSENSUS_PANEL_FILE"] = panel_file
        typer.echo(f"consensus serving on {where} with {workers} workers (panel: {panel.source})")
        uvicorn.run("service.app:create_app", factory=True, workers=workers, **common)
        return
    from service.app import create_app

    try:
        app_ = create_app(settings, panel)
    except ConsensusError as exc:
        raise fail(str(exc)) from None
    server = uvicorn.Server(uvicorn.Config(app_, **common))
    # One line whatever its length: log collectors read it (rich wrapped it at 80 columns off a terminal).
    typer.echo(f"consensus serving on {where} (panel: {panel.source})")
    server.run()
    if not server.started:
        raise typer.Exit(1)


def _setting_error(exc: Any) -> str:
    """A Settings ValidationError as one line naming the variable, e.g. `CONSENSUS_PORT: ...`."""
    first = exc.errors()[0]
    field = str(first["loc"][0]) if first.get("loc") else "settings"
    name = "DATABASE_URL" if field == "database_url" else f"CONSENSUS_{field.upper()}"
    return f"{name}: {first['msg']}"


def _sqlite_free(url: str) -> None:
    """StoreInUseError when another server holds this SQLite file (checked here: in the app's start-up it is a
    traceback); the app takes the lock itself once it starts."""
    from service.store import lock_sqlite_file

    fd = lock_sqlite_file(url)
    if fd is not None:
        os.close(fd)


async def _migrate() -> None:
    store = _store()
    try:
        await store.migrate()
    finally:
        await store.close()


async def _active_keys() -> bool:
    store = _store()
    try:
        await store.migrate()
        return any(r.revoked_at is None for r in await store.keys())
    finally:
        await store.close()


def _store() -> Store:
    from pydantic import ValidationError

    from service.settings import Settings
    from service.store import Store

    try:
        return Store(Settings().database_url)
    except ValidationError as exc:
        raise fail(_setting_error(exc)) from None


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option("--name", help="who or what the key is for")],
    origin: Annotated[
        list[str] | None,
        typer.Option("--origin", help="allowed browser origin (repeat); makes a publishable pk_ key"),
    ] = None,
) -> None:
    """Create a key and print it once."""
    from service.security import create_key

    async def go() -> tuple[str, object]:
        store = _store()
        try:
            await store.migrate()
            return await create_key(store, name, origin or [])
        finally:
            await store.close()

    if not name.strip():
        raise fail("--name: must not be empty")
    try:
        plain, row = asyncio.run(go())
    except ValueError as exc:
        raise fail(f"--origin: {exc}") from None
    typer.echo(plain)
    kind = f"publishable, origins: {', '.join(row.origins)}" if row.origins else "secret"  # type: ignore[attr-defined]
    typer.echo(f"created key {row.id} ({kind}); it is shown only this once", err=True)  # type: ignore[attr-defined]


@keys_app.command("list")
def keys_list() -> None:
    """List keys (never the keys themselves)."""

    async def go() -> Sequence[ApiKeyRow]:
        store = _store()
        try:
            await store.migrate()
            return await store.keys()
        finally:
            await store.close()

    for r in asyncio.run(go()):
        state = "revoked" if r.revoked_at else "active"
        typer.echo(f"{r.id}\t{r.prefix}…\t{r.name}\t{state}\t{','.join(r.origins) or '-'}")


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="the key's id from `consensus keys list`")],
) -> None:
    """Revoke a key."""

    async def go() -> bool:
        store = _store()
        try:
            await store.migrate()
            return await store.revoke_key(key_id)
        finally:
            await store.close()

    if not asyncio.run(go()):
        raise fail(f"no active key with id {key_id!r}")
    typer.echo(f"revoked {key_id}")
