"""Print figures for the embedded model: load time, tokens/s, and full default-panel debates.

python bench/local.py [--debates 5] [--threads 1 2]   # --threads also times raw llama-cpp per n_threads
"""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import argparse  # noqa: E402
import asyncio  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

import litellm  # noqa: E402

from consensus.providers import local, local_litellm  # noqa: E402

STORY = [{"role": "user", "content": "Write a short story about a lighthouse keeper and a cat."}]


async def stream(max_tokens: int, seed: int) -> tuple[int, float, float]:
    """(completion tokens, seconds to first token, seconds in all) for one streamed call."""
    start, first, usage = time.perf_counter(), 0.0, None
    response: Any = await litellm.acompletion(
        model=local.MODEL,
        messages=STORY,
        max_tokens=max_tokens,
        seed=seed,
        temperature=0.7,
        stream=True,
        stream_options={"include_usage": True},
        max_retries=0,
        timeout=300,
    )
    async for chunk in response:
        if not first and chunk.choices and chunk.choices[0].delta.content:
            first = time.perf_counter() - start
        usage = getattr(chunk, "usage", None) or usage
    return (usage.completion_tokens if usage else 0), first, time.perf_counter() - start


async def debates(n: int) -> None:
    """Wall time of full debates on the default local panel (openings, 1 debate round, synthesis)."""
    from consensus.config import default_local_panel
    from consensus.engine import DebateOptions, debate
    from consensus.providers.gateway import Gateway

    panel = default_local_panel()
    gateway = Gateway(panel.debate)
    questions = [
        "What is the capital of France?",
        "What is 12 times 7?",
        "A bat and a ball cost 1.10 dollars in total. The bat costs 1 dollar more than the ball. "
        "How much does the ball cost?",
        "Is the Earth flat? Answer yes or no.",
        "Which is heavier, a kilogram of feathers or a kilogram of iron?",
    ]
    walls = []
    for i in range(n):
        q = questions[i % len(questions)]
        start = time.perf_counter()
        r = await debate(q, panel, gateway, DebateOptions(language="en"))
        walls.append(time.perf_counter() - start)
        print(
            f"debate {i + 1}: {walls[-1]:.1f} s, status {r.status.value}, rounds {len(r.rounds)}, "
            f"{r.usage.llm_calls} calls, {r.usage.completion_tokens} completion tokens, agreement "
            f"{r.consensus.agreement if r.consensus else None}"
        )
    walls.sort()
    print(f"full default debate: median {walls[len(walls) // 2]:.1f} s, worst {walls[-1]:.1f} s (target <= 20 s)")


async def main(threads: list[int], n_debates: int) -> None:
    print(f"cpus={os.cpu_count()} loadavg={os.getloadavg()[0]:.2f}")
    local_litellm.register()
    start = time.perf_counter()
    local.load_model()
    print(f"load (model + vocab twin): {time.perf_counter() - start:.2f} s")
    await stream(8, seed=0)  # warm-up
    start = time.perf_counter()
    r: Any = await litellm.acompletion(
        model=local.MODEL, messages=STORY, max_tokens=64, seed=1, temperature=0.7, max_retries=0, timeout=300
    )
    wall, n = time.perf_counter() - start, r.usage.completion_tokens
    print(f"plain call: {n} tokens in {wall:.2f} s = {n / wall:.1f} tokens/s (prompt {r.usage.prompt_tokens})")
    n, first, wall = await stream(64, seed=2)
    print(f"one stream: {n} tokens, first after {first:.2f} s, {wall:.2f} s in all = {n / wall:.1f} tokens/s")
    start = time.perf_counter()
    results = await asyncio.gather(*(stream(64, seed=s) for s in (3, 4, 5)))
    wall = time.perf_counter() - start
    total = sum(n for n, _, _ in results)
    firsts = ", ".join(f"{f:.2f}" for _, f, _ in results)
    print(f"3 concurrent streams: {total} tokens in {wall:.2f} s (first tokens at {firsts} s)")
    await debates(n_debates)
    for n_threads in threads:
        import llama_cpp

        llm = llama_cpp.Llama(model_path=str(local.model_path()), n_ctx=2048, n_threads=n_threads, verbose=False)
        start = time.perf_counter()
        out = llm.create_chat_completion(messages=STORY, max_tokens=64, seed=1, temperature=0.7)
        wall, n = time.perf_counter() - start, out["usage"]["completion_tokens"]
        print(f"raw llama-cpp n_threads={n_threads}: {n} tokens in {wall:.2f} s = {n / wall:.1f} tokens/s")
    print(f"loadavg={os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="*", default=[])
    parser.add_argument("--debates", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.threads, args.debates))
