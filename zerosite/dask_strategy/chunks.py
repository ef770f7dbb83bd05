"""How many projects go in one Dask task, sized from what the finished tasks cost."""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["ChunkPolicy", "ChunkSizer"]


@dataclass(frozen=True)
class ChunkPolicy:
    """The sizes a chunk may take: a task long enough that Dask's own cost per task is a small share of it,
    short enough that a lost worker costs little work again and the batch's tail stays short."""

    task_overhead_ms: float = 1.7
    """What Dask costs per task on top of the work (measured: ../shared/CONCURRENCY.md, docs/scaling.md)."""
    overhead_share: float = 0.02
    """At most this share of a task's time is Dask's overhead: 2 % gives tasks of 85 ms, 12 projects or so."""
    most_projects: int = 64

    def __post_init__(self) -> None:
        if self.task_overhead_ms <= 0 or not 0 < self.overhead_share < 1 or self.most_projects < 1:
            raise ValueError(f"not a usable chunk policy: {self}")

    @property
    def task_ms(self) -> float:
        """The shortest task that keeps the overhead within its share."""
        return self.task_overhead_ms / self.overhead_share

    def projects_for(self, project_ms: float) -> int:
        """Projects per task at ``project_ms`` of work per project."""
        if project_ms <= 0:
            return self.most_projects
        return max(1, min(self.most_projects, math.ceil(self.task_ms / project_ms)))


class ChunkSizer:
    """The chunk size for the next task: ``first`` until a task has finished, then what the policy gives for
    the mean cost per project so far (time a worker spent on its chunks over the projects in them)."""

    def __init__(self, policy: ChunkPolicy, first: int) -> None:
        self.policy = policy
        self.first = max(1, min(first, policy.most_projects))
        self.projects = 0
        self.busy_ns = 0

    def observe(self, projects: int, busy_ns: int) -> None:
        """A task of ``projects`` projects kept its worker busy ``busy_ns`` nanoseconds."""
        self.projects += projects
        self.busy_ns += busy_ns

    @property
    def project_ms(self) -> float | None:
        """The mean cost of one project so far, or ``None`` before any task finished."""
        return self.busy_ns / self.projects / 1e6 if self.projects else None

    def size(self) -> int:
        measured = self.project_ms
        return self.first if measured is None else self.policy.projects_for(measured)
