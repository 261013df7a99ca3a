"""The fakes on the provider seam: ScriptedProvider plays steps, FunctionProvider asks a function."""

import json
import time

import pytest

from consensus.engine import DebateOptions, debate
from consensus.errors import ProviderError
from consensus.providers.base import Completion
from consensus.providers.fake import FAULTS, Call, FunctionProvider, ScriptedProvider, Step, answer_json
from consensus.types import Message, Seat, Usage
from tests.helpers import ans, make_panel

ALICE = Seat(name="alice", model="openai/alice")
HI = [Message(role="user", content="hi " * 8)]


def test_a_final_step_renders_the_one_answer_json():
    assert Step(final="4").render() == answer_json("4") == ans("4")
    rendered = json.loads(Step(final="4", text="Four.", confidence=0.6).render())
    assert rendered == {"answer": "Four.", "final_answer": "4", "confidence": 0.6}
    assert Step(text="plain").render() == "plain" and Step().render() == ""


async def test_a_sync_function_answers_with_text_and_sees_the_seat_and_messages():
    seen = []

    def reply(seat, messages):
        seen.append((seat.name, messages[-1].content))
        return f"{seat.name} says hi"

    fake = FunctionProvider(reply)
    done = await fake.complete(ALICE, HI, timeout_s=1)
    assert done.text == "alice says hi" and seen == [("alice", HI[-1].content)]
    assert done.usage == Usage(prompt_tokens=6, completion_tokens=3, total_tokens=9)  # characters // 4, as the stub
    assert fake.calls == [Call("alice", HI)] and fake.calls_for("alice") == [HI] and fake.max_in_flight == 1


async def test_an_async_function_may_return_a_step_or_a_completion():
    async def step(seat, messages):
        return Step(final="4", chunk_chars=5)

    pieces = []
    done = await FunctionProvider(step).complete(ALICE, HI, timeout_s=1, on_delta=pieces.append)
    assert done.text == ans("4") and "".join(pieces) == ans("4") and len(pieces[0]) == 5
    made = Completion(text="as given", usage=Usage(prompt_tokens=1, completion_tokens=2, total_tokens=3), cost_usd=None)
    assert await FunctionProvider(lambda seat, messages: made).complete(ALICE, HI, timeout_s=1) == made


async def test_a_function_fails_with_a_fault_step_or_by_raising():
    with pytest.raises(ProviderError) as info:
        await FunctionProvider(lambda seat, messages: Step(fault="429", retry_after=3)).complete(ALICE, HI, timeout_s=1)
    assert (info.value.kind, info.value.status_code, info.value.retry_after_s) == ("rate_limit", 429, 3)

    def refuse(seat, messages):
        raise ProviderError("context_overflow", "too long")

    fake = FunctionProvider(refuse)
    with pytest.raises(ProviderError, match="too long"):
        await fake.complete(ALICE, HI, timeout_s=1)
    assert fake.in_flight == 0 and len(fake.calls) == 1


@pytest.mark.parametrize("fault", list(FAULTS))
async def test_every_fault_raises_its_kind(fault):
    pieces = []
    fake = ScriptedProvider(script={"alice": [Step(text="0123456789", fault=fault)]})
    with pytest.raises(ProviderError) as info:
        await fake.complete(ALICE, HI, timeout_s=0.05, on_delta=pieces.append)
    assert info.value.kind == FAULTS[fault].kind and info.value.status_code == FAULTS[fault].status
    assert "".join(pieces) == ("01234" if fault == "cut" else "")  # a cut stream shows half the text first


async def test_a_hang_lasts_until_the_timeout_and_a_delay_counts_against_it():
    t0 = time.perf_counter()
    with pytest.raises(ProviderError, match="no answer within 0.1 s") as info:
        await FunctionProvider(lambda seat, messages: Step(fault="hang")).complete(ALICE, HI, timeout_s=0.1)
    assert info.value.kind == "timeout" and time.perf_counter() - t0 >= 0.09
    slow = ScriptedProvider(script={"alice": [Step(final="4", delay_s=5)]})
    with pytest.raises(ProviderError) as info:
        await slow.complete(ALICE, HI, timeout_s=0.05)
    assert info.value.kind == "timeout"


async def test_a_script_is_played_in_order_and_its_last_step_repeats():
    fake = ScriptedProvider(script={"alice": [Step(text="one"), Step(text="two")]})
    texts = [(await fake.complete(ALICE, HI, timeout_s=1)).text for _ in range(3)]
    assert texts == ["one", "two", "two"]
    unscripted = await fake.complete(Seat(name="bob", model="openai/bob"), HI, timeout_s=1)
    assert json.loads(unscripted.text)["final_answer"] == "42"


async def test_a_function_provider_runs_a_debate_answering_from_the_prompt():
    """Each seat answers what its prompt asks: a reply that depends on the messages needs no script."""

    def reply(seat, messages):
        if "PANELIST" not in messages[-1].content:  # the opening: no peer answers yet
            return ans({"a": "3", "b": "4", "c": "4"}[seat.name])
        return ans("4")

    r = await debate("2+2?", make_panel("abc", max_rounds=2), FunctionProvider(reply), DebateOptions(language="en"))
    assert [rd.agreement.score for rd in r.rounds] == [pytest.approx(2 / 3), 1.0]
    assert r.answers["a"].final_answer == "4"
