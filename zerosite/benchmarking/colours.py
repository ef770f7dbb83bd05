"""One colour per strategy and per strategy label (``process x4``), shared by every chart and the page."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from zerosite.benchmarking.cells import BARE, BASELINE, TIMES, Cell

__all__ = ["KNOWN_STRATEGY_COLOURS", "SPARE_COLOURS", "StrategyColours"]

KNOWN_STRATEGY_COLOURS: Mapping[str, str] = MappingProxyType(
    {
        BASELINE: "#4d4d4d",
        BARE: "#a6a6a6",
        "thread": "#0072b2",
        "process": "#d55e00",
        "async": "#009e73",
    }
)
"""The built-in strategies keep their colour from run to run (Okabe-Ito, readable by colour-blind eyes)."""

SPARE_COLOURS: tuple[str, ...] = ("#e69f00", "#56b4e9", "#882255", "#117733", "#332288", "#999933", "#44aa99")
"""Handed out, in name order, to strategies a plugin adds."""

LIGHTEST = 0.55
"""The fewest workers of a strategy are drawn this far towards white; the most workers in the full colour."""


def _mix_with_white(colour: str, share: float) -> str:
    rgb = [int(colour[i : i + 2], 16) for i in (1, 3, 5)]
    return "#" + "".join(f"{round(c + (255 - c) * share):02x}" for c in rgb)


@dataclass(frozen=True)
class StrategyColours:
    """The colour of every strategy (its hue) and every label (a shade of it: more workers, fuller)."""

    strategies: Mapping[str, str]
    labels: Mapping[str, str]

    @classmethod
    def for_cells(cls, cells: Iterable[Cell]) -> StrategyColours:
        """The mapping for the cells of one run: built once, then handed to every chart and the page."""
        workers: dict[str, set[int]] = defaultdict(set)
        for cell in cells:
            workers[cell.strategy].add(cell.workers)
        spare = iter(SPARE_COLOURS * (1 + len(workers) // len(SPARE_COLOURS)))
        strategies = {
            s: KNOWN_STRATEGY_COLOURS[s] if s in KNOWN_STRATEGY_COLOURS else next(spare)
            for s in sorted(workers, key=lambda s: (s not in KNOWN_STRATEGY_COLOURS, s))
        }
        labels: dict[str, str] = {}
        for strategy, counts in workers.items():
            ordered = sorted(counts)
            for rank, count in enumerate(ordered):
                label = strategy if strategy in (BASELINE, BARE) else f"{strategy}{TIMES}{count}"
                share = LIGHTEST * (len(ordered) - 1 - rank) / max(len(ordered) - 1, 1)
                labels[label] = _mix_with_white(strategies[strategy], share)
        return cls(MappingProxyType(strategies), MappingProxyType(labels))

    def of_strategy(self, strategy: str) -> str:
        """A strategy's colour; a built-in one not among the cells (the service level's servers) keeps its own."""
        return self.strategies.get(strategy) or KNOWN_STRATEGY_COLOURS.get(strategy, "#000000")

    def of_label(self, label: str) -> str:
        """The colour of ``process x2``; a label not seen when the mapping was built gets its strategy's."""
        if label in self.labels:
            return self.labels[label]
        return self.of_strategy(label.split(TIMES)[0])
