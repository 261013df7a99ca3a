"""Start-up: how long until a person sees something, and what it costs in memory.

    python bench/startup.py [--skip-ask] [--runs N]

Prints, for the README's first command (`consensus ask "What is the capital of France?"` on the default local
panel), run N times (default 5; the machine is shared and one run is noise): the median, min and max of its wall
time and of its time to the first streamed token, its peak RSS, and whether LiteLLM was imported; then the time
until `consensus serve` answers /readyz, on the local panel and on a LiteLLM panel (seats on a loopback stub).
"""

from __future__ import annotations

import argparse
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from service.testing.stub_server import StubServer

ASK = (
    "import atexit, resource, sys, time\n"
    "t0 = time.perf_counter()\n"
    "atexit.register(lambda: print('LITELLM', 'litellm' in sys.modules, file=sys.stderr))\n"
    "import consensus.cli.debate as d\n"
    "seen = []\n"
    "update = d.LiveView.update\n"
    "def first(self, e):\n"
    "    if not seen and getattr(e, 'delta', None):\n"
    "        seen.append(1); print('FIRST_TOKEN', round(time.perf_counter() - t0, 2), file=sys.stderr)\n"
    "    return update(self, e)\n"
    "d.LiveView.update = first\n"
    "from consensus.cli import main\n"
    "sys.argv = ['consensus', 'ask', 'What is the capital of France?']\n"
    "main()\n"
)


def ask(runs: int) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONSENSUS_PANEL")}
    walls: list[float] = []
    firsts: list[float] = []
    imported: set[str] = set()
    for _ in range(runs):
        start = time.perf_counter()
        p = subprocess.run([sys.executable, "-c", ASK], capture_output=True, text=True, env=env, timeout=900)
        walls.append(time.perf_counter() - start)
        if p.returncode != 0:
            sys.exit(f"consensus ask failed (exit {p.returncode}):\n{p.stderr[-2000:]}")
        lines = dict(
            line.split(" ", 1) for line in p.stderr.splitlines() if line.startswith(("FIRST_TOKEN", "LITELLM"))
        )
        firsts.append(float(lines["FIRST_TOKEN"]))
        imported.add(lines.get("LITELLM", "?"))
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # the largest child's peak

    def spread(xs: list[float]) -> str:
        return f"median {statistics.median(xs):.2f} s (min {min(xs):.2f}, max {max(xs):.2f})"

    print(f"consensus ask (default local panel), {runs} runs: wall {spread(walls)}; first token {spread(firsts)}")
    print(f"  peak RSS {rss:.0f} MiB; LiteLLM imported: {', '.join(sorted(imported))}")
    print(f"  load average {os.getloadavg()[0]:.1f} (2 cores; targets: <= 10 s and <= 300 MiB)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(label: str, panel: Path | None) -> None:
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONSENSUS_")}
        env["DATABASE_URL"] = f"sqlite+aiosqlite:///{tmp}/s.db"
        args = [sys.executable, "-m", "consensus", "serve", "--port", str(port)]
        if panel is not None:
            args += ["--panel-file", str(panel)]
        start = time.perf_counter()
        proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            while time.perf_counter() - start < 120:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.05)
            print(f"consensus serve, {label}: ready in {time.perf_counter() - start:.1f} s")
        finally:
            proc.terminate()
            proc.wait(30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--skip-ask", action="store_true")
    ap.add_argument("--runs", type=int, default=5, help="runs of the first command (default 5)")
    a = ap.parse_args()
    if not a.skip_ask:
        ask(max(1, a.runs))
    serve("local panel", None)
    stub = StubServer().start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            panel = Path(tmp) / "panel.toml"
            panel.write_text(
                "".join(
                    f'[[panelist]]\nname = "{n}"\nmodel = "openai/{n}"\napi_base = "{stub.api_base}"\n'
                    'transport = "litellm"\n'
                    for n in ("alice", "bob", "carol")
                )
            )
            serve("LiteLLM panel (3 seats on the stub)", panel)
            lean = Path(tmp) / "lean.toml"
            lean.write_text(panel.read_text().replace('transport = "litellm"', 'transport = "auto"'))
            serve("the same seats on transport = auto (the lean client)", lean)
    finally:
        stub.stop()


if __name__ == "__main__":
    main()
