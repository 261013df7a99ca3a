"""The OpenAI-compatible endpoint turns a message history into a thread: the official SDK, and a client that resends
the whole history each turn (as `llm -c` does)."""

from __future__ import annotations

import httpx
import openai

from tests.api.test_threads import OWN, script_turn, user_prompt
from tests.helpers import SEATS


def sdk(service) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{service.url}/v1", api_key="unused-on-loopback", max_retries=0, timeout=30)


def test_the_openai_sdk_with_a_three_message_history_debates_a_follow_up(service, stub):
    """The history used to be flattened into the question ("Conversation so far: ..."): the panel saw the earlier
    consensus as part of the question, and a system message as conversation text."""
    script_turn(stub, 2)
    reply = sdk(service).chat.completions.create(
        model="consensus",
        messages=[
            {"role": "system", "content": "Answer as briefly as you can."},
            {"role": "user", "content": "What is 2 + 2?"},
            {"role": "assistant", "content": "The panel agrees: 4."},
            {"role": "user", "content": "And why?"},
        ],
    )
    assert reply.choices[0].message.content.startswith("Consensus of turn 2")
    for name in SEATS:
        body = stub.requests(name)[0]
        system = next(m["content"] for m in body["messages"] if m["role"] == "system")
        prompt = user_prompt(body)
        assert "Answer as briefly" not in system  # the caller's instruction never enters our system prompt
        assert "CALLER'S INSTRUCTION" in prompt and "Answer as briefly as you can." in prompt
        assert "EARLIER QUESTION 1" in prompt and "The panel agrees: 4." in prompt
        assert "Conversation so far" not in prompt
        question_at = prompt.rindex("QUESTION\n")
        assert prompt[question_at:].removeprefix("QUESTION\n").startswith("And why?")
    debate = httpx.get(f"{service.url}/v1/debates/{reply.consensus['debate_id']}").json()
    assert debate["question"] == "And why?"


def test_a_client_resending_the_whole_history_each_turn_gets_a_growing_thread(service, stub):
    history: list[dict[str, str]] = []
    for turn, q in enumerate(["What is 2 + 2?", "Why is that?", "And 3 + 3?"], 1):
        stub.reset()
        script_turn(stub, turn)
        history.append({"role": "user", "content": q})
        r = httpx.post(
            f"{service.url}/v1/chat/completions", json={"model": "consensus", "messages": history}, timeout=30
        )
        assert r.status_code == 200, r.text
        answer = r.json()["choices"][0]["message"]["content"]
        assert answer.startswith(f"Consensus of turn {turn}")
        history.append({"role": "assistant", "content": answer})
        prompt = user_prompt(stub.requests("bob")[0])
        assert prompt.count("EARLIER QUESTION ") == 2 * (turn - 1)  # each earlier turn once (question and consensus)
        assert OWN not in prompt  # the SDK history carries no panelist's own answer
    assert "Why is that?" in prompt and "Consensus of turn 2" in prompt
    assert r.json()["consensus"]["debate_id"]
