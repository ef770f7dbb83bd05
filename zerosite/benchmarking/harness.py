"""Interleaved, adaptive measurement: the cells of a group take turns, round after round, on warm workers,
until each one's estimate is as precise as asked or its time budget is spent."""

from __future__ import annotations

import contextlib
import gc
import math
import statistics
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from zerosite.benchmarking.cells import BASELINE, Cell, CellResult, RoundOutcome
from zerosite.benchmarking.phases import Stopwatch
from zerosite.benchmarking.stats import median_interval, median_interval_samples, relative_half_width

__all__ = [
    "LoadProbe",
    "ReplayClock",
    "RoundFunction",
    "StoppingRule",
    "calibrate",
    "measure_interleaved",
    "precision_of",
    "rotation",
]

RoundFunction = Callable[[], RoundOutcome]
"""Runs one timed round of a cell on its warm workers and says what it measured."""

ROUNDS_PER_START = 3
"""A cell whose rounds are spread over starts of its workers (:attr:`Cell.worker_starts`) takes this many rounds from
each, then stops (``starts``): the same weight for every pool it got, and no rounds more from the last one, which
could make it no more precise."""


class LoadProbe(Protocol):
    """Measures the machine's load around one round (see ``zerosite.benchmarking.load.LoadMonitor``)."""

    def begin(self) -> Any: ...

    def end(self, token: Any, /) -> Any: ...


@dataclass(frozen=True)
class StoppingRule:
    """When a cell has been measured enough.

    A cell always takes ``min_rounds``; it stops once the 95 % interval of its median, and of its speedup
    over the group's sequential baseline, are each within ``precision`` (relative half-width, 0.05 =
    +/-5 %); or when its timed rounds have used ``budget_s``; or at ``max_rounds``. The baseline keeps
    running while any cell of its group does, so every speedup is measured side by side to the end.
    ``min_sample_s`` calibrates single and pipeline cells: one sample repeats the work until it lasts
    at least that long (pyperf's loops), so the timer's resolution and overhead are negligible.
    """

    precision: float = 0.05
    min_rounds: int = 6
    max_rounds: int = 60
    budget_s: float = 2.0
    min_sample_s: float = 0.02
    confidence: float = 0.95

    def __post_init__(self) -> None:
        if not 0 < self.precision < 1:
            raise ValueError(f"precision must be within (0, 1), got {self.precision!r}")
        if not 1 <= self.min_rounds <= self.max_rounds:
            raise ValueError(f"need 1 <= min_rounds <= max_rounds, got {self.min_rounds!r}, {self.max_rounds!r}")
        if self.budget_s <= 0 or self.min_sample_s < 0:
            raise ValueError("budget_s must be > 0 and min_sample_s >= 0")


def precision_of(samples: Sequence[float], confidence: float = 0.95) -> float:
    """Relative half-width of the median's distribution-free interval; inf for fewer samples than such an interval
    needs at ``confidence`` (:func:`~zerosite.benchmarking.stats.median_interval_samples`: 6 at 95 %), whose range
    would cover the median less often than asked (four samples: 87.5 % of the time)."""
    if len(samples) < median_interval_samples(confidence):
        return math.inf
    return relative_half_width(median_interval(samples, confidence), statistics.median(samples))


def _settled(result: CellResult, baseline: CellResult | None, rule: StoppingRule) -> str | None:
    """Why ``result`` may stop now, or None. The speedup's precision is the two medians' precisions
    combined in quadrature (relative errors of a ratio), a cheap stand-in for its bootstrap interval."""
    rounds = len(result.rounds)
    starts = result.cell.worker_starts
    if starts > 1 and rounds >= ROUNDS_PER_START * starts:
        return "starts"
    if rounds >= rule.max_rounds:
        return "max-rounds"
    if starts > 1 or rounds < rule.min_rounds:
        return None
    own = precision_of(result.per_iteration_s, rule.confidence)
    if baseline is not None and baseline is not result:
        own = math.hypot(own, precision_of(baseline.per_iteration_s, rule.confidence))
    if own <= rule.precision:
        return "precision"
    return "budget" if sum(result.wall_s) >= rule.budget_s else None


