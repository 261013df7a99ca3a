"""Fixtures: the real service under uvicorn on a loopback port, with stub-backed panels."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import httpx
import pytest
import uvicorn

from consensus.types import DebateSettings, Panel, Seat
from service.app import create_app
from service.settings import Settings


def ans(final, text=None, confidence=0.8):
    return json.dumps({"answer": text or f"I conclude {final}.", "final_answer": final, "confidence": confidence})


def stub_panel(stub, names=("alice", "bob", "carol"), **settings) -> Panel:
    seats = [Seat(name=n, model=f"openai/{n}", api_base=stub.api_base) for n in names]
    base = {"call_timeout_s": 10, "retry_budget_s": 10, "max_retry_after_s": 1, "max_rounds": 1}
    return Panel(panelists=seats, synthesizer=seats[0], debate=DebateSettings(**{**base, **settings}), source="stub")


class ServiceServer:
    """uvicorn serving create_app() in a background thread on 127.0.0.1:<free port>."""

    def __init__(self, settings: Settings, panel: Panel, provider=None) -> None:
        self.app = create_app(settings, panel, provider)
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=0, log_level="warning",
                                                    access_log=False, lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> ServiceServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("service did not start")
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.server_loop = self.services.runner.loop
        self.url = f"http://127.0.0.1:{port}"
        return self

    @property
    def services(self):
        return self.app.state.services

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)

    def client(self, **kw) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, **kw)


@pytest.fixture
def make_service(tmp_path, stub):
    started: list[ServiceServer] = []

    def make(panel=None, provider=None, **settings) -> ServiceServer:
        s = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/svc.db", **settings)
        srv = ServiceServer(s, panel or stub_panel(stub), provider).start()
        started.append(srv)
        return srv

    yield make
    for srv in started:
        srv.stop()


@pytest.fixture
def service(make_service):
    return make_service()


def wait_status(client: httpx.Client, debate_id: str, timeout: float = 20) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = client.get(f"/v1/debates/{debate_id}").json()
        if r["status"] != "running":
            return r
        time.sleep(0.05)
    raise AssertionError(f"debate {debate_id} still running")


def run_coro(coro):
    return asyncio.run(coro)
