"""Which strategy won a level and scenario, named only when it won by more than the margin beyond the noise;
otherwise who tied, or who could not be told apart."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from statistics import geometric_mean

from zerosite.benchmarking.cells import BASELINE, BUSY_MACHINE, TIMES, Cell
from zerosite.benchmarking.stats import Interval

__all__ = [
    "AHEAD",
    "BEHIND",
    "CLOSE",
    "MARGIN",
    "NOT_JUDGED",
    "TIE",
    "Contender",
    "Standing",
    "call",
    "end_to_end",
    "margin_text",
    "rank",
]

NOT_JUDGED = "not judged (machine busy)"
"""The outcome of a comparison measured mostly on a busy machine, in the words every output uses."""
TIE = "a tie"
"""The outcome of a comparison whose interval lies within :data:`MARGIN` either way, in the words every output
uses."""
CLOSE = "too close to call"
"""The outcome of a comparison whose interval reaches both inside and beyond :data:`MARGIN`: the run cannot say
whether the two differ by more, in the words every output uses."""
MARGIN = 0.05
"""Two speeds within 5 % of each other are a tie, however sure the difference: a lead this small is not worth a
verdict, and one rule that named any sure difference gave a winner in one run and a tie in the next (thread x2 at
0.98x sequential, [0.97x, 1.00x] and [0.96x, 1.01x] in two full runs of the same code). A lead counts only when its
whole interval clears the margin, a tie only when its whole interval is within it, so two runs of the same code
disagree by one step at most (a winner and :data:`CLOSE`, or :data:`CLOSE` and a tie), never a winner and a tie
unless their intervals are disjoint."""

AHEAD, BEHIND = "ahead", "behind"


def call(ratio: Interval) -> str:
    """The verdict on a ratio of speeds (its interval): :data:`AHEAD` beyond ``1 + MARGIN``, :data:`BEHIND` below
    its inverse, :data:`TIE` wholly between the two, :data:`CLOSE` across either."""
    bound = 1 + MARGIN
    if ratio.low > bound:
        return AHEAD
    if ratio.high < 1 / bound:
        return BEHIND
    if ratio.low >= 1 / bound and ratio.high <= bound:
        return TIE
    return CLOSE


def margin_text() -> str:
    return f"{MARGIN:.0%}"


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
    """The outcome of one level and scenario: a winner, the strategies that tie at the top, or those too close
    to call.

    Each contender's speed is compared with the fastest one's as a ratio with its interval (:attr:`leads`), judged
    by :func:`call`. The fastest is the winner
    when it is ahead of every other beyond :data:`MARGIN`; the contenders within the margin of it tie with it
    when every other is beyond it; otherwise the ones not beyond it are too close to call. Sequential takes part
    with the exact speedup 1 (its noise is already inside the others' intervals).
    """

    level: str
    scenario: str
    ranked: tuple[Contender, ...]
    """Every contender, fastest first."""
    leads: tuple[Interval, ...]
    """For each contender after the first, how many times as fast the first was: the interval of that ratio."""
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

    def __post_init__(self) -> None:
        if len(self.leads) != len(self.ranked) - 1:
            raise ValueError(f"{len(self.ranked)} contenders need {len(self.ranked) - 1} leads, got {len(self.leads)}")

    def _near(self) -> tuple[tuple[Contender, ...], bool]:
        """The contenders not beyond the margin behind the fastest (it first), and whether all of them are
        within it."""
        calls = [(c, call(lead)) for c, lead in zip(self.ranked[1:], self.leads, strict=True)]
        near = tuple(c for c, verdict in calls if verdict != AHEAD)
        return (self.best, *near), all(verdict in (AHEAD, TIE) for _, verdict in calls)

    @property
    def tied(self) -> tuple[Contender, ...]:
        """The contenders within the margin of the fastest, it first, when every other is beyond it (empty
        otherwise)."""
        if self.unjudged:
            return ()
        near, settled = self._near()
        return near if settled and len(near) > 1 else ()

    @property
    def close(self) -> tuple[Contender, ...]:
        """The contenders the run could not place inside or beyond the margin of the fastest, it first (empty
        when there is a winner or a tie)."""
        if self.unjudged:
            return ()
        near, settled = self._near()
        return () if settled else near

    @property
    def winner(self) -> Contender | None:
        if self.unjudged:
            return None
        near, _ = self._near()
        return self.best if len(near) == 1 else None

    @property
    def outcome(self) -> str:
        """The outcome in a few words, for headings and chart titles: ``winner process x2``, :data:`TIE`,
        :data:`CLOSE` or :data:`NOT_JUDGED` (:meth:`sentence` says it in full)."""
        if self.unjudged:
            return NOT_JUDGED
        if self.winner is not None:
            return f"winner {self.winner.label}"
        return TIE if self.tied else CLOSE

    def sentence(self) -> str:
        """Plain words, e.g. ``process x2 was 1.84x as fast as sequential [1.70x, 1.95x], ...``."""
        winner = self.winner
        if self.unjudged:
            return (
                f"not judged: {self.busy_cells} of {self.cells} cells were measured while {BUSY_MACHINE} "
                f"(fastest as measured: {self.best.phrase()})."
            )
        if len(self.ranked) == 1:
            return f"only {spaced(self.best.label)} was measured."
        margin = margin_text()
        lead = self.leads[0]
        by = f"by {times(lead.low)} to {times(lead.high)}, beyond the noise and the {margin} margin"
        if winner is not None and winner.strategy == BASELINE:
            return f"sequential was fastest: the best alternative, {self.ranked[1].phrase()}, was slower {by}."
        if winner is not None:
            i = winner.interval
            return (
                f"{spaced(winner.label)} was {times(winner.speedup)} as fast as sequential "
                f"[{times(i.low)}, {times(i.high)}], ahead of the runner-up {self.ranked[1].phrase()} {by}."
            )
        if self.tied:
            names = ", ".join(c.phrase() for c in self.tied)
            return f"{TIE}, within {margin} of each other beyond the noise: {names}."
        names = ", ".join(c.phrase() for c in self.close)
        return f"{CLOSE}: the noise cannot tell whether these are within {margin} of each other: {names}."

    def as_dict(self) -> dict[str, object]:
        """``{"winner": "processx2" | None, "tied": [...], "close": [...], "speedup": ..., "interval": [...],
        "ranked": [...]}``; speedup and interval are the winner's, or the fastest of the others."""
        winner = self.winner
        return {
            "outcome": self.outcome,
            "winner": winner.label if winner else None,
            "tied": [c.label for c in self.tied],
            "close": [c.label for c in self.close],
            "margin": MARGIN,
            "speedup": self.best.speedup,
            "interval": self.best.interval.as_list(),
            "unjudged": self.unjudged,
            "busy_cells": self.busy_cells,
            "sentence": self.sentence(),
            "ranked": [
                c.as_dict() | {"lead": lead.as_list() if lead else None}
                for c, lead in zip(self.ranked, (None, *self.leads), strict=True)
            ],
        }


LeadOf = Callable[[Contender, Contender], Interval]
"""How many times as fast the first contender was as the second: the interval of that ratio."""


def end_to_end(first: Contender, second: Contender) -> Interval:
    """:data:`LeadOf` from the two speedups' intervals alone, end against end: wider than one from their samples,
    for contenders whose samples are not at hand."""
    return Interval(first.interval.low / second.interval.high, first.interval.high / second.interval.low)


def rank(
    level: str,
    scenario: str,
    speedups: Sequence[tuple[Cell, float, Interval]],
    busy_cells: int = 0,
    cells: int = 0,
    lead: LeadOf = end_to_end,
) -> Standing:
    """The standing of ``level`` in ``scenario`` from each cell's speedup and interval (sequential added), the
    fastest's lead over each other by ``lead``; ``busy_cells`` of its ``cells`` were measured on a busy machine."""
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
                speedup=geometric_mean(v for v, _ in points),
                interval=Interval(geometric_mean(i.low for _, i in points), geometric_mean(i.high for _, i in points)),
            )
        )
    ranked = sorted(contenders, key=lambda c: (-c.speedup, c.label))
    leads = tuple(lead(ranked[0], c) for c in ranked[1:])
    return Standing(level, scenario, tuple(ranked), leads, busy_cells, cells)
