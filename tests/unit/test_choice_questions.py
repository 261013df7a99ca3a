"""A multiple-choice question is closed-form whatever its answers look like: each answer is read as the option it
names, so the vote, the early stop and the guard agree with what eval scores."""

from consensus.agreement import choice_positions, extract_answer, question_choices
from consensus.engine import DebateOptions, debate
from consensus.eval.datasets import EvalItem
from consensus.eval.report import summarize
from consensus.eval.scoring import record_from_result
from consensus.providers.fake import ScriptedProvider, Step
from tests.helpers import make_panel

QUESTION = (
    "Which technology was developed most recently?\n\nA. cellular telephone\nB. television\nC. refrigerator\n"
    "D. airplane\n\nAnswer with the letter of the correct choice (A, B, C or D)."
)


def test_the_options_a_question_lists_are_found():
    assert question_choices(QUESTION) == ["cellular telephone", "television", "refrigerator", "airplane"]
    assert question_choices("(A) yes\n(B) no") == ["yes", "no"]
    assert question_choices("What is 2 + 2?") is None
    assert question_choices("Plan A. Go north.\nThen rest.") is None  # one option is no list
    assert question_choices("A. x\nC. y") is None  # not consecutive from A


def test_answers_are_read_as_the_options_they_name():
    finals = [
        ("a", "B"),
        ("b", "The answer is B. television"),
        ("c", "television"),
        ("d", "A green plant"),
        ("e", None),
    ]
    assert choice_positions(finals, question_choices(QUESTION)) == [
        ("a", "B"),
        ("b", "B"),
        ("c", "B"),
        ("d", "names no option (answer 4)"),  # a position of its own: two such answers are no majority
        ("e", None),
    ]
    assert choice_positions(finals, None) == finals


async def test_worded_answers_to_a_choice_question_agree_and_an_unreadable_synthesis_is_rejected():
    """Before, explanations made the round 'open': an analyst call, and any synthesis passed the guard unread."""
    worded = ["B", "The answer is B, television.", "It is television."]
    script = {
        n: [Step(final=f), *[Step(text="A green plant absorbs light. These are examples of energy.")] * 3]
        for n, f in zip("abc", worded, strict=True)
    }
    fake = ScriptedProvider(script=script)
    r = await debate(QUESTION, make_panel("abc", max_rounds=1), fake, DebateOptions(language="en"))
    [opening] = r.rounds  # unanimous on B: early stop, no debate round
    assert opening.agreement and opening.agreement.score == 1 and opening.agreement.method == "exact"
    assert opening.analysis is None  # no analyst call for a choice question
    c = r.consensus
    assert c is not None and c.source == "majority_answer" and c.majority_because == "rejected"
    assert [k.name for k in c.rejected[0].failed] == ["majority_answer"]
    assert extract_answer(c.answer, "choice", question_choices(QUESTION)) == "B"  # what eval scores


async def test_answers_that_name_no_option_are_no_majority_and_an_unreadable_listing_is_rejected():
    """Found on ARC-Easy: two panelists listed every option, one said B; the synthesizer's listing passed the guard
    as text and eval could not read it. Now the two listings are two positions of one: a tie."""
    listing = "A. Earth is a sphere. B. Earth supports life. C. Earth has air."
    finals = [listing, "B", listing.replace("sphere", "ball")]
    script = {n: [Step(final=f), *[Step(text=listing)] * 3] for n, f in zip("abc", finals, strict=True)}
    r = await debate(QUESTION, make_panel("abc", max_rounds=0), ScriptedProvider(script=script), DebateOptions())
    agreement = r.rounds[0].agreement
    assert agreement and agreement.tie and len(agreement.clusters) == 3
    c = r.consensus
    assert c is not None and c.source == "majority_answer" and c.majority_because == "rejected"
    assert c.answer.startswith("The panel is split")
    # The tie-break line passes over the listings, as the votes leave unreadable answers out.
    assert c.answer.endswith("\n\nTie-break by seat order, not a majority: B")


async def test_a_split_consensus_is_scored_on_its_tie_break_as_the_round0_vote_is():
    """1-1-1 on ARC-Easy: the vote's seat-order tie-break got lucky where a split consensus was counted wrong. Now
    the split consensus names that tie-break, labelled as not a majority, and is scored on it; the summary still
    counts it as split and gives the accuracy with splits counted wrong."""
    script = {n: [Step(final=f), *[Step(text="Plants need light.")] * 3] for n, f in zip("abc", "ACB", strict=True)}
    r = await debate(QUESTION, make_panel("abc", max_rounds=0), ScriptedProvider(script=script), DebateOptions())
    c = r.consensus
    assert c is not None and c.source == "majority_answer" and c.majority is None  # a tie reports no majority
    item = EvalItem(id="q1", question=QUESTION, answer="A", type="choice", choices=question_choices(QUESTION))
    record = record_from_result(item, r, latency_ms=5)
    assert record.consensus_split and record.consensus.extracted == "A" and record.consensus.correct
    assert record.round0_vote.extracted == "A" and record.round0_vote.correct
    wrong = item.model_copy(update={"answer": "C"})
    assert not record_from_result(wrong, r, latency_ms=5).consensus.correct
    summary = summarize([record])
    assert summary["accuracy"]["consensus"]["correct"] == summary["accuracy"]["round0_vote"]["correct"] == 1
    assert summary["split"]["tie_break_right"] == 1
    assert summary["split"]["consensus_splits_counted_wrong"]["correct"] == 0
    assert summary["unreadable"]["consensus"] == 0


async def test_the_engine_reads_a_plain_text_answer_from_the_same_text_research_mode_scores():
    """Found on ARC-Easy: a plain-text answer's guessed final answer (its first 120 characters) named D, the whole
    answer read as A for eval; the engine's 'majority' D then became the consensus while the vote said A."""
    question = (
        "Which of the following is produced during the process of cellular respiration?\n\nA. carbon dioxide\n"
        "B. sodium chloride\nC. oxygen\nD. sugar\n\nAnswer with the letter of the correct choice (A, B, C or D)."
    )
    plain = (
        "D. sugar }\n\nC. I'm afraid to answer. I'm not an expert. I've never used the word 'D.'\n\nSo, in a list of "
        "options, the most appropriate answer is: \nA. carbon dioxide. B. sodium chloride. C. […]"
    )
    script = {
        "a": [Step(final="A."), *[Step(text="Plants.")] * 3],
        "b": [Step(text=plain)],
        "c": [Step(final="D. sugar")],
    }
    r = await debate(question, make_panel("abc", max_rounds=0), ScriptedProvider(script=script), DebateOptions())
    [opening] = r.rounds
    assert not opening.answers[1].structured and "D." in (opening.answers[1].final_answer or "")
    item = EvalItem(id="q", question=question, answer="A", type="choice", choices=question_choices(question))
    record = record_from_result(item, r, latency_ms=5)
    assert [a.extracted for a in record.rounds[0].answers] == ["A", "A", "D"]
    assert opening.agreement and opening.agreement.majority == "A" and not opening.agreement.tie
    assert record.round0_vote.extracted == record.consensus.extracted == "A"
