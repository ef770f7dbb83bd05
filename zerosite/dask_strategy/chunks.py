"""How many projects go in one Dask task, sized from measured costs: Dask's per task, the work's per project."""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["ChunkPolicy", "ChunkSizer"]


@dataclass(frozen=True)
class ChunkPolicy:
    """A task long enough that Dask's own cost is a small share of the cluster's time, no longer than that:
    a lost worker then costs little work again, and the batch's tail stays short.

    Dask's cost per task, ``overhead_ms``, is what one more task adds to the batch's wall time when the
    workers are kept busy (a no-op task's share of a stream of them; measured when the runner starts): it
    is paid by the scheduler and the client, one task after another, for all worker threads together.
    With ``threads`` worker threads each finishing a task every ``task_ms``, that serial cost stays within
    ``overhead_share`` of the time when ``task_ms >= threads * overhead_ms / overhead_share``.
    """

    overhead_share: float = 0.05
    most_projects: int = 500

    def __post_init__(self) -> None:
        if not 0 < self.overhead_share < 1 or self.most_projects < 1:
            raise ValueError(f"not a usable chunk policy: {self}")

    def task_ms(self, overhead_ms: float, threads: int) -> float:
        """The shortest task that keeps Dask's cost within its share on ``threads`` worker threads."""
        return max(1, threads) * overhead_ms / self.overhead_share

    def projects_for(self, project_ms: float, overhead_ms: float, threads: int) -> int:
        """Projects per task at ``project_ms`` of work per project."""
        if project_ms <= 0:
            return self.most_projects
        return max(1, min(self.most_projects, math.ceil(self.task_ms(overhead_ms, threads) / project_ms)))


class ChunkSizer:
    """The chunk size for the next task: ``first`` until a task has finished, then what the policy gives for
    the mean cost per project so far (time a worker spent on its chunks over the projects in them)."""

    def __init__(self, policy: ChunkPolicy, first: int, overhead_ms: float) -> None:
        self.policy = policy
        self.first = max(1, min(first, policy.most_projects))
        self.overhead_ms = overhead_ms
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

    def size(self, threads: int) -> int:
        """Projects for the next task, with ``threads`` worker threads in the cluster now."""
        measured = self.project_ms
        return self.first if measured is None else self.policy.projects_for(measured, self.overhead_ms, threads)
