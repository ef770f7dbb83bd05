"""The run engine: stream projects through a strategy, write each report atomically, index it, resume."""

from __future__ import annotations

import contextlib
import functools
import gzip
import itertools
import time
import warnings
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from zerosite.making import noting
from zerosite.pipeline import plan, report_names
from zerosite.plugins import PluginWarning, get_data_sources, get_modules, get_strategies, plugin_settings
from zerosite.project import Project
from zerosite.rendering import get_environment, templates_fingerprint
from zerosite.sources import select_source
from zerosite.store import ReportStore, utc_now
from zerosite.types import (
    STATUSES,
    PluginSettings,
    ProjectResult,
    ReportCache,
    ReportModule,
    ReportResult,
    ReportStatus,
    ReportWriter,
    Runner,
    SourceSettings,
    StageTimings,
    StoreError,
    Strategy,
    StrategyOptions,
    WorkerConfig,
    error_message,
)
from zerosite.worker import input_hashes

__all__ = [
    "BatchOptions",
    "BatchPlan",
    "BatchSummary",
    "EngineError",
    "IsolatedWarning",
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
    chunksize: int = StrategyOptions.chunksize
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
    scheduler: str | None = None
    """The address of a running cluster for a strategy that spreads work over machines (``dask``)."""
    hand_back: bool = False
    """The workers hand each report's HTML back and this process writes it (for workers that cannot see ``out``)."""


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
        input_keys=_input_keys(options, steps, reports, templates),
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
    tuning = StrategyOptions(
        workers=options.workers,
        chunksize=options.chunksize,
        start_method=options.start_method,
        scheduler=options.scheduler,
    )
    return BatchPlan(config, tuple(steps), _strategy(options), tuning, templates)


def _input_keys(
    options: BatchOptions, steps: Sequence[ReportModule], reports: Sequence[str], templates: str
) -> tuple[tuple[str, bytes], ...]:
    """What each report's input hash covers besides the project: the versions of its module and of everything that
    module requires, the templates, the output form and the data source."""
    by_name = {m.name: m for m in steps}
    source = f"{options.source or ''}:{options.data_url or ''}"
    keys = []
    for name in reports:
        chain = ",".join(f"{m.name}={m.version}" for m in plan(by_name, [name]))
        keys.append((name, f"{chain}|{templates}|gzip={options.gzip}|source={source}".encode()))
    return tuple(keys)


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
    location: str | None
    """The report file's absolute path, as text; None unless written."""
    size_bytes: int
    timings: StageTimings
    peak_memory_bytes: int
    error: str | None
    from_cache: bool = False
    """Written from the report cache instead of being made."""
    sha256: str | None = None
    """The SHA-256 of the file this batch wrote, or of the indexed file it skipped; None when failed."""

    @property
    def path(self) -> Path | None:
        return None if self.location is None else Path(self.location)


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
    from_cache: int = 0
    """Of ``written``, how many came from the report cache."""
    made_apart: tuple[str, ...] = ()
    """The projects made last, each in a worker process of its own: an earlier run died making them in its own."""

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
            "from_cache": self.from_cache,
            "wall_s": round(self.wall_s, 6),
            "reports_per_s": round(self.reports_per_s, 3),
            "stage_s": {stage: round(ns / 1e9, 6) for stage, ns in self.stage_ns.by_stage().items()},
            "pool_restarts": self.restarts,
            "made_apart": list(self.made_apart),
            "failures": [{"project_id": f.project_id, "module": f.module, "error": f.error} for f in self.failures],
        }


def start_runner(options: BatchOptions, batch_plan: BatchPlan | None = None) -> Runner:
    """Start the chosen strategy's workers (warm) on the batch's plan; close the runner when done."""
    chosen = batch_plan or plan_batch(options)
    return chosen.strategy.start(chosen.config, chosen.strategy_options)


class _StartedWhenNeeded(Runner):
    """The batch's runner when ``generate`` starts it: started when the first project is to be made, so that a
    rerun with nothing to make starts no worker (a local Dask cluster took 3 s to make nothing, a user audit)."""

    def __init__(self, start: Callable[[], Runner]) -> None:
        self._start = start
        self._runner: Runner | None = None

    def _started(self) -> Runner:
        if self._runner is None:
            self._runner = self._start()
        return self._runner

    @property
    def restarts(self) -> int:
        return self._runner.restarts if self._runner is not None else 0

    @property
    def workers(self) -> int | None:
        return self._runner.workers if self._runner is not None else None

    @property
    def runs_here(self) -> bool:
        return self._started().runs_here  # asked of a project about to be made

    def run(self, projects: Iterable[Project], files: ReportWriter | None = None) -> Iterator[ProjectResult]:
        taken = iter(projects)
        first = next(taken, None)
        if first is not None:
            yield from self._started().run(itertools.chain([first], taken), files)

    def close(self) -> None:
        if self._runner is not None:
            self._runner.close()


