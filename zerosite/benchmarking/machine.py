"""Facts about the machine a benchmark ran on: cores, CPU quota, Python, platform."""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import asdict, dataclass

from zerosite.cores import cgroup_cpu_quota

__all__ = ["Machine", "describe_machine"]


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
