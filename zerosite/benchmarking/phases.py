"""Where a benchmark session's time goes: timed rounds against everything around them (starting workers,
calibration and warm-up, memory probes, the outputs), so a slow run says what made it slow."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

__all__ = ["PHASES", "Stopwatch"]

PHASES: tuple[str, ...] = (
    "start and stop workers",
    "calibrate and warm up",
    "timed rounds",
    "memory probes",
    "count instructions",
    "outputs",
)
"""The phases in the order a group goes through them; ``outputs`` is analysis, JSON, charts and the page."""


@dataclass
class Stopwatch:
    """Seconds spent per phase, summed over the session, and per level (what ran ``within`` it)."""

    seconds: dict[str, float] = field(default_factory=dict)
    levels: dict[str, float] = field(default_factory=dict)
    _level: str | None = field(default=None, init=False, repr=False)

    @contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - started
            self.seconds[phase] = self.seconds.get(phase, 0.0) + elapsed
            if self._level is not None:
                self.levels[self._level] = self.levels.get(self._level, 0.0) + elapsed

    @contextmanager
    def within(self, level: str) -> Iterator[None]:
        """Count the phases timed inside this block to ``level`` as well."""
        outer, self._level = self._level, level
        try:
            yield
        finally:
            self._level = outer

    def as_dict(self) -> dict[str, float]:
        """Seconds per phase, known phases first, rounded to milliseconds."""
        order = [p for p in PHASES if p in self.seconds] + sorted(set(self.seconds) - set(PHASES))
        return {phase: round(self.seconds[phase], 3) for phase in order}

    def summary(self) -> str:
        """One line: ``312.4 s: 201.3 s timed rounds (64 %), 60.2 s start workers (19 %), ...; by level: ...``."""
        total = sum(self.seconds.values())
        parts = sorted(self.seconds.items(), key=lambda item: -item[1])
        shares = ", ".join(f"{s:.1f} s {phase} ({s / total:.0%})" for phase, s in parts) if total else "nothing"
        levels = ", ".join(f"{name} {s:.1f} s" for name, s in self.levels.items())
        return f"{total:.1f} s: {shares}" + (f"; by level: {levels}" if levels else "")
