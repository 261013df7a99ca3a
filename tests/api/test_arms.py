"""The comparison arms on the OpenAI-compatible endpoint, against the loopback stub: ids, calls and usage against
the stub's hit counters, ties, the unknown-model 404, streaming, and the same numbers from `consensus eval --arm`."""

import json
import socket
import time

import openai
import pytest

from consensus.arms import arm_ids
from consensus.providers.fake import Step
from service.testing.stub_server import usage_of
from tests.api.conftest import stub_panel
from tests.contract.test_cli import cli_here
from tests.helpers import SEATS, ans, write_panel

Q = [{"role": "user", "content": "What is 2+2?"}]


@pytest.fixture
def client(service):
    return openai.OpenAI(base_url=f"{service.url}/v1", api_key="unused-on-loopback", max_retries=0, timeout=30)


def script(stub, steps: dict[str, list[dict]]) -> dict[str, list[dict]]:
    for model, model_steps in steps.items():
        stub.script(model, model_steps)
    return steps


def charged(stub, steps: dict[str, list[dict]]) -> dict[str, int]:
    """What the stub charged for the requests it logged: each one's prompt and the scripted step it played."""
    total = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    for model, model_steps in steps.items():
        for i, body in enumerate(stub.requests(model)):
            step = Step(**model_steps[min(i, len(model_steps) - 1)])
            if step.fault is None:
                for k, v in usage_of(step, body).items():
                    total[k] += v
    return total


def usage(r) -> dict[str, int]:
    return {k: getattr(r.usage, k) for k in ("prompt_tokens", "completion_tokens", "total_tokens")}


def wait_for(check, what: str, timeout_s: float = 20) -> None:
    """Poll until `check()` holds (a done-callback or a request may land a moment after the response)."""
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"still waiting for {what}"
        time.sleep(0.02)


def test_models_lists_the_debate_and_every_arm(service):
    with service.client() as c:
        data = c.get("/v1/models").json()["data"]
    assert [m["id"] for m in data] == arm_ids(service.services.panel)[:-1]  # the last: the rule for any k
    by_id = {m["id"]: m for m in data}
    assert by_id["consensus-vote"]["arm"] == "vote" and by_id["consensus-vote"]["panel"] == [
        "openai/alice",
        "openai/bob",
        "openai/carol",
    ]
    assert by_id["consensus-single-bob"] == {**by_id["consensus-single-bob"], "arm": "single", "panelist": "bob"}
    # k: 3, 5 and a debate's calls on this panel (3 seats x 2 rounds + the synthesis)
    assert [m["k"] for m in data if m.get("panelist") == "carol" and m["arm"] == "sample"] == [3, 5, 7]


def test_the_vote_asks_each_panelist_once_and_answers_with_the_majority_panelist(client, stub, service):
    steps = script(
        stub,
        {
            "alice": [{"text": ans("4", "Two and two make four.")}],
            "bob": [{"text": ans("5")}],
            "carol": [{"text": ans("4")}],
        },
    )
    r = client.chat.completions.create(model="consensus-vote", messages=Q)
    assert r.choices[0].message.content == "Two and two make four.\n\nFinal answer: 4"
    assert r.model == "consensus-vote" and r.choices[0].finish_reason == "stop"
    assert stub.hits() == {"alice": 1, "bob": 1, "carol": 1}  # no debate round, no synthesis
    assert usage(r) == charged(stub, steps) and r.usage.total_tokens > 0
    extra = r.model_extra["consensus"]
    assert (extra["arm"], extra["kind"], extra["majority"], extra["chosen"], extra["tie"]) == (
        "consensus-vote",
        "vote",
        "4",
        "alice",
        False,
    )
    assert extra["calls"] == 3 and extra["agreement"] == pytest.approx(2 / 3)
    assert extra["votes"] == [{"answer": "4", "panelists": ["alice", "carol"]}, {"answer": "5", "panelists": ["bob"]}]
    assert set(extra["answers"]) == {"alice", "bob", "carol"}
    wait_for(lambda: service.services.runner.reserved == 0, "the slot")  # given back by a done-callback


