"""What runs on a worker: fetch, compute and render one project's reports, timed, with failures contained."""

from __future__ import annotations

import contextlib
import signal
import threading
import time
import tracemalloc
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from zerosite.pipeline import plan, report_names
from zerosite.plugins import PluginSettings, get_data_sources, get_modules, set_plugin_settings
from zerosite.project import Project
from zerosite.rendering import get_environment, render_report
from zerosite.sources import SourceSettings, select_source
from zerosite.store import ReportFiles, StoreError, WrittenFile

__all__ = [
    "ProjectResult",
    "ReportResult",
    "StageTimings",
    "Worker",
    "WorkerConfig",
    "current_worker",
    "failed_result",
    "init_worker",
    "make_fetched_chunk",
    "run_chunk",
]


@dataclass(frozen=True, slots=True)
class StageTimings:
    """Monotonic nanoseconds spent in each stage of making one report."""

    fetch_ns: int = 0
    compute_ns: int = 0
    render_ns: int = 0
    write_ns: int = 0

    def __add__(self, other: StageTimings) -> StageTimings:
        return StageTimings(
            self.fetch_ns + other.fetch_ns,
            self.compute_ns + other.compute_ns,
            self.render_ns + other.render_ns,
            self.write_ns + other.write_ns,
        )


@dataclass(frozen=True)
class WorkerConfig:
    """Everything a worker needs to make reports; small and picklable, sent once per worker."""

    plugins: PluginSettings = field(default_factory=PluginSettings)
    modules: tuple[str, ...] | None = None
    source: SourceSettings = field(default_factory=SourceSettings)
    source_name: str | None = None
    trace_memory: bool = False
    timeout_s: float | None = None


@dataclass(frozen=True, slots=True)
class ReportResult:
    """One report as a worker made it: the file it wrote (or, when asked not to write, the HTML),
    or the error that stopped it."""

    module: str
    html: str | None
    error: str | None
    timings: StageTimings
    peak_memory_bytes: int
    written: WrittenFile | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True, slots=True)
class ProjectResult:
    """The reports of one project, in dependency order."""

    project: Project
    reports: tuple[ReportResult, ...]


@dataclass
class _Peak:
    bytes: int = 0


def _deliver(
    project_id: str,
    module: str,
    html: str | None,
    error: str | None,
    timings: StageTimings,
    peak_bytes: int,
    files: ReportFiles | None,
) -> ReportResult:
    """The report as the worker hands it back: written to ``files`` if given, else as HTML; or its error."""
    if error is not None or html is None:
        return ReportResult(module, None, error, timings, peak_bytes)
    if files is None:
        return ReportResult(module, html, None, timings, peak_bytes)
    try:
        written = files.write(project_id, module, html)
    except StoreError as failure:
        return ReportResult(module, None, str(failure), timings, peak_bytes)
    return ReportResult(module, None, None, replace(timings, write_ns=written.write_ns), peak_bytes, written)


class ReportTimeout(Exception):
    """A report ran past the per-report time limit."""


