"""The bottom layer: every type that plugins, workers and the engine share. Imports nothing above it."""

from zerosite.types.caches import (
    DEFAULT_CACHE,
    CacheBackend,
    CacheContext,
    CacheError,
    CacheStats,
    CacheUnavailable,
    ReportCache,
)
from zerosite.types.errors import (
    PluginError,
    StartError,
    StoreError,
    StoreUnusable,
    WorkersLost,
    describe_error,
    error_message,
    raised_at,
    show_traceback,
)
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
    "DEFAULT_CACHE",
    "STAGES",
    "STATUSES",
    "CacheBackend",
    "CacheContext",
    "CacheError",
    "CacheStats",
    "CacheUnavailable",
    "ComputeFunction",
    "DataSource",
    "PluginError",
    "PluginSettings",
    "ProjectResult",
    "ReportCache",
    "ReportModule",
    "ReportResult",
    "ReportStatus",
    "ReportWriter",
    "Runner",
    "SourceSettings",
    "StageTimings",
    "StartError",
    "StoreError",
    "StoreUnusable",
    "Strategy",
    "StrategyOptions",
    "WorkerConfig",
    "WorkersLost",
    "WrittenFile",
    "dependency_order",
    "describe_error",
    "error_message",
    "index_address",
    "raised_at",
    "show_traceback",
]
