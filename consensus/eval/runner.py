"""Run a labelled dataset through the debate engine, one record per question, resumable.

Layout of an output directory:
  run.json       what ran: dataset, seed, limit, language, rounds, the panel, when it started
  records.jsonl  one scoring.EvalRecord per finished question, appended (flushed and fsynced)
                 as each debate ends, so Ctrl-C or a kill keeps everything finished so far
  .lock          held while a run writes: a second run into the same directory is refused
Re-running into the same directory skips the questions already answered in records.jsonl (unless
the dataset now states them differently, or their debate failed: those are asked again), and
refuses to mix runs: the dataset, seed, language, rounds and every seat's answer-relevant settings
must match.
How answers are read and scored is documented in consensus.eval.scoring.

Arms (`arms`, default the debate alone): each question is asked of every arm in the order given, one arm after
the other (consensus/arms.py; `consensus` is the debate). A record keeps the debate's fields and one ArmRecord per
other arm. A resume asks each question only the arms it lacks (or whose answer failed), so adding an arm to a run
pays for that arm alone; run.json keeps every arm the run has asked.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from consensus.arms import Arm, run_arm
from consensus.engine import DebateOptions, debate
from consensus.eval.datasets import EvalItem
from consensus.eval.scoring import (
    EvalRecord,
    arm_record_from_error,
    not_debated,
    record_from_arm,
    record_from_error,
    record_from_result,
)
from consensus.providers.base import Provider
from consensus.types import Panel, Seat

__all__ = ["RECORDS", "RUN_INFO", "EvalRun", "panel_fingerprint", "prepare_out_dir", "read_records", "run_eval"]

RECORDS = "records.jsonl"
RUN_INFO = "run.json"
LOCK = ".lock"
_SEAT_KEYS = ("name", "model", "temperature", "seed", "persona", "max_tokens")
_MATCHED = ("dataset", "seed", "language", "rounds", "panel_fingerprint")

Progress = Callable[[int, int], None]


@dataclass
class EvalRun:
    """The records of the requested items (resumed and new, sorted by id) and what happened."""

    records: list[EvalRecord]
    resumed: int
    new: int
    problems: list[str] = field(default_factory=list)


def panel_fingerprint(panel: Panel) -> dict[str, Any]:
    """The panel settings that change answers: seats' models, sampling and personas, the protocol."""

    def seat(s: Seat) -> dict[str, Any]:
        return {k: getattr(s, k) for k in _SEAT_KEYS}

    out = {
        "panelists": [seat(s) for s in panel.panelists],
        "synthesizer": seat(panel.synthesizer),
        "max_rounds": panel.debate.max_rounds,
        "agreement_threshold": panel.debate.agreement_threshold,
    }
    if panel.analyst is not None:  # its claim map decides agreement and early stop; absent, run.json is as before
        out["analyst"] = seat(panel.analyst)
    return out


def read_records(path: Path) -> tuple[dict[str, EvalRecord], list[str]]:
    """Records by id from a records.jsonl (the last line of an id wins: a re-run's record supersedes the one it
    re-ran); unreadable lines are reported, not dropped silently."""
    records: dict[str, EvalRecord] = {}
    problems: list[str] = []
    if not path.exists():
        return records, problems
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = EvalRecord.model_validate_json(line)
        except ValidationError as exc:
            problems.append(f"{path}: line {number}: unreadable record ({exc.errors()[0]['msg']}); it will be re-run")
            continue
        records[record.id] = record
    return records, problems


def _drop_partial_line(path: Path) -> str | None:
    """Cut a last line left half-written by a kill, so the next append starts on a fresh line."""
    if not path.exists():
        return None
    data = path.read_bytes()
    if not data or data.endswith(b"\n"):
        return None
    keep = data.rfind(b"\n") + 1
    with path.open("r+b") as fh:
        fh.truncate(keep)
    return f"{path}: dropped a half-written last line ({len(data) - keep} bytes); that question will be re-run"


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _prepare_run_info(out: Path, info: dict[str, Any]) -> None:
    """Write run.json, or check that the run already in `out` is the same experiment."""
    path = out / RUN_INFO
    if path.exists():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise ValueError(
                f"{path} is not readable JSON ({exc}); fix or remove it, or choose another --out"
            ) from None
        differ = [k for k in _MATCHED if _setting(old, k) != _setting(info, k)]
        if differ:
            said = [
                f"its {k.removesuffix('_fingerprint')} differs"
                if k.endswith("_fingerprint")
                else f"{k} {_setting(old, k)!r} then, {_setting(info, k)!r} now"
                for k in differ
            ]
            raise ValueError(
                f"{out} holds a different run ({'; '.join(said)}); resume with the same settings or choose another --out"
            )
        info = {
            **old,
            "limit": info.get("limit"),
            "n_items": info.get("n_items"),
            "item_ids": info.get("item_ids"),
            "resumed_at": info["started_at"],
            "started_at": old.get("started_at"),
            "arms": list(dict.fromkeys([*(old.get("arms") or ["consensus"]), *(info.get("arms") or [])])),
        }
    _write_json(path, info)


