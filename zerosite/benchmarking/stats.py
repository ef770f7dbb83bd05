"""Robust summaries of benchmark samples: spread, bootstrap confidence intervals, scaling figures."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np


__all__ = [
    "Interval",
    "MannWhitney",
    "Spread",
    "bootstrap_ci",
    "efficiency",
    "grouped_ratio_ci",
    "groups_of",
    "karp_flatt",
    "mann_whitney_u",
    "median_interval",
    "median_interval_samples",
    "percentile",
    "ratio_ci",
    "relative_half_width",
    "speedup",
    "speedup_change_ci",
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

    def overlaps(self, other: Interval) -> bool:
        """Whether the two closed intervals share a point."""
        return self.low <= other.high and other.low <= self.high

    def as_list(self) -> list[float]:
        """``[low, high]``, for JSON."""
        return [self.low, self.high]


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


def _numpy() -> Any:
    """numpy, imported on first use: the pytest plugin loads this module in every pytest run of a machine
    with ZeroSite installed, and only a benchmark session needs numpy (from the ``bench`` extra)."""
    import numpy

    return numpy


def _rng(seed: int) -> np.random.Generator:
    generator: np.random.Generator = _numpy().random.default_rng(seed)
    return generator


def _resampled(samples: Sequence[float], rng: np.random.Generator, resamples: int) -> np.ndarray:
    """``resamples`` bootstrap resamples of ``samples`` (one per row)."""
    values = _numpy().asarray(samples, dtype=float)
    resampled: np.ndarray = values[rng.integers(0, len(values), size=(resamples, len(values)))]
    return resampled


def _percentile_interval(estimates: np.ndarray, confidence: float) -> Interval:
    tail = (1 - confidence) / 2 * 100
    low, high = _numpy().percentile(estimates, [tail, 100 - tail])
    return Interval(float(low), float(high))


def bootstrap_ci(
    samples: Sequence[float],
    quantile: float = 50,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = BOOTSTRAP_SEED,
) -> Interval:
    """Percentile-bootstrap confidence interval of a sample quantile (default: the median, 50).

    Deterministic (fixed seed). One sample gives the degenerate interval ``[x, x]``; with few
    samples the interval widens towards ``[min, max]``, which is the honest answer.
    """
    if not samples:
        raise ValueError("confidence interval of no samples")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be within (0, 1), got {confidence!r}")
    if len(samples) == 1:
        return Interval(samples[0], samples[0])
    rng = _rng(seed)
    return _percentile_interval(_numpy().percentile(_resampled(samples, rng, resamples), quantile, axis=1), confidence)


def _resampled_medians(samples: Sequence[float], rng: np.random.Generator, resamples: int) -> np.ndarray:
    medians: np.ndarray = _numpy().median(_resampled(samples, rng, resamples), axis=1)
    return medians


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
    if min(candidate) <= 0 or min(baseline) < 0:
        raise ValueError("a ratio of medians needs positive times")
    rng = _rng(seed)
    ratios = _resampled_medians(baseline, rng, resamples) / _resampled_medians(candidate, rng, resamples)
    return _percentile_interval(ratios, confidence)


def groups_of(samples: Sequence[float], labels: Sequence[int]) -> list[tuple[float, ...]]:
    """``samples`` grouped by their ``labels`` (one a sample), in the labels' order; one group, all the samples, where
    the labels are not one a sample."""
    if len(labels) != len(samples):
        return [tuple(samples)]
    return [tuple(s for s, k in zip(samples, labels, strict=True) if k == label) for label in sorted(set(labels))]


def grouped_ratio_ci(
    baseline: Sequence[Sequence[float]],
    candidate: Sequence[Sequence[float]],
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = BOOTSTRAP_SEED,
) -> Interval:
    """:func:`ratio_ci` of samples that come in groups which differ more between them than within (the starts of a
    pool): each resample draws the groups, then the samples within each drawn group (a two-stage bootstrap), so
    the interval holds the spread between groups that a resample of the samples alone would not. A side of one
    group is resampled as :func:`ratio_ci` does."""
    if not baseline or not candidate or not all(baseline) or not all(candidate):
        raise ValueError("a grouped ratio needs a group a side at least, none of them empty")
    if min(min(g) for g in candidate) <= 0 or min(min(g) for g in baseline) < 0:
        raise ValueError("a ratio of medians needs positive times")
    rng = _rng(seed)
    ratios = _grouped_medians(baseline, rng, resamples) / _grouped_medians(candidate, rng, resamples)
    return _percentile_interval(ratios, confidence)


def _grouped_medians(groups: Sequence[Sequence[float]], rng: np.random.Generator, resamples: int) -> np.ndarray:
    numpy = _numpy()
    arrays = [numpy.asarray(group, dtype=float) for group in groups]
    medians: np.ndarray = numpy.empty(resamples)
    for i in range(resamples):
        drawn = (arrays[j] for j in rng.integers(0, len(arrays), size=len(arrays)))
        medians[i] = numpy.median(numpy.concatenate([a[rng.integers(0, len(a), size=len(a))] for a in drawn]))
    return medians


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


def median_interval(samples: Sequence[float], confidence: float = 0.95) -> Interval:
    """Distribution-free confidence interval of the median from order statistics (binomial, exact).

    The narrowest symmetric pair of order statistics ``x(j) .. x(n-1-j)`` (0-based) whose coverage,
    the probability that Binomial(n, 1/2) falls within ``j+1 .. n-1-j``, is at least ``confidence``.
    Too few samples for that coverage (fewer than 6 at 95 %) give ``[min, max]``, the widest honest
    answer. Cheap (no resampling), so the stopping rule can ask after every round.
    """
    if not samples:
        raise ValueError("confidence interval of no samples")
    ordered = sorted(samples)
    n = len(ordered)
    pmf = [math.comb(n, k) / 2**n for k in range(n + 1)]
    j = 0
    while j + 1 <= (n - 1) / 2 and sum(pmf[j + 2 : n - j - 1]) >= confidence:
        j += 1
    return Interval(ordered[j], ordered[n - 1 - j])


def median_interval_samples(confidence: float = 0.95) -> int:
    """The fewest samples whose range, ``[min, max]``, covers the median with at least ``confidence`` (6 at 95 %:
    ``1 - 2 / 2**n``, 0.969, where 5 give 0.938). With fewer, :func:`median_interval` answers with a range whose
    coverage is lower than asked: no precision is known yet at that confidence."""
    n = 1
    while 1 - 2 / 2**n < confidence:
        n += 1
    return n


def relative_half_width(interval: Interval, centre: float) -> float:
    """Half the interval's width over ``centre``: the precision of an estimate (0.05 = +/-5 %)."""
    if centre <= 0:
        return math.inf
    return (interval.high - interval.low) / 2 / centre


