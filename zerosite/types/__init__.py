"""The bottom layer: every type that plugins, workers and the engine share. Imports nothing above it."""

from zerosite.types.errors import PluginError, StoreError, describe_error, error_message
from zerosite.types.interfaces import DataSource, ReportWriter, Runner, Strategy
from zerosite.types.modules import ComputeFunction, ReportModule, dependency_order
from zerosite.types.results import (
    STAGES,
    STATUSES,
    ProjectResult,
    ReportResult,
    ReportStatus,
    StageTimings,
    WrittenFile,
    index_address,
)
from zerosite.types.settings import PluginSettings, SourceSettings, StrategyOptions, WorkerConfig

__all__ = [
    "STAGES",
    "STATUSES",
    "ComputeFunction",
    "DataSource",
    "PluginError",
    "PluginSettings",
    "ProjectResult",
    "ReportModule",
    "ReportResult",
    "ReportStatus",
    "ReportWriter",
    "Runner",
    "SourceSettings",
    "StageTimings",
    "StoreError",
    "Strategy",
    "StrategyOptions",
    "WorkerConfig",
    "WrittenFile",
    "dependency_order",
    "describe_error",
    "error_message",
    "index_address",
]
