"""Pydantic models for panels, answers, rounds, the consensus, results and events."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    TypeAdapter,
    ValidationInfo,
    field_validator,
    model_serializer,
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Message(BaseModel):
    """A chat message sent to a model."""

    role: str
    content: str


# LiteLLM prefixes whose servers speak OpenAI's chat-completions API at api_base: `transport = "auto"` sends such a
# seat's calls through the lean client (no provider-specific parameter mapping is needed there).
OPENAI_COMPATIBLE_PREFIXES = ("openai", "hosted_vllm")


class Seat(_Strict):
    """One model seat: a panelist, or a synthesizer with its own model."""

    name: str = Field(min_length=1, max_length=64)
    model: str = Field(min_length=1, description="any LiteLLM model id, or local/smollm2")
    api_base: str | None = None
    transport: Literal["auto", "litellm", "openai-compatible"] = Field(
        default="auto",
        description="auto: the lean client for a seat with api_base on an OpenAI-compatible prefix (openai/, "
        "hosted_vllm/), LiteLLM for the rest; litellm (any provider); or openai-compatible: the lean client",
    )
    api_key_env: str | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1, le=100_000)
    timeout_s: float | None = Field(default=None, gt=0, le=3600)
    seed: int | None = None
    persona: str | None = Field(default=None, max_length=2000, description="extra system instructions")
    context_window: int | None = Field(default=None, ge=256, description="prompt budget in tokens")
    input_cost_per_token: float | None = Field(default=None, ge=0)
    output_cost_per_token: float | None = Field(default=None, ge=0)

    @field_validator("transport")
    @classmethod
    def _lean_client_needs_a_server(cls, value: str, info: ValidationInfo) -> str:
        if value == "openai-compatible":
            if str(info.data.get("model", "")).startswith("local/"):
                raise ValueError("the embedded local model runs in-process: leave transport at 'auto'")
            base = str(info.data.get("api_base") or "")
            if not base.startswith(("http://", "https://")):
                raise ValueError(
                    "'openai-compatible' needs api_base, the server's http(s) URL (e.g. http://127.0.0.1:8000/v1)"
                )
        return value

    @property
    def wire_model(self) -> str:
        """The model name an openai-compatible server is sent: the model without its 'openai/' (or 'hosted_vllm/')
        prefix; any other name as written."""
        head, _, rest = self.model.partition("/")
        return rest if rest and head in OPENAI_COMPATIBLE_PREFIXES else self.model

    @property
    def provider(self) -> str:
        """The LiteLLM provider prefix (openai, anthropic, local, ...)."""
        return self.model.split("/", 1)[0] if "/" in self.model else "openai"

    @property
    def route(self) -> Literal["local", "litellm", "openai-compatible"]:
        """Which transport carries this seat's calls: the embedded model runs in-process, never through LiteLLM;
        `auto` takes the lean client for an OpenAI-compatible server named by api_base, LiteLLM otherwise."""
        if self.provider == "local":
            return "local"
        if self.transport != "auto":
            return self.transport
        lean = self.provider in OPENAI_COMPATIBLE_PREFIXES and (self.api_base or "").startswith(("http://", "https://"))
        return "openai-compatible" if lean else "litellm"


class DebateSettings(_Strict):
    """The [debate] table of a panel file."""

    max_rounds: int = Field(default=2, ge=0, le=10)
    agreement_threshold: float = Field(default=0.8, ge=0, le=1)
    call_timeout_s: float = Field(default=60.0, gt=0, le=3600)
    deadline_s: float = Field(default=300.0, gt=0, le=24 * 3600)
    max_attempts: int = Field(default=3, ge=1, le=10)
    retry_budget_s: float = Field(
        default=30.0, ge=0, le=600, description="how long a call's retries may go on beyond its first timeout"
    )
    max_retry_after_s: float = Field(default=20.0, ge=0, le=600)
    provider_rate_per_s: float = Field(default=20.0, gt=0, description="call starts per second per provider")
    provider_concurrency: int = Field(default=64, ge=1, description="calls in flight per provider")
    max_question_chars: int = Field(default=8000, ge=10, le=200_000)


class Panel(_Strict):
    """A validated panel: 2-7 panelists, a synthesizer seat and debate settings."""

    panelists: list[Seat] = Field(min_length=2, max_length=7)
    synthesizer: Seat
    analyst: Seat | None = None  # the [analyst] section; None: the synthesizer analyses

    @property
    def seats(self) -> list[Seat]:
        """Every seat that makes calls: the panelists, the synthesizer and the analyst, each once."""
        out: list[Seat] = []
        for s in [*self.panelists, self.synthesizer, self.analyst_seat]:
            if all(s is not o for o in out):
                out.append(s)
        return out

    @property
    def analyst_seat(self) -> Seat:
        """The seat that maps the panel's claims on open answers: [analyst], else the synthesizer."""
        return self.analyst or self.synthesizer

    debate: DebateSettings = Field(default_factory=DebateSettings)
    source: str = "default"

    def seat(self, name: str) -> Seat:
        """The panelist called `name`."""
        for s in self.panelists:
            if s.name == name:
                return s
        raise KeyError(name)


