"""Fixtures: Debian's chromium driven by Playwright, the real service on loopback, a second origin."""

from __future__ import annotations

import asyncio
import html
import os
import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from service.security import create_key
from service.settings import Settings
from tests.api.conftest import ServiceServer, ans, stub_panel

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="package")
def browser() -> Iterator[object]:
    """Headless Debian chromium. Missing, the browser tests skip with a one-line reason on a developer's machine,
    and fail in CI (CI=true: `.ci/run` installs chromium, so a missing one there is a broken install).

    Package-scoped: Playwright's sync API keeps an event loop set as running in the main thread
    until it stops, which would break every later test that calls asyncio.run().
    """
    executable = shutil.which("chromium")
    if executable is None:
        why = "chromium is not installed: run `bash scripts/install.sh` as root, or `apt-get install chromium fonts-noto-core`"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(why, pytrace=False)
        pytest.skip(why)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    """A fresh browser context per test, failing on any script error or Content-Security-Policy violation."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-US")
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.on("console", lambda m: errors.append(m.text) if "Content Security Policy" in m.text else None)
    pg.set_default_timeout(15_000)
    yield pg
    context.close()
    assert not errors, f"errors on the page: {errors}"


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """test-artifacts/ (git-ignored): screenshots a person can look at."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


def _serve(tmp: Path, stub_server) -> ServiceServer:
    settings = Settings(database_url=f"sqlite+aiosqlite:///{tmp}/svc.db", rate_limit_per_minute=1000)
    return ServiceServer(settings, stub_panel(stub_server)).start()


@pytest.fixture(scope="session")
def web(tmp_path_factory, stub_server) -> Iterator[ServiceServer]:
    """The service in open loopback mode (no keys): the page calls the API without a key."""
    srv = _serve(tmp_path_factory.mktemp("web"), stub_server)
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def keyed_web(tmp_path_factory, stub_server) -> Iterator[ServiceServer]:
    """A second service whose keys the widget tests create (any key ends open mode)."""
    srv = _serve(tmp_path_factory.mktemp("keyed"), stub_server)
    yield srv
    srv.stop()


def make_key(srv: ServiceServer, name: str, origins: list[str]) -> str:
    """Create a key in the running service's store and refresh its key cache."""
    plain, _row = asyncio.run_coroutine_threadsafe(
        create_key(srv.services.store, name, origins), srv.server_loop
    ).result(10)
    asyncio.run_coroutine_threadsafe(srv.services.keys.refresh(force=True), srv.server_loop).result(10)
    return plain


class HostSite:
    """Another website on loopback: /host?api=&key=&q=&lang= is a page that embeds the widget.

    Its CSS is hostile on purpose (it styles every element) to show the shadow root keeps it out.
    The same server is two origins: http://localhost:PORT and http://127.0.0.1:PORT.
    """

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                q = {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}
                attrs = " ".join(f'data-{k}="{html.escape(q[k])}"' for k in ("key", "question", "lang") if k in q)
                body = f"""<!doctype html><html><head><meta charset="utf-8"><title>host</title>
<style>* {{ color: rgb(255, 0, 0) !important; font-size: 9px !important; }} textarea, button {{ display: none !important; }}</style>
</head><body><h1 id="host-title">A news site</h1>
<script src="{html.escape(q.get("api", ""))}/widget.js" {attrs}></script>
<p id="after">text after the widget</p></body></html>""".encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def origin(self, host: str = "localhost") -> str:
        return f"http://{host}:{self.port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="session")
def host_site() -> Iterator[HostSite]:
    site = HostSite()
    yield site
    site.stop()


def script_debate(stub, *, carol_changes_mind: bool = True, answer_text: str | None = None) -> None:
    """alice and bob say 4; carol says 5, then 4 after the debate round; alice also synthesizes."""
    first = ans("4", answer_text)
    synthesis = {"text": "The panel agrees that 2 + 2 = 4.\n\nDissent: none after the debate."}
    if carol_changes_mind:  # round 0 agreement 0.67 < 0.8: one debate round, then the synthesis
        stub.script("alice", [{"text": first}, {"text": ans("4")}, synthesis])
        stub.script("bob", [{"text": first}, {"text": ans("4")}])
        stub.script("carol", [{"text": ans("5", "I first thought 5.")}, {"text": ans("4", "Checked again: it is 4.")}])
    else:  # everyone agrees at once: no debate round
        stub.script("alice", [{"text": first}, synthesis])
        stub.script("bob", [{"text": first}])
        stub.script("carol", [{"text": first}])
