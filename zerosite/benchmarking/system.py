"""What makes this machine noisy for benchmarking, with advice: the checks behind ``zerosite system``.

Modelled on ``pyperf system show``: every check names what it read, the value found, a state (ok,
warning, unknown) and what to do about it. Every reader takes its procfs / sysfs root as a parameter,
so tests feed it fake files.
"""

from __future__ import annotations

import os
import platform
import sys
import sysconfig
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import psutil

from zerosite.benchmarking.load import StatSnapshot, read_stat
from zerosite.cores import cgroup_cpu_quota

__all__ = [
    "BusyProcess",
    "Check",
    "CheckState",
    "SystemPaths",
    "SystemReport",
    "SystemThresholds",
    "busy_processes",
    "check_system",
    "format_report",
]

CheckState = Literal["ok", "warning", "unknown"]


@dataclass(frozen=True)
class Check:
    """One thing looked at: its name, the value found, whether it hurts benchmarks, and what to do."""

    name: str
    value: str
    state: CheckState
    advice: str = ""


@dataclass(frozen=True)
class SystemPaths:
    """Where the kernel's files are; tests point these at folders of fake files."""

    proc: Path = Path("/proc")
    sys: Path = Path("/sys")

    @property
    def cpu(self) -> Path:
        return self.sys / "devices/system/cpu"


@dataclass(frozen=True)
class SystemThresholds:
    """When a reading becomes a warning."""

    load_per_cpu: float = 0.25
    steal_share: float = 0.02
    busy_process_share_of_core: float = 0.10
    memory_available_bytes: int = 1 << 30
    sample_s: float = 0.5
    processes_shown: int = 5


@dataclass(frozen=True)
class BusyProcess:
    """Another process that used CPU during the sample."""

    pid: int
    name: str
    cpu_percent: float


