"""The debate protocol driven by scripted fakes: rounds, early stop, quorum, fallback, events."""

import json
from collections import defaultdict

import pytest

from consensus.engine import DebateOptions, debate, run_debate
from consensus.errors import QuestionError
from consensus.providers.fake import FunctionProvider, ScriptedProvider, Step
from tests.helpers import ans, make_panel


async def test_openings_run_in_parallel():
    fake = ScriptedProvider(script={n: [Step(final="4", delay_s=0.3)] for n in "abc"})
    r = await debate("2+2?", make_panel("abc", max_rounds=0), fake, DebateOptions(language="en"))
    # All three openings were in flight at once (a wall-time bound flaked on a busy machine: 1.1 s for 0.85).
    assert fake.max_in_flight == 3
    assert r.status == "completed" and len(r.rounds) == 1


async def test_early_stop_when_everyone_agrees():
    fake = ScriptedProvider(script={n: [Step(final="4")] for n in "abc"})
    r = await debate("2+2?", make_panel("abc", max_rounds=3), fake, DebateOptions(language="en"))
    assert [rd.index for rd in r.rounds] == [0]
    assert r.consensus.agreement == 1.0 and len(fake.calls) == 4  # 3 openings + synthesis


async def test_a_panelist_changes_its_answer_after_seeing_the_others():
    prompts = defaultdict(list)  # the user message of each call, per seat

    def reply(seat, messages):
        prompts[seat.name].append(messages[1].content)
        return ans("5") if seat.name == "a" and len(prompts["a"]) == 1 else ans("4")  # a says 5 until it sees 4s

    r = await debate("2+2?", make_panel("abc", max_rounds=2), FunctionProvider(reply), DebateOptions(language="en"))
    assert [rd.agreement.score for rd in r.rounds] == [pytest.approx(2 / 3), 1.0]
    assert r.rounds[0].answers[0].final_answer == "5" and r.answers["a"].final_answer == "4"
    debate_prompt = prompts["a"][1]
    assert "Panelist B" in debate_prompt.replace("PANELIST B", "Panelist B")
    assert r.consensus.dissent == [] and r.status == "completed"


async def test_rounds_zero_means_openings_and_synthesis_only():
    fake = ScriptedProvider(script={"a": [Step(final="1")], "b": [Step(final="2")], "c": [Step(final="3")]})
    r = await debate("q?", make_panel("abc", max_rounds=2), fake, DebateOptions(rounds=0, language="en"))
    assert len(r.rounds) == 1 and r.consensus is not None
    assert r.rounds[0].agreement.tie and r.consensus.majority is None  # 1-1-1: no majority to report
    assert {d.final_answer for d in r.consensus.dissent} == {
        "1",
        "2",
        "3",
    }  # "1" (the tie-break's) was reported nowhere


async def test_a_tie_reports_no_majority_even_when_nobody_synthesizes():
    fake = ScriptedProvider(script={n: [Step(final=f), Step(fault="500")] for n, f in zip("abc", "123", strict=True)})
    r = await debate("q?", make_panel("abc", max_rounds=0), fake, DebateOptions(language="en"))
    assert r.consensus.fallback and r.consensus.synthesizer is None and r.consensus.majority is None
    fake = ScriptedProvider(script={"a": [Step(final="1")], "b": [Step(final="2")], "c": [Step(final="1")]})
    r = await debate("q?", make_panel("abc", max_rounds=0), fake, DebateOptions(language="en"))
    assert r.consensus.majority == "1" and not r.rounds[0].agreement.tie


async def test_one_of_three_down_is_degraded_and_kept_with_its_error():
    fake = ScriptedProvider(script={"a": [Step(final="4")], "b": [Step(final="4")], "c": [Step(fault="500")]})
    r = await debate("2+2?", make_panel("abc"), fake, DebateOptions(language="en"))
    assert r.status == "degraded"
    assert r.answers["c"].error.kind == "server" and "c (server)" in r.reason
    assert r.consensus is not None


async def test_two_of_three_down_fails_with_a_reason_and_no_consensus():
    fake = ScriptedProvider(script={"a": [Step(final="4")], "b": [Step(fault="401")], "c": [Step(fault="hang")]})
    panel = make_panel("abc", call_timeout_s=0.2)  # c's call times out
    events = [e async for e in run_debate("2+2?", panel, fake, DebateOptions(language="en"))]
    r = events[-1].result
    assert events[-1].type == "debate.failed"
    assert r.status == "failed" and r.consensus is None
    assert "fewer than 2 panelists" in r.reason and "auth" in r.reason and "timeout" in r.reason


async def test_synthesizer_down_falls_back_to_another_panelist():
    fake = ScriptedProvider(
        script={"a": [Step(final="4"), Step(fault="429")], "b": [Step(final="4")], "c": [Step(final="4")]}
    )
    r = await debate("2+2?", make_panel("abc"), fake, DebateOptions(language="en"))
    c = r.consensus
    assert c.fallback and c.synthesizer == "b" and "a failed (rate_limit" in c.fallback_reason
    assert r.status == "degraded"


async def test_malformed_reply_is_kept_as_text():
    fake = ScriptedProvider(
        script={"a": [Step(text="Just four, no JSON.")], "b": [Step(final="4")], "c": [Step(final="4")]}
    )
    r = await debate("2+2?", make_panel("abc", max_rounds=0), fake, DebateOptions(language="en"))
    a = r.answers["a"]
    assert a.ok and a.answer == "Just four, no JSON." and a.structured is False


