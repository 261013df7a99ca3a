"""transport = "auto" (the default): the lean client for OpenAI-compatible servers, LiteLLM for named providers."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from consensus.types import Seat


@pytest.mark.parametrize(
    ("model", "api_base", "transport", "route", "wire"),
    [
        ("openai/my-model", "http://10.0.0.5:8000/v1", "auto", "openai-compatible", "my-model"),
        (
            "hosted_vllm/meta-llama/Llama-3.1-8B",
            "http://vllm:8000/v1",
            "auto",
            "openai-compatible",
            "meta-llama/Llama-3.1-8B",
        ),
        ("openai/gpt-4o-mini", None, "auto", "litellm", "gpt-4o-mini"),  # OpenAI itself: LiteLLM maps parameters
        ("anthropic/claude-3-5-haiku-latest", None, "auto", "litellm", "anthropic/claude-3-5-haiku-latest"),
        ("ollama/llama3", "http://127.0.0.1:11434", "auto", "litellm", "ollama/llama3"),  # not OpenAI's API
        ("openai/my-model", "http://10.0.0.5:8000/v1", "litellm", "litellm", "my-model"),  # asked for LiteLLM
        (
            "meta-llama/Llama-3.1-8B",
            "http://10.0.0.5:8000/v1",
            "openai-compatible",
            "openai-compatible",
            "meta-llama/Llama-3.1-8B",
        ),
        ("local/smollm2", None, "auto", "local", "local/smollm2"),
    ],
)
def test_each_seat_takes_the_transport_its_server_needs(model, api_base, transport, route, wire):
    seat = Seat(name="s", model=model, api_base=api_base, transport=transport)
    assert (seat.route, seat.wire_model) == (route, wire)


def test_the_lean_client_still_needs_a_server_and_never_carries_the_embedded_model():
    with pytest.raises(ValidationError, match="needs api_base"):
        Seat(name="s", model="openai/x", transport="openai-compatible")
    with pytest.raises(ValidationError, match="runs in-process"):
        Seat(name="s", model="local/smollm2", api_base="http://x/v1", transport="openai-compatible")
