"""The MCP server: the panel as a tool for assistants and coding agents, on the official `mcp` SDK.

One server definition (`build_server`), two hosts, each with its own place where debates run and live:

    consensus mcp   stdio        LocalDebates: debates run in this process; get_debate knows those it ran
    the service     HTTP /mcp    ServiceDebates: debates run by the service's runner and kept in its store;
                                 McpEndpoint checks the API key of every request, as the REST API does

The stdio server runs no debate of the service's store (that belongs to the one process serving it: SQLite's lock
says so, and leases do on PostgreSQL); like `consensus ask --follow-up`, it reads a stored thread to follow it up and
stores the finished follow-up there. To read the service's debates, connect to its /mcp endpoint.

    tool ask_panel(question, rounds?, language?,   runs a debate; the result is its outcome (PanelOutcome) as
                   follow_up_of?)                  structured content, plus a short text rendering. Progress:
                                                   a notification as it starts (with its id), after each round
                                                   and after the synthesis. The client's cancellation cancels
                                                   the debate. follow_up_of continues a finished debate's
                                                   thread: over HTTP the caller's key's, as POST /v1/debates
                                                   does; over stdio one this process ran, else one in the local
                                                   store (DATABASE_URL, else consensus.db here).
    tool get_debate(id)                            the outcome of a debate, running or finished
    resource template debate://{id}                the whole DebateResult as JSON

Bad arguments and failed debates are tool errors (`is_error`), each naming the field or giving the reason; the
session goes on.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections import OrderedDict
from collections.abc import AsyncGenerator, Callable, Iterator, Mapping
from typing import Annotated, Any, Protocol, cast

import anyio
from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ResourceNotFoundError, ToolError
from mcp.server.transport_security import TransportSecuritySettings
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from consensus.engine import (
    DebateOptions,
    copy_result,
    fits_some_seat,
    follow_up_language,
    new_result,
    run_debate,
    thread_turn,
    validate_request,
)
from consensus.errors import QuestionError
from consensus.types import (
    Check,
    Claim,
    ConsensusCompleted,
    DebateCompleted,
    DebateEvent,
    DebateFailed,
    DebateResult,
    DebateStarted,
    DebateStatus,
    Dissent,
    Panel,
    RoundCompleted,
    ThreadContext,
)
from service.deps import principal
from service.routes_debates import start_debate
from service.schemas import DebateRequest
from service.security import ApiError, Principal
from service.services import AppServices
from service.settings import Settings
from service.store import Store, sqlite_path

log = logging.getLogger("consensus.service")

PRINCIPAL = "consensus.principal"  # ASGI scope key: the caller McpEndpoint authenticated
ARGUMENTS = {"question", "rounds", "language", "follow_up_of"}
FINISHED = (DebateStatus.completed, DebateStatus.degraded)  # a debate with a consensus to follow
INSTRUCTIONS = (
    "ask_panel puts a question to a panel of language models: they answer independently, debate, and a "
    "synthesizer writes the consensus, checked against their answers. The result gives the consensus, how far the "
    "panel agreed, each model's final answer and the dissent. A debate takes seconds to minutes."
)


# -- what the tools return ---------------------------------------------------------------------------------------
class PanelistAnswer(BaseModel):
    """One panelist's final answer (its last successful one), or why it has none."""

    panelist: str
    model: str
    final_answer: str | None = None
    confidence: float | None = None
    error: str | None = Field(default=None, description="the error kind when the panelist has no answer")


class PanelOutcome(BaseModel):
    """A debate's outcome for the calling application: the consensus, the agreement, each model's final answer,
    the dissent, the claim map and the checks. The whole record is the resource debate://{id}."""

    id: str
    status: str = Field(description="running, completed, degraded, failed, cancelled or interrupted")
    reason: str | None = Field(default=None, description="why the debate is degraded, failed or cancelled")
    question: str
    language: str
    consensus: str | None = Field(default=None, description="the consensus text")
    agreement: float | None = Field(default=None, description="the panel's agreement in the last round, 0 to 1")
    agreement_label: str | None = Field(default=None, description='e.g. "100%" or "100% of 2 of 3 answers"')
    majority: str | None = Field(default=None, description="the majority's final answer (null on a tie)")
    answers: list[PanelistAnswer] = Field(default_factory=list)
    dissent: list[Dissent] = Field(default_factory=list)
    claims: list[Claim] = Field(default_factory=list, description="the verified claim map")
    checks: list[Check] = Field(default_factory=list, description="the faithfulness checks the consensus passed")
    source: str | None = Field(default=None, description="synthesis, synthesis_retry, fallback_seat, majority_answer")
    fallback_reason: str | None = None
    missing: list[str] = Field(default_factory=list, description="panelists with no answer")
    rounds: int = Field(default=0, description="rounds played, the openings included")
    permalink: str | None = Field(default=None, description="the debate's page (/d/<id>) when a service serves it")