async def test_deadline_ends_the_debate_with_what_finished():
    fake = ScriptedProvider(script={"a": [Step(final="4")], "b": [Step(final="4")], "c": [Step(final="4", delay_s=5)]})
    r = await debate("2+2?", make_panel("abc", deadline_s=0.3), fake, DebateOptions(language="en"))
    assert r.status == "degraded" and "deadline" in r.reason
    assert r.rounds[0].answers[2].error.kind == "deadline"
    assert r.consensus.fallback and r.consensus.majority == "4"


async def test_events_come_in_order_with_deltas_only_when_watched():
    fake = ScriptedProvider(script={n: [Step(final="4")] for n in "abc"})
    events = [e async for e in run_debate("2+2?", make_panel("abc"), fake, DebateOptions(language="en", stream=True))]
    types = [e.type for e in events]
    assert types[0] == "debate.started" and types[-1] == "debate.completed"
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert {"answer.delta", "answer.completed", "round.completed", "consensus.delta", "consensus.completed"} <= set(
        types
    )
    streamed = "".join(e.delta for e in events if e.type == "answer.delta" and e.panelist == "b")
    assert json.loads(streamed)["final_answer"] == "4"
    quiet = [e async for e in run_debate("2+2?", make_panel("abc"), fake, DebateOptions(language="en"))]
    assert not any(e.type.endswith(".delta") for e in quiet)


async def test_pieces_that_stream_in_before_the_reader_runs_go_out_as_one_delta_in_order():
    """The reader (the service, the CLI) gets one delta for the pieces that came while it waited, not one per piece;
    a piece after it took that delta is a delta of its own, and nothing is merged across another event."""
    import asyncio

    from consensus.providers.base import Completion

    reply = ans("4")
    third = len(reply) // 3
    pieces = [reply[:third], reply[third : 2 * third], reply[2 * third :]]

    class Bursty:
        async def complete(self, seat, messages, *, timeout_s, schema=None, on_delta=None):
            if on_delta is not None and seat.name == "b":
                on_delta(pieces[0][:5])
                on_delta(pieces[0][5:])  # the same burst: merged into the first
                for _ in range(5):
                    await asyncio.sleep(0)  # the reader runs and takes it
                on_delta(pieces[1])
                on_delta(pieces[2])
            return Completion(text=reply)

        async def aclose(self):
            pass

    events = [
        e async for e in run_debate("2+2?", make_panel("abc"), Bursty(), DebateOptions(language="en", stream=True))
    ]
    deltas = [e.delta for e in events if e.type == "answer.delta" and e.panelist == "b"]
    assert deltas == [pieces[0], pieces[1] + pieces[2]]
    assert [e.seq for e in events] == list(range(1, len(events) + 1))  # merged pieces take no number of their own


async def test_result_is_json_serialisable_with_usage_totals():
    fake = ScriptedProvider(script={n: [Step(final="4")] for n in "abc"})
    r = await debate("2+2?", make_panel("abc"), fake, DebateOptions(language="en"))
    data = json.loads(r.model_dump_json())
    assert data["usage"]["llm_calls"] == 4 and data["usage"]["total_tokens"] > 0
    assert set(data) >= {
        "id",
        "question",
        "language",
        "status",
        "panel",
        "rounds",
        "answers",
        "consensus",
        "usage",
        "timing",
    }


async def test_language_is_detected_or_overridden():
    system_prompts = []

    def reply(seat, messages):
        system_prompts.append(messages[0].content)
        return ans("4")

    fake = FunctionProvider(reply)
    r = await debate("फ्रांस की राजधानी क्या है?", make_panel("abc"), fake)
    assert r.language == "hi" and "Hindi" in system_prompts[0]
    r2 = await debate("What is the capital of France?", make_panel("abc"), fake, DebateOptions(language="es"))
    assert r2.language == "es"


@pytest.mark.parametrize(
    ("question", "lang", "field", "says"),
    [
        ("   ", None, "question", "empty"),
        ("\u200b\u200b\t", None, "question", "empty"),  # zero-width spaces only: nothing a model could read
        ("x" * 9000, None, "question", "9000 characters"),
        ("nul \x00 inside?", None, "question", "NUL"),  # PostgreSQL cannot store it
        ("hi \ud800 there?", None, "question", "surrogate"),  # JSON "\ud800": no store or model takes it
        ("ok?", "zz-!!", "language", ""),
        ("ok?", "und", "language", "names no language"),  # CLDR named it "English (United States)"
    ],
)
async def test_bad_input_is_refused_naming_the_field(question, lang, field, says):
    fake = ScriptedProvider()
    with pytest.raises(QuestionError) as info:
        await debate(question, make_panel("abc"), fake, DebateOptions(language=lang))
    assert info.value.field == field and says in info.value.message and fake.calls == []


async def test_the_debate_stops_when_fewer_than_two_answer_a_round():
    """Alice alone kept debating rounds 2 and 3 against bob's and carol's stale openings."""
    fake = ScriptedProvider(
        script={
            "a": [Step(final="3"), Step(final="3"), Step(text="The panel is split: 3, 4 and 5.")],
            "b": [Step(final="4"), Step(fault="401")],
            "c": [Step(final="5"), Step(fault="401")],
        }
    )
    r = await debate("2+2?", make_panel("abc", max_rounds=3), fake, DebateOptions(language="en"))
    assert len(r.rounds) == 2 and r.status == "degraded" and "b (auth)" in (r.reason or "")
    assert [name for name, _msgs in fake.calls].count("a") == 3  # opening, round 1, synthesis: no round 2 or 3
