"""The lean transport for OpenAI-compatible servers (seats with transport = "openai-compatible").

One aiohttp POST to `<api_base>/chat/completions` per call, the reply read with `json`, a stream read line
by line: a small fraction of LiteLLM's CPU per call and per chunk (figures in bench/README.md), and no LiteLLM
import. httpx with httpx-sse, the other candidate, cost several times as much per call. The gateway keeps the
one retry loop, the throttle, the timeouts and the panel's prices; this module only speaks HTTP and turns every
failure into a ProviderError of the kind the retry policy decides on.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
import urllib.request
from collections.abc import AsyncIterable, AsyncIterator
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import aiohttp.http_exceptions

from consensus.errors import ErrorKind, ProviderError
from consensus.providers.base import Completion, DeltaSink, JsonSchema
from consensus.providers.retry import kind_for_status, overflows_context
from consensus.types import Message, Seat, Usage


def request_body(seat: Seat, messages: list[Message], json_output: bool, stream: bool) -> dict[str, Any]:
    """The chat-completions request for `seat`: its wire model name and sampling settings."""
    body: dict[str, Any] = {
        "model": seat.wire_model,
        "messages": [{"role": m.role, "content": m.content} for m in messages],
    }
    for name in ("temperature", "max_tokens", "seed"):
        value = getattr(seat, name)
        if value is not None:
            body[name] = value
    if json_output:
        body["response_format"] = {"type": "json_object"}
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


class OpenAICompatClient:
    """The lean Transport: chat completions over one aiohttp session per event loop; raises ProviderError(kind)."""

    def __init__(self) -> None:
        self._http: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._retiring: asyncio.Task[None] | None = None

    def _session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._http is not None and self._loop is not loop:
            # Made on another event loop (an earlier asyncio.run): close it from this one. On a finished loop
            # aiohttp only marks it closed, and no "Unclosed client session" is left behind.
            old, self._http = self._http, None
            self._retiring = loop.create_task(old.close())
        if self._http is None or self._http.closed:
            # No pool cap here: the gateway's per-provider semaphore is the one concurrency limit.
            # read_bufsize: aiohttp refuses a line past twice this (64 KiB by default); one SSE chunk may be long.
            self._http = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=None), read_bufsize=2**20
            )
            self._loop = loop
        return self._http

    async def aclose(self) -> None:
        """Close the connection pool (the gateway's owner calls this when it shuts down)."""
        if self._http is not None and not self._http.closed:
            await self._http.close()
        self._http = None

    async def call(
        self,
        seat: Seat,
        messages: list[Message],
        *,
        timeout_s: float,
        api_key: str | None,
        schema: JsonSchema | None,
        on_delta: DeltaSink | None,
    ) -> Completion:
        """One attempt; the cost is unknown here (no price map without LiteLLM): the panel's prices decide it."""
        text, usage = await self.complete(seat, messages, api_key, schema is not None, on_delta)
        return Completion(text=text, usage=usage, cost_usd=None)

    async def complete(
        self, seat: Seat, messages: list[Message], api_key: str | None, json_output: bool, on_delta: DeltaSink | None
    ) -> tuple[str, Usage]:
        """One attempt: the answer's text and the usage the server reported."""
        url = f"{(seat.api_base or '').rstrip('/')}/chat/completions"
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        body = request_body(seat, messages, json_output, stream=on_delta is not None)
        secrets = (api_key,) if api_key else ()
        try:
            async with self._session().post(url, json=body, headers=headers, proxy=proxy_for(url)) as resp:
                if resp.status != 200:
                    raise _http_error(resp.status, await resp.read(), resp.headers, secrets)
                if on_delta is None or resp.content_type != "text/event-stream":
                    # A server (or a proxy) that ignores stream=true answers with the whole completion: take it.
                    text, usage = _parse_reply(await resp.read())
                    if on_delta is not None and text:
                        on_delta(text)
                    return text, usage
                return await read_stream(resp.content, on_delta, secrets)
        except aiohttp.InvalidURL as exc:
            raise ProviderError("bad_request", f"invalid api_base URL: {exc}") from exc
        except aiohttp.ClientHttpProxyError as exc:  # the proxy refused: 407 is a credential problem, not a blip
            kind = kind_for_status(exc.status)
            raise ProviderError(
                kind, f"the proxy answered HTTP {exc.status}: {exc.message}", status_code=exc.status
            ) from exc
        except aiohttp.ClientPayloadError as exc:  # the body broke off mid-way
            raise ProviderError("connection", f"connection broke mid-reply: {exc}") from exc
        except aiohttp.ClientError as exc:  # refused, reset, DNS, TLS: the request may not have arrived
            raise ProviderError("connection", f"connection error: {type(exc).__name__}: {exc}") from exc
        except (aiohttp.http_exceptions.HttpProcessingError, ValueError) as exc:  # a line past 2 MiB, a broken reply
            raise ProviderError("malformed", f"unreadable reply: {type(exc).__name__}: {exc}") from exc


@functools.cache
def proxy_for(url: str) -> str | None:
    """The proxy HTTP(S)_PROXY / ALL_PROXY and NO_PROXY name for this URL, read once per URL: aiohttp's trust_env
    would read them in a worker thread on every request, a large share of this client's CPU per call."""
    parts = urlsplit(url)
    if parts.hostname and urllib.request.proxy_bypass(parts.hostname):
        return None
    proxies = urllib.request.getproxies()
    return proxies.get(parts.scheme) or proxies.get("all") or None


def _parse_reply(raw: bytes) -> tuple[str, Usage]:
    data = _json(raw, "reply")
    try:
        content = data["choices"][0]["message"].get("content")
    except (KeyError, IndexError, TypeError, AttributeError) as exc:
        raise ProviderError("malformed", f"a reply without choices[0].message: {_snippet(raw)}") from exc
    text = _text(content)
    if text is None:
        raise ProviderError("malformed", f"message content is not text: {_snippet(raw)}")
    return text, estimated_usage(_usage(data.get("usage")), text)


def _text(content: Any) -> str | None:
    """A message's text: a string, or the text parts of a list of parts (images, thinking... are skipped)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(p.get("text") or "") for p in content if isinstance(p, dict) and p.get("type", "text") == "text"
        )
    return None


def estimated_usage(usage: Usage, text: str) -> Usage:
    """`usage`, or, when a server reported none, an estimate from the text (4 characters a token), never zero."""
    if usage.total_tokens:
        return usage
    return Usage(completion_tokens=max(1, len(text) // 4), total_tokens=max(1, len(text) // 4))


async def _sse_data(lines: AsyncIterable[bytes]) -> AsyncIterator[str]:
    """The data of each server-sent event (data lines joined by newlines; comments and other fields skipped).

    aiohttp has no SSE reader and httpx-sse reads only httpx responses; an OpenAI stream needs no more than this.
    """
    data: list[str] = []
    async for raw in lines:
        line = raw.decode("utf-8", "replace").rstrip("\r\n")  # as the SSE spec decodes: a stray byte is not fatal
        if not line:
            if data:
                yield "\n".join(data)
                data = []
        elif line.startswith("data:"):
            data.append(line[6:] if line.startswith("data: ") else line[5:])
    if data:
        yield "\n".join(data)


async def read_stream(
    lines: AsyncIterable[bytes], on_delta: DeltaSink, secrets: tuple[str, ...] = ()
) -> tuple[str, Usage]:
    """The answer's text and usage from an OpenAI chat stream's lines; ProviderError when it breaks."""
    parts: list[str] = []
    usage = Usage()
    finished = False
    async for data in _sse_data(lines):
        if data == "[DONE]":
            finished = True  # the explicit end, finish_reason or not
            break
        chunk = _json(data.encode(), "stream chunk")
        if chunk.get("error"):  # an error sent after the 200 (vLLM does), classified like an HTTP error
            raise _stream_error(chunk["error"], secrets)
        for choice in chunk.get("choices") or []:
            piece = _text((choice.get("delta") or {}).get("content"))
            if piece:
                parts.append(piece)
                on_delta(piece)
            if choice.get("finish_reason"):
                finished = True
        if chunk.get("usage"):
            usage = _usage(chunk["usage"])
    text = "".join(parts)
    if not finished:
        raise ProviderError("connection", f"the stream ended before the answer finished ({len(text)} characters in)")
    return text, estimated_usage(usage, text)


def _stream_error(err: Any, secrets: tuple[str, ...]) -> ProviderError:
    detail = err if isinstance(err, dict) else {"message": str(err)}
    code = detail.get("code")
    status = int(code) if isinstance(code, int) or (isinstance(code, str) and code.isdigit()) else None
    label = str(detail.get("type") or code or "")
    message = str(detail.get("message") or detail)
    words = f"{label} {message}".lower()
    kind = kind_for_status(status, words) if status else _kind_without_status(words)
    return ProviderError(kind, f"the server broke off the stream: {message}", status_code=status, secrets=secrets)


def _json(raw: bytes, what: str) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ProviderError("malformed", f"the {what} is not JSON ({exc}): {_snippet(raw)}") from exc
    if not isinstance(data, dict):
        raise ProviderError("malformed", f"the {what} is not a JSON object: {_snippet(raw)}")
    return data


def _usage(u: Any) -> Usage:
    if not isinstance(u, dict):
        return Usage()
    p = int(u.get("prompt_tokens") or 0)
    c = int(u.get("completion_tokens") or 0)
    return Usage(prompt_tokens=p, completion_tokens=c, total_tokens=int(u.get("total_tokens") or p + c))


def _kind_without_status(lowered: str) -> ErrorKind:
    """An error object without a numeric code (sent mid-stream): by its type and words; a blip unless they say not."""
    if overflows_context(lowered):
        return "context_overflow"
    if "rate" in lowered and "limit" in lowered:
        return "rate_limit"
    if any(w in lowered for w in ("invalid_request", "badrequest", "bad_request", "invalid request")):
        return "bad_request"
    if any(w in lowered for w in ("authentication", "permission", "unauthorized", "forbidden")):
        return "auth"
    return "server"


def _http_error(status: int, raw: bytes, headers: Any, secrets: tuple[str, ...] = ()) -> ProviderError:
    """The kind an HTTP error status means for the retry policy, with the server's own message."""
    detail: Any = None
    try:
        detail = json.loads(raw).get("error")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        pass
    if isinstance(detail, dict):
        message, code = str(detail.get("message") or ""), f"{detail.get('code') or ''} {detail.get('type') or ''}"
    else:
        message, code = str(detail or "") or raw.decode("utf-8", "replace"), ""
    kind = kind_for_status(status, f"{code} {message}".lower())
    retry_after = retry_after_s(headers.get("retry-after")) if status in (429, 503) else None
    return ProviderError(
        kind, f"HTTP {status}: {message}", status_code=status, retry_after_s=retry_after, secrets=secrets
    )


def retry_after_s(value: str | None) -> float | None:
    """Retry-After in seconds, from either of its forms (delta-seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, IndexError):
        return None


def _snippet(raw: bytes) -> str:
    return raw[:200].decode("utf-8", "replace")