def outcome(result: DebateResult, permalink: str | None) -> PanelOutcome:
    """The outcome of a debate (running or finished)."""
    c = result.consensus
    answers = []
    for p in result.panel:
        a = result.answers.get(p.name)
        answers.append(
            PanelistAnswer(
                panelist=p.name,
                model=p.model,
                final_answer=a.final_answer if a and a.ok else None,
                confidence=a.confidence if a and a.ok else None,
                error=(a.error.kind if a.error else None) if a else "no answer",
            )
        )
    return PanelOutcome(
        id=result.id,
        status=result.status.value,
        reason=result.reason,
        question=result.question,
        language=result.language,
        consensus=c.answer if c else None,
        agreement=c.agreement if c else None,
        agreement_label=c.agreement_label if c else None,
        majority=c.majority if c else None,
        answers=answers,
        dissent=c.dissent if c else [],
        claims=c.claims if c else [],
        checks=c.checks if c else [],
        source=c.source if c else None,
        fallback_reason=c.fallback_reason if c else None,
        missing=c.missing if c else [],
        rounds=len(result.rounds),
        permalink=permalink,
    )


def render(o: PanelOutcome) -> str:
    """The outcome as a few lines of text, for the model that called the tool."""
    lines = []
    if o.consensus is not None:
        lines.append(f"Consensus (agreement {o.agreement_label}, source: {o.source}):")
        lines.append(o.consensus)
    elif o.status == "running":
        lines.append("The debate is still running.")
    else:
        lines.append(f"No consensus: the debate {o.status}" + (f" ({o.reason})." if o.reason else "."))
    finals = [f"{a.panelist}: {a.final_answer}" if a.error is None else f"{a.panelist}: ({a.error})" for a in o.answers]
    if finals:
        lines.append("Final answers: " + "; ".join(finals))
    for d in o.dissent:
        lines.append(f"Dissent ({', '.join(d.panelists)}): {d.final_answer}")
    if o.status == "degraded" and o.reason:
        lines.append(f"Degraded: {o.reason}")
    where = f" · {o.permalink}" if o.permalink else ""
    lines.append(f"Debate {o.id}: {o.status}, {o.rounds} round(s){where}")
    return "\n".join(lines)


def tool_result(result: DebateResult, permalink: str | None) -> CallToolResult:
    """The tool's answer: the outcome as structured content and as text; a failed debate is a tool error."""
    o = outcome(result, permalink)
    failed = result.status in (DebateStatus.failed, DebateStatus.cancelled, DebateStatus.interrupted)
    return CallToolResult(
        content=[TextContent(type="text", text=render(o))],
        structured_content=o.model_dump(mode="json"),
        is_error=failed,
    )


