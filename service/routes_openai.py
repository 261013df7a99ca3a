"""An OpenAI-compatible endpoint: model `consensus` (the debate; the consensus is the assistant message) and the
comparison arms of consensus/arms.py (consensus-vote, consensus-single-<name>, consensus-sample-<name>-<k>)."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.sse import format_sse_event

from consensus.arms import MODEL_ID, Arm, ArmResult, arms_of, parse_arm, run_arm
from consensus.engine import DebateOptions, fits_some_seat, follow_up_language, validate_request
from consensus.errors import QuestionError, UnknownArmError
from consensus.language import detect_language
from consensus.types import (
    ConsensusCompleted,
    DebateCompleted,
    DebateFailed,
    DebateResult,
    ModelAnswer,
    ThreadContext,
    ThreadTurn,
    UsageTotals,
)
from service.deps import Caller, Services, admit
from service.routes_debates import ERRORS, refused, start_debate, too_long_with_thread, wait_or_503
from service.schemas import ChatMessage, ChatRequest, DebateRequest
from service.security import ApiError, Principal
from service.services import AppServices

router = APIRouter(prefix="/v1", tags=["openai"])
log = logging.getLogger(__name__)
PING_S = 15.0  # an SSE comment this often while an arm runs, so proxies keep the stream open


def _text(m: ChatMessage) -> str:
    if isinstance(m.content, str):
        return m.content
    if isinstance(m.content, list):
        return "\n".join(str(p.get("text", "")) for p in m.content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def thread_from(messages: list[ChatMessage]) -> tuple[str, ThreadContext | None]:
    """The question (the last user message) and the thread before it: each earlier user turn an earlier question,
    the assistant turn after it that question's consensus (a client resends the whole history each turn); system
    and developer messages are the caller's instruction, given to every seat as fenced data."""
    users = [i for i, m in enumerate(messages) if m.role == "user" and _text(m).strip()]
    if not users:
        raise ApiError(422, "messages must contain a user message with text", param="messages", code="invalid_value")
    last = users[-1]
    instruction = "\n\n".join(
        _text(m).strip() for m in messages if m.role in ("system", "developer") and _text(m).strip()
    )
    turns: list[ThreadTurn] = []
    asked: list[str] = []  # user turns not answered yet: consecutive ones are one question
    for m in messages[:last]:
        text = _text(m).strip()
        if not text:
            continue
        if m.role == "user":
            asked.append(text)
        elif m.role == "assistant":
            turns.append(ThreadTurn(question="\n\n".join(asked), consensus=text))
            asked = []
    question = "\n\n".join([*asked, _text(messages[last]).strip()])
    if not turns and not instruction:
        return question, None
    language = next((detect_language(t.question) for t in turns if t.question), None)
    return question, ThreadContext(turns=turns, instruction=instruction or None, language=language)


def extra(r: DebateResult) -> dict[str, Any]:
    """Each model's answer, the agreement and the debate id (the `consensus` field of the response)."""
    c = r.consensus
    return {
        "arm": MODEL_ID,
        "kind": "consensus",
        "debate_id": r.id,
        "status": r.status.value,
        "reason": r.reason,
        "language": r.language,
        "agreement": c.agreement if c else None,
        "majority": c.majority if c else None,
        "dissent": [d.model_dump() for d in c.dissent] if c else [],
        "synthesizer": c.synthesizer if c else None,
        "agreement_label": c.agreement_label if c else None,
        "missing": c.missing if c else [],
        "source": c.source if c else None,
        "fallback": c.fallback if c else None,
        "fallback_reason": c.fallback_reason if c else None,
        "claims": [k.model_dump() for k in c.claims] if c else [],
        "checks": [k.model_dump() for k in c.checks] if c else [],
        "agreement_method": r.rounds[-1].agreement.method if r.rounds and r.rounds[-1].agreement else None,
        "rounds": len(r.rounds),
        "answers": {name: _answer(a) for name, a in r.answers.items()},
        "links": {"self": f"/v1/debates/{r.id}", "permalink": f"/d/{r.id}"},
    }


def _answer(a: ModelAnswer) -> dict[str, Any]:
    """One answer as the `consensus` field lists it, for the debate and the arms alike."""
    return {
        "model": a.model,
        "answer": a.answer,
        "final_answer": a.final_answer,
        "confidence": a.confidence,
        "error": a.error.model_dump() if a.error else None,
    }


