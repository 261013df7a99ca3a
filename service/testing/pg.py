"""A throwaway PostgreSQL cluster for the tests and the benchmarks, and the process helpers they share.

PostgreSQL refuses to run as root, so when the tests run as root (CI) every server command runs
as the `postgres` user through `runuser`, in a temp dir that user owns. Missing binaries are an
error, not a skip: the PostgreSQL path must be tested in CI.
"""

from __future__ import annotations

import asyncio
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
import uuid
from pathlib import Path

PG_USER = "postgres"
# Durability is pointless for a throwaway cluster; these make initdb and commits fast.
FAST = "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"


class PgUnavailable(RuntimeError):
    """The machine cannot run a throwaway cluster (binaries or the postgres user are missing)."""


def children_of(pid: int) -> list[int]:
    """Direct child processes of `pid` (Linux /proc; empty elsewhere)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return out


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pg_bin(name: str) -> str:
    """Path of a PostgreSQL server binary: PATH first, then Debian's /usr/lib/postgresql/*/bin."""
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)
    if not found:
        raise PgUnavailable(
            f"`{name}` is not on PATH (nor in /usr/lib/postgresql/*/bin): install PostgreSQL 15 "
            "server binaries to run the postgres tests"
        )
    return found


class PgCluster:
    """initdb + pg_ctl start in a temp dir; `url` is an asyncpg SQLAlchemy URL for user postgres."""

    def __init__(self) -> None:
        self.initdb = pg_bin("initdb")
        self.pg_ctl = pg_bin("pg_ctl")
        self.as_root = os.geteuid() == 0
        if self.as_root:
            try:
                self.pw = pwd.getpwnam(PG_USER)
            except KeyError:
                raise PgUnavailable(f"running as root needs a {PG_USER!r} user to run PostgreSQL as") from None
            if not shutil.which("runuser"):
                raise PgUnavailable("running as root needs `runuser` to start PostgreSQL as the postgres user")
        # Not pytest's tmp_path: its parents are 0700 root, which the postgres user cannot enter.
        self.dir = Path(tempfile.mkdtemp(prefix="consensus-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "log"
        self.port = 0
        self.started = False
        if self.as_root:
            os.chown(self.dir, self.pw.pw_uid, self.pw.pw_gid)

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        cmd = (["runuser", "-u", PG_USER, "--"] if self.as_root else []) + list(args)
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=self.dir, check=False)

    @property
    def url(self) -> str:
        return self.database_url("postgres")

    def database_url(self, name: str) -> str:
        return f"postgresql+asyncpg://{PG_USER}@127.0.0.1:{self.port}/{name}"

    def start(self) -> PgCluster:
        """initdb (no fsync), then start on a free port; retries a port taken meanwhile."""
        r = self._run(
            self.initdb, "-D", str(self.data), "-A", "trust", "-U", PG_USER, "-E", "UTF8", "--locale=C", "--no-sync"
        )
        if r.returncode:
            raise RuntimeError(f"initdb failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
        for _ in range(3):
            self.port = free_port()
            opts = f"-k {self.dir} -p {self.port} -c listen_addresses=127.0.0.1 {FAST}"
            r = self._run(self.pg_ctl, "-D", str(self.data), "-o", opts, "-l", str(self.log), "-w", "-t", "60", "start")
            if r.returncode == 0:
                self.started = True
                return self
        raise RuntimeError(f"pg_ctl start failed ({r.returncode}):\n{r.stdout}\n{r.stderr}\n{self.log_tail()}")

    def stop(self) -> None:
        """Fast shutdown, then remove the cluster's files."""
        if self.started:
            self._run(self.pg_ctl, "-D", str(self.data), "-m", "fast", "-w", "stop", timeout=60)
            self.started = False
        shutil.rmtree(self.dir, ignore_errors=True)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"

    def create_database(self, prefix: str = "t") -> str:
        """CREATE DATABASE with a fresh name; returns its URL."""
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        self.execute(f'CREATE DATABASE "{name}"')
        return self.database_url(name)

    def execute(self, sql: str, database: str = "postgres") -> list[tuple[object, ...]]:
        """Run one statement with asyncpg in a private event loop (safe from any test thread)."""
        import asyncpg

        async def go() -> list[tuple[object, ...]]:
            conn = await asyncpg.connect(host="127.0.0.1", port=self.port, user=PG_USER, database=database)
            try:
                return [tuple(r) for r in await conn.fetch(sql)]
            finally:
                await conn.close()

        out: list[list[tuple[object, ...]]] = []
        errors: list[BaseException] = []

        def thread() -> None:
            try:
                out.append(asyncio.run(go()))
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
                errors.append(exc)

        t = threading.Thread(target=thread)
        t.start()
        t.join(60)
        if errors:
            raise errors[0]
        return out[0]
