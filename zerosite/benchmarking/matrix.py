"""Which cells to benchmark and how long to measure them: every available strategy x workers x scenario,
sequential always included, each level with its own stopping rule."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from zerosite.benchmarking.cells import BASELINE, REFERENCE_SCENARIO, SCENARIOS, Cell
from zerosite.benchmarking.harness import StoppingRule

__all__ = ["ONE_AT_A_TIME", "MatrixSettings", "PlannedCell", "build_matrix"]

ONE_AT_A_TIME: frozenset[str] = frozenset({"single", "pipeline"})
"""Levels whose rounds hand the runner one project at a time: one worker is busy whatever the pool's size,
so they are measured at the smallest worker count only (more workers would repeat the same measurement,
and each pool costs a start-up). The batch level, where workers share the work, takes every count."""

FULL_RULES: tuple[tuple[str, StoppingRule], ...] = (
    ("single", StoppingRule(min_rounds=6, max_rounds=40, budget_s=0.3)),
    ("pipeline", StoppingRule(min_rounds=6, max_rounds=40, budget_s=0.8)),
    ("batch", StoppingRule(min_rounds=4, max_rounds=12, budget_s=2.5, min_sample_s=0)),
)
"""A full run: under 6 minutes on 2 cores (cells stop early once precise)."""

QUICK_RULES: tuple[tuple[str, StoppingRule], ...] = (
    ("single", StoppingRule(min_rounds=6, max_rounds=12, budget_s=0.4, min_sample_s=0.01)),
    ("pipeline", StoppingRule(min_rounds=6, max_rounds=12, budget_s=0.6, min_sample_s=0.01)),
    ("batch", StoppingRule(min_rounds=4, max_rounds=6, budget_s=1.5, min_sample_s=0)),
)
"""CI's quick run: fewer rounds, smaller budgets but the single level's, whose samples are shorter (under 2 minutes on
2 cores)."""


@dataclass(frozen=True)
class MatrixSettings:
    """How big a run is: workers per strategy, a stopping rule per level, batch size."""

    workers: tuple[int, ...] = (2, 4)
    rules: tuple[tuple[str, StoppingRule], ...] = FULL_RULES
    batch_projects: int = 40
    single_scenarios: tuple[str, ...] = SCENARIOS
    """The scenarios in which the single level measures each module."""

    @classmethod
    def quick(cls) -> MatrixSettings:
        """CI: every strategy and level once, smaller budgets, a smaller batch; each module alone in the
        cpu scenario only (in io and mixed a single report adds the source's fixed wait to the same CPU work,
        which the pipeline level measures in every scenario)."""
        return cls(workers=(2,), rules=QUICK_RULES, batch_projects=16, single_scenarios=("cpu",))

    def workers_for(self, level: str) -> tuple[int, ...]:
        """The worker counts measured at ``level`` (see :data:`ONE_AT_A_TIME`)."""
        return (min(self.workers),) if level in ONE_AT_A_TIME else self.workers

    def scenarios_for(self, level: str) -> tuple[str, ...]:
        """The scenarios measured at ``level``."""
        return self.single_scenarios if level == "single" else SCENARIOS

    def rule_for(self, level: str) -> StoppingRule:
        return dict(self.rules)[level]

    def with_rules(self, **changes: object) -> MatrixSettings:
        """Every level's rule with ``changes`` applied (e.g. ``precision=0.02``)."""
        return replace(self, rules=tuple((level, replace(rule, **changes)) for level, rule in self.rules))  # type: ignore[arg-type]

    def fixed_rounds(self, rounds: int) -> MatrixSettings:
        """Exactly ``rounds`` rounds per cell, whatever the precision (no budget)."""
        return self.with_rules(min_rounds=rounds, max_rounds=rounds, budget_s=float("inf"), precision=1e-9)


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
    references: Sequence[tuple[str, str | None]] = (),
) -> list[PlannedCell]:
    """Cells of ``level`` for each module x scenario: the sequential baseline first, then every other
    strategy (``(name, unavailable_reason)`` pairs) at each worker count; then, in the reference scenario,
    each of ``references`` (reference code, same pairs) at the smallest worker count."""
    others = sorted((name, why) for name, why in strategies if name != BASELINE)
    planned = []
    for module in modules:
        for scenario in scenarios:
            planned.append(PlannedCell(Cell(level, scenario, BASELINE, 1, module)))
            planned += [
                PlannedCell(Cell(level, scenario, name, n, module), why) for name, why in others for n in workers
            ]
            if scenario == REFERENCE_SCENARIO:
                planned += [
                    PlannedCell(Cell(level, scenario, name, min(workers), module), why) for name, why in references
                ]
    return planned