def test_a_single_panelist_is_one_call_and_its_retry_counts_in_usage(client, stub):
    steps = script(stub, {"bob": [{"fault": "500"}, {"text": ans("5", "Five, I think.")}]})
    r = client.chat.completions.create(model="consensus-single-bob", messages=Q)
    assert r.choices[0].message.content == "Five, I think.\n\nFinal answer: 5"
    assert stub.hits() == {"bob": 2}  # the 500 and its retry; nobody else was asked
    assert usage(r) == charged(stub, steps) and r.model_extra["consensus"]["calls"] == 2
    assert r.model_extra["consensus"]["agreement"] is None and r.model_extra["consensus"]["chosen"] == "bob"


def test_a_sample_count_not_listed_is_served_k_calls_above_temperature_zero(client, stub):
    steps = script(stub, {"carol": [{"text": ans("4")}, {"text": ans("5")}, {"text": ans("4")}, {"text": ans("4")}]})
    r = client.chat.completions.create(model="consensus-sample-carol-4", messages=Q)
    assert r.choices[0].message.content == "I conclude 4.\n\nFinal answer: 4"
    assert stub.hits() == {"carol": 4}
    assert [b["temperature"] for b in stub.requests("carol")] == [0.7] * 4  # the seat sets none: sampled at 0.7
    assert usage(r) == charged(stub, steps)
    extra = r.model_extra["consensus"]
    assert extra["arm"] == "consensus-sample-carol-4" and extra["agreement"] == 0.75 and extra["calls"] == 4
    assert sorted(extra["answers"]) == ["carol#1", "carol#2", "carol#3", "carol#4"]


@pytest.mark.parametrize(
    ("model", "steps", "reply"),
    [
        (
            "consensus-vote",
            {"alice": [{"text": ans("4")}], "bob": [{"text": ans("5")}], "carol": [{"text": ans("6")}]},
            'No majority: the panel is split, 1 vote each for "4" (alice); "5" (bob); "6" (carol).',
        ),
        (
            "consensus-sample-alice-4",
            {"alice": [{"text": ans("9")}, {"text": ans("3")}, {"text": ans("9")}, {"text": ans("3")}]},
            'No majority: alice\'s 4 samples are split, 2 votes each for "3"; "9".',
        ),
    ],
    ids=["vote", "sample"],
)
def test_a_tie_says_there_is_no_majority(client, stub, model, steps, reply):
    script(stub, steps)
    r = client.chat.completions.create(model=model, messages=Q)
    assert r.choices[0].message.content == reply
    extra = r.model_extra["consensus"]
    assert extra["tie"] is True and extra["majority"] is None and extra["chosen"] is None
    assert usage(r) == charged(stub, steps)


@pytest.mark.parametrize(
    ("model", "says"),
    [
        ("gpt-4", "model 'gpt-4' does not exist"),
        ("vote", "model 'vote' does not exist"),  # the short form is for `consensus eval --arm` only
        ("consensus-single-zed", "no panelist 'zed' on this panel"),
        ("consensus-sample-alice-99", "k = 99, and k must be from 2 to 32"),
        ("consensus-sample-alice", "needs a sample count: consensus-sample-alice-<k>"),
        ("consensus-sample-alice-05", "'05' is not a sample count"),
    ],
)
def test_an_unknown_model_is_a_404_in_openais_shape_listing_the_valid_ones(service, stub, model, says):
    with service.client() as c:
        r = c.post("/v1/chat/completions", json={"model": model, "messages": Q})
    assert r.status_code == 404
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and len(r.json()) == 1
    assert (error["param"], error["code"], error["type"]) == ("model", "model_not_found", "not_found_error")
    assert says in error["message"]
    assert all(i in error["message"] for i in arm_ids(service.services.panel))
    assert stub.hits() == {}


def test_bad_inputs_to_an_arm_name_the_field_and_call_nobody(client, stub):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="consensus-vote", messages=Q, extra_body={"rounds": 2})
    assert info.value.body["param"] == "rounds" and "has no debate rounds" in info.value.body["message"]
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="consensus-vote", messages=[{"role": "user", "content": "x" * 9000}])
    assert info.value.body["param"] == "messages" and "9000 characters" in info.value.body["message"]
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="consensus-single-bob", messages=Q, extra_body={"language": "zz-zz-zz"})
    assert info.value.body["param"] == "language"
    assert stub.hits() == {}


