"""HTTP load: N concurrent clients each run a debate against the service (stub providers); prints figures.

    python bench/load.py                        # 200 and 1,000 clients, 2 s calls, then the admission run
    python bench/load.py --clients 200          # one size
    python bench/load.py --quick                # 50 clients, 1 s calls, a small admission run
    python bench/load.py --transport openai-compatible   # the panel on the gateway's lean client

The stub (service/testing/stub_server.py) and the service (`python -m consensus serve`) run as separate processes;
each size gets a fresh service and database. Half the clients POST /v1/debates with
Accept: text/event-stream and read the stream to its end, half POST ?wait=true. A debate's critical
path is (debate rounds run + 2) x latency: openings, each debate round, synthesis. Server CPU and RSS
come from /proc/<pid> of the service process; the bench client shares the same cores. After each size, the
same calls in the same pattern and concurrency go from a bare aiohttp session straight to the stub (bench/floor.py):
the floor this stub and machine allow any client in that run, which the service's ratio is divided by.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from floor import bare_floor
from procs import children_of, cpu_s_of, mark, stop, stub_process, tree_cpu_s, wait_until_up

ROOT = Path(__file__).resolve().parents[1]
QUESTION = "What is six times seven? Check the arithmetic before you answer. (client {i})"
STARTED = time.perf_counter()
TARGETS = {"ratio": 1.20, "over_floor": 1.25, "rss_mib": 400.0, "fast_503_s": 1.0}
TERMINAL = ("debate.completed", "debate.failed")


# -- processes --------------------------------------------------------------------------------------
def mem_mib_of(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (peak RSS since start) of a server, MiB: summed over it and its worker processes."""
    out = {"VmRSS": 0.0, "VmHWM": 0.0}
    for p in [pid, *children_of(pid)]:
        for line in Path(f"/proc/{p}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in out:
                out[key] += int(value.split()[0]) / 1024
    return out


PANEL = """\
[debate]
max_rounds = 0                 # all latency-<ms> seats agree: openings + synthesis = 2 calls deep
max_attempts = 1               # a failed call shows up as a failed/degraded debate, not a hidden retry
provider_rate_per_s = 100000   # the throttle is not what is measured
provider_concurrency = 10000
call_timeout_s = {timeout}
deadline_s = {deadline}
{seats}
[synthesizer]
panelist = "a"
"""


@contextlib.contextmanager
def service_process(
    stub: str,
    latency_ms: int,
    max_in_flight: int,
    tmp: Path,
    database_url: str | None = None,
    workers: int = 1,
    transport: str = "litellm",
) -> Iterator[tuple[str, int, Path]]:
    """`python -m consensus serve` on a free port with a fresh database (SQLite unless given); yields (URL, pid, log)."""
    import socket

    seats = "".join(
        f'[[panelist]]\nname = "{n}"\nmodel = "openai/latency-{latency_ms}"\napi_base = "{stub}/v1"\n'
        f'transport = "{transport}"\n'
        for n in "abc"
    )
    call_timeout = latency_ms / 1000 * 3 + 60
    panel = tmp / "panel.toml"
    panel.write_text(PANEL.format(seats=seats, timeout=call_timeout, deadline=call_timeout * 3))
    db = tmp / f"load-{max_in_flight}-{time.monotonic_ns()}.db"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **os.environ,
        "DATABASE_URL": database_url or f"sqlite+aiosqlite:///{db}",
        "CONSENSUS_MAX_IN_FLIGHT": str(max_in_flight),
        "CONSENSUS_RATE_LIMIT_PER_MINUTE": "100000",
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        # LiteLLM's aiohttp pool allows 500 connections per host: 1,000 debates x 3 seats would queue.
        "AIOHTTP_CONNECTOR_LIMIT": "20000",
        "AIOHTTP_CONNECTOR_LIMIT_PER_HOST": "20000",
    }
    env.pop("CONSENSUS_PANEL", None)
    if database_url:  # the throwaway cluster allows 100 connections: 10 pooled (+20 on demand) per worker
        env["CONSENSUS_DB_POOL_SIZE"] = "10"
    log = tmp / f"service-{port}.log"
    cmd = [
        sys.executable,
        "-m",
        "consensus",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--panel-file",
        str(panel),
        "--workers",
        str(workers),
    ]
    with log.open("w") as err:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_up(f"{url}/readyz", proc, "service")
        yield url, proc.pid, log
    finally:
        stop(proc)


