"""What runs on a Dask worker: the plugin that warms it once per batch, and the task that makes a chunk."""

from __future__ import annotations

import os
import signal
import threading
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from distributed import Worker as DaskWorker
from distributed import WorkerPlugin, get_worker

from zerosite.project import Project
from zerosite.types import ProjectResult, ReportResult, ReportWriter, WorkerConfig, describe_error
from zerosite.worker import Worker, warm_process

__all__ = ["ChunkResult", "Made", "WarmWorker", "make_chunk", "sees_folder"]

COMPRESSION_LEVEL = 1
"""zlib level for HTML handed back: level 1 shrinks a report about threefold (21.6 KB to 7.0 KB) at the least CPU."""


class WarmWorker(WorkerPlugin):
    """A Dask worker plugin: on each worker (and each that joins later) it loads the plugins, compiles the
    templates and opens the data source once (:func:`zerosite.worker.warm_process`); tasks find it by name.

    With ``ignore_sigint`` (the workers of a local cluster, started by this batch) the worker ignores Ctrl-C, as
    pool workers do: the parent alone decides how a batch stops, and closes the cluster.
    """

    def __init__(self, config: WorkerConfig, ignore_sigint: bool = False) -> None:
        self.config = config
        self.ignore_sigint = ignore_sigint
        self.worker: Worker | None = None

    def setup(self, worker: DaskWorker) -> None:
        if self.ignore_sigint and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        self.worker = warm_process(self.config)

    def teardown(self, worker: DaskWorker) -> None:
        if self.worker is not None:
            self.worker.source.close()
            self.worker = None


@dataclass(frozen=True, slots=True)
class Made:
    """One project as a task hands it back: its result (the project's id and index address, not the project)."""

    made: ProjectResult
    """Its reports without their HTML when it is ``packed``."""
    packed: tuple[bytes | None, ...] | None
    """Hand-back: each report's HTML, zlib-compressed (smaller on the wire), in report order."""

    def result(self) -> ProjectResult:
        """The project's result on the client."""
        if self.packed is None:
            return self.made
        return replace(self.made, reports=tuple(map(_with_html, self.made.reports, self.packed)))


@dataclass(frozen=True, slots=True)
class ChunkResult:
    """A chunk's projects as a task hands them back, in the order sent, and how long the worker spent on them."""

    made: tuple[Made, ...]
    busy_ns: int

    def results(self) -> list[ProjectResult]:
        return [made.result() for made in self.made]


def make_chunk(plugin: str, projects: Sequence[Project], files: ReportWriter | None) -> ChunkResult:
    """The task: make ``projects`` with the worker that plugin ``plugin`` warmed here; given ``files``, write
    each report there, else hand its HTML back compressed. A project that raises fails alone, named."""
    started = time.perf_counter_ns()
    warm = get_worker().plugins[plugin]
    assert isinstance(warm, WarmWorker) and warm.worker is not None
    made = tuple(_handed_back(_make_one(warm.worker, project, files)) for project in projects)
    return ChunkResult(made, time.perf_counter_ns() - started)


def _handed_back(result: ProjectResult) -> Made:
    if all(report.html is None for report in result.reports):
        return Made(result, None)
    packed = tuple(map(_pack, result.reports))
    return Made(replace(result, reports=tuple(replace(report, html=None) for report in result.reports)), packed)


def _make_one(worker: Worker, project: Project, files: ReportWriter | None) -> ProjectResult:
    try:
        return worker.run(project, files)
    except BaseException as error:  # escaped the worker's containment; no signal reaches a Dask task's thread
        return worker.failed(project, f"making project {project.id!r} failed: {describe_error(error)}")


def _pack(report: ReportResult) -> bytes | None:
    if report.html is None:
        return None
    return zlib.compress(report.html.encode("utf-8", "surrogatepass"), COMPRESSION_LEVEL)


def _with_html(report: ReportResult, packed: bytes | None) -> ReportResult:
    if packed is None:
        return report
    return replace(report, html=zlib.decompress(packed).decode("utf-8", "surrogatepass"))


def sees_folder(folder: Path, probe: str) -> bool:
    """On a worker: whether it sees ``folder`` as the client does (the file ``probe`` the client made is there)."""
    return os.path.isfile(folder / probe)
