"""The gateway's lean OpenAI-compatible client: what it puts on the wire, how it reads streams and failures.

test_debate_litellm.py runs the engine's contract on this client too; these cover what only it does.
"""

import json
import os
import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from consensus.errors import ProviderError
from consensus.providers.openai_compat import read_stream, retry_after_s
from consensus.types import DebateSettings, Message, Seat

HI = [Message(role="user", content="hi")]


def lean(stub, name, **kw):
    return Seat(name=name, model=f"openai/{name}", api_base=stub.api_base, transport="openai-compatible", **kw)


async def test_the_request_on_the_wire(stub, gateway):
    stub.script("alice", [{"text": '{"answer": "4", "final_answer": "4", "confidence": 0.9}'}])
    gw = gateway()
    seat = lean(stub, "alice", temperature=0.3, max_tokens=50, seed=7)
    await gw.complete(seat, HI, timeout_s=5, schema={"type": "object"})
    await gw.complete(seat, HI, timeout_s=5, on_delta=lambda _t: None)
    plain, streamed = stub.requests("alice")
    assert plain["model"] == "alice"  # the "openai/" prefix is LiteLLM's notation, not the server's name
    assert plain["messages"] == [{"role": "user", "content": "hi"}]
    assert (plain["temperature"], plain["max_tokens"], plain["seed"]) == (0.3, 50, 7)
    assert plain["response_format"] == {"type": "json_object"} and "stream" not in plain
    assert streamed["stream"] is True and streamed["stream_options"] == {"include_usage": True}
    assert "response_format" not in streamed


class Screen:
    """A delta sink that shows text the way the CLI and the page do: a restart clears what was shown."""

    def __init__(self):
        self.text, self.restarts = "", 0

    def __call__(self, text, restart=False):
        self.restarts += restart
        self.text = text if restart else self.text + text


async def test_a_cut_stream_is_retried_and_its_listener_told_to_start_over(stub, gateway):
    stub.script("alice", [{"fault": "cut", "text": "a long answer that breaks off"}, {"text": "whole answer"}])
    screen = Screen()
    done = await gateway(DebateSettings(max_attempts=2)).complete(lean(stub, "alice"), HI, timeout_s=5, on_delta=screen)
    assert done.text == "whole answer" and done.attempts == 2 and stub.hits("alice") == 2
    assert screen.text == "whole answer" and screen.restarts == 1  # not "a long answer th" + "whole answer"
    stub.script("bob", [{"fault": "cut", "text": "a long answer that breaks off"}])
    with pytest.raises(ProviderError) as info:
        await gateway(DebateSettings(max_attempts=2)).complete(lean(stub, "bob"), HI, timeout_s=5, on_delta=Screen())
    assert info.value.kind == "connection" and "before the answer finished" in info.value.message
    assert stub.hits("bob") == 2


async def test_a_refused_connection_is_retried_then_reported(gateway):
    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    seat = Seat(name="gone", model="gone", api_base=f"http://127.0.0.1:{port}/v1", transport="openai-compatible")
    with pytest.raises(ProviderError) as info:
        await gateway(DebateSettings(max_attempts=2, max_retry_after_s=0)).complete(seat, HI, timeout_s=5)
    assert info.value.kind == "connection" and info.value.attempts == 2


async def lines(*chunks):
    for chunk in chunks:
        for line in chunk.splitlines(keepends=True):
            yield line


def event(payload):
    return f"data: {json.dumps(payload)}\r\n\r\n".encode()


async def test_stream_reading_follows_sse_framing():
    pieces = []
    text, usage = await read_stream(
        lines(
            b": keep-alive comment\n\n",
            event({"choices": [{"delta": {"role": "assistant"}, "finish_reason": None}]}),
            b'event: message\ndata:{"choices": [{"delta": {"content": "for"}}]}\n\n',  # no space after the colon
            b'data: {"choices": [{"delta":\ndata: {"content": "ty-two"}, "finish_reason": "stop"}]}\n\n',  # two data lines
            event({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}}),
            b"data: [DONE]\n\n",
            event({"choices": [{"delta": {"content": "after DONE: ignored"}}]}),
        ),
        pieces.append,
    )
    assert text == "forty-two" and pieces == ["for", "ty-two"]
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (3, 2, 5)


