"""Reference contenders for a batch: hand-written loops and pools next to zerosite's own strategies.

Each contender makes every report of ``projects`` into ``out`` and returns how many it made. The
hand-written ones call the modules' own ``compute`` and the same templates, and write each report to
``out/<project id>/<module>.html`` with a plain ``open``/``write`` (no temporary file, no hash, no
index); zerosite's strategies also write atomically, hash, index and can resume.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import Environment

from zerosite.engine import BatchOptions, generate
from zerosite.pipeline import plan
from zerosite.plugins import get_modules
from zerosite.project import Project
from zerosite.rendering import get_environment, render_report
from zerosite.types import PluginSettings, ReportModule

__all__ = ["CONTENDERS", "HAND_CHUNK_PROJECTS", "Contender", "contender", "make_by_hand", "module_tools"]

HAND_CHUNK_PROJECTS = 10
"""Projects per task in the hand-written ``multiprocessing.Pool``."""

_SETTINGS = PluginSettings()
"""The built-in plugins only, the same for every contender whatever the working folder holds."""

_Run = Callable[[Sequence[Project], Path, int], int]
"""``run(projects, out, workers)``: make every report into ``out``; how many were made."""


@dataclass(frozen=True)
class Contender:
    """One way to make a batch: ``run(projects, out, workers)`` returns the number of reports made."""

    name: str
    description: str
    workers: int
    run: _Run
    writes_index: bool = False


# -- hand-written: what a user would write without zerosite ------------------------------------------------


@functools.cache
def module_tools() -> tuple[tuple[ReportModule, ...], Environment]:
    """Every module in dependency order and the compiled templates, once per process."""
    steps = tuple(plan(get_modules(_SETTINGS)))
    env = get_environment(_SETTINGS)
    for module in steps:
        env.get_template(module.template)
    return steps, env


def make_by_hand(project: Project, out: Path) -> int:
    """Compute and render every module of one project in a plain loop and write each report; no error handling."""
    steps, env = module_tools()
    folder = out / project.id
    os.makedirs(folder, exist_ok=True)
    results: dict[str, Any] = {}
    for module in steps:
        deps = {name: results[name] for name in module.requires}
        results[module.name] = result = module.compute(project, deps)
        html = render_report(module, project, result, deps, env)
        with open(folder / f"{module.name}.html", "wb") as handle:
            handle.write(html.encode("utf-8"))
    return len(steps)


def _make_chunk_by_hand(chunk: Sequence[Project], out: Path) -> int:
    return sum(make_by_hand(project, out) for project in chunk)


def _chunks(items: Sequence[Project], size: int) -> Iterator[Sequence[Project]]:
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def bare_loop(projects: Sequence[Project], out: Path, workers: int = 1) -> int:
    """One core, one loop: compute, render, write; no index."""
    return _make_chunk_by_hand(projects, out)


def hand_pool(projects: Sequence[Project], out: Path, workers: int) -> int:
    """A ``multiprocessing.Pool`` (fork) of workers warm from the start, fed chunks of :data:`HAND_CHUNK_PROJECTS`."""
    with started_hand_pool(workers) as make:
        return make(projects, out)


@contextlib.contextmanager
def started_hand_pool(workers: int) -> Iterator[Callable[[Sequence[Project], Path], int]]:
    """:func:`hand_pool`'s pool, started once for as many batches as it is given (``make(projects, out)``), as a
    program that makes batch after batch keeps its pool: closed and joined at the end."""
    module_tools()  # loaded and compiled once, here: the forked workers start with them
    context = multiprocessing.get_context("fork")
    with context.Pool(workers) as pool:

        def make(projects: Sequence[Project], out: Path) -> int:
            chunk = functools.partial(_make_chunk_by_hand, out=out)
            return sum(pool.imap_unordered(chunk, _chunks(projects, HAND_CHUNK_PROJECTS)))

        yield make
        pool.close()
        pool.join()


def joblib_parallel(projects: Sequence[Project], out: Path, workers: int) -> int:
    """``joblib.Parallel(n_jobs=workers)`` over projects, its defaults (loky, automatic batching)."""
    from joblib import Parallel, delayed  # an optional extra (``zerosite[bench]``)

    made: Iterable[int] = Parallel(n_jobs=workers)(delayed(make_by_hand)(project, out) for project in projects)
    return sum(made)


# -- zerosite: files written atomically, hashed and indexed ------------------------------------------------


def _zerosite(strategy: str) -> _Run:
    def run(projects: Sequence[Project], out: Path, workers: int) -> int:
        options = BatchOptions(out=out, strategy=strategy, workers=workers, plugins=_SETTINGS)
        summary = generate(projects, options)
        return summary.written + summary.failed

    return run


_TABLE: dict[str, tuple[str, _Run, bool, bool]] = {
    # name: (description, run, uses several workers, writes the index)
    "bare": ("a bare single-core loop: compute, render, write a file (no index)", bare_loop, False, False),
    "sequential": ("zerosite sequential", _zerosite("sequential"), False, True),
    "process": ("zerosite process", _zerosite("process"), True, True),
    "async": ("zerosite async", _zerosite("async"), True, True),
    "pool": (f"multiprocessing.Pool (fork, chunks of {HAND_CHUNK_PROJECTS})", hand_pool, True, False),
    "joblib": ("joblib.Parallel over projects", joblib_parallel, True, False),
}

CONTENDERS: tuple[str, ...] = tuple(_TABLE)
"""Every contender's name, in the order tables show them."""


def contender(name: str, workers: int = 2) -> Contender:
    """The contender called ``name`` (one of :data:`CONTENDERS`), with ``workers`` where it has several."""
    description, run, parallel, indexed = _TABLE[name]
    count = workers if parallel else 1
    return Contender(name, f"{description} x{count}" if parallel else description, count, run, indexed)
