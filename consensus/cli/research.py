"""`consensus eval` (run a labelled dataset through the panel) and `consensus compare` (runs side by side)."""

from __future__ import annotations

import asyncio
import io
import json
import re
import shlex
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from consensus.arms import MAX_SAMPLES, MIN_SAMPLES, parse_arms
from consensus.cli.common import configured_panel, fail, make_provider
from consensus.engine import validate_question
from consensus.errors import ConsensusError, QuestionError, UnknownArmError
from consensus.eval.datasets import builtin_names, load_dataset
from consensus.eval.report import SUMMARY, compare, render_table, summarize, write_html
from consensus.eval.runner import RECORDS, RUN_INFO, EvalRun, read_records, run_eval
from consensus.eval.scoring import EvalRecord
from consensus.language import normalize_code
from consensus.providers.base import close_provider

__all__ = ["compare_command", "default_out", "eval_command", "finish_run"]

out = Console()
err = Console(stderr=True, soft_wrap=True)
REPORT = "report.html"
TABLE = "table.txt"


def _fail(message: str, code: int = 2) -> typer.Exit:
    return fail(message, code)


def default_out(dataset: str, seed: int | None) -> Path:
    """runs/<dataset>[-seed<S>]: re-running the same command resumes the same run."""
    name = Path(dataset).stem if dataset.endswith(".jsonl") else dataset
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "eval"
    return Path("runs") / (slug if seed is None else f"{slug}-seed{seed}")


