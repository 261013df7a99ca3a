"""run_debate(): scheduling only — parallel calls, deadline, quorum, early stop, events."""

from __future__ import annotations

import asyncio
import functools
import unicodedata
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from consensus.agreement import answers_are_open, choice_positions, question_choices, score_agreement
from consensus.claims import (
    CLAIM_MAP_SCHEMA,
    agreement_from_analysis,
    analysis_messages,
    contested_claims_prompt,
    quotable_answer,
    verify_claim_map,
)
from consensus.errors import ProviderError, QuestionError
from consensus.language import detect_language, normalize_code
from consensus.providers.base import Completion, DeltaSink, JsonSchema, Provider
from consensus.rounds import (
    ANSWER_SCHEMA,
    CHARS_PER_TOKEN,
    debate_messages,
    label_for,
    new_marker,
    opening_messages,
    parse_reply,
    prompt_chars,
    seat_budget,
    thread_block,
    with_thread,
)
from consensus.synthesis import SynthesisInput, majority_consensus, synthesize_consensus
from consensus.types import (
    Analysis,
    AnswerDelta,
    AnswerError,
    ConsensusDelta,
    DebateCompleted,
    DebateEvent,
    DebateFailed,
    DebateResult,
    DebateStatus,
    EventType,
    Message,
    ModelAnswer,
    Panel,
    PanelistInfo,
    Round,
    Seat,
    ThreadContext,
    ThreadTurn,
    Timing,
    Usage,
    UsageTotals,
    new_event,
)


@dataclass(frozen=True)
class QuorumGrace:
    """Don't wait for the straggler: once `quorum` seats of a round answered (default: all but one, at least 2), wait
    for the rest at most max(grace_s, grace_factor x the median latency of the round's answers), then move on. A late
    answer is kept (late: true) and joins the next round's peer view, or the synthesis, if it lands in time; a seat
    late two rounds running is skipped for the rest of the debate (DebateResult.skipped)."""

    quorum: int | None = None
    grace_s: float = 1.0
    grace_factor: float = 0.25


@dataclass
class DebateOptions:
    """Per-debate choices; `stream` says whether anyone watches tokens (a bool or a callable)."""

    rounds: int | None = None
    language: str | None = None
    stream: bool | Callable[[], bool] = False
    debate_id: str | None = None
    start_seq: int = 0
    # Called after each round with the live state, before the round's event goes out: read it (or copy_result it)
    # then, as it goes on changing after.
    on_checkpoint: Callable[[DebateResult], None] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    quorum_grace: QuorumGrace | None = None  # None: every round waits for every seat (research mode's default)
    deadline_at: datetime | None = None  # the debate's absolute end (kept across resumes); None: deadline_s from now
    thread: ThreadContext | None = None  # a follow-up's earlier turns (and a caller's instruction); None: standalone


def validate_question(question: str, max_chars: int) -> str:
    """The stripped question, or QuestionError when it is empty, too long or not storable text."""
    q = question.strip() if isinstance(question, str) else ""
    if not any(unicodedata.category(c)[0] not in "CZ" for c in q):  # only spaces, controls or invisible marks
        raise QuestionError("question", "is empty")
    if len(q) > max_chars:
        raise QuestionError("question", f"is {len(q)} characters long; the limit is {max_chars}")
    if "\x00" in q:  # PostgreSQL cannot store it in text; SQLite would, and the models would see a cut question
        raise QuestionError("question", "contains a NUL character (\\u0000)")
    try:
        q.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate (JSON "\ud800"): not text any store or model accepts
        raise QuestionError(
            "question", f"is not valid Unicode text (a lone surrogate at character {exc.start})"
        ) from None
    return q


def validate_request(question: str, panel: Panel, options: DebateOptions) -> tuple[str, str | None, int]:
    """The cheap checks of a new debate: (question, language code or None, rounds), or QuestionError."""
    q = validate_question(question, panel.debate.max_question_chars)
    language = normalize_code(options.language) if options.language else None
    rounds = panel.debate.max_rounds if options.rounds is None else options.rounds
    if not 0 <= rounds <= 10:
        raise QuestionError("rounds", f"must be between 0 and 10, got {rounds}")
    return q, language, rounds


