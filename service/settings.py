"""The service's one Settings object (env prefix CONSENSUS_), validated at start-up."""

from __future__ import annotations

import ipaddress
import os
import socket
import uuid

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from consensus.config import load_panel
from consensus.types import Panel


class Settings(BaseSettings):
    """Everything the service reads from its environment."""

    model_config = SettingsConfigDict(env_prefix="CONSENSUS_", extra="ignore", populate_by_name=True)

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    database_url: str = Field(
        default="sqlite+aiosqlite:///consensus.db",
        validation_alias=AliasChoices("DATABASE_URL", "CONSENSUS_DATABASE_URL"),
    )
    panel_file: str | None = None
    panel: str | None = None  # the CONSENSUS_PANEL shortcut
    max_in_flight: int = Field(default=64, ge=1, description="debates running at once; beyond: 503")
    thread_max_depth: int = Field(default=20, ge=1, description="most debates in one thread of follow-ups")
    rate_limit_per_minute: int = Field(default=60, ge=1, description="debates started per key (or client) per minute")
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    max_list: int = Field(default=200, ge=1)
    db_pool_size: int = Field(
        default=20, ge=1, description="pooled database connections (plus twice as many on demand)"
    )
    db_pool_timeout_s: float = Field(default=30.0, gt=0, description="wait for a free connection; then 503")
    lease_s: float = Field(default=30.0, gt=1)
    shutdown_grace_s: float = Field(default=10.0, ge=0)
    replica_id: str = Field(default_factory=lambda: _replica_id())
    public_url: str | None = None
    page_key: str | None = Field(default=None, description="publishable pk_ key the web page uses when keys exist")
    key_cache_s: float = Field(
        default=0.0,
        ge=0,
        le=300,
        description="the oldest key data a request may be authorised from; 0: checked per request",
    )
    metrics_token: SecretStr | None = Field(
        default=None, description="a bearer token for /metrics (besides secret keys)"
    )
    auth_failures_per_minute: int = Field(
        default=10, ge=1, description="failed authentications per client address before 429s"
    )
    body_timeout_s: float = Field(
        default=10.0, gt=0, le=600, description="the whole request body within this; then 408"
    )
    quorum_grace: bool = Field(
        default=True,
        description="don't wait for a straggler: once all but one seat answered "
        "a round, wait at most max(grace_s, grace_factor x the round's median latency)",
    )
    grace_s: float = Field(default=1.0, ge=0, le=600)
    grace_factor: float = Field(default=0.25, ge=0, le=100)
    gc_tuning: bool = Field(
        default=False,
        description="while serving: freeze what start-up built out of the collector's reach and collect less "
        "often (`consensus serve` turns it on; CONSENSUS_GC_TUNING=0 turns it off)",
    )
    log_level: str = "info"

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, v: str) -> str:
        if v.startswith("postgres://"):
            v = "postgresql://" + v[len("postgres://") :]
        if v.startswith("postgresql://"):
            v = "postgresql+asyncpg://" + v[len("postgresql://") :]
        if v.startswith("sqlite:///"):
            v = "sqlite+aiosqlite:///" + v[len("sqlite:///") :]
        return v

    @field_validator("metrics_token")
    @classmethod
    def _strong_token(cls, v: SecretStr | None) -> SecretStr | None:
        if v is None or not v.get_secret_value():
            return None  # CONSENSUS_METRICS_TOKEN= (empty): no token
        if len(v.get_secret_value()) < 16:
            raise ValueError("CONSENSUS_METRICS_TOKEN must be at least 16 characters (e.g. `openssl rand -hex 24`)")
        return v

    @property
    def is_postgres(self) -> bool:
        return self.database_url.startswith("postgresql")

    @property
    def loopback(self) -> bool:
        """True when the service listens on a loopback address only."""
        return is_loopback(self.host)


def configured_panel(settings: Settings) -> Panel:
    """The panel these settings name (panel file, CONSENSUS_PANEL, else the local one); ConsensusError if bad."""
    env = {
        k: v for k, v in {"CONSENSUS_PANEL_FILE": settings.panel_file, "CONSENSUS_PANEL": settings.panel}.items() if v
    }
    return load_panel(settings.panel_file, env=env)


WORKER_OF_ENV = "CONSENSUS_WORKER_OF"  # set by `consensus serve --workers N` for its worker processes


def _replica_id() -> str:
    """This process's name in leases: unique per process, and a worker's names its parent server's."""
    parent = os.environ.get(WORKER_OF_ENV)
    if parent:
        return f"{parent}-w{os.getpid()}"
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def is_loopback(host: str) -> bool:
    """Whether `host` is a loopback address (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
