"""Facts about the machine a benchmark ran on: cores, CPU quota, Python, platform."""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["Machine", "cgroup_cpu_quota", "describe_machine"]


@dataclass(frozen=True)
class Machine:
    """What bounds parallel speedup here; shown on the page and stored in the JSON."""

    cpu_count: int | None
    usable_cpus: int | None
    cpu_quota: float | None
    python: str
    implementation: str
    platform: str

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    @property
    def quota_text(self) -> str:
        return "none" if self.cpu_quota is None else f"{self.cpu_quota:g} CPUs"


def cgroup_cpu_quota(path: Path = Path("/sys/fs/cgroup/cpu.max")) -> float | None:
    """CPUs allowed by the cgroup v2 quota (``cpu.max``: ``"200000 100000"`` -> 2.0); None if unlimited/absent."""
    try:
        quota, period = [*path.read_text().split(), "100000"][:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    try:
        return int(quota) / int(period)
    except (ValueError, ZeroDivisionError):
        return None


def describe_machine() -> Machine:
    """This machine, now."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return Machine(
        cpu_count=os.cpu_count(),
        usable_cpus=usable,
        cpu_quota=cgroup_cpu_quota(),
        python=sys.version.split()[0],
        implementation=platform.python_implementation(),
        platform=platform.platform(),
    )
