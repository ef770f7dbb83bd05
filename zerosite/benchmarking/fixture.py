"""The ``zerosite_bench`` fixture's object: measure a cell (its group interleaved), hand the samples to
pytest-benchmark, our figures in ``extra_info``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from zerosite.benchmarking.cells import Cell, CellResult
from zerosite.benchmarking.workloads import Workload

if TYPE_CHECKING:
    from zerosite.benchmarking.session import Recorder

__all__ = ["CellBenchmark"]


class CellBenchmark:
    """Call it with a cell: ``zerosite_bench(zerosite_cell)`` measures it against its group's baseline."""

    def __init__(self, benchmark: Any, recorder: Recorder, workload: Workload, nodeid: str) -> None:
        self.benchmark = benchmark
        self.recorder = recorder
        self.workload = workload
        self.nodeid = nodeid

    def __call__(self, cell: Cell) -> CellResult:
        if (why := self.recorder.unmeasurable(cell)) is not None:
            pytest.skip(why)
        result = self.recorder.measure(cell, self.workload)
        self.recorder.fullnames[self.nodeid] = cell
        self.benchmark.extra_info.update(cell.as_info())
        self.benchmark.extra_info["zerosite_cell"] = cell.id
        if result.instructions is not None:  # counted, not timed: nothing for pytest-benchmark to time
            return result
        clock = self.recorder.clocks.get(self.nodeid)
        if clock is None:
            raise RuntimeError(f"{self.nodeid}: zerosite_bench needs a test parametrized with zerosite_cell")
        rounds = clock.load(result.per_iteration_s)
        self.benchmark.pedantic(clock.advance, rounds=rounds, iterations=1, warmup_rounds=0)
        failed = sum(r.failed for r in result.rounds)
        if failed:
            pytest.fail(f"{cell.subject}: {failed} report(s) failed while benchmarking", pytrace=False)
        return result
