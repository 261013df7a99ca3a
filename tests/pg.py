"""Test helpers: a throwaway PostgreSQL cluster, and the service run as separate OS processes.

PostgreSQL refuses to run as root, so when the tests run as root (CI) every server command runs
as the `postgres` user through `runuser`, in a temp dir that user owns. Missing binaries are an
error, not a skip: the PostgreSQL path must be tested in CI. ServiceProcess runs
`python -m service serve` on a free loopback port, so tests can kill, stop or freeze a replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

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
        raise PgUnavailable(f"`{name}` is not on PATH (nor in /usr/lib/postgresql/*/bin): install PostgreSQL 15 "
                            "server binaries to run the postgres tests")  # fmt: skip
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
        r = self._run(self.initdb, "-D", str(self.data), "-A", "trust", "-U", PG_USER, "-E", "UTF8",
                      "--locale=C", "--no-sync")  # fmt: skip
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
        import asyncpg  # type: ignore[import-untyped]

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


# -- service replicas as separate OS processes -----------------------------------------------------
REPO = Path(__file__).resolve().parent.parent


def write_stub_panel(path: Path, api_base: str, names: tuple[str, ...] = ("alice", "bob", "carol"),
                     transport: str = "openai-compatible", **debate: object) -> Path:  # fmt: skip
    """A TOML panel file whose seats are `openai/<name>` on the loopback stub; the first synthesizes.

    The lean transport by default: a service process that never loads LiteLLM starts in ~1 s instead of ~9 s.
    The contract tests run both transports through the gateway; `transport="litellm"` keeps a process on it.
    """
    settings = {"max_rounds": 1, "call_timeout_s": 30, "retry_budget_s": 5, "max_retry_after_s": 1, **debate}
    lines = ["[debate]", *(f"{k} = {v!r}" for k, v in settings.items()), ""]
    for n in names:
        lines += ["[[panelist]]", f'name = "{n}"', f'model = "openai/{n}"', f'api_base = "{api_base}"',
                  f'transport = "{transport}"', ""]
    path.write_text("\n".join(lines))
    return path


class ServiceProcess:
    """`python -m service serve` in its own process, on a fresh loopback port at each start."""

    def __init__(self, name: str, database_url: str, panel_file: Path, log_dir: Path, args: tuple[str, ...] = (),
                 **env: object) -> None:  # fmt: skip
        self.name = name
        self.args = args
        self.database_url = database_url
        self.panel_file = panel_file
        self.log_path = log_dir / f"{name}.log"
        self.env = {k.upper(): str(v) for k, v in env.items()}
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServiceProcess:
        """Spawn the process (returns at once; see wait_ready)."""
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONSENSUS_")}
        env.update(LITELLM_LOCAL_MODEL_COST_MAP="True", PYTHONUNBUFFERED="1", NO_PROXY="127.0.0.1,localhost",
                   DATABASE_URL=self.database_url, CONSENSUS_REPLICA_ID=self.name, **self.env)  # fmt: skip
        cmd = [sys.executable, "-m", "service", "serve", "--host", "127.0.0.1", "--port", str(self.port),
               "--panel-file", str(self.panel_file), *self.args]  # fmt: skip
        with open(self.log_path, "ab") as log:
            log.write(f"--- start {self.name} on port {self.port}\n".encode())
            self.proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
        return self

    def wait_ready(self, timeout: float = 60) -> ServiceProcess:
        """Poll /readyz until it answers 200; fail with the log when the process dies or hangs."""
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=self.url, timeout=2, trust_env=False) as c:
            while time.monotonic() < deadline:
                if self.proc is None or self.proc.poll() is not None:
                    raise RuntimeError(f"replica {self.name} exited ({self.returncode}) before ready:\n{self.log_tail()}")
                try:
                    if c.get("/readyz").status_code == 200:
                        return self
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
        raise RuntimeError(f"replica {self.name} not ready after {timeout:g} s:\n{self.log_tail()}")

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def kill(self) -> None:
        """SIGKILL to the whole process group (its --workers too): no shutdown code runs, like a crashed machine.
        Killing only the supervisor left its workers running, orphaned, after a failed --workers test."""
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)  # start_new_session: the group is the process's own
            if self.proc.poll() is None:
                self.proc.wait(10)

    def pause(self) -> None:
        """SIGSTOP: the process freezes (a long GC pause, an overloaded VM) with its sockets open."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def cont(self) -> None:
        """SIGCONT after pause()."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def terminate(self, timeout: float = 30) -> int:
        """SIGTERM and wait for the graceful shutdown to finish; returns the exit status."""
        assert self.proc is not None
        self.proc.terminate()
        return self.proc.wait(timeout)

    def client(self, **kw: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, trust_env=False, **kw)

    def metric(self, name: str) -> float:
        """A label-less sample of this process's /metrics (0 when absent)."""
        with self.client() as c:
            text = c.get("/metrics").text
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return 0.0

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
