"""What a benchmark JSON records about what was measured, and which differences make two runs incomparable."""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "MODES",
    "NOTE_KEYS",
    "Difference",
    "compare_fingerprints",
    "cpu_model",
    "differences",
    "machine_fingerprint",
    "notes",
    "refusals",
    "workload_fingerprint",
]

MODES: tuple[str, ...] = ("time", "instructions")
"""Measurement modes: wall time, or CPU instructions counted under valgrind."""

NOTE_KEYS: frozenset[str] = frozenset({"workload.templates"})
"""Differences that are code changes (what a regression check exists to compare): notes, not refusals.

So are different versions of the same module. Every other difference, keys this version does not know
included, means another workload or another machine, and refuses the comparison.
"""


def workload_fingerprint(
    *,
    modules: Mapping[str, str],
    templates: str,
    strategies: Sequence[str],
    mode: str,
    batch_projects: int,
    latency_ms: float,
    sample_projects: int,
    scratch: bool,
    quick: bool,
) -> dict[str, object]:
    """What was measured, JSON-ready: module name -> version, templates fingerprint, strategies, mode, sizes.

    ``scratch`` says whether the batch level wrote to a RAM-backed folder; ``quick`` whether the matrix was
    the quick one.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    return {
        "modules": {name: modules[name] for name in sorted(modules)},
        "templates": templates,
        "strategies": sorted(strategies),
        "mode": mode,
        "batch_projects": batch_projects,
        "latency_ms": latency_ms,
        "sample_projects": sample_projects,
        "scratch": scratch,
        "quick": quick,
    }


def machine_fingerprint() -> dict[str, object]:
    """This machine, JSON-ready: cores (all and usable), CPU model, Python version and implementation, OS, arch."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu_count": os.cpu_count(),
        "usable_cpus": usable,
        "cpu_model": cpu_model(),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "system": platform.system(),
        "arch": platform.machine(),
    }


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's ``model name`` from ``/proc/cpuinfo``; else ``platform.processor()``; else ``"unknown"``."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and value.strip():
            return value.strip()
    return platform.processor() or "unknown"


@dataclass(frozen=True)
class Difference:
    """One difference between two fingerprints; ``refuses`` when it makes the runs incomparable."""

    key: str
    base: str
    new: str
    refuses: bool

    def __str__(self) -> str:
        return f"{self.key}: {self.base} -> {self.new}"


def compare_fingerprints(base: Mapping[str, object], new: Mapping[str, object]) -> list[Difference]:
    """Every difference between two ``{"workload": ..., "machine": ...}`` fingerprints, in key order."""
    found: list[Difference] = []
    for section in sorted({*base, *new}):
        base_part, new_part = _mapping(base.get(section)), _mapping(new.get(section))
        for key in sorted({*base_part, *new_part}):
            name = f"{section}.{key}"
            if name == "workload.modules":
                found += _module_differences(_mapping(base_part.get(key)), _mapping(new_part.get(key)))
            elif base_part.get(key) != new_part.get(key):
                found.append(
                    Difference(name, _text(base_part.get(key)), _text(new_part.get(key)), name not in NOTE_KEYS)
                )
    return found


def differences(base: Mapping[str, object], new: Mapping[str, object]) -> list[str]:
    """Every difference in words, e.g. ``"machine.cpu_count: 2 -> 16"``."""
    return [str(d) for d in compare_fingerprints(base, new)]


def refusals(base: Mapping[str, object], new: Mapping[str, object]) -> list[str]:
    """The differences that make the runs incomparable: another machine or another workload."""
    return [str(d) for d in compare_fingerprints(base, new) if d.refuses]


def notes(base: Mapping[str, object], new: Mapping[str, object]) -> list[str]:
    """The differences that are code changes (module versions, templates): worth saying, fine to compare."""
    return [str(d) for d in compare_fingerprints(base, new) if not d.refuses]


def _module_differences(base: Mapping[str, object], new: Mapping[str, object]) -> list[Difference]:
    """A different module set refuses; a different version of the same module is a note."""
    found: list[Difference] = []
    if set(base) != set(new):
        found.append(Difference("workload.modules", _names(base), _names(new), refuses=True))
    for name in sorted(set(base) & set(new)):
        if base[name] != new[name]:
            found.append(Difference(f"workload.modules.{name}", _text(base[name]), _text(new[name]), refuses=False))
    return found


def _mapping(value: object) -> Mapping[str, object]:
    return value if isinstance(value, Mapping) else {}


def _names(modules: Mapping[str, object]) -> str:
    return "{" + ", ".join(sorted(modules)) + "}"


def _text(value: object) -> str:
    if value is None:
        return "(absent)"
    if isinstance(value, list | tuple):
        return ",".join(map(str, value))
    return str(value)
