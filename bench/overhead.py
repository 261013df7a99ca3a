"""Engine + gateway overhead against the loopback stub run as a separate process; prints figures.

    python bench/overhead.py                      # full run: 2 s calls, 200 concurrent debates, via LiteLLM
    python bench/overhead.py --transport openai-compatible   # the same through the gateway's lean client
    python bench/overhead.py --quick              # short run (smaller N, 1 s calls, 50 debates)
    python bench/overhead.py --latency-ms 1000 --concurrency 200 --rounds 1

Only this process's CPU (time.process_time) is counted; the stub's CPU is its own. A debate's
critical path is (debate rounds run + 2) x latency: openings, each debate round, synthesis.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib.metadata
import itertools
import json
import os
import resource
import signal
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # before anything imports litellm
# LiteLLM's aiohttp pool allows 500 connections per host (1000 in all): 200 debates x 3 seats would
# queue behind it, so lift it for the bench (read once, at import).
os.environ.setdefault("AIOHTTP_CONNECTOR_LIMIT", "20000")
os.environ.setdefault("AIOHTTP_CONNECTOR_LIMIT_PER_HOST", "20000")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from floor import bare_floor  # noqa: E402
from procs import cpu_s_of, mark, stub_process  # noqa: E402

from consensus.engine import DebateOptions, debate  # noqa: E402
from consensus.providers.fake import ScriptedProvider, Step  # noqa: E402
from consensus.providers.gateway import Gateway  # noqa: E402
from consensus.rounds import ANSWER_SCHEMA, new_marker, opening_messages  # noqa: E402
from consensus.types import DebateResult, DebateSettings, Panel, Seat  # noqa: E402

QUESTION = "What is six times seven? Check the arithmetic before you answer."
PREFIXES = ("openai", "custom_openai", "hosted_vllm", "openai_like", "aiohttp_openai")
CHUNK_CHARS = 8
STARTED = time.perf_counter()
TARGETS = {
    "alone": 1.05,
    "concurrent": 1.20,
    "over_floor": 1.10,  # the lean client's; LiteLLM's is not judged against the floor
    "cpu_call_ms": 4.0,
    "cpu_chunk_ms": 0.1,
    "rss_mib": 400.0,
}


_CASES = itertools.count()


def fresh_question() -> str:
    """QUESTION with a number never used before in this run: its language is detected, not remembered."""
    return f"{QUESTION} (case {next(_CASES)})"


def llm() -> Any:
    """LiteLLM, imported by the litellm-transport measurements only (the import alone is ~290 MiB of RSS)."""
    import litellm

    return litellm


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def script(url: str, model: str, steps: list[dict[str, Any]]) -> None:
    httpx.post(f"{url}/_script", json={"model": model, "steps": steps}, timeout=5, trust_env=False).raise_for_status()


def settings(latency_s: float, rounds: int) -> DebateSettings:
    call_timeout = latency_s * 3 + 60
    return DebateSettings(
        max_rounds=rounds,
        provider_rate_per_s=100_000,
        provider_concurrency=10_000,
        call_timeout_s=call_timeout,
        deadline_s=call_timeout * (rounds + 3),
        max_attempts=1,
    )


def debate_panel(url: str, latency_ms: int, rounds: int, transport: str) -> Panel:
    """3 seats on openai/latency-<ms>; with rounds > 0, scripted seats that disagree so rounds really run."""
    if rounds == 0:
        models = [f"latency-{latency_ms}"] * 3
    else:
        models = [f"bench-{latency_ms}-{x}" for x in "abc"]
        for model, final in zip(models, ("42", "41", "40"), strict=True):
            text = f'{{"answer": "I computed {final}.", "final_answer": "{final}", "confidence": 0.6}}'
            script(url, model, [{"text": text, "delay_s": latency_ms / 1000}])
    seats = [
        Seat(name=f"p{i}", model=f"openai/{m}", api_base=f"{url}/v1", transport=transport)  # type: ignore[arg-type]
        for i, m in enumerate(models)
    ]
    return Panel(panelists=seats, synthesizer=seats[0], debate=settings(latency_ms / 1000, rounds))


def critical_path_s(result: DebateResult, latency_ms: int) -> float:
    if result.status != "completed" or result.consensus is None or result.consensus.fallback:
        raise RuntimeError(f"debate did not complete cleanly: {result.status} {result.reason}")
    return (len(result.rounds) - 1 + 2) * latency_ms / 1000


async def run_debates(
    url: str, latency_ms: int, rounds: int, n: int, transport: str, stub_pid: int = 0
) -> dict[str, float]:
    """n concurrent debates on one shared gateway: wall / critical path and CPU per LLM call."""
    panel = debate_panel(url, latency_ms, rounds, transport)
    gw = Gateway(panel.debate)
    gc.collect()
    cpu0, t0, stub0 = time.process_time(), time.perf_counter(), cpu_s_of(stub_pid)
    # A question of its own per debate: the language guess is remembered per text (widgets repeat theirs), and
    # API traffic is mostly distinct questions, each detected once.
    results = await asyncio.gather(*(debate(fresh_question(), panel, gw, DebateOptions()) for _ in range(n)))
    wall, cpu, stub_cpu = time.perf_counter() - t0, time.process_time() - cpu0, cpu_s_of(stub_pid) - stub0
    await gw.aclose()
    path = max(critical_path_s(r, latency_ms) for r in results)
    calls = sum(r.usage.llm_calls for r in results)
    walls = sorted((r.timing.wall_ms or 0) / 1000 for r in results)
    path = path or float("nan")  # the 0-ms warm-up has no meaningful ratio
    return {
        "ratio": wall / path,
        "wall": wall,
        "path": path,
        "rounds": len(results[0].rounds) - 1,
        "calls": calls,
        "cpu_ms_call": cpu * 1000 / calls,
        "p50": statistics.median(walls) / path,
        "max": walls[-1] / path,
        "cpu": cpu,
        "stub_cpu": stub_cpu,
    }


async def engine_alone(rounds: int, n: int) -> float:
    """CPU ms per LLM call spent by the engine itself: n debates on ScriptedProvider (no HTTP, no LiteLLM)."""
    seats = [Seat(name=f"p{i}", model="openai/fake") for i in range(3)]
    panel = Panel(panelists=seats, synthesizer=seats[0], debate=settings(0, rounds))
    finals = ("42", "42", "42") if rounds == 0 else ("42", "41", "40")
    calls, cpu = 0, 0.0
    for i in range(n + 3):
        provider = ScriptedProvider(script={s.name: [Step(final=f)] for s, f in zip(seats, finals, strict=True)})
        cpu0 = time.process_time()
        result = await debate(fresh_question(), panel, provider, DebateOptions())
        if i >= 3:  # the first debates warm caches up
            cpu += time.process_time() - cpu0
            calls += result.usage.llm_calls
    return cpu * 1000 / calls


Fn = Callable[[], Awaitable[Any]]


async def compare(fns: dict[str, Fn], n: int, blocks: int) -> dict[str, list[float]]:
    """CPU ms per call of each fn, one figure per block of n // blocks calls; blocks interleave (rotating
    order) so that load from other processes hits every fn alike."""
    per = max(1, n // blocks)
    for fn in fns.values():  # warm-up: lazy imports, connections, caches
        for _ in range(3):
            await fn()
    samples: dict[str, list[float]] = {k: [] for k in fns}
    items = list(fns.items())
    for b in range(blocks):
        for label, fn in items[b % len(items) :] + items[: b % len(items)]:
            gc.collect()
            cpu0 = time.process_time()
            for _ in range(per):
                await fn()
            samples[label].append((time.process_time() - cpu0) * 1000 / per)
    return samples


def med(values: list[float]) -> float:
    return statistics.median(values)


def per_chunk(many: list[float], one: list[float], chunks: int) -> float:
    """Marginal CPU ms per chunk: block-paired (many-chunk call - 1-chunk call) / (chunks - 1), median."""
    return med([(a - b) / (chunks - 1) for a, b in zip(many, one, strict=True)])


def request_kwargs(url: str, prefix: str, model: str) -> dict[str, Any]:
    """What the gateway sends for a JSON-answer call on an api_base seat."""
    msgs = opening_messages(Seat(name="p0", model=f"{prefix}/{model}"), QUESTION, "en", new_marker())
    return {
        "model": f"{prefix}/{model}",
        "messages": [{"role": m.role, "content": m.content} for m in msgs],
        "api_base": f"{url}/v1",
        "api_key": "none",
        "timeout": 30.0,
        "max_retries": 0,
        "response_format": {"type": "json_object"},
    }


async def plain_call(kw: dict[str, Any], stream: bool, expect: str) -> int:
    """One llm().acompletion; returns content chunks seen; raises if the text is not `expect`."""
    if not stream:
        resp: Any = await llm().acompletion(**kw)
        text, chunks = resp.choices[0].message.content or "", 1
    else:
        parts: list[str] = []
        stream_: Any = await llm().acompletion(**kw, stream=True, stream_options={"include_usage": True})
        async for chunk in stream_:
            if chunk.choices and chunk.choices[0].delta.content:
                parts.append(chunk.choices[0].delta.content)
        text, chunks = "".join(parts), len(parts)
    if text != expect:
        raise RuntimeError(f"unexpected text {text[:60]!r}")
    return chunks


@contextlib.contextmanager
def litellm_state(**values: Any) -> Iterator[None]:
    """Temporarily set LiteLLM module switches (restored afterwards)."""
    saved = {k: getattr(llm(), k) for k in values}
    for k, v in values.items():
        setattr(llm(), k, v)
    try:
        yield
    finally:
        for k, v in saved.items():
            setattr(llm(), k, v)


class Bench:
    """The CPU measurements against one stub."""

    def __init__(self, url: str, n: int, blocks: int, chunks: int) -> None:
        self.url, self.n, self.blocks, self.chunks = url, n, blocks, chunks
        self.long_text = ("x" * (CHUNK_CHARS - 1) + " ") * chunks
        script(url, f"stream-{chunks}", [{"text": self.long_text, "chunk_chars": CHUNK_CHARS}])
        script(url, "stream-1", [{"text": self.long_text, "chunk_chars": len(self.long_text)}])
        self.latency_text = ""
        self.maps_401: dict[str, str] = {}

    def plain(self, prefix: str, model: str, **switches: Any) -> Fn:
        kw, stream = request_kwargs(self.url, prefix, model), model.startswith("stream-")

        async def call() -> int:
            with litellm_state(**switches):
                return await plain_call(kw, stream, self.long_text if stream else self.latency_text)

        return call

    async def gateway_calls(self, transport: str) -> tuple[Gateway, Callable[[str, bool], Fn]]:
        """A gateway and `ours(model, stream)`: one JSON-answer call through it on a seat of this transport,
        checked once to deliver every streamed chunk to on_delta."""
        gw = Gateway(settings(0, 0))
        seat = Seat(name="p0", model="openai/latency-0", api_base=f"{self.url}/v1", transport=transport)  # type: ignore[arg-type]
        messages = opening_messages(seat, QUESTION, "en", new_marker())
        deltas: list[str] = []

        def ours(model: str, stream: bool) -> Fn:
            s = seat.model_copy(update={"model": f"openai/{model}"})

            async def call() -> Any:
                deltas.clear()
                return await gw.complete(
                    s, messages, timeout_s=30, schema=ANSWER_SCHEMA, on_delta=deltas.append if stream else None
                )

            return call

        await ours(f"stream-{self.chunks}", True)()
        if len(deltas) != self.chunks or "".join(deltas) != self.long_text:
            raise RuntimeError(f"on_delta saw {len(deltas)} chunks, expected {self.chunks}")
        return gw, ours

    async def gateway(self) -> dict[str, float]:
        """Our gateway vs plain llm().acompletion (same kwargs), non-streamed and streamed."""
        self.latency_text = (
            (await llm().acompletion(**request_kwargs(self.url, "openai", "latency-0"))).choices[0].message.content
        )
        gw, ours = await self.gateway_calls("litellm")
        r = await compare(
            {"ours": ours("latency-0", False), "plain": self.plain("openai", "latency-0")}, self.n, self.blocks
        )
        out = {
            "call": med(r["ours"]),
            "plain": med(r["plain"]),
            "own": med([a - b for a, b in zip(r["ours"], r["plain"], strict=True)]),
        }
        r = await compare(
            {
                "many": ours(f"stream-{self.chunks}", True),
                "one": ours("stream-1", True),
                "plain_many": self.plain("openai", f"stream-{self.chunks}"),
            },
            self.n // 4,
            self.blocks,
        )
        out.update(
            stream_call=med(r["many"]),
            plain_stream_call=med(r["plain_many"]),
            chunk=per_chunk(r["many"], r["one"], self.chunks),
        )
        # The gateway alone: llm().acompletion replaced by replays of real responses.
        canned = await llm().acompletion(**request_kwargs(self.url, "openai", "latency-0"))
        streams = {}
        for model in (f"stream-{self.chunks}", "stream-1"):
            it: Any = await llm().acompletion(
                **request_kwargs(self.url, "openai", model), stream=True, stream_options={"include_usage": True}
            )
            streams[model] = [chunk async for chunk in it]

        async def replay(**kw: Any) -> Any:
            if not kw.get("stream"):
                return canned
            chunks = streams[kw["model"].split("/", 1)[1]]

            async def gen() -> Any:
                for chunk in chunks:
                    yield chunk

            return gen()

        with litellm_state(acompletion=replay):
            r = await compare(
                {
                    "call": ours("latency-0", False),
                    "many": ours(f"stream-{self.chunks}", True),
                    "one": ours("stream-1", True),
                },
                self.n,
                self.blocks,
            )
        out.update(alone_call=med(r["call"]), alone_chunk=per_chunk(r["many"], r["one"], self.chunks))
        out.update(await self.bare_http())
        return out

    async def lean(self) -> dict[str, float]:
        """The gateway on transport = "openai-compatible": non-streamed and streamed, and the bare floor."""
        gw, ours = await self.gateway_calls("openai-compatible")
        r = await compare(
            {
                "call": ours("latency-0", False),
                "many": ours(f"stream-{self.chunks}", True),
                "one": ours("stream-1", True),
            },
            self.n,
            self.blocks,
        )
        await gw.aclose()
        out = {
            "call": med(r["call"]),
            "stream_call": med(r["many"]),
            "chunk": per_chunk(r["many"], r["one"], self.chunks),
        }
        out.update(await self.bare_http())
        return out

    async def bare_http(self) -> dict[str, float]:
        """The floor under any client: the same request over a bare aiohttp session, the reply parsed with json
        (streamed: every SSE data line). The gateway's lean client (transport = "openai-compatible") is
        measured against it."""
        import aiohttp

        body = {
            k: v
            for k, v in request_kwargs(self.url, "openai", "latency-0").items()
            if k in ("messages", "response_format")
        }
        async with aiohttp.ClientSession(headers={"Authorization": "Bearer none"}) as http:

            def bare(model: str, stream: bool) -> Fn:
                async def call() -> int:
                    payload = {**body, "model": model, **({"stream": True} if stream else {})}
                    async with http.post(f"{self.url}/v1/chat/completions", json=payload) as resp:
                        if not stream:
                            data = await resp.json()
                            return len(data["choices"][0]["message"]["content"] or "") and 1
                        parts = []
                        async for line in resp.content:
                            if line.startswith(b"data: ") and not line.startswith(b"data: [DONE]"):
                                delta = json.loads(line[6:])["choices"]
                                if delta and delta[0]["delta"].get("content"):
                                    parts.append(delta[0]["delta"]["content"])
                        if "".join(parts) != self.long_text:
                            raise RuntimeError("bare stream lost text")
                        return len(parts)

                return call

            r = await compare(
                {
                    "call": bare("latency-0", False),
                    "many": bare(f"stream-{self.chunks}", True),
                    "one": bare("stream-1", True),
                },
                self.n,
                self.blocks,
            )
        return {"bare_call": med(r["call"]), "bare_chunk": per_chunk(r["many"], r["one"], self.chunks)}

    async def paths(self) -> list[tuple[str, float | str, tuple[float, float] | str]]:
        """Plain litellm per provider prefix: ms/call and (ms/streamed call, ms/extra chunk), or why unusable."""
        works: dict[tuple[str, bool], str | None] = {}
        for prefix in PREFIXES:
            for stream in (False, True):
                try:
                    seen = await self.plain(prefix, f"stream-{self.chunks}" if stream else "latency-0")()
                    if stream and seen != self.chunks:
                        raise RuntimeError(f"{seen} chunks instead of {self.chunks}")
                    works[prefix, stream] = None
                except Exception as exc:  # noqa: BLE001 - an unusable path is a finding, reported as such
                    works[prefix, stream] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:70]}"
        script(self.url, "fault-401", [{"fault": "401"}])
        for prefix in PREFIXES:  # does the path keep HTTP statuses apart? (our retry policy depends on it)
            try:
                await llm().acompletion(**request_kwargs(self.url, prefix, "fault-401"))
            except Exception as exc:  # noqa: BLE001 - reported
                self.maps_401[prefix] = f"{type(exc).__name__}({getattr(exc, 'status_code', None)})"
        models = {False: ["latency-0"], True: [f"stream-{self.chunks}", "stream-1"]}
        fns = {
            f"{p} {m}": self.plain(p, m) for (p, stream), err in works.items() if err is None for m in models[stream]
        }
        r = await compare(fns, self.n // 10, self.blocks)
        rows: list[tuple[str, float | str, tuple[float, float] | str]] = []
        for p in PREFIXES:
            many, one = r.get(f"{p} stream-{self.chunks}"), r.get(f"{p} stream-1")
            plain = works[p, False] or med(r[f"{p} latency-0"])
            streamed = works[p, True] or (med(many or []), per_chunk(many or [], one or [], self.chunks))
            rows.append((p, plain, streamed))
        return rows

    async def switches(self) -> list[tuple[str, float, float]]:
        """openai/ streamed under LiteLLM's switches: (label, ms/call, ms/extra chunk)."""
        quiet = {
            "callbacks": [],
            "success_callback": [],
            "_async_success_callback": [],
            "failure_callback": [],
            "_async_failure_callback": [],
            "input_callback": [],
            "service_callback": [],
        }
        cases: list[tuple[str, dict[str, Any]]] = [
            ("litellm defaults", {"disable_streaming_logging": False, "turn_off_message_logging": False}),
            ("gateway's (streaming logging, msg log off)", {}),
            ("+ disable_token_counter, callback lists emptied", {"disable_token_counter": True, **quiet}),
        ]
        fns = {
            f"{label}|{m}": self.plain("openai", m, **values)
            for label, values in cases
            for m in (f"stream-{self.chunks}", "stream-1")
        }
        r = await compare(fns, self.n // 10, self.blocks)
        return [
            (
                label,
                med(r[f"{label}|stream-{self.chunks}"]),
                per_chunk(r[f"{label}|stream-{self.chunks}"], r[f"{label}|stream-1"], self.chunks),
            )
            for label, _ in cases
        ]


async def main_async(args: argparse.Namespace, url: str, stub_pid: int) -> None:
    bench = Bench(url, args.calls, args.blocks, args.chunks)
    await run_debates(url, 0, args.rounds, 2, args.transport)  # warm-up: lazy imports, connection pools
    if args.transport == "litellm":
        print(
            f"transport litellm {importlib.metadata.version('litellm')}; callbacks after import: "
            f"success={llm().success_callback} async_success={llm()._async_success_callback} "
            f"callbacks={llm().callbacks}",
            flush=True,
        )
    else:
        print(
            f"transport openai-compatible (aiohttp {importlib.metadata.version('aiohttp')}); "
            f"LiteLLM imported: {'litellm' in sys.modules}",
            flush=True,
        )
    print(f"RSS after warm-up {rss_mib():.0f} MiB", flush=True)
    alone = await run_debates(url, args.latency_ms, args.rounds, 1, args.transport)
    print(
        f"1 debate: wall {alone['wall']:.3f} s / critical path {alone['path']:.1f} s "
        f"({alone['rounds']} debate rounds) = {alone['ratio']:.3f}x",
        flush=True,
    )
    many = await run_debates(url, args.latency_ms, args.rounds, args.concurrency, args.transport, stub_pid)
    engine = await engine_alone(args.rounds, 50)
    rss = rss_mib()
    floor = await bare_floor(url, args.latency_ms, args.concurrency) if args.rounds == 0 else float("nan")
    print(
        f"{args.concurrency} concurrent debates: wall {many['wall']:.3f} s / {many['path']:.1f} s = "
        f"{many['ratio']:.3f}x (per debate p50 {many['p50']:.3f}x, max {many['max']:.3f}x); {many['calls']} "
        f"calls, {many['cpu_ms_call']:.2f} CPU ms per call (engine+gateway+client); CPU s: ours {many['cpu']:.1f}, "
        f"stub {many['stub_cpu']:.1f}, on {os.cpu_count()} cores; load average {os.getloadavg()[0]:.1f}; "
        f"peak RSS {rss:.0f} MiB",
        flush=True,
    )
    print(f"engine alone (ScriptedProvider, 50 debates): {engine:.2f} CPU ms per LLM call", flush=True)

    t = TARGETS
    lean = args.transport == "openai-compatible" and args.rounds == 0  # the floor is of 0-round debates only
    rows: list[tuple[str, str, str, bool | None]] = [
        ("wall / critical path, 1 debate", f"{alone['ratio']:.3f}x", f"<= {t['alone']}x", alone["ratio"] <= t["alone"]),
        (
            f"wall / critical path, {args.concurrency} debates",
            f"{many['ratio']:.3f}x",
            f"<= {t['concurrent']}x",
            many["ratio"] <= t["concurrent"],
        ),
        ("  the same calls by bare aiohttp, no engine", f"{floor:.3f}x", "", None),
        (
            f"ours / floor, {args.concurrency} debates",
            f"{many['ratio'] / floor:.3f}",
            f"<= {t['over_floor']}" if lean else "",
            many["ratio"] / floor <= t["over_floor"] if lean else None,
        ),
        (f"CPU per call in the {args.concurrency}-debate run (all)", f"{many['cpu_ms_call']:.2f} ms", "", None),
        ("  engine alone (ScriptedProvider)", f"{engine:.2f} ms", "", None),
    ]
    rows += await (litellm_rows(bench, args) if args.transport == "litellm" else lean_rows(bench, args))
    rows.append(
        (
            f"peak RSS after {args.concurrency} debates",
            f"{rss:.0f} MiB",
            f"<= {t['rss_mib']:.0f} MiB",
            rss <= t["rss_mib"],
        )
    )
    print(
        f"\nSummary, transport {args.transport} (one run; CPU figures are medians of interleaved blocks; "
        "the machine is shared and noisy)"
    )
    for label, value, target, ok in rows:
        print(f"  {label:<46}{value:>11}  {target:<13}{'' if ok is None else mark(ok)}")
    print(
        f"\ncommand: {' '.join([Path(sys.executable).name, *sys.argv])}  (took {time.perf_counter() - STARTED:.0f} s; "
        f"CPU s: this process {time.process_time():.0f}, stub {cpu_s_of(stub_pid):.0f}; LiteLLM imported: "
        f"{'litellm' in sys.modules})"
    )


Row = tuple[str, str, str, bool | None]


async def lean_rows(bench: Bench, args: argparse.Namespace) -> list[Row]:
    """The gateway on the lean client, and the bare aiohttp floor under it."""
    ours = await bench.lean()
    print(
        f"gateway, openai-compatible ({args.calls} calls each, median of {args.blocks} blocks): "
        f"{ours['call']:.2f} CPU ms per non-streamed call (bare aiohttp {ours['bare_call']:.2f}); streamed "
        f"{ours['stream_call']:.2f} ms per call of {args.chunks} chunks, {ours['chunk'] * 1000:.0f} us per extra chunk "
        f"(bare {ours['bare_chunk'] * 1000:.0f} us)",
        flush=True,
    )
    return gateway_rows(ours, args.chunks, [], [])


async def litellm_rows(bench: Bench, args: argparse.Namespace) -> list[Row]:
    """The gateway on LiteLLM, plain LiteLLM beside it, its provider paths and switches."""
    ours = await bench.gateway()
    print(
        f"gateway ({args.calls} plain / {args.calls // 4} streamed calls each, median of {args.blocks} blocks): "
        f"{ours['call']:.2f} CPU ms per non-streamed call (plain litellm {ours['plain']:.2f}); streamed "
        f"{ours['stream_call']:.2f} ms per call of {args.chunks} chunks (plain litellm {ours['plain_stream_call']:.2f}), "
        f"{ours['chunk'] * 1000:.0f} us per extra chunk",
        flush=True,
    )
    paths = await bench.paths()
    switches = await bench.switches()
    n10 = args.calls // 10
    print(f"\nplain litellm.acompletion by provider prefix, api_base=<stub>/v1 ({n10} calls each, CPU ms)")
    print(
        f"  {'prefix':<16}{'per call':>10}{f'per {args.chunks}-chunk stream':>24}{'per extra chunk':>17}  HTTP 401 raises"
    )
    for prefix, plain, streamed in paths:
        cells = f"{plain:>10.2f}" if isinstance(plain, float) else f"{'-':>10}"
        cells += f"{streamed[0]:>24.2f}{streamed[1]:>17.3f}" if isinstance(streamed, tuple) else f"{'-':>24}{'-':>17}"
        print(f"  {prefix:<16}{cells}  {bench.maps_401.get(prefix, '-')}")
        for what, err in (("plain", plain), ("streamed", streamed)):
            if isinstance(err, str):
                print(f"    {what} call unusable: {err}")
    print(f"\nLiteLLM switches, openai/ streamed ({n10} calls each, CPU ms)")
    for label, call, chunk in switches:
        print(f"  {label:<48}{call:>8.2f} per call {chunk:>7.3f} per extra chunk")
    return gateway_rows(
        ours,
        args.chunks,
        [
            ("plain litellm.acompletion, same call", "plain"),
            ("gateway's own share (paired difference)", "own"),
            ("gateway alone (litellm replaced by replays)", "alone_call"),
        ],
        [("gateway alone (litellm replaced by replays)", "alone_chunk")],
    )


def gateway_rows(
    ours: dict[str, float], chunks: int, call_notes: list[tuple[str, str]], chunk_notes: list[tuple[str, str]]
) -> list[Row]:
    """The gateway's per-call and per-chunk rows against their targets, each followed by the figures beside it
    (`*_notes`: label and key in `ours`), then the bare aiohttp floor."""
    t = TARGETS
    return [
        (
            "CPU per non-streamed call (gateway)",
            f"{ours['call']:.2f} ms",
            f"<= {t['cpu_call_ms']} ms",
            ours["call"] <= t["cpu_call_ms"],
        ),
        *((f"  {label}", f"{ours[key]:.2f} ms", "", None) for label, key in call_notes),
        ("  bare aiohttp POST + json, same request", f"{ours['bare_call']:.2f} ms", "", None),
        (f"CPU per streamed call, {chunks} chunks (gateway)", f"{ours['stream_call']:.2f} ms", "", None),
        (
            "CPU per streamed chunk (gateway, marginal)",
            f"{ours['chunk']:.3f} ms",
            f"<= {t['cpu_chunk_ms']} ms",
            ours["chunk"] <= t["cpu_chunk_ms"],
        ),
        *((f"  {label}", f"{ours[key]:.3f} ms", "", None) for label, key in chunk_notes),
        ("  bare aiohttp + json per SSE line", f"{ours['bare_chunk']:.3f} ms", "", None),
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-ms", type=int, default=2000, help="stub latency per call (e.g. 2000 or 1000)")
    parser.add_argument("--concurrency", type=int, default=200, help="debates run at once")
    parser.add_argument(
        "--rounds",
        type=int,
        default=0,
        help="debate rounds; 0 uses latency-<ms> seats, >0 scripted seats that disagree",
    )
    parser.add_argument(
        "--calls", type=int, default=300, help="sequential non-streamed calls per CPU measurement (streamed: 1/4)"
    )
    parser.add_argument("--blocks", type=int, default=10, help="interleaved blocks per CPU measurement")
    parser.add_argument("--chunks", type=int, default=100, help="content chunks per streamed answer")
    parser.add_argument("--quick", action="store_true", help="short run: 1 s calls, 50 debates, 30 calls")
    parser.add_argument(
        "--transport",
        choices=("litellm", "openai-compatible"),
        default="litellm",
        help="the seats' transport; openai-compatible never imports LiteLLM",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.latency_ms, args.concurrency = min(args.latency_ms, 1000), min(args.concurrency, 50)
        args.calls, args.blocks = 30, 3
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally blocks: the stub is killed
    with stub_process() as (url, pid):
        try:
            asyncio.run(main_async(args, url, pid))
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            sys.exit(130)


if __name__ == "__main__":
    main()