class Progress:
    """Progress notifications: one as the debate starts (progress 0, naming its id: a client that cancels or
    loses the call can still find it), one after each round, one after the synthesis (progress = total)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.total = 2  # the openings, each debate round, the synthesis: set from the debate's max_rounds
        self.done = -1

    async def on(self, event: DebateEvent) -> None:
        """Report what this event started or finished, if anything."""
        if isinstance(event, DebateStarted):
            self.total = int(event.data.get("max_rounds", 0)) + 2
            await self.report(0, f"debate {event.debate_id} started")
        elif isinstance(event, RoundCompleted):
            r = event.round_result
            step = "openings" if r.index == 0 else f"debate round {r.index}"
            agreed = f": agreement {r.agreement.score:.0%}" if r.agreement else ""
            await self.report(r.index + 1, f"{step} done{agreed}")
        elif isinstance(event, ConsensusCompleted):
            await self.report(self.total, f"consensus written (agreement {event.consensus.agreement_label})")

    async def report(self, progress: int, message: str) -> None:
        if progress > self.done:  # the protocol wants it rising
            self.done = progress
            await self.ctx.report_progress(progress, self.total, message)


# -- where debates run -------------------------------------------------------------------------------------------
class Debates(Protocol):
    """Where a host runs and keeps its debates."""

    def permalink(self, debate_id: str) -> str | None: ...

    async def ask(
        self, ctx: Context, question: str, rounds: int | None, language: str | None, follow_up_of: str | None
    ) -> DebateResult: ...

    async def get(self, ctx: Context, debate_id: str) -> DebateResult | None: ...


class FollowUp:
    """Where a stdio follow-up goes: the earlier turns its panel sees, and its place in the local store's thread
    (thread id, position, the debate it follows) when that thread is stored there, else None (kept in memory)."""

    def __init__(self, context: ThreadContext, stored: tuple[str, int, str] | None) -> None:
        self.context = context
        self.stored = stored


class LocalDebates:
    """stdio: debates run in this process, like `consensus ask`; get_debate knows the last KEEP this process ran.

    A follow-up of one of those keeps its thread in memory; a follow-up of a debate in the local store (`settings`'
    database_url) is stored in that thread once it ends, as `consensus ask --follow-up` does. The store is opened
    only for that: a desktop client may start this server anywhere, with no store at all."""

    KEEP = 200

    def __init__(self, panel: Panel, provider: Any, settings: Settings | None = None) -> None:
        self.panel = panel
        self.provider = provider
        self.settings = settings or Settings()
        self.results: OrderedDict[str, DebateResult] = OrderedDict()
        self.threads: dict[str, ThreadContext] = {}  # a follow-up's earlier turns, for the follow-ups of it
        self.in_store: set[str] = set()  # follow-ups stored in the local store: theirs are read from there

    def permalink(self, debate_id: str) -> str | None:
        return None  # no page serves these debates

    def keep(self, result: DebateResult) -> None:
        self.results[result.id] = result
        self.results.move_to_end(result.id)
        while len(self.results) > self.KEEP:
            gone, _ = self.results.popitem(last=False)
            self.threads.pop(gone, None)

    async def ask(
        self, ctx: Context, question: str, rounds: int | None, language: str | None, follow_up_of: str | None
    ) -> DebateResult:
        options = DebateOptions(
            rounds=rounds,
            language=language,
            debate_id=uuid.uuid4().hex,
            on_checkpoint=lambda r: self.keep(copy_result(r)),
        )
        try:
            checked = validate_request(question, self.panel, options)
        except QuestionError as exc:
            raise ToolError(str(exc)) from None
        follow = await self.follow(follow_up_of) if follow_up_of is not None else None
        if follow is not None:
            options.thread = follow.context
            language = checked[1] or follow_up_language(checked[0], follow.context.language or "en")
            checked = (checked[0], language, checked[2])
            if not fits_some_seat(checked[0], self.panel, language):
                raise ToolError(
                    "question: with the thread's context it fits no seat's context window; ask a shorter one"
                )
        initial = new_result(question, self.panel, options, checked)
        self.keep(initial)
        if follow is not None:
            self.threads[initial.id] = follow.context
        result = await self.run(ctx, initial, options)
        if follow is not None and follow.stored is not None:
            await self.store_follow_up(result, follow.context, follow.stored)
        return result

    async def run(self, ctx: Context, initial: DebateResult, options: DebateOptions) -> DebateResult:
        """Run the debate, reporting progress; the client's cancellation cancels it."""
        progress = Progress(ctx)
        try:
            events = cast(  # an async generator: closing it cancels the debate
                AsyncGenerator[DebateEvent, None],
                run_debate(initial.question, self.panel, self.provider, options, resume=initial),
            )
            async with contextlib.aclosing(events):  # a cancelled call closes it, and that cancels the debate
                async for event in events:
                    await progress.on(event)
                    if isinstance(event, DebateCompleted | DebateFailed):
                        self.keep(event.result)
                        return event.result
        except anyio.get_cancelled_exc_class():
            self.stopped(initial.id, DebateStatus.cancelled, "cancelled by the client")
            raise
        except Exception as exc:
            self.stopped(initial.id, DebateStatus.failed, f"internal error: {type(exc).__name__}")
            raise
        raise ToolError("the debate ended without a result")  # run_debate always ends with one: a bug

    def stopped(self, debate_id: str, status: DebateStatus, reason: str) -> None:
        """Record how a debate that did not run to its end stopped (its last checkpoint kept)."""
        latest = self.results.get(debate_id)
        if latest is not None and latest.status == DebateStatus.running:
            latest.status = status
            latest.reason = reason

    async def follow(self, debate_id: str) -> FollowUp:
        """The thread a follow-up of `debate_id` joins: one this process ran, else the local store's; or a tool
        error naming follow_up_of."""
        known = self.results.get(debate_id)
        if known is None or debate_id in self.in_store:
            return await self.follow_stored(debate_id)
        refused(known.status.value)
        earlier = self.threads.get(debate_id)
        turns = [*(earlier.turns if earlier else []), thread_turn(known)]
        if len(turns) >= self.settings.thread_max_depth:
            raise too_long(len(turns), self.settings.thread_max_depth)
        return FollowUp(ThreadContext(turns=turns, language=known.language), None)

    async def follow_stored(self, debate_id: str) -> FollowUp:
        """The thread of a finished debate in the local store, read as `consensus ask --follow-up` reads it."""
        url = self.settings.database_url
        path = sqlite_path(url)
        if path is not None and not await anyio.Path(path).exists():  # a lookup makes no store
            raise ToolError(f"follow_up_of: no debate {debate_id!r} here (none this process ran, and no store {path})")
        store = Store(url)
        try:
            await store.migrate()
            row = await store.get(debate_id)
            if row is None:
                raise ToolError(f"follow_up_of: no debate {debate_id!r} here (none this process ran, nor in {url})")
            refused(row.status)
            thread_id, count, turns = await store.thread_upto(row)
            if count >= self.settings.thread_max_depth:
                raise too_long(count, self.settings.thread_max_depth)
        except ToolError:
            raise
        except Exception as exc:  # an unreachable or broken store: the call fails, the session goes on
            log.warning("follow_up_of %s: cannot read the store %s: %r", debate_id, url, exc)
            raise ToolError(f"follow_up_of: cannot read the store {url}: {type(exc).__name__}") from None
        finally:
            await store.close()
        return FollowUp(ThreadContext(turns=turns, language=row.language), (thread_id, count, debate_id))

    async def store_follow_up(self, result: DebateResult, context: ThreadContext, place: tuple[str, int, str]) -> None:
        """Store the ended follow-up in its thread of the local store, as the service would have."""
        thread_id, position, follows = place
        store = Store(self.settings.database_url)
        try:
            request = {"question": result.question, "follow_up_of": follows, "thread_context": context.model_dump()}
            running = result.model_copy(update={"status": DebateStatus.running})  # stored as a run, then its end
            await store.create_debate(running, request, None, None, "mcp", 5.0, thread=(thread_id, position))
            await store.finish(result.id, result, [], "mcp")
            self.in_store.add(result.id)
        except Exception:  # noqa: BLE001 - logged: the debate ran and its result goes back all the same
            log.exception("debate %s: could not store it in thread %s", result.id, thread_id)
        finally:
            await store.close()

    async def get(self, ctx: Context, debate_id: str) -> DebateResult | None:
        return self.results.get(debate_id)


