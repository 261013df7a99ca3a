"""CPU of the faithfulness guard per consensus, and of verifying a claim map; prints figures.

    python bench/guard.py             # 2,000 consensus texts of each kind
    python bench/guard.py --n 200     # quicker

Each text is made unique (a made-up word appended), so language detection's cache (the last 512 texts)
never answers: the figures are a consensus the guard has not seen. "cached" repeats one text instead.
The language profiles are loaded before timing (the service warms them up at start).
"""

from __future__ import annotations

import argparse
import functools
import json
import random
import statistics
import string
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from consensus.agreement import score_agreement  # noqa: E402
from consensus.claims import verify_claim_map  # noqa: E402
from consensus.guard import check_consensus, confident_language  # noqa: E402
from consensus.rounds import new_marker  # noqa: E402

LABELS = {"Panelist A": "alice", "Panelist B": "bob", "Panelist C": "carol"}
EGGS = {
    "alice": "Janet has 16 - 3 - 4 = 9 eggs left and sells them at $2 each, so she makes $18 every day.",
    "bob": "9 eggs at $2 each: $18.",
    "carol": "She sells 10 eggs at $2: $20.",
}
ESSAYS = {
    "alice": "MLOps and model deployment, LLM evaluation, cost-aware inference. " * 4,
    "bob": "Model deployment and monitoring (MLOps), evaluation frameworks, latency and cost optimization. " * 4,
    "carol": "Production deployment with observability, RAG and vector databases, cost-efficient inference. " * 4,
}
CASES = {
    "short closed (number)": (
        "Janet makes $18 a day.\n\nDissent: Panelist C counted 10 eggs and said $20.",
        EGGS,
        [("alice", "18"), ("bob", "$18"), ("carol", "20")],
        True,
        "en",
    ),
    "closed with a quote (number)": (
        'As Panelist A put it, Janet "sells them at $2 each": 16 - 3 - 4 = 9 eggs, so she makes $18 a day.\n\n'
        "Agreement: Panelists A and B agree on the arithmetic.\n\nDissent: Panelist C counted 10 eggs and said $20.",
        EGGS,
        [("alice", "18"), ("bob", "$18"), ("carol", "20")],
        True,
        "en",
    ),
    "open essay, ~1,200 chars": (
        (
            "The panel agrees that an AI engineer should prioritise production deployment and MLOps, the "
            "evaluation of language models, and cost-aware inference. " * 6
        )
        + '\n\nAgreement: Panelists A and B both name "evaluation frameworks".\n\nDissent: Panelist C adds RAG.',
        ESSAYS,
        [(n, t) for n, t in ESSAYS.items()],
        False,
        "en",
    ),
    "Spanish, closed": (
        "Janet gana 18 dólares al día: le quedan 9 huevos y los vende a 2 dólares cada uno, según la mayoría.",
        EGGS,
        [("alice", "18"), ("bob", "$18"), ("carol", "20")],
        True,
        "es",
    ),
    "wrong language (langdetect runs)": (
        "Janet gana 18 dólares al día: le quedan 9 huevos y los vende a 2 dólares cada uno, según la mayoría.",
        EGGS,
        [("alice", "18"), ("bob", "$18"), ("carol", "20")],
        True,
        "en",
    ),
}
CLAIM_MAP = json.dumps(
    {
        "claims": [
            {
                "text": "Deployment and MLOps",
                "asserts": [
                    {"panelist": "A", "quote": "MLOps and model deployment"},
                    {"panelist": "B", "quote": "Model deployment and monitoring"},
                    {"panelist": "C", "quote": "Production deployment"},
                ],
                "contradicts": [],
            },
            {
                "text": "Cost",
                "asserts": [
                    {"panelist": "A", "quote": "cost-aware inference"},
                    {"panelist": "B", "quote": "latency and cost optimization"},
                    {"panelist": "C", "quote": "an invented quote"},
                ],
                "contradicts": [],
            },
            {"text": "RAG", "asserts": [{"panelist": "C", "quote": "RAG and vector databases"}], "contradicts": []},
        ],
        "positions": [["A", "B", "C"]],
    }
)


def word(rng: random.Random) -> str:
    return "".join(rng.choice(string.ascii_lowercase) for _ in range(7))


def timed(fn: Callable[[str], object], inputs: list[str]) -> tuple[float, float, float]:
    """Median and p95 wall time per call (ms), and CPU per call (ms), of fn over the inputs."""
    times = []
    cpu0 = time.process_time()
    for x in inputs:
        t0 = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t0)
    cpu = (time.process_time() - cpu0) / len(inputs)
    times.sort()
    return statistics.median(times) * 1e3, times[int(len(times) * 0.95)] * 1e3, cpu * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000, help="calls per figure")
    args = parser.parse_args()
    rng = random.Random(0)
    marker = new_marker()
    confident_language("Warm up the language profiles before timing anything at all, please.")
    print(f"{'guard: check_consensus':38} {'median ms':>10} {'p95 ms':>8} {'CPU ms/call':>12}")
    for name, (text, answers, finals, closed, language) in CASES.items():
        guard = functools.partial(
            check_consensus,
            marker=marker,
            agreement=score_agreement(finals),
            answers=answers,
            labels=LABELS,
            language=language,
            closed=closed,
        )
        med, p95, cpu = timed(guard, [f"{text} {word(rng)}" for _ in range(args.n)])
        print(f"{name:38} {med:10.3f} {p95:8.3f} {cpu:12.3f}")
        med, p95, cpu = timed(guard, [text] * args.n)
        print(f"{'  the same text again (cached)':38} {med:10.3f} {p95:8.3f} {cpu:12.3f}")
    essay = CASES["open essay, ~1,200 chars"][0]
    med, p95, cpu = timed(confident_language, [f"{essay} {word(rng)}" for _ in range(args.n)])
    print(f"{'langdetect alone on the essay':38} {med:10.3f} {p95:8.3f} {cpu:12.3f}")
    med, p95, cpu = timed(lambda m: verify_claim_map(m, LABELS, ESSAYS), [CLAIM_MAP] * args.n)
    print(f"{'claims: verify_claim_map (3 claims)':38} {med:10.3f} {p95:8.3f} {cpu:12.3f}")


if __name__ == "__main__":
    main()