def follow_up_language(question: str, thread_language: str) -> str:
    """A follow-up keeps its thread's language unless the question is clearly in another: detected so, and either
    long enough to tell (4 words or more) or written in a script beyond Latin."""
    detected = detect_language(question, default=thread_language)
    if detected == thread_language:
        return thread_language
    beyond_latin = any(ch.isalpha() and ord(ch) > 0x24F for ch in question)
    return detected if beyond_latin or len(question.split()) >= 4 else thread_language


def fits_some_seat(question: str, panel: Panel, language: str) -> bool:
    """Whether the question's opening prompt fits at least one panelist's context window (a thread's earlier turns
    are trimmed to fit; the question itself is not)."""
    marker = new_marker()
    for seat in panel.panelists:
        budget = seat_budget(seat)
        if (
            budget is None
            or prompt_chars(opening_messages(seat, question, language, marker)) <= budget * CHARS_PER_TOKEN
        ):
            return True
    return False


class ThreadedProvider:
    """A provider that opens every call's first user message with the thread's earlier turns, budgeted to the
    seat: how the analyst and the synthesizer (and its fallbacks) see the same context as the panel."""

    def __init__(self, provider: Provider, context: ThreadContext, marker: str) -> None:
        self.provider = provider
        self.context = context
        self.marker = marker

    async def complete(
        self,
        seat: Seat,
        messages: list[Message],
        *,
        timeout_s: float,
        schema: JsonSchema | None = None,
        on_delta: DeltaSink | None = None,
    ) -> Completion:
        """The wrapped call, with the thread in front of the prompt."""
        messages = threaded(messages, seat, None, self.context, self.marker)
        return await self.provider.complete(seat, messages, timeout_s=timeout_s, schema=schema, on_delta=on_delta)


def threaded(
    messages: list[Message], seat: Seat, own: str | None, context: ThreadContext | None, marker: str
) -> list[Message]:
    """The messages with the thread's earlier turns for this seat (`own`: whose earlier answers are its own),
    in what is left of the seat's budget once the step's own prompt is counted."""
    if context is None:
        return messages
    budget = seat_budget(seat)
    room = None if budget is None else budget * CHARS_PER_TOKEN - prompt_chars(messages)
    return with_thread(messages, thread_block(context, own, marker, room))


def thread_turn(result: DebateResult) -> ThreadTurn:
    """A finished debate as one earlier turn of its thread: question, consensus, and each seat's final answer."""
    own = {
        name: "\n".join(p for p in (a.answer, f"Final answer: {a.final_answer}" if a.final_answer else "") if p)
        for name, a in result.answers.items()
        if a.ok and a.answer
    }
    return ThreadTurn(
        question=result.question, consensus=result.consensus.answer if result.consensus else "", own_answers=own
    )


def new_result(
    question: str, panel: Panel, options: DebateOptions, checked: tuple[str, str | None, int] | None = None
) -> DebateResult:
    """A fresh running DebateResult (validates the question and language unless `checked` holds what
    validate_request returned; detects the language if unset)."""
    q, language, rounds = checked or validate_request(question, panel, options)
    return DebateResult(
        id=options.debate_id or uuid.uuid4().hex,
        question=q,
        language=language or detect_language(q),
        status=DebateStatus.running,
        panel=[PanelistInfo(name=s.name, model=s.model) for s in panel.panelists],
        synthesizer=PanelistInfo(name=panel.synthesizer.name, model=panel.synthesizer.model),
        max_rounds=rounds,
        timing=Timing(started_at=datetime.now(UTC)),
    )


def copy_result(result: DebateResult) -> DebateResult:
    """A deep copy, rebuilt by pydantic-core from a dump: far cheaper than model_copy(deep=True)'s copy.deepcopy
    (figures: bench/README.md). A resumed debate starts from one; MCP keeps one per round (the service encodes its
    checkpoint instead: service/runner.py Latest)."""
    return DebateResult.model_validate(result.model_dump())


