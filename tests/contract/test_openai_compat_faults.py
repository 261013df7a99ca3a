"""The lean OpenAI-compatible client against servers that misbehave: odd stream endings and shapes, errors sent
inside a stream, proxies, keys echoed back, event loops. Each test failed before its fix (a review's findings).
"""

import asyncio
import gc
import json
import warnings

import pytest

from consensus.errors import ProviderError
from consensus.providers.gateway import Gateway, _scrubbed
from consensus.providers.openai_compat import (
    OpenAICompatClient,
    _http_error,
    _parse_reply,
    proxy_for,
    read_stream,
)
from consensus.providers.retry import is_retryable
from consensus.types import DebateSettings, Message, Seat

HI = [Message(role="user", content="hi")]
FAST = DebateSettings(max_attempts=3, max_retry_after_s=0, retry_budget_s=5)


# ---------------------------------------------------------------- helpers


async def lines(*chunks: bytes):
    for chunk in chunks:
        for line in chunk.splitlines(keepends=True):
            yield line


def event(payload) -> bytes:
    return f"data: {json.dumps(payload)}\n\n".encode()


def ok_chunk(text: str, finish=None) -> dict:
    return {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}]}


class RawServer:
    """A loopback HTTP/1.1 server answering every request with the bytes `reply(n)` returns (n = hit number)."""

    def __init__(self, reply):
        self.reply = reply
        self.hits = 0
        self.server = None

    async def __aenter__(self):
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc):
        self.server.close()
        await self.server.wait_closed()

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def _handle(self, reader, writer):
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            self.hits += 1
            writer.write(self.reply(self.hits))
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def http(status: int, body: bytes, ctype: str = "application/json") -> bytes:
    return (
        f"HTTP/1.1 {status} X\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body


def sse_response(body: bytes) -> bytes:  # no Content-Length: the body runs until the connection closes
    return b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n" + body


def lean_seat(api_base: str, **kw) -> Seat:
    return Seat(name="s", model="openai/m", api_base=api_base, transport="openai-compatible", **kw)


# ---------------------------------------------------------------- 1. mid-stream error kind


async def test_midstream_error_with_a_400_code_is_not_retried():
    """vLLM sends errors raised inside its stream generator as `data: {"error": {..., "code": 400}}` after the 200
    (create_streaming_error_response defaults to BadRequestError/400). read_stream calls every one of them
    'server', so a context overflow or bad request reported mid-stream is retried max_attempts times."""
    err = {
        "error": {
            "object": "error",
            "type": "BadRequestError",
            "code": 400,
            "message": "This model's maximum context length is 4096 tokens. However, you requested 5000 tokens.",
        }
    }
    async with RawServer(lambda n: sse_response(event(ok_chunk("")) + event(err) + b"data: [DONE]\n\n")) as srv:
        gw = Gateway(FAST)
        try:
            with pytest.raises(ProviderError) as info:
                await gw.complete(lean_seat(srv.api_base), HI, timeout_s=5, on_delta=lambda _t: None)
        finally:
            await gw.aclose()
    assert not is_retryable(info.value.kind), info.value.kind
    assert srv.hits == 1


async def test_an_error_field_that_is_null_is_not_an_error():
    """`"error" in chunk` is true for `"error": null`: a whole, good answer fails as 'server' (and is retried)."""
    text, _ = await read_stream(
        lines(
            event({**ok_chunk("forty-two", "stop"), "error": None}),
            b"data: [DONE]\n\n",
        ),
        lambda _t: None,
    )
    assert text == "forty-two"


# ---------------------------------------------------------------- 2. content shapes


def test_reply_content_as_a_list_of_text_parts_is_read():
    """Content may be an array of parts (e.g. Mistral's magistral models over their OpenAI-compatible API):
    the lean client fails the call as 'malformed' instead of joining the text parts."""
    raw = json.dumps(
        {
            "choices": [
                {
                    "message": {
                        "role": "assistant",
                        "content": [{"type": "text", "text": "forty"}, {"type": "text", "text": "-two"}],
                    }
                }
            ]
        }
    ).encode()
    text, _ = _parse_reply(raw)
    assert text == "forty-two"


async def test_streamed_content_as_a_list_of_parts_is_not_silently_dropped():
    """The same parts in a stream's deltas are silently skipped: the call 'succeeds' with an empty answer."""
    text, _ = await read_stream(
        lines(
            event(
                {"choices": [{"delta": {"content": [{"type": "text", "text": "forty-two"}]}, "finish_reason": "stop"}]}
            ),
            b"data: [DONE]\n\n",
        ),
        lambda _t: None,
    )
    assert text == "forty-two"


# ---------------------------------------------------------------- 3. stream endings / framing


async def test_a_stream_request_answered_with_a_plain_json_completion_is_not_retried_as_a_connection_error():
    """A server or proxy that ignores stream=true and answers 200 application/json with the whole completion (or
    a 200 HTML page): no `data:` lines, so read_stream reports 'connection' ("ended before the answer finished")
    and the gateway repeats the whole call max_attempts times, each one answered."""
    body = json.dumps(
        {
            "choices": [{"message": {"role": "assistant", "content": "forty-two"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
        }
    ).encode()
    async with RawServer(lambda n: http(200, body)) as srv:
        gw = Gateway(FAST)
        try:
            try:
                done = await gw.complete(lean_seat(srv.api_base), HI, timeout_s=5, on_delta=lambda _t: None)
                assert done.text == "forty-two"
            except ProviderError as err:
                assert not is_retryable(err.kind), f"{err.kind}: {err.message}"
        finally:
            await gw.aclose()
    assert srv.hits == 1


async def test_a_stream_that_ends_with_done_but_no_finish_reason_is_complete():
    """[DONE] is the explicit end of an OpenAI stream; a server that omits finish_reason gets a 'connection' error
    ("ended before the answer finished") for a complete answer, and the gateway retries it to exhaustion."""
    text, _ = await read_stream(lines(event(ok_chunk("forty-two")), b"data: [DONE]\n\n"), lambda _t: None)
    assert text == "forty-two"


async def test_a_non_utf8_byte_in_the_stream_is_a_provider_error_not_a_unicode_error():
    """`raw.decode("utf-8")` in _sse_data: one stray byte (here in an SSE comment, which should be ignored
    anyway) raises UnicodeDecodeError out of the lean client, whose contract is ProviderError(kind)."""
    text, _ = await read_stream(
        lines(
            b": keep-alive \xff\n\n",
            event(ok_chunk("forty-two", "stop")),
            b"data: [DONE]\n\n",
        ),
        lambda _t: None,
    )
    assert text == "forty-two"


async def test_an_sse_line_over_the_read_buffer_limit_is_a_provider_error_of_a_known_kind():
    """A data line past 2 x read_bufsize (2 MiB) raises aiohttp's LineTooLong, which is neither ClientError nor
    ValueError: it escapes the lean client and the gateway calls it kind 'unknown'."""
    big = event(ok_chunk("x" * (3 * 2**20), "stop"))
    async with RawServer(lambda n: sse_response(big + b"data: [DONE]\n\n")) as srv:
        client = OpenAICompatClient()
        try:
            with pytest.raises(ProviderError) as info:  # fails: LineTooLong is raised instead
                await client.complete(lean_seat(srv.api_base), HI, None, False, lambda _t: None)
        finally:
            await client.aclose()
    assert info.value.kind != "unknown"


# ---------------------------------------------------------------- 4. error kinds from HTTP statuses


def test_llama_cpp_context_overflow_is_context_overflow():
    """llama.cpp's server: 400 {"type": "exceed_context_size_error", "message": "request (4476 tokens) exceeds the
    available context size (4096 tokens)"}: no "length" in it, so it is reported as bad_request and the user sees
    the generic message instead of "The question was too long for {name}"."""
    raw = json.dumps(
        {
            "error": {
                "code": 400,
                "type": "exceed_context_size_error",
                "n_prompt_tokens": 4476,
                "n_ctx": 4096,
                "message": "request (4476 tokens) exceeds the available context size (4096 tokens)",
            }
        }
    ).encode()
    assert _http_error(400, raw, {}).kind == "context_overflow"


# ---------------------------------------------------------------- 5. secrets in messages


async def test_proxy_credentials_do_not_leak_into_the_error_and_a_407_is_not_retried(monkeypatch):
    """HTTPS_PROXY=http://user:pass@proxy: when the proxy refuses CONNECT, aiohttp's ClientHttpProxyError says
    url='http://user:pass@...'; the lean client copies it into the message ('connection', so also retried).
    redact() does not know URL userinfo and the env var is called *_PROXY, so the password survives."""
    seen = []

    async def proxy(reader, writer):
        seen.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(proxy, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    for name in ("HTTP_PROXY", "http_proxy", "https_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", f"http://svc:Pr0xyPassw0rd@127.0.0.1:{port}")
    proxy_for.cache_clear()
    gw = Gateway(FAST)
    try:
        with pytest.raises(ProviderError) as info:
            await gw.complete(lean_seat("https://api.example.test/v1"), HI, timeout_s=5)
    finally:
        await gw.aclose()
        proxy_for.cache_clear()
        server.close()
        await server.wait_closed()
    assert "Pr0xyPassw0rd" not in info.value.message, info.value.message
    assert len(seen) == 1, f"a 407 from the proxy was retried: {len(seen)} attempts"


def test_an_echoed_key_cut_by_the_message_limit_is_still_scrubbed():
    """_http_error cuts the server's message at 2000 chars (and redact() at 2000) BEFORE the gateway replaces the
    exact key, so an echoed key straddling the cut leaves a prefix that no longer matches: partial key leak."""
    key = "zq7Hx93kLmNpQrStUvWx"  # no key shape, env var name without KEY/TOKEN/SECRET (as in the contract test)
    body = json.dumps(
        {"error": {"message": "x" * 1958 + f" bad credentials {key}", "code": "invalid_api_key"}}
    ).encode()
    err = _scrubbed(_http_error(401, body, {}, (key,)), (key,))  # the client passes the key it sent
    assert key[:8] not in err.message, err.message[-60:]


async def test_an_echoed_key_is_not_left_in_the_exception_args(monkeypatch, stub):
    """The gateway scrubs err.message after ProviderError.__init__ has put the unscrubbed text in err.args:
    repr(err) / err.args (logged with %r, shown by pytest/Sentry-style reporters, pickled) still hold the key."""
    monkeypatch.setenv("MY_PROVIDER_CRED", "zq7Hx93kLmNpQrSt")
    gw = Gateway(DebateSettings())
    try:
        stub.script("alice", [{"fault": "401", "echo_auth": True}])
        seat = Seat(
            name="alice",
            model="openai/alice",
            api_base=stub.api_base,
            transport="openai-compatible",
            api_key_env="MY_PROVIDER_CRED",
        )
        with pytest.raises(ProviderError) as info:
            await gw.complete(seat, HI, timeout_s=5)
    finally:
        await gw.aclose()
    assert "zq7Hx93k" not in str(info.value)  # passes: __str__ is rebuilt from the scrubbed fields
    assert "zq7Hx93k" not in repr(info.value), repr(info.value)


# ---------------------------------------------------------------- 7. sessions across event loops


def test_a_session_from_a_previous_event_loop_is_not_leaked(stub):
    """_session() replaces the session when the running loop changes but never closes the old one: its connector
    and keep-alive sockets leak ("Unclosed client session"), once per loop the gateway is used in."""

    async def one_call(client, api_base):
        await client.complete(lean_seat(api_base), HI, None, False, None)
        return client._http

    client = OpenAICompatClient()
    first = asyncio.run(one_call(client, stub.api_base))

    async def second_loop():
        session = await one_call(client, stub.api_base)
        await asyncio.sleep(0)  # the old session's close runs as a task on this loop
        return session

    second = asyncio.run(second_loop())
    assert second is not first
    leaked = not first.closed
    asyncio.run(client.aclose())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        del first, second
        gc.collect()
    assert not leaked, "the first loop's ClientSession was left open"


def test_all_proxy_applies_as_it_does_for_litellm(monkeypatch):
    """getproxies() files ALL_PROXY under 'all'; proxy_for only looks up the URL's scheme, so a network that is
    reached through ALL_PROXY (honoured by httpx, hence by LiteLLM seats) is dialled directly by lean seats."""
    import httpx

    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ALL_PROXY", "http://proxy.internal:3128")
    proxy_for.cache_clear()
    try:
        assert httpx._utils.get_environment_proxies().get("all://") == "http://proxy.internal:3128"  # LiteLLM's side
        assert proxy_for("https://api.example.com/v1/chat/completions") == "http://proxy.internal:3128"
    finally:
        proxy_for.cache_clear()


def test_a_plain_reply_without_usage_gets_an_estimate_like_a_stream_does():
    """read_stream estimates completion tokens when the server reports none ('never zero'); _parse_reply does not:
    a non-streamed reply without usage (the engine's calls when nobody watches: --json, the API) counts 0 tokens
    and costs $0 on a priced seat, while the same answer streamed is estimated."""
    text, usage = _parse_reply(json.dumps({"choices": [{"message": {"content": "x" * 40}}]}).encode())
    assert text == "x" * 40 and usage.completion_tokens > 0


def test_a_url_with_credentials_is_redacted_in_any_provider_error():
    """redact() knew key shapes and key-like env var names; a proxy URL's user:password@ is neither."""
    err = ProviderError(
        "connection",
        "Cannot connect to host via url='http://svc:Pr0xyPassw0rd@10.0.0.9:3128' and https://user:s3cret@gw.example/v1",
    )
    assert "Pr0xyPassw0rd" not in str(err) and "s3cret" not in str(err)
    assert "http://[REDACTED]@10.0.0.9:3128" in err.message and "https://[REDACTED]@gw.example/v1" in err.message
