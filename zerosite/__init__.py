"""ZeroSite: LH purchase-rental screening reports, generated fast and measured honestly."""

from zerosite.hookspecs import hookimpl
from zerosite.project import Project
from zerosite.types import ReportModule

__all__ = ["Project", "ReportModule", "__version__", "hookimpl"]

__version__ = "0.1.0"
