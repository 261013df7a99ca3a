"""The FastAPI application factory: lifespan, middleware, error handlers, operations endpoints."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import signal
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.body_limit import RequestBodyLimitMiddleware
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from consensus.errors import ConsensusError
from consensus.providers.base import close_provider
from consensus.types import Panel
from service import metrics
from service.deps import metrics_reader
from service.logs import setup_logging
from service.runner import Runner
from service.security import ApiError, KeyOriginCORS
from service.services import AppServices
from service.settings import Settings, configured_panel
from service.store import is_overload

log = logging.getLogger("consensus.service")


def build_provider(panel: Panel) -> Any:
    """The panel's gateway, with what its calls import loaded now, before the service serves (not on the event
    loop during its first debate)."""
    from consensus.language import detect_language
    from consensus.providers import for_panel

    detect_language("Warm up the language profiles before the first question.")  # slow the first time
    return for_panel(panel, preload=True)


# The collector's thresholds while serving: young collections every 10,000 allocations (not 700), old ones a tenth
# as often. With what start-up built frozen out of the old generation, that cut ours / floor at 200 clients by
# 0.08-0.09 in each of three paired runs (bench/README.md, load.py).
SERVING_GC_THRESHOLDS = (10_000, 50, 100)


def settle_heap() -> tuple[int, int, int]:
    """Collect once, freeze what start-up built (modules, the panel, the language profiles) so the collector
    never scans it again, and collect less often; returns the thresholds it replaced."""
    gc.collect()
    gc.freeze()
    before = gc.get_threshold()
    gc.set_threshold(*SERVING_GC_THRESHOLDS)
    return before


def unsettle_heap(thresholds: tuple[int, int, int]) -> None:
    """Undo settle_heap (at shutdown: an app run inside a test process leaves the collector as it found it)."""
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def create_app(settings: Settings | None = None, panel: Panel | None = None, provider: Any = None) -> FastAPI:
    """Build the app; the panel defaults to the configured one (local when nothing is set)."""
    settings = settings or Settings()
    setup_logging(settings.log_level)
    if panel is None:
        panel = configured_panel(settings)
    services = AppServices(settings, panel, provider or build_provider(panel))
    from service.mcp import McpEndpoint

    mcp = McpEndpoint(services)  # the MCP server at /mcp (streamable HTTP), behind the same keys

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services.store.lock_for_serving()  # SQLite: one serving process per file (StoreInUseError)
        await services.store.migrate()
        await services.keys.refresh(force=True)
        if not settings.loopback and not services.keys.any_keys:
            await services.store.close()
            raise RuntimeError(
                f"refusing to serve on {settings.host} without API keys: create one with "
                "`consensus keys create --name NAME`, or bind to 127.0.0.1"
            )
        await services.runner.start_background()
        drain_on_exit_signals(services.runner)
        settled = settle_heap() if settings.gc_tuning else None
        services.ready = True
        log.info(
            "serving",
            extra={"replica": settings.replica_id, "panel": panel.source, "db": settings.database_url.split("://")[0]},
        )
        async with mcp.sessions():  # exits last: MCP calls still following a debate see it end or drain
            try:
                yield
            finally:
                services.ready = False
                await services.runner.shutdown()
                await close_provider(services.runner.provider)
                await services.store.close()
                if settled is not None:
                    unsettle_heap(settled)

    app = FastAPI(
        title="consensus",
        version="0.1.0",
        description="Multi-LLM consensus debates over HTTP.",
        lifespan=lifespan,
    )
    app.state.services = services
    own = {settings.public_url.rstrip("/")} if settings.public_url else set()
    app.add_middleware(KeyOriginCORS, cache=services.keys, own_origins=own)
    # The body limit sits inside JsonTooLarge so its plain-text 413 leaves in our JSON error shape.
    app.add_middleware(RequestBodyLimitMiddleware, max_body_size=settings.max_body_bytes)
    app.add_middleware(JsonTooLarge)
    app.add_middleware(BodyTimeout, timeout_s=settings.body_timeout_s)
    install_error_handlers(app)

    from service.routes_debates import router as debates_router
    from service.routes_openai import router as openai_router
    from service.web import router as web_router

    app.include_router(debates_router)
    app.include_router(openai_router)
    app.include_router(web_router)
    app.router.routes.append(Route("/mcp", mcp, methods=["GET", "POST", "DELETE"], include_in_schema=False))

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        try:
            await services.store.ping()
        except Exception as exc:  # noqa: BLE001 - readiness reports, it does not raise
            return JSONResponse({"status": "unavailable", "reason": f"store: {type(exc).__name__}"}, status_code=503)
        if not services.ready or not services.runner.accepting:
            return JSONResponse({"status": "unavailable", "reason": "starting or shutting down"}, status_code=503)
        return JSONResponse({"status": "ready", "in_flight": services.runner.in_flight})

    fastapi_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        """FastAPI's schema with this panel's question limit on the question (it counts the stripped text)."""
        if app.openapi_schema is None:
            schema = fastapi_openapi()  # built once and kept in app.openapi_schema
            question = schema["components"]["schemas"]["DebateRequest"]["properties"]["question"]
            question.update(minLength=1, maxLength=panel.debate.max_question_chars)
            return schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.get("/metrics", include_in_schema=False, dependencies=[Depends(metrics_reader)])
    async def prometheus() -> Response:
        return PlainTextResponse(generate_latest().decode(), media_type=CONTENT_TYPE_LATEST)

    return app


def drain_on_exit_signals(runner: Runner) -> None:
    """Chain SIGTERM/SIGINT to runner.drain() before uvicorn's own handler: uvicorn waits for open responses
    before it shuts the app down, so SSE streams and ?wait requests must end first, not at its timeout."""
    if threading.current_thread() is not threading.main_thread():
        return  # signals reach the main thread only (a server embedded in a thread: tests)
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(sig)
        if not callable(previous):
            continue

        def chained(signum: int, frame: Any, previous: Any = previous) -> None:
            runner.drain()
            previous(signum, frame)

        signal.signal(sig, chained)


class BodyTimeout:
    """A request's whole body must arrive within `timeout_s` of its headers; then 408, and the connection closes.

    uvicorn waits for a stalled body for ever (it has no read timeout): 50 such connections were held for
    minutes. Only the body is timed: once it is in, later receives (an SSE stream waiting for the client to go)
    pass untouched. Stalled *headers* never reach the app: the README's reverse proxy covers those.
    """

    def __init__(self, app: ASGIApp, timeout_s: float) -> None:
        self.app = app
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        complete = False

        async def timed_receive() -> Message:
            nonlocal complete
            if complete:
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise StarletteHTTPException(
                    408, f"the request body did not arrive within {self.timeout_s:g} s"
                ) from None
            complete = message["type"] != "http.request" or not message.get("more_body", False)
            return message

        await self.app(scope, timed_receive, send)


class JsonTooLarge:
    """Starlette's body limiter answers 413 in plain text; rewrite it to our JSON error shape."""

    BODY = json.dumps(
        {
            "error": {
                "message": "the request body is too large",
                "type": "invalid_request_error",
                "param": "body",
                "code": "body_too_large",
            }
        }
    ).encode()

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        rewriting = False

        async def send_json(message: Message) -> None:
            nonlocal rewriting
            if message["type"] == "http.response.start" and message["status"] == 413:
                ctype = dict(message.get("headers", [])).get(b"content-type", b"")
                if ctype.startswith(b"text/plain"):
                    rewriting = True
                    headers = [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(self.BODY)).encode()),
                    ]
                    return await send({"type": "http.response.start", "status": 413, "headers": headers})
            if rewriting and message["type"] == "http.response.body":
                if not message.get("more_body"):
                    await send({"type": "http.response.body", "body": self.BODY})
                return None
            return await send(message)

        await self.app(scope, receive, send_json)


