"""API keys (stored hashed), origin checks for browser keys, per-key rate limits, CORS."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import secrets
import time
import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from service import metrics
from service.store import ApiKeyRow, Store, is_overload, now

log = logging.getLogger("consensus.service")

SECRET_PREFIX = "sk_"
PUBLISHABLE_PREFIX = "pk_"


class ApiError(Exception):
    """An HTTP error with OpenAI's error shape; `param` names the field at fault."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type_: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
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
    row = ApiKeyRow(
        id=uuid.uuid4().hex[:12],
        name=name,
        prefix=plain[:7],
        key_hash=hash_key(plain),
        origins=clean,
        created_at=now(),
        revoked_at=None,
    )
    await store.add_key(row)
    return plain, row


@dataclass(frozen=True)
class Principal:
    """Who is calling: a key, or an anonymous client of an open (loopback) service."""

    key_id: str | None
    name: str
    bucket: str
    shared: bool = False  # a publishable (origin-bound) key: every visitor of its site holds it


class KeysUnavailable(Exception):
    """The keys could not be checked against the store in time: a request cannot be authorised (503)."""


ARRIVED = "consensus.arrived"  # scope key: when the request reached the app (monotonic)


def arrival(scope: Scope) -> float:
    """When this request reached the app (set by the first of us to ask): the moment key data must be fresh for."""
    t: float = scope.setdefault(ARRIVED, time.monotonic())
    return t


class KeyCache:
    """Active keys, never older than `max_age_s` for the request they authorise.

    A request is answered only from keys checked against the store by a look that began at most `max_age_s`
    before the request arrived (0, the default: after it arrived), so a key created or revoked with
    `consensus keys` on the same store counts from the next request on, on every replica. A look is one
    aggregate query (Store.keys_fingerprint); the keys are read again only when it changed. One look runs at
    a time, and every request waiting shares the next one: a burst costs two looks, not one per request.
    The cache never answers from older data: when the store cannot be read, the request gets KeysUnavailable.
    """

    WAIT_S = 5.0  # the most a request waits for its look (a hung database): then KeysUnavailable, a 503

    def __init__(self, store: Store, max_age_s: float = 0.0) -> None:
        self.store = store
        self.max_age_s = max_age_s
        self.by_hash: dict[str, ApiKeyRow] = {}
        self.origins: set[str] = set()
        self.checked_at = -float("inf")  # when the last successful look began (monotonic)
        self.looks = 0  # looks started (the benchmark and tests read it)
        self._fingerprint: tuple[object, ...] | None = None
        self._look: asyncio.Task[None] | None = None
        self._look_began = 0.0

    async def refresh(self, force: bool = False, since: float | None = None) -> None:
        """Make the keys fresh for a request that arrived at monotonic `since` (default: now); `force`: look now,
        whatever `max_age_s` allows. KeysUnavailable when the store cannot be read within WAIT_S."""
        arrived = time.monotonic() if since is None else since
        need = arrived if force else arrived - self.max_age_s
        try:
            async with asyncio.timeout(self.WAIT_S):
                while self.checked_at < need:
                    if self._look is None or self._look.done():
                        self._look_began = time.monotonic()
                        self.looks += 1
                        self._look = asyncio.get_running_loop().create_task(self._check())
                        # Retrieved here: when every waiter gave up (WAIT_S), asyncio would warn it never was.
                        self._look.add_done_callback(lambda t: t.cancelled() or t.exception())
                    look, began = self._look, self._look_began
                    try:
                        await asyncio.shield(look)
                    except Exception as exc:
                        if began >= need:  # our own look failed: no fresh keys to answer from
                            raise KeysUnavailable(f"{type(exc).__name__}: {exc}") from exc
                        # a look that began before we arrived failed: ours comes next (loop)
        except TimeoutError:
            raise KeysUnavailable(f"no answer from the database within {self.WAIT_S:g} s") from None

    async def _check(self) -> None:
        began = self._look_began
        fingerprint = await self.store.keys_fingerprint()
        if fingerprint != self._fingerprint:
            rows = [r for r in await self.store.keys() if r.revoked_at is None]
            self.by_hash = {r.key_hash: r for r in rows}
            self.origins = {o for r in rows for o in r.origins}
            self._fingerprint = fingerprint
        self.checked_at = max(self.checked_at, began)

    @property
    def any_keys(self) -> bool:
        return bool(self.by_hash)


