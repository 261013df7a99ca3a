"""`consensus ask` (a debate, live) and `consensus panels` (the configured panel)."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Annotated, Any

import typer
from rich.console import Group
from rich.live import Live
from rich.markup import escape
from rich.panel import Panel as RichPanel
from rich.table import Table
from rich.text import Text

from consensus.cli.common import PanelFileOpt, check_panel, err, fail, make_provider, out
from consensus.config import load_panel
from consensus.engine import DebateOptions, QuorumGrace, run_debate, validate_request
from consensus.errors import ConsensusError
from consensus.providers.base import close_provider
from consensus.types import (
    AnalysisCompleted,
    AnswerCompleted,
    AnswerDelta,
    Consensus,
    ConsensusDelta,
    DebateCompleted,
    DebateEvent,
    DebateFailed,
    DebateResult,
    Panel,
    RoundCompleted,
)


def ask(
    question: Annotated[str, typer.Argument(help="The question for the panel")],
    panel_file: PanelFileOpt = None,
    rounds: Annotated[
        int | None, typer.Option("--rounds", min=0, max=10, help="most debate rounds after the openings")
    ] = None,
    language: Annotated[
        str | None, typer.Option("--language", help="answer language code, e.g. hi (default: detected)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print only the DebateResult JSON")] = False,
    grace: Annotated[
        bool,
        typer.Option(
            "--grace/--no-grace",
            help="don't wait for a straggler: once all but one seat answered a round, "
            "wait at most max(1 s, 0.25 x the round's median latency)",
        ),
    ] = True,
) -> None:
    """Ask the panel a question: openings, debate rounds, consensus."""
    options = DebateOptions(
        rounds=rounds, language=language, stream=not as_json, quorum_grace=QuorumGrace() if grace else None
    )
    try:
        panel = load_panel(panel_file)
        validate_request(question, panel, options)  # a bad question is refused at once, before LiteLLM loads
    except ConsensusError as exc:
        raise fail(str(exc)) from None
    check_panel(panel)
    if any(s.route == "local" for s in panel.seats):  # it loads while the language is detected
        from consensus.providers.local import load_in_background

        load_in_background()
    provider = make_provider(panel)
    view = None if as_json else LiveView(panel)
    try:
        result = asyncio.run(_run(question, panel, provider, options, view))
    except KeyboardInterrupt:
        err.print("[yellow]Stopped (Ctrl-C): the debate was cancelled.[/]")
        raise typer.Exit(130) from None
    if as_json:
        sys.stdout.write(json.dumps(result.model_dump(mode="json"), ensure_ascii=False, indent=2) + "\n")
    else:
        print_result(result)
    if result.status == "failed":
        raise typer.Exit(1)


async def _run(
    question: str, panel: Panel, provider: Any, options: DebateOptions, view: LiveView | None
) -> DebateResult:
    final: DebateResult | None = None
    live = Live(view.render(), console=out, refresh_per_second=8, transient=True) if view else None
    if live:
        live.start()
    try:
        async for event in run_debate(question, panel, provider, options):
            if view and live:
                view.update(event)
                live.update(view.render())
            if isinstance(event, DebateCompleted | DebateFailed):
                final = event.result
    finally:
        if live:
            live.stop()
        await close_provider(provider)
    assert final is not None
    return final


class LiveView:
    """Live progress: each panelist's answer streaming under its name, the round and agreement."""

    def __init__(self, panel: Panel) -> None:
        self.panel = panel
        self.text: dict[str, str] = {s.name: "" for s in panel.panelists}
        self.state: dict[str, str] = {s.name: "waiting" for s in panel.panelists}
        self.round = 0
        self.agreement: float | None = None
        self.analysis = ""
        self.consensus = ""

    def update(self, e: DebateEvent) -> None:
        if isinstance(e, AnswerDelta) and e.panelist in self.text:
            if e.round != self.round:
                self.round = e.round
                self.text = {k: "" for k in self.text}
            restart = bool(e.data and e.data.get("restart"))  # a retry (or another seat) starts over
            self.text[e.panelist] = e.delta if restart else self.text[e.panelist] + e.delta
            self.state[e.panelist] = f"round {e.round}: answering"
        elif isinstance(e, AnswerCompleted):
            a = e.answer
            self.text[e.panelist] = a.answer if a.ok else ""
            self.state[e.panelist] = (
                f"round {a.round}: final answer {a.final_answer!r}"
                if a.ok
                else f"round {a.round}: failed ({a.error.kind if a.error else ''})"
            )
        elif isinstance(e, AnalysisCompleted):
            self.analysis = "claim map verified" if e.analysis.verified else "claim map fell back"
        elif isinstance(e, RoundCompleted) and e.round_result.agreement:
            self.agreement = e.round_result.agreement.score
        elif isinstance(e, ConsensusDelta):
            restart = bool(e.data and e.data.get("restart"))
            self.consensus = e.delta if restart else self.consensus + e.delta

    def render(self) -> Group:
        head = Text(f"Round {self.round}", style="bold")
        if self.agreement is not None:
            head.append(f"   agreement {self.agreement:.0%}")
        if self.analysis:
            head.append(f"   {self.analysis}")
        panels: list[Any] = [head]
        for s in self.panel.panelists:
            body = "\n".join(self.text[s.name].splitlines()[-8:])[-800:]
            panels.append(RichPanel(Text(body), title=Text(f"{s.name} ({s.model})"), subtitle=Text(self.state[s.name])))
        if self.consensus:
            panels.append(RichPanel(Text(self.consensus[-1200:]), title="consensus (writing)"))
        return Group(*panels)


