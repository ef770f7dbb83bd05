"""One project's modules: which to compute for a selection, and the one loop that computes and renders them."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from jinja2 import Environment

from zerosite.project import Project
from zerosite.rendering import render_report
from zerosite.types import ReportModule, dependency_order

__all__ = ["ModuleOutcome", "PeakMemory", "compute_and_render", "compute_project", "plan", "report_names"]


def plan(modules: Mapping[str, ReportModule], selected: Iterable[str] | None = None) -> list[ReportModule]:
    """The modules to compute for ``selected`` (default: all), their requirements included, in order."""
    wanted = set(modules) if selected is None else set(selected)
    unknown = sorted(wanted - set(modules))
    if unknown:
        raise KeyError(f"unknown module(s) {', '.join(unknown)}; known: {', '.join(modules)}")
    needed: set[str] = set()
    stack = list(wanted)
    while stack:
        name = stack.pop()
        if name not in needed:
            needed.add(name)
            stack.extend(modules[name].requires)
    return [m for m in dependency_order(modules) if m.name in needed]


def report_names(modules: Mapping[str, ReportModule], selected: Iterable[str] | None = None) -> list[str]:
    """The modules that get a report for ``selected`` (default: all), in dependency order; what they
    require is computed but not reported."""
    chosen = None if selected is None else set(selected)
    return [m.name for m in plan(modules, chosen) if chosen is None or m.name in chosen]


@dataclass
class PeakMemory:
    """Peak bytes allocated while one module was made; filled in by a ``measure`` context."""

    bytes: int = 0


@dataclass(frozen=True, slots=True)
class ModuleOutcome:
    """One module made for one project: its result and, if reported, its HTML; or why it failed."""

    module: ReportModule
    reported: bool
    result: Any = None
    html: str | None = None
    error: str | None = None
    compute_ns: int = 0
    render_ns: int = 0
    peak_memory_bytes: int = 0
    exception: BaseException | None = None


@contextlib.contextmanager
def _no_measure() -> Iterator[PeakMemory]:
    yield PeakMemory()


def compute_and_render(
    project: Project,
    steps: Sequence[ReportModule],
    reports: Collection[str],
    env: Environment | None = None,
    measure: Callable[[], AbstractContextManager[PeakMemory]] = _no_measure,
    limit: Callable[[], AbstractContextManager[object]] = contextlib.nullcontext,
) -> Iterator[ModuleOutcome]:
    """Compute ``steps`` in their (dependency) order and render those named in ``reports``, one at a time.

    A module that raises yields its error and every module that requires it fails too; the others
    still complete. ``measure`` wraps each module (peak memory), ``limit`` its compute and render
    (a time limit may raise inside). The worker, the tests and the benchmark's bare loop all use this.
    """
    results: dict[str, Any] = {}
    failed: dict[str, str] = {}  # module -> why it could not be computed
    for module in steps:
        wanted = module.name in reports
        missing = [name for name in module.requires if name in failed]
        if missing:
            failed[module.name] = f"not made: requires {', '.join(missing)}, which failed ({failed[missing[0]]})"
            yield ModuleOutcome(module, wanted, error=failed[module.name])
            continue
        html, error_text, cause = None, None, None
        compute_ns = render_ns = 0
        with measure() as peak:
            started = time.monotonic_ns()
            try:
                with limit():
                    deps = {name: results[name] for name in module.requires}
                    results[module.name] = module.compute(project, deps)
                    compute_ns = time.monotonic_ns() - started
                    if wanted:
                        html = render_report(module, project, results[module.name], deps, env)
                        render_ns = time.monotonic_ns() - started - compute_ns
            except Exception as error:
                stage = "render" if module.name in results else "compute"
                error_text = f"{module.name} {stage} failed for project {project.id!r}: {_describe(error)}"
                cause = error
                if stage == "compute":
                    failed[module.name] = error_text
        yield ModuleOutcome(
            module, wanted, results.get(module.name), html, error_text, compute_ns, render_ns, peak.bytes, cause
        )


def compute_project(project: Project, modules: Sequence[ReportModule]) -> dict[str, Any]:
    """Compute every module for one project, in the given (dependency) order; no rendering.

    :raises Exception: the first module's own error.
    """
    results: dict[str, Any] = {}
    for outcome in compute_and_render(project, modules, reports=()):
        if outcome.exception is not None:
            raise outcome.exception
        results[outcome.module.name] = outcome.result
    return results


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"
