"""Request and response bodies of the HTTP API."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError


class DebateRequest(BaseModel):
    """POST /v1/debates."""

    model_config = ConfigDict(extra="forbid", strict=True)  # "2", true or 2.0 for rounds is a 422, not 2 or 1
    question: str = Field(description="the question for the panel")
    rounds: int | None = Field(default=None, ge=0, le=10, description="most debate rounds after the openings")
    language: str | None = Field(
        default=None,
        max_length=35,
        description="answer language code, e.g. 'hi'; omitted, null or \"\": detected from the question",
    )
    follow_up_of: str | None = Field(
        default=None,
        max_length=64,
        description="id of an earlier, finished debate: this one continues its thread, and the panel sees it",
    )


class DebateAccepted(BaseModel):
    """202 answer to POST /v1/debates."""

    id: str
    status: str
    links: dict[str, str]


class ThreadDebate(BaseModel):
    """One debate of a thread: its own id, position, links (permalink included) and DebateResult."""

    id: str
    position: int
    follow_up_of: str | None
    links: dict[str, str]
    result: dict[str, Any]


class ThreadDebates(BaseModel):
    """GET /v1/threads/{id}: the thread's debates in order."""

    id: str
    data: list[ThreadDebate]


class DebateSummary(BaseModel):
    """One line of GET /v1/debates."""

    id: str
    status: str
    question: str
    language: str
    created_at: str
    links: dict[str, str]


class DebateList(BaseModel):
    """GET /v1/debates."""

    data: list[DebateSummary]


class ErrorBody(BaseModel):
    """OpenAI's error shape, used by every endpoint."""

    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "user", "assistant", "tool", "developer", "function"]
    content: str | list[dict[str, Any]] | None = None


NO_LOGPROBS = (
    "log-probabilities are not available: the consensus is written from several models' answers and has no "
    "token probabilities; evaluate with generative tasks (the answer text), not log-likelihood ones"
)


class ChatRequest(BaseModel):
    """POST /v1/chat/completions (the fields we use; other OpenAI fields are accepted and ignored)."""

    model_config = ConfigDict(extra="allow")
    model: str = Field(strict=True)
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = Field(default=False, strict=True)
    stream_options: dict[str, Any] | None = None
    rounds: int | None = Field(default=None, ge=0, le=10, strict=True)
    language: str | None = Field(default=None, max_length=35, strict=True)
    n: int = Field(default=1, ge=1, le=1, strict=True, description="one consensus: only 1")
    tool_choice: Literal["none", "auto"] | None = Field(
        default=None, description="the panel calls no tools: 'required' or a named function cannot be honoured"
    )
    logprobs: bool | None = Field(default=None, description=f"only false: {NO_LOGPROBS}")
    top_logprobs: int | None = Field(default=None, description=f"only 0: {NO_LOGPROBS}")

    @field_validator("logprobs", "top_logprobs")
    @classmethod
    def _no_logprobs(cls, v: bool | int | None) -> bool | int | None:
        if v:  # true, or a count above 0: a 400 naming the field, never a reply without what was asked for
            raise PydanticCustomError("logprobs_unavailable", NO_LOGPROBS)
        return v


class KeyInfo(BaseModel):
    id: str
    name: str
    prefix: str
    origins: list[str]
    created_at: str
    revoked: bool