@dataclass(frozen=True)
class SystemReport:
    """Every check, and the one-line verdict."""

    checks: tuple[Check, ...]
    warnings: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "warnings", tuple(c.name for c in self.checks if c.state == "warning"))

    @property
    def verdict(self) -> str:
        if self.warnings:
            return f"this machine is noisy for benchmarking: {', '.join(self.warnings)}"
        unknown = sum(c.state == "unknown" for c in self.checks)
        return "nothing obvious" + (f" ({unknown} check(s) could not be read)" if unknown else "")

    def as_dict(self) -> dict[str, object]:
        return {"checks": [asdict(c) for c in self.checks], "warnings": list(self.warnings), "verdict": self.verdict}


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def usable_cpus() -> int | None:
    """CPUs this process may run on (its affinity mask), where the OS says."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None


def check_cores(cpu_count: int | None, usable: int | None) -> Check:
    value = f"{cpu_count} logical CPUs, {usable if usable is not None else '?'} usable (affinity)"
    if cpu_count is None:
        return Check("CPUs", "unknown", "unknown")
    if (usable or cpu_count) < 2:
        return Check("CPUs", value, "warning", "one usable CPU: parallel strategies cannot be faster than sequential")
    return Check("CPUs", value, "ok", "wall-time speedup is bounded by the usable CPUs, not by --workers")


def check_quota(quota: float | None, usable: int | None) -> Check:
    if quota is None:
        return Check("cgroup CPU quota", "none (cpu.max or cpu.cfs_quota_us absent or unlimited)", "ok")
    if usable is not None and quota < usable:
        advice = f"workers are throttled to {quota:g} CPUs' time though {usable} CPUs are usable: use <= {quota:g}"
        return Check("cgroup CPU quota", f"{quota:g} CPUs", "warning", advice)
    return Check("cgroup CPU quota", f"{quota:g} CPUs", "ok")


def check_cpu_model(proc: Path) -> Check:
    text = _read(proc / "cpuinfo") or ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Hardware", "cpu model", "Model") and value.strip():
            return Check("CPU model", value.strip(), "ok")
    model = platform.processor()
    return Check("CPU model", model, "ok") if model else Check("CPU model", "not exposed", "unknown")


def check_governor(cpu: Path) -> Check:
    governors = sorted({g for p in cpu.glob("cpu[0-9]*/cpufreq/scaling_governor") if (g := _read(p))})
    if not governors:
        advice = "the host sets the clock: compare runs only from the same machine type"
        return Check("CPU frequency governor", "not exposed (virtual machine?)", "unknown", advice)
    value = ", ".join(governors)
    if governors != ["performance"]:
        advice = "use the performance governor: sudo cpupower frequency-set -g performance (or pyperf system tune)"
        return Check("CPU frequency governor", value, "warning", advice)
    return Check("CPU frequency governor", value, "ok")


def check_turbo(cpu: Path) -> Check:
    for knob, on_value, off_value in (("intel_pstate/no_turbo", "0", "1"), ("cpufreq/boost", "1", "0")):
        value = _read(cpu / knob)
        if value is None:
            continue
        if value == on_value:
            advice = f"the clock follows heat and load: echo {off_value} | sudo tee {cpu / knob}"
            return Check("turbo / boost", f"enabled ({knob} = {value})", "warning", advice)
        return Check("turbo / boost", f"disabled ({knob} = {value})", "ok")
    return Check("turbo / boost", "not exposed (virtual machine?)", "unknown", "the host decides")


def check_load(proc: Path, usable: int | None, thresholds: SystemThresholds) -> Check:
    text = _read(proc / "loadavg")
    try:
        loads = [float(v) for v in text.split()[:3]] if text else list(os.getloadavg())
    except (OSError, ValueError):
        return Check("load average", "not exposed", "unknown")
    cpus = usable or 1
    value = f"{loads[0]:.2f} {loads[1]:.2f} {loads[2]:.2f} (1, 5, 15 min) on {cpus} CPUs"
    if loads[0] > thresholds.load_per_cpu * cpus:
        return Check("load average", value, "warning", "other work is running or just ran: wait, or stop it")
    return Check("load average", value, "ok")


def check_steal(before: StatSnapshot | None, after: StatSnapshot | None, thresholds: SystemThresholds) -> Check:
    if before is None or after is None:
        return Check("CPU steal", "not exposed", "unknown")
    steal = after.steal_s - before.steal_s
    total = steal + after.busy_s - before.busy_s
    share = steal / max(total, 1e-9) if total > 0 else 0.0
    value = f"{steal * 1000:.0f} ms of {total * 1000:.0f} ms busy CPU time in the sample ({share:.0%})"
    if share > thresholds.steal_share:
        return Check("CPU steal", value, "warning", "the hypervisor ran other guests on our CPUs: timings will wander")
    return Check("CPU steal", value, "ok")


def busy_processes(sample: Callable[[], None], exclude: int | None = None) -> list[BusyProcess]:
    """Processes other than ``exclude`` (default: this one) by CPU use over ``sample()``, busiest first."""
    exclude = os.getpid() if exclude is None else exclude
    procs = [p for p in psutil.process_iter(["name"]) if p.pid != exclude]
    before: dict[int, float] = {}
    for p in procs:
        try:
            times = p.cpu_times()
            before[p.pid] = times.user + times.system
        except psutil.Error:
            pass
    start = time.perf_counter()
    sample()
    elapsed = max(time.perf_counter() - start, 1e-9)
    busy = []
    for p in procs:
        try:
            times = p.cpu_times()
        except psutil.Error:
            continue
        if p.pid in before:
            used = times.user + times.system - before[p.pid]
            busy.append(BusyProcess(p.pid, str(p.info.get("name") or "?"), 100 * used / elapsed))
    return sorted((b for b in busy if b.cpu_percent > 0), key=lambda b: -b.cpu_percent)


def check_processes(busy: Sequence[BusyProcess], thresholds: SystemThresholds) -> Check:
    shown = ", ".join(f"{b.name} (pid {b.pid}) {b.cpu_percent:.0f}%" for b in busy[: thresholds.processes_shown])
    heavy = [b for b in busy if b.cpu_percent > 100 * thresholds.busy_process_share_of_core]
    if heavy:
        advice = "stop them or wait for them: they take CPU time from the benchmark"
        return Check("other busy processes", shown, "warning", advice)
    return Check("other busy processes", shown or "none", "ok")


def check_aslr(proc: Path) -> Check:
    value = _read(proc / "sys/kernel/randomize_va_space")
    meaning = {"0": "disabled", "1": "partial randomization", "2": "full randomization"}
    if value is None:
        return Check("ASLR", "not exposed", "unknown")
    if value != "2":
        advice = "pyperf advises full randomization (2), so layout luck averages out across processes"
        return Check("ASLR", meaning.get(value, value), "warning", advice)
    return Check("ASLR", meaning[value], "ok")


def check_isolation(proc: Path, cpu: Path) -> Check:
    cmdline = (_read(proc / "cmdline") or "").split()
    params = [p for p in cmdline if p.startswith(("isolcpus=", "nohz_full=", "rcu_nocbs="))]
    isolated = _read(cpu / "isolated")
    if isolated:
        params.append(f"isolated={isolated}")
    if params:
        return Check("isolated CPUs", " ".join(params), "ok", "pin the benchmark to the isolated CPUs")
    advice = "optional, on a dedicated machine with spare cores: isolcpus=N nohz_full=N on the kernel command line"
    return Check("isolated CPUs", "none", "ok", advice)


def check_python() -> Check:
    debug = hasattr(sys, "gettotalrefcount")
    free_threaded = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
    gil_enabled = getattr(sys, "_is_gil_enabled", lambda: True)()
    build = "debug" if debug else "release"
    gil = ("free-threaded, GIL " + ("on" if gil_enabled else "off")) if free_threaded else "GIL"
    value = f"{platform.python_implementation()} {platform.python_version()} {build} build, {gil}"
    if debug:
        return Check("Python build", value, "warning", "a debug build is several times slower: benchmark a release")
    return Check("Python build", value, "ok")


def check_memory(proc: Path, thresholds: SystemThresholds) -> Check:
    fields: dict[str, int] = {}
    for line in (_read(proc / "meminfo") or "").splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            fields[key] = int(parts[0]) * 1024
    available, total = fields.get("MemAvailable"), fields.get("MemTotal")
    if available is None or total is None:
        memory = psutil.virtual_memory()
        available, total = int(memory.available), int(memory.total)
    value = f"{available / 2**30:.1f} GiB of {total / 2**30:.1f} GiB"
    if available < thresholds.memory_available_bytes:
        return Check("memory available", value, "warning", "little free memory: swapping and page cache misses")
    return Check("memory available", value, "ok")


def check_system(
    paths: SystemPaths = SystemPaths(),
    thresholds: SystemThresholds = SystemThresholds(),
    busy: Callable[[Callable[[], None]], list[BusyProcess]] = busy_processes,
) -> SystemReport:
    """Run every check; the steal and busy-process checks share one ``thresholds.sample_s`` sample."""
    usable = usable_cpus()
    before = read_stat(paths.proc)
    others = busy(lambda: time.sleep(thresholds.sample_s))
    after = read_stat(paths.proc)
    return SystemReport(
        (
            check_cores(os.cpu_count(), usable),
            check_quota(cgroup_cpu_quota(paths.sys / "fs/cgroup", paths.proc / "self/cgroup"), usable),
            check_cpu_model(paths.proc),
            check_governor(paths.cpu),
            check_turbo(paths.cpu),
            check_load(paths.proc, usable, thresholds),
            check_steal(before, after, thresholds),
            check_processes(others, thresholds),
            check_aslr(paths.proc),
            check_isolation(paths.proc, paths.cpu),
            check_python(),
            check_memory(paths.proc, thresholds),
        )
    )


def format_report(report: SystemReport) -> str:
    """An aligned table (state, check, value), advice indented under its row, then the verdict."""
    name_w = max(len(c.name) for c in report.checks)
    state_w = max(len(c.state) for c in report.checks)
    lines = []
    for c in report.checks:
        lines.append(f"{c.state.upper():<{state_w}}  {c.name:<{name_w}}  {c.value}")
        if c.advice:
            lines.append(f"{'':<{state_w}}  {'':<{name_w}}  -> {c.advice}")
    return "\n".join([*lines, "", f"verdict: {report.verdict}"])
