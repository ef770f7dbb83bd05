"""Settings handed down the layers: where plugins come from, how a source and a strategy run, what a worker makes."""

from __future__ import annotations

import math
import multiprocessing
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

__all__ = ["PluginSettings", "SourceSettings", "StrategyOptions", "WorkerConfig"]


@dataclass(frozen=True)
class PluginSettings:
    """Where plugins and templates come from; hashable, so each distinct setting builds one manager."""

    plugins_dir: Path | None = None
    disabled: frozenset[str] = frozenset()
    templates_dir: Path | None = None
    trace: bool = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> PluginSettings:
        """Settings from ``ZEROSITE_PLUGINS_DIR``, ``ZEROSITE_DISABLE_PLUGINS`` (comma-separated),
        ``ZEROSITE_TEMPLATES_DIR`` and ``ZEROSITE_TRACE_PLUGINS``; the plugins folder defaults to
        ``./plugins`` when it exists."""
        plugins_dir = environ.get("ZEROSITE_PLUGINS_DIR")
        templates_dir = environ.get("ZEROSITE_TEMPLATES_DIR")
        disabled = frozenset(n.strip() for n in environ.get("ZEROSITE_DISABLE_PLUGINS", "").split(",") if n.strip())
        return cls(
            plugins_dir=Path(plugins_dir) if plugins_dir else (Path("plugins") if Path("plugins").is_dir() else None),
            disabled=disabled,
            templates_dir=Path(templates_dir) if templates_dir else None,
            trace=environ.get("ZEROSITE_TRACE_PLUGINS", "") not in {"", "0"},
        )

    def resolved(self) -> PluginSettings:
        """The same settings with absolute paths, safe to send to worker processes."""
        return replace(
            self,
            plugins_dir=self.plugins_dir.resolve() if self.plugins_dir else None,
            templates_dir=self.templates_dir.resolve() if self.templates_dir else None,
        )


@dataclass(frozen=True)
class SourceSettings:
    """How a source reaches its data: base URL, timeouts, retry policy and the largest answer it reads.

    A failed attempt that may succeed later (connect error, timeout, HTTP 5xx) is retried
    ``retries`` times, sleeping ``backoff_s``, ``2 * backoff_s``, ``4 * backoff_s``, ... in between.
    ``timeout_s`` bounds each network operation (connect, each read); ``deadline_s`` bounds the whole
    fetch of one project, attempts and waits included, so a server that drips a byte at a time cannot
    hold a worker. A body longer than ``max_body_bytes`` is not read further: the fetch fails.
    """

    url: str | None = None
    timeout_s: float = 5.0
    retries: int = 3
    backoff_s: float = 0.05
    deadline_s: float = 30.0
    max_body_bytes: int = 5_000_000

    def __post_init__(self) -> None:
        for name in ("timeout_s", "deadline_s"):
            value = getattr(self, name)
            if not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        if self.max_body_bytes < 1:
            raise ValueError(f"max_body_bytes must be >= 1, got {self.max_body_bytes!r}")
        if self.retries < 0:
            raise ValueError(f"retries must be >= 0, got {self.retries!r}")
        if self.backoff_s < 0:
            raise ValueError(f"backoff_s must be >= 0, got {self.backoff_s!r}")

    def backoff_before(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (1-based): deterministic doubling."""
        return float(self.backoff_s * 2 ** (retry - 1))


@dataclass(frozen=True)
class StrategyOptions:
    """Tuning knobs: workers, projects per task (chunk), tasks in flight, process start method, and the address
    of a running cluster for a strategy that spreads work over machines (``None``: it starts one here)."""

    workers: int = 1
    chunksize: int = 10
    """Projects per task sent to a pool. A task costs the parent about 0.45 ms of CPU on a busy 2-core machine
    (queues, threads, wake-ups), as much as indexing 15 reports: 10 projects (50 reports) keep that under 10 us a
    report, and the last task of a batch short."""
    in_flight: int | None = None
    start_method: str | None = None
    scheduler: str | None = None

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        if self.chunksize < 1:
            raise ValueError(f"chunksize must be >= 1, got {self.chunksize}")
        if self.start_method not in (None, *multiprocessing.get_all_start_methods()):
            known = ", ".join(multiprocessing.get_all_start_methods())
            raise ValueError(f"start method {self.start_method!r} is not available here; choose one of {known}")

    @property
    def max_in_flight(self) -> int:
        return self.in_flight or 4 * self.workers


@dataclass(frozen=True)
class WorkerConfig:
    """A batch's plan as the engine decided it, for the workers: small, picklable, sent once per worker.

    The names are final: a worker looks them up in the plugins of ``plugins`` and decides nothing.
    """

    plugins: PluginSettings = field(default_factory=PluginSettings)
    compute: tuple[str, ...] = ()
    """Every module to compute, in dependency order (the reported ones and what they require)."""
    reports: tuple[str, ...] = ()
    """The modules that get a report, in dependency order; a subset of ``compute``."""
    source: str = "embedded"
    """The data source plugin's name."""
    source_settings: SourceSettings = field(default_factory=SourceSettings)
    trace_memory: bool = False
    timeout_s: float | None = None
    input_keys: tuple[tuple[str, bytes], ...] = ()
    """``(module, key)`` for each report: what its input hash covers besides the project (module versions,
    templates, output form, data source). A worker hashes each project it is given with these."""

    def __post_init__(self) -> None:
        extra = sorted(set(self.reports) - set(self.compute))
        if extra:
            raise ValueError(f"reports {', '.join(extra)} are not among the modules to compute")
