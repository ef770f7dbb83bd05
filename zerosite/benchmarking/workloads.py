"""What one round of a cell does, on the real engine: one report, one project's pipeline, or a batch."""

from __future__ import annotations

import contextlib
import itertools
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from zerosite.benchmarking.cells import BARE, BASELINE, REFERENCE_NAMES, STAGES, Cell, RoundOutcome
from zerosite.benchmarking.harness import RoundFunction
from zerosite.project import Project
from zerosite.types import ProjectResult

__all__ = ["MEMORY_PROJECTS", "SCENARIO_LATENCY_SHARE", "MemoryProbe", "Workload", "cell_round", "scenario_projects"]

SCENARIO_LATENCY_SHARE: Mapping[str, float | None] = {"cpu": None, "io": 1.0, "mixed": 0.25}
"""Per scenario: the embedded source (None) or the HTTP source at this share of the configured latency.

cpu: no waiting, rendering only. io: every project waits the full latency (default 20 ms) before its
CPU work. mixed: a quarter of it, so waiting and computing are of similar size."""

MEMORY_PROJECTS = 4
"""Projects in a cell's separate, untimed memory pass (tracemalloc slows allocation: timed rounds run without it)."""


@dataclass(frozen=True)
class Workload:
    """Inputs shared by every cell: the projects, the data-source URL per scenario, the batch size."""

    projects: Sequence[Project]
    urls: Mapping[str, str | None]
    batch_projects: int = 100
    modules: tuple[str, ...] | None = None
    """All registered modules when None; the single level runs each of these alone."""
    scratch: Path = field(default_factory=lambda: Path(tempfile.gettempdir()))

    def url(self, scenario: str) -> str | None:
        if scenario not in self.urls:
            raise KeyError(f"no data source for scenario {scenario!r}; known: {', '.join(self.urls)}")
        return self.urls[scenario]


def scenario_projects(n: int, seed: int = 0) -> list[Project]:
    """``n`` deterministic sample projects, parsed."""
    from zerosite.project import parse_project
    from zerosite.sample import sample_projects

    return [parse_project(raw, f"sample project {i}") for i, raw in enumerate(sample_projects(n, seed))]


def _outcome(wall_s: float, projects: int, results: Sequence[ProjectResult]) -> RoundOutcome:
    """A round's outcome from the engine's per-project results."""
    reports = [report for result in results for report in result.reports]
    return RoundOutcome(
        wall_s=wall_s,
        projects=projects,
        reports=len(reports),
        stage_ns={stage: sum(r.timings.by_stage()[stage] for r in reports) for stage in STAGES},
        peak_memory_bytes=tuple(r.peak_memory_bytes for r in reports),
        failed=sum(r.html is None for r in reports),
    )


ROUND_PERIOD = 3
"""Single-report and pipeline rounds cycle through this many projects; a calibrated sample spans whole
periods (see ``harness.calibrate``), so every sample does the same work and its spread is noise only."""


def _cycle(cell: Cell, workload: Workload) -> Iterator[Project]:
    """The projects a cell's rounds take in turn: a short period for single and pipeline, all for batch."""
    return itertools.cycle(workload.projects if cell.level == "batch" else workload.projects[:ROUND_PERIOD])


_WARM_UP_CHUNKSIZE = 4
"""Projects per worker run before measuring, so that every pool worker has started and made a report."""


def _options(cell: Cell, workload: Workload, scratch: Path, trace_memory: bool = False) -> Any:
    from zerosite.engine import BatchOptions

    return BatchOptions(
        out=scratch / "out",
        modules=(cell.module,) if cell.module else workload.modules,
        strategy=cell.strategy,
        workers=cell.workers,
        data_url=workload.url(cell.scenario),
        force=True,
        trace_memory=trace_memory,
    )


class MemoryProbe:
    """Peak traced bytes per report, by module, for each (strategy, workers); measured once and reused.

    Timed rounds run without tracemalloc (it slows every allocation), so memory is measured apart: a
    fresh runner with tracing on makes every module's report for a few projects (embedded source: the
    fetch stage is not part of a report's peak), each measured in whichever process made it, worker
    processes included. A report's peak does not depend on the level, the scenario or the number of
    workers (each report is made whole by one worker), so every cell of a strategy shares one measurement,
    made with the first cell's workers.
    """

    def __init__(self, workload: Workload) -> None:
        self.workload = workload
        self._by_strategy: dict[str, dict[str, tuple[int, ...]]] = {}

    def __call__(self, cell: Cell) -> tuple[int, ...]:
        if cell.is_reference:
            return ()
        if cell.strategy not in self._by_strategy:
            self._by_strategy[cell.strategy] = self._measure(cell)
        by_module = self._by_strategy[cell.strategy]
        if cell.module is not None:
            return by_module.get(cell.module, ())
        return tuple(peak for peaks in by_module.values() for peak in peaks)

    def _measure(self, cell: Cell) -> dict[str, tuple[int, ...]]:
        from zerosite.engine import start_runner

        workload = replace(self.workload, urls={**self.workload.urls, "memory": None})
        probe = replace(cell, level="pipeline", scenario="memory", module=None)
        with (
            tempfile.TemporaryDirectory(prefix="zerosite-memory-", dir=workload.scratch) as scratch,
            start_runner(_options(probe, workload, Path(scratch), trace_memory=True)) as runner,
        ):
            warm_up = workload.projects[: _WARM_UP_CHUNKSIZE * cell.workers]
            list(runner.run(warm_up))  # each worker's first reports fill its caches: not counted
            results = list(runner.run(workload.projects[:MEMORY_PROJECTS]))
        by_module: dict[str, list[int]] = {}
        for result in results:
            for report in result.reports:
                by_module.setdefault(report.module, []).append(report.peak_memory_bytes)
        return {module: tuple(peaks) for module, peaks in by_module.items()}


