"""`consensus ask` (a debate, live; `--follow-up ID` continues a stored thread), `consensus chat` (each line a
follow-up) and `consensus panels` (the configured panel)."""

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
from consensus.engine import (
    DebateOptions,
    QuorumGrace,
    follow_up_language,
    run_debate,
    thread_turn,
    validate_request,
)
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
    DebateStatus,
    Panel,
    RoundCompleted,
    ThreadContext,
)

STORE_HELP = (
    "continue the thread of this stored debate (an id from the service's store: DATABASE_URL, else the service's "
    "default SQLite file consensus.db in the current directory); the new debate is stored in that thread"
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
    follow_up: Annotated[str | None, typer.Option("--follow-up", metavar="ID", help=STORE_HELP)] = None,
) -> None:
    """Ask the panel a question: openings, debate rounds, consensus. With --follow-up ID, a follow-up of a stored
    debate: the panel sees its thread (set DATABASE_URL to the service's store, or run where its consensus.db is)."""
    options = DebateOptions(
        rounds=rounds, language=language, stream=not as_json, quorum_grace=QuorumGrace() if grace else None
    )
    try:
        panel = load_panel(panel_file)
        validate_request(question, panel, options)  # a bad question is refused at once, before LiteLLM loads
    except ConsensusError as exc:
        raise fail(str(exc)) from None
    stored: StoredThread | None = None
    if follow_up is not None:
        stored = asyncio.run(StoredThread.load(follow_up))
        options.thread = stored.context
        options.language = language or follow_up_language(question, stored.language)
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
    if stored is not None:
        asyncio.run(stored.save(result))
    if as_json:
        sys.stdout.write(json.dumps(result.model_dump(mode="json"), ensure_ascii=False, indent=2) + "\n")
    else:
        print_result(result)
    if result.status == "failed":
        raise typer.Exit(1)


class StoredThread:
    """A thread in the service's store, continued from the command line (the operator's own store: no key)."""

    def __init__(self, url: str, debate_id: str, thread_id: str, position: int, context: ThreadContext, language: str):
        self.url = url
        self.debate_id = debate_id
        self.thread_id = thread_id
        self.position = position
        self.context = context
        self.language = language

    @classmethod
    async def load(cls, debate_id: str) -> StoredThread:
        """The thread of a finished stored debate, or a clean exit saying why not."""
        from service.settings import Settings
        from service.store import Store

        url = Settings().database_url
        store = Store(url)
        try:
            await store.migrate()
            row = await store.get(debate_id)
            if row is None:
                raise fail(f"--follow-up: no debate {debate_id!r} in the store {url} (set DATABASE_URL)")
            if row.status not in ("completed", "degraded"):
                raise fail(f"--follow-up: debate {debate_id} has no consensus to follow ({row.status})")
            thread_id, count, turns = await store.thread_upto(row)
            limit = Settings().thread_max_depth
            if count >= limit:
                raise fail(f"--follow-up: the thread already has {count} debates; the limit is {limit}")
        finally:
            await store.close()
        context = ThreadContext(turns=turns, language=row.language)
        return cls(url, debate_id, thread_id, count, context, row.language)

    async def save(self, result: DebateResult) -> None:
        """Store the finished follow-up in its thread, as the service would have."""
        from service.store import Store

        store = Store(self.url)
        try:
            request = {
                "question": result.question,
                "follow_up_of": self.debate_id,
                "thread_context": self.context.model_dump(),
            }
            running = result.model_copy(update={"status": DebateStatus.running})  # stored as a run, then its end
            await store.create_debate(running, request, None, None, "cli", 5.0, thread=(self.thread_id, self.position))
            await store.finish(result.id, result, [], "cli")
        finally:
            await store.close()
        err.print(Text(f"stored in thread {self.thread_id} as debate {result.id}", style="dim"))


