"""consensus.eval.stats against values computed by hand."""

import pytest

from consensus.eval.stats import flips, mcnemar_exact, paired_bootstrap, percentile, wilson_interval


def test_wilson_interval_matches_the_textbook_value() -> None:
    # p = 0.8, z^2 = 3.8416: centre = (0.8 + 0.19208) / 1.38416, margin = 1.96 * sqrt(0.016 + 0.009604) / 1.38416
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-4)
    assert high == pytest.approx(0.9433, abs=1e-4)


def test_wilson_interval_edges_stay_within_0_and_1() -> None:
    assert wilson_interval(0, 0) == (0.0, 1.0)  # no data: every proportion is possible
    low, high = wilson_interval(0, 10)
    assert low == 0.0 and 0.0 < high < 0.35  # 3.8416 / 13.8416 = 0.2775
    assert wilson_interval(0, 10)[1] == pytest.approx(3.8416 / 13.8416)
    low, high = wilson_interval(10, 10)
    assert high == pytest.approx(1.0) and low == pytest.approx(10 / 13.8416)


@pytest.mark.parametrize(("successes", "n"), [(-1, 5), (6, 5), (0, -1)])
def test_wilson_interval_rejects_impossible_counts(successes: int, n: int) -> None:
    with pytest.raises(ValueError):
        wilson_interval(successes, n)


@pytest.mark.parametrize(
    ("b", "c", "expected"),
    [
        (0, 5, 0.0625),  # 2 * (1/32)
        (5, 0, 0.0625),  # symmetric
        (3, 3, 1.0),  # 2 * P(X <= 3; 6) = 2 * 42/64 > 1, capped
        (1, 9, 0.021484375),  # 2 * (1 + 10) / 1024
        (0, 0, 1.0),  # no discordant pairs: no evidence
        (2, 8, 0.109375),  # 2 * (1 + 10 + 45) / 1024
    ],
)
def test_mcnemar_exact_hand_values(b: int, c: int, expected: float) -> None:
    assert mcnemar_exact(b, c) == pytest.approx(expected, abs=1e-12)


def test_mcnemar_exact_handles_large_counts_without_overflow() -> None:
    assert 0.0 <= mcnemar_exact(900, 1100) < 1e-5
    assert mcnemar_exact(1000, 1000) == 1.0


def test_percentile_interpolates_linearly_like_numpy() -> None:
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile([4, 1, 3, 2], 50) == 2.5  # order does not matter
    assert percentile([1, 2, 3, 4], 95) == pytest.approx(3.85)  # numpy.percentile gives 3.85
    assert percentile([1, 2, 3, 4], 0) == 1.0
    assert percentile([1, 2, 3, 4], 100) == 4.0
    assert percentile([7.5], 95) == 7.5
    assert percentile(list(range(101)), 37) == 37.0


def test_percentile_rejects_empty_and_out_of_range() -> None:
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_paired_bootstrap_is_deterministic_and_its_ci_contains_the_difference() -> None:
    a = [i % 4 != 0 for i in range(80)]  # 60/80 right
    b = [i % 2 == 0 for i in range(80)]  # 40/80 right
    first = paired_bootstrap(a, b, iterations=2000, seed=7)
    assert first == paired_bootstrap(a, b, iterations=2000, seed=7)
    assert first["mean_difference"] == pytest.approx(0.25)
    assert first["ci_low"] <= first["mean_difference"] <= first["ci_high"]
    assert 0.0 < first["ci_low"] and first["ci_high"] < 0.5
    assert 0.0 < first["p_value"] < 0.01
    assert paired_bootstrap(a, b, iterations=2000, seed=8) != first


def test_paired_bootstrap_with_no_difference_has_p_value_1() -> None:
    same = [True, False, True, True, False]
    result = paired_bootstrap(same, list(same), iterations=500, seed=0)
    assert result["mean_difference"] == 0.0
    assert result["ci_low"] == result["ci_high"] == 0.0
    assert result["p_value"] == 1.0


def test_paired_bootstrap_rejects_unpaired_or_empty_input() -> None:
    with pytest.raises(ValueError):
        paired_bootstrap([True], [True, False])
    with pytest.raises(ValueError):
        paired_bootstrap([], [])


def test_flips_counts_each_direction() -> None:
    before = [False, False, True, True, False]
    after = [True, False, False, True, True]
    assert flips(before, after) == {"wrong_to_right": 2, "right_to_wrong": 1}
    with pytest.raises(ValueError):
        flips([True], [])
