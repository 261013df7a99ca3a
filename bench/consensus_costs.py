"""What the checkable consensus costs: calls and tokens per question, closed-form and open, and the two designs.

    python bench/consensus_costs.py

Runs scripted debates (no model, no network) through the real engine and prints, for a closed-form question and an
open (essay) question where round 0 agrees: the calls made, the prompt and completion tokens (the fakes count 4
characters a token, as the stub does), and what the analysis adds. For the open question it also prices the other
design - analysis and synthesis in one call - from the prompts our code builds: one call whose prompt is the
synthesis prompt plus the analyst's instructions, and whose reply holds both the claim map and the consensus.
"""

from __future__ import annotations

import asyncio
import json
import time

from consensus.claims import analysis_messages, claim_map_prompt
from consensus.engine import DebateOptions, debate
from consensus.providers.fake import ScriptedProvider, Step, answer_json
from consensus.types import DebateResult, DebateSettings, Panel, Seat

ESSAYS = {
    "a": "MLOps and model deployment, LLM evaluation, cost-aware inference",
    "b": "Model deployment and monitoring (MLOps), evaluation frameworks, latency and cost optimization",
    "c": "Production deployment with observability, RAG and vector databases, cost-efficient inference",
}
CLAIM_MAP = json.dumps(
    {
        "claims": [
            {
                "text": "Deploying models to production",
                "asserts": [
                    {"panelist": "A", "quote": "model deployment"},
                    {"panelist": "B", "quote": "Model deployment"},
                    {"panelist": "C", "quote": "Production deployment"},
                ],
            },
            {
                "text": "Keeping inference cost low",
                "asserts": [
                    {"panelist": "A", "quote": "cost-aware inference"},
                    {"panelist": "B", "quote": "cost optimization"},
                    {"panelist": "C", "quote": "cost-efficient inference"},
                ],
            },
            {"text": "RAG and vector databases", "asserts": [{"panelist": "C", "quote": "RAG and vector databases"}]},
        ],
        "positions": [["A", "B", "C"]],
    }
)
SYNTHESIS = "Deploy models with MLOps, evaluate them, and keep inference cost low. Panelist C adds RAG."
QUESTION = "Which three production-ready skills should an AI engineer prioritize to stay market-resilient?"


def panel() -> Panel:
    seats = [Seat(name=n, model=f"openai/{n}") for n in "abc"]
    return Panel(panelists=seats, synthesizer=seats[0], debate=DebateSettings(max_rounds=2))


async def closed() -> DebateResult:
    fake = ScriptedProvider(script={n: [Step(final="4"), Step(text="The panel agrees: 4.")] for n in "abc"})
    return await debate("What is 2+2?", panel(), fake, DebateOptions(language="en"))


async def open_question() -> tuple[DebateResult, ScriptedProvider]:
    script = {n: [Step(text=answer_json(t, t)), Step(text=SYNTHESIS)] for n, t in ESSAYS.items()}
    script["a"] = [Step(text=answer_json(ESSAYS["a"], ESSAYS["a"])), Step(text=CLAIM_MAP), Step(text=SYNTHESIS)]
    fake = ScriptedProvider(script=script)
    return await debate(QUESTION, panel(), fake, DebateOptions(language="en")), fake


def tokens(text: str) -> int:
    return max(1, len(text) // 4)


async def main() -> None:
    c = await closed()
    print(
        f"closed-form, round 0 agrees: {c.usage.llm_calls} calls, {c.usage.total_tokens} tokens, "
        f"rounds {len(c.rounds)}, agreement method {c.rounds[0].agreement.method}"
    )
    started = time.process_time()
    o, fake = await open_question()
    cpu_ms = (time.process_time() - started) * 1000
    an = o.rounds[0].analysis
    assert an is not None
    print(
        f"open (essay), round 0 agrees: {o.usage.llm_calls} calls, {o.usage.total_tokens} tokens, "
        f"rounds {len(o.rounds)}, agreement {o.rounds[0].agreement.score:.2f} "
        f"({o.rounds[0].agreement.method}); the whole debate took {cpu_ms:.1f} ms of CPU in-process"
    )
    print(f"  the analysis call: {an.usage.prompt_tokens} prompt + {an.usage.completion_tokens} completion tokens")
    synth_prompt = sum(tokens(m.content) for m in fake.calls[-1].messages)
    print(f"  the synthesis prompt (with the verified claim map): {synth_prompt} tokens")
    # The other design: one call that maps the claims and writes the consensus.
    finals = sorted(((i, o.answers[n]) for i, n in enumerate("abc")), key=lambda t: t[0])
    instructions = analysis_messages(QUESTION, finals, "en", "DATA-000000000000")[0].content
    combined_prompt = synth_prompt + tokens(instructions)
    combined_completion = an.usage.completion_tokens + tokens(SYNTHESIS)
    separate = an.usage.total_tokens + synth_prompt + tokens(SYNTHESIS)
    print(
        f"  one combined call instead: ~{combined_prompt} prompt + {combined_completion} completion tokens "
        f"(~{combined_prompt + combined_completion} against {separate} for the two calls), 4 calls, but the "
        "consensus would be written before its claim map is verified"
    )
    cmap = claim_map_prompt(an, {f"Panelist {x.upper()}": x for x in "abc"}, "DATA-000000000000")
    print(
        f"  extra tokens per open question: {an.usage.total_tokens} for the analysis call + ~{tokens(cmap)} for the "
        f"claim map in the synthesis prompt = ~{an.usage.total_tokens + tokens(cmap)}"
    )


if __name__ == "__main__":
    asyncio.run(main())
