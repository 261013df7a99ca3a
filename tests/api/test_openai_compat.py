"""The official openai SDK, unchanged, against /v1/chat/completions and /v1/models."""

import openai
import pytest

from tests.api.conftest import ans


@pytest.fixture
def client(service, stub):
    for n in ("alice", "bob", "carol"):
        stub.script(n, [{"text": ans("Paris")}, {"text": "The consensus: Paris is the capital of France."}])
    return openai.OpenAI(base_url=f"{service.url}/v1", api_key="unused-on-loopback", max_retries=0, timeout=30)


def test_models_lists_consensus_first_then_its_arms(client):
    ids = [m.id for m in client.models.list()]
    assert ids[:2] == ["consensus", "consensus-vote"] and "consensus-single-alice" in ids  # tests/api/test_arms.py


def test_chat_completion_returns_the_consensus_and_every_answer(client):
    r = client.chat.completions.create(model="consensus", messages=[{"role": "user", "content": "Capital of France?"}])
    assert r.choices[0].message.content == "The consensus: Paris is the capital of France."
    assert r.choices[0].finish_reason == "stop" and r.usage.total_tokens > 0
    extra = r.model_extra["consensus"]
    assert extra["agreement"] == 1.0 and extra["majority"] == "Paris"
    assert set(extra["answers"]) == {"alice", "bob", "carol"} and extra["debate_id"]


def test_streaming_yields_standard_chunks(client):
    stream = client.chat.completions.create(
        model="consensus",
        messages=[{"role": "user", "content": "Capital of France?"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "The consensus: Paris is the capital of France."
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finals[-1].choices[0].finish_reason == "stop" and finals[-1].model_extra["consensus"]["majority"] == "Paris"
    assert chunks[-1].usage.total_tokens > 0
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 1  # really streamed


def test_errors_use_openai_shapes(client):
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="gpt-4", messages=[{"role": "user", "content": "hi"}])
    assert info.value.body["param"] == "model"
    # Invalid requests are 400s here, as OpenAI's are: code catching openai.BadRequestError keeps working.
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="consensus", messages=[{"role": "system", "content": "only system"}])
    assert info.value.body["param"] == "messages"
    with pytest.raises(openai.BadRequestError) as info:  # there is no `question` field on this endpoint
        client.chat.completions.create(model="consensus", messages=[{"role": "user", "content": "x" * 9000}])
    assert info.value.body["param"] == "messages" and "9000 characters" in info.value.body["message"]
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="consensus", messages="not a list")  # type: ignore[arg-type]
    assert info.value.body["param"] == "messages"
    hi = [{"role": "user", "content": "hi"}]
    for extra, param in (({"n": 2}, "n"), ({"tool_choice": "required"}, "tool_choice"), ({"stream": "yes"}, "stream")):
        with pytest.raises(openai.BadRequestError) as info:  # asked for what one consensus cannot give
            client.chat.completions.create(model="consensus", messages=hi, **extra)
        assert info.value.body["param"] == param


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_a_failed_debate_is_an_error_not_an_answer(client, stub, stream):
    """Every seat refuses (401): the SDK raises with code debate_failed, streaming or not, never yields text."""
    for n in ("alice", "bob", "carol"):
        stub.script(n, [{"fault": "401"}])
    msgs = [{"role": "user", "content": "Capital of France?"}]
    texts: list[str] = []
    with pytest.raises(openai.APIError) as info:
        if stream:
            for c in client.chat.completions.create(model="consensus", messages=msgs, stream=True):
                texts += [c.choices[0].delta.content or ""] if c.choices else []
        else:
            client.chat.completions.create(model="consensus", messages=msgs)
    assert info.value.body["code"] == "debate_failed" and "could not answer" in info.value.message
    assert "".join(texts) == ""  # nothing a client would show as the assistant's answer


CONSENSUS = "The consensus: Paris is the capital of France, as every panelist said."
CUT = {"fault": "cut", "text": CONSENSUS, "chunk_chars": 5}


def stream_text(client) -> str:
    msgs = [{"role": "user", "content": "Capital of France?"}]
    return "".join(
        c.choices[0].delta.content or ""
        for c in client.chat.completions.create(model="consensus", messages=msgs, stream=True)
        if c.choices
    )


def test_a_synthesis_retried_after_part_of_it_streamed_still_streams_the_answer_once(client, stub):
    """The synthesizer's stream breaks off and the retry writes the same text: the client gets the answer once,
    not the broken-off start followed by the whole answer."""
    stub.script("alice", [{"text": ans("Paris")}, CUT, {"text": CONSENSUS, "chunk_chars": 5}])
    assert stream_text(client) == CONSENSUS
    assert stub.hits("alice") == 3


def test_a_synthesis_rewritten_differently_after_part_of_it_streamed_streams_only_the_checked_answer(client, stub):
    """A stream cannot take back what it sent, so the synthesizer's tokens are not streamed: only the consensus
    that passed the checks goes out, once (before the checkable consensus, a rewrite was a stream_restarted error
    after the broken-off start had been sent)."""
    stub.script("alice", [{"text": ans("Paris")}, CUT, {"text": "Paris.", "chunk_chars": 5}])
    assert stream_text(client) == "Paris."
