"""The objects behind the ``zerosite_bench`` and ``zerosite_service`` fixtures: measure a cell (its group
interleaved) or a service point (its server's every number of users), hand the samples to pytest-benchmark, our
figures in ``extra_info``."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

from zerosite.benchmarking.cells import Cell, CellResult
from zerosite.benchmarking.service_level import ServicePoint, analyse_service
from zerosite.benchmarking.service_load import ServicePointId, serve_unavailable_reason
from zerosite.benchmarking.workloads import Workload

if TYPE_CHECKING:
    from zerosite.benchmarking.session import Recorder

__all__ = ["CellBenchmark", "ServiceBenchmark"]


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


class ServiceBenchmark:
    """Call it with a point: ``zerosite_service(zerosite_service_point)``. The point's server is started and driven
    at every number of users the first time one of its points is asked for; this point's request latencies go
    to pytest-benchmark (one round per request), its figures to ``extra_info`` and the terminal."""

    def __init__(
        self, benchmark: Any, recorder: Recorder, nodeid: str, tmp: pytest.TempPathFactory, say: Callable[[str], None]
    ) -> None:
        self.benchmark = benchmark
        self.recorder = recorder
        self.nodeid = nodeid
        self.tmp = tmp
        self.say = say

    def __call__(self, point: ServicePointId) -> ServicePoint:
        if (why := serve_unavailable_reason()) is not None:
            pytest.skip(why)
        if self.recorder.mode != "time":
            pytest.skip("the service level is timed: it has no instruction counts")
        first = point.strategy not in self.recorder.service_runs
        run = self.recorder.measure_service(point.strategy, lambda name: self.tmp.mktemp(f"service-{name}"), self.say)
        figures = {(p.strategy, p.users): p for p in analyse_service([run], self.recorder.targets.values).points}
        if first:
            for measured in figures.values():
                self.say(measured.line())
        found = next((p for p in run.points if p.users == point.users), None)
        if found is None or (point.strategy, point.users) not in figures:
            pytest.fail(f"{point.id}: not measured", pytrace=False)
        self.benchmark.extra_info.update(figures[(point.strategy, point.users)].as_dict())
        clock = self.recorder.clocks.get(self.nodeid)
        if clock is None:
            raise RuntimeError(f"{self.nodeid}: zerosite_service needs a test parametrized with zerosite_service_point")
        latencies = [r.latency_s for r in sorted(found.requests, key=lambda r: r.due_s)] or [0.0]
        self.benchmark.pedantic(clock.advance, rounds=clock.load(latencies), iterations=1, warmup_rounds=0)
        return figures[(point.strategy, point.users)]
