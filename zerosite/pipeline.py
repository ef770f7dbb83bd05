"""One project's modules in dependency order, each given the results of the modules it requires."""

from __future__ import annotations

import graphlib
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from zerosite.project import Project
    from zerosite.types import ReportModule

__all__ = ["compute_project", "dependency_order", "plan", "report_names"]


def dependency_order(modules: Mapping[str, ReportModule]) -> list[ReportModule]:
    """All ``modules`` in an order where each comes after what it requires (ties by name)."""
    from zerosite.plugins import PluginError

    sorter = graphlib.TopologicalSorter({name: modules[name].requires for name in sorted(modules)})
    try:
        return [modules[name] for name in sorter.static_order()]
    except graphlib.CycleError as error:
        cycle = error.args[1]
        providers = sorted({modules[name].provider or "?" for name in cycle})
        raise PluginError(
            f"modules form a dependency cycle {' -> '.join(cycle)} (plugins: {', '.join(providers)})"
        ) from None


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
    return [m.name for m in plan(modules, selected) if selected is None or m.name in selected]


def compute_project(project: Project, modules: Iterable[ReportModule]) -> dict[str, Any]:
    """Compute every module for one project, in the given (dependency) order; no rendering."""
    results: dict[str, Any] = {}
    for module in modules:
        results[module.name] = module.compute(project, {name: results[name] for name in module.requires})
    return results