@contextlib.contextmanager
def _engine_round(cell: Cell, workload: Workload, scratch: Path) -> Iterator[RoundFunction]:
    from zerosite.engine import ReportOutcome, generate, start_runner
    from zerosite.strategies_auto import AutoRunner

    options = _options(cell, workload, scratch)
    cycle = _cycle(cell, workload)
    with start_runner(options) as runner:
        # Pools start their workers on first use: make every worker warm before anything is timed.
        list(runner.run(workload.projects[: _WARM_UP_CHUNKSIZE * cell.workers]))
        if cell.level != "batch":

            def one_project() -> RoundOutcome:
                project = next(cycle)
                started = time.perf_counter()
                results = list(runner.run([project]))
                return _outcome(time.perf_counter() - started, 1, results)

            yield one_project
            return

        counter = itertools.count()
        batch = list(itertools.islice(cycle, workload.batch_projects))
        chosen: list[str] = []  # what auto chose in the round: the strategy it ran on
        if isinstance(runner, AutoRunner):
            runner.on_choice = lambda choice: chosen.append(choice.label)

        def one_batch() -> RoundOutcome:
            out = scratch / f"batch-{next(counter)}"
            failed = [0]
            chosen.clear()

            def on_report(outcome: ReportOutcome) -> None:
                failed[0] += outcome.status == "failed"

            summary = generate(batch, replace(options, out=out), on_report, runner)
            shutil.rmtree(out, ignore_errors=True)
            stage = summary.stage_ns
            return RoundOutcome(
                wall_s=summary.wall_s,
                projects=len(batch),
                reports=summary.written + summary.failed,
                stage_ns=stage.by_stage(),
                failed=failed[0],
                ran_as=tuple(chosen),
            )

        yield one_batch


@contextlib.contextmanager
def _bare_round(cell: Cell, workload: Workload, scratch: Path) -> Iterator[RoundFunction]:
    """A plain loop over the same module functions (fetch, compute, render, write a file): no engine."""
    from zerosite.engine import plan_batch
    from zerosite.pipeline import compute_and_render
    from zerosite.rendering import get_environment
    from zerosite.worker import open_source

    batch_plan = plan_batch(replace(_options(cell, workload, scratch), strategy=BASELINE))  # the baseline's plan
    steps, wanted = batch_plan.steps, set(batch_plan.config.reports)
    env = get_environment(batch_plan.config.plugins)
    source = open_source(batch_plan.config)
    cycle = _cycle(cell, workload)
    size = workload.batch_projects if cell.level == "batch" else 1
    out = scratch / "bare"
    out.mkdir(parents=True, exist_ok=True)

    def one_round() -> RoundOutcome:
        projects = list(itertools.islice(cycle, size))
        reports = failed = 0
        started = time.perf_counter()
        for project in projects:
            fetched = source.fetch(project)
            for made in compute_and_render(fetched, steps, wanted, env):
                if made.html is None:
                    failed += made.reported
                    continue
                reports += 1
                if cell.level == "batch":
                    (out / f"{project.id}-{made.module.name}.html").write_text(made.html, encoding="utf-8")
        return RoundOutcome(wall_s=time.perf_counter() - started, projects=size, reports=reports, failed=failed)

    try:
        yield one_round
    finally:
        source.close()


@contextlib.contextmanager
def _reference_round(cell: Cell, workload: Workload, scratch: Path) -> Iterator[RoundFunction]:
    """Reference code (``references.REFERENCES``) making a batch's reports into a fresh folder each round, on
    workers started once for the cell where it keeps them (``Reference.warm``), as ours are."""
    from zerosite.benchmarking.references import REFERENCES

    reference = REFERENCES[cell.strategy]
    size = min(reference.projects or workload.batch_projects, workload.batch_projects)
    batch = list(itertools.islice(_cycle(cell, workload), size))
    counter = itertools.count()
    with reference.started(cell.workers) as make:

        def one_batch() -> RoundOutcome:
            out = scratch / f"batch-{next(counter)}"
            started = time.perf_counter()
            made = make(batch, out)
            wall_s = time.perf_counter() - started
            shutil.rmtree(out, ignore_errors=True)
            return RoundOutcome(wall_s=wall_s, projects=len(batch), reports=made)

        yield one_batch


_ROUNDS = {BARE: _bare_round, **dict.fromkeys(REFERENCE_NAMES, _reference_round)}
"""How a pseudo-strategy's rounds run; ZeroSite's own strategies run on the engine (``_engine_round``)."""


@contextlib.contextmanager
def cell_round(cell: Cell, workload: Workload) -> Iterator[RoundFunction]:
    """Warm the cell's workers and yield its round function; stop the workers afterwards."""
    scratch = Path(tempfile.mkdtemp(prefix=f"zerosite-bench-{cell.strategy}-", dir=workload.scratch))
    try:
        start = _ROUNDS.get(cell.strategy, _engine_round)
        with start(cell, workload, scratch) as round_function:
            yield round_function
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