def test_an_arm_streams_in_openai_chunks_with_its_usage(client, stub):
    text = "Three times three is nine, counted twice over to be sure of it."
    steps = script(stub, {"bob": [{"text": ans("9", text)}, {"text": ans("9", text)}, {"text": ans("6")}]})
    stream = client.chat.completions.create(
        model="consensus-sample-bob-3", messages=Q, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == f"{text}\n\nFinal answer: 9"
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 1  # in pieces
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finals) == 1 and finals[0].model_extra["consensus"]["arm"] == "consensus-sample-bob-3"
    assert {c.model for c in chunks} == {"consensus-sample-bob-3"}
    assert chunks[-1].choices == [] and usage(chunks[-1]) == charged(stub, steps) and stub.hits() == {"bob": 3}


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_a_failed_arm_is_an_error_not_an_answer(client, stub, stream):
    script(stub, {n: [{"fault": "401"}] for n in ("alice", "bob", "carol")})
    texts: list[str] = []
    with pytest.raises(openai.APIError) as info:
        if stream:
            for c in client.chat.completions.create(model="consensus-vote", messages=Q, stream=True):
                texts += [c.choices[0].delta.content or ""] if c.choices else []
        else:
            client.chat.completions.create(model="consensus-vote", messages=Q)
    assert info.value.body["code"] == "arm_failed" and "fewer than 2 panelists answered" in info.value.message
    assert "".join(texts) == ""


# The parity test: one eval run with three arms and the endpoint asked the same, on the same scripted stub. Eval
# asks each question of the arms in the order given, one after the other; so does the loop below. Per question the
# stub plays, in this order: the vote (alice, bob, carol once each), alice alone, then bob's 3 samples.
ARMS = ["consensus-vote", "consensus-single-alice", "consensus-sample-bob-3"]
DATA = [("q1", "What is 2+2?", "4"), ("q2", "What is 3+5?", "8"), ("q3", "What is 2*3?", "6")]
PLAYED = {
    "alice": ["4", "4", "9", "9", "7", "7"],  # vote, alone; per question
    "bob": ["5", "5", "5", "4", "9", "8", "8", "9", "6", "6", "1", "2"],  # vote, then 3 samples
    "carol": ["4", "8", "6"],
}
# Read by hand: the vote 4 (right), 9 (wrong), 6 (right); alice 4, 9, 7; bob's samples 5, 8 and a 6/1/2 tie.
RIGHT = {"consensus-vote": [True, False, True], "consensus-single-alice": [True, False, False]}
RIGHT["consensus-sample-bob-3"] = [False, True, False]


def test_eval_arms_give_the_endpoints_answers_usage_and_accuracy(client, stub, service, tmp_path):
    steps = {m: [{"text": ans(x)} for x in xs] for m, xs in PLAYED.items()}
    script(stub, steps)
    answered = {}
    for qid, question, _ in DATA:
        for arm in ARMS:
            r = client.chat.completions.create(model=arm, messages=[{"role": "user", "content": question}])
            answered[qid, arm] = (r.choices[0].message.content, r.usage.total_tokens, r.model_extra["consensus"])
    assert answered["q3", "consensus-sample-bob-3"][2]["tie"] is True
    assert answered["q2", "consensus-vote"][0] == "I conclude 9.\n\nFinal answer: 9"

    stub.reset()
    script(stub, steps)
    panel = write_panel(tmp_path / "panel.toml", service.services.panel)
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps({"id": i, "question": q, "answer": a}) + "\n" for i, q, a in DATA))
    out = tmp_path / "run"
    arms = ["--arm", ",".join(ARMS[:2]), "--arm", ARMS[2]]
    p = cli_here("eval", str(data), "--panel-file", str(panel), "--out", str(out), "--concurrency", "1", *arms)
    assert p.returncode == 0, p.stderr
    assert stub.hits() == {"alice": 6, "bob": 12, "carol": 3}  # the arms' calls alone: no debate ran
    records = {r["id"]: r for r in map(json.loads, (out / "records.jsonl").read_text().splitlines())}
    for qid, _, _ in DATA:
        assert records[qid]["debated"] is False
        for arm in ARMS:
            got, endpoint = records[qid]["arms"][arm], answered[qid, arm]
            assert got["reply"] == endpoint[0] and got["tokens"] == endpoint[1]
            assert (got["llm_calls"], got["tie"], got["majority"]) == (
                endpoint[2]["calls"],
                endpoint[2]["tie"],
                endpoint[2]["majority"],
            )
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["arms"]) == ARMS and summary["n_questions"] == 3 and summary["n"] == 0
    for arm in ARMS:
        assert [records[q]["arms"][arm]["correct"] for q, _, _ in DATA] == RIGHT[arm]
        assert summary["arms"][arm]["correct"] == sum(RIGHT[arm]) and summary["arms"][arm]["n"] == 3
        tokens = [answered[q, arm][1] for q, _, _ in DATA]
        assert summary["arms"][arm]["tokens_per_question"] == pytest.approx(sum(tokens) / 3)
    assert summary["arms"]["consensus-sample-bob-3"]["ties"] == 1
    assert "arm consensus-vote" in p.stdout and "66.7%" in p.stdout


