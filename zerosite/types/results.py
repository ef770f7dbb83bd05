"""What a worker hands back: stage timings, each report's outcome, one project's reports."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from zerosite.project import Project

__all__ = ["STAGES", "STATUSES", "ProjectResult", "ReportResult", "ReportStatus", "StageTimings", "WrittenFile"]

STAGES: tuple[str, ...] = ("fetch", "compute", "render", "write")
"""The stages of making one report, in order; ``StageTimings`` has a ``<stage>_ns`` field for each."""

ReportStatus = Literal["written", "failed", "skipped"]
"""What became of one report in a batch."""
STATUSES: tuple[ReportStatus, ...] = ("written", "failed", "skipped")


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

    def by_stage(self) -> dict[str, int]:
        """``{"fetch": ns, "compute": ns, ...}`` in :data:`STAGES` order."""
        return {stage: getattr(self, f"{stage}_ns") for stage in STAGES}


@dataclass(frozen=True, slots=True)
class WrittenFile:
    """One report file on disk: where, how big, its SHA-256 (of the bytes on disk) and the time to write it."""

    path: Path
    size_bytes: int
    sha256: str
    write_ns: int


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

    @classmethod
    def failed(cls, project: Project, modules: Sequence[str], error: str, fetch_ns: int = 0) -> ProjectResult:
        """Every one of ``modules`` failed for ``project`` with ``error``; the fetch time is shared equally."""
        share = fetch_ns // max(1, len(modules))
        return cls(project, tuple(ReportResult(m, None, error, StageTimings(fetch_ns=share), 0) for m in modules))
