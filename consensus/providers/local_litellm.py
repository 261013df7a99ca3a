"""The embedded model as LiteLLM's custom provider `local`, for tools built on LiteLLM.

The gateway runs the model through LocalTransport and never loads this module; `register()` makes
`litellm.acompletion(model="local/smollm2", ...)` work.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import litellm
from litellm import exceptions as llm_errors
from litellm.llms.custom_llm import CustomLLM
from litellm.types.utils import GenericStreamingChunk, ModelResponse, Usage

from consensus.errors import LocalModelUnavailable
from consensus.providers.local import (
    DEFAULT_MAX_TOKENS,
    MODEL,
    N_CTX,
    LocalBadRequest,
    LocalContextOverflow,
    LocalNotFound,
    LocalTimeout,
    Piece,
    generate,
)

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


def register() -> None:
    """Register `local/smollm2` with LiteLLM, priced at zero; idempotent."""
    if not any(item["provider"] == "local" for item in litellm.custom_provider_map):
        litellm.custom_provider_map.append({"provider": "local", "custom_handler": LocalLLM()})
    litellm.register_model({MODEL: _COSTS})  # so response_cost is 0, not None


class LocalLLM(CustomLLM):
    """LiteLLM handler for `local/smollm2`; LiteLLM passes everything as keyword arguments."""

    async def acompletion(self, *args: Any, **kwargs: Any) -> ModelResponse:
        """One whole answer, with usage."""
        parts: list[str] = []
        finish, usage = "stop", None
        async for chunk in _chunks(kwargs):
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
        async for chunk in _chunks(kwargs):
            yield chunk


async def _chunks(kwargs: dict[str, Any]) -> AsyncIterator[GenericStreamingChunk]:
    try:
        async for piece in generate(
            kwargs.get("model"),
            kwargs.get("messages") or [],
            kwargs.get("optional_params") or {},
            kwargs.get("timeout"),
        ):
            yield _chunk(piece)
    except Exception as exc:  # noqa: BLE001 - each failure becomes the LiteLLM exception it means
        raise _litellm_error(exc) from exc


def _chunk(piece: Piece) -> GenericStreamingChunk:
    return {
        "text": piece.text,
        "is_finished": piece.finish is not None,
        "finish_reason": piece.finish or "",
        "usage": piece.usage,  # type: ignore[typeddict-item]
        "index": 0,
        "tool_use": None,
    }


def _litellm_error(exc: BaseException) -> Exception:
    """The LiteLLM exception a failure becomes (LiteLLM maps them to the same classes again)."""
    if isinstance(exc, LocalModelUnavailable):
        return llm_errors.ServiceUnavailableError(message=f"local model unavailable: {exc}", **_ERR)
    if isinstance(exc, LocalTimeout):
        return llm_errors.Timeout(message=str(exc), **_ERR)
    if isinstance(exc, LocalNotFound):
        return llm_errors.NotFoundError(message=str(exc), **_ERR)
    if isinstance(exc, LocalContextOverflow):
        return llm_errors.ContextWindowExceededError(message=str(exc), **_ERR)
    if isinstance(exc, LocalBadRequest):
        return llm_errors.BadRequestError(message=str(exc), **_ERR)
    return llm_errors.InternalServerError(message=str(exc), **_ERR)
