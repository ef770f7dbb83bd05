"""What a worker hands back: stage timings, each report's outcome, one project's reports."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from zerosite.pickled import PickledByFields
from zerosite.project import Project

__all__ = [
    "STAGES",
    "STATUSES",
    "ProjectResult",
    "ReportResult",
    "ReportStatus",
    "StageTimings",
    "WrittenFile",
    "index_address",
]

STAGES: tuple[str, ...] = ("fetch", "compute", "render", "write")
"""The stages of making one report, in order; ``StageTimings`` has a ``<stage>_ns`` field for each."""

ReportStatus = Literal["written", "failed", "skipped"]
"""What became of one report in a batch."""
STATUSES: tuple[ReportStatus, ...] = ("written", "failed", "skipped")


@dataclass(frozen=True, slots=True)
class StageTimings(PickledByFields):
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

    def by_stage(self) -> dict[str, int]:
        """``{"fetch": ns, "compute": ns, ...}`` in :data:`STAGES` order."""
        return {stage: getattr(self, f"{stage}_ns") for stage in STAGES}


@dataclass(frozen=True, slots=True)
class WrittenFile(PickledByFields):
    """One report file on disk: where, how big, its SHA-256 (of the bytes on disk) and the time to write it."""

    location: str
    """The file's absolute path, as text (a ``Path`` costs more to send between processes than the rest)."""
    size_bytes: int
    sha256: str
    write_ns: int

    @property
    def path(self) -> Path:
        return Path(self.location)


@dataclass(frozen=True, slots=True)
class ReportResult(PickledByFields):
    """One report as a worker made it: the file it wrote (or, when asked not to write, the HTML),
    or the error that stopped it."""

    module: str
    html: str | None
    error: str | None
    timings: StageTimings
    peak_memory_bytes: int
    written: WrittenFile | None = None
    input_hash: str = ""
    """The content hash of what the report was made from (for resume), where the worker computed it."""

    @property
    def ok(self) -> bool:
        return self.error is None


def index_address(project: Project) -> str:
    """The text the report index searches for a project: its road address, then its lot-number address."""
    return f"{project.road_address} ({project.jibun_address})"


@dataclass(frozen=True, slots=True)
class ProjectResult(PickledByFields):
    """The reports of one project, in dependency order, with what the index needs of the project (not the
    project itself: a worker hands back only this)."""

    project_id: str
    address: str
    """:func:`index_address` of the project as the worker made it (after its data source filled it in)."""
    reports: tuple[ReportResult, ...]

    @classmethod
    def of(cls, project: Project, reports: Sequence[ReportResult]) -> ProjectResult:
        """The result of ``project`` (as fetched) with ``reports``."""
        return cls(project.id, index_address(project), tuple(reports))

    @classmethod
    def failed(cls, project: Project, modules: Sequence[str], error: str, fetch_ns: int = 0) -> ProjectResult:
        """Every one of ``modules`` failed for ``project`` with ``error``; the fetch time is shared equally."""
        share = fetch_ns // max(1, len(modules))
        return cls.of(project, [ReportResult(m, None, error, StageTimings(fetch_ns=share), 0) for m in modules])
