"""Report modules: the frozen dataclass a module plugin registers, and the order their requirements impose."""

from __future__ import annotations

import graphlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from zerosite.project import Project
from zerosite.types.errors import PluginError

__all__ = ["ComputeFunction", "ReportModule", "dependency_order"]

ComputeFunction = Callable[["Project", Mapping[str, Any]], Any]
"""``compute(project, deps) -> result``: ``deps`` maps each required module name to its result."""

_MODULE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class ReportModule:
    """One report module: what it needs, how it computes, which template renders it.

    The template is rendered with ``project`` (the :class:`~zerosite.project.Project`),
    ``result`` (what ``compute`` returned), ``deps`` (the results of ``requires``) and
    ``module`` (this object).
    """

    name: str
    title: str
    compute: ComputeFunction
    template: str
    requires: tuple[str, ...] = ()
    version: str = "1"
    description: str = ""
    provider: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not _MODULE_NAME.match(self.name):
            raise ValueError(f"module name {self.name!r} must be an identifier such as 'M2'")
        if not self.title.strip():
            raise ValueError(f"module {self.name}: title must not be empty")
        if not callable(self.compute):
            raise TypeError(f"module {self.name}: compute must be callable")
        if not self.template:
            raise ValueError(f"module {self.name}: template must be named")
        requires: Any = self.requires  # checked at run time: a plugin may pass anything
        if isinstance(requires, str) or not all(isinstance(r, str) for r in requires):
            raise TypeError(f"module {self.name}: requires must be a tuple of module names")
        object.__setattr__(self, "requires", tuple(self.requires))
        if self.name in self.requires:
            raise ValueError(f"module {self.name} requires itself")


def dependency_order(modules: Mapping[str, ReportModule]) -> list[ReportModule]:
    """All ``modules`` in an order where each comes after what it requires (ties by name).

    :raises PluginError: the modules require each other in a circle (naming modules and plugins).
    """
    sorter = graphlib.TopologicalSorter({name: modules[name].requires for name in sorted(modules)})
    try:
        return [modules[name] for name in sorter.static_order()]
    except graphlib.CycleError as error:
        cycle = error.args[1]
        providers = sorted({modules[name].provider or "?" for name in cycle})
        raise PluginError(
            f"modules form a dependency cycle {' -> '.join(cycle)} (plugins: {', '.join(providers)})"
        ) from None