def chat(
    panel_file: PanelFileOpt = None,
    rounds: Annotated[
        int | None, typer.Option("--rounds", min=0, max=10, help="most debate rounds after the openings")
    ] = None,
    follow_up: Annotated[str | None, typer.Option("--follow-up", metavar="ID", help=STORE_HELP)] = None,
) -> None:
    """An interactive session with the panel: each line is a follow-up of the last; Ctrl-C or Ctrl-D ends it."""
    try:
        panel = load_panel(panel_file)
    except ConsensusError as exc:
        raise fail(str(exc)) from None
    check_panel(panel)
    stored = asyncio.run(StoredThread.load(follow_up)) if follow_up else None
    context = stored.context if stored else ThreadContext()
    err.print(Text("Ask the panel; each line is a follow-up. Ctrl-D or Ctrl-C ends the session.", style="dim"))
    while True:
        try:
            question = input("> ").strip()
        except (EOFError, KeyboardInterrupt):
            err.print(Text("\nSession ended.", style="dim"))
            return
        if not question:
            continue
        language = follow_up_language(question, context.language) if context.language else None
        options = DebateOptions(
            rounds=rounds,
            language=language,
            stream=True,
            quorum_grace=QuorumGrace(),
            thread=context if context.turns else None,
        )
        try:
            validate_request(question, panel, options)
        except ConsensusError as exc:
            err.print(Text(str(exc), style="red"))
            continue
        try:
            result = asyncio.run(_run(question, panel, make_provider(panel), options, LiveView(panel)))
        except KeyboardInterrupt:
            err.print(Text("Stopped (Ctrl-C): the debate was cancelled; session ended.", style="yellow"))
            return
        print_result(result)
        if result.consensus is not None and result.status != "failed":
            context = ThreadContext(turns=[*context.turns, thread_turn(result)], language=result.language)


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
        self.agreement: str | None = None
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
            self.agreement = e.round_result.agreement_label([s.name for s in self.panel.panelists])
        elif isinstance(e, ConsensusDelta):
            restart = bool(e.data and e.data.get("restart"))
            self.consensus = e.delta if restart else self.consensus + e.delta

    def render(self) -> Group:
        head = Text(f"Round {self.round}", style="bold")
        if self.agreement is not None:
            head.append(f"   agreement {self.agreement}")
        if self.analysis:
            head.append(f"   {self.analysis}")
        panels: list[Any] = [head]
        for s in self.panel.panelists:
            body = "\n".join(self.text[s.name].splitlines()[-8:])[-800:]
            panels.append(RichPanel(Text(body), title=Text(f"{s.name} ({s.model})"), subtitle=Text(self.state[s.name])))
        if self.consensus:
            panels.append(RichPanel(Text(self.consensus[-1200:]), title="consensus (writing)"))
        return Group(*panels)


# Why the consensus is the panel's majority answer (Consensus.majority_because), as the page words it.
MAJORITY_WHO = {
    "rejected": "no synthesis passed the checks",
    "not_asked": "no synthesizer was asked",
    "failed": "every synthesizer call failed",
}
MAJORITY_MARK = {
    "rejected": "The moderator's text did not pass the checks: this is the panel's verified majority answer.",
    "not_asked": "The moderator was not asked: this is the panel's verified majority answer.",
    "failed": "The moderator model failed; the majority answer is shown instead.",
}


def print_result(r: DebateResult) -> None:
    """Every model's answer per round, then the consensus."""
    for rnd in r.rounds:
        title = "Openings" if rnd.index == 0 else f"Debate round {rnd.index}"
        label = rnd.agreement_label([p.name for p in r.panel])
        agree = f" — agreement {label} ({rnd.agreement.method})" if rnd.agreement and label else ""
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
        because = c.majority_because
        who = f"synthesized by {c.synthesizer}" if c.synthesizer else MAJORITY_WHO.get(because or "", "no synthesizer")
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
        if because:
            out.print(Text(MAJORITY_MARK[because], style="yellow"))
        else:
            out.print(Text(f"Checked against the panel's answers ({c.source}).", style="green"))
        if c.fallback:
            out.print(Text("why: ", style="yellow") + Text(c.fallback_reason or ""))
        out.print(Text(c.answer))
        for d in c.dissent:
            out.print(f"[magenta]dissent[/] {escape(', '.join(d.panelists))}: {escape(d.final_answer)}")
        if c.claims:
            out.print(claims_table(c, [p.name for p in r.panel]))
        analysed = [rnd.analysis for rnd in r.rounds if rnd.analysis]
        for drop in analysed[-1].dropped if analysed else []:  # model text: never markup
            out.print(
                Text("dropped ", style="yellow")
                + Text(f"{drop.panelist} {drop.stance} {drop.claim!r}")
                + Text(f" (quote {drop.quote!r}): {drop.reason}" if drop.quote else f": {drop.reason}")
            )
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
