"""Agreement scoring: numbers, choices and free text compare as documented."""

import pytest

from consensus.agreement import matches_gold, normalize_answer, parse_choice, parse_number, score_agreement


@pytest.mark.parametrize(
    ("text", "value"),
    [("42", 42), ("$1,234", 1234), ("42.0", 42), ("3/4", 0.75), ("50%", 50), ("Answer: 18", 18), ("−7", -7)],
)
def test_numbers_normalise(text, value):
    assert float(parse_number(text)) == value


@pytest.mark.parametrize("text", ["Paris", "12 apples and 3 pears", "1,2,3", ""])
def test_non_numbers_are_not_numbers(text):
    assert parse_number(text) is None


@pytest.mark.parametrize(("text", "letter"), [("B", "B"), ("(c)", "C"), ("D)", "D"), ("The answer is A.", "A"), ("Option B", "B")])
def test_choices_normalise(text, letter):
    assert parse_choice(text) == letter


def test_a_sentence_is_not_a_choice():
    assert parse_choice("I think it is Paris") is None
    assert normalize_answer("a cat").kind == "text"


def test_all_equal_numbers_agree_fully():
    a = score_agreement([("x", "42"), ("y", "$42.00"), ("z", "42")])
    assert a.score == 1.0 and a.kind == "number" and a.majority_panelists == ["x", "y", "z"]


def test_two_of_three_is_two_thirds_with_the_minority_as_a_cluster():
    a = score_agreement([("x", "7"), ("y", "5"), ("z", "7")])
    assert a.score == pytest.approx(2 / 3)
    assert a.majority == "7" and a.majority_panelists == ["x", "z"]
    assert [c.panelists for c in a.clusters] == [["x", "z"], ["y"]]


def test_free_text_uses_containment_and_similarity():
    a = score_agreement([("x", "Paris"), ("y", "The capital is Paris."), ("z", "Lyon")])
    assert a.kind == "text" and a.majority_panelists == ["x", "y"]


@pytest.mark.parametrize("answers", [
    ("prime", "not prime", "not prime"),
    ("91 is prime", "91 is not prime", "91 isn't prime"),
    ("Yes", "yes", "no"),
    ("Il est premier", "il n'est pas premier", "Il n'est pas premier"),
    ("100", "1000 apples", "1000 apples"),  # mixed kinds: compared as text, where 100 looked like 1000
])  # fmt: skip
def test_a_negation_or_another_number_is_another_position(answers):
    """Containment and difflib called these the same position: full agreement, and the debate stopped early."""
    a = score_agreement(list(zip("abc", answers, strict=True)))
    assert a.score == pytest.approx(2 / 3) and len(a.clusters) == 2
    assert "a" not in a.majority_panelists or "c" not in a.majority_panelists
    assert not matches_gold(answers[0], answers[2], "text")  # eval's text items use the same rule


def test_mixed_kinds_fall_back_to_text_and_missing_answers_are_left_out():
    a = score_agreement([("x", "4"), ("y", "four"), ("z", None)])
    assert a.kind == "text" and a.score == 0.5


def test_no_answers_scores_zero():
    assert score_agreement([("x", None)]).score == 0.0


def test_ties_go_to_the_first_seat_for_scoring_but_report_no_majority():
    a = score_agreement([("x", "A"), ("y", "B")])
    assert a.majority == "A" and a.score == 0.5
    assert a.tie and a.reported_majority is None
    b = score_agreement([("w", "7"), ("x", "5"), ("y", "7"), ("z", "9")])  # 2-1-1: a plurality, not a tie
    assert not b.tie and b.reported_majority == "7"
    c = score_agreement([("w", "7"), ("x", "5"), ("y", "7"), ("z", "5")])  # 2-2
    assert c.tie and c.reported_majority is None and c.majority == "7"


@pytest.mark.parametrize(("predicted", "gold", "right"), [
    ("of", "United States of America", False),  # any word of the gold scored as right
    ("New", "New York City", False),
    ("da", "Leonardo da Vinci", False),
    ("United States", "United States of America", True),  # most of it
    ("York City", "New York City", True),
    ("The capital is Paris.", "Paris", True),  # the gold inside a longer answer still counts
    ("Paris", "Paris, France", True),  # a name within the gold is not a fragment
    ("Obama", "Barack Obama", True),
])  # fmt: skip
def test_a_fragment_of_the_gold_is_not_the_gold(predicted, gold, right):
    assert matches_gold(predicted, gold, "text") is right


@pytest.mark.parametrize(("text", "value"), [
    ("3,5", 3.5), ("12,50 €", 12.5), ("1.234,5", 1234.5), ("-2,5", -2.5), ("0,25", 0.25),  # decimal commas
    ("1,234", 1234), ("12,500", 12500), ("1,234.5", 1234.5),  # thousands, as before
])  # fmt: skip
def test_decimal_commas_are_read_and_thousands_separators_still_are(text, value):
    """A French panel's "3,5" against an English "3.5" were two positions (and "3,5" was text)."""
    assert parse_number(text) == pytest.approx(value)


def test_matches_gold_by_kind():
    assert matches_gold("The answer is 1,000", "1000", "number")
    assert matches_gold("(b)", "B", "choice")
    assert not matches_gold("C", "B", "choice")
    assert matches_gold("paris", "Paris", "text")
    assert not matches_gold(None, "1", "number")
