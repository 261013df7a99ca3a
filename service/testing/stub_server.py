"""Loopback OpenAI-compatible stub server for contract tests and benchmarks.

Behaviour is scripted per model name with ``POST /_script``: a list of `consensus.providers.fake.Step`s (the
ones the fakes play), whose faults are the vocabulary of `consensus.providers.fake.FAULTS`. Each chat completion
consumes the next step and the last step repeats. Unscripted models answer ``"default answer from <model>"``,
except ``latency-<ms>``, which sleeps that long and answers a fixed JSON answer.

    python -m service.testing.stub_server --port 0   # prints STUB_URL=http://127.0.0.1:PORT, serves until killed
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import socket
import threading
import time
from collections import Counter, deque
from collections.abc import AsyncIterator
from typing import Any, overload

import httpx
import uvicorn
from fastapi import Body, FastAPI, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field

from consensus.providers.fake import FAULTS, Step

HANG_S = 3600.0
LOG_LIMIT = 1000  # request bodies kept per model
LOG_ENV = "STUB_LOG_REQUESTS"  # "0" turns the request log off at start-up
LATENCY_PREFIX = "latency-"
LATENCY_TEXT = (
    '{"answer": "Six times seven is forty-two, so after checking the arithmetic twice the panel'
    ' answer is 42.", "final_answer": "42", "confidence": 0.9}'
)
# The `type` of an OpenAI error body, per HTTP status of the faults that have one.
ERROR_TYPE = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    429: "rate_limit_exceeded",
    500: "server_error",
    502: "server_error",
    503: "server_error",
}


class Script(BaseModel):
    """Body of ``POST /_script``."""

    model: str
    steps: list[Step] = Field(min_length=1)


class StubState:
    """Scripts, cursors, hit counters and the bounded request log of one server process."""

    def __init__(self) -> None:
        self.log_requests = os.environ.get(LOG_ENV, "1") not in ("0", "false", "False")
        self.ids = itertools.count(1)
        self.reset()

    def reset(self) -> None:
        self.scripts: dict[str, list[Step]] = {}
        self.cursors: Counter[str] = Counter()
        self.hits: Counter[str] = Counter()
        self.log: dict[str, deque[dict[str, Any]]] = {}

    def record(self, model: str, body: dict[str, Any]) -> None:
        self.hits[model] += 1
        if self.log_requests:
            self.log.setdefault(model, deque(maxlen=LOG_LIMIT)).append(body)

    def next_step(self, model: str) -> Step:
        steps = self.scripts.get(model)
        if steps is None:
            return default_step(model)
        index = min(self.cursors[model], len(steps) - 1)
        self.cursors[model] += 1
        return steps[index]


def is_latency_model(model: str) -> bool:
    return model.startswith(LATENCY_PREFIX) and model[len(LATENCY_PREFIX) :].isdigit()


def default_step(model: str) -> Step:
    """The reply of an unscripted model."""
    if is_latency_model(model):
        return Step(text=LATENCY_TEXT, delay_s=int(model[len(LATENCY_PREFIX) :]) / 1000)
    return Step(text=f"default answer from {model}")


def count_tokens(messages: Any) -> int:
    """Approximate prompt tokens: characters of all message contents // 4, at least 1."""
    chars = 0
    for message in messages if isinstance(messages, list) else []:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            chars += len(content)
        elif isinstance(content, list):
            chars += sum(len(str(part.get("text", ""))) for part in content if isinstance(part, dict))
    return max(1, chars // 4)


def status_of(step: Step) -> int | None:
    """The HTTP status of the step's fault, if it is one that has a status."""
    return FAULTS[step.fault].status if step.fault else None


def error_response(status: int, retry_after: float | None, echo: str | None = None) -> JSONResponse:
    """An OpenAI-style error body with the fault's status; 429 carries Retry-After."""
    message = f"stub fault {status}" + (f" for credentials {echo!r}" if echo is not None else "")
    body = {"error": {"message": message, "type": ERROR_TYPE[status], "param": None, "code": str(status)}}
    headers = {"Retry-After": f"{1 if retry_after is None else retry_after:g}"} if status == 429 else None
    return JSONResponse(body, status_code=status, headers=headers)


async def hang(request: Request) -> None:
    """Never answer: wait until the client goes away (or HANG_S passes)."""
    # The body is read, so the next ASGI message is http.disconnect: no polling, no leaked task.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(request.receive(), HANG_S)


def sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


async def stream_events(
    step: Step, base: dict[str, Any], usage: dict[str, int], include_usage: bool
) -> AsyncIterator[bytes]:
    """SSE chunks of a streamed answer; ``cut`` stops after some content, ``malformed`` sends garbage."""
    await asyncio.sleep(step.delay_s)
    yield sse({**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]})
    if step.fault == "malformed":
        yield b"data: {this is not json\n\n"
        yield b"data: [DONE]\n\n"
        return
    size, text = step.chunk_chars, step.render()
    pieces = [text[i : i + size] for i in range(0, len(text), size)]
    if step.fault == "cut":
        pieces = pieces[: max(1, len(pieces) // 2)] if pieces else ["partial"]
    for i, piece in enumerate(pieces):
        if i and step.chunk_delay_s:
            await asyncio.sleep(step.chunk_delay_s)  # a model writing token by token
        yield sse({**base, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]})
    if step.fault == "cut":
        return  # no finish_reason, no [DONE]: the connection just ends
    yield sse({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    if include_usage:
        yield sse({**base, "choices": [], "usage": usage})
    yield b"data: [DONE]\n\n"


def completion_body(step: Step, model: str, usage: dict[str, int], n: int, created: int) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-stub-{n}",
        "object": "chat.completion",
        "created": created,
        "model": model,
        "usage": usage,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": step.render()}, "finish_reason": "stop"}],
    }


def usage_of(step: Step, body: dict[str, Any]) -> dict[str, int]:
    completion_tokens = max(1, len(step.render()) // 4)
    prompt_tokens = count_tokens(body.get("messages"))
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def create_app() -> LatencyFastPath:
    """Build a stub app with its own fresh state."""
    app = FastAPI(title="consensus OpenAI stub", openapi_url=None, docs_url=None, redoc_url=None)
    st = StubState()

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        body = await request.json()
        model = str(body.get("model", ""))
        st.record(model, body)
        step = st.next_step(model)
        status = status_of(step)
        if status is not None:
            await asyncio.sleep(step.delay_s)
            echo = request.headers.get("authorization", "").removeprefix("Bearer ") if step.echo_auth else None
            return error_response(status, step.retry_after, echo)
        if step.fault == "hang":
            await hang(request)
            return Response(status_code=504)
        usage = usage_of(step, body)
        created = int(time.time())
        if body.get("stream"):
            base = {
                "id": f"chatcmpl-stub-{next(st.ids)}",
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
            }
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return StreamingResponse(stream_events(step, base, usage, include_usage), media_type="text/event-stream")
        await asyncio.sleep(step.delay_s)
        if step.fault in ("malformed", "cut"):
            return Response(b"<html>this is not a chat completion", media_type="application/json")
        return JSONResponse(completion_body(step, model, usage, next(st.ids), created))

    @app.get("/v1/models")
    async def list_models() -> dict[str, Any]:
        data = [{"id": m, "object": "model", "created": 0, "owned_by": "stub"} for m in st.scripts]
        return {"object": "list", "data": data}

    @app.post("/_script")
    async def set_script(script: Script) -> dict[str, Any]:
        st.scripts[script.model] = script.steps
        st.cursors[script.model] = 0
        return {"model": script.model, "steps": len(script.steps)}

    @app.get("/_hits")
    async def get_hits() -> dict[str, int]:
        return dict(st.hits)

    @app.get("/_requests")
    async def get_requests(model: str) -> list[dict[str, Any]]:
        return list(st.log.get(model, ()))

    @app.post("/_reset")
    async def reset() -> dict[str, bool]:
        st.reset()
        return {"ok": True}

    @app.post("/_config")
    async def configure(log_requests: bool = Body(embed=True)) -> dict[str, bool]:
        st.log_requests = log_requests
        return {"log_requests": st.log_requests}

    return LatencyFastPath(app, st)


class LatencyFastPath:
    """ASGI in front of the FastAPI app: unscripted ``latency-<ms>`` chat completions are answered here.

    The benchmarks run this stub on the same 2 cores as the code they measure, as a stand-in for providers
    whose CPU is elsewhere. FastAPI's routing and request objects were 60 % of its CPU per request (py-spy,
    2026-11-26); answering the benchmarks' model here, with the same bodies, leaves more of the cores to
    the code under test. Everything else (scripts, faults, admin routes) goes to the app unchanged.
    """

    def __init__(self, app: FastAPI, state: StubState) -> None:
        self.app, self.state = app, state

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != "/v1/chat/completions":
            return await self.app(scope, receive, send)
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        raw = b"".join(chunks)
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        model = body.get("model") if isinstance(body, dict) else None
        if not isinstance(model, str) or model in self.state.scripts or not is_latency_model(model):
            replayed = False

            async def replay() -> Any:  # the app reads the body this wrapper already took
                nonlocal replayed
                if replayed:
                    return await receive()
                replayed = True
                return {"type": "http.request", "body": raw, "more_body": False}

            return await self.app(scope, replay, send)
        assert isinstance(body, dict)
        self.state.record(model, body)
        step = default_step(model)
        usage, created, n = usage_of(step, body), int(time.time()), next(self.state.ids)
        if body.get("stream"):
            base = {"id": f"chatcmpl-stub-{n}", "object": "chat.completion.chunk", "created": created, "model": model}
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"text/event-stream; charset=utf-8")],
                }
            )
            async for event in stream_events(step, base, usage, include_usage):
                await send({"type": "http.response.body", "body": event, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return None
        await asyncio.sleep(step.delay_s)
        payload = json.dumps(completion_body(step, model, usage, n, created), separators=(",", ":")).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": payload})
        return None


app = create_app()  # import string "service.testing.stub_server:app" for multi-worker runs


def bind_loopback(port: int = 0) -> socket.socket:
    """A listening TCP socket on 127.0.0.1 (port 0 picks a free port); clients queue until served."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def uvicorn_config(target: Any, workers: int = 1) -> uvicorn.Config:
    # Keep-alive outlives client pools' idle expiry (httpx 5 s, aiohttp 15 s) so the client always
    # closes first: no reuse-vs-close race. A short graceful shutdown so stop() never waits on "hang".
    return uvicorn.Config(
        target,
        log_level="warning",
        access_log=False,
        workers=workers,
        lifespan="off",
        timeout_keep_alive=65,
        timeout_graceful_shutdown=1,
    )


class StubServer:
    """The stub served by uvicorn on 127.0.0.1 in a background thread with its own event loop."""

    def __init__(self) -> None:
        self.port = 0
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._client = httpx.Client(timeout=10.0, trust_env=False)  # admin calls; base_url set by start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_base(self) -> str:
        return f"{self.base_url}/v1"

    def start(self, timeout: float = 10.0) -> StubServer:
        """Start serving and wait until the server accepts connections."""
        sock = bind_loopback()
        self.port = sock.getsockname()[1]
        self._server = uvicorn.Server(uvicorn_config(create_app()))
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="stub-server", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("stub server did not start")
            time.sleep(0.01)
        self._client.base_url = httpx.URL(self.base_url)
        return self

    def stop(self) -> None:
        """Shut the server down and join its thread."""
        self._client.close()
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10.0)

    def script(self, model: str, steps: list[dict[str, Any]] | list[Step]) -> None:
        """Script ``model`` with Steps (or their dicts): each call consumes the next step; the last one repeats."""
        body = [s.model_dump(exclude_defaults=True) if isinstance(s, Step) else s for s in steps]
        self._client.post("/_script", json={"model": model, "steps": body}).raise_for_status()

    @overload
    def hits(self, model: None = None) -> dict[str, int]: ...
    @overload
    def hits(self, model: str) -> int: ...
    def hits(self, model: str | None = None) -> dict[str, int] | int:
        """All hit counters, or the count for one model."""
        counts: dict[str, int] = self._client.get("/_hits").raise_for_status().json()
        return counts if model is None else counts.get(model, 0)

    def requests(self, model: str) -> list[dict[str, Any]]:
        """Request bodies received for ``model`` (the last LOG_LIMIT)."""
        bodies: list[dict[str, Any]] = self._client.get("/_requests", params={"model": model}).raise_for_status().json()
        return bodies

    def reset(self) -> None:
        """Clear scripts, hit counters and the request log."""
        self._client.post("/_reset").raise_for_status()

    def configure(self, *, log_requests: bool) -> None:
        """Turn the request log on or off (off for long benchmarks)."""
        self._client.post("/_config", json={"log_requests": log_requests}).raise_for_status()


def main(argv: list[str] | None = None) -> None:
    """CLI: serve on 127.0.0.1 and print ``STUB_URL=...`` once bound."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1, help=">1: scripts/hits are per worker")
    parser.add_argument("--no-log", action="store_true", help="do not keep request bodies")
    args = parser.parse_args(argv)
    if args.no_log:
        os.environ[LOG_ENV] = "0"  # read by StubState in this process and in spawned workers
    sock = bind_loopback(args.port)
    print(f"STUB_URL=http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
    if args.workers > 1:
        from uvicorn.supervisors import Multiprocess

        config = uvicorn_config("service.testing.stub_server:app", workers=args.workers)
        Multiprocess(config, sockets=[sock]).run()
    else:
        uvicorn.Server(uvicorn_config(create_app())).run(sockets=[sock])


if __name__ == "__main__":
    main()
