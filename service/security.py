"""API keys (stored hashed), origin checks for browser keys, per-key rate limits, CORS."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
import time
import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from service.store import ApiKeyRow, Store, now

log = logging.getLogger("consensus.service")

SECRET_PREFIX = "sk_"
PUBLISHABLE_PREFIX = "pk_"


class ApiError(Exception):
    """An HTTP error with OpenAI's error shape; `param` names the field at fault."""

    def __init__(self, status: int, message: str, *, type_: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None, headers: dict[str, str] | None = None) -> None:  # fmt: skip
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.param = param
        self.code = code
        self.headers = headers or {}


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def normalize_origin(origin: str) -> str:
    """'https://Site.example:443/' -> 'https://site.example'; raises ValueError when not an origin."""
    parts = urlsplit(origin.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/") or parts.query:
        raise ValueError(f"{origin!r} is not an origin like https://site.example")
    default = {"http": 80, "https": 443}[parts.scheme]
    port = f":{parts.port}" if parts.port and parts.port != default else ""
    return f"{parts.scheme}://{parts.hostname.lower()}{port}"


async def create_key(store: Store, name: str, origins: list[str]) -> tuple[str, ApiKeyRow]:
    """Create a key; returns the plain key (shown once) and its stored row (hash only)."""
    clean = [normalize_origin(o) for o in origins]
    prefix = PUBLISHABLE_PREFIX if clean else SECRET_PREFIX
    plain = prefix + secrets.token_urlsafe(24)
    row = ApiKeyRow(id=uuid.uuid4().hex[:12], name=name, prefix=plain[:7], key_hash=hash_key(plain),
                    origins=clean, created_at=now(), revoked_at=None)  # fmt: skip
    await store.add_key(row)
    return plain, row


@dataclass(frozen=True)
class Principal:
    """Who is calling: a key, or an anonymous client of an open (loopback) service."""

    key_id: str | None
    name: str
    bucket: str
    shared: bool = False  # a publishable (origin-bound) key: every visitor of its site holds it


class KeyCache:
    """Active keys, refreshed every few seconds so `consensus keys create` takes effect quickly."""

    WAIT_S = 1.0  # the most a request waits for a reload it asked for (an origin not seen yet)

    def __init__(self, store: Store, ttl_s: float = 5.0) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self.by_hash: dict[str, ApiKeyRow] = {}
        self.origins: set[str] = set()
        self.loaded_at = 0.0
        self.tried_at = 0.0  # the last load started, whether it worked: a failing database is tried once per ttl
        self._loading: asyncio.Task[None] | None = None

    async def refresh(self, force: bool = False, wait: bool = False) -> None:
        """Reload when stale. One load at a time: a burst of requests finding the keys stale would
        otherwise each read them, queueing hundreds of reads behind a busy database. Until the first
        load, and when forced, the caller waits for it; with `wait`, for up to WAIT_S; otherwise it goes on
        with the keys it has."""
        if force:
            await self._load(strict=True)  # a fresh read: keys created just now must be in it
            return
        if time.monotonic() - max(self.loaded_at, self.tried_at) < self.ttl_s:
            return
        if self._loading is None or self._loading.done():
            self.tried_at = time.monotonic()
            self._loading = asyncio.get_running_loop().create_task(self._load(strict=not self.loaded_at))
        if not self.loaded_at:
            await asyncio.shield(self._loading)
        elif wait:
            with contextlib.suppress(TimeoutError):  # a busy database: answer with the keys there are
                await asyncio.wait_for(asyncio.shield(self._loading), self.WAIT_S)

    async def _load(self, strict: bool) -> None:
        try:
            rows = [r for r in await self.store.keys() if r.revoked_at is None]
        except Exception:
            if strict:
                raise  # nothing to go on with, or a forced reload: the waiting caller gets the error
            log.warning("reloading API keys failed; keeping the ones loaded %.0f s ago",
                        time.monotonic() - self.loaded_at, exc_info=True)  # fmt: skip
            return
        self.by_hash = {r.key_hash: r for r in rows}
        self.origins = {o for r in rows for o in r.origins}
        self.loaded_at = time.monotonic()

    @property
    def any_keys(self) -> bool:
        return bool(self.by_hash)


async def authenticate(cache: KeyCache, authorization: str | None, x_api_key: str | None, origin: str | None,
                       client: str, open_allowed: bool, same_origin: bool = False) -> Principal:  # fmt: skip
    """Resolve the caller or raise ApiError 401/403."""
    await cache.refresh()
    if open_allowed and not cache.any_keys:
        # An open loopback service has no keys: whatever a client sends (SDKs insist on a key) is ignored.
        return Principal(key_id=None, name="anonymous", bucket=f"ip:{client}")
    token = x_api_key
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise ApiError(401, "Authorization must be 'Bearer <key>'", type_="authentication_error", param="Authorization")
        token = value.strip()
    if token:
        row = cache.by_hash.get(hash_key(token))
        if row is None:
            raise ApiError(401, "invalid or revoked API key", type_="authentication_error", code="invalid_api_key")
        if row.origins:
            try:
                o = normalize_origin(origin) if origin else None
            except ValueError:
                o = None
            # Browsers omit Origin on same-origin GETs (e.g. EventSource on our own page): they say so instead.
            if o not in row.origins and not (origin is None and same_origin):
                raise ApiError(403, "this key only works from its allowed origins", type_="permission_error",
                               param="Origin", code="origin_not_allowed")  # fmt: skip
        return Principal(key_id=row.id, name=row.name, bucket=f"key:{row.id}", shared=bool(row.origins))
    raise ApiError(401, "an API key is required (Authorization: Bearer <key> or X-API-Key)",
                   type_="authentication_error", code="missing_api_key")  # fmt: skip


class RateLimiter:
    """A token bucket per principal: `per_minute` starts, refilled continuously."""

    def __init__(self, per_minute: int) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.buckets: dict[str, tuple[float, float]] = {}

    def check(self, bucket: str) -> float | None:
        """None when allowed (and a token is taken); else seconds until the next token."""
        t = time.monotonic()
        tokens, last = self.buckets.get(bucket, (self.capacity, t))
        tokens = min(self.capacity, tokens + (t - last) * self.rate)
        if tokens >= 1:
            self.buckets[bucket] = (tokens - 1, t)
            return None
        self.buckets[bucket] = (tokens, t)
        return (1 - tokens) / self.rate

    def refund(self, bucket: str) -> None:
        """Give back the token check() took, for a request refused before anything ran."""
        if bucket in self.buckets:
            tokens, last = self.buckets[bucket]
            self.buckets[bucket] = (min(self.capacity, tokens + 1), last)


class KeyOriginCORS(CORSMiddleware):
    """CORS for browser keys: an origin is allowed when some active key lists it. No credentials."""

    def __init__(self, app: ASGIApp, cache: KeyCache, own_origins: set[str]) -> None:
        super().__init__(
            app,
            allow_origins=[],
            allow_methods=["GET", "POST", "OPTIONS"],
            # Any request header: no credentials ride on CORS here, the key and the origin decide; the OpenAI
            # SDKs send x-stainless-* headers that a fixed list turned away at preflight.
            allow_headers=["*"],
            allow_credentials=False,
            expose_headers=["Retry-After", "Location", "X-Cancel-Token"],
            max_age=600,
        )
        self.cache = cache
        self.own_origins = own_origins

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            origin = Headers(scope=scope).get("origin")
            if origin is not None and not self.is_allowed_origin(origin):
                # An origin not seen yet may belong to a key made since the last load: a preflight never reaches
                # a route that would reload, so a site used only through its widget never saw its new key.
                # Stale keys are reloaded (once per ttl at most, one load at a time) before the answer.
                await self.cache.refresh(wait=True)
        await super().__call__(scope, receive, send)

    def is_allowed_origin(self, origin: str) -> bool:
        try:
            o = normalize_origin(origin)
        except ValueError:
            return False
        return o in self.cache.origins or o in self.own_origins