def _usage(u: UsageTotals) -> dict[str, int]:
    """OpenAI's `usage` of a debate's or an arm's totals."""
    return {"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens, "total_tokens": u.total_tokens}


def arm_extra(r: ArmResult) -> dict[str, Any]:
    """Which arm ran, its answers, the vote and the calls (the `consensus` field of an arm's response)."""
    vote = r.vote
    return {
        "arm": r.arm,
        "kind": r.kind,
        "status": r.status.value,
        "reason": r.reason,
        "language": r.language,
        "tie": r.tie,
        "majority": r.majority,
        "chosen": r.chosen,
        "agreement": vote.score if vote else None,
        "votes": [c.model_dump() for c in vote.clusters] if vote else [],
        "calls": r.usage.llm_calls,
        "cost_usd": r.usage.cost_usd,
        "missing": [a.panelist for a in r.answers if not a.ok],
        "answers": {a.panelist: _answer(a) for a in r.answers},
    }


def _describe(arm: Arm, panel: list[str]) -> dict[str, Any]:
    about: dict[str, Any] = {"id": arm.id, "object": "model", "created": 0, "owned_by": "consensus", "arm": arm.kind}
    if arm.kind in ("consensus", "vote"):
        about["panel"] = panel
    else:
        about["panelist"] = arm.seat
    if arm.kind == "sample":
        about["k"] = arm.k
    return about


@router.get("/models")
async def list_models(svc: Services, who: Caller) -> dict[str, Any]:
    """`consensus` (the debate on the configured panel) and its comparison arms; any consensus-sample-<name>-<k>
    with k in range is served, not only the k listed."""
    panel = [s.model for s in svc.panel.panelists]
    return {"object": "list", "data": [_describe(arm, panel) for arm in arms_of(svc.panel)]}


def _as_messages_error(exc: ApiError) -> ApiError:
    """This endpoint has no `question` field: the question is the last user message."""
    if exc.param == "question":
        exc.param = "messages"
        exc.message = (
            "messages: the last user message (with the conversation before it, as the panel sees it) "
            + exc.message.removeprefix("question: ")
        )
    return exc


@router.post("/chat/completions", responses=ERRORS)
async def chat_completions(body: ChatRequest, svc: Services, who: Caller, request: Request) -> Any:
    """Run a debate for the last user message and answer with its consensus; or run the comparison arm the model
    names."""
    try:
        arm = parse_arm(body.model, svc.panel)
    except UnknownArmError as exc:
        raise ApiError(404, str(exc), type_="not_found_error", param="model", code="model_not_found") from None
    question, context = thread_from(body.messages)
    if arm.kind != "consensus":
        return await _arm_completion(svc, who, body, arm, question, context, request)
    req = DebateRequest(question=question, rounds=body.rounds, language=body.language)
    try:
        row, _, token = await start_debate(svc, who, req, None, None, context)
    except ApiError as exc:
        raise _as_messages_error(exc) from None
    created = int(time.time())
    cid = f"chatcmpl-{row.id}"
    given = {"X-Cancel-Token": token} if token else {}  # a publishable key's caller can cancel it (debates API)
    if body.stream:
        include_usage = bool((body.stream_options or {}).get("include_usage"))
        return StreamingResponse(
            _stream(svc, row.id, cid, created, include_usage), media_type="text/event-stream", headers=given
        )
    result = await wait_or_503(svc, row.id)
    if result is None or result.consensus is None:
        reason = result.reason if result else "the debate vanished"
        raise ApiError(502, f"the panel could not answer: {reason}", type_="upstream_error", code="debate_failed")
    return JSONResponse(
        {
            "id": cid,
            "object": "chat.completion",
            "created": created,
            "model": MODEL_ID,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": result.consensus.answer},
                    "finish_reason": "stop",
                    "logprobs": None,
                }
            ],
            "usage": _usage(result.usage),
            "consensus": extra(result),
        },
        headers=given,
    )


def _chunk(cid: str, created: int, model: str, delta: dict[str, Any], finish: str | None = None, **more: Any) -> bytes:
    """One `chat.completion.chunk` as an SSE event."""
    body = {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
        **more,
    }
    return format_sse_event(data_str=json.dumps(body, ensure_ascii=False))


def _pieces(text: str) -> list[str]:
    """A finished answer in word-sized pieces, for a stream."""
    return re.findall(r"\S+\s*|\s+", text)


def _stream_error(reason: str, code: str, extra_: dict[str, Any] | None) -> bytes:
    """An error after the 200 went out, as OpenAI's streams send it (the SDK raises APIError), never as text."""
    error = {
        "message": f"the panel could not answer: {reason}",
        "type": "upstream_error",
        "param": None,
        "code": code,
        "consensus": extra_,
    }
    return format_sse_event(data_str=json.dumps({"error": error}, ensure_ascii=False))


