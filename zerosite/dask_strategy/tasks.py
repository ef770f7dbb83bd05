"""What runs on a Dask worker: the plugin that warms it once per batch, and the task that makes a chunk."""

from __future__ import annotations

import os
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

__all__ = ["ChunkResult", "WarmWorker", "make_chunk", "sees_folder"]

COMPRESSION_LEVEL = 1
"""zlib level for HTML handed back: level 1 already shrinks a report about fivefold, at a fraction of level 6's CPU."""


class WarmWorker(WorkerPlugin):
    """A Dask worker plugin: on each worker (and each that joins later) it loads the plugins, compiles the
    templates and opens the data source once (:func:`zerosite.worker.warm_process`); tasks find it by name."""

    def __init__(self, config: WorkerConfig) -> None:
        self.config = config
        self.worker: Worker | None = None

    def setup(self, worker: DaskWorker) -> None:
        self.worker = warm_process(self.config)

    def teardown(self, worker: DaskWorker) -> None:
        if self.worker is not None:
            self.worker.source.close()
            self.worker = None


@dataclass(frozen=True, slots=True)
class ChunkResult:
    """A chunk's results as a task hands them back: with ``packed`` (hand-back), each report's HTML travels
    zlib-compressed there, one tuple per project in report order, not in the results."""

    results: tuple[ProjectResult, ...]
    packed: tuple[tuple[bytes | None, ...], ...] | None
    busy_ns: int
    """How long the worker spent on the chunk."""

    def unpacked(self) -> list[ProjectResult]:
        """The results with the HTML handed back put in place."""
        if self.packed is None:
            return list(self.results)
        return [
            replace(result, reports=tuple(map(_with_html, result.reports, htmls)))
            for result, htmls in zip(self.results, self.packed, strict=True)
        ]


def make_chunk(plugin: str, projects: Sequence[Project], files: ReportWriter | None) -> ChunkResult:
    """The task: make ``projects`` with the worker that plugin ``plugin`` warmed here; given ``files``, write
    each report there, else hand its HTML back compressed. A project that raises fails alone, named."""
    started = time.perf_counter_ns()
    warm = get_worker().plugins[plugin]
    assert isinstance(warm, WarmWorker) and warm.worker is not None
    results = tuple(_make_one(warm.worker, project, files) for project in projects)
    packed = None if files is not None else tuple(tuple(map(_pack, r.reports)) for r in results)
    if packed is not None:
        results = tuple(replace(r, reports=tuple(replace(x, html=None) for x in r.reports)) for r in results)
    return ChunkResult(results, packed, time.perf_counter_ns() - started)


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
