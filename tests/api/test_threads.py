"""Follow-up questions: threads in the store and the API, what each seat is shown, budgets and access."""

from __future__ import annotations

import pytest

from tests.api.conftest import ans, stub_panel, wait_status
from tests.api.test_access import make_key
from tests.helpers import SEATS

QUESTIONS = ["What is 2 + 2?", "And why is that so?", "What about 3 + 3?"]
OWN = "YOUR OWN EARLIER FINAL ANSWER TO QUESTION"


def script_turn(stub, turn: int) -> None:
    """Every seat agrees on turn's answer in words of its own; alice (the synthesizer) then writes the consensus."""
    for name in SEATS:
        steps = [{"text": ans(str(turn), f"{name} reasoned turn {turn} out")}]
        if name == "alice":
            steps.append({"text": f"Consensus of turn {turn}: the panel agrees."})
        stub.script(name, steps)


def user_prompt(body: dict) -> str:
    return next(m["content"] for m in body["messages"] if m["role"] == "user")


def ask(client, question, follow_up_of=None, headers=None):
    body = {"question": question, **({"follow_up_of": follow_up_of} if follow_up_of else {})}
    return client.post("/v1/debates?wait=true", json=body, headers=headers or {})


def test_a_three_turn_thread_shows_each_seat_its_own_earlier_answers_marked_as_its_own(service, stub):
    """The panel used to see each follow-up as a new question: no earlier question, consensus or own answer."""
    ids: list[str] = []
    with service.client() as c:
        for turn, q in enumerate(QUESTIONS, 1):
            stub.reset()
            script_turn(stub, turn)
            r = ask(c, q, ids[-1] if ids else None)
            assert r.status_code == 200, r.text
            assert r.json()["status"] == "completed"
            ids.append(r.json()["id"])
        # The third turn: each seat was shown both earlier turns, and only its own answers as its own.
        for name in SEATS:
            prompts = [user_prompt(b) for b in stub.requests(name) if "final_answer" in str(b.get("response_format"))]
            opening = prompts[0] if prompts else user_prompt(stub.requests(name)[0])
            assert "What is 2 + 2?" in opening and "And why is that so?" in opening
            assert "Consensus of turn 1" in opening and "Consensus of turn 2" in opening
            for turn in (1, 2):
                own_at = opening.index(f"{OWN} {turn}")
                assert f"{name} reasoned turn {turn} out" in opening[own_at : own_at + 300]
            for other in set(SEATS) - {name}:
                assert f"{other} reasoned" not in opening
            assert opening.index("EARLIER QUESTION 1") < opening.index("What about 3 + 3?")
        # The synthesizer sees the same turns, with no answer marked as its own.
        synthesis = user_prompt(stub.requests("alice")[-1])
        assert "Consensus of turn 2" in synthesis and OWN not in synthesis
        thread = c.get(f"/v1/threads/{ids[1]}").json()
        assert thread["id"] == ids[0]
        assert [d["id"] for d in thread["data"]] == ids
        assert [d["position"] for d in thread["data"]] == [0, 1, 2]
        assert [d["follow_up_of"] for d in thread["data"]] == [None, ids[0], ids[1]]
        assert thread["data"][2]["links"]["permalink"] == f"/d/{ids[2]}"
        assert thread["data"][2]["result"]["question"] == "What about 3 + 3?"
        assert c.get(f"/v1/debates/{ids[2]}").json()["consensus"]["answer"].startswith("Consensus of turn 3")


def test_a_small_context_window_drops_the_oldest_turns_first_and_says_so(make_service, stub):
    srv = make_service(stub_panel(stub, seat={"context_window": 1100, "max_tokens": 200}))
    ids: list[str] = []
    with srv.client() as c:
        for turn in (1, 2, 3):
            stub.reset()
            script_turn(stub, turn)
            long_q = f"Question {turn}: " + "why exactly " * 40 + "?"
            r = ask(c, long_q, ids[-1] if ids else None)
            assert r.status_code == 200, r.text
            ids.append(r.json()["id"])
    opening = user_prompt(stub.requests("bob")[0])
    assert "Question 2:" in opening and "Question 1:" not in opening  # the newest earlier turn kept, the oldest not
    assert "The 1 oldest of the 2 earlier turns were left out" in opening
    assert sum(len(m["content"]) for m in stub.requests("bob")[0]["messages"]) <= (1100 - 200) * 3


def test_a_question_that_cannot_fit_any_seat_with_its_thread_is_a_422_and_nothing_is_stored(make_service, stub):
    srv = make_service(stub_panel(stub, seat={"context_window": 500, "max_tokens": 200}))
    script_turn(stub, 1)
    with srv.client() as c:
        first = ask(c, "2+2?").json()["id"]
        before = len(c.get("/v1/debates").json()["data"])
        r = ask(c, "why " * 400, first)
        assert r.status_code == 422 and r.json()["error"]["param"] == "question"
        assert r.json()["error"]["code"] == "context_too_long"
        assert len(c.get("/v1/debates").json()["data"]) == before


