"""An OpenAI-compatible endpoint: model `consensus`; the consensus is the assistant message."""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.sse import format_sse_event

from consensus.language import detect_language
from consensus.types import (
    ConsensusCompleted,
    DebateCompleted,
    DebateFailed,
    DebateResult,
    ThreadContext,
    ThreadTurn,
)
from service.deps import Caller, Services
from service.routes_debates import ERRORS, start_debate, wait_or_503
from service.schemas import ChatMessage, ChatRequest, DebateRequest
from service.security import ApiError
from service.services import AppServices

router = APIRouter(prefix="/v1", tags=["openai"])
MODEL_ID = "consensus"


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
        "answers": {
            name: {
                "model": a.model,
                "answer": a.answer,
                "final_answer": a.final_answer,
                "confidence": a.confidence,
                "error": a.error.model_dump() if a.error else None,
            }
            for name, a in r.answers.items()
        },
        "links": {"self": f"/v1/debates/{r.id}", "permalink": f"/d/{r.id}"},
    }


def _usage(r: DebateResult) -> dict[str, int]:
    u = r.usage
    return {"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens, "total_tokens": u.total_tokens}


@router.get("/models")
async def list_models(svc: Services, who: Caller) -> dict[str, Any]:
    """The one model this endpoint serves: `consensus` (the configured panel)."""
    return {
        "object": "list",
        "data": [
            {
                "id": MODEL_ID,
                "object": "model",
                "created": 0,
                "owned_by": "consensus",
                "panel": [s.model for s in svc.panel.panelists],
            }
        ],
    }


@router.post("/chat/completions", responses=ERRORS)
async def chat_completions(body: ChatRequest, svc: Services, who: Caller) -> Any:
    """Run a debate for the last user message and answer with its consensus."""
    if body.model != MODEL_ID:
        raise ApiError(
            404, f"model {body.model!r} does not exist; use 'consensus'", param="model", code="model_not_found"
        )
    question, context = thread_from(body.messages)
    req = DebateRequest(question=question, rounds=body.rounds, language=body.language)
    try:
        row, _, token = await start_debate(svc, who, req, None, None, context)
    except ApiError as exc:
        if exc.param == "question":  # this endpoint has no such field: the question is the last user message
            exc.param = "messages"
            exc.message = (
                "messages: the last user message (with the conversation before it, as the panel sees it) "
                + exc.message.removeprefix("question: ")
            )
        raise
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
            "usage": _usage(result),
            "consensus": extra(result),
        },
        headers=given,
    )


async def _stream(
    svc: AppServices, debate_id: str, cid: str, created: int, include_usage: bool
) -> AsyncIterator[bytes]:
    def chunk(delta: dict[str, Any], finish: str | None = None, **more: Any) -> bytes:
        body = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": MODEL_ID,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
            **more,
        }
        return format_sse_event(data_str=json.dumps(body, ensure_ascii=False))

    yield chunk({"role": "assistant", "content": ""})
    # The synthesizer's tokens are not streamed: a stream cannot take back text, and a consensus is shown only once
    # it has passed the faithfulness checks. The checked consensus goes out as soon as it exists, in pieces.
    sent = ""
    final: DebateResult | None = None
    async for e in svc.runner.follow(debate_id, 0):
        if e is None:
            yield format_sse_event(comment="ping")
        elif isinstance(e, ConsensusCompleted) and not sent:
            for piece in re.findall(r"\S+\s*|\s+", e.consensus.answer):
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
        error = {
            "message": f"the panel could not answer: {reason}",
            "type": "upstream_error",
            "param": None,
            "code": "debate_failed",
            "consensus": extra(final) if final else None,
        }
        yield format_sse_event(data_str=json.dumps({"error": error}, ensure_ascii=False))
    if include_usage and final is not None:
        yield format_sse_event(
            data_str=json.dumps(
                {
                    "id": cid,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": MODEL_ID,
                    "choices": [],
                    "usage": _usage(final),
                }
            )
        )
    yield format_sse_event(data_str="[DONE]")
