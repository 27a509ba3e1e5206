"""The benchmarks' verdict on a ratio from paired rounds (bench._common.paired_ratio)."""

from __future__ import annotations

import math

import pytest

from bench._common import paired_ratio


def test_the_interval_is_students_t_around_the_geometric_mean_of_the_pairs() -> None:
    figures = paired_ratio([math.exp(0.1), math.exp(-0.1)], 0.95)
    assert figures["pairs"] == 2
    assert figures["ratio_geometric_mean"] == pytest.approx(1.0)
    # The logs' sd is 0.1 * sqrt(2); one degree of freedom: t = 12.706.
    assert figures["ratio_ci95_low"] == pytest.approx(math.exp(-1.2706), rel=1e-4)
    assert figures["ratio_ci95_high"] == pytest.approx(math.exp(1.2706), rel=1e-4)


def test_met_only_when_the_whole_interval_clears_the_goal() -> None:
    assert paired_ratio([0.99, 1.0, 0.98, 1.01], 0.95)["verdict"].startswith("met")
    assert paired_ratio([0.80, 0.82, 0.81, 0.83], 0.95)["verdict"].startswith("not met")
    noisy = paired_ratio([0.85, 1.05, 0.90, 1.00], 0.95)
    assert noisy["verdict"].startswith("not resolved")
    assert noisy["ratio_ci95_low"] < 0.95 < noisy["ratio_ci95_high"]


def test_more_pairs_narrow_the_interval() -> None:
    few = paired_ratio([0.9, 1.0, 0.95], 0.95)
    many = paired_ratio([0.9, 1.0, 0.95] * 12, 0.95)
    assert (
        many["ratio_ci95_high"] - many["ratio_ci95_low"]
        < (few["ratio_ci95_high"] - few["ratio_ci95_low"]) / 4
    )


def test_one_pair_has_no_interval() -> None:
    with pytest.raises(ValueError, match="at least two pairs"):
        paired_ratio([1.0], 0.95)
