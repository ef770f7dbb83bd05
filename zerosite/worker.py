"""What runs on a worker: fetch, compute and render one project's reports, timed, with failures contained.

The public API a strategy is written against: :func:`make_worker` (in the process or thread that does
the work; :func:`warm_process` in a pool worker process), then :meth:`Worker.run` per project.
"""

from __future__ import annotations

import contextlib
import hashlib
import signal
import sys
import threading
import time
import tracemalloc
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, TypeVar

from jinja2 import Environment

from zerosite.making import making
from zerosite.pipeline import (
    GivenUp,
    InterruptWatch,
    ModuleOutcome,
    PeakMemory,
    compute_and_render,
    plugin_raised,
    watch_interrupts,
)
from zerosite.plugins import PluginWarning, get_data_sources, get_modules, set_plugin_settings
from zerosite.project import Project
from zerosite.rendering import get_environment
from zerosite.sources import CheckedSource
from zerosite.types import (
    DataSource,
    PluginError,
    ProjectResult,
    ReportModule,
    ReportResult,
    ReportWriter,
    StageTimings,
    StoreError,
    WorkerConfig,
    error_message,
)

__all__ = [
    "Progress",
    "ProjectResult",
    "ReportResult",
    "ReportTimeout",
    "StageTimings",
    "Worker",
    "WorkerConfig",
    "input_hashes",
    "make_worker",
    "open_source",
    "warm_process",
]

T = TypeVar("T")

Progress = Callable[[int], None]
"""Told the index (in ``WorkerConfig.compute``) of each module a worker starts, and -1 when it is done
with it: how a runner watches from outside for a report past its time limit."""


class ReportTimeout(Exception):
    """A report ran past the per-report time limit."""


def make_worker(config: WorkerConfig) -> Worker:
    """A ready worker for ``config`` in this process: its modules and templates loaded, its source open.

    Nothing is decided here: ``config`` names the modules and the source, and they are looked up in
    this process's plugins (loaded once per process and cached).
    """
    modules = _look_up(get_modules(config.plugins), config.compute, "module")
    return Worker(config, modules, open_source(config), get_environment(config.plugins))


def warm_process(config: WorkerConfig) -> Worker:
    """:func:`make_worker` for a pool worker process: ``config``'s plugin settings also become this
    process's default, for plugin code that asks for them (never call it in the parent). The plugins' warnings
    (a plugin file skipped) are the parent's to give, once: a worker that loads the plugins again (``spawn``,
    ``forkserver``, a Dask worker) would repeat them."""
    set_plugin_settings(config.plugins)
    sys.stdout = sys.stderr  # a worker's output is its results: what plugin code prints goes to standard error
    skipped: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("always", PluginWarning)
        shown = warnings.showwarning

        def keep_plugin_warnings(message: Warning | str, category: type[Warning], *rest: Any, **kw: Any) -> None:
            if issubclass(category, PluginWarning):
                skipped.append(str(message).removeprefix("zerosite: "))
            else:
                shown(message, category, *rest, **kw)

        warnings.showwarning = keep_plugin_warnings
        try:
            return make_worker(config)
        except PluginError as error:
            if not skipped:
                raise
            # A plugin that loaded in the parent and not here (an import that needs the parent's state): say why.
            raise PluginError(f"{error}: here it {'; '.join(skipped)}") from error


def input_hashes(project: Project, keys: Sequence[tuple[str, bytes]]) -> dict[str, str]:
    """The content hash of each report of ``project`` (``{module: hex}``, one per key of
    ``WorkerConfig.input_keys``): the project's every field with what the report's key covers."""
    # The frozen dataclass's repr covers every field, deterministically, at a tenth of the cost of JSON.
    digest = hashlib.sha256(repr(project).encode()).digest()
    return {name: hashlib.sha256(digest + key).hexdigest() for name, key in keys}


def open_source(config: WorkerConfig) -> DataSource:
    """The data source ``config`` names, opened with its settings in this process, every answer it gives checked
    (:class:`~zerosite.sources.CheckedSource`): a wrong one fails its project, not the batch."""
    (source,) = _look_up(get_data_sources(config.plugins), (config.source,), "data source")
    checked = CheckedSource(source)
    checked.open(config.source_settings)
    return checked


def _look_up(table: Mapping[str, T], names: Sequence[str], what: str) -> list[T]:
    missing = [name for name in names if name not in table]
    if missing:
        known = ", ".join(table) or "none"
        raise PluginError(f"no {what} named {', '.join(map(repr, missing))} is registered here (known: {known})")
    return [table[name] for name in names]