class DebateStatus(StrEnum):
    """Where a debate is; the engine ends in completed, degraded, failed or cancelled."""

    running = "running"
    completed = "completed"
    degraded = "degraded"
    failed = "failed"
    cancelled = "cancelled"
    interrupted = "interrupted"


class Usage(BaseModel):
    """Token counts of one call or a sum of calls."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            total_tokens=self.total_tokens + other.total_tokens,
        )


class AnswerError(BaseModel):
    """Why a panelist has no answer in a round (message has keys redacted)."""

    kind: str
    message: str
    attempts: int = 1


class ModelAnswer(BaseModel):
    """One panelist's answer in one round (or its error)."""

    panelist: str
    model: str
    round: int
    answer: str = ""
    final_answer: str | None = None
    confidence: float | None = None
    structured: bool = Field(default=False, description="false when the model ignored the JSON format")
    error: AnswerError | None = None
    usage: Usage = Field(default_factory=Usage)
    cost_usd: float | None = 0.0
    latency_ms: int = 0
    attempts: int = 0
    late: bool = False  # landed after its round moved on (quorum grace): kept, and shown as late

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def read_text(self) -> str | None:
        """The text a closed-form reading reads (research mode scores it; the option a multiple-choice answer
        names is read from it): a structured reply's final answer, else the whole answer, not a guess at its end."""
        return self.final_answer if self.structured and self.final_answer else (self.answer or self.final_answer)


class Cluster(BaseModel):
    """Panelists whose final answers count as the same position."""

    answer: str
    panelists: list[str]


AgreementMethod = Literal["exact", "claims", "exact_fallback"]


class Agreement(BaseModel):
    """Agreement over the panelists' final answers of a round: deterministic (`exact`), or from a verified
    claim map (`claims`), or deterministic because the claim map failed or did not verify (`exact_fallback`)."""

    score: float = Field(ge=0, le=1)
    kind: Literal["number", "choice", "text", "none"]
    method: AgreementMethod = "exact"
    majority: str | None  # the largest position; on a tie, the first seat's of the tied ones (for scoring)
    majority_panelists: list[str] = Field(default_factory=list)
    clusters: list[Cluster] = Field(default_factory=list)
    tie: bool = False  # two or more positions share the largest size: there is no majority to report

    @property
    def reported_majority(self) -> str | None:
        """The majority position a result reports: None on a tie (the tie-break is not a majority)."""
        return None if self.tie else self.majority


ClaimKind = Literal["agreed", "contested", "unique"]


class Claim(BaseModel):
    """One claim of the panel, with who asserts it and who contradicts it (panelist names), each backed by a
    verbatim quote from that panelist's answer that our code found there."""

    text: str
    kind: ClaimKind
    supporters: list[str] = Field(default_factory=list)
    opponents: list[str] = Field(default_factory=list)
    quotes: dict[str, str] = Field(default_factory=dict)


class DroppedAttribution(BaseModel):
    """An attribution of the analyst's that our code refused, and why."""

    claim: str
    panelist: str  # the label or name the analyst gave
    stance: Literal["asserts", "contradicts"]
    quote: str = ""
    reason: str


class Analysis(BaseModel):
    """The analyst's claim map for one round, after our code verified it."""

    analyst: str | None = None
    verified: bool = False  # the map parsed and verified well enough to score agreement from it
    reason: str | None = None  # why it did not verify (then the round's agreement is exact_fallback)
    claims: list[Claim] = Field(default_factory=list)
    positions: list[list[str]] = Field(default_factory=list)  # groups of panelist names with the same answer
    dropped: list[DroppedAttribution] = Field(default_factory=list)
    usage: Usage = Field(default_factory=Usage)
    cost_usd: float | None = 0.0
    latency_ms: int = 0
    attempts: int = 0


def coverage_label(score: float, answered: int, seats: int, missing: Sequence[str]) -> str:
    """An agreement with the answers it covers: "100%", or "100% of 2 of 3 answers (carol missing)"."""
    pct = f"{score:.0%}"
    if not missing:
        return pct
    return f"{pct} of {answered} of {seats} answers ({', '.join(missing)} missing)"


