"""A multiple-choice question is closed-form whatever its answers look like: each answer is read as the option it
names, so the vote, the early stop and the guard agree with what eval scores."""

from consensus.agreement import choice_positions, extract_answer, question_choices
from consensus.engine import DebateOptions, debate
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
        ("d", "A green plant"),  # names no option: kept as it is
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