def test_an_arm_sees_the_callers_instruction_and_history_as_a_debate_does(client, stub):
    script(stub, {"alice": [{"text": ans("4")}]})
    messages = [
        {"role": "system", "content": "Answer in one word, please."},
        {"role": "user", "content": "What is 1+1?"},
        {"role": "assistant", "content": "The panel agrees: 2."},
        *Q,
    ]
    client.chat.completions.create(model="consensus-single-alice", messages=messages)
    sent = json.dumps(stub.requests("alice")[0]["messages"])
    assert "Answer in one word, please." in sent and "The panel agrees: 2." in sent and "What is 2+2?" in sent
    system = stub.requests("alice")[0]["messages"][0]["content"]
    assert "Answer in one word" not in system  # the caller's text is fenced data, never our system prompt


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "plain"])
def test_a_client_that_goes_away_stops_the_arms_calls_and_their_retries(make_service, stub, stream):
    service = make_service(stub_panel(stub, call_timeout_s=0.5))
    script(stub, {n: [{"fault": "hang"}] for n in SEATS})
    body = json.dumps({"model": "consensus-vote", "messages": Q, "stream": stream}).encode()
    host, port = service.url.removeprefix("http://").split(":")
    head = f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
        wait_for(lambda: stub.hits() == dict.fromkeys(SEATS, 1), "each seat's first call")
    # The client is gone. The slot comes back once the calls have stopped; then no call may time out and retry.
    wait_for(lambda: service.services.runner.reserved == 0, "the capacity slot")
    time.sleep(1.5)  # 3 call timeouts: a call left running would have timed out and been retried by now
    assert stub.hits() == dict.fromkeys(SEATS, 1)


def test_a_call_cut_off_by_the_deadline_counts_as_a_call_with_no_tokens(make_service, stub):
    service = make_service(stub_panel(stub, deadline_s=0.5))
    steps = script(stub, {"alice": [{"text": ans("4")}], "bob": [{"text": ans("4")}]})
    script(stub, {"carol": [{"text": ans("4"), "delay_s": 3}]})
    client = openai.OpenAI(base_url=f"{service.url}/v1", api_key="unused-on-loopback", max_retries=0, timeout=30)
    r = client.chat.completions.create(model="consensus-vote", messages=Q)
    extra = r.model_extra["consensus"]
    assert extra["status"] == "degraded" and extra["answers"]["carol"]["error"]["kind"] == "deadline"
    assert extra["calls"] == sum(stub.hits().values()) == 3  # carol's call was made: it counts
    assert usage(r) == charged(stub, steps)  # its tokens are unknown: alice's and bob's alone


@pytest.mark.parametrize("model", ["consensus", "consensus-vote", "consensus-single-bob", "consensus-sample-bob-3"])
def test_a_threaded_question_that_fits_no_seat_is_refused_naming_messages(make_service, stub, model):
    service = make_service(stub_panel(stub, seat={"context_window": 500, "max_tokens": 200}))
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "why " * 400}]
    with service.client() as c:
        r = c.post("/v1/chat/completions", json={"model": model, "messages": messages})
    assert r.status_code == 400, r.text  # the service's 422, as this endpoint gives every bad input: OpenAI's 400
    error = r.json()["error"]
    assert (error["param"], error["code"]) == ("messages", "context_too_long")
    assert "fits no seat's context window" in error["message"] and stub.hits() == {}