@contextlib.contextmanager
def postgres(wanted: bool) -> Iterator[Callable[[], str | None]]:
    """A throwaway PostgreSQL cluster (service/testing/pg.py); yields a maker of fresh database URLs (None: SQLite)."""
    if not wanted:
        yield lambda: None
        return
    from service.testing.pg import PgCluster  # procs put the repository on sys.path

    cluster = PgCluster().start()
    try:
        yield cluster.create_database
    finally:
        cluster.stop()


def wait_for_quiet(max_load: float, max_wait_s: float) -> str:
    """Wait (polling) until the 1-minute load average is at most max_load, or max_wait_s passed."""
    t0 = time.monotonic()
    first = os.getloadavg()[0]
    while os.getloadavg()[0] > max_load and time.monotonic() - t0 < max_wait_s:
        time.sleep(10)
    load = os.getloadavg()
    waited = time.monotonic() - t0
    note = f"waited {waited:.0f} s (load was {first:.2f}); " if waited > 1 else ""
    quiet = "" if load[0] <= max_load else f" -- still above {max_load}, measured anyway"
    return f"{note}load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}{quiet}"


# -- clients ----------------------------------------------------------------------------------------
@dataclass
class Outcome:
    """One client's request: how it ended and how long it took."""

    mode: str
    seconds: float = 0.0
    http: int = 0
    status: str = ""  # the debate's final status
    error: str = ""  # "" when the debate completed
    rounds: int = -1
    retry_after: str | None = None


def last_sse_result(body: bytes) -> tuple[str, dict[str, Any] | None]:
    """(type, result) of the last event frame of an SSE body."""
    kind, data = "", None
    for frame in body.split(b"\n\n"):
        lines = frame.split(b"\n")
        ev = next((ln[7:].strip().decode() for ln in lines if ln.startswith(b"event: ")), "")
        if ev:
            kind, data = ev, next((ln[6:] for ln in lines if ln.startswith(b"data: ")), None)
    return kind, (json.loads(data).get("result") if data else None)


async def one_client(session: aiohttp.ClientSession, url: str, i: int, sse: bool, timeout_s: float) -> Outcome:
    out = Outcome(mode="sse" if sse else "wait")
    headers = {"Accept": "text/event-stream"} if sse else {}
    params = {} if sse else {"wait": "true"}
    t0 = time.perf_counter()
    result: dict[str, Any] | None = None
    try:
        async with asyncio.timeout(timeout_s):
            async with session.post(
                f"{url}/v1/debates", json={"question": QUESTION.format(i=i)}, params=params, headers=headers
            ) as r:
                out.http, out.retry_after = r.status, r.headers.get("Retry-After")
                body = await r.read()
        if out.http != 200:
            out.error = f"HTTP {out.http}"
        elif sse:
            kind, result = last_sse_result(body)
            if kind not in TERMINAL:
                out.error = f"SSE ended without a terminal event (last: {kind or 'none'})"
        else:
            result = json.loads(body)
    except TimeoutError:
        out.error = "timeout"
    except Exception as exc:  # noqa: BLE001 - every failure is counted, by kind
        out.error = f"{type(exc).__name__}: {str(exc)[:80]}"
    out.seconds = time.perf_counter() - t0
    if result is not None:
        out.status, out.rounds = str(result.get("status")), len(result.get("rounds") or []) - 1
        if out.status != "completed" and not out.error:
            out.error = f"debate {out.status}: {str(result.get('reason'))[:80]}"
    return out


@dataclass
class Sampler:
    """Samples the service's debates in flight (the /metrics gauge: /readyz waits on the database pool)."""

    url: str
    peak_in_flight: int = 0

    async def run(self, session: aiohttp.ClientSession) -> None:
        while True:
            with contextlib.suppress(Exception):  # a saturated server answers late or not at all: skip
                async with session.get(f"{self.url}/metrics", timeout=aiohttp.ClientTimeout(total=2)) as r:
                    for line in (await r.text()).splitlines():
                        if line.startswith("consensus_debates_in_flight "):
                            self.peak_in_flight = max(self.peak_in_flight, int(float(line.split()[1])))
            await asyncio.sleep(0.5)