class Round(BaseModel):
    """A round: 0 holds the openings, then one per debate round."""

    index: int
    answers: list[ModelAnswer]
    agreement: Agreement | None = None
    analysis: Analysis | None = None

    def agreement_label(self, panelists: Sequence[str]) -> str | None:
        """This round's agreement, naming the panelists with no answer in it; None before it was measured."""
        if self.agreement is None:
            return None
        answered = {a.panelist for a in self.answers if a.ok}
        missing = [p for p in panelists if p not in answered]
        return coverage_label(self.agreement.score, len(panelists) - len(missing), len(panelists), missing)


class Dissent(BaseModel):
    """A minority position the consensus reports."""

    panelists: list[str]
    final_answer: str
    excerpt: str = ""


class Check(BaseModel):
    """One faithfulness check run on a consensus before anyone sees it."""

    name: str
    passed: bool
    detail: str = ""


class RejectedWriting(BaseModel):
    """A consensus a seat wrote that the guard rejected: who wrote it and the checks it failed."""

    synthesizer: str
    failed: list[Check]


ConsensusSource = Literal["synthesis", "synthesis_retry", "fallback_seat", "majority_answer"]


class Consensus(BaseModel):
    """The synthesizer's answer and the panel's measured agreement."""

    answer: str
    agreement: float
    majority: str | None  # None when the final round's largest positions tie
    dissent: list[Dissent] = Field(default_factory=list)
    synthesizer: str | None
    fallback: bool = False
    fallback_reason: str | None = None
    usage: Usage = Field(default_factory=Usage)
    cost_usd: float | None = 0.0
    latency_ms: int = 0
    attempts: int = Field(default=0, description="LLM calls made for the synthesis: every attempt of every seat tried")
    claims: list[Claim] = Field(default_factory=list)
    checks: list[Check] = Field(default_factory=list)
    source: ConsensusSource = "synthesis"
    rejected: list[RejectedWriting] = Field(default_factory=list)  # writings the guard rejected, in order
    answered: int | None = None  # panelists whose answers the agreement covers (None: written before this field)
    seats: int | None = None  # panelists on the panel
    missing: list[str] = Field(default_factory=list)  # panelists with no answer: the agreement covers fewer answers

    @property
    def majority_because(self) -> Literal["rejected", "not_asked", "failed"] | None:
        """Why the consensus is the majority answer: the guard rejected every writing, no synthesizer was asked
        (the deadline ran out), or every synthesizer call failed; None when a synthesis passed the checks."""
        # fallback with source "synthesis": a record from before sources, when every fallback was the majority answer
        if self.source != "majority_answer" and not (self.fallback and self.source == "synthesis"):
            return None
        if self.rejected:
            return "rejected"
        return "not_asked" if self.source == "majority_answer" and self.attempts == 0 else "failed"

    @property
    def agreement_label(self) -> str:
        """The agreement as every surface words it: "100%", or "100% of 2 of 3 answers (carol missing)"."""
        if self.answered is None or self.seats is None:
            return f"{self.agreement:.0%}"
        return coverage_label(self.agreement, self.answered, self.seats, self.missing)


class PanelistInfo(BaseModel):
    """What users see of a seat: its name and model."""

    name: str
    model: str


class UsageTotals(Usage):
    """Tokens, cost and calls of a whole debate."""

    cost_usd: float | None = 0.0
    llm_calls: int = 0


class Timing(BaseModel):
    """When the debate ran and how long it took."""

    started_at: datetime
    finished_at: datetime | None = None
    wall_ms: int | None = None


class ThreadTurn(BaseModel):
    """One earlier exchange of a thread: its question, the panel's consensus, and each seat's own final answer."""

    question: str
    consensus: str
    own_answers: dict[str, str] = Field(default_factory=dict, description="seat name -> its final answer")


class ThreadContext(BaseModel):
    """What a follow-up debate is given of its thread: the earlier turns, oldest first, and the caller's
    instruction (an OpenAI system message), all of it untrusted data."""

    turns: list[ThreadTurn] = Field(default_factory=list)
    instruction: str | None = None
    language: str | None = None  # the thread's language so far


class DebateResult(BaseModel):
    """A debate's whole record; JSON-serialisable with model_dump(mode='json')."""

    id: str
    question: str
    language: str
    status: DebateStatus
    reason: str | None = None
    panel: list[PanelistInfo]
    synthesizer: PanelistInfo | None = None
    max_rounds: int = 0
    rounds: list[Round] = Field(default_factory=list)
    answers: dict[str, ModelAnswer] = Field(default_factory=dict)
    consensus: Consensus | None = None
    usage: UsageTotals = Field(default_factory=UsageTotals)
    timing: Timing
    skipped: list[str] = Field(default_factory=list)  # seats late two rounds running, not asked again


# Every event's JSON on the wire (SSE) has these keys, in this order, null where the event has no such field:
# the shape clients have always read. Stored events leave their unset fields out (service/store.py).
WIRE_FIELDS = (
    "type",
    "seq",
    "debate_id",
    "round",
    "panelist",
    "delta",
    "answer",
    "round_result",
    "consensus",
    "result",
    "data",
)