def refused(status: str) -> None:
    """A tool error when a debate of this status has no consensus to follow up."""
    if status == DebateStatus.running:
        raise ToolError("follow_up_of: that debate is still running; ask the follow-up once it ends")
    if status not in FINISHED:
        raise ToolError(f"follow_up_of: that debate has no consensus to follow ({status})")


def too_long(debates: int, limit: int) -> ToolError:
    return ToolError(f"follow_up_of: the thread already has {debates} debates; the limit is {limit}")


class ServiceDebates:
    """HTTP: debates started, run and stored by the service, as POST /v1/debates does; a caller reads only the
    debates of its own key (any, on an open loopback service without keys)."""

    def __init__(self, svc: AppServices) -> None:
        self.svc = svc

    def permalink(self, debate_id: str) -> str | None:
        base = (self.svc.settings.public_url or "").rstrip("/")
        return f"{base}/d/{debate_id}"

    async def ask(
        self, ctx: Context, question: str, rounds: int | None, language: str | None, follow_up_of: str | None
    ) -> DebateResult:
        who = caller(ctx)
        body = DebateRequest(question=question, rounds=rounds, language=language, follow_up_of=follow_up_of)
        try:
            row, _created, _token = await start_debate(self.svc, who, body, None)
        except ApiError as exc:  # 422 names the field (as "field: ..." here, like stdio's); 429 and 503 say when
            named = exc.param is not None and exc.status == 422 and not exc.message.startswith(f"{exc.param}:")
            raise ToolError(f"{exc.param}: {exc.message}" if named else exc.message) from None
        progress = Progress(ctx)
        ended = False
        try:
            async for event in self.svc.runner.follow(row.id, 0):
                if event is None:
                    continue  # a keep-alive
                await progress.on(event)
                if isinstance(event, DebateCompleted | DebateFailed):
                    ended = True
                    return event.result
            ended = True  # the stream ended without the debate: the server is shutting down, the debate goes on
            raise ToolError(f"the server is shutting down; the debate goes on: get_debate with id {row.id!r}")
        finally:
            if not ended:
                await self.cancel(row.id)

    async def cancel(self, debate_id: str) -> None:
        """The client went away or cancelled the call: cancel its debate, unless the server is stopping (then it
        stays running in the store, and whoever serves next resumes it)."""
        runner = self.svc.runner
        if not runner.accepting or runner.draining.is_set():
            return
        with anyio.CancelScope(shield=True):
            try:
                await runner.cancel(debate_id)
            except Exception:  # noqa: BLE001 - logged: the call is gone either way
                log.exception("debate %s: could not cancel it after its MCP call was cancelled", debate_id)

    async def get(self, ctx: Context, debate_id: str) -> DebateResult | None:
        who = caller(ctx)
        row = await self.svc.store.get(debate_id)
        if row is None or (row.key_id is not None and row.key_id != who.key_id):
            return None  # another key's debate is as unknown as a missing one
        return DebateResult.model_validate(row.result)