class _Tally:
    """Counts, stage times and the first failures of a batch; each report's outcome to ``on_report``."""

    def __init__(self, on_report: Callable[[ReportOutcome], None] | None) -> None:
        self.on_report = on_report
        self.counts: dict[ReportStatus, int] = dict.fromkeys(STATUSES, 0)
        self._stage_ns = [0, 0, 0, 0]
        self.failures: list[ReportOutcome] = []
        self.from_cache = 0

    @property
    def stage_ns(self) -> StageTimings:
        return StageTimings(*self._stage_ns)

    def add(
        self, project_id: str, reports: Sequence[ReportResult], statuses: Sequence[ReportStatus], cached: bool = False
    ) -> None:
        """Count one project's reports, each with its status as indexed (``cached``: written from the cache)."""
        counts, sums = self.counts, self._stage_ns
        if cached:
            self.from_cache += sum(report.written is not None for report in reports)
        for report, status in zip(reports, statuses, strict=True):
            counts[status] += 1
            t = report.timings
            sums[0] += t.fetch_ns
            sums[1] += t.compute_ns
            sums[2] += t.render_ns
            sums[3] += t.write_ns
            keep = status == "failed" and len(self.failures) < MAX_FAILURES_KEPT
            if keep or self.on_report is not None:  # no outcome object for a report nobody looks at
                self._outcome(project_id, report, status, cached and report.written is not None, keep)

    def _outcome(self, project_id: str, report: ReportResult, status: ReportStatus, cached: bool, keep: bool) -> None:
        """The report's outcome, kept (one of the first failures) and told to ``on_report``."""
        written = report.written
        location, size, sha256 = (
            (written.location, written.size_bytes, written.sha256) if written is not None else (None, 0, None)
        )
        error = None if status == "written" else report.error
        outcome = ReportOutcome(
            project_id,
            report.module,
            status,
            location,
            size,
            report.timings,
            report.peak_memory_bytes,
            error,
            cached,
            sha256,
        )
        if keep:
            self.failures.append(outcome)
        if self.on_report is not None:
            self.on_report(outcome)

    def skip(self, project_id: str, module: str, indexed: tuple[str, int] | None = None) -> None:
        """Count a report left as it was (``indexed``: its file's SHA-256 and size, for ``on_report``)."""
        self.counts["skipped"] += 1
        if self.on_report is not None:
            sha256, size = indexed or (None, 0)
            outcome = ReportOutcome(project_id, module, "skipped", None, size, StageTimings(), 0, None, sha256=sha256)
            self.on_report(outcome)


