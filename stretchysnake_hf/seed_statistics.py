# Copyright 2026 The stretchysnake_hf Authors. Licensed under the Apache License, Version 2.0.
"""Confidence intervals over training seeds: the mean with a Student-t interval, and paired differences."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence


@dataclasses.dataclass(frozen=True)
class Interval:
    """`mean ± half_width`, a two-sided `confidence` interval from `n` values (`half_width` is NaN when `n` is 1)."""

    mean: float
    half_width: float
    n: int
    confidence: float = 0.95

    def format(self, scale: float = 100.0, signed: bool = False) -> str:
        """'38.2 ± 2.1' with values times `scale` (percent by default); '38.2' alone when there is no interval."""
        mean = f"{scale * self.mean:+.1f}" if signed else f"{scale * self.mean:.1f}"
        return mean if math.isnan(self.half_width) else f"{mean} ± {scale * self.half_width:.1f}"


def student_t_mass(t: float, df: int) -> float:
    """P(|T| <= t) for Student's t with `df` (a positive integer) degrees of freedom.

    The closed form for integer degrees of freedom (Abramowitz & Stegun 26.7.3-4), with theta = atan(t / sqrt(df)):
    odd df: (2 / pi) (theta + sin(theta) (cos(theta) + 2/3 cos^3(theta) + ... + 2·4···(df-3) / (3·5···(df-2))
    cos^(df-2)(theta))); even df: sin(theta) (1 + 1/2 cos^2(theta) + ... + 1·3···(df-3) / (2·4···(df-2))
    cos^(df-2)(theta)).
    """
    if df < 1 or int(df) != df:
        raise ValueError(f"Degrees of freedom must be a positive integer, got {df}.")
    theta = math.atan(abs(t) / math.sqrt(df))
    cos2 = math.cos(theta) ** 2
    if df % 2:
        term, total = math.cos(theta), 0.0
        for k in range(1, (df - 1) // 2 + 1):
            total += term
            term *= cos2 * (2 * k) / (2 * k + 1)
        return 2 / math.pi * (theta + math.sin(theta) * total)
    term, total = 1.0, 0.0
    for k in range(1, df // 2 + 1):
        total += term
        term *= cos2 * (2 * k - 1) / (2 * k)
    return math.sin(theta) * total


def student_t_quantile(confidence: float, df: int) -> float:
    """The t with P(|T| <= t) = `confidence` (the two-sided critical value; 4.303 for 95% and df 2), by bisection."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}.")
    low, high = 0.0, 1.0
    while student_t_mass(high, df) < confidence:
        low, high = high, 2 * high
    for _ in range(100):
        middle = (low + high) / 2
        low, high = (middle, high) if student_t_mass(middle, df) < confidence else (low, middle)
    return (low + high) / 2


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> Interval:
    """Mean of `values` (one per seed) and the half-width of its t interval: t(df = n - 1) * sd / sqrt(n), with the
    sample standard deviation (n - 1 in the denominator). One value gives a NaN half-width."""
    n = len(values)
    if n == 0:
        raise ValueError("mean_ci needs at least one value.")
    mean = sum(values) / n
    if n == 1:
        return Interval(mean, math.nan, 1, confidence)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return Interval(mean, student_t_quantile(confidence, n - 1) * sd / math.sqrt(n), n, confidence)


def seeds_for_half_width(interval: Interval, target: float, most: int = 1000) -> int:
    """The fewest seeds whose t interval would be at most `target` wide on each side, at the seed-to-seed standard
    deviation `interval` shows: the smallest n with t(n - 1) * sd / sqrt(n) <= target, sd = half_width * sqrt(m) /
    t(m - 1) for the interval's m seeds. An estimate: the sd itself is uncertain with few seeds."""
    if interval.n < 2:
        raise ValueError(f"The seed-to-seed spread needs an interval from at least 2 seeds, got {interval.n}.")
    if target <= 0:
        raise ValueError(f"The target half-width must be positive, got {target}.")
    sd = interval.half_width * math.sqrt(interval.n) / student_t_quantile(interval.confidence, interval.n - 1)
    for n in range(2, most + 1):
        if student_t_quantile(interval.confidence, n - 1) * sd / math.sqrt(n) <= target:
            return n
    raise ValueError(f"More than {most} seeds would be needed for a half-width of {target} at a spread of {sd:.3g}.")


def paired_difference(values: Sequence[float], baseline: Sequence[float], confidence: float = 0.95) -> Interval:
    """Mean of `values[i] - baseline[i]` (the same seed in both arms) with its t interval: pairing removes what
    the seeds share (data order, head initialisation), so it is narrower than comparing two separate intervals."""
    if len(values) != len(baseline):
        raise ValueError(
            f"A paired difference needs one baseline value per value, got {len(values)} and {len(baseline)}."
        )
    return mean_ci([v - b for v, b in zip(values, baseline, strict=True)], confidence)
