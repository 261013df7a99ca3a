"""Request and response bodies of the HTTP API."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class DebateRequest(BaseModel):
    """POST /v1/debates."""

    model_config = ConfigDict(extra="forbid")
    question: str = Field(description="the question for the panel")
    rounds: int | None = Field(default=None, ge=0, le=10, description="most debate rounds after the openings")
    language: str | None = Field(default=None, max_length=35, description="answer language code, e.g. 'hi'")


class DebateAccepted(BaseModel):
    """202 answer to POST /v1/debates."""

    id: str
    status: str
    links: dict[str, str]


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
    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[dict[str, Any]] | None = None


class ChatRequest(BaseModel):
    """POST /v1/chat/completions (the fields we use; other OpenAI fields are accepted and ignored)."""

    model_config = ConfigDict(extra="allow")
    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    rounds: int | None = Field(default=None, ge=0, le=10)
    language: str | None = Field(default=None, max_length=35)


class KeyInfo(BaseModel):
    id: str
    name: str
    prefix: str
    origins: list[str]
    created_at: str
    revoked: bool
