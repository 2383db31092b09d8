"""Confidence intervals over seeds against textbook t values and intervals computed by hand."""

from __future__ import annotations

import math

import pytest

from stretchysnake_hf.seed_statistics import (
    Interval,
    mean_ci,
    paired_difference,
    seeds_for_half_width,
    student_t_mass,
    student_t_quantile,
)


@pytest.mark.parametrize(
    ("confidence", "df", "expected"),
    [(0.95, 1, 12.706), (0.95, 2, 4.303), (0.95, 3, 3.182), (0.95, 4, 2.776), (0.95, 9, 2.262), (0.95, 29, 2.045),
     (0.99, 5, 4.032), (0.90, 10, 1.812)],
)  # fmt: skip
def test_t_quantiles_match_the_table(confidence, df, expected):
    assert student_t_quantile(confidence, df) == pytest.approx(expected, abs=5e-4)


def test_t_mass_closed_forms():
    assert student_t_mass(1.0, 1) == pytest.approx(0.5)  # Cauchy: P(|T| <= 1) = 2 atan(1) / pi
    assert student_t_mass(2.0, 2) == pytest.approx(2 / math.sqrt(6))  # df 2: t / sqrt(2 + t^2)
    assert student_t_mass(-2.0, 2) == student_t_mass(2.0, 2)
    with pytest.raises(ValueError, match="positive integer"):
        student_t_mass(1.0, 0)
    with pytest.raises(ValueError, match=r"confidence must be in \(0, 1\)"):
        student_t_quantile(1.0, 3)


def test_mean_ci_by_hand():
    # mean 0.6, sample sd 0.1, half-width 4.3027 * 0.1 / sqrt(3) = 0.24841
    interval = mean_ci([0.5, 0.6, 0.7])
    assert interval.mean == pytest.approx(0.6) and interval.half_width == pytest.approx(0.24841, abs=1e-5)
    assert interval.n == 3 and interval.format() == "60.0 ± 24.8"
    # four values: mean 0.3, sd sqrt(0.0333...) = 0.18257, half-width 3.1824 * 0.18257 / 2 = 0.29051
    assert mean_ci([0.1, 0.2, 0.4, 0.5]).half_width == pytest.approx(0.29051, abs=1e-5)
    single = mean_ci([0.42])
    assert single.mean == 0.42 and math.isnan(single.half_width) and single.format() == "42.0"
    assert mean_ci([0.3, 0.3, 0.3]).half_width == 0.0
    with pytest.raises(ValueError, match="at least one value"):
        mean_ci([])


def test_paired_difference_by_hand():
    # differences 0.1, 0.0, 0.2: mean 0.1, sd 0.1, half-width 0.24841; unpaired intervals would be far wider
    difference = paired_difference([0.5, 0.6, 0.7], [0.4, 0.6, 0.5])
    assert difference.mean == pytest.approx(0.1) and difference.half_width == pytest.approx(0.24841, abs=1e-5)
    assert difference.format(signed=True) == "+10.0 ± 24.8"
    shifted = paired_difference([0.52, 0.61, 0.73], [0.50, 0.59, 0.71])  # every seed 2 points better
    assert shifted.mean == pytest.approx(0.02) and shifted.half_width == pytest.approx(0.0, abs=1e-12)
    assert Interval(-0.031, 0.012, 3).format(signed=True) == "-3.1 ± 1.2"
    with pytest.raises(ValueError, match="one baseline value per value, got 2 and 3"):
        paired_difference([0.1, 0.2], [0.1, 0.2, 0.3])


def test_seeds_for_half_width_by_hand():
    three = mean_ci([0.5, 0.6, 0.7])  # sd 0.1
    # t(16) 0.1 / sqrt(17) = 2.120 * 0.02425 = 0.0514 > 0.05; t(17) 0.1 / sqrt(18) = 2.110 * 0.02357 = 0.0497
    assert seeds_for_half_width(three, 0.05) == 18
    assert seeds_for_half_width(three, 0.3) == 3  # 0.248 with 3 seeds; 2 seeds give 12.706 * 0.1 / sqrt(2) = 0.898
    # four seeds, sd 0.18257: t(14) / sqrt(15) = 0.554 > 0.1 / 0.18257 = 0.5477 >= t(15) / sqrt(16) = 0.533
    assert seeds_for_half_width(mean_ci([0.1, 0.2, 0.4, 0.5]), 0.1) == 16
    with pytest.raises(ValueError, match="at least 2 seeds, got 1"):
        seeds_for_half_width(mean_ci([0.42]), 0.03)
    with pytest.raises(ValueError, match="More than 50 seeds"):
        seeds_for_half_width(three, 1e-4, most=50)
