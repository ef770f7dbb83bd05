"""ZeroSite: LH purchase-rental screening reports, generated fast and measured honestly.

The names below are imported when first used, not with the package: the ``zerosite`` command starts in
:mod:`zerosite.__main__`, which must be running (to turn a Ctrl-C into exit 130) before anything heavy is imported.
"""

from __future__ import annotations

TYPE_CHECKING = False  # as typing.TYPE_CHECKING (mypy reads it so), without importing typing (milliseconds)

__all__ = ["Project", "ReportModule", "__version__", "hookimpl"]

__version__ = "0.1.0"

if TYPE_CHECKING:
    from typing import Any

    from zerosite.hookspecs import hookimpl
    from zerosite.project import Project
    from zerosite.types import ReportModule
else:
    _LAZY = {"hookimpl": "zerosite.hookspecs", "Project": "zerosite.project", "ReportModule": "zerosite.types"}

    def __getattr__(name: str) -> Any:
        if name not in _LAZY:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*globals(), *__all__})