class Worker:
    """A process's (or thread pool's) ready-to-use state: modules planned, templates compiled, source open."""

    def __init__(self, config: WorkerConfig) -> None:
        self.config = config
        modules = get_modules(config.plugins)
        self.plan = plan(modules, config.modules)
        self.reports = report_names(modules, config.modules)
        self.selected = frozenset(self.reports)
        self.env = get_environment(config.plugins)
        for module in self.plan:
            self.env.get_template(module.template)  # compile once, here, not in the first report
        self.source = select_source(get_data_sources(config.plugins), config.source.url, config.source_name)
        self.source.open(config.source)
        if config.trace_memory and not tracemalloc.is_tracing():
            tracemalloc.start()
        elif not config.trace_memory and tracemalloc.is_tracing():
            tracemalloc.stop()  # it slows every allocation several times over

    def run(self, project: Project, files: ReportFiles | None = None) -> ProjectResult:
        """Fetch, then make every report of one project; a fetch failure fails each of its reports."""
        started = time.monotonic_ns()
        try:
            fetched = self.source.fetch(project)
        except Exception as error:
            return self.failed(project, f"fetch failed: {error}", time.monotonic_ns() - started)
        return self.make(fetched, time.monotonic_ns() - started, files)

    def failed(self, project: Project, error: str, fetch_ns: int = 0) -> ProjectResult:
        """Every selected report of ``project`` failed with ``error``."""
        return failed_result(project, self.reports, error, fetch_ns)

    def make(self, project: Project, fetch_ns: int = 0, files: ReportFiles | None = None) -> ProjectResult:
        """Compute every planned module in order, render the selected ones and, given ``files``, write them.

        A module that raises fails its report and every report that depends on it; the
        others still complete. The project's fetch time is shared equally by its reports.
        """
        results: dict[str, Any] = {}
        failed: dict[str, str] = {}  # module -> why it could not be computed
        reports: list[ReportResult] = []
        fetch_share = fetch_ns // max(1, len(self.selected))
        for module in self.plan:
            wanted = module.name in self.selected
            missing = [name for name in module.requires if name in failed]
            if missing:
                failed[module.name] = f"not made: requires {', '.join(missing)}, which failed ({failed[missing[0]]})"
                if wanted:
                    error = failed[module.name]
                    reports.append(ReportResult(module.name, None, error, StageTimings(fetch_share), 0))
                continue
            html, error_text = None, None
            compute_ns = render_ns = 0
            with self._measure() as peak:
                t0 = time.monotonic_ns()
                try:
                    with self._time_limit():
                        deps = {name: results[name] for name in module.requires}
                        results[module.name] = module.compute(project, deps)
                        compute_ns = time.monotonic_ns() - t0
                        if wanted:
                            html = render_report(module, project, results[module.name], deps, self.env)
                            render_ns = time.monotonic_ns() - t0 - compute_ns
                except Exception as error:
                    stage = "render" if module.name in results else "compute"
                    error_text = f"{module.name} {stage} failed for project {project.id!r}: {_describe(error)}"
                    if stage == "compute":
                        failed[module.name] = error_text
            if wanted:
                timings = StageTimings(fetch_share, compute_ns, render_ns)
                error_text = error_text or self._overran(timings)
                reports.append(_deliver(project.id, module.name, html, error_text, timings, peak.bytes, files))
        return ProjectResult(project, tuple(reports))

    @contextlib.contextmanager
    def _measure(self) -> Iterator[_Peak]:
        """Peak bytes allocated inside the block (tracemalloc); process-wide, so approximate under threads."""
        peak = _Peak()
        if not self.config.trace_memory:
            yield peak
            return
        base, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        try:
            yield peak
        finally:
            peak.bytes = max(0, tracemalloc.get_traced_memory()[1] - base)

    @contextlib.contextmanager
    def _time_limit(self) -> Iterator[None]:
        """Interrupt a report that runs past the limit, where a signal can (the main thread of a process)."""
        limit = self.config.timeout_s
        if not limit or threading.current_thread() is not threading.main_thread():
            yield
            return

        def expire(signum: int, frame: Any) -> None:
            raise ReportTimeout(f"timed out after {limit:g} s")

        previous = signal.signal(signal.SIGALRM, expire)
        signal.setitimer(signal.ITIMER_REAL, limit)
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)

    def _overran(self, timings: StageTimings) -> str | None:
        """Where no signal could interrupt it (threads), a report that overran is failed afterwards."""
        limit = self.config.timeout_s
        spent = (timings.compute_ns + timings.render_ns) / 1e9
        if limit and spent > limit:
            return f"timed out: took {spent:.3f} s, limit {limit:g} s"
        return None


def failed_result(project: Project, modules: Sequence[str], error: str, fetch_ns: int = 0) -> ProjectResult:
    """A result in which every one of ``modules`` failed for ``project`` with ``error``."""
    share = fetch_ns // max(1, len(modules))
    return ProjectResult(project, tuple(ReportResult(m, None, error, StageTimings(fetch_ns=share), 0) for m in modules))


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


_worker: Worker | None = None
_worker_lock = threading.Lock()


def init_worker(config: WorkerConfig, pool_worker: bool = False, ignore_sigint: bool = False) -> None:
    """Warm this process (or interpreter) once: load plugins, compile templates, open the data source.

    A pool worker also makes ``config``'s plugin settings its default, for plugin code that asks
    for them; the parent's own settings are left alone. Process pool workers ignore Ctrl-C, so that
    the parent alone decides how a batch stops.
    """
    global _worker
    if pool_worker:
        set_plugin_settings(config.plugins)
    if ignore_sigint:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    with _worker_lock:
        if _worker is None or _worker.config != config:
            _worker = Worker(config)


def current_worker() -> Worker:
    """This process's warmed worker; :func:`init_worker` must have run."""
    if _worker is None:
        raise RuntimeError("init_worker() has not run in this process")
    return _worker


def run_chunk(projects: Sequence[Project], files: ReportFiles | None = None) -> list[ProjectResult]:
    """Fetch, make and write a chunk of projects (the unit of work sent to a pool)."""
    worker = current_worker()
    return [worker.run(project, files) for project in projects]


def make_fetched_chunk(items: Sequence[tuple[Project, int]], files: ReportFiles | None = None) -> list[ProjectResult]:
    """Make projects already fetched elsewhere (by an event loop): ``(project, fetch_ns)`` pairs."""
    worker = current_worker()
    return [worker.make(project, fetch_ns, files) for project, fetch_ns in items]