class AuthFailures:
    """Failed authentications per client address: each is logged and counted; past the allowance, 429.

    A token bucket per address (`per_minute` failures, refilled continuously). While it is empty every request
    from that address that needs a key gets 429 with Retry-After, a right key too: answering a right key
    during the lock-out would still tell a guesser which guess was right.
    """

    MAX_ADDRESSES = 10_000  # full buckets are dropped beyond this many addresses (a spread-out attack)

    def __init__(self, per_minute: int) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.buckets: dict[str, tuple[float, float]] = {}

    def _tokens(self, client: str, t: float) -> float:
        tokens, last = self.buckets.get(client, (self.capacity, t))
        return min(self.capacity, tokens + (t - last) * self.rate)

    def retry_after(self, client: str) -> int | None:
        """Seconds until this address may try again, or None when it may now."""
        if client not in self.buckets:
            return None
        tokens = self._tokens(client, time.monotonic())
        return None if tokens >= 1 else max(1, math.ceil((1 - tokens) / self.rate))

    def failed(self, client: str, token: str | None, code: str | None) -> None:
        """Log and count one failed authentication; the log shows at most the key's first characters."""
        t = time.monotonic()
        self.buckets[client] = (max(0.0, self._tokens(client, t) - 1), t)
        if len(self.buckets) > self.MAX_ADDRESSES:
            self.buckets = {c: (n, last) for c, (n, last) in self.buckets.items() if self._tokens(c, t) < self.capacity}
        shown = key_start(token) if token else None
        metrics.AUTH_FAILURES.labels(reason=code or "invalid").inc()
        log.warning(
            "authentication failed (%s) from %s%s",
            code,
            client,
            f" with a key starting {shown!r}" if shown else "",
            extra={"client": client, "key_start": shown, "reason": code},
        )


def key_start(token: str) -> str:
    """What a log may show of a presented key: its first characters, as `consensus keys list` does (sk_ and 4
    more), and never more than a quarter of it, so a short one is not logged nearly whole."""
    return token[: min(len(SECRET_PREFIX) + 4, len(token) // 4)]


def presented_key(authorization: str | None, x_api_key: str | None) -> str | None:
    """The key a request carries (`Authorization: Bearer`, else X-API-Key); ApiError 401 for another scheme."""
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise ApiError(
                401,
                "Authorization must be 'Bearer <key>'",
                type_="authentication_error",
                param="Authorization",
                code="invalid_authorization",
            )
        return value.strip()
    return x_api_key or None


async def authenticate(
    cache: KeyCache,
    authorization: str | None,
    x_api_key: str | None,
    origin: str | None,
    client: str,
    open_allowed: bool,
    same_origin: bool = False,
    arrived: float | None = None,
) -> Principal:
    """Resolve the caller or raise ApiError 401/403 (503 when the keys cannot be checked)."""
    try:
        await cache.refresh(since=arrived)
    except KeysUnavailable as exc:
        if exc.__cause__ is not None and is_overload(exc.__cause__):
            raise exc.__cause__ from None  # the database is overloaded: the service's one overload answer
        log.warning("cannot check API keys: %s", exc)
        raise ApiError(
            503,
            "the service cannot check API keys right now; retry shortly",
            type_="server_error",
            code="keys_unavailable",
            headers={"Retry-After": "2"},
        ) from None
    if open_allowed and not cache.any_keys:
        # An open loopback service has no keys: whatever a client sends (SDKs insist on a key) is ignored.
        return Principal(key_id=None, name="anonymous", bucket=f"ip:{client}")
    token = presented_key(authorization, x_api_key)
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
                raise ApiError(
                    403,
                    "this key only works from its allowed origins",
                    type_="permission_error",
                    param="Origin",
                    code="origin_not_allowed",
                )
        return Principal(key_id=row.id, name=row.name, bucket=f"key:{row.id}", shared=bool(row.origins))
    raise ApiError(
        401,
        "an API key is required (Authorization: Bearer <key> or X-API-Key)",
        type_="authentication_error",
        code="missing_api_key",
    )


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
        if scope["type"] == "http" and Headers(scope=scope).get("origin") is not None:
            # The allowed origins are the keys' origins as fresh as the keys themselves: a preflight never reaches
            # a route, and a revoked key's site must lose CORS when the key stops working. The route's own check
            # shares this look (same arrival).
            try:
                await self.cache.refresh(since=arrival(scope))
            except KeysUnavailable as exc:
                log.warning("cannot check API keys for CORS: %s", exc)
                body = {
                    "error": {
                        "message": "the service cannot check API keys right now; retry shortly",
                        "type": "server_error",
                        "param": None,
                        "code": "keys_unavailable",
                    }
                }
                return await JSONResponse(body, status_code=503, headers={"Retry-After": "2"})(scope, receive, send)
        await super().__call__(scope, receive, send)

    def is_allowed_origin(self, origin: str) -> bool:
        try:
            o = normalize_origin(origin)
        except ValueError:
            return False
        return o in self.cache.origins or o in self.own_origins
