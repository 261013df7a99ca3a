"""The service run as separate OS processes, so tests can kill, stop or freeze a replica."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from service.testing.pg import free_port

REPO = Path(__file__).resolve().parent.parent
# The panel of a replica (make_panel options): the lean transport, so a process that never loads LiteLLM starts
# in about a second instead of nine (the contract tests run both transports through the gateway), and a call
# timeout that outlasts a hang the test ends by killing the replica.
REPLICA_PANEL = {"transport": "openai-compatible", "max_rounds": 1, "call_timeout_s": 30, "retry_budget_s": 5}


class ServiceProcess:
    """`python -m consensus serve` in its own process, on a fresh loopback port at each start."""

    def __init__(
        self, name: str, database_url: str, panel_file: Path, log_dir: Path, args: tuple[str, ...] = (), **env: object
    ) -> None:
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
        env.update(
            LITELLM_LOCAL_MODEL_COST_MAP="True",
            PYTHONUNBUFFERED="1",
            NO_PROXY="127.0.0.1,localhost",
            DATABASE_URL=self.database_url,
            CONSENSUS_REPLICA_ID=self.name,
            # The replica and restart tests time slow seats against leases: every seat is waited for.
            **{"CONSENSUS_QUORUM_GRACE": "false", **self.env},
        )
        cmd = [
            sys.executable,
            "-m",
            "consensus",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--panel-file",
            str(self.panel_file),
            *self.args,
        ]
        with open(self.log_path, "ab") as log:
            log.write(f"--- start {self.name} on port {self.port}\n".encode())
            self.proc = subprocess.Popen(
                cmd,
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        return self

    def wait_ready(self, timeout: float = 60) -> ServiceProcess:
        """Poll /readyz until it answers 200; fail with the log when the process dies or hangs."""
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=self.url, timeout=2, trust_env=False) as c:
            while time.monotonic() < deadline:
                if self.proc is None or self.proc.poll() is not None:
                    raise RuntimeError(
                        f"replica {self.name} exited ({self.returncode}) before ready:\n{self.log_tail()}"
                    )
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