async def run_debate(
    question: str,
    panel: Panel,
    provider: Provider,
    options: DebateOptions | None = None,
    *,
    resume: DebateResult | None = None,
) -> AsyncIterator[DebateEvent]:
    """Run a debate, yielding its events; the last event carries the DebateResult.

    With `resume`, completed rounds are kept and the debate continues after the last one.
    """
    opts = options or DebateOptions()
    result = copy_result(resume) if resume else new_result(question, panel, opts)
    run = _Debate(panel, provider, opts, result)
    task = asyncio.create_task(run.run())
    try:
        while True:
            event = await run.queue.get()
            if event is None:
                break
            if run.open_delta is not None and run.open_delta[1] is event:
                run.open_delta = None  # taken: what streams after it is a delta of its own
            yield event
    finally:
        if not task.done():
            task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    if task.done() and not task.cancelled() and task.exception() is not None:
        raise task.exception()  # type: ignore[misc]


async def debate(question: str, panel: Panel, provider: Provider, options: DebateOptions | None = None) -> DebateResult:
    """Run a debate to the end and return its result."""
    final: DebateResult | None = None
    async for event in run_debate(question, panel, provider, options):
        if isinstance(event, DebateCompleted | DebateFailed):
            final = event.result
    assert final is not None
    return final


async def ask_seat(
    provider: Provider,
    seat: Seat,
    index: int,
    messages: list[Message],
    timeout_s: float,
    on_delta: DeltaSink | None = None,
) -> ModelAnswer:
    """One panelist's answer to a round's messages (JSON asked for, parsed), or the answer holding its error."""
    base = ModelAnswer(panelist=seat.name, model=seat.model, round=index)
    try:
        done = await provider.complete(seat, messages, timeout_s=timeout_s, schema=ANSWER_SCHEMA, on_delta=on_delta)
    except ProviderError as err:
        base.error = AnswerError(kind=err.kind, message=err.message, attempts=err.attempts)
        base.attempts = err.attempts
        return base
    parsed = parse_reply(done.text)
    return base.model_copy(
        update={
            "answer": parsed.answer,
            "final_answer": parsed.final_answer,
            "confidence": parsed.confidence,
            "structured": parsed.structured,
            **done.spent(),
        }
    )


def sum_spent(spent: list[tuple[Usage, int, float | None]]) -> UsageTotals:
    """Tokens, calls and cost of these (usage, attempts, cost) triples; the cost is None when any is unknown."""
    totals = UsageTotals()
    for usage, calls, _ in spent:
        totals.prompt_tokens += usage.prompt_tokens
        totals.completion_tokens += usage.completion_tokens
        totals.total_tokens += usage.total_tokens
        totals.llm_calls += calls
    costs = [cost for _, _, cost in spent]
    totals.cost_usd = None if any(c is None for c in costs) else round(sum(c or 0.0 for c in costs), 8)
    return totals


