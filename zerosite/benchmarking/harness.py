"""Interleaved measurement: every cell of a group runs once per round, in rotated order, on warm workers."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager

from zerosite.benchmarking.cells import Cell, CellResult, RoundOutcome

__all__ = ["ReplayClock", "RoundFunction", "measure_interleaved", "rotation"]

RoundFunction = Callable[[], RoundOutcome]
"""Runs one timed round of a cell on its warm workers and says what it measured."""


def rotation(items: Sequence[Cell], round_index: int) -> list[Cell]:
    """``items`` rotated by ``round_index``: over ``len(items)`` rounds each cell runs once in each position,
    so a slow spell of the machine is spread over all cells instead of biasing one of them."""
    if not items:
        return []
    shift = round_index % len(items)
    return [*items[shift:], *items[:shift]]


def measure_interleaved(
    cells: Sequence[Cell],
    start: Callable[[Cell], AbstractContextManager[RoundFunction]],
    rounds: int,
    warmup_rounds: int = 1,
    memory: Callable[[Cell], tuple[int, ...]] | None = None,
) -> dict[Cell, CellResult]:
    """Start every cell's workers (process pools before threads), run ``warmup_rounds`` untimed rounds,
    then ``rounds`` rounds with the cells interleaved; the workers are stopped at the end. Then, if
    given, ``memory(cell)`` measures each cell's memory per report in a separate, untimed pass."""
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds!r}")
    results = {cell: CellResult(cell) for cell in cells}
    with contextlib.ExitStack() as stack:
        # Forking after threads exist may deadlock: start process-based strategies first.
        order = sorted(cells, key=lambda c: c.strategy in ("sequential", "thread", "bare"))
        functions: Mapping[Cell, RoundFunction] = {cell: stack.enter_context(start(cell)) for cell in order}
        for _ in range(warmup_rounds):
            for cell in cells:
                functions[cell]()
        # Collect once and freeze what survives, so that later collections are short (a full collection
        # per round would cost more than many rounds) and a long pause does not land in one cell's round.
        gc.collect()
        gc.freeze()
        try:
            for index in range(rounds):
                for cell in rotation(list(cells), index):
                    results[cell].rounds.append(functions[cell]())
        finally:
            gc.unfreeze()
    if memory is not None:
        for cell in cells:
            results[cell].memory_bytes = memory(cell)
    return results


class ReplayClock:
    """A pytest-benchmark timer that replays durations measured elsewhere (by the interleaved rounds).

    pytest-benchmark reads the timer before and after its target; the target, :meth:`advance`,
    moves this clock on by the next measured duration. Its name shows in the JSON's ``options.timer``.
    """

    def __init__(self) -> None:
        self.__name__ = "zerosite.interleaved_rounds"
        self._now = 0.0
        self._pending: Iterator[float] = iter(())

    def __call__(self) -> float:
        return self._now

    def load(self, durations: Sequence[float]) -> int:
        """Queue the durations to replay; returns how many rounds to ask pytest-benchmark for."""
        self._pending = iter(list(durations))
        return len(durations)

    def advance(self) -> None:
        """The benchmark target: one round's duration passes."""
        self._now += next(self._pending)
