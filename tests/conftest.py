"""Shared fixtures: the loopback OpenAI stub and a guard against network access outside 127.0.0.1."""

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # before anything imports litellm

import ipaddress  # noqa: E402
import socket  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from typing import Any  # noqa: E402

import pytest  # noqa: E402

from service.testing.stub_server import StubServer  # noqa: E402

NETWORK_ERROR = "network access outside 127.0.0.1 in tests"
_originals: dict[str, Any] = {}


def _is_loopback(address: Any) -> bool:
    """True for unix sockets and loopback hosts (127.0.0.0/8, ::1, localhost)."""
    if not isinstance(address, tuple):
        return True  # AF_UNIX path (str/bytes)
    host = address[0].decode() if isinstance(address[0], bytes) else str(address[0])
    if host == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return False  # any other host name
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip.is_loopback or (mapped is not None and mapped.is_loopback)


def _guard(name: str) -> Any:
    original = _originals[name]

    def guarded(sock: socket.socket, address: Any, *args: Any, **kwargs: Any) -> Any:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address):
            raise RuntimeError(NETWORK_ERROR)
        return original(sock, address, *args, **kwargs)

    return guarded


def _guarded_create_connection(address: Any, *args: Any, **kwargs: Any) -> socket.socket:
    if not _is_loopback(address):
        raise RuntimeError(NETWORK_ERROR)
    sock: socket.socket = _originals["create_connection"](address, *args, **kwargs)
    return sock


def pytest_configure(config: pytest.Config) -> None:
    """Block non-loopback connections for the whole run, collection included."""
    _originals.update(
        connect=socket.socket.connect, connect_ex=socket.socket.connect_ex, create_connection=socket.create_connection
    )
    socket.socket.connect = _guard("connect")  # type: ignore[method-assign]
    socket.socket.connect_ex = _guard("connect_ex")  # type: ignore[method-assign]
    socket.create_connection = _guarded_create_connection


def pytest_unconfigure(config: pytest.Config) -> None:
    if _originals:
        socket.socket.connect = _originals["connect"]  # type: ignore[method-assign]
        socket.socket.connect_ex = _originals["connect_ex"]  # type: ignore[method-assign]
        socket.create_connection = _originals["create_connection"]


@pytest.fixture(scope="session")
def stub_server() -> Iterator[StubServer]:
    """One loopback OpenAI-compatible stub for the whole session."""
    server = StubServer().start()
    yield server
    server.stop()


@pytest.fixture
def stub(stub_server: StubServer) -> StubServer:
    """The session stub, reset: no scripts, no hits, empty request log."""
    stub_server.reset()
    return stub_server
