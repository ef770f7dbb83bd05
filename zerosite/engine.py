"""The run engine: stream projects through a strategy, write each report atomically, index it, resume."""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from zerosite.pipeline import plan, report_names
from zerosite.plugins import get_data_sources, get_modules, get_strategies, plugin_settings
from zerosite.project import Project
from zerosite.rendering import get_environment, templates_fingerprint
from zerosite.sources import select_source
from zerosite.store import ReportRow, ReportStore
from zerosite.types import (
    STATUSES,
    PluginSettings,
    ProjectResult,
    ReportModule,
    ReportStatus,
    Runner,
    SourceSettings,
    StageTimings,
    Strategy,
    StrategyOptions,
    WorkerConfig,
)

__all__ = [
    "BatchOptions",
    "BatchPlan",
    "BatchSummary",
    "EngineError",
    "ReportOutcome",
    "StageTimings",
    "generate",
    "plan_batch",
    "start_runner",
]

MAX_FAILURES_KEPT = 1000
"""The summary lists at most this many failures (the index has them all)."""


class EngineError(Exception):
    """A batch cannot start: unknown or unavailable strategy, unknown module."""


@dataclass(frozen=True)
class BatchOptions:
    """Everything ``zerosite generate`` decides about a batch."""

    out: Path
    db: Path | None = None
    modules: tuple[str, ...] | None = None
    strategy: str = "sequential"
    workers: int = 1
    chunksize: int = 4
    start_method: str | None = None
    gzip: bool = False
    data_url: str | None = None
    source: str | None = None
    force: bool = False
    verify: bool = False
    """Re-hash each report that would be skipped; remake the project when a file differs from its indexed SHA-256."""
    timeout_s: float | None = None
    fetch_timeout_s: float = SourceSettings.deadline_s
    """Total time for one project's fetch: every attempt, its connect, reads and body, and the waits between."""
    max_body_bytes: int = SourceSettings.max_body_bytes
    """The largest response body a fetch reads; a longer one fails that project's reports."""
    trace_memory: bool = False
    plugins: PluginSettings = field(default_factory=plugin_settings)


@dataclass(frozen=True)
class BatchPlan:
    """What a batch will do, decided once by :func:`plan_batch`; ``config`` is what every worker receives."""

    config: WorkerConfig
    steps: tuple[ReportModule, ...]
    """The modules of ``config.compute``, in that order."""
    strategy: Strategy
    strategy_options: StrategyOptions
    templates: str
    """A fingerprint of every template (``rendering.templates_fingerprint``)."""


def plan_batch(options: BatchOptions) -> BatchPlan:
    """The one place where a batch's plan is decided: the modules to compute and to report, the data
    source, the strategy. Plugins and templates are checked here, before anything is made.

    :raises EngineError: an unknown module, data source or strategy, or one unavailable here.
    :raises PluginError: plugins that cannot work together (a missing template, a duplicate name).
    """
    modules = get_modules(options.plugins)
    try:
        steps = plan(modules, options.modules)
        reports = report_names(modules, options.modules)
        source = select_source(get_data_sources(options.plugins), options.data_url, options.source)
    except (KeyError, LookupError) as error:
        raise EngineError(error.args[0]) from None
    templates = templates_fingerprint(get_environment(options.plugins))
    config = WorkerConfig(
        plugins=options.plugins.resolved(),
        compute=tuple(m.name for m in steps),
        reports=tuple(reports),
        source=source.name,
        source_settings=SourceSettings(
            url=options.data_url, deadline_s=options.fetch_timeout_s, max_body_bytes=options.max_body_bytes
        ),
        trace_memory=options.trace_memory,
        timeout_s=options.timeout_s,
    )
    tuning = StrategyOptions(workers=options.workers, chunksize=options.chunksize, start_method=options.start_method)
    return BatchPlan(config, tuple(steps), _strategy(options), tuning, templates)


def _strategy(options: BatchOptions) -> Strategy:
    strategies = get_strategies(options.plugins)
    strategy = strategies.get(options.strategy)
    if strategy is None:
        raise EngineError(f"unknown strategy {options.strategy!r}; known: {', '.join(strategies)}")
    reason = strategy.unavailable_reason()
    if reason:
        raise EngineError(f"strategy {options.strategy!r} is not available here: {reason}")
    return strategy


@dataclass(frozen=True, slots=True)
class ReportOutcome:
    """What became of one report in a batch."""

    project_id: str
    module: str
    status: ReportStatus
    path: Path | None
    size_bytes: int
    timings: StageTimings
    peak_memory_bytes: int
    error: str | None


@dataclass(frozen=True)
class BatchSummary:
    """Counts, wall time and time by stage for one batch."""

    strategy: str
    workers: int
    written: int
    skipped: int
    failed: int
    wall_s: float
    stage_ns: StageTimings
    failures: tuple[ReportOutcome, ...]
    restarts: int = 0

    @property
    def reports_per_s(self) -> float:
        made = self.written + self.failed
        return made / self.wall_s if self.wall_s > 0 else 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            "strategy": self.strategy,
            "workers": self.workers,
            "written": self.written,
            "skipped": self.skipped,
            "failed": self.failed,
            "wall_s": round(self.wall_s, 6),
            "reports_per_s": round(self.reports_per_s, 3),
            "stage_s": {stage: round(ns / 1e9, 6) for stage, ns in self.stage_ns.by_stage().items()},
            "pool_restarts": self.restarts,
            "failures": [{"project_id": f.project_id, "module": f.module, "error": f.error} for f in self.failures],
        }


