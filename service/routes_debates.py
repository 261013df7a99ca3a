"""The debates API: create (202 / wait / SSE), read, list, cancel, follow events."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse, Response
from fastapi.sse import EventSourceResponse, format_sse_event

from consensus.engine import (
    DebateOptions,
    fits_some_seat,
    follow_up_language,
    new_result,
    validate_request,
)
from consensus.errors import QuestionError
from consensus.types import AnswerDelta, ConsensusDelta, DebateEvent, ThreadContext
from service.deps import Caller, Services, admit
from service.fanout import Draining
from service.schemas import (
    DebateAccepted,
    DebateList,
    DebateRequest,
    DebateSummary,
    ErrorResponse,
    ThreadDebate,
    ThreadDebates,
)
from service.security import ApiError, Principal, hash_key
from service.services import AppServices
from service.store import FINISHED, MAX_SEQ, DebateRow

router = APIRouter(prefix="/v1", tags=["debates"])
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (401, 403, 404, 409, 413, 422, 429, 503)
}


def links(debate_id: str) -> dict[str, str]:
    return {
        "self": f"/v1/debates/{debate_id}",
        "events": f"/v1/debates/{debate_id}/events",
        "cancel": f"/v1/debates/{debate_id}/cancel",
        "permalink": f"/d/{debate_id}",
    }


def wants_sse(accept: str | None) -> bool:
    """Whether the client asks for the events as SSE: `text/event-stream` is acceptable (q > 0) and JSON (or a
    wildcard that covers it) is not preferred over it. A tie is SSE: whoever names the stream wants it."""
    sse = json_ = 0.0
    for item in (accept or "").split(","):
        media, *params = (p.strip() for p in item.split(";"))
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = min(max(float(value), 0.0), 1.0)
                except ValueError:
                    q = 0.0  # an unreadable weight accepts nothing
        media = media.lower()
        if media == "text/event-stream":
            sse = max(sse, q)
        elif media in ("application/json", "application/*", "*/*"):
            json_ = max(json_, q)
    return sse > 0 and sse >= json_


class FollowUp:
    """Where a follow-up goes: its thread, its position there, what the panel is told of it, its language, and the
    thread's cancel-token hash (a publishable key's thread keeps one token)."""

    def __init__(
        self, thread_id: str, position: int, context: ThreadContext, language: str, token_hash: str | None
    ) -> None:
        self.thread_id = thread_id
        self.position = position
        self.context = context
        self.language = language
        self.token_hash = token_hash


def _refuse(status: int, message: str, code: str, param: str = "follow_up_of") -> ApiError:
    type_ = "permission_error" if status == 403 else "not_found_error" if status == 404 else "invalid_request_error"
    return ApiError(status, message, type_=type_, param=param, code=code)


async def resolve_follow_up(
    svc: AppServices, who: Principal, debate_id: str, cancel_token: str | None, question: str
) -> FollowUp:
    """The thread a follow-up of `debate_id` joins, or the 4xx saying why it cannot (nothing is stored)."""
    row = await svc.store.get(debate_id)
    if row is None:
        raise _refuse(404, "follow_up_of: no debate with this id", "not_found")
    # A thread's context is its starter's: another key gets no follow-up, and learns nothing of the thread.
    if row.key_id is not None and row.key_id != who.key_id:
        raise _refuse(403, "follow_up_of: only the API key that started this thread can continue it", "not_owner")
    wanted = (row.request or {}).get("cancel_token_hash")
    if wanted and not (cancel_token and hmac.compare_digest(hash_key(cancel_token), wanted)):
        raise _refuse(
            403,
            "this thread was started with a publishable key: a follow-up needs the X-Cancel-Token its starter was "
            "given",
            "cancel_token_required",
            param="X-Cancel-Token",
        )
    if row.status == "running":
        raise _refuse(409, "follow_up_of: that debate is still running; ask the follow-up once it ends", "not_finished")
    if row.status not in FINISHED:
        raise _refuse(422, f"follow_up_of: that debate has no consensus to follow ({row.status})", "not_answered")
    thread_id, count, turns = await svc.store.thread_upto(row)
    if count >= svc.settings.thread_max_depth:
        raise _refuse(
            422,
            f"follow_up_of: the thread already has {count} debates; the limit is {svc.settings.thread_max_depth}",
            "thread_too_long",
        )
    language = follow_up_language(question, row.language)
    return FollowUp(thread_id, count, ThreadContext(turns=turns, language=row.language), language, wanted)


def refused(exc: QuestionError) -> ApiError:
    """A bad question, language or rounds as the 422 naming its field (the debates API and the OpenAI endpoint)."""
    message = exc.message if exc.field in exc.message else f"{exc.field}: {exc.message}"
    return ApiError(422, message, param=exc.field, code="invalid_value")


def too_long_with_thread() -> ApiError:
    """A question that, with its thread's context, fits no seat's context window (the OpenAI endpoint's too)."""
    return ApiError(
        422,
        "question: with the thread's context it fits no seat's context window; ask a shorter question",
        param="question",
        code="context_too_long",
    )


async def start_debate(
    svc: AppServices,
    who: Principal,
    body: DebateRequest,
    idempotency_key: str | None,
    cancel_token: str | None = None,
    context: ThreadContext | None = None,
) -> tuple[DebateRow, bool, str | None]:
    """Validate, store and launch a debate (or return the one an Idempotency-Key already made); also the cancel
    token a publishable key's caller gets (None otherwise, for a replay and for a follow-up, which keeps its
    thread's token). `context`: a thread given whole by the caller (the OpenAI endpoint), stored nowhere else."""
    request = body.model_dump()
    digest = hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()
    scope = None
    if idempotency_key is not None:
        if not 1 <= len(idempotency_key) <= 200:
            raise ApiError(422, "Idempotency-Key must be 1 to 200 characters", param="Idempotency-Key")
        scope = f"{who.bucket}:{idempotency_key}"
        existing = await svc.store.find_idempotent(scope)
        if existing is not None:
            return _same_request(existing, digest), False, None
    options = DebateOptions(rounds=body.rounds, language=body.language, thread=context)
    try:
        checked = validate_request(body.question, svc.panel, options)  # bad input is a 422 whatever the load
    except QuestionError as exc:
        raise refused(exc) from None
    follow = None
    if body.follow_up_of is not None:
        follow = await resolve_follow_up(svc, who, body.follow_up_of, cancel_token, checked[0])
        options.thread = follow.context
        checked = (checked[0], checked[1] or follow.language, checked[2])
    elif context is not None and context.language and checked[1] is None:
        checked = (checked[0], follow_up_language(checked[0], context.language), checked[2])
    if options.thread is not None and not fits_some_seat(checked[0], svc.panel, checked[1] or "en"):
        raise too_long_with_thread()
    admit(svc, who)  # 429 and 503 come before the costly work (language detection, the store): refusals stay fast
    # Everyone on a site holds its publishable key: cancelling takes this token too, given to this caller only.
    token = secrets.token_urlsafe(24) if who.shared and follow is None else None
    token_hash = hash_key(token) if token else follow.token_hash if follow else None
    stored = {**request, "digest": digest, **({"cancel_token_hash": token_hash} if token_hash else {})}
    if options.thread is not None:
        stored["thread_context"] = options.thread.model_dump()  # a resume after a restart sees the thread too
    try:
        result = new_result(body.question, svc.panel, options, checked)
        deadline = svc.runner.deadline_for(result)
        leased_at = time.monotonic()
        row, created = await svc.store.create_debate(
            result,
            stored,
            who.key_id,
            scope,
            svc.settings.replica_id,
            svc.settings.lease_s,
            deadline,
            (follow.thread_id, follow.position) if follow else None,
        )
        if not created:
            return _same_request(row, digest), False, None
        svc.runner.launch(result, leased_at=leased_at, deadline_at=deadline, thread=options.thread)
    finally:
        svc.runner.unreserve()
    return row, True, token


async def wait_or_503(svc: AppServices, debate_id: str) -> Any:
    """The finished result; a 503 naming where to look when the server shuts down meanwhile."""
    try:
        return await svc.runner.wait(debate_id)
    except Draining:
        raise ApiError(
            503,
            f"the server is shutting down; the debate goes on: GET /v1/debates/{debate_id}",
            type_="server_error",
            param=None,
            code="shutting_down",
            headers={"Retry-After": "2", "Location": f"/v1/debates/{debate_id}"},
        ) from None


def _same_request(row: DebateRow, digest: str) -> DebateRow:
    if row.request.get("digest") != digest:
        raise ApiError(
            409,
            "this Idempotency-Key was used for a different request",
            param="Idempotency-Key",
            code="idempotency_conflict",
        )
    return row


@router.post(
    "/debates",
    status_code=202,
    response_model=DebateAccepted,
    responses={**ERRORS, 200: {"description": "the finished DebateResult (wait=true)"}},
)
async def create_debate(
    body: DebateRequest,
    svc: Services,
    who: Caller,
    wait: Annotated[bool, Query(description="answer with the finished DebateResult")] = False,
    accept: Annotated[str | None, Header()] = None,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
    x_cancel_token: Annotated[str | None, Header(max_length=200)] = None,
) -> Any:
    """Start a debate: 202 with links, `?wait=true` for the result, or SSE with Accept: text/event-stream. With
    `follow_up_of`, it continues that finished debate's thread (a publishable key's caller sends the thread's
    X-Cancel-Token)."""
    row, _created, token = await start_debate(svc, who, body, idempotency_key, x_cancel_token)
    given = {"X-Cancel-Token": token} if token else {}
    if wants_sse(accept):
        return EventSourceResponse(sse_stream(svc, row.id, 0), headers=given)
    if wait:
        result = await wait_or_503(svc, row.id)
        finished = result.model_dump_json() if result else "{}"  # pydantic's encoder: no dict, no second json pass
        return Response(finished, status_code=200, media_type="application/json", headers=given)
    return JSONResponse(
        DebateAccepted(id=row.id, status=row.status, links=links(row.id)).model_dump(),
        status_code=202,
        headers={"Location": f"/v1/debates/{row.id}", **given},
    )


@router.get("/debates", response_model=DebateList, responses=ERRORS)
async def list_debates(svc: Services, who: Caller, limit: Annotated[int, Query(ge=1, le=200)] = 20) -> DebateList:
    """Recent debates, newest first; with API keys, only those started with the caller's key. A publishable
    (origin-bound) key may not list: every visitor of its site holds it, and would see every other's questions."""
    if who.shared:
        raise ApiError(
            403,
            "a publishable key (one with origins) cannot list debates: every visitor of its site holds "
            "it; list with a server-side key",
            type_="permission_error",
            param="authorization",
            code="listing_not_allowed",
        )
    rows = await svc.store.recent(limit, who.key_id)
    return DebateList(
        data=[
            DebateSummary(
                id=r.id,
                status=r.status,
                question=r.question,
                language=r.language,
                created_at=r.created_at.isoformat(),
                links=links(r.id),
            )
            for r in rows
        ]
    )


async def get_row(svc: AppServices, debate_id: str) -> DebateRow:
    row: DebateRow | None = await svc.store.get(debate_id)
    if row is None:
        raise ApiError(404, "no debate with this id", type_="not_found_error", param="id", code="not_found")
    return row


@router.get(
    "/debates/{debate_id}", responses={**ERRORS, 200: {"description": "a DebateResult (partial while running)"}}
)
async def read_debate(debate_id: str, svc: Services, who: Caller) -> JSONResponse:
    """The debate's current state, or its final result."""
    row = await get_row(svc, debate_id)
    return JSONResponse(row.result)


@router.get("/threads/{thread_id}", response_model=ThreadDebates, responses=ERRORS)
async def read_thread(thread_id: str, svc: Services, who: Caller) -> ThreadDebates:
    """A thread's debates in order, each with its own id, result and permalink; any of its debates' ids finds it."""
    row = await svc.store.get(thread_id)
    rows = await svc.store.thread(row.thread_id or row.id) if row is not None else []
    if not rows:
        raise ApiError(404, "no thread with this id", type_="not_found_error", param="id", code="not_found")
    data = []
    for i, r in enumerate(rows):
        data.append(
            ThreadDebate(
                id=r.id,
                position=r.thread_index or 0,
                follow_up_of=(r.request or {}).get("follow_up_of") if i else None,
                links=links(r.id),
                result=r.result,
            )
        )
    return ThreadDebates(id=rows[0].thread_id or rows[0].id, data=data)


@router.post("/debates/{debate_id}/cancel", responses={**ERRORS, 200: {"description": "the cancelled DebateResult"}})
async def cancel_debate(
    debate_id: str, svc: Services, who: Caller, x_cancel_token: Annotated[str | None, Header(max_length=200)] = None
) -> JSONResponse:
    """Cancel a running debate; 409 when it already ended, 403 for a key other than the one that started it
    (and, for a publishable key, without the X-Cancel-Token its starter was given)."""
    row = await get_row(svc, debate_id)
    if row.key_id is not None and row.key_id != who.key_id:  # ids travel in share links; cancelling is the owner's
        raise ApiError(
            403,
            "only the API key that started this debate can cancel it",
            type_="permission_error",
            param="id",
            code="not_owner",
        )
    wanted = (row.request or {}).get("cancel_token_hash")
    if wanted and not (x_cancel_token and hmac.compare_digest(hash_key(x_cancel_token), wanted)):
        raise ApiError(
            403,
            "this debate was started with a publishable key: cancelling needs the X-Cancel-Token its starter was given",
            type_="permission_error",
            param="X-Cancel-Token",
            code="cancel_token_required",
        )
    if row.status != "running" or not await svc.runner.cancel(debate_id):
        raise ApiError(409, f"the debate already ended ({row.status})", param="id", code="not_running")
    row = await get_row(svc, debate_id)
    return JSONResponse(row.result)


@router.get(
    "/debates/{debate_id}/events",
    responses={**ERRORS, 200: {"content": {"text/event-stream": {}}, "description": "the debate's events as SSE"}},
)
async def debate_events(
    debate_id: str,
    request: Request,
    svc: Services,
    who: Caller,
    last_event_id: Annotated[str | None, Header()] = None,
    after: Annotated[
        int | None, Query(ge=0, le=MAX_SEQ, description="replay events after this id (like Last-Event-ID)")
    ] = None,
) -> EventSourceResponse:
    """Server-Sent Events: what happened so far, then live; `Last-Event-ID` resumes after an event."""
    await get_row(svc, debate_id)
    start = after or 0
    if last_event_id:
        try:
            start = max(0, int(last_event_id))
        except ValueError:
            start = -1
        if not 0 <= start <= MAX_SEQ:  # refused before the 200: an EventSource stops instead of retrying forever
            raise ApiError(
                422,
                f"Last-Event-ID must be an event id (an integer from 0 to {MAX_SEQ})",
                param="Last-Event-ID",
                code="invalid_value",
            )
    return EventSourceResponse(sse_stream(svc, debate_id, start))


async def sse_stream(svc: AppServices, debate_id: str, after: int) -> AsyncIterator[bytes]:
    """SSE frames of a debate's events; a comment line keeps idle connections open."""
    yield format_sse_event(retry=2000, comment="consensus debate events")
    # An SSE id is a resume point, so it names the last *stored* event: token deltas are never stored, and carry
    # the id of the event before them. A client resuming after a delta then replays from the store everything
    # stored since, even an end that another replica stored with a seq below the deltas' (a remote cancel).
    cursor = after
    async for batch in svc.runner.follow_batches(debate_id, after):
        if batch is None:
            yield format_sse_event(comment="ping")
            continue
        frames = []
        for e in batch:
            if not isinstance(e, AnswerDelta | ConsensusDelta):
                cursor = e.seq
            frames.append(format_sse_event(id=str(cursor), event=e.type, data_str=event_json(e)))
        yield b"".join(frames)  # the events already waiting, in one write


def event_json(e: DebateEvent) -> str:
    """An event as JSON: token deltas compact, every other event whole (nulls kept, as in the API)."""
    if isinstance(e, AnswerDelta | ConsensusDelta):
        out: dict[str, Any] = {
            "type": e.type,
            "seq": e.seq,
            "debate_id": e.debate_id,
            "round": e.round,
            "panelist": e.panelist,
            "delta": e.delta,
        }
        if e.data:  # {"restart": true}: this stream starts over (a retried call, a fallback synthesizer)
            out["data"] = e.data
        return json.dumps(out, ensure_ascii=False)
    return e.wire_json()