def finish_run(out_dir: Path, records: list[EvalRecord]) -> dict[str, Any]:
    """Write summary.json, report.html and table.txt for these records; return the summary."""
    run = json.loads((out_dir / RUN_INFO).read_text(encoding="utf-8")) if (out_dir / RUN_INFO).exists() else None
    summary = summarize(records, run)
    (out_dir / SUMMARY).write_text(json.dumps(summary, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    write_html(summary, records, out_dir / REPORT)
    plain = Console(record=True, width=150, file=io.StringIO())
    plain.print(render_table(summary))
    (out_dir / TABLE).write_text(plain.export_text(), encoding="utf-8")
    return summary


def eval_command(
    dataset: Annotated[str, typer.Argument(help=f"a .jsonl file or a built-in: {', '.join(builtin_names())}")],
    panel_file: Annotated[
        Path | None, typer.Option("--panel-file", help="TOML panel file (default: $CONSENSUS_PANEL_FILE)")
    ] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", min=0, help="only the first N questions (after --seed shuffles)")
    ] = None,
    concurrency: Annotated[int, typer.Option("--concurrency", min=1, max=256, help="debates in flight at once")] = 2,
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out", help="output directory (default: runs/<dataset name or file stem>[-seed<S>]); re-run to resume"
        ),
    ] = None,
    seed: Annotated[
        int | None, typer.Option("--seed", help="shuffle the questions with this seed before --limit")
    ] = None,
    rounds: Annotated[
        int | None, typer.Option("--rounds", min=0, max=10, help="most debate rounds (default: the panel's)")
    ] = None,
    language: Annotated[str, typer.Option("--language", help="answer language code")] = "en",
    arm: Annotated[
        list[str] | None,
        typer.Option(
            "--arm",
            help="what answers each question, repeatable or comma-separated: consensus (the debate, the default), "
            f"consensus-vote, consensus-single-<name>, consensus-sample-<name>-<k> (k {MIN_SAMPLES}-{MAX_SAMPLES}); "
            "the model ids of the OpenAI endpoint, 'consensus-' optional",
        ),
    ] = None,
) -> None:
    """Run a labelled dataset through the panel: accuracy of each panelist, the votes and the consensus (and of
    each comparison arm given with --arm)."""

    panel = configured_panel(panel_file)
    try:  # before the dataset: a misspelt arm fails at once, not after a download or a long file is read
        arms = parse_arms(arm or ["consensus"], panel)
    except UnknownArmError as exc:
        raise _fail(f"--arm: {exc}") from None
    if not arms:
        raise _fail("--arm: give at least one arm, e.g. --arm consensus,consensus-vote")
    try:
        loaded = load_dataset(dataset, limit=limit, seed=seed)
        language = normalize_code(language)
    except (ValueError, OSError, ConsensusError) as exc:
        raise _fail(str(exc)) from None
    for problem in loaded.problems:
        err.print(f"[yellow]warning:[/] {escape(loaded.name)}: {escape(problem)}")
    if loaded.problems:
        err.print(f"[yellow]warning:[/] skipped {len(loaded.problems)} malformed record(s) of {escape(loaded.name)}")
    items = []
    for item in loaded.items:  # what the engine would refuse is a dataset problem, not a wrong answer
        try:
            validate_question(item.question, panel.debate.max_question_chars)
        except QuestionError as exc:
            err.print(f"[yellow]warning:[/] {escape(loaded.name)}: item {escape(item.id)}: {escape(str(exc))}; skipped")
            continue
        items.append(item)
    if not items:
        raise _fail("--limit 0 selects no questions" if limit == 0 else f"{loaded.name}: no usable questions")
    provider = make_provider(panel)
    target = out_dir or default_out(dataset, seed)
    # A file is named by its absolute path: resumed from another directory, or as ./x.jsonl, it is the same run.
    named = str(Path(dataset).resolve()) if Path(dataset).suffix == ".jsonl" else loaded.name
    info = {"dataset": named, "seed": seed, "limit": limit}
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("elapsed"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err, transient=False) as bar:
        task: list[Any] = []

        def progress(done: int, total: int) -> None:
            if not task:
                task.append(bar.add_task(escape(Path(loaded.name).name), total=total, completed=done))
                if done:
                    err.print(f"resuming {escape(str(target))}: {done} of {total} questions already done")
            else:
                bar.update(task[0], completed=done)

        try:
            result = asyncio.run(
                _closing(
                    provider,
                    run_eval(
                        items,
                        panel,
                        provider,
                        target,
                        concurrency,
                        rounds,
                        progress,
                        language=language,
                        run_info=info,
                        arms=arms,
                    ),
                )
            )
        except KeyboardInterrupt:
            bar.stop()
            done, _ = read_records(target / RECORDS)
            kept = [done[i.id] for i in items if i.id in done]
            if kept:
                finish_run(target, kept)
            command = " ".join(shlex.quote(a) for a in ["consensus", *sys.argv[1:]])
            err.print(
                f"[yellow]Stopped (Ctrl-C):[/] {len(kept)} of {len(items)} questions are done and saved in "
                f"{escape(str(target / RECORDS))}.\nResume with the same command: {escape(command)}"
            )
            raise typer.Exit(130) from None
        except (ValueError, OSError) as exc:  # a bad --out, records.jsonl that is a directory, a full disk
            raise _fail(str(exc)) from None
    for problem in result.problems:
        err.print(f"[yellow]warning:[/] {escape(problem)}")
    summary = finish_run(target, result.records)
    out.print(render_table(summary))
    failed = summary["status"].get("failed", 0)
    if failed:
        first = summary["failures"][0]
        err.print(
            f"[yellow]{failed} debate(s) failed[/] (counted as wrong; a re-run asks them again); e.g. "
            f"{escape(first['id'])}: {escape(str(first['reason']))}"
        )
    for name in (RECORDS, SUMMARY, REPORT):
        out.print(f"{name}: {escape(str(target / name))}")
    # An outage or a bad key that measured nothing says so in the exit code; an arm that answered measured something.
    asked = [a for name, a in summary["arms"].items() if name != "consensus" and a["n"]]
    measured = any(a["failed"] < a["n"] for a in asked)
    if failed and failed == summary["n"] and not measured:
        raise _fail(f"every debate failed ({failed} of {failed}); nothing was measured", code=1)
    if not summary["n"] and asked and not measured:
        raise _fail("every arm's every answer failed; nothing was measured", code=1)


def compare_command(
    dirs: Annotated[list[Path], typer.Argument(help="run directories written by `consensus eval --out`")],
) -> None:
    """Put eval runs side by side: accuracy, paired tests, cost and latency, one column per run."""
    for d in dirs:
        if not d.is_dir():
            raise _fail(f"run directory not found: {d}")
    problems: list[str] = []
    try:
        table = compare(dirs, problems)
    except (OSError, ValueError) as exc:
        raise _fail(str(exc)) from None
    for problem in problems:  # they were skipped silently
        err.print(f"[yellow]warning:[/] {escape(problem)}")
    out.print(table)


async def _closing(provider: Any, work: Coroutine[Any, Any, EvalRun]) -> EvalRun:
    """Run `work`, then close the provider's connections on the same event loop."""
    try:
        return await work
    finally:
        await close_provider(provider)
