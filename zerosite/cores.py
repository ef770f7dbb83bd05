"""What this machine lets a batch use: the cores this process may run on, and the most workers worth starting."""

from __future__ import annotations

import math
import os
from pathlib import Path

__all__ = ["MAX_WORKERS_PER_CPU", "capped_workers", "cgroup_cpu_quota", "most_workers", "usable_cores"]

MAX_WORKERS_PER_CPU = 4
"""Workers (threads or processes) are capped at this many per usable core, for ``generate --workers`` and the
service alike: more only adds memory and switching."""


def most_workers() -> int:
    """The cap on workers here: ``MAX_WORKERS_PER_CPU`` per usable core."""
    return MAX_WORKERS_PER_CPU * usable_cores()


def capped_workers(workers: int) -> tuple[int, str | None]:
    """``workers``, or the cap when it is more, with why in words (``None`` when not capped)."""
    most = most_workers()
    if workers <= most:
        return workers, None
    why = (
        f"{workers} is more than this machine can use; using {most} "
        f"({MAX_WORKERS_PER_CPU} per usable CPU, {usable_cores()} here)"
    )
    return most, why


def usable_cores(cgroup_root: Path = Path("/sys/fs/cgroup")) -> int:
    """The cores this process may use: its CPU affinity, lowered to a cgroup CPU quota (rounded up)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    quota = cgroup_cpu_quota(cgroup_root)
    return max(1, min(cores, math.ceil(quota))) if quota is not None else cores


def cgroup_cpu_quota(
    root: Path = Path("/sys/fs/cgroup"), own_cgroups: Path = Path("/proc/self/cgroup")
) -> float | None:
    """CPUs allowed by the cgroup quota of this process's own cgroup (v2 ``cpu.max``, v1 ``cpu.cfs_quota_us``),
    else of the hierarchy's root, or None for no quota. The one place a quota is read: the worker cap, ``auto``,
    ``zerosite system`` and the benchmark's record of the machine all use it."""
    own_v2, own_v1 = "", ""
    try:
        for line in own_cgroups.read_text().splitlines():
            number, controllers, path = line.split(":", 2)
            if number == "0" and not controllers:
                own_v2 = path.lstrip("/")
            elif "cpu" in controllers.split(","):
                own_v1 = path.lstrip("/")
    except (OSError, ValueError):
        pass
    for folder in dict.fromkeys((root / own_v2, root)):
        try:
            quota, period = (folder / "cpu.max").read_text().split()[:2]
        except (OSError, ValueError):
            continue
        return None if quota == "max" else int(quota) / int(period)
    for folder in dict.fromkeys((root / "cpu" / own_v1, root / "cpu", root / "cpu,cpuacct")):
        try:
            quota_us = int((folder / "cpu.cfs_quota_us").read_text())
            period_us = int((folder / "cpu.cfs_period_us").read_text())
        except (OSError, ValueError):
            continue
        return None if quota_us <= 0 or period_us <= 0 else quota_us / period_us
    return None
