"""The comparison arms on the provider seam: ids, parsing, votes, ties, samples, usage (consensus/arms.py)."""

import re
from pathlib import Path

import pytest

from consensus.arms import (
    MAX_SAMPLES,
    SAMPLE_TEMPERATURE,
    Arm,
    arm_ids,
    debate_calls,
    parse_arm,
    parse_arms,
    reply_text,
    run_arm,
    sample_counts,
)
from consensus.config import default_local_panel
from consensus.errors import QuestionError, UnknownArmError
from consensus.providers.base import Completion
from consensus.providers.fake import FunctionProvider, ScriptedProvider, Step, answer_json
from consensus.types import ModelAnswer, Usage
from tests.helpers import make_panel

PANEL = make_panel("abc", max_rounds=1)


def test_the_advertised_ids_name_every_arm_and_k_up_to_a_debates_calls():
    assert debate_calls(PANEL) == 7  # 3 panelists x (1 round + the openings) + the synthesis
    assert sample_counts(PANEL) == [3, 5, 7]
    assert sample_counts(make_panel("abc", max_rounds=2)) == [3, 5, 10]
    assert sample_counts(make_panel("abcdefg", max_rounds=10)) == [3, 5, MAX_SAMPLES]  # 78 calls: capped
    ids = arm_ids(PANEL)
    assert ids[:5] == ["consensus", "consensus-vote", "consensus-single-a", "consensus-single-b", "consensus-single-c"]
    assert "consensus-sample-c-7" in ids and ids[-1].startswith("consensus-sample-<name>-<k> for k from 2 to 32")


def test_model_ids_and_short_forms_parse_to_the_same_arm():
    assert parse_arm("consensus", PANEL) == Arm("consensus")
    assert parse_arm("consensus-vote", PANEL) == parse_arm("vote", PANEL, short=True) == Arm("vote")
    assert parse_arm("single-b", PANEL, short=True) == Arm("single", "b")
    with pytest.raises(UnknownArmError):  # the endpoint takes the ids as listed, prefix and all
        parse_arm("vote", PANEL)
    assert parse_arm("consensus-sample-a-4", PANEL) == Arm("sample", "a", 4)  # not advertised, still valid
    hyphened = make_panel(["gpt-4o", "b"])
    assert parse_arm("consensus-sample-gpt-4o-3", hyphened) == Arm("sample", "gpt-4o", 3)
    assert parse_arm("consensus-single-gpt-4o", hyphened).id == "consensus-single-gpt-4o"
    assert parse_arms(["vote,single-a", " consensus ", "consensus-vote"], PANEL) == [
        Arm("vote"),
        Arm("single", "a"),
        Arm("consensus"),
    ]


@pytest.mark.parametrize(
    ("model", "reason"),
    [
        ("gpt-4", "does not exist"),
        ("consensus-single-zed", "no panelist 'zed'"),
        ("consensus-sample-zed-3", "no panelist 'zed'"),
        ("consensus-sample-a-1", "k = 1, and k must be from 2 to 32"),
        ("consensus-sample-a-33", "k = 33, and k must be from 2 to 32"),
        ("consensus-sample-a-x", "'x' is not a sample count"),
        ("consensus-sample-a", "needs a sample count: consensus-sample-a-<k>"),
        ("consensus-sample--3", "names no panelist: consensus-sample-<name>-<k>"),
        ("consensus-sample-zed", "no panelist 'zed'"),
        ("consensus-sample-a-05", "'05' is not a sample count"),  # ids are exactly as listed
        ("consensus-sample-a-\u0663", "'\u0663' is not a sample count"),  # an Arabic-Indic 3: int() would take it
        ("consensus-sample-a-\uff13", "'\uff13' is not a sample count"),  # a full-width 3
    ],
)
def test_a_bad_model_id_says_why_and_lists_the_valid_ones(model, reason):
    with pytest.raises(UnknownArmError) as info:
        parse_arm(model, PANEL)
    assert reason in info.value.reason and "consensus-vote" in str(info.value) and info.value.model == model
    assert info.value.valid == arm_ids(PANEL)


def test_a_reply_ends_with_the_final_answer_when_the_text_does_not_state_it_alone():
    a = ModelAnswer(panelist="a", model="m", round=0, answer="Two and two make four.", final_answer="4")
    assert reply_text(a) == "Two and two make four.\n\nFinal answer: 4"
    assert reply_text(a.model_copy(update={"answer": "4"})) == "4"


async def test_the_vote_asks_each_panelist_once_and_replies_with_the_first_majority_answer():
    fake = ScriptedProvider(
        script={"a": [Step(final="5")], "b": [Step(final="4", text="It is 4.")], "c": [Step(final="4")]}
    )
    r = await run_arm(Arm("vote"), "2+2?", PANEL, fake, language="en")
    assert [c.name for c in fake.calls] == ["a", "b", "c"]
    assert r.reply == "It is 4.\n\nFinal answer: 4" and r.chosen == "b" and r.majority == "4" and not r.tie
    assert r.vote.score == pytest.approx(2 / 3) and r.status == "completed" and r.arm == "consensus-vote"
    spent = [a.usage for a in r.answers]
    assert r.usage.llm_calls == 3 and r.usage.total_tokens == sum(u.total_tokens for u in spent) > 0


async def test_a_tied_vote_says_there_is_no_majority_and_names_every_position():
    fake = ScriptedProvider(script={"a": [Step(final="4")], "b": [Step(final="5")], "c": [Step(final="6")]})
    r = await run_arm(Arm("vote"), "2+2?", PANEL, fake, language="en")
    assert r.tie and r.majority is None and r.chosen is None
    assert r.reply == 'No majority: the panel is split, 1 vote each for "4" (a); "5" (b); "6" (c).'


