"""Quorum grace against a straggler: one seat slower than the others, with and without grace.

    python bench/straggler.py [--call-s 0.5] [--slow 10] [--debates 10]

Scripted seats (no model, no network) that answer in `call_s` seconds, one of them `slow` times slower, on a
panel that debates one round (the openings disagree 2-1 and agree after it). Prints, per setting, the median
wall time ÷ the critical path of the same debate without the straggler (the fast seats' rounds plus the
synthesis), and how often the straggler's late answer still reached the synthesis. Times scale with `call_s`:
the grace window is expressed in the same unit (grace_s is given as a multiple of call_s).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from consensus.engine import DebateOptions, QuorumGrace, debate
from consensus.providers.fake import ScriptedProvider, Step
from consensus.types import DebateSettings, Panel, Seat


def panel() -> Panel:
    seats = [Seat(name=n, model=f"openai/{n}") for n in ("a", "b", "slow")]
    return Panel(panelists=seats, synthesizer=seats[0], debate=DebateSettings(max_rounds=1, agreement_threshold=0.9))


def provider(call_s: float, slow: float) -> ScriptedProvider:
    return ScriptedProvider(
        script={
            "a": [Step(final="4", delay_s=call_s), Step(final="4", delay_s=call_s), Step(text="4.", delay_s=call_s)],
            "b": [Step(final="5", delay_s=call_s), Step(final="4", delay_s=call_s)],
            "slow": [Step(final="4", delay_s=call_s * slow)],
        }
    )


async def run(call_s: float, slow: float, grace: QuorumGrace | None, n: int) -> tuple[float, float]:
    critical = 3 * call_s  # openings, one debate round, the synthesis: the fast seats' path
    ratios, reached = [], 0
    for _ in range(n):
        start = time.perf_counter()
        r = await debate("2+2?", panel(), provider(call_s, slow), DebateOptions(language="en", quorum_grace=grace))
        ratios.append((time.perf_counter() - start) / critical)
        reached += bool(r.consensus and r.consensus.answered == 3)  # the synthesis saw the straggler's answer
    return statistics.median(ratios), reached / n


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--call-s", type=float, default=0.5, help="a fast seat's seconds per call")
    ap.add_argument("--slow", type=float, default=10.0, help="how many times slower the straggler is")
    ap.add_argument("--debates", type=int, default=5)
    a = ap.parse_args()
    settings: list[tuple[str, QuorumGrace | None]] = [
        ("no grace (research mode)", None),
        ("grace_s = 2 calls, factor 1.5", QuorumGrace(grace_s=2 * a.call_s, grace_factor=1.5)),
        # the defaults (1 s, 0.25) at 2 s calls
        ("grace_s = 0.5 call, factor 0.25 (default)", QuorumGrace(grace_s=0.5 * a.call_s, grace_factor=0.25)),
    ]
    print(f"fast seats {a.call_s:g} s a call, the straggler {a.slow:g}x slower; {a.debates} debates each")
    for slow in (a.slow, 2.0):
        for label, grace in settings:
            ratio, reached = await run(a.call_s, slow, grace, a.debates)
            print(
                f"  straggler {slow:>4g}x, {label:<42} wall / critical path {ratio:5.2f}x, "
                f"its answer reached the synthesis {reached:4.0%}"
            )


if __name__ == "__main__":
    asyncio.run(main())