async def batch(url: str, pid: int, n: int, timeout_s: float, first: int = 0) -> dict[str, Any]:
    """n clients at once (even: SSE, odd: ?wait=true); wall, outcomes and the service's CPU/RSS."""
    conn = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=None)) as session:
        sampler = Sampler(url)
        sampling = asyncio.create_task(sampler.run(session))
        cpu0, mine0, t0 = tree_cpu_s(pid), time.process_time(), time.perf_counter()
        outcomes = await asyncio.gather(*(one_client(session, url, first + i, i % 2 == 0, timeout_s) for i in range(n)))
        wall = time.perf_counter() - t0
        cpu, mine = tree_cpu_s(pid) - cpu0, time.process_time() - mine0
        sampling.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampling
    return {
        "outcomes": outcomes,
        "wall": wall,
        "cpu": cpu,
        "client_cpu": mine,
        "mem": mem_mib_of(pid),
        "peak_in_flight": sampler.peak_in_flight,
    }


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(q / 100 * len(values) + 0.5) - 1))]


def error_summary(outcomes: list[Outcome]) -> str:
    errors = Counter(o.error for o in outcomes if o.error)
    return ", ".join(f"{k} x{v}" for k, v in errors.most_common(5)) or "none"


def log_summary(log: Path) -> str:
    """Errors the service logged: the last line of each exception (JSON logs and uvicorn's tracebacks)."""
    counts: Counter[str] = Counter()
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                rec = json.loads(line)
                if rec.get("level") in ("warning", "error", "critical"):
                    exc = (rec.get("exception") or "").strip().splitlines()
                    message = re.sub(r"\b[0-9a-f]{32}\b", "<id>", str(rec.get("message")))
                    counts[f"{message:.40}: {exc[-1] if exc else ''}"[:110]] += 1
        elif re.match(r"[\w.]+(Error|Exception)\b", line):  # the last line of a traceback printed by uvicorn
            counts[line[:110]] += 1
    return "; ".join(f"{k} x{v}" for k, v in counts.most_common(4)) or "none"


# -- runs -------------------------------------------------------------------------------------------
async def stub_calls(stub: str) -> int:
    """LLM calls the stub has answered so far."""
    async with aiohttp.ClientSession() as s, s.get(f"{stub}/_hits") as r:
        return sum((await r.json()).values())


async def measure(
    url: str, pid: int, n: int, latency_ms: int, timeout_s: float, stub: tuple[str, int]
) -> dict[str, Any]:
    await batch(url, pid, 4, timeout_s, first=10**6)  # warm-up: lazy imports, pools, SQLite pages
    rss0 = mem_mib_of(pid)["VmRSS"]
    calls0, stub0 = await stub_calls(stub[0]), cpu_s_of(stub[1])
    r = await batch(url, pid, n, timeout_s)
    calls, stub_cpu = await stub_calls(stub[0]) - calls0, cpu_s_of(stub[1]) - stub0
    outs: list[Outcome] = r["outcomes"]
    done = [o for o in outs if not o.error]
    rounds = max((o.rounds for o in done), default=0)
    path = (rounds + 2) * latency_ms / 1000
    secs = [o.seconds for o in done]
    by_mode = {m: [o.seconds for o in done if o.mode == m] for m in ("sse", "wait")}
    # The floor: the same clients' calls (SSE clients' seats stream, ?wait ones' do not), no service in between.
    floor = await bare_floor(stub[0], latency_ms, n, steps=rounds + 2, streamed=lambda i: i % 2 == 0)
    return {
        **r,
        "n": n,
        "path": path,
        "rounds": rounds,
        "ratio": r["wall"] / path,
        "floor": floor,
        "over_floor": r["wall"] / path / floor,
        "calls": calls / n,
        "stub_cpu": stub_cpu,
        "errors": len(outs) - len(done),
        "timeouts": sum(o.error == "timeout" for o in outs),
        "p50": pct(secs, 50),
        "p99": pct(secs, 99),
        "max": max(secs, default=float("nan")),
        "p50_sse": pct(by_mode["sse"], 50),
        "p50_wait": pct(by_mode["wait"], 50),
        "rss0": rss0,
        "error_kinds": error_summary(outs),
    }