def start_runner(options: BatchOptions, batch_plan: BatchPlan | None = None) -> Runner:
    """Start the chosen strategy's workers (warm) on the batch's plan; close the runner when done."""
    chosen = batch_plan or plan_batch(options)
    return chosen.strategy.start(chosen.config, chosen.strategy_options)


class _InputHasher:
    """Content hashes for resume: project input, module versions (its requirements' too), templates, output form."""

    def __init__(self, options: BatchOptions, batch_plan: BatchPlan) -> None:
        steps = {m.name: m for m in batch_plan.steps}
        config = batch_plan.config
        self.modules = list(config.reports)
        self.keys = {}
        for name in config.reports:
            chain = ",".join(f"{m.name}={m.version}" for m in plan(steps, [name]))
            source = f"{options.source or ''}:{options.data_url or ''}"
            self.keys[name] = f"{chain}|{batch_plan.templates}|gzip={options.gzip}|source={source}".encode()

    def hashes(self, project: Project) -> dict[str, str]:
        # The frozen dataclass's repr covers every field, deterministically, at a tenth of the cost of JSON.
        digest = hashlib.sha256(repr(project).encode()).digest()
        return {name: hashlib.sha256(digest + key).hexdigest() for name, key in self.keys.items()}


class _Tally:
    def __init__(self, on_report: Callable[[ReportOutcome], None] | None) -> None:
        self.on_report = on_report
        self.counts: dict[ReportStatus, int] = dict.fromkeys(STATUSES, 0)
        self.stage_ns = StageTimings()
        self.failures: list[ReportOutcome] = []

    def add(self, outcome: ReportOutcome) -> None:
        self.counts[outcome.status] += 1
        self.stage_ns += outcome.timings
        if outcome.status == "failed" and len(self.failures) < MAX_FAILURES_KEPT:
            self.failures.append(outcome)
        if self.on_report is not None:
            self.on_report(outcome)


def generate(
    projects: Iterable[Project],
    options: BatchOptions,
    on_report: Callable[[ReportOutcome], None] | None = None,
    runner: Runner | None = None,
    batch_plan: BatchPlan | None = None,
) -> BatchSummary:
    """Make, write and index every report of ``projects``; skip unchanged ones unless ``options.force``.

    ``runner`` lets a caller reuse warm workers across batches; without it the chosen strategy
    is started here and stopped at the end (as ``zerosite generate`` does). ``batch_plan`` is
    ``plan_batch(options)`` when the caller made it already.
    """
    started = time.perf_counter()
    batch_plan = batch_plan or plan_batch(options)
    hasher = _InputHasher(options, batch_plan)
    tally = _Tally(on_report)

    with ReportStore(options.out, options.db, gzip=options.gzip) as store:
        store.cleanup_temp_files()

        def to_make() -> Iterator[Project]:
            for project in projects:
                project_hashes = hasher.hashes(project)
                if not options.force and all(
                    store.input_hash_of(project.id, m) == h and (not options.verify or store.file_intact(project.id, m))
                    for m, h in project_hashes.items()
                ):
                    for module in project_hashes:
                        tally.add(ReportOutcome(project.id, module, "skipped", None, 0, StageTimings(), 0, None))
                    continue
                in_flight[project.id] = project_hashes
                yield project

        in_flight: dict[str, dict[str, str]] = {}
        try:
            with contextlib.nullcontext(runner) if runner is not None else start_runner(options, batch_plan) as active:
                for result in active.run(to_make(), store.files):
                    _store_result(store, result, in_flight[result.project_id], tally)
                    del in_flight[result.project_id]  # only once indexed: an interrupt before discards it whole
                restarts = active.restarts
        finally:
            # Stopped part-way (Ctrl-C, an index error): the projects in flight are discarded whole,
            # files and rows alike, so the index matches the folder and a rerun remakes them.
            for project_id in in_flight:
                store.discard(project_id, hasher.modules)
            if in_flight:
                store.cleanup_temp_files()  # a worker ended mid-write (a second Ctrl-C kills them) leaves one
        if restarts:
            store.cleanup_temp_files()  # a worker killed mid-write leaves its temporary file

    return BatchSummary(
        strategy=options.strategy,
        workers=options.workers,
        written=tally.counts["written"],
        skipped=tally.counts["skipped"],
        failed=tally.counts["failed"],
        wall_s=time.perf_counter() - started,
        stage_ns=tally.stage_ns,
        failures=tuple(tally.failures),
        restarts=restarts,
    )


def _store_result(store: ReportStore, result: ProjectResult, input_hashes: dict[str, str], tally: _Tally) -> None:
    """Index one project's reports (the workers wrote the files)."""
    project_id = result.project_id
    for report in result.reports:
        written, timings = report.written, report.timings
        if report.ok and written is None and report.html is not None:  # a runner that hands back HTML
            written = store.write(project_id, report.module, report.html)
            timings = replace(timings, write_ns=written.write_ns)
        status: ReportStatus = "failed" if written is None else "written"
        error = report.error if written is None else None
        store.record(
            ReportRow(
                project_id=project_id,
                module=report.module,
                address=result.address,
                path=written.location if written else "",
                size_bytes=written.size_bytes if written else 0,
                sha256=written.sha256 if written else "",
                input_hash=input_hashes[report.module],
                fetch_ns=timings.fetch_ns,
                compute_ns=timings.compute_ns,
                render_ns=timings.render_ns,
                write_ns=timings.write_ns,
                peak_memory_bytes=report.peak_memory_bytes,
                status=status,
                error=error,
            )
        )
        path, size = (written.path, written.size_bytes) if written else (None, 0)
        peak = report.peak_memory_bytes
        tally.add(ReportOutcome(project_id, report.module, status, path, size, timings, peak, error))
