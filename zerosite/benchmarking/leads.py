"""How cells compare with each other, from their samples side by side: the standings' leads, our fastest against
reference code, and ``auto`` against the fastest fixed strategy."""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from statistics import geometric_mean
from typing import TYPE_CHECKING

from zerosite.benchmarking.cells import BARE, BASELINE, INSTRUCTIONS, LEVELS, SCENARIOS, Cell
from zerosite.benchmarking.stats import Interval, grouped_ratio_ci, groups_of
from zerosite.benchmarking.targets import TARGET_SPECS
from zerosite.benchmarking.verdicts import Judgement, judge
from zerosite.benchmarking.winners import (
    AHEAD,
    BEHIND,
    NOT_JUDGED,
    TIE,
    Contender,
    Standing,
    call,
    end_to_end,
    margin_text,
    rank,
    spaced,
    times,
)

if TYPE_CHECKING:
    from zerosite.benchmarking.analysis import CellFigures

__all__ = ["AUTO_TARGET", "AutoAgainstBest", "Lead", "against_best", "against_references", "standings", "times_as_long"]


@dataclass(frozen=True)
class Lead:
    """How far ahead of a reference contender our fastest strategy of a level and scenario was."""

    level: str
    scenario: str
    ours: str
    reference: str
    ratio: float
    """The reference's median time over ours: 1.2 = ours was 1.2x as fast."""
    interval: Interval
    unjudged: bool = False
    """Measured mostly while the machine was busy (as its level and scenario's standing)."""

    def sentence(self) -> str:
        """``process x2 was 1.21x as fast as joblib x2 [1.10x, 1.33x] beyond the noise and the 5% margin``; an
        interval within 5 % either way is a tie (``... [0.97x, 1.04x] within 5% either way: a tie``), one across
        the margin too close to call (``... [0.84x, 1.21x]: too close to call``): :func:`winners.call`."""
        i = self.interval
        margin = margin_text()
        called = NOT_JUDGED if self.unjudged else call(i)
        if called in (AHEAD, BEHIND):
            verdict = f" beyond the noise and the {margin} margin"
        elif called == TIE:
            verdict = f" within {margin} either way: {TIE}"
        else:  # too close to call, or not judged
            verdict = f": {called}"
        return (
            f"{spaced(self.ours)} was {times(self.ratio)} as fast as {spaced(self.reference)} "
            f"[{times(i.low)}, {times(i.high)}]{verdict}"
        )

    def as_dict(self) -> dict[str, object]:
        return {
            "ours": self.ours,
            "reference": self.reference,
            "ratio": self.ratio,
            "interval": self.interval.as_list(),
            "unjudged": self.unjudged,
            "verdict": NOT_JUDGED if self.unjudged else call(self.interval),
        }


def against_references(standings: Iterable[Standing], figures: Sequence[CellFigures]) -> list[Lead]:
    """Per level and scenario with reference code measured: our fastest strategy (the winner, or the fastest of those
    tied or too close to call) against each reference, as a ratio of medians with its bootstrap interval
    (:func:`times_as_long`, as every comparison of two cells)."""
    leads = []
    for standing in standings:
        here = [f for f in figures if (f.cell.level, f.cell.scenario) == (standing.level, standing.scenario)]
        ours = next((f for f in here if f.cell.label == standing.best.label and not f.cell.is_reference), None)
        if ours is None:
            continue
        for reference in (f for f in here if f.cell.is_reference and f.cell.strategy != BARE):
            ratio = statistics.median(reference.samples) / statistics.median(ours.samples)
            interval = times_as_long(reference, ours)
            leads.append(
                Lead(
                    standing.level,
                    standing.scenario,
                    ours.cell.label,
                    reference.cell.label,
                    ratio,
                    interval,
                    standing.unjudged,
                )
            )
    return leads


def standings(figures: Iterable[CellFigures], confidence: float = 0.95) -> tuple[Standing, ...]:
    """Per level and scenario (matrix order), the winner, the tie or those too close to call among its strategies."""
    grouped: dict[tuple[str, str], list[tuple[Cell, float, Interval]]] = defaultdict(list)
    noise: dict[tuple[str, str], list[bool]] = defaultdict(list)
    timed: dict[tuple[str, str], list[CellFigures]] = defaultdict(list)
    for f in figures:
        key = (f.cell.level, f.cell.scenario)
        if f.speedup is not None and f.speedup_ci is not None:
            grouped[key].append((f.cell, f.speedup, f.speedup_ci))
        elif f.cell.strategy == BASELINE:
            grouped.setdefault(key, [])
        if not f.cell.is_reference:
            noise[key].append(f.noisy)
            timed[key].append(f)
    order = sorted(grouped, key=lambda k: (LEVELS.index(k[0]), SCENARIOS.index(k[1]) if k[1] in SCENARIOS else 99, k))
    return tuple(
        rank(
            level,
            scenario,
            grouped[(level, scenario)],
            sum(noise[(level, scenario)]),
            len(noise[(level, scenario)]),
            partial(_lead, timed[(level, scenario)], confidence),
        )
        for level, scenario in order
    )


