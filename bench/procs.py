"""Helpers the benchmark scripts share: the stub server as a child process, /proc readings, marks."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # service.testing (the stub, the process helpers) from a checkout not installed

from service.testing.pg import children_of  # noqa: E402


def cpu_s_of(pid: int) -> float:
    """CPU seconds (utime + stime) used so far by another process (Linux /proc; NaN elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_s(pid: int) -> float:
    """CPU seconds of a process and its direct children (a server's worker processes)."""
    return cpu_s_of(pid) + sum(cpu_s_of(c) for c in children_of(pid))


def wait_until_up(url: str, proc: subprocess.Popen[Any], what: str, timeout: float = 60) -> None:
    """Poll `url` until it answers 200; raise if `proc` exits or the time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:  # noqa: S310 - loopback only
                if r.status == 200:
                    return
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not come up at {url} (exit code {proc.poll()})")
        time.sleep(0.1)


def stop(proc: subprocess.Popen[Any]) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


@contextlib.contextmanager
def stub_process() -> Iterator[tuple[str, int]]:
    """service/testing/stub_server.py in its own process (request log off); yields (base URL, pid), stops it after.

    Its own process group: the bench's Ctrl-C handling stops it, not the terminal's signal.
    """
    cmd = [sys.executable, "-m", "service.testing.stub_server", "--port", "0", "--no-log"]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if not line.startswith("STUB_URL="):
            raise RuntimeError(f"stub did not start (got {line!r}, exit code {proc.poll()})")
        url = line.split("=", 1)[1]
        wait_until_up(f"{url}/v1/models", proc, "stub")
        yield url, proc.pid
    finally:
        stop(proc)


def mark(ok: bool) -> str:
    return "met" if ok else "MISSED"
