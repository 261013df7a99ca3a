"""Pure statistics for comparing debate panels: intervals, paired tests, percentiles, flips.

Standard library only (no numpy, no scipy); the exact binomial uses ``math.comb``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

__all__ = ["flips", "mcnemar_exact", "paired_bootstrap", "percentile", "wilson_interval"]


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for a proportion; with n == 0 it returns (0.0, 1.0), i.e. no information."""
    if n < 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n, got successes={successes}, n={n}")
    if n == 0:
        # No observation leaves every proportion possible: the honest interval is all of [0, 1].
        return (0.0, 1.0)
    p = successes / n
    z2 = z * z
    denominator = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denominator
    margin = z * math.sqrt(p * (1.0 - p) / n + z2 / (4 * n * n)) / denominator
    return (max(0.0, centre - margin), min(1.0, centre + margin))


def _binom_cdf_half(k: int, n: int) -> float:
    """P(X <= k) for X ~ Binomial(n, 1/2), computed exactly with integers before one division."""
    return sum(math.comb(n, i) for i in range(k + 1)) / (1 << n)


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts b (A right, B wrong) and c (A wrong, B right)."""
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be >= 0, got b={b}, c={c}")
    if b + c == 0:
        return 1.0
    return min(1.0, 2.0 * _binom_cdf_half(min(b, c), b + c))


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation between order statistics, like numpy's default."""
    if not values:
        raise ValueError("percentile of an empty sequence")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"q must be within [0, 100], got {q}")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100.0
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    fraction = position - low
    return float(ordered[low] + (ordered[high] - ordered[low]) * fraction)


def _check_paired(a: Sequence[bool], b: Sequence[bool]) -> None:
    if len(a) != len(b):
        raise ValueError(f"paired lists differ in length: {len(a)} != {len(b)}")


def paired_bootstrap(a: Sequence[bool], b: Sequence[bool], iterations: int = 10000, seed: int = 0) -> dict[str, float]:
    """Paired bootstrap of accuracy(a) - accuracy(b): mean difference, 95 % percentile CI, two-sided p-value.

    Items are resampled with replacement as pairs (so the pairing is kept), ``iterations`` times,
    with ``random.Random(seed)``: the same inputs and seed give the same result. The CI is the
    2.5th and 97.5th percentiles of the resampled differences. The p-value tests "no difference"
    by shifting the bootstrap distribution to the null (Efron & Tibshirani, ch. 16):
    p = (1 + #{|d* - d| >= |d|}) / (iterations + 1), where d is the observed difference; it is
    1.0 when d == 0. Cost is O(iterations * len(a)).
    """
    _check_paired(a, b)
    if not a:
        raise ValueError("paired_bootstrap needs at least one pair")
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    n = len(a)
    per_item = [int(x) - int(y) for x, y in zip(a, b, strict=True)]
    observed = sum(per_item) / n
    rng = random.Random(seed)
    resampled = [sum(rng.choices(per_item, k=n)) / n for _ in range(iterations)]
    # A tiny tolerance so that resamples equal to |d| in exact arithmetic are not lost to rounding.
    extreme = sum(1 for d in resampled if abs(d - observed) >= abs(observed) - 1e-12)
    return {
        "mean_difference": observed,
        "ci_low": percentile(resampled, 2.5),
        "ci_high": percentile(resampled, 97.5),
        "p_value": 1.0 if observed == 0 else min(1.0, (1 + extreme) / (iterations + 1)),
        "iterations": float(iterations),
        "n": float(n),
    }


def flips(before: Sequence[bool], after: Sequence[bool]) -> dict[str, int]:
    """Count items that went wrong -> right and right -> wrong between two paired runs."""
    _check_paired(before, after)
    pairs = list(zip(before, after, strict=True))
    return {
        "wrong_to_right": sum(1 for x, y in pairs if not x and y),
        "right_to_wrong": sum(1 for x, y in pairs if x and not y),
    }