async def test_an_error_sent_inside_the_stream_is_a_server_error():
    with pytest.raises(ProviderError) as info:
        await read_stream(
            lines(
                event({"choices": [{"delta": {"content": "par"}}]}),
                event({"error": {"message": "model overloaded", "type": "server_error"}}),
            ),
            lambda _t: None,
        )
    assert info.value.kind == "server" and "model overloaded" in info.value.message


async def test_a_stream_without_usage_gets_an_estimate_never_zero():
    text, usage = await read_stream(
        lines(event({"choices": [{"delta": {"content": "x" * 40}, "finish_reason": "stop"}]})), lambda _t: None
    )
    assert text == "x" * 40 and usage.completion_tokens == 10 and usage.total_tokens == 10


def test_retry_after_in_both_forms():
    assert retry_after_s("3") == 3.0 and retry_after_s("0.5") == 0.5 and retry_after_s("-2") == 0.0
    in_10s = format_datetime(datetime.now(UTC) + timedelta(seconds=10), usegmt=True)
    assert 8 <= (retry_after_s(in_10s) or 0) <= 10
    assert retry_after_s(None) is None and retry_after_s("soon") is None


def test_a_panel_of_lean_seats_never_loads_litellm(stub, tmp_path):
    """`consensus ask` end to end on the lean client: LiteLLM (about 290 MiB, seconds of CPU) stays unimported."""
    for n in ("alice", "bob", "carol"):
        stub.script(n, [{"text": '{"answer": "It is 4.", "final_answer": "4", "confidence": 0.9}'}])
    panel = tmp_path / "panel.toml"
    panel.write_text(
        "".join(
            f'[[panelist]]\nname = "{n}"\nmodel = "openai/{n}"\napi_base = "{stub.api_base}"\ntransport = "openai-compatible"\n'
            for n in ("alice", "bob", "carol")
        ),
        encoding="utf-8",
    )
    code = (
        "import sys\nfrom consensus.cli import main\n"
        "try:\n    main()\nexcept SystemExit as e:\n    code = e.code\n"
        "print('LITELLM_LOADED' if 'litellm' in sys.modules else 'LITELLM_ABSENT', code, file=sys.stderr)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, "ask", "What is 2+2?", "--panel-file", str(panel), "--json", "--language", "en"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "NO_COLOR": "1"},
    )
    assert "LITELLM_ABSENT 0" in proc.stderr, proc.stderr[-2000:]
    result = json.loads(proc.stdout)
    assert result["status"] == "completed" and result["consensus"]["majority"] == "4"
    assert stub.hits() == {"alice": 2, "bob": 1, "carol": 1}


def test_proxies_come_from_the_environment_and_no_proxy_wins(monkeypatch):
    """As for LiteLLM's own clients: HTTPS_PROXY/HTTP_PROXY apply, NO_PROXY exempts (read once per URL)."""
    from consensus.providers.openai_compat import proxy_for

    for name in ("HTTP_PROXY", "http_proxy", "https_proxy", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,vllm.internal")
    proxy_for.cache_clear()
    try:
        assert proxy_for("https://api.example.com/v1/chat/completions") == "http://proxy.internal:3128"
        assert proxy_for("https://vllm.internal/v1/chat/completions") is None
        assert proxy_for("http://127.0.0.1:8000/v1/chat/completions") is None
        assert proxy_for("http://plain.example.com/v1/chat/completions") is None  # no HTTP_PROXY set
    finally:
        proxy_for.cache_clear()