class _Debate:
    def __init__(self, panel: Panel, provider: Provider, opts: DebateOptions, result: DebateResult) -> None:
        self.panel = panel
        self.provider = provider
        self.opts = opts
        self.result = result
        self.marker = new_marker()
        self.choices = question_choices(result.question)  # a multiple-choice question: answers read as its options
        thread = opts.thread
        # The analyst and the synthesizer see the thread too (the same turns, no answer of their own).
        self.reviewers: Provider = ThreadedProvider(provider, thread, self.marker) if thread else provider
        self.queue: asyncio.Queue[DebateEvent | None] = asyncio.Queue()
        self.seq = opts.start_seq
        self.settings = panel.debate
        self.index = {s.name: i for i, s in enumerate(panel.panelists)}
        self.pending: dict[str, ModelAnswer | None] = {}
        self.stragglers: dict[str, asyncio.Task[ModelAnswer]] = {}  # late calls still running, by seat
        self.late_rounds: dict[str, int] = {}  # rounds in a row each seat was late
        self.late_answers: dict[int, list[ModelAnswer]] = {}  # late answers that landed before their round closed
        self.ended = False
        self.streamed: set[tuple[str, int | None, str | None]] = set()  # streams that showed text
        # The last event queued, when it is a token delta the reader has not taken yet: the pieces of its stream
        # that arrive before the reader runs are added to it (one event, not one per piece, at 200 debates at once
        # most of the loop's work while the openings stream in: bench/README.md, load.py).
        self.open_delta: tuple[tuple[str, int | None, str | None], AnswerDelta | ConsensusDelta] | None = None

    def emit(self, type_: EventType, **fields: Any) -> DebateEvent:
        self.seq += 1
        event = new_event(type_, seq=self.seq, debate_id=self.result.id, **fields)
        self.queue.put_nowait(event)
        self.open_delta = None  # a delta queued before this event no longer takes pieces (order)
        return event

    def watching(self) -> bool:
        s = self.opts.stream
        return s() if callable(s) else s

    def sink(
        self, type_: Literal["answer.delta", "consensus.delta"], round_: int | None, name: str
    ) -> DeltaSink | None:
        if not self.watching():
            return None
        # One stream per panelist's answer in a round, and one for the consensus whichever seat writes it: a
        # fallback synthesizer starts the consensus stream over.
        key = (type_, round_, None if type_ == "consensus.delta" else name)
        shown_before = key in self.streamed

        def emit(text: str, restart: bool = False) -> None:
            nonlocal shown_before
            again, shown_before = restart or shown_before, False
            self.streamed.add(key)
            open_ = self.open_delta
            if open_ is not None and open_[0] == key and not again:
                open_[1].delta += text  # still queued: the pieces that came meanwhile go out as one
                return
            event = self.emit(type_, round=round_, panelist=name, delta=text, data={"restart": True} if again else None)
            assert isinstance(event, AnswerDelta | ConsensusDelta)
            self.open_delta = (key, event)

        return emit

    async def run(self) -> None:
        r = self.result
        if r.rounds or self.opts.start_seq > 0:  # a resumed debate already announced itself
            r.status = DebateStatus.running
            # Answers stored for the round that was cut short are superseded by the ones that follow: say so.
            self.emit("debate.resumed", data={"after_round": r.rounds[-1].index if r.rounds else None})
        else:
            self.emit(
                "debate.started",
                data={
                    "question": r.question,
                    "language": r.language,
                    "panel": [p.model_dump() for p in r.panel],
                    "max_rounds": r.max_rounds,
                },
            )
        end = self.opts.deadline_at
        left = self.settings.deadline_s if end is None else (end - datetime.now(UTC)).total_seconds()
        try:
            if left <= 0:  # resumed after its end: no call starts; it ends with what it has, as at any deadline
                self.on_deadline()
            else:
                async with asyncio.timeout(left):
                    await self.protocol()
        except TimeoutError:
            self.on_deadline()
        finally:
            self.stop_stragglers()
            self.queue.put_nowait(None)

    def stop_stragglers(self) -> None:
        """Cancel the late calls still running: nothing waits for them any more."""
        for task in list(self.stragglers.values()):
            task.cancel()
        self.stragglers.clear()

    async def protocol(self) -> None:
        r = self.result
        if not r.rounds:
            await self.play_round(0, [s for s in self.panel.panelists])
        while True:
            latest = self.latest()
            if len(latest) < 2:
                return self.fail(self.quorum_reason())
            last = r.rounds[-1]
            if last.index >= r.max_rounds or (
                last.agreement and last.agreement.score >= self.settings.agreement_threshold
            ):
                break
            skipped = [n for n, k in self.late_rounds.items() if k >= 2 and n not in r.skipped]
            r.skipped += skipped  # late two rounds running: not asked again in this debate
            alive = [
                s
                for s in self.panel.panelists
                if s.name in latest
                and s.name not in r.skipped
                and s.name not in self.stragglers
                and self.answered_last(s.name)
            ]
            if len(alive) < 2:
                break  # no debate with one voice: it would only argue with stale answers; synthesize what there is
            await self.play_round(last.index + 1, alive)
        await self.finish()

    def answered_last(self, name: str) -> bool:
        return any(a.panelist == name and a.ok for a in self.result.rounds[-1].answers)

    def latest(self) -> dict[str, ModelAnswer]:
        """Each panelist's most recent successful answer."""
        out: dict[str, ModelAnswer] = {}
        for rnd in self.result.rounds:
            for a in rnd.answers:
                if a.ok:
                    out[a.panelist] = a
        return out

    async def play_round(self, index: int, seats: list[Seat]) -> None:
        latest = self.latest()
        self.pending = {s.name: None for s in seats}
        contested = self.contested() if index > 0 else ""

        async def one(seat: Seat) -> ModelAnswer:
            if index == 0:
                messages = opening_messages(seat, self.result.question, self.result.language, self.marker)
            else:
                answers = [(self.index[n], a) for n, a in latest.items()]
                messages = debate_messages(
                    seat,
                    self.index[seat.name],
                    self.result.question,
                    answers,
                    index,
                    self.result.language,
                    self.marker,
                    seat_budget(seat),
                    contested,
                )
            messages = threaded(messages, seat, seat.name, self.opts.thread, self.marker)
            answer = await self.ask(seat, index, messages)
            self.pending[seat.name] = answer
            self.emit("answer.completed", round=index, panelist=seat.name, answer=answer)
            return answer

        tasks = {s.name: asyncio.create_task(one(s)) for s in seats}
        answers = await self.gathered(index, tasks)
        for name in self.stragglers:
            if name not in tasks:  # still on an earlier round's call: late for this round too
                self.late_rounds[name] = self.late_rounds.get(name, 0) + 1
        latest = {**latest, **{a.panelist: a for a in answers if a.ok}}
        analysis = await self.analysis(index, latest) if self.is_open(latest) else None
        self.pending = {}  # only now: a deadline during the analysis still closes the round with its answers
        self.close_round(index, answers, analysis)

    async def gathered(self, index: int, tasks: dict[str, asyncio.Task[ModelAnswer]]) -> list[ModelAnswer]:
        """The round's answers: all of them, or with quorum grace, those in once a quorum answered and the grace
        ran out. A seat still answering is late: its call goes on, and its answer joins this round when it lands."""
        grace = self.opts.quorum_grace
        quorum = max(2, len(tasks) - 1) if grace is None or grace.quorum is None else max(2, grace.quorum)
        # The embedded model answers one call at a time: its seats queue behind each other, and the last in the
        # queue is not a straggler. A round with two or more of them waits for every seat.
        serialized = sum(self.panel.seat(name).route == "local" for name in tasks) >= 2
        if grace is None or quorum >= len(tasks) or serialized:
            return list(await asyncio.gather(*tasks.values()))
        waiting = set(tasks.values())
        while waiting and sum(t.done() and t.result().ok for t in tasks.values()) < quorum:
            _, waiting = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        if waiting:
            latencies = sorted(t.result().latency_ms for t in tasks.values() if t.done() and t.result().ok)
            median_s = latencies[len(latencies) // 2] / 1000 if latencies else 0.0
            _, waiting = await asyncio.wait(waiting, timeout=max(grace.grace_s, grace.grace_factor * median_s))
        for name, task in tasks.items():
            if task in waiting:
                self.late_rounds[name] = self.late_rounds.get(name, 0) + 1
                self.stragglers[name] = task
                task.add_done_callback(functools.partial(self.landed_late, index, name))
                self.pending.pop(name, None)
            else:
                self.late_rounds[name] = 0
        return [t.result() for t in tasks.values() if t not in waiting]

    def landed_late(self, index: int, name: str, task: asyncio.Task[ModelAnswer]) -> None:
        """A late answer landed: it is kept in its round, marked late, and shown to anyone watching."""
        self.stragglers.pop(name, None)
        if task.cancelled() or task.exception() is not None or self.ended:
            return
        answer = task.result().model_copy(update={"late": True})
        rnd = next((r for r in self.result.rounds if r.index == index), None)
        if rnd is None:  # the round has not closed yet (its analysis still runs): it closes with this answer
            self.late_answers.setdefault(index, []).append(answer)
            return
        rnd.answers.append(answer)
        self.result.answers = {**self.result.answers, **self.latest()}
        self.checkpoint()
        self.emit("answer.completed", round=index, panelist=name, answer=answer)

    def contested(self) -> str:
        """The last round's contested claims, for the next round's prompt (fenced; "" when none)."""
        analysis = self.result.rounds[-1].analysis if self.result.rounds else None
        if analysis is None:
            return ""
        labels = {label_for(i): name for name, i in self.index.items()}
        return contested_claims_prompt(analysis, labels, self.marker)

    def is_open(self, latest: dict[str, ModelAnswer]) -> bool:
        """Whether the round's answers need the analyst (explanations, lists, essays) to tell who agrees."""
        if self.choices:  # a multiple-choice question is closed-form, however its answers are worded
            return False
        return len(latest) >= 2 and answers_are_open([(n, a.final_answer) for n, a in latest.items()])

    async def analysis(self, index: int, latest: dict[str, ModelAnswer]) -> Analysis:
        """The analyst's claim map of the round's latest answers, as far as our code could verify it."""
        seat = self.panel.analyst_seat
        finals = sorted(((self.index[n], a) for n, a in latest.items()), key=lambda t: t[0])
        labels = {label_for(i): a.panelist for i, a in finals}
        answers = {a.panelist: quotable_answer(a) for _, a in finals}
        messages = analysis_messages(self.result.question, finals, self.result.language, self.marker, seat_budget(seat))
        try:
            done = await self.reviewers.complete(seat, messages, timeout_s=self.timeout(seat), schema=CLAIM_MAP_SCHEMA)
        except ProviderError as err:
            return Analysis(
                analyst=seat.name, reason=f"the analyst failed ({err.kind}: {err.message})", attempts=err.attempts
            )
        analysis = verify_claim_map(done.text, labels, answers)
        return analysis.model_copy(update={"analyst": seat.name, **done.spent()})

    def close_round(self, index: int, answers: list[ModelAnswer], analysis: Analysis | None = None) -> None:
        late = self.late_answers.pop(index, [])
        rnd = Round(index=index, answers=[*answers, *late], analysis=analysis)
        self.result.rounds.append(rnd)
        latest = self.latest()
        # A multiple-choice answer is read for the option it names from the text research mode scores.
        finals = [(n, a.read_text if self.choices else a.final_answer) for n, a in latest.items()]
        exact = score_agreement(choice_positions(finals, self.choices))
        rnd.agreement = exact if analysis is None else agreement_from_analysis(analysis, list(latest), exact)
        self.result.answers = {**self.result.answers, **{a.panelist: a for a in answers}, **latest}
        self.tally()
        self.checkpoint()
        if analysis is not None:
            self.emit("analysis.completed", round=index, panelist=analysis.analyst, analysis=analysis)
        self.emit("round.completed", round=index, round_result=rnd)

    def checkpoint(self) -> None:
        """Hand the state so far to whoever persists it (before the event goes out); it takes what it keeps now."""
        if self.opts.on_checkpoint is not None:
            self.opts.on_checkpoint(self.result)

    def timeout(self, seat: Seat) -> float:
        return seat.timeout_s or self.settings.call_timeout_s

    async def ask(self, seat: Seat, index: int, messages: list[Message]) -> ModelAnswer:
        return await ask_seat(
            self.provider, seat, index, messages, self.timeout(seat), self.sink("answer.delta", index, seat.name)
        )

    async def finish(self) -> None:
        r = self.result
        self.stop_stragglers()  # a late answer enters the synthesis only when it landed before it
        latest = self.latest()
        synth = self.panel.synthesizer
        fallbacks = [s for s in self.panel.panelists if s.name in latest and s.name != synth.name]
        consensus, failures = await synthesize_consensus(
            self.reviewers,
            synth,
            fallbacks,
            self.synthesis_input(),
            self.timeout(synth),
            lambda seat: self.sink("consensus.delta", None, seat.name),
        )
        r.consensus = consensus
        self.tally()
        self.emit("consensus.completed", consensus=consensus)
        degraded = failures or any(not a.ok for rnd in r.rounds for a in rnd.answers)
        self.complete(DebateStatus.degraded if degraded else DebateStatus.completed, self.degraded_reason())

    def synthesis_input(self) -> SynthesisInput:
        """What the synthesis is given: the question, each panelist's latest answer and the last round's measures."""
        r = self.result
        finals = sorted(((self.index[n], a) for n, a in self.latest().items()), key=lambda t: t[0])
        agreement = r.rounds[-1].agreement
        assert agreement is not None
        return SynthesisInput(
            question=r.question,
            finals=finals,
            agreement=agreement,
            analysis=r.rounds[-1].analysis,
            language=r.language,
            marker=self.marker,
            seats=len(self.panel.panelists),
            panelists=[s.name for s in self.panel.panelists],
            choices=self.choices,
        )

    def degraded_reason(self) -> str | None:
        failed = sorted(
            {f"{a.panelist} ({a.error.kind})" for rnd in self.result.rounds for a in rnd.answers if a.error}
        )
        parts = [f"failed: {', '.join(failed)}"] if failed else []
        c = self.result.consensus
        if c and c.fallback:
            parts.append(f"synthesis fallback: {c.fallback_reason}")
        return "; ".join(parts) or None

    def quorum_reason(self) -> str:
        errors = [f"{a.panelist}: {a.error.kind}: {a.error.message}" for a in self.result.rounds[-1].answers if a.error]
        return f"fewer than 2 panelists answered ({'; '.join(errors) or 'no answers'})"

    def tally(self) -> None:
        """The debate's tokens, calls and cost: every answer, every analysis and the consensus."""
        r = self.result
        spent: list[tuple[Usage, int, float | None]] = []
        for rnd in r.rounds:
            spent += [(a.usage, a.attempts, a.cost_usd if a.ok else 0.0) for a in rnd.answers]
            if rnd.analysis is not None:
                spent.append((rnd.analysis.usage, rnd.analysis.attempts, rnd.analysis.cost_usd))
        if r.consensus:
            spent.append((r.consensus.usage, r.consensus.attempts, r.consensus.cost_usd))
        r.usage = sum_spent(spent)

    def complete(self, status: DebateStatus, reason: str | None) -> None:
        r = self.result
        r.status = status
        r.reason = reason
        now = datetime.now(UTC)
        r.timing.finished_at = now
        r.timing.wall_ms = int((now - r.timing.started_at).total_seconds() * 1000)
        kind: EventType = "debate.failed" if status == DebateStatus.failed else "debate.completed"
        self.ended = True  # nothing changes the result after this: the last event carries it, uncopied
        self.emit(kind, result=r)

    def fail(self, reason: str) -> None:
        self.complete(DebateStatus.failed, reason)

    def on_deadline(self) -> None:
        """The whole-debate deadline ran out: keep what finished, mark the rest, end honestly."""
        r = self.result
        if self.ended:  # the deadline fell after the last event: the result stands as sent
            return
        limit = f"the debate deadline of {self.settings.deadline_s:g} s ran out"
        if self.pending:
            answers = []
            for name, a in self.pending.items():
                seat = self.panel.seat(name)
                answers.append(
                    a
                    or ModelAnswer(
                        panelist=name,
                        model=seat.model,
                        round=self.pending_round(),
                        error=AnswerError(kind="deadline", message=limit),
                    )
                )
            self.close_round(self.pending_round(), answers)
        latest = self.latest()
        if len(latest) < 2 or not r.rounds:
            return self.fail(f"{limit} before 2 panelists answered")
        agreement = r.rounds[-1].agreement
        assert agreement is not None
        if r.consensus is None:
            r.consensus = majority_consensus(self.synthesis_input(), f"{limit} before synthesis")
            self.emit("consensus.completed", consensus=r.consensus)
        self.complete(DebateStatus.degraded, limit)

    def pending_round(self) -> int:
        return len(self.result.rounds) if not self.result.rounds else self.result.rounds[-1].index + 1