def _setting(info: dict[str, Any], key: str) -> Any:
    """A run.json setting as it acts: `rounds` left to the panel is the panel's max_rounds, and a dataset file is
    its absolute path (run.json files written before paths were stored resolved hold them as typed)."""
    value = info.get(key)
    if key == "rounds" and value is None:
        return ((info.get("panel") or {}).get("debate") or {}).get("max_rounds")
    if key == "dataset" and isinstance(value, str) and value.endswith(".jsonl"):
        return str(Path(value).resolve())
    return value


def _answers(record: EvalRecord, item: EvalItem) -> bool:
    """Whether a stored record is the answer to this item as the dataset now states it."""
    return (record.question, record.gold, record.type, record.choices) == (
        item.question,
        item.answer,
        item.type,
        item.choices,
    )


def _missing(record: EvalRecord | None, arms: Sequence[Arm]) -> list[Arm]:
    """The arms a stored record has no answer from (or a failed one): the debate, or an arm by id."""
    if record is None:
        return list(arms)
    out = []
    for arm in arms:
        if arm.kind == "consensus":
            if not record.debated or record.status == "failed":
                out.append(arm)
        elif arm.id not in record.arms or record.arms[arm.id].status == "failed":
            out.append(arm)
    return out


def _append(fh: Any, record: EvalRecord) -> None:
    fh.write(record.model_dump_json() + "\n")
    fh.flush()
    os.fsync(fh.fileno())


def prepare_out_dir(
    out: Path, panel: Panel, item_ids: list[str], rounds: int | None, language: str, run_info: dict[str, Any] | None
) -> tuple[Path, dict[str, EvalRecord], list[str]]:
    """Check the output directory (made and locked by the caller: _exclusive); return records.jsonl, the records
    done, and problems.

    run.json keeps this run's item ids: a resume with a smaller --limit leaves more records in records.jsonl than
    the run covers, and its summary (and `eval compare`) count only the run's own.
    """
    info = {
        "dataset": None,
        "seed": None,
        "limit": None,
        **(run_info or {}),
        "language": language,
        "rounds": rounds,
        "n_items": len(item_ids),
        "item_ids": item_ids,
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "panel_fingerprint": panel_fingerprint(panel),
        "panel": panel.model_dump(mode="json", exclude={"source"}),
        "panel_source": panel.source,
    }
    _prepare_run_info(out, info)
    path = out / RECORDS
    problems = [p for p in [_drop_partial_line(path)] if p]
    done, unreadable = read_records(path)
    return path, done, problems + unreadable


async def run_eval(
    items: Sequence[EvalItem],
    panel: Panel,
    provider: Provider,
    out_dir: str | Path,
    concurrency: int = 2,
    rounds: int | None = None,
    progress: Progress | None = None,
    *,
    language: str = "en",
    run_info: dict[str, Any] | None = None,
    arms: Sequence[Arm] = (Arm("consensus"),),
) -> EvalRun:
    """Ask every item the arms (default: the debate) it has no answer from yet in out_dir/records.jsonl, at most
    `concurrency` items at a time."""
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, got {concurrency}")
    if not arms:
        raise ValueError("arms: give at least one arm")
    info = {**(run_info or {}), "arms": [a.id for a in arms]}
    with _exclusive(Path(out_dir)):
        return await _run_eval(
            items, panel, provider, Path(out_dir), concurrency, rounds, progress, language, info, list(arms)
        )