class Worker:
    """Ready-to-use state for one process or thread pool: modules planned, templates compiled, source open."""

    def __init__(
        self, config: WorkerConfig, steps: Sequence[ReportModule], source: DataSource, env: Environment
    ) -> None:
        self.config = config
        self.steps = tuple(steps)
        self.reports = config.reports
        self.selected = frozenset(config.reports)
        self.source = source
        self.env = env
        for module in self.steps:
            env.get_template(module.template)  # compile once, here, not in the first report
        if config.trace_memory and not tracemalloc.is_tracing():
            tracemalloc.start()
        elif not config.trace_memory and tracemalloc.is_tracing():
            tracemalloc.stop()  # it slows every allocation several times over

    def run(
        self,
        project: Project,
        files: ReportWriter | None = None,
        failed: Mapping[str, GivenUp] | None = None,
        progress: Progress | None = None,
    ) -> ProjectResult:
        """Fetch, then make every report of one project; a fetch failure fails each of its reports.

        Each report carries the input hash of ``project`` as given (before its source filled it in), the
        one the engine compares when it resumes. ``failed`` and ``progress`` as for :meth:`make`.
        """
        hashes = input_hashes(project, self.config.input_keys)
        started = time.monotonic_ns()
        with (
            making(project.id, self.config.compute),  # in the process that noted a batch: noted while made
            watch_interrupts() as interrupts,  # one watch for the project: the fetch, then each module
        ):
            try:
                fetched = self.source.fetch(project)
            except BaseException as error:
                if not plugin_raised(error, interrupts):
                    raise
                return self.failed(project, f"fetch failed: {error_message(error)}", time.monotonic_ns() - started)
            return self.make(fetched, time.monotonic_ns() - started, files, failed, progress, hashes, interrupts)

    def failed(self, project: Project, error: str, fetch_ns: int = 0) -> ProjectResult:
        """Every report of ``project`` failed with ``error``."""
        return ProjectResult.failed(project, self.reports, error, fetch_ns)

    def make(
        self,
        project: Project,
        fetch_ns: int = 0,
        files: ReportWriter | None = None,
        failed: Mapping[str, GivenUp] | None = None,
        progress: Progress | None = None,
        hashes: Mapping[str, str] | None = None,
        interrupts: InterruptWatch | None = None,
    ) -> ProjectResult:
        """Compute every planned module in order, render the reported ones and, given ``files``, write them.

        A module that raises fails its report and every report that depends on it; the
        others still complete. The project's fetch time is shared equally by its reports.
        ``failed`` names modules already known to fail for this project, with why and their time (not run);
        ``progress`` is told each module as it starts and ends; ``hashes`` are the reports' input hashes;
        ``interrupts``, the caller's watch over the project (else each module is watched on its own).
        """
        fetch_share = fetch_ns // max(1, len(self.selected))
        reports: list[ReportResult] = []
        # Neither a memory measure nor a time limit around each module unless asked for: with a Ctrl-C watch per
        # module, these contexts cost a report 0.7 % of its instructions (docs/performance.md).
        measure = self._measure if self.config.trace_memory else None
        limit: Callable[[ReportModule], AbstractContextManager[object]] | None = (
            self._time_limit if self.config.timeout_s else None
        )
        if progress is not None:  # a runner that follows each module (threads; a pool's heartbeat): told, and limited
            limit = self._watched(progress)
        outcomes = compute_and_render(project, self.steps, self.selected, self.env, measure, limit, failed, interrupts)
        for outcome in outcomes:
            if not outcome.reported:
                continue
            error = outcome.error or self._overran(outcome.compute_ns + outcome.render_ns)
            input_hash = "" if hashes is None else hashes.get(outcome.module.name, "")
            reports.append(_deliver(project.id, outcome, fetch_share, error, input_hash, files))
        return ProjectResult.of(project, reports)

    def _watched(self, progress: Progress) -> Callable[[ReportModule], AbstractContextManager[None]]:
        index = {module.name: i for i, module in enumerate(self.steps)}

        @contextlib.contextmanager
        def limit(module: ReportModule) -> Iterator[None]:
            progress(index[module.name])
            try:
                with self._time_limit(module):
                    yield
            finally:
                progress(-1)

        return limit

    @contextlib.contextmanager
    def _measure(self) -> Iterator[PeakMemory]:
        """Peak bytes allocated inside the block (tracemalloc); process-wide, so approximate under threads."""
        peak = PeakMemory()
        base, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        try:
            yield peak
        finally:
            peak.bytes = max(0, tracemalloc.get_traced_memory()[1] - base)

    @contextlib.contextmanager
    def _time_limit(self, module: ReportModule | None = None) -> Iterator[None]:
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

    def _overran(self, spent_ns: int) -> str | None:
        """Where no signal could interrupt it (threads), a report that overran (computing and rendering took
        ``spent_ns``) is failed afterwards."""
        limit = self.config.timeout_s
        spent = spent_ns / 1e9
        if limit and spent > limit:
            return f"timed out: took {spent:.3f} s, limit {limit:g} s"
        return None


def _deliver(
    project_id: str,
    outcome: ModuleOutcome,
    fetch_ns: int,
    error: str | None,
    input_hash: str,
    files: ReportWriter | None,
) -> ReportResult:
    """The report of ``outcome`` as the worker hands it back: written to ``files`` if given, else as HTML; or its
    error. Its stage times: ``fetch_ns`` (its share of the project's fetch), the outcome's, and the write's."""
    module, html, peak = outcome.module.name, outcome.html, outcome.peak_memory_bytes
    write_ns = 0
    written = None
    if error is None and html is not None and files is not None:
        try:
            written = files.write(project_id, module, html)
        except StoreError as failure:
            error = error_message(failure)
        else:
            write_ns = written.write_ns
    timings = StageTimings(fetch_ns, outcome.compute_ns, outcome.render_ns, write_ns)
    if error is not None or html is None:
        return ReportResult(module, None, error, timings, peak, None, input_hash)
    if written is None:  # no files to write to: the HTML goes back
        return ReportResult(module, html, None, timings, peak, None, input_hash)
    return ReportResult(module, None, None, timings, peak, written, input_hash)