def error_json(
    status: int,
    message: str,
    type_: str,
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """An error in OpenAI's shape: {"error": {"message", "type", "param", "code"}}."""
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


HEADERS = {"idempotency_key": "Idempotency-Key", "last_event_id": "Last-Event-ID"}


def invalid_status(r: Request) -> int:
    """422 for an invalid request; 400 on the OpenAI-compatible endpoint, where the SDK expects BadRequestError."""
    return 400 if r.url.path.endswith("/chat/completions") else 422


def validation_message(err: dict[str, Any], content_type: str) -> tuple[str, str]:
    """(message, field) for a request validation error; an error about the whole body names `body`."""
    where, *path = [str(p) for p in err.get("loc", ())] or ["body"]
    kind = err.get("type", "")
    if where == "header" and path:
        path = [HEADERS.get(path[0], path[0].replace("_", "-").title())]
    field = ".".join(path)
    if kind == "json_invalid":
        return "the body is not valid JSON", "body"
    if not field:
        if kind == "missing":
            return "the request body is required: a JSON object", "body"
        hint = "" if "json" in content_type else " sent with Content-Type: application/json"
        return f"the body must be a JSON object{hint}", "body"
    if kind == "extra_forbidden":
        return f"unknown field {field!r}", field
    if kind == "missing":
        return f"{field} is required", field
    return f"{field}: {err.get('msg', 'invalid')}", field


def install_error_handlers(app: FastAPI) -> None:
    """Every error leaves as JSON naming the field; no input produces a 5xx."""

    @app.exception_handler(ApiError)
    async def api_error(r: Request, exc: ApiError) -> JSONResponse:
        if exc.status in (429, 503):
            metrics.REJECTED.labels(reason=str(exc.status)).inc()
        status = invalid_status(r) if exc.status == 422 else exc.status
        return error_json(status, exc.message, exc.type, exc.param, exc.code, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(r: Request, exc: RequestValidationError) -> JSONResponse:
        err = exc.errors()[0]
        msg, field = validation_message(err, r.headers.get("content-type", ""))
        return error_json(invalid_status(r), msg, "invalid_request_error", field, err.get("type") or None)

    @app.exception_handler(ConsensusError)
    async def consensus_error(r: Request, exc: ConsensusError) -> JSONResponse:
        field = getattr(exc, "field", None)
        return error_json(invalid_status(r), str(exc), "invalid_request_error", field, "invalid_value")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(r: Request, exc: StarletteHTTPException) -> JSONResponse:
        type_ = "invalid_request_error" if exc.status_code < 500 else "server_error"
        if exc.status_code == 413:
            return error_json(413, "the request body is too large", type_, "body", "body_too_large")
        if exc.status_code == 408:  # BodyTimeout: the client stalled; the connection is not worth keeping
            return error_json(408, str(exc.detail), type_, "body", "body_timeout", {"Connection": "close"})
        if exc.status_code == 400 and isinstance(exc.__cause__, RecursionError):
            # FastAPI parses the body and wraps what json.loads raised, here its nesting limit (about 1000 deep),
            # into a 400: it is valid UTF-8, and invalid JSON for this service, like any other.
            return error_json(
                invalid_status(r), "the body is not valid JSON: it is nested too deeply", type_, "body", "json_invalid"
            )
        if exc.status_code == 400:  # Starlette could not read the body (not UTF-8, a broken form)
            return error_json(400, "the body could not be read: send UTF-8 JSON", type_, "body", "invalid_body")
        return error_json(exc.status_code, str(exc.detail), type_, None, None, dict(exc.headers or {}))

    @app.exception_handler(PoolTimeout)
    @app.exception_handler(OperationalError)
    async def overloaded(r: Request, exc: Exception) -> JSONResponse:
        if not is_overload(exc):
            return await unexpected(r, exc)
        # No free connection, or SQLite's write lock held past its timeout: overload, not a bug; nothing stored.
        metrics.REJECTED.labels(reason="503").inc()
        log.warning("database overloaded (%s): answered 503", type(exc).__name__)
        return error_json(
            503, "the service is overloaded; retry later", "server_error", None, "overloaded", {"Retry-After": "5"}
        )

    @app.exception_handler(Exception)
    async def unexpected(_r: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return error_json(500, "internal error", "server_error")
