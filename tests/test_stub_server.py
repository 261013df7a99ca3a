"""The loopback stub driven through real LiteLLM: answers, streams, usage and faults."""

import socket
from typing import Any

import litellm
import pytest

from consensus.providers.fake import FAULTS, Step
from service.testing.stub_server import ERROR_TYPE, LATENCY_TEXT, StubServer

litellm.suppress_debug_info = True
MESSAGES = [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "What is 6 x 7?"}]


async def complete(stub: StubServer, model: str, **kwargs: Any) -> Any:
    """One LiteLLM call at the stub, with LiteLLM's own retries off."""
    return await litellm.acompletion(
        model=f"openai/{model}", api_base=stub.api_base, api_key="any", messages=MESSAGES, max_retries=0, **kwargs
    )


async def stream_text(stub: StubServer, model: str, **kwargs: Any) -> tuple[list[str], list[Any]]:
    """Stream a call; return the content pieces and all chunks."""
    response = await complete(stub, model, stream=True, stream_options={"include_usage": True}, **kwargs)
    chunks = [chunk async for chunk in response]
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    return pieces, chunks


async def test_plain_answer_carries_text_usage_and_is_logged(stub: StubServer) -> None:
    text = '{"answer": "six sevens", "final_answer": "42", "confidence": 0.9}'
    stub.script("alice", [{"text": text}])
    response = await complete(stub, "alice", temperature=0.3)
    assert response.choices[0].message.content == text
    assert response.choices[0].finish_reason == "stop"
    prompt_chars = sum(len(m["content"]) for m in MESSAGES)
    assert response.usage.prompt_tokens == prompt_chars // 4
    assert response.usage.completion_tokens == len(text) // 4
    assert stub.hits() == {"alice": 1}
    [body] = stub.requests("alice")
    assert body["messages"] == MESSAGES and body["temperature"] == 0.3 and not body.get("stream")


async def test_the_fakes_steps_script_the_stub_and_every_http_fault_has_an_error_type(stub: StubServer) -> None:
    stub.script("alice", [Step(final="4", text="Four.", delay_s=0.01), Step(fault="503")])
    response = await complete(stub, "alice")
    assert response.choices[0].message.content == Step(final="4", text="Four.").render()
    with pytest.raises(litellm.ServiceUnavailableError):
        await complete(stub, "alice")
    assert {spec.status for spec in FAULTS.values() if spec.status is not None} == set(ERROR_TYPE)


async def test_stream_arrives_in_chunks_then_usage(stub: StubServer) -> None:
    stub.script("bob", [{"text": "forty-two is the answer", "chunk_chars": 5}])
    pieces, chunks = await stream_text(stub, "bob")
    assert pieces == ["forty", "-two ", "is th", "e ans", "wer"]
    usage = getattr(chunks[-1], "usage", None)
    assert usage is not None and usage.completion_tokens == len("forty-two is the answer") // 4
    assert stub.requests("bob")[0]["stream_options"] == {"include_usage": True}


async def test_steps_are_consumed_in_order_and_the_last_repeats(stub: StubServer) -> None:
    stub.script("carol", [{"fault": "500"}, {"text": "first"}, {"text": "again"}])
    with pytest.raises(litellm.InternalServerError):
        await complete(stub, "carol")
    answers = [(await complete(stub, "carol")).choices[0].message.content for _ in range(3)]
    assert answers == ["first", "again", "again"]
    assert stub.hits("carol") == 4


async def test_unscripted_models_answer_defaults(stub: StubServer) -> None:
    plain = await complete(stub, "dave")
    assert plain.choices[0].message.content == "default answer from dave"
    timed = await complete(stub, "latency-20")
    assert timed.choices[0].message.content == LATENCY_TEXT
    assert stub.hits() == {"dave": 1, "latency-20": 1}


async def test_latency_models_stream_and_log_like_the_app_and_a_script_still_wins(stub: StubServer) -> None:
    """`latency-<ms>` is answered in front of FastAPI (bench CPU): the same chunks, usage, log and hits."""
    pieces, chunks = await stream_text(stub, "latency-5")
    assert "".join(pieces) == LATENCY_TEXT and len(pieces) == -(-len(LATENCY_TEXT) // 8)
    usage = getattr(chunks[-1], "usage", None)
    assert usage is not None and usage.completion_tokens == len(LATENCY_TEXT) // 4
    assert usage.prompt_tokens == sum(len(m["content"]) for m in MESSAGES) // 4
    [body] = stub.requests("latency-5")
    assert body["stream"] is True and body["messages"] == MESSAGES
    stub.script("latency-5", [{"fault": "401"}])  # a scripted latency model is the app's again
    with pytest.raises(litellm.AuthenticationError):
        await complete(stub, "latency-5")
    assert stub.hits("latency-5") == 2


async def test_rate_limit_is_one_hit_with_retries_off(stub: StubServer) -> None:
    stub.script("erin", [{"fault": "429", "retry_after": 7}])
    with pytest.raises(litellm.RateLimitError) as caught:
        await complete(stub, "erin")
    assert stub.hits("erin") == 1
    assert caught.value.response.headers["retry-after"] == "7"


# Observed with litellm 1.110.2: each HTTP fault maps to its own exception class.
@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ("400", litellm.BadRequestError),
        ("401", litellm.AuthenticationError),
        ("404", litellm.NotFoundError),
        ("500", litellm.InternalServerError),
        ("502", litellm.BadGatewayError),
        ("503", litellm.ServiceUnavailableError),
    ],
)
async def test_http_faults_map_to_litellm_errors(stub: StubServer, fault: str, error: type) -> None:
    stub.script("frank", [{"fault": fault}])
    with pytest.raises(error):
        await complete(stub, "frank")
    assert stub.hits("frank") == 1


async def test_malformed_answer_raises_a_server_error(stub: StubServer) -> None:
    stub.script("grace", [{"fault": "malformed"}])
    # Observed with litellm 1.110.2: a 200 whose body is not a completion is an InternalServerError
    # (a 5xx class, so a retry policy keyed on class retries it); a garbage SSE line is a
    # MidStreamFallbackError, as for "cut".
    with pytest.raises(litellm.InternalServerError):
        await complete(stub, "grace")
    with pytest.raises(Exception):  # noqa: B017
        await stream_text(stub, "grace")


async def test_cut_stream_raises_while_iterating(stub: StubServer) -> None:
    stub.script("heidi", [{"text": "a long answer that is cut in the middle", "fault": "cut"}])
    # Observed with litellm 1.110.2: litellm.exceptions.MidStreamFallbackError (a subclass of
    # ServiceUnavailableError, not exported as litellm.MidStreamFallbackError), raised while iterating.
    with pytest.raises(Exception):  # noqa: B017 - any error, the class is LiteLLM's to choose
        await stream_text(stub, "heidi")


async def test_hanging_model_times_out(stub: StubServer) -> None:
    stub.script("ivan", [{"fault": "hang"}])
    with pytest.raises(litellm.Timeout):
        await complete(stub, "ivan", timeout=0.5)


def test_network_guard_blocks_non_loopback() -> None:
    with pytest.raises(RuntimeError, match="outside 127.0.0.1"):
        socket.create_connection(("10.255.255.1", 80), timeout=1)
    with socket.socket() as sock, pytest.raises(RuntimeError, match="outside 127.0.0.1"):
        sock.connect(("10.255.255.1", 80))