def generate(
    projects: Iterable[Project],
    options: BatchOptions,
    on_report: Callable[[ReportOutcome], None] | None = None,
    runner: Runner | None = None,
    batch_plan: BatchPlan | None = None,
    cache: ReportCache | None = None,
    store: ReportStore | None = None,
) -> BatchSummary:
    """Make, write and index every report of ``projects``; skip unchanged ones unless ``options.force``.

    ``runner`` lets a caller reuse warm workers across batches; without it the chosen strategy
    is started here and stopped at the end (as ``zerosite generate`` does). ``batch_plan`` is
    ``plan_batch(options)`` when the caller made it already. Given a ``cache`` that keeps copies
    (not ``local``: that is this store, which resume reads already), a project whose reports it
    holds, every one, is written from it instead of being made (unless ``options.force``), and the
    reports made are put in it; its keys are the input hashes of the plain (not gzip) form.
    ``store``, an open store on ``options.out`` (its stale temporary files removed), lets a caller make
    many batches in a row without opening the index for each (the service does); it is left open, perhaps
    with rows not yet committed (``store.flush()`` commits them).
    """
    started = time.perf_counter()
    batch_plan = batch_plan or plan_batch(options)
    keys = batch_plan.config.input_keys
    reports = batch_plan.config.reports
    tally = _Tally(on_report)
    shared = cache if cache is not None and cache.keeps_copies else None
    cache_keys = (
        _input_keys(replace(options, gzip=False), batch_plan.steps, reports, batch_plan.templates)
        if options.gzip
        else keys
    )

    opened = store is None
    context: contextlib.AbstractContextManager[ReportStore] = (
        ReportStore(options.out, options.db, gzip=options.gzip) if store is None else contextlib.nullcontext(store)
    )
    with context as store:
        if opened:
            store.cleanup_temp_files()
        in_flight: dict[str, Project] = {}
        used_up = False  # every project taken from the input: what is left is in flight
        alone: list[Project] = []  # projects that ended an earlier run making them here: made apart, at the end

        def unchanged(project: Project) -> bool:
            """Whether every report of ``project`` is indexed with its current input hash (and file)."""
            indexed = [store.input_hash_of(project.id, m) for m in reports]
            if None in indexed:
                return False  # not hashed here: the worker hashes what it makes
            hashes = input_hashes(project, keys)
            return all(
                indexed[i] == hashes[m] and (not options.verify or store.file_intact(project.id, m))
                for i, m in enumerate(reports)
            )

        def to_make(active: Runner) -> Iterator[Project]:
            nonlocal used_up
            for project in projects:
                if not options.force and unchanged(project):
                    for module in reports:
                        tally.skip(project.id, module, store.indexed_file(project.id, module))
                    if project.id in store.isolated:  # its reports were made, so it did not kill that run
                        store.made_without_dying(project.id, batch_plan.config.compute)
                    continue
                if (
                    shared is not None
                    and not options.force
                    and _fill_from_cache(store, shared, project, keys, cache_keys, tally)
                ):
                    continue
                if active.runs_here and project.id in store.isolated and isolating is not None:
                    _warn_isolated(project.id, store)
                    alone.append(project)
                    continue
                in_flight[project.id] = project
                yield project
            used_up = True

        def keep(result: ProjectResult) -> None:
            project = in_flight[result.project_id]
            _store_result(store, result, functools.partial(input_hashes, project, keys), tally)
            if shared is not None:
                shared.put_many(_made_html(result, input_hashes(project, cache_keys), options.gzip))
            del in_flight[result.project_id]  # only once indexed: an interrupt before discards it whole
            if used_up and store.pending_rows >= len(in_flight) * len(reports):
                # The batch's tail: rows held until the end would be committed once the workers are
                # done, while nothing else runs. Committed once they are as many as the rows still to
                # come, the last commit holds a result's rows or two (a few commits more, not one a result).
                store.flush()

        isolating = _isolating_strategy(options) if store.isolated else None
        files = None if options.hand_back else store.files
        refused: StoreError | None = None
        try:
            with (
                noting(store.note_making),
                contextlib.nullcontext(runner)
                if runner is not None
                else _StartedWhenNeeded(functools.partial(start_runner, options, batch_plan)) as active,
                _closed_after(active.run(to_make(active), files)) as made,
            ):
                for result in made:
                    keep(result)
                store.flush()  # the last rows, here rather than when the store closes: an index error is handled below
                restarts, workers = active.restarts, active.workers or options.workers
            if alone and isolating is not None:
                restarts += _make_alone(alone, isolating, batch_plan, store, files, in_flight, keep)
                store.flush()
        except StoreError as error:
            # The index took no more (a full disk): the reports it did not take go with their files, so that the
            # folder holds what it says; those it committed before stay, for a rerun to resume from.
            refused = error
            removed = store.abandon_pending()
            raise StoreError(
                f"{error}; the {removed} reports made since its last commit were removed, those indexed before it "
                "are kept: make room and run the same command again to resume"
            ) from error
        finally:
            store.note_making(())  # what an abandoned thread still makes is not this batch's to note
            # Stopped part-way (Ctrl-C, an index error): the projects in flight are discarded whole,
            # files and rows alike (files alone if the index refused), so the index matches the folder and a rerun
            # remakes them.
            for project_id in in_flight:
                if refused is None:
                    store.discard(project_id, reports)
                else:
                    store.remove_files(project_id, reports)
            if in_flight:
                store.cleanup_temp_files()  # a worker ended mid-write (a second Ctrl-C kills them) leaves one
        if restarts:
            store.cleanup_temp_files()  # a worker killed mid-write leaves its temporary file

    return BatchSummary(
        strategy=options.strategy,
        workers=workers,
        written=tally.counts["written"],
        skipped=tally.counts["skipped"],
        failed=tally.counts["failed"],
        wall_s=time.perf_counter() - started,
        stage_ns=tally.stage_ns,
        failures=tuple(tally.failures),
        restarts=restarts,
        from_cache=tally.from_cache,
        made_apart=tuple(project.id for project in alone),  # set apart only where an isolating runner makes them
    )


class IsolatedWarning(PluginWarning):
    """Projects that ended an earlier run making them in its own process are made in a worker process of their own."""


def _isolating_strategy(options: BatchOptions) -> Strategy | None:
    """The strategy that makes a project in a worker process of its own (``process``), if it is available here."""
    strategy = get_strategies(options.plugins).get("process")
    return strategy if strategy is not None and strategy.unavailable_reason() is None else None