async def measure_admission(url: str, pid: int, n: int, timeout_s: float) -> dict[str, Any]:
    await batch(url, pid, 2, timeout_s, first=10**6)
    r = await batch(url, pid, n, timeout_s)
    outs: list[Outcome] = r["outcomes"]
    rejected = [o for o in outs if o.http == 503]
    other = [o for o in outs if o.error and o.http != 503]
    return {
        **r,
        "n": n,
        "completed": sum(not o.error for o in outs),
        "rejected": len(rejected),
        "p50_503": pct([o.seconds for o in rejected], 50),
        "p99_503": pct([o.seconds for o in rejected], 99),
        "max_503": max((o.seconds for o in rejected), default=float("nan")),
        "retry_after": sum(o.retry_after is not None for o in rejected),
        "timeouts": sum(o.error == "timeout" for o in outs),
        "other_errors": len(other),
        "error_kinds": error_summary(other),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--clients",
        type=int,
        nargs="*",
        default=[200, 1000],
        help="concurrent clients per run (none: only the admission run)",
    )
    parser.add_argument("--latency-ms", type=int, default=2000, help="stub latency per LLM call")
    parser.add_argument(
        "--admission",
        type=int,
        nargs=2,
        default=[100, 300],
        metavar=("MAX_IN_FLIGHT", "CLIENTS"),
        help="admission-control run: service limit and clients (0 0 skips it)",
    )
    parser.add_argument(
        "--timeout-s", type=float, default=0, help="client timeout (default 15 x critical path, >= 60 s)"
    )
    parser.add_argument("--max-load", type=float, default=2.5, help="wait for the 1-min load average to drop to this")
    parser.add_argument("--max-wait-s", type=float, default=600, help="wait at most this long for a quiet machine")
    parser.add_argument("--quick", action="store_true", help="short run: 50 clients, 1 s calls, admission 20/60")
    parser.add_argument(
        "--postgres",
        action="store_true",
        help="a throwaway PostgreSQL cluster (service/testing/pg.py) instead of SQLite",
    )
    parser.add_argument("--workers", type=int, default=1, help="`consensus serve --workers N` (needs --postgres)")
    parser.add_argument(
        "--transport",
        choices=("litellm", "openai-compatible"),
        default="litellm",
        help="the panel's transport; openai-compatible: the service never imports LiteLLM",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.clients, args.latency_ms, args.admission = [50], min(args.latency_ms, 1000), [20, 60]
    timeout_s = args.timeout_s or max(60.0, 15 * 2 * args.latency_ms / 1000)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally blocks: children are stopped
    db = f"PostgreSQL, {args.workers} worker process(es)" if args.postgres else "SQLite, 1 process"
    print(
        f"{os.cpu_count()} cores; service on {db}; stub latency {args.latency_ms} ms per call; 3 seats (openai/latency-"
        f"{args.latency_ms}), max_rounds 0, max_attempts 1; client timeout {timeout_s:.0f} s; aiohttp "
        f"{aiohttp.__version__}",
        flush=True,
    )
    if args.workers > 1 and not args.postgres:
        parser.error("--workers needs --postgres")
    runs, admission = [], None
    with (
        tempfile.TemporaryDirectory(prefix="consensus-load-") as d,
        stub_process() as (stub, stub_pid),
        postgres(args.postgres) as database,
    ):
        tmp = Path(d)
        for n in args.clients:
            with service_process(
                stub, args.latency_ms, max(n + 10, 64), tmp, database(), args.workers, args.transport
            ) as (url, pid, log):
                load = wait_for_quiet(args.max_load, args.max_wait_s)
                m = asyncio.run(measure(url, pid, n, args.latency_ms, timeout_s, (stub, stub_pid)))
                m.update(load=load, load_after=os.getloadavg()[0])
            m["log"] = log_summary(log)
            runs.append(m)
            print(
                f"\n{n} concurrent clients ({n - n // 2} SSE, {n // 2} ?wait=true); {m['load']}, "
                f"{m['load_after']:.2f} after",
                flush=True,
            )
            print(
                f"  wall {m['wall']:.2f} s / critical path {m['path']:.1f} s ({m['rounds']} debate rounds) = "
                f"{m['ratio']:.3f}x; peak in flight (sampled every 0.5 s) {m['peak_in_flight']}"
            )
            print(
                f"  floor (the same calls by bare aiohttp straight to the stub, this run): {m['floor']:.3f}x; "
                f"ours / floor {m['over_floor']:.3f}; {m['calls']:.1f} calls per debate (the floor makes "
                f"{3 + m['rounds'] + 1})"
            )
            print(
                f"  latency p50 {m['p50']:.2f} s, p99 {m['p99']:.2f} s, max {m['max']:.2f} s "
                f"(p50 SSE {m['p50_sse']:.2f} s, ?wait {m['p50_wait']:.2f} s)"
            )
            print(f"  errors {m['errors']} (timeouts {m['timeouts']}): {m['error_kinds']}")
            print(
                f"  server CPU {m['cpu']:.1f} s ({m['cpu'] * 1000 / n:.1f} ms per debate); stub CPU "
                f"{m['stub_cpu']:.1f} s; this client CPU {m['client_cpu']:.1f} s"
            )
            print(
                f"  server RSS: {m['rss0']:.0f} MiB after warm-up, {m['mem']['VmRSS']:.0f} MiB after, peak "
                f"(VmHWM) {m['mem']['VmHWM']:.0f} MiB; service warnings/errors: {m['log']}",
                flush=True,
            )
        if args.admission[0] > 0:
            limit, n = args.admission
            with service_process(
                stub, args.latency_ms, max(1, limit // args.workers), tmp, database(), args.workers, args.transport
            ) as (url, pid, log):
                load = wait_for_quiet(args.max_load, args.max_wait_s)
                admission = asyncio.run(measure_admission(url, pid, n, timeout_s))
            a = admission
            a.update(load=load, log=log_summary(log))
            print(f"\nadmission control: CONSENSUS_MAX_IN_FLIGHT={limit}, {n} concurrent clients; {a['load']}")
            print(
                f"  {a['completed']} completed, {a['rejected']} answered 503 (p50 {a['p50_503'] * 1000:.0f} ms, "
                f"p99 {a['p99_503'] * 1000:.0f} ms, max {a['max_503'] * 1000:.0f} ms; {a['retry_after']} with "
                f"Retry-After); timeouts {a['timeouts']}; other errors {a['other_errors']}: {a['error_kinds']}"
            )
            print(
                f"  admitted {a['n'] - a['rejected']} (limit {limit}), peak in flight sampled {a['peak_in_flight']}; wall {a['wall']:.2f} s; server CPU "
                f"{a['cpu']:.1f} s; peak RSS {a['mem']['VmHWM']:.0f} MiB; service warnings/errors: {a['log']}",
                flush=True,
            )

    print("\nSummary (one run each; the machine is shared and noisy)")
    rows: list[tuple[str, str, str, bool | None]] = []
    for m in runs:
        n = m["n"]
        rows.append(
            (
                f"wall / critical path, {n} clients",
                f"{m['ratio']:.3f}x",
                f"<= {TARGETS['ratio']}x",
                m["ratio"] <= TARGETS["ratio"] if n <= 200 else None,
            )
        )
        rows.append((f"  bare aiohttp floor, {n} clients", f"{m['floor']:.3f}x", "", None))
        rows.append(
            (
                f"ours / floor, {n} clients",
                f"{m['over_floor']:.3f}",
                f"<= {TARGETS['over_floor']}",
                m["over_floor"] <= TARGETS["over_floor"] if n <= 200 else None,
            )
        )
        rows.append((f"server CPU per debate, {n} clients", f"{m['cpu'] * 1000 / n:.1f} ms", "", None))
        rows.append((f"errors, {n} clients", f"{m['errors']}", "0", m["errors"] == 0))
        rows.append((f"p50 / p99 latency, {n} clients", f"{m['p50']:.2f}/{m['p99']:.2f} s", "", None))
        rows.append(
            (
                f"server peak RSS, {n} clients",
                f"{m['mem']['VmHWM']:.0f} MiB",
                f"<= {TARGETS['rss_mib']:.0f} MiB",
                m["mem"]["VmHWM"] <= TARGETS["rss_mib"] if n >= 1000 else None,
            )
        )
        rows.append((f"server CPU, {n} clients", f"{m['cpu']:.1f} s", "", None))
    if admission is not None:
        a = admission
        rows.append(
            (
                "admission: 503s, p99",
                f"{a['rejected']}, {a['p99_503'] * 1000:.0f} ms",
                f"< {TARGETS['fast_503_s'] * 1000:.0f} ms",
                a["rejected"] > 0 and a["p99_503"] < TARGETS["fast_503_s"],
            )
        )
        rows.append(
            (
                "admission: timeouts / other errors",
                f"{a['timeouts']} / {a['other_errors']}",
                "0 / 0",
                a["timeouts"] == 0 and a["other_errors"] == 0,
            )
        )
        admitted = a["n"] - a["rejected"]  # the burst arrives at once: every debate not refused ran concurrently
        rows.append(("admission: admitted", f"{admitted}", f"<= {args.admission[0]}", admitted <= args.admission[0]))
    for label, value, target, ok in rows:
        print(f"  {label:<40}{value:>16}  {target:<12}{'' if ok is None else mark(ok)}")
    print(
        f"\ncommand: {' '.join([Path(sys.executable).name, *sys.argv])}  (took {time.perf_counter() - STARTED:.0f} s)"
    )


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