def caller(ctx: Context) -> Principal:
    """The caller McpEndpoint authenticated for the HTTP request that carries this call."""
    request = ctx.request_context.request
    who = request.scope.get(PRINCIPAL) if isinstance(request, Request) else None
    if not isinstance(who, Principal):
        raise ToolError("this request was not authenticated")  # McpEndpoint always sets it: a wiring bug
    return who


# -- the server --------------------------------------------------------------------------------------------------
def build_server(debates: Debates) -> MCPServer:
    """The MCP server over `debates`: the tools ask_panel and get_debate and the resource template debate://{id}."""
    with _root_logging_kept():
        server: MCPServer = MCPServer("consensus", instructions=INSTRUCTIONS, version="0.1.0")

    @server.tool(
        title="Ask the panel",
        annotations=ToolAnnotations(read_only_hint=True, open_world_hint=True, idempotent_hint=False),
    )
    async def ask_panel(
        question: Annotated[str, Field(description="the question for the panel")],
        ctx: Context,
        rounds: Annotated[
            int | None, Field(ge=0, le=10, description="most debate rounds after the openings (default: the panel's)")
        ] = None,
        language: Annotated[
            str | None, Field(max_length=35, description="answer language code, e.g. 'hi' (default: detected)")
        ] = None,
        follow_up_of: Annotated[
            str | None,
            Field(
                min_length=1,
                max_length=64,
                description="the id of an earlier, finished debate: this question continues its thread, and the "
                "panel sees the earlier questions and consensus",
            ),
        ] = None,
    ) -> Annotated[CallToolResult, PanelOutcome]:
        """Ask a panel of language models: they answer on their own, debate, and a synthesizer writes the
        consensus, checked against their answers. Returns the consensus, the agreement, each model's final
        answer and the dissent. With follow_up_of, a follow-up question in that debate's thread."""
        unknown = sorted(set(arguments(ctx)) - ARGUMENTS)
        if unknown:
            raise ToolError(f"unknown argument(s) {', '.join(map(repr, unknown))}; ask_panel takes {sorted(ARGUMENTS)}")
        result = await debates.ask(ctx, question, rounds, language or None, follow_up_of)
        return tool_result(result, debates.permalink(result.id))

    @server.tool(title="Read a debate", annotations=ToolAnnotations(read_only_hint=True, idempotent_hint=True))
    async def get_debate(
        id: Annotated[str, Field(min_length=1, max_length=64, description="the debate's id, from ask_panel")],
        ctx: Context,
    ) -> Annotated[CallToolResult, PanelOutcome]:
        """A debate's outcome (its state so far while it runs); the whole record is the resource debate://{id}."""
        result = await debates.get(ctx, id)
        if result is None:
            raise ToolError(f"id: no debate {id!r} here")
        o = outcome(result, debates.permalink(result.id))
        return CallToolResult(
            content=[TextContent(type="text", text=render(o))], structured_content=o.model_dump(mode="json")
        )

    @server.resource(
        "debate://{debate_id}", name="debate", title="A debate's whole record", mime_type="application/json"
    )
    async def debate_record(debate_id: str, ctx: Context) -> str:
        """The debate's DebateResult as JSON: every round, every answer, the consensus, usage and timing."""
        result = await debates.get(ctx, debate_id)
        if result is None:
            raise ResourceNotFoundError(f"no debate {debate_id!r} here")
        return result.model_dump_json()

    return server


