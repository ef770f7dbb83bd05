"""The typed objects that plugins hand to ZeroSite: report modules, strategies, data sources."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from zerosite.project import Project

__all__ = ["ComputeFunction", "ReportModule"]

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
        if isinstance(self.requires, str) or not all(isinstance(r, str) for r in self.requires):
            raise TypeError(f"module {self.name}: requires must be a tuple of module names")
        object.__setattr__(self, "requires", tuple(self.requires))
        if self.name in self.requires:
            raise ValueError(f"module {self.name} requires itself")
