"""Robust summaries of benchmark samples: spread, bootstrap confidence intervals, scaling figures."""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = [
    "Interval",
    "Spread",
    "bootstrap_ci",
    "efficiency",
    "karp_flatt",
    "percentile",
    "ratio_ci",
    "speedup",
    "spread",
]

BOOTSTRAP_SEED = 20260101
"""Fixed, so that the same samples always give the same interval."""


@dataclass(frozen=True)
class Interval:
    """A closed interval ``[low, high]``, e.g. a confidence interval."""

    low: float
    high: float

    def __post_init__(self) -> None:
        if self.low > self.high:
            raise ValueError(f"interval low {self.low!r} is above high {self.high!r}")

    def scaled(self, factor: float) -> Interval:
        """The interval with both ends multiplied by a positive ``factor``."""
        return Interval(self.low * factor, self.high * factor)


@dataclass(frozen=True)
class Spread:
    """Location and spread of a sample: median, quartiles, IQR, p95, mean, extremes."""

    n: int
    median: float
    q1: float
    q3: float
    p95: float
    mean: float
    min: float
    max: float

    @property
    def iqr(self) -> float:
        """Interquartile range, ``q3 - q1``."""
        return self.q3 - self.q1

    def scaled(self, factor: float) -> Spread:
        """The same spread in other units (every figure multiplied by ``factor``)."""
        return Spread(
            n=self.n,
            median=self.median * factor,
            q1=self.q1 * factor,
            q3=self.q3 * factor,
            p95=self.p95 * factor,
            mean=self.mean * factor,
            min=self.min * factor,
            max=self.max * factor,
        )


def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) with linear interpolation between order statistics."""
    if not samples:
        raise ValueError("percentile of no samples")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile q must be within 0..100, got {q!r}")
    ordered = sorted(samples)
    position = (len(ordered) - 1) * q / 100
    lower = math.floor(position)
    upper = min(lower + 1, len(ordered) - 1)
    return ordered[lower] + (ordered[upper] - ordered[lower]) * (position - lower)


def spread(samples: Sequence[float]) -> Spread:
    """Median, quartiles, p95, mean and extremes of a non-empty sample."""
    if not samples:
        raise ValueError("spread of no samples")
    return Spread(
        n=len(samples),
        median=statistics.median(samples),
        q1=percentile(samples, 25),
        q3=percentile(samples, 75),
        p95=percentile(samples, 95),
        mean=statistics.fmean(samples),
        min=min(samples),
        max=max(samples),
    )


def bootstrap_ci(
    samples: Sequence[float],
    statistic: Callable[[Sequence[float]], float] = statistics.median,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = BOOTSTRAP_SEED,
) -> Interval:
    """Percentile-bootstrap confidence interval of ``statistic`` (default: the median).

    Deterministic (fixed seed). One sample gives the degenerate interval ``[x, x]``; with few
    samples the interval widens towards ``[min, max]``, which is the honest answer.
    """
    if not samples:
        raise ValueError("confidence interval of no samples")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be within (0, 1), got {confidence!r}")
    if len(samples) == 1:
        return Interval(samples[0], samples[0])
    rng = random.Random(seed)
    size = len(samples)
    estimates = sorted(statistic(rng.choices(samples, k=size)) for _ in range(resamples))
    tail = (1 - confidence) / 2 * 100
    return Interval(percentile(estimates, tail), percentile(estimates, 100 - tail))


def ratio_ci(
    baseline: Sequence[float],
    candidate: Sequence[float],
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = BOOTSTRAP_SEED,
) -> Interval:
    """Bootstrap confidence interval of ``median(baseline) / median(candidate)`` (a speedup)."""
    if not baseline or not candidate:
        raise ValueError("ratio of empty samples")
    rng = random.Random(seed)
    ratios = sorted(
        speedup(
            statistics.median(rng.choices(baseline, k=len(baseline))),
            statistics.median(rng.choices(candidate, k=len(candidate))),
        )
        for _ in range(resamples)
    )
    tail = (1 - confidence) / 2 * 100
    return Interval(percentile(ratios, tail), percentile(ratios, 100 - tail))


def speedup(baseline_s: float, candidate_s: float) -> float:
    """How many times faster the candidate is than the baseline (below 1: slower)."""
    if baseline_s < 0 or candidate_s <= 0:
        raise ValueError(f"speedup needs positive times, got {baseline_s!r} and {candidate_s!r}")
    return baseline_s / candidate_s


def efficiency(speedup_: float, workers: int) -> float:
    """Parallel efficiency: speedup per worker (1.0 is perfect scaling)."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers!r}")
    return speedup_ / workers


def karp_flatt(speedup_: float, workers: int) -> float | None:
    """The Karp-Flatt experimentally determined serial fraction ``e = (1/S - 1/p) / (1 - 1/p)``.

    Undefined (``None``) for one worker. ``S = 1.6, p = 2`` gives ``0.25``.
    """
    if workers <= 1:
        return None
    if speedup_ <= 0:
        raise ValueError(f"speedup must be > 0, got {speedup_!r}")
    return (1 / speedup_ - 1 / workers) / (1 - 1 / workers)