def calibrate(function: RoundFunction, min_sample_s: float, period: int = 1, max_loops: int = 1000) -> int:
    """How many consecutive calls make one sample last at least ``min_sample_s``: a whole number of
    ``period`` calls (the round function's cycle of inputs), so every sample does the same work."""
    if min_sample_s <= 0:
        return period
    started = time.perf_counter()
    for _ in range(period):
        function()
    per_period = time.perf_counter() - started
    periods = math.ceil(min_sample_s / max(per_period, 1e-9))
    return period * max(1, min(max_loops // period, periods))


def _sample(function: RoundFunction, loops: int) -> RoundOutcome:
    """``loops`` consecutive rounds as one sample (their figures summed)."""
    outcome = function()
    for _ in range(loops - 1):
        outcome = outcome.plus(function())
    return outcome


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
    rule: StoppingRule,
    warmup_rounds: int = 1,
    memory: Callable[[Cell], tuple[int, ...]] | None = None,
    calibrated: bool = False,
    load: LoadProbe | None = None,
    period: int = 1,
    stopwatch: Stopwatch | None = None,
    canary: Callable[[], float] | None = None,
) -> dict[Cell, CellResult]:
    """Start every cell's workers (process pools before threads), calibrate (``calibrated``: samples of whole
    ``period`` calls), run ``warmup_rounds`` untimed samples, then samples with the cells interleaved until
    ``rule`` stops each; the workers are stopped at the end. ``load`` records the machine's load around every
    timed sample.
    Then, if given, ``memory(cell)`` measures each cell's memory per report in a separate, untimed pass.
    ``stopwatch`` sums the time of each phase (:data:`~zerosite.benchmarking.phases.PHASES`). ``canary`` (see
    :mod:`~zerosite.benchmarking.canary`) times the machine's own speed once per pass, noted in every cell of it."""
    phase = stopwatch or Stopwatch()
    results = {cell: CellResult(cell) for cell in cells}
    with contextlib.ExitStack() as stack:
        with phase("start and stop workers"):
            # Forking after threads exist may deadlock: start process-based strategies first.
            order = sorted(cells, key=lambda c: c.strategy in ("sequential", "thread", "bare"))
            workers: Mapping[Cell, _Workers] = {cell: stack.enter_context(_Workers(cell, start)) for cell in order}
        with phase("calibrate and warm up"):
            for cell in cells:
                results[cell].loops = calibrate(workers[cell].round, rule.min_sample_s, period) if calibrated else 1
            for _ in range(warmup_rounds):
                for cell in cells:
                    _sample(workers[cell].round, results[cell].loops)
        with _frozen_gc():
            for passing in _schedule(cells, results, rule):
                with phase("timed rounds"):
                    for cell in passing:
                        results[cell].rounds.append(_timed(workers[cell].round, results[cell].loops, load))
                        results[cell].starts.append(workers[cell].starts - 1)
                    if canary is not None:
                        machine_s = canary()
                        for cell in passing:
                            results[cell].canary_s.append(machine_s)
                for cell in passing:
                    if _start_again(results[cell]):
                        with phase("start and stop workers"):
                            workers[cell].start_again()
                        with phase("calibrate and warm up"):
                            _sample(workers[cell].round, results[cell].loops)
        with phase("start and stop workers"):
            stack.close()
    if memory is not None:
        with phase("memory probes"):
            for cell in cells:
                results[cell].memory_bytes = memory(cell)
    return results


class _Workers:
    """A cell's workers, started by ``start(cell)``, and started afresh when asked."""

    def __init__(self, cell: Cell, start: Callable[[Cell], AbstractContextManager[RoundFunction]]) -> None:
        self.cell = cell
        self._start = start
        self._stack = contextlib.ExitStack()
        self.starts = 0
        self.round = self._started()

    def _started(self) -> RoundFunction:
        function = self._stack.enter_context(self._start(self.cell))
        self.starts += 1
        return function

    def start_again(self) -> None:
        self._stack.close()
        self.round = self._started()

    def __enter__(self) -> _Workers:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()


def _start_again(result: CellResult) -> bool:
    """Whether the cell's workers are to start afresh now: every :data:`ROUNDS_PER_START` rounds, until its last
    start (:attr:`Cell.worker_starts`)."""
    rounds = len(result.rounds)
    return rounds % ROUNDS_PER_START == 0 and rounds // ROUNDS_PER_START < result.cell.worker_starts


def _schedule(cells: Sequence[Cell], results: Mapping[Cell, CellResult], rule: StoppingRule) -> Iterator[list[Cell]]:
    """The cells to measure in the next pass: every active cell once, rotated; after the pass a cell leaves
    when ``rule`` settles it (its ``stopped`` reason is set), a baseline only after the rest of its group."""
    active = list(cells)
    index = 0
    while active:
        yield rotation(active, index)
        index += 1
        # Settle the other cells first, then the baselines whose group has no cell left to compare.
        for cell in sorted(active, key=lambda c: c.strategy == BASELINE):
            if cell.strategy == BASELINE and any(c.group == cell.group and c != cell for c in active):
                continue
            reason = _settled(results[cell], results.get(cell.baseline), rule)
            if reason is not None:
                results[cell].stopped = reason
                active.remove(cell)


def _timed(function: RoundFunction, loops: int, load: LoadProbe | None) -> RoundOutcome:
    if load is None:
        return _sample(function, loops)
    token = load.begin()
    outcome = _sample(function, loops)
    return outcome.with_load(load.end(token))


@contextlib.contextmanager
def _frozen_gc() -> Iterator[None]:
    """Collect once and freeze what survives, so later collections are short (a full collection per
    round would cost more than many rounds) and a long pause does not land in one cell's round."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


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