async def _disconnected(request: Request) -> None:
    """Return once the client has gone away. The body is read already, so the next ASGI message is
    http.disconnect: nothing is polled."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _usage_chunk(cid: str, created: int, model: str, usage: dict[str, int]) -> bytes:
    body = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model, "choices": []}
    return format_sse_event(data_str=json.dumps({**body, "usage": usage}))


async def _arm_completion(
    svc: AppServices,
    who: Principal,
    body: ChatRequest,
    arm: Arm,
    question: str,
    context: ThreadContext | None,
    request: Request,
) -> Any:
    """Run a comparison arm (consensus/arms.py) and answer with its reply; nothing is stored."""
    if body.rounds is not None:
        raise ApiError(
            422,
            f"rounds: {arm.id} has no debate rounds; rounds applies to model {MODEL_ID!r}",
            param="rounds",
            code="invalid_value",
        )
    try:
        q, code, _ = validate_request(question, svc.panel, DebateOptions(language=body.language))
    except QuestionError as exc:
        raise _as_messages_error(refused(exc)) from None
    if context is not None:  # as start_debate checks a threaded debate, on the seats this arm asks
        if code is None and context.language:
            code = follow_up_language(q, context.language)
        asked = (
            svc.panel
            if arm.kind == "vote"
            else svc.panel.model_copy(update={"panelists": [svc.panel.seat(str(arm.seat))]})
        )
        if not fits_some_seat(q, asked, code or "en"):
            raise _as_messages_error(too_long_with_thread())
    admit(svc, who)  # the same per-key rate limit and capacity as a debate; the slot is held while the arm runs
    try:
        task = asyncio.create_task(
            run_arm(arm, question, svc.panel, svc.runner.provider, language=body.language, thread=context)
        )
    except BaseException:
        svc.runner.unreserve()
        raise
    task.add_done_callback(lambda _: svc.runner.unreserve())
    created, cid = int(time.time()), f"chatcmpl-{uuid.uuid4().hex}"
    if body.stream:
        include_usage = bool((body.stream_options or {}).get("include_usage"))
        return StreamingResponse(_stream_arm(task, arm.id, cid, created, include_usage), media_type="text/event-stream")
    gone = asyncio.create_task(_disconnected(request))
    try:
        await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        if not task.done():  # the client went away (or this handler was cancelled): stop the calls
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)  # the slot comes back once they have stopped
    if task.cancelled():
        return Response(status_code=499)  # nobody is left to read it
    result = task.result()
    if result.reply is None:
        raise ApiError(502, f"the panel could not answer: {result.reason}", type_="upstream_error", code="arm_failed")
    return JSONResponse(
        {
            "id": cid,
            "object": "chat.completion",
            "created": created,
            "model": arm.id,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": result.reply},
                    "finish_reason": "stop",
                    "logprobs": None,
                }
            ],
            "usage": _usage(result.usage),
            "consensus": arm_extra(result),
        }
    )


async def _stream_arm(
    task: asyncio.Task[ArmResult], model: str, cid: str, created: int, include_usage: bool
) -> AsyncIterator[bytes]:
    """An arm's reply as chat.completion.chunk events: the role at once, pings while the calls run, then the reply
    in pieces (it exists only once the vote is counted), the `consensus` field on the last chunk, usage, [DONE]."""
    yield _chunk(cid, created, model, {"role": "assistant", "content": ""})
    try:
        while not task.done():
            await asyncio.wait({task}, timeout=PING_S)
            if not task.done():
                yield format_sse_event(comment="ping")
    finally:
        if not task.done():  # the client disconnected: stop the calls
            task.cancel()
    try:
        result = task.result()
    except Exception as exc:  # a bug, not an upstream failure: logged, and said as an error, never as an answer
        log.exception("arm %s failed", model)
        yield _stream_error(f"{type(exc).__name__}: {exc}", "arm_failed", None)
        yield format_sse_event(data_str="[DONE]")
        return
    if result.reply is not None:
        for piece in _pieces(result.reply):
            yield _chunk(cid, created, model, {"content": piece})
        yield _chunk(cid, created, model, {}, "stop", consensus=arm_extra(result))
    else:
        yield _stream_error(str(result.reason), "arm_failed", arm_extra(result))
    if include_usage:
        yield _usage_chunk(cid, created, model, _usage(result.usage))
    yield format_sse_event(data_str="[DONE]")


async def _stream(
    svc: AppServices, debate_id: str, cid: str, created: int, include_usage: bool
) -> AsyncIterator[bytes]:
    def chunk(delta: dict[str, Any], finish: str | None = None, **more: Any) -> bytes:
        return _chunk(cid, created, MODEL_ID, delta, finish, **more)

    yield chunk({"role": "assistant", "content": ""})
    # The synthesizer's tokens are not streamed: a stream cannot take back text, and a consensus is shown only once
    # it has passed the faithfulness checks. The checked consensus goes out as soon as it exists, in pieces.
    sent = ""
    final: DebateResult | None = None
    async for e in svc.runner.follow(debate_id, 0):
        if e is None:
            yield format_sse_event(comment="ping")
        elif isinstance(e, ConsensusCompleted) and not sent:
            for piece in _pieces(e.consensus.answer):
                sent += piece
                yield chunk({"content": piece})
        elif isinstance(e, DebateCompleted | DebateFailed):
            final = e.result
    answer = final.consensus.answer if final is not None and final.consensus is not None else None
    if final is not None and answer is not None:
        if not sent and answer:
            yield chunk({"content": answer})  # a consensus that no consensus.completed event carried (a fallback)
        yield chunk({}, "stop", consensus=extra(final))
    else:
        # The 200 is long gone: say it the way OpenAI's streams do, as an error object (the SDK raises APIError),
        # never as assistant text a client would show as the answer.
        reason = final.reason if final else "the debate ended without a result"
        yield _stream_error(str(reason), "debate_failed", extra(final) if final else None)
    if include_usage and final is not None:
        yield _usage_chunk(cid, created, MODEL_ID, _usage(final.usage))
    yield format_sse_event(data_str="[DONE]")
