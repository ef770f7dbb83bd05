"""Reference code at the batch level: what a user could run instead of ZeroSite, measured beside it.

The hand-written contenders (:mod:`zerosite.benchmarking.contenders`: joblib, a fork pool) and the old
system's own patterns write the same report files (no index, no atomic write, no resume); the page then says
how far ahead of each our best strategy is. They use the embedded data (no data source), so they join the
``cpu`` scenario only.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import contextlib
import importlib.util
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from zerosite.benchmarking.cells import REFERENCE_NAMES, REFERENCE_SCENARIO
from zerosite.benchmarking.contenders import hand_pool, joblib_parallel, make_by_hand, module_tools, started_hand_pool
from zerosite.project import Project
from zerosite.rendering import render_report

__all__ = ["REFERENCES", "REFERENCE_SCENARIO", "Reference", "seed_process_per_task", "seed_threads"]


def seed_threads(projects: Sequence[Project], out: Path, workers: int) -> int:
    """The old system's pattern: a thread pool over the batch, and for each project a new thread pool running
    its modules "in parallel" (each waits on the modules it needs)."""
    with cf.ThreadPoolExecutor(workers) as pool:
        return sum(pool.map(lambda project: _project_in_threads(project, out), projects))


def _project_in_threads(project: Project, out: Path) -> int:
    steps, env = module_tools()
    folder = out / project.id
    os.makedirs(folder, exist_ok=True)
    futures: dict[str, cf.Future[Any]] = {}
    with cf.ThreadPoolExecutor(len(steps)) as pool:  # one thread per module: none waits for a free thread

        def make(module: Any) -> Any:
            deps = {name: futures[name].result() for name in module.requires}
            result = module.compute(project, deps)
            html = render_report(module, project, result, deps, env)
            with open(folder / f"{module.name}.html", "wb") as handle:
                handle.write(html.encode("utf-8"))
            return result

        for module in steps:  # dependency order: a module's requirements are submitted before it
            futures[module.name] = pool.submit(make, module)
        for future in futures.values():
            future.result()
    return len(steps)


def seed_process_per_task(projects: Sequence[Project], out: Path, workers: int) -> int:
    """The old system's pattern: one asyncio task per project, each starting its own process pool."""

    async def one(project: Project) -> int:
        with cf.ProcessPoolExecutor(workers) as pool:
            return await asyncio.get_running_loop().run_in_executor(pool, make_by_hand, project, out)

    async def every() -> int:
        return sum(await asyncio.gather(*(one(project) for project in projects)))

    with warnings.catch_warnings():
        # Each pool forks while the other pools' threads run: Python 3.12 and later warn that such a fork may
        # deadlock. It is the old pattern's own hazard, reproduced as it was; the warning is not ours to show.
        warnings.filterwarnings("ignore", r"This process .* is multi-threaded, use of fork\(\)", DeprecationWarning)
        return asyncio.run(every())


Make = Callable[[Sequence[Project], Path], int]
"""``make(projects, out)``: every report of ``projects`` written into ``out``; how many."""


@dataclass(frozen=True)
class Reference:
    """One reference contender: ``run(projects, out, workers)`` makes every report and says how many."""

    description: str
    run: Callable[[Sequence[Project], Path, int], int]
    projects: int | None = None
    """Projects per round when fewer than the batch's (the slowest patterns: figures are per project)."""
    needs: str | None = None
    """An optional module it imports; unavailable without it."""
    warm: Callable[[int], AbstractContextManager[Make]] | None = None
    """Starts its workers once for all of a cell's rounds, as our strategies' cells do and as a program that makes
    batch after batch keeps its pool; None: what it starts is part of each round (the old system's patterns start
    their pools per batch or per task, which is the pattern; joblib keeps its workers between calls itself)."""

    def started(self, workers: int) -> AbstractContextManager[Make]:
        """``make(projects, out)`` for a cell's rounds, on workers started once where it can keep them."""
        if self.warm is not None:
            return self.warm(workers)
        return contextlib.nullcontext(lambda projects, out: self.run(projects, out, workers))

    def unavailable_reason(self) -> str | None:
        if self.needs is not None and importlib.util.find_spec(self.needs) is None:
            return f"needs {self.needs} (pip install 'zerosite[bench]')"
        return None


REFERENCES: Mapping[str, Reference] = MappingProxyType(
    dict(
        zip(
            REFERENCE_NAMES,
            (
                Reference("joblib.Parallel over projects, files only", joblib_parallel, needs="joblib"),
                Reference(
                    "a hand-written multiprocessing.Pool (fork, chunks of 10 projects), files only",
                    hand_pool,
                    warm=started_hand_pool,
                ),
                Reference("the old system's thread pool per batch and per project", seed_threads),
                Reference(
                    "the old system's new process pool per asyncio task (4 projects a round)", seed_process_per_task, 4
                ),
            ),
            strict=True,
        )
    )
)
"""The reference contenders by strategy name, as cells show them (``joblib x2``)."""