@dataclass(frozen=True)
class MannWhitney:
    """A two-sided Mann-Whitney U test: ``u`` of the first sample, the normal score and the p-value."""

    u: float
    z: float
    p_value: float


def mann_whitney_u(first: Sequence[float], second: Sequence[float]) -> MannWhitney:
    """Two-sided Mann-Whitney U test by the normal approximation, with tie and continuity corrections.

    ``u`` counts the pairs where ``first`` is the larger (ties count one half), as scipy's
    ``mannwhitneyu(first, second, method="asymptotic")`` does, and ``p_value`` matches it:
    ``[19, 22, 16, 29, 24]`` against ``[20, 11, 17, 12]`` gives ``u = 17`` and ``p = 0.1113``.
    Samples that are all equal give ``p = 1``.
    """
    if not first or not second:
        raise ValueError("Mann-Whitney U test of an empty sample")
    n1, n2 = len(first), len(second)
    ranks, tie_sizes = _ranks([*first, *second])
    u = sum(ranks[:n1]) - n1 * (n1 + 1) / 2
    n = n1 + n2
    ties = sum(t**3 - t for t in tie_sizes)
    variance = n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1)))
    if variance <= 0:
        return MannWhitney(u=u, z=0.0, p_value=1.0)
    z = max(abs(u - n1 * n2 / 2) - 0.5, 0.0) / math.sqrt(variance)
    return MannWhitney(u=u, z=z, p_value=min(1.0, math.erfc(z / math.sqrt(2))))


def _ranks(values: Sequence[float]) -> tuple[list[float], list[int]]:
    """Ranks from 1 (tied values share their mean rank) and the size of every group of ties."""
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    tie_sizes = []
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for position in range(start, end + 1):
            ranks[order[position]] = (start + end) / 2 + 1
        tie_sizes.append(end - start + 1)
        start = end + 1
    return ranks, tie_sizes


def speedup_change_ci(
    base_baseline: Sequence[float],
    base_candidate: Sequence[float],
    new_baseline: Sequence[float],
    new_candidate: Sequence[float],
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = BOOTSTRAP_SEED,
) -> Interval:
    """Bootstrap confidence interval of how a speedup changed between two runs: ``new speedup / base speedup``.

    Each run's speedup is ``median(baseline) / median(candidate)``; all four samples are resampled.
    """
    samples = (base_baseline, base_candidate, new_baseline, new_candidate)
    if not all(samples):
        raise ValueError("speedup change of empty samples")
    rng = _rng(seed)
    b_base, b_cand, n_base, n_cand = (_resampled_medians(s, rng, resamples) for s in samples)
    return _percentile_interval((n_base / n_cand) / (b_base / b_cand), confidence)