def arguments(ctx: Context) -> Mapping[str, Any]:
    """The arguments the client sent, before the SDK's validation dropped any it does not know."""
    params = ctx.request_context.params or {}
    args = params.get("arguments") if isinstance(params, Mapping) else None
    return args if isinstance(args, Mapping) else {}


@contextlib.contextmanager
def _root_logging_kept() -> Iterator[None]:
    """MCPServer() calls logging.basicConfig (a rich handler on the root logger); the service's logs stay one
    JSON line each, and the CLI's stderr its own, so the root logger is put back as it was."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


async def serve_stdio(panel: Panel, provider: Any) -> None:
    """`consensus mcp`: serve the panel over stdio until the client closes it."""
    from consensus.providers.base import close_provider

    try:
        await build_server(LocalDebates(panel, provider)).run_stdio_async()
    finally:
        await close_provider(provider)


# -- the service's /mcp ------------------------------------------------------------------------------------------
class McpEndpoint:
    """/mcp on the service: streamable HTTP behind the API keys.

    Every HTTP request is authenticated by the same dependency as the REST API (service.deps.principal): a missing
    or wrong key is its 401, a key used from the wrong origin its 403, too many failures its 429, each in the API's
    error shape. The caller rides in the ASGI scope to the tools. The SDK's DNS-rebinding check stays on while the
    service is open on loopback (no key to stop a page that rebinds a name to 127.0.0.1); with a public bind the
    keys are the guard.
    """

    def __init__(self, svc: AppServices) -> None:
        self.svc = svc
        self.server = build_server(ServiceDebates(svc))
        self.app: ASGIApp = self.server.streamable_http_app(
            streamable_http_path="/mcp", transport_security=transport_security(svc), host=svc.settings.host
        )

    def sessions(self) -> contextlib.AbstractAsyncContextManager[None]:
        """The SDK's session manager, run for the life of the app (the host app's lifespan enters it)."""
        run: Callable[[], contextlib.AbstractAsyncContextManager[None]] = self.server.session_manager.run
        return run()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        h = request.headers
        # ApiError goes up to the app's handler, which answers in the API's error shape.
        scope[PRINCIPAL] = await principal(request, self.svc, h.get("authorization"), h.get("x-api-key"))
        await self.app(scope, receive, send)


def transport_security(svc: AppServices) -> TransportSecuritySettings:
    """Loopback: the SDK's DNS-rebinding check, for localhost names and the public URL's host; else off."""
    settings = svc.settings
    if not settings.loopback:
        return TransportSecuritySettings(enable_dns_rebinding_protection=False)
    hosts = ["127.0.0.1:*", "localhost:*", "[::1]:*"]
    origins = ["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"]
    if settings.public_url:
        from urllib.parse import urlsplit

        public = urlsplit(settings.public_url)
        if public.hostname:
            hosts += [public.netloc, f"{public.hostname}:*"]
            origins.append(f"{public.scheme}://{public.netloc}")
    return TransportSecuritySettings(enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=origins)