class _Event(BaseModel):
    """What every event has: its type tag, its place in the debate (`seq` counts from 1) and the debate."""

    type: str
    seq: int
    debate_id: str

    @model_serializer(mode="wrap")
    def _wire(self, handler: SerializerFunctionWrapHandler, info: SerializationInfo) -> Any:
        data = handler(self)
        if isinstance(info.context, dict) and info.context.get("wire") and isinstance(data, dict):
            out = {k: data.get(k) for k in WIRE_FIELDS}
            out.update((k, v) for k, v in data.items() if k not in out)
            return out
        return data

    def wire_json(self) -> str:
        """The event as SSE sends it: every wire field present, null when unset."""
        return self.model_dump_json(context={"wire": True})


class DebateStarted(_Event):
    """The debate began: `data` has its question, language, panel and max_rounds."""

    type: Literal["debate.started"] = "debate.started"
    data: dict[str, Any]


class DebateResumed(_Event):
    """A debate cut short (a restart) continues: `data.after_round` is the last round kept."""

    type: Literal["debate.resumed"] = "debate.resumed"
    data: dict[str, Any]


class AnswerDelta(_Event):
    """A piece of a panelist's answer as it streams; `data.restart`: what this stream showed so far is void."""

    type: Literal["answer.delta"] = "answer.delta"
    round: int
    panelist: str
    delta: str
    data: dict[str, Any] | None = None


class AnswerCompleted(_Event):
    """A panelist's answer (or its error) for a round."""

    type: Literal["answer.completed"] = "answer.completed"
    round: int
    panelist: str
    answer: ModelAnswer


class AnalysisCompleted(_Event):
    """The analyst's claim map of a round, as our code verified it (`panelist` is the analyst's seat)."""

    type: Literal["analysis.completed"] = "analysis.completed"
    round: int
    panelist: str | None = None
    analysis: Analysis


class RoundCompleted(_Event):
    """A round ended: its answers and agreement."""

    type: Literal["round.completed"] = "round.completed"
    round: int
    round_result: Round


class ConsensusDelta(_Event):
    """A piece of the consensus as the synthesizer writes it; `data.restart`: the consensus stream starts over."""

    type: Literal["consensus.delta"] = "consensus.delta"
    round: None = None
    panelist: str
    delta: str
    data: dict[str, Any] | None = None


class ConsensusCompleted(_Event):
    """The checked consensus (or the fallback it is)."""

    type: Literal["consensus.completed"] = "consensus.completed"
    consensus: Consensus


class DebateCompleted(_Event):
    """The debate ended completed or degraded: the whole result."""

    type: Literal["debate.completed"] = "debate.completed"
    result: DebateResult


class DebateFailed(_Event):
    """The debate failed (or was cancelled): the whole result, with its reason."""

    type: Literal["debate.failed"] = "debate.failed"
    result: DebateResult


DebateEvent = Annotated[
    DebateStarted
    | DebateResumed
    | AnswerDelta
    | AnswerCompleted
    | AnalysisCompleted
    | RoundCompleted
    | ConsensusDelta
    | ConsensusCompleted
    | DebateCompleted
    | DebateFailed,
    Field(discriminator="type"),
]
DeltaEvent = AnswerDelta | ConsensusDelta  # token deltas: streamed, never stored
EndEvent = DebateCompleted | DebateFailed  # the last event of a debate; it carries the result
EVENT_TYPES: dict[str, type[_Event]] = {
    cls.model_fields["type"].default: cls
    for cls in (
        DebateStarted,
        DebateResumed,
        AnswerDelta,
        AnswerCompleted,
        AnalysisCompleted,
        RoundCompleted,
        ConsensusDelta,
        ConsensusCompleted,
        DebateCompleted,
        DebateFailed,
    )
}
EventType = Literal[
    "debate.started",
    "debate.resumed",
    "answer.delta",
    "answer.completed",
    "analysis.completed",
    "round.completed",
    "consensus.delta",
    "consensus.completed",
    "debate.completed",
    "debate.failed",
]
_EVENTS: TypeAdapter[DebateEvent] = TypeAdapter(DebateEvent)


def parse_event(data: Any) -> DebateEvent:
    """An event from its stored or wire JSON (a dict, or the JSON text)."""
    if isinstance(data, str | bytes):
        return _EVENTS.validate_json(data)
    return _EVENTS.validate_python(data)


def new_event(type_: str, **fields: Any) -> DebateEvent:
    """The event of this type with these fields (a ValidationError names a field the type does not allow)."""
    return EVENT_TYPES[type_](**fields)  # type: ignore[return-value]
