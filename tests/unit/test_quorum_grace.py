"""Straggler tolerance: once a quorum answered, a round waits for the rest only as long as the grace allows."""

from __future__ import annotations

from consensus.engine import DebateOptions, QuorumGrace, debate
from consensus.providers.fake import ScriptedProvider, Step
from tests.helpers import make_panel

GRACE = QuorumGrace(grace_s=0.05, grace_factor=1.0)


async def test_a_late_answer_is_kept_marked_and_enters_the_next_round():
    """c takes 0.3 s in round 0: the round moves on without it, its answer lands during round 1's grace window
    and joins round 0 as late; round 1's prompts were built before it landed, so c sits round 1 out."""
    fake = ScriptedProvider(
        script={
            "a": [Step(final="4"), Step(final="5", delay_s=0.5), Step(text="The panel is split: 4 and 5.")],
            "b": [Step(final="5"), Step(final="5", delay_s=0.5)],
            "c": [Step(final="5", delay_s=0.3), Step(final="5")],
        }
    )
    panel = make_panel("abc", max_rounds=1)
    r = await debate("2+2?", panel, fake, DebateOptions(language="en", quorum_grace=GRACE))
    first = r.rounds[0]
    late = [a for a in first.answers if a.late]
    assert [a.panelist for a in late] == ["c"] and late[0].final_answer == "5" and late[0].ok
    assert [a.panelist for a in first.answers if not a.late] == ["a", "b"]
    # round 1 was not asked of c (its round-0 call was still running when round 1 began)
    assert [a.panelist for a in r.rounds[1].answers] == ["a", "b"]
    assert r.answers["c"].late and r.status == "completed"


async def test_a_late_answer_that_lands_before_the_next_round_is_in_its_peer_view():
    fake = ScriptedProvider(
        script={
            "a": [Step(final="4"), Step(final="4", delay_s=0.4), Step(text="The answer is 4.")],
            "b": [Step(final="5"), Step(final="4", delay_s=0.4)],
            "c": [Step(final="4", delay_s=0.15), Step(final="4")],
        }
    )
    panel = make_panel("abc", max_rounds=1, agreement_threshold=1.0)
    # a tie at 1-1 after the quorum: the round moves on after 0.05 s; the analysis is skipped (closed answers)
    r = await debate("2+2?", panel, fake, DebateOptions(language="en", quorum_grace=GRACE))
    assert [a.panelist for a in r.rounds[0].answers if a.late] == ["c"]


async def test_a_seat_late_two_rounds_running_is_skipped_for_the_rest():
    fake = ScriptedProvider(
        script={
            "a": [Step(final="4"), Step(final="5"), Step(final="5"), Step(text="The panel is split: 4 and 5.")],
            "b": [Step(final="5"), Step(final="4"), Step(final="4")],
            "c": [Step(final="6", delay_s=0.2)],
        }
    )
    panel = make_panel("abc", max_rounds=3, agreement_threshold=1.0)
    r = await debate(
        "2+2?", panel, fake, DebateOptions(language="en", quorum_grace=QuorumGrace(grace_s=0.01, grace_factor=0.0))
    )
    assert r.skipped == ["c"]
    asked = [name for name, _ in fake.calls]
    assert asked.count("c") <= 2  # round 0, and at most one round after it; never again once skipped


async def test_without_grace_every_round_waits_for_every_seat():
    """Research mode's default: no quorum grace, the slow seat is waited for and nothing is late."""
    fake = ScriptedProvider(
        script={"a": [Step(final="4")], "b": [Step(final="4")], "c": [Step(final="4", delay_s=0.2)]}
    )
    r = await debate("2+2?", make_panel("abc", max_rounds=0), fake, DebateOptions(language="en"))
    assert not any(a.late for a in r.rounds[0].answers) and len(r.rounds[0].answers) == 3


async def test_seats_on_the_embedded_model_are_never_stragglers():
    """The embedded model answers one call at a time: the third local seat waits for the other two, and quorum
    grace must not drop it as late (the default local panel lost its third panelist every round)."""
    from consensus.types import DebateSettings, Panel, Seat

    seats = [Seat(name=n, model="local/smollm2") for n in "abc"]
    panel = Panel(panelists=seats, synthesizer=seats[0], debate=DebateSettings(max_rounds=0))
    fake = ScriptedProvider(
        script={"a": [Step(final="4"), Step(text="4.")], "b": [Step(final="4")], "c": [Step(final="4", delay_s=0.3)]}
    )
    r = await debate("2+2?", panel, fake, DebateOptions(language="en", quorum_grace=GRACE))
    assert sorted(a.panelist for a in r.rounds[0].answers) == ["a", "b", "c"]
    assert not any(a.late for a in r.rounds[0].answers)