async def test_a_tie_among_fewer_answers_names_the_seats_that_gave_none():
    fake = ScriptedProvider(script={"a": [Step(final="4")], "b": [Step(final="5")], "c": [Step(fault="500")]})
    r = await run_arm(Arm("vote"), "2+2?", PANEL, fake, language="en")
    assert r.tie and r.status == "degraded"
    assert r.reply == 'No majority: the panel is split, 1 vote each for "4" (a); "5" (b). No answer from c (server).'
    fake = ScriptedProvider(script={"a": [Step(final="9"), Step(final="3"), Step(fault="401")]})
    r = await run_arm(Arm("sample", "a", 3), "3x3?", PANEL, fake, language="en")
    assert r.reply == 'No majority: a\'s 2 samples are split, 1 vote each for "3"; "9". No answer from a#3 (auth).'


async def test_a_vote_needs_two_answers_and_says_who_failed():
    fake = ScriptedProvider(script={"a": [Step(final="4")], "b": [Step(fault="401")], "c": [Step(fault="500")]})
    r = await run_arm(Arm("vote"), "2+2?", PANEL, fake, language="en")
    assert r.status == "failed" and r.reply is None and "fewer than 2 panelists answered" in r.reason
    assert "b: auth" in r.reason and "c: server" in r.reason
    fake = ScriptedProvider(script={"a": [Step(final="4")], "b": [Step(final="4")], "c": [Step(fault="500")]})
    r = await run_arm(Arm("vote"), "2+2?", PANEL, fake, language="en")
    assert r.status == "degraded" and r.reason == "failed: c (server)" and r.majority == "4"


async def test_samples_are_drawn_above_temperature_zero_with_distinct_seeds():
    seen = []

    def reply(seat, messages):
        seen.append((seat.name, seat.temperature, seat.seed))
        return Step(final="4" if len(seen) != 2 else "5")

    seeded = make_panel("ab", seat={"temperature": 0.0, "seed": 7})
    r = await run_arm(Arm("sample", "b", 4), "2+2?", seeded, FunctionProvider(reply), language="en")
    assert sorted(seen) == [("b", SAMPLE_TEMPERATURE, s) for s in (7, 8, 9, 10)]
    assert r.majority == "4" and r.vote.score == 0.75 and r.usage.llm_calls == 4
    assert sorted(a.panelist for a in r.answers) == ["b#1", "b#2", "b#3", "b#4"]
    warm = make_panel("ab", seat={"temperature": 1.1})
    seen.clear()
    await run_arm(Arm("sample", "a", 2), "2+2?", warm, FunctionProvider(reply), language="en")
    assert {t for _, t, _ in seen} == {1.1} and {s for _, _, s in seen} == {None}  # the seat's own: kept


async def test_a_tie_among_samples_lists_the_positions_in_a_fixed_order():
    fake = ScriptedProvider(script={"a": [Step(final="9"), Step(final="3")]})
    r = await run_arm(Arm("sample", "a", 2), "3x3?", PANEL, fake, language="en")
    assert r.tie and r.reply == 'No majority: a\'s 2 samples are split, 1 vote each for "3"; "9".'


async def test_a_single_panelist_is_one_call_and_its_retries_count():
    calls = []

    def retried(seat, messages):  # the gateway's report of a call that succeeded on its second attempt
        calls.append(seat.name)
        return Completion(
            text=answer_json("4"), usage=Usage(prompt_tokens=10, completion_tokens=5, total_tokens=15), attempts=2
        )

    r = await run_arm(Arm("single", "c"), "2+2?", PANEL, FunctionProvider(retried), language="en")
    assert calls == ["c"] and r.vote is None and r.reply == "I conclude 4.\n\nFinal answer: 4"
    assert r.usage.llm_calls == 2 and r.usage.total_tokens == 15  # the retry counts as a call
    failed = await run_arm(Arm("single", "c"), "2+2?", PANEL, ScriptedProvider(script={"c": [Step(fault="401")]}))
    assert failed.status == "failed" and failed.reason.startswith("c did not answer (c: auth")


async def test_a_bad_question_is_refused_before_any_call_and_the_debate_is_not_an_arm():
    fake = ScriptedProvider()
    with pytest.raises(QuestionError) as info:
        await run_arm(Arm("vote"), "   ", PANEL, fake)
    assert info.value.field == "question" and fake.calls == []
    with pytest.raises(ValueError, match="engine.run_debate"):
        await run_arm(Arm("consensus"), "2+2?", PANEL, fake)


async def test_a_call_past_the_deadline_is_an_answer_with_kind_deadline():
    slow = make_panel("abc", deadline_s=0.3)
    fake = ScriptedProvider(script={"a": [Step(final="4")], "b": [Step(final="4")], "c": [Step(final="4", delay_s=5)]})
    r = await run_arm(Arm("vote"), "2+2?", slow, fake, language="en")
    assert r.status == "degraded" and r.answers[2].error.kind == "deadline" and r.majority == "4"


@pytest.mark.parametrize("doc", ["docs/arms.md", "docs/research.md", "README.md"])
def test_the_documented_arms_exist_on_the_default_panel(doc):
    """A documented `consensus eval --arm` command runs as written, with no --panel-file."""
    text = (Path(__file__).parents[2] / doc).read_text(encoding="utf-8")
    given = re.findall(r"--arm\s+([^\s`\\]+)", text)
    assert given, f"{doc} shows no --arm"
    parse_arms(given, default_local_panel())  # raises UnknownArmError naming the arm