def print_result(r: DebateResult) -> None:
    """Every model's answer per round, then the consensus."""
    for rnd in r.rounds:
        title = "Openings" if rnd.index == 0 else f"Debate round {rnd.index}"
        agree = f" — agreement {rnd.agreement.score:.0%} ({rnd.agreement.method})" if rnd.agreement else ""
        out.rule(f"{title}{agree}")
        for a in rnd.answers:
            if a.ok:
                conf = f", confidence {a.confidence:.2f}" if a.confidence is not None else ""
                out.print(
                    f"[bold]{escape(a.panelist)}[/] ({escape(a.model)}) — final answer: "
                    f"[cyan]{escape(str(a.final_answer))}[/]{conf}"
                )
                out.print(Text(a.answer))
            else:
                assert a.error is not None
                out.print(
                    f"[bold]{escape(a.panelist)}[/] ([red]failed: {escape(a.error.kind)}[/]) {escape(a.error.message)}"
                )
    out.rule("Consensus")
    c = r.consensus
    if c:
        who = f"synthesized by {c.synthesizer}" if c.synthesizer else "no synthesizer"
        last = r.rounds[-1].agreement if r.rounds else None
        sizes = sorted((len(k.panelists) for k in last.clusters), reverse=True) if last else []
        # A tie has no majority: the vote's seat-order tie-break is for scoring, not to print as one.
        majority = (
            f"no majority (a tie: {'-'.join(map(str, sizes))})"
            if len(sizes) > 1 and sizes[0] == sizes[1]
            else f"majority {c.majority!r}"
        )
        out.print(Text(f"agreement {c.agreement_label}, {majority}, {who}"))  # model text: never markup
        if c.missing:
            out.print(
                Text(
                    f"missing: {', '.join(c.missing)} (no answer): the agreement covers "
                    f"{c.answered} of {c.seats} panelists"
                ),
                style="yellow",
            )
        if c.source == "majority_answer":
            out.print(Text("not checked synthesis: the verified majority's answer is shown", style="yellow"))
        else:
            out.print(Text(f"checked against the panel's answers ({c.source})", style="green"))
        if c.fallback:
            out.print(Text("fallback: ", style="yellow") + Text(c.fallback_reason or ""))
        out.print(Text(c.answer))
        for d in c.dissent:
            out.print(f"[magenta]dissent[/] {escape(', '.join(d.panelists))}: {escape(d.final_answer)}")
        if c.claims:
            out.print(claims_table(c, [p.name for p in r.panel]))
        out.print(checks_table(c))
    cost = "unknown" if r.usage.cost_usd is None else f"${r.usage.cost_usd:.4f}"
    out.print(
        f"[dim]status {r.status.value}{' (' + escape(r.reason) + ')' if r.reason and r.status != 'completed' else ''} · language {r.language} · "
        f"{r.usage.llm_calls} LLM calls · {r.usage.total_tokens} tokens · cost {cost} · "
        f"{(r.timing.wall_ms or 0) / 1000:.1f} s · id {r.id}[/]"
    )


def claims_table(c: Consensus, panelists: list[str]) -> Table:
    """Claims × panelists: asserts / contradicts / silent, with each claim's kind."""
    t = Table(title="Claim map (verified quotes)")
    t.add_column("claim")
    t.add_column("kind")
    for name in panelists:
        t.add_column(Text(name))
    for k in c.claims:
        cells = [Text(k.text), Text(k.kind)]
        for name in panelists:
            mark = "asserts" if name in k.supporters else "contradicts" if name in k.opponents else "·"
            cells.append(Text(mark, style={"asserts": "green", "contradicts": "red"}.get(mark, "dim")))
        t.add_row(*cells)
    return t


def checks_table(c: Consensus) -> Table:
    """The faithfulness checks the shown consensus went through."""
    t = Table(title=f"Checks of the consensus (source: {c.source})")
    t.add_column("check")
    t.add_column("result")
    t.add_column("detail")
    for k in c.checks:
        t.add_row(
            Text(k.name), Text("passed" if k.passed else "failed", style="green" if k.passed else "red"), Text(k.detail)
        )
    return t


def panels(
    panel_file: PanelFileOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the panel as JSON")] = False,
) -> None:
    """Print the configured panel."""
    try:
        panel = load_panel(panel_file)
    except ConsensusError as exc:
        raise fail(str(exc)) from None
    if as_json:
        sys.stdout.write(panel.model_dump_json(indent=2) + "\n")
        return
    t = Table(title=Text(f"Panel ({panel.source})"))
    for col in ("name", "model", "transport", "temperature", "seed", "max_tokens", "timeout", "persona"):
        t.add_column(col)
    d = panel.debate
    for s in panel.panelists:
        timeout = f"{s.timeout_s or d.call_timeout_s:g} s"  # a seat's own timeout wins (local seats: 240 s)
        cells = (
            s.name,
            s.model,
            s.route + (" (auto)" if s.transport == "auto" and s.route != "local" else ""),
            str(s.temperature),
            str(s.seed),
            str(s.max_tokens),
            timeout,
            (s.persona or "")[:60],
        )
        t.add_row(*(Text(c) for c in cells))  # names and personas come from a file: shown as written, never markup
    out.print(t)
    analyst = panel.analyst_seat
    out.print(Text(f"analyst (open answers): {analyst.name} ({analyst.model}, {analyst.route})"))
    out.print(
        Text(
            f"synthesizer: {panel.synthesizer.name} ({panel.synthesizer.model}) · max_rounds {d.max_rounds} · "
            f"agreement_threshold {d.agreement_threshold} · default call timeout {d.call_timeout_s:g} s · "
            f"deadline {d.deadline_s:g} s"
        )
    )
