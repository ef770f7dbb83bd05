"""Which cells to benchmark: every available strategy x workers x scenario, sequential always included."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from zerosite.benchmarking.cells import BASELINE, SCENARIOS, Cell

__all__ = ["MatrixSettings", "PlannedCell", "build_matrix"]


@dataclass(frozen=True)
class MatrixSettings:
    """How big a run is: workers per strategy, rounds per level, batch size."""

    workers: tuple[int, ...] = (2, 4)
    rounds: tuple[tuple[str, int], ...] = (("single", 15), ("pipeline", 15), ("batch", 3))
    batch_projects: int = 100

    @classmethod
    def quick(cls) -> MatrixSettings:
        """CI: every strategy, scenario and level once, fewer rounds, a smaller batch."""
        return cls(workers=(2,), rounds=(("single", 5), ("pipeline", 5), ("batch", 2)), batch_projects=20)

    def rounds_for(self, level: str) -> int:
        return dict(self.rounds)[level]


@dataclass(frozen=True)
class PlannedCell:
    """A cell and, when its strategy cannot run here, why (the test is then skipped with that reason)."""

    cell: Cell
    unavailable: str | None = None


def build_matrix(
    level: str,
    strategies: Iterable[tuple[str, str | None]],
    workers: Sequence[int],
    scenarios: Sequence[str] = SCENARIOS,
    modules: Sequence[str | None] = (None,),
) -> list[PlannedCell]:
    """Cells of ``level`` for each module x scenario: the sequential baseline first, then every other
    strategy (``(name, unavailable_reason)`` pairs) at each worker count."""
    others = sorted((name, why) for name, why in strategies if name != BASELINE)
    planned = []
    for module in modules:
        for scenario in scenarios:
            planned.append(PlannedCell(Cell(level, scenario, BASELINE, 1, module)))
            planned += [
                PlannedCell(Cell(level, scenario, name, n, module), why) for name, why in others for n in workers
            ]
    return planned