def _make_alone(
    projects: Sequence[Project],
    isolating: Strategy,
    batch_plan: BatchPlan,
    store: ReportStore,
    files: ReportWriter | None,
    in_flight: dict[str, Project],
    keep: Callable[[ProjectResult], None],
) -> int:
    """Make ``projects``, which ended an earlier run that made them in its own process, one at a time in a worker
    process of their own, so that one that kills it again fails alone, named; one made without a death is made
    like any other from then on (``ReportStore.made_without_dying``). Returns how often a worker process died."""
    with isolating.start(batch_plan.config, replace(batch_plan.strategy_options, workers=1, chunksize=1)) as runner:
        for project in projects:
            died = runner.restarts
            in_flight[project.id] = project
            with _closed_after(runner.run([project], files)) as made:
                for result in made:
                    keep(result)
            if runner.restarts == died:
                store.made_without_dying(project.id, batch_plan.config.compute)
        return runner.restarts


def _warn_isolated(project_id: str, store: ReportStore) -> None:
    modules = ", ".join(sorted(store.isolated[project_id]))
    warnings.warn(
        f"zerosite: project {project_id} ended a run into {store.out_dir} that made it in its own process"
        f"{f' with {modules}' if modules else ''} (os._exit(), a fatal signal or a crash in a module?), and no run "
        "has made it since without dying: it is made last, in a worker process of its own",
        IsolatedWarning,
        stacklevel=4,
    )


@contextlib.contextmanager
def _closed_after(results: Iterator[ProjectResult]) -> Iterator[Iterator[ProjectResult]]:
    """A runner's ``results``, closed when the block ends however it ends: the runner's clean-up (its work still
    running cancelled, and waited for) comes before the engine discards the projects in flight, not whenever the
    generator is collected."""
    try:
        yield results
    finally:
        close = getattr(results, "close", None)
        if close is not None:
            close()


def _fill_from_cache(
    store: ReportStore,
    cache: ReportCache,
    project: Project,
    keys: Sequence[tuple[str, bytes]],
    cache_keys: Sequence[tuple[str, bytes]],
    tally: _Tally,
) -> bool:
    """Write and index every report of ``project`` from ``cache`` if it holds them all; else write nothing."""
    wanted = input_hashes(project, cache_keys)
    found = cache.get_many(list(wanted.values()))
    try:
        pages = [value.decode("utf-8") for value in found if value is not None]
    except UnicodeDecodeError:
        return False
    if len(pages) != len(wanted):
        return False
    reports = []
    for module, html in zip(wanted, pages, strict=True):
        try:
            written = store.write(project.id, module, html)
        except StoreError as failure:
            reports.append(ReportResult(module, None, error_message(failure), StageTimings(), 0))
        else:
            reports.append(ReportResult(module, None, None, StageTimings(write_ns=written.write_ns), 0, written))
    result = ProjectResult.of(project, reports)
    _store_result(store, result, functools.partial(input_hashes, project, keys), tally, from_cache=True)
    return True


def _made_html(result: ProjectResult, keys: dict[str, str], gzipped: bool) -> Iterator[tuple[str, bytes]]:
    """``(cache key, HTML)`` of each report made for one project, read back from its file where it was written."""
    for report in result.reports:
        try:
            if report.html is not None:
                yield keys[report.module], report.html.encode("utf-8")
            elif report.written is not None:
                data = report.written.path.read_bytes()
                yield keys[report.module], gzip.decompress(data) if gzipped else data
        except (OSError, EOFError, zlib.error, UnicodeEncodeError):
            continue  # gone or unreadable already: not cached, and nothing else to do


def _store_result(
    store: ReportStore,
    result: ProjectResult,
    hashes: Callable[[], dict[str, str]],
    tally: _Tally,
    from_cache: bool = False,
) -> None:
    """Index one project's reports (the workers wrote the files and hashed the input, as a rule; or they came
    from the cache)."""
    reports = result.reports
    if any(report.written is None and report.html is not None for report in reports):  # a runner handing back HTML
        reports = tuple(_write_here(store, result.project_id, report) for report in reports)
        result = replace(result, reports=reports)
    input_hashes = [report.input_hash for report in reports]
    if not all(input_hashes):  # a result made in this process (a project its worker died with), or async's
        computed = hashes()
        input_hashes = [known or computed[report.module] for known, report in zip(input_hashes, reports, strict=True)]
    statuses = store.record_result(result, input_hashes, utc_now())
    tally.add(result.project_id, reports, statuses, from_cache)


def _write_here(store: ReportStore, project_id: str, report: ReportResult) -> ReportResult:
    """``report`` with its HTML written to ``store`` (by this process: the worker handed it back)."""
    if not report.ok or report.html is None:
        return report
    written = store.write(project_id, report.module, report.html)
    return replace(report, written=written, timings=replace(report.timings, write_ns=written.write_ns))