def _lead(figures: Sequence[CellFigures], confidence: float, first: Contender, second: Contender) -> Interval:
    """How many times as fast ``first`` was as ``second``, from their samples side by side: per module (one
    group of cells at the single level), the ratio of their median times with its bootstrap interval (start by
    start for cells measured on several starts of their workers); over modules, geometric means as for their
    speedups. Their speedups' intervals end against end where either has no timed samples (counted cells)."""
    cells: dict[tuple[str, str | None], CellFigures] = {(f.cell.label, f.cell.module): f for f in figures}
    pairs = [
        (cells[(first.label, module)], other)
        for (label, module), other in cells.items()
        if label == second.label and (first.label, module) in cells
    ]
    if not pairs or any(f.unit == INSTRUCTIONS or not f.samples for pair in pairs for f in pair):
        return end_to_end(first, second)
    intervals = [times_as_long(slow, fast, confidence) for fast, slow in pairs]
    return Interval(geometric_mean(i.low for i in intervals), geometric_mean(i.high for i in intervals))


def times_as_long(first: CellFigures, second: CellFigures, confidence: float = 0.95) -> Interval:
    """How many times as long ``first`` took as ``second``: the ratio of their median times, with its bootstrap
    interval from their samples side by side (start by start for a cell measured on several starts)."""
    return grouped_ratio_ci(
        groups_of(first.samples, first.starts), groups_of(second.samples, second.starts), confidence
    )


AUTO = "auto"
AUTO_TARGET = "auto_vs_best_fixed"


@dataclass(frozen=True)
class AutoAgainstBest:
    """``auto`` x N at the batch level against the fastest fixed strategy of N workers or fewer, same scenario:
    the bar it is built to (``AutoCosts.tie_margin``), judged on the ratio's interval."""

    scenario: str
    auto: str
    best: str
    judgement: Judgement
    ran_as: Mapping[str, int] = field(default_factory=dict)
    """How many of auto's timed batches ran on each strategy it chose, most first (``CellFigures.ran_as``)."""

    def sentence(self) -> str:
        """``auto x2 took 1.03x the time of process x2, the fastest fixed strategy of as many workers or fewer
        [0.93x, 1.15x]: INCONCLUSIVE (at most 1.10x); it ran as process x2 in all 12 batches``."""
        return f"{self.measured()}: {self.judgement.verdict} {self.bound()}{self.ran()}"

    def measured(self) -> str:
        """The sentence up to its verdict."""
        j = self.judgement
        return (
            f"{spaced(self.auto)} took {times(j.value)} the time of {spaced(self.best)}, the fastest fixed strategy "
            f"of as many workers or fewer [{times(j.interval.low)}, {times(j.interval.high)}]"
        )

    def bound(self) -> str:
        return f"(at most {times(self.judgement.target)})"

    def ran(self) -> str:
        """What auto chose, so that a slow auto reads as a wrong choice or as its own cost: ``; it ran as async x2
        in all 12 batches``, or ``in 9 of 12 batches, as process x4 in 3``; empty where nothing was recorded."""
        if not self.ran_as:
            return ""
        total = sum(self.ran_as.values())
        (first, count), *rest = self.ran_as.items()
        if not rest:
            return f"; it ran as {spaced(first)} in {'the one batch' if total == 1 else f'all {total} batches'}"
        others = "".join(f", as {spaced(label)} in {n}" for label, n in rest)
        return f"; it ran as {spaced(first)} in {count} of {total} batches{others}"

    def as_dict(self) -> dict[str, object]:
        return {
            "scenario": self.scenario,
            "auto": self.auto,
            "best": self.best,
            "ran_as": dict(self.ran_as),
        } | self.judgement.as_dict()


def against_best(
    figures: Sequence[CellFigures], targets_for: Callable[[Cell], Mapping[str, float]], confidence: float
) -> list[AutoAgainstBest]:
    """Each timed ``auto`` cell of the batch level against the fastest fixed cell (by median) of its scenario with
    as many workers or fewer, where its target applies."""
    checks = []
    for f in figures:
        cell = f.cell
        limit = targets_for(cell).get(AUTO_TARGET)
        if cell.level != "batch" or cell.strategy != AUTO or f.unit == INSTRUCTIONS or not f.samples or limit is None:
            continue
        fixed = [
            g
            for g in figures
            if (g.cell.level, g.cell.scenario) == ("batch", cell.scenario)
            and g.cell.strategy not in (AUTO, BARE)
            and not g.cell.is_reference
            and g.cell.workers <= cell.workers
            and g.samples
        ]
        if not fixed:
            continue
        best = min(fixed, key=lambda g: (statistics.median(g.samples), g.cell.sort_key))
        interval = times_as_long(f, best, confidence)
        value = statistics.median(f.samples) / statistics.median(best.samples)
        spec = TARGET_SPECS[AUTO_TARGET]
        judgement = Judgement(
            cell.subject, AUTO_TARGET, spec.figure, value, interval, limit, spec.unit, judge(interval, limit)
        )
        checks.append(AutoAgainstBest(cell.scenario, cell.label, best.cell.label, judgement, f.ran_as))
    return checks