def test_a_follow_up_of_an_unknown_running_or_failed_debate_or_past_the_depth_limit_is_refused(make_service, stub):
    srv = make_service(thread_max_depth=2)
    with srv.client() as c:
        r = ask(c, "why?", "0" * 32)
        assert r.status_code == 404 and r.json()["error"]["param"] == "follow_up_of"
        for n in SEATS:
            stub.script(n, [{"fault": "500"}])
        failed = ask(c, "2+2?").json()
        assert failed["status"] == "failed"
        r = ask(c, "why?", failed["id"])
        assert r.status_code == 422 and r.json()["error"]["code"] == "not_answered"
        for n in SEATS:
            stub.script(n, [{"text": ans("4"), "delay_s": 2}])
        running = c.post("/v1/debates", json={"question": "slow?"}).json()["id"]
        r = ask(c, "why?", running)
        assert r.status_code == 409 and r.json()["error"]["param"] == "follow_up_of"
        wait_status(c, running)
        stub.reset()
        script_turn(stub, 1)
        second = ask(c, "and then?", running).json()["id"]
        r = ask(c, "and after that?", second)
        assert r.status_code == 422 and r.json()["error"]["code"] == "thread_too_long"
        assert len(c.get(f"/v1/threads/{running}").json()["data"]) == 2


def test_a_follow_up_needs_the_threads_key_and_for_a_publishable_key_its_cancel_token(make_service, stub):
    """Another key could otherwise read a thread's context back out of the panel's answers."""
    srv = make_service()
    script_turn(stub, 1)
    secret, other = make_key(srv, "backend"), make_key(srv, "other")
    public = make_key(srv, "widget", ["https://site.example"])
    with srv.client() as c:
        mine = ask(c, "2+2?", headers={"Authorization": f"Bearer {secret}"}).json()["id"]
        r = ask(c, "why?", mine, {"Authorization": f"Bearer {other}"})
        assert r.status_code == 403 and r.json()["error"]["param"] == "follow_up_of"
        assert "2+2" not in r.text
        assert ask(c, "why?", mine, {"Authorization": f"Bearer {secret}"}).status_code == 200
        site = {"Authorization": f"Bearer {public}", "Origin": "https://site.example"}
        started = ask(c, "3+3?", headers=site)
        token = started.headers["X-Cancel-Token"]
        r = ask(c, "why?", started.json()["id"], site)
        assert r.status_code == 403 and r.json()["error"]["param"] == "X-Cancel-Token"
        r = ask(c, "why?", started.json()["id"], {**site, "X-Cancel-Token": "wrong"})
        assert r.status_code == 403
        ok = ask(c, "why?", started.json()["id"], {**site, "X-Cancel-Token": token})
        assert ok.status_code == 200, ok.text
        assert "X-Cancel-Token" not in ok.headers  # the thread keeps its one token
        r = ask(c, "and then?", ok.json()["id"], {**site, "X-Cancel-Token": token})
        assert r.status_code == 200


@pytest.mark.parametrize("question,expected", [("Et pourquoi donc est-ce ainsi ?", "fr"), ("ok?", "en")])
def test_a_follow_up_keeps_the_threads_language_unless_clearly_in_another(service, stub, question, expected):
    script_turn(stub, 1)
    with service.client() as c:
        first = ask(c, "What is two plus two, exactly?").json()
        assert first["language"] == "en"
        r = ask(c, question, first["id"]).json()
        assert r["language"] == expected


def test_a_follow_up_cut_short_by_a_crash_resumes_with_its_thread_after_a_restart(stub, service_process, tmp_path):
    """The thread is stored with the follow-up: the resumed round's prompts still hold the earlier turn."""
    from tests.api.conftest import script_hang_in_round_1, wait_round_1_in_flight
    from tests.api.test_restart import sqlite_setup

    _, url, panel = sqlite_setup(tmp_path, stub)
    first = service_process("first", url, panel, consensus_lease_s=600).start().wait_ready()
    script_turn(stub, 1)
    with first.client() as c:
        earlier = ask(c, "What is 2 + 2?").json()
        assert earlier["status"] == "completed", earlier
        stub.reset()
        script_hang_in_round_1(stub)
        r = c.post("/v1/debates", json={"question": "And why?", "rounds": 1, "follow_up_of": earlier["id"]})
        follow_up = r.json()["id"]
        wait_round_1_in_flight(c, stub, follow_up)
    first.kill()
    second = service_process("second", url, panel, consensus_lease_s=600).start().wait_ready()
    with second.client() as c:
        final = wait_status(c, follow_up, timeout=30)
        thread = c.get(f"/v1/threads/{follow_up}").json()
    assert final["status"] in ("completed", "degraded")
    assert [d["id"] for d in thread["data"]] == [earlier["id"], follow_up]
    resumed = user_prompt(stub.requests("bob")[-1])  # bob's round-1 call made by the second process
    assert "Debate round 1" in resumed
    assert "What is 2 + 2?" in resumed and "bob reasoned turn 1 out" in resumed[resumed.index(f"{OWN} 1") :]
