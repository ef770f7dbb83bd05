"""Which strategy won a level and scenario, named only when it won beyond the noise; otherwise who tied."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from zerosite.benchmarking.cells import BASELINE, BUSY_MACHINE, TIMES, Cell
from zerosite.benchmarking.stats import Interval

__all__ = ["NOT_JUDGED", "TIE", "Contender", "Standing", "rank"]

NOT_JUDGED = "not judged (machine busy)"
"""The outcome of a comparison measured mostly on a busy machine, in the words every output uses."""
TIE = "a tie"
"""The outcome of a comparison whose intervals overlap, in the words every output uses."""


def spaced(label: str) -> str:
    """``processx2`` -> ``process x2`` for sentences."""
    return label.replace(TIMES, f" {TIMES}")


def times(value: float) -> str:
    return f"{value:.2f}{TIMES}"


@dataclass(frozen=True)
class Contender:
    """One strategy and worker count of a level and scenario: its speedup over sequential and interval.

    Where a level has several groups per scenario (one per module), the speedup and the ends of its
    interval are geometric means over them.
    """

    label: str
    strategy: str
    workers: int
    speedup: float
    interval: Interval

    def phrase(self) -> str:
        """``process x2 (1.84x [1.70x, 1.95x])``."""
        return f"{spaced(self.label)} ({self.interval_phrase()})"

    def interval_phrase(self) -> str:
        return f"{times(self.speedup)} [{times(self.interval.low)}, {times(self.interval.high)}]"

    def as_dict(self) -> dict[str, object]:
        return {"label": self.label, "speedup": self.speedup, "interval": self.interval.as_list()}


@dataclass(frozen=True)
class Standing:
    """The outcome of one level and scenario: a winner, or the strategies that tie at the top.

    The fastest contender is the winner only when its speedup interval does not overlap the runner-up's;
    otherwise every contender whose interval overlaps the fastest one's ties with it. Sequential takes
    part with the exact speedup 1 (its noise is already inside the others' intervals).
    """

    level: str
    scenario: str
    ranked: tuple[Contender, ...]
    """Every contender, fastest first."""
    busy_cells: int = 0
    """Cells of this level and scenario measured while the machine was busy (noisy; ``cells.BUSY_MACHINE``)."""
    cells: int = 0

    @property
    def unjudged(self) -> bool:
        """Most cells were measured on a busy machine: their figures say more about the machine than the code,
        so no winner and no tie is declared."""
        return self.busy_cells * 2 > self.cells

    @property
    def best(self) -> Contender:
        return self.ranked[0]

    @property
    def tied(self) -> tuple[Contender, ...]:
        """The contenders that cannot be told apart from the fastest (empty when it won outright)."""
        if self.unjudged:
            return ()
        ties = tuple(c for c in self.ranked if c.interval.overlaps(self.best.interval))
        return ties if len(ties) > 1 else ()

    @property
    def winner(self) -> Contender | None:
        return None if self.tied or self.unjudged else self.best

    @property
    def outcome(self) -> str:
        """The outcome in a few words, for headings and chart titles: ``winner process x2``, :data:`TIE` or
        :data:`NOT_JUDGED` (:meth:`sentence` says it in full)."""
        if self.unjudged:
            return NOT_JUDGED
        return f"winner {self.winner.label}" if self.winner is not None else TIE

    def sentence(self) -> str:
        """Plain words, e.g. ``process x2 was 1.84x as fast as sequential [1.70x, 1.95x].``"""
        winner = self.winner
        if self.unjudged:
            return (
                f"not judged: {self.busy_cells} of {self.cells} cells were measured while {BUSY_MACHINE} "
                f"(fastest as measured: {self.best.phrase()})."
            )
        if winner is not None and winner.strategy == BASELINE:
            rest = [c for c in self.ranked if c.strategy != BASELINE]
            if not rest:
                return "only sequential was measured."
            return f"sequential was fastest: the best alternative, {rest[0].phrase()}, was slower beyond the noise."
        if winner is not None:
            i = winner.interval
            return (
                f"{spaced(winner.label)} was {times(winner.speedup)} as fast as sequential "
                f"[{times(i.low)}, {times(i.high)}], ahead of the runner-up {self.ranked[1].phrase()} beyond the noise."
            )
        names = ", ".join(c.phrase() for c in self.tied)
        return f"{TIE}, their intervals overlap: {names}."

    def as_dict(self) -> dict[str, object]:
        """``{"winner": "processx2" | None, "tied": [...], "speedup": ..., "interval": [...], "ranked": [...]}``;
        speedup and interval are the winner's, or the fastest of the tied."""
        winner = self.winner
        return {
            "winner": winner.label if winner else None,
            "tied": [c.label for c in self.tied],
            "speedup": self.best.speedup,
            "interval": self.best.interval.as_list(),
            "unjudged": self.unjudged,
            "busy_cells": self.busy_cells,
            "sentence": self.sentence(),
            "ranked": [c.as_dict() for c in self.ranked],
        }


def _geomean(values: Iterable[float]) -> float:
    values = list(values)
    return math.exp(statistics.fmean(math.log(v) for v in values))


def rank(
    level: str, scenario: str, speedups: Sequence[tuple[Cell, float, Interval]], busy_cells: int = 0, cells: int = 0
) -> Standing:
    """The standing of ``level`` in ``scenario`` from each cell's speedup and interval (sequential added);
    ``busy_cells`` of its ``cells`` were measured on a busy machine."""
    by_key: dict[tuple[str, int], list[tuple[float, Interval]]] = defaultdict(list)
    for cell, value, interval in speedups:
        if cell.strategy != BASELINE and not cell.is_reference:
            by_key[(cell.strategy, cell.workers)].append((value, interval))
    contenders = [Contender(BASELINE, BASELINE, 1, 1.0, Interval(1.0, 1.0))]
    for (strategy, workers), points in by_key.items():
        contenders.append(
            Contender(
                label=f"{strategy}{TIMES}{workers}",
                strategy=strategy,
                workers=workers,
                speedup=_geomean(v for v, _ in points),
                interval=Interval(_geomean(i.low for _, i in points), _geomean(i.high for _, i in points)),
            )
        )
    ranked = sorted(contenders, key=lambda c: (-c.speedup, c.label))
    return Standing(level, scenario, tuple(ranked), busy_cells, cells)