@contextlib.contextmanager
def _exclusive(out: Path) -> Iterator[None]:
    """Hold out/.lock for the run: two runs into one directory asked every question twice and paid twice."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: is a file, not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
        fh = (out / LOCK).open("a")
    except OSError as exc:
        raise ValueError(f"--out {out}: cannot be used ({exc.strerror or exc})") from None
    with fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ValueError(
                f"--out {out} is in use by another `consensus eval` run; wait for it or choose another --out"
            ) from None
        yield


async def _run_eval(
    items: Sequence[EvalItem],
    panel: Panel,
    provider: Provider,
    out_dir: Path,
    concurrency: int,
    rounds: int | None,
    progress: Progress | None,
    language: str,
    run_info: dict[str, Any] | None,
    arms: list[Arm],
) -> EvalRun:
    path, done, problems = prepare_out_dir(out_dir, panel, [i.id for i in items], rounds, language, run_info)
    # A record is reused only for the question it answered: ids without an "id" field are line numbers, and a
    # line inserted, or a gold corrected, would otherwise keep the old answer and score. A failed debate (an
    # outage, a bad key) is asked again, and so is a failed arm.
    changed = [i.id for i in items if i.id in done and not _answers(done[i.id], i)]
    if changed:
        problems.append(
            f"{len(changed)} stored record(s) no longer match their question, answer or choices in the "
            f"dataset; asked again: {', '.join(changed[:5])}{' ...' if len(changed) > 5 else ''}"
        )
    for i in changed:
        done.pop(i)
    debates = any(a.kind == "consensus" for a in arms)
    failed = [i.id for i in items if debates and i.id in done and done[i.id].status == "failed"]
    if failed:
        problems.append(f"{len(failed)} debate(s) that failed before are asked again")
    asked = {a.id for a in arms if a.kind != "consensus"}  # a failed arm not asked this time is not asked again
    failed_arms = sum(
        1 for i in items if i.id in done for a in done[i.id].arms.values() if a.arm in asked and a.status == "failed"
    )
    if failed_arms:
        problems.append(f"{failed_arms} arm answer(s) that failed before are asked again")
    todo: asyncio.Queue[tuple[EvalItem, list[Arm]]] = asyncio.Queue()
    for item in items:
        missing = _missing(done.get(item.id), arms)
        if missing:
            todo.put_nowait((item, missing))
    resumed, total, new = len(items) - todo.qsize(), len(items), 0
    names = [s.name for s in panel.panelists]
    if progress:
        progress(resumed, total)

    async def debated(item: EvalItem) -> EvalRecord:
        t0 = time.monotonic()
        options = DebateOptions(rounds=rounds, language=language)
        try:
            result = await debate(item.question, panel, provider, options)
        except Exception as exc:  # recorded with its reason, counted as failed, never dropped
            return record_from_error(item, names, exc, int((time.monotonic() - t0) * 1000))
        return record_from_result(item, result, int((time.monotonic() - t0) * 1000))

    async def one(item: EvalItem, missing: list[Arm]) -> EvalRecord:
        before = done.get(item.id)
        record = before or not_debated(item, names)
        if any(a.kind == "consensus" for a in missing):
            record = (await debated(item)).model_copy(update={"arms": dict(record.arms)})
        for arm in missing:
            if arm.kind == "consensus":
                continue
            t0 = time.monotonic()
            try:
                answered = await run_arm(arm, item.question, panel, provider, language=language)
            except Exception as exc:  # as a debate's: recorded with its reason, never dropped
                record.arms[arm.id] = arm_record_from_error(arm.id, exc, int((time.monotonic() - t0) * 1000))
                continue
            record.arms[arm.id] = record_from_arm(item, answered, int((time.monotonic() - t0) * 1000))
        return record

    with path.open("a", encoding="utf-8") as fh:

        async def worker() -> None:
            nonlocal new
            while not todo.empty():
                record = await one(*todo.get_nowait())
                _append(fh, record)
                done[record.id] = record
                new += 1
                if progress:
                    progress(resumed + new, total)

        workers = [asyncio.create_task(worker()) for _ in range(min(concurrency, max(1, todo.qsize())))]
        try:
            await asyncio.gather(*workers)
        finally:
            for w in workers:
                w.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
    records = sorted((done[i.id] for i in items if i.id in done), key=lambda r: r.id)
    return EvalRun(records=records, resumed=resumed, new=new, problems=problems)
