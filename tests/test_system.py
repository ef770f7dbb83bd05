"""`zerosite system`: each check on fake /proc and /sys files, the verdict, the table and the command."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from zerosite.benchmarking.load import StatSnapshot
from zerosite.benchmarking.system import (
    BusyProcess,
    Check,
    SystemPaths,
    SystemReport,
    SystemThresholds,
    busy_processes,
    check_aslr,
    check_cores,
    check_cpu_model,
    check_governor,
    check_isolation,
    check_load,
    check_memory,
    check_processes,
    check_python,
    check_quota,
    check_steal,
    check_system,
    check_turbo,
    format_report,
)
from zerosite.cli import main

LIMITS = SystemThresholds()


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


@pytest.fixture
def quiet_machine(tmp_path: Path) -> SystemPaths:
    """A tuned bare-metal machine, as files."""
    proc = _write(
        tmp_path / "proc",
        {
            "cpuinfo": "processor\t: 0\nmodel name\t: Fake CPU 9000 @ 3.00GHz\n",
            "loadavg": "0.05 0.10 0.20 1/90 4242\n",
            "stat": "cpu  100 0 50 9000 10 0 0 0 0 0\nprocesses 10\n",
            "sys/kernel/randomize_va_space": "2\n",
            "cmdline": "BOOT_IMAGE=/vmlinuz isolcpus=3 nohz_full=3 quiet\n",
            "meminfo": "MemTotal:       16000000 kB\nMemFree:  1000 kB\nMemAvailable:   8000000 kB\n",
        },
    )
    sys_root = _write(
        tmp_path / "sys",
        {
            "devices/system/cpu/cpu0/cpufreq/scaling_governor": "performance\n",
            "devices/system/cpu/cpu1/cpufreq/scaling_governor": "performance\n",
            "devices/system/cpu/intel_pstate/no_turbo": "1\n",
            "devices/system/cpu/isolated": "3\n",
            "fs/cgroup/cpu.max": "max 100000\n",
        },
    )
    return SystemPaths(proc=proc, sys=sys_root)


def _nobody(sample: Callable[[], None]) -> list[BusyProcess]:
    sample()
    return []


def test_a_tuned_quiet_machine_has_nothing_obvious(quiet_machine: SystemPaths) -> None:
    report = check_system(quiet_machine, SystemThresholds(sample_s=0.01), busy=_nobody)
    states = {c.name: c.state for c in report.checks}
    assert states["CPU frequency governor"] == "ok" and states["turbo / boost"] == "ok"
    assert states["ASLR"] == "ok" and states["cgroup CPU quota"] == "ok"
    assert "Fake CPU 9000" in next(c.value for c in report.checks if c.name == "CPU model")
    assert "isolcpus=3" in next(c.value for c in report.checks if c.name == "isolated CPUs")
    if all(s != "warning" for s in states.values()):  # core count and Python build are this machine's own
        assert report.verdict.startswith("nothing obvious")


def test_governor_warns_unless_performance_and_is_unknown_when_not_exposed(tmp_path: Path) -> None:
    cpu = _write(tmp_path, {"cpu0/cpufreq/scaling_governor": "powersave\n"})
    governor = check_governor(cpu)
    assert governor.state == "warning" and "performance" in governor.advice
    assert check_governor(tmp_path / "absent") == Check(
        "CPU frequency governor",
        "not exposed (virtual machine?)",
        "unknown",
        "the host sets the clock: compare runs only from the same machine type",
    )


@pytest.mark.parametrize(
    ("files", "state"),
    [
        ({"intel_pstate/no_turbo": "0"}, "warning"),
        ({"intel_pstate/no_turbo": "1"}, "ok"),
        ({"cpufreq/boost": "1"}, "warning"),
        ({"cpufreq/boost": "0"}, "ok"),
        ({}, "unknown"),
    ],
    ids=["pstate-turbo-on", "pstate-turbo-off", "boost-on", "boost-off", "absent"],
)
def test_turbo(tmp_path: Path, files: dict[str, str], state: str) -> None:
    check = check_turbo(_write(tmp_path, files))
    assert check.state == state
    if state == "warning":
        assert "sudo tee" in check.advice


def test_the_quota_is_read_as_the_worker_cap_reads_it_cgroup_v1_included(quiet_machine: SystemPaths) -> None:
    """A cgroup v1 quota that generate obeyed was reported as none: only the v2 root's cpu.max was read."""
    (quiet_machine.sys / "fs/cgroup/cpu.max").unlink()
    (quiet_machine.proc / "self").mkdir()
    (quiet_machine.proc / "self/cgroup").write_text("4:cpu,cpuacct:/zs_audit\n")
    limits = {"cpu.cfs_quota_us": "100000\n", "cpu.cfs_period_us": "100000\n"}
    _write(quiet_machine.sys / "fs/cgroup/cpu/zs_audit", limits)
    report = check_system(quiet_machine, SystemThresholds(sample_s=0.01), busy=_nobody)
    quota = next(c for c in report.checks if c.name == "cgroup CPU quota")
    assert quota.value == "1 CPUs"


def test_cores_and_quota() -> None:
    assert check_cores(1, 1).state == "warning"
    assert check_cores(8, 2).state == "ok" and "2 usable" in check_cores(8, 2).value
    assert check_quota(None, 2).state == "ok"
    assert check_quota(1.5, 2).state == "warning" and "1.5" in check_quota(1.5, 2).advice
    assert check_quota(4.0, 2).state == "ok"


def test_load_against_cores(tmp_path: Path) -> None:
    _write(tmp_path, {"loadavg": "1.50 1.00 0.50 3/100 1\n"})
    assert check_load(tmp_path, 2, LIMITS).state == "warning"
    assert check_load(tmp_path, 16, LIMITS).state == "ok"


def test_steal_share() -> None:
    before = StatSnapshot(busy_s=10.0, steal_s=1.0, forks=1)
    assert check_steal(before, StatSnapshot(busy_s=10.9, steal_s=1.1, forks=1), LIMITS).state == "warning"
    assert check_steal(before, StatSnapshot(busy_s=11.0, steal_s=1.0, forks=1), LIMITS).state == "ok"
    assert check_steal(None, before, LIMITS).state == "unknown"


def test_busy_processes_are_named_with_pid_and_share() -> None:
    busy = [BusyProcess(123, "callgrind", 95.0), BusyProcess(7, "kworker", 2.0)]
    check = check_processes(busy, LIMITS)
    assert check.state == "warning" and "callgrind (pid 123) 95%" in check.value
    assert check_processes([BusyProcess(7, "kworker", 2.0)], LIMITS).state == "ok"
    assert check_processes([], LIMITS).value == "none"


def test_a_real_busy_process_is_found_and_we_are_not() -> None:
    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.1)
        found = busy_processes(lambda: time.sleep(0.5))
    finally:
        os.kill(burner.pid, signal.SIGTERM)
        burner.wait()
    assert os.getpid() not in {b.pid for b in found}
    assert any(b.pid == burner.pid and b.cpu_percent > 20 for b in found), found[:5]


def test_aslr_isolation_memory(tmp_path: Path) -> None:
    _write(tmp_path, {"sys/kernel/randomize_va_space": "0", "cmdline": "quiet", "meminfo": "MemTotal: 2000 kB\n"})
    assert check_aslr(tmp_path).state == "warning"
    assert check_aslr(tmp_path / "absent").state == "unknown"
    assert check_isolation(tmp_path, tmp_path).value == "none"
    _write(tmp_path, {"meminfo": "MemTotal: 4000000 kB\nMemAvailable: 500000 kB\n"})
    assert check_memory(tmp_path, LIMITS).state == "warning"


def test_python_build_is_described() -> None:
    check = check_python()
    assert "release build" in check.value or "debug build" in check.value


def test_cpu_model_falls_back_when_cpuinfo_is_absent(tmp_path: Path) -> None:
    assert check_cpu_model(tmp_path).name == "CPU model"


def test_table_is_aligned_and_ends_with_the_verdict() -> None:
    report = SystemReport(
        (
            Check("CPUs", "2 logical CPUs", "ok"),
            Check("turbo / boost", "enabled", "warning", "turn it off"),
            Check("CPU frequency governor", "not exposed (virtual machine?)", "unknown"),
        )
    )
    text = format_report(report)
    rows = text.splitlines()
    assert rows[0].index("2 logical") == rows[1].index("enabled") == rows[2].index("-> turn it off")
    assert rows[-1] == "verdict: this machine is noisy for benchmarking: turbo / boost"
    assert SystemReport((Check("CPUs", "2", "ok"),)).verdict == "nothing obvious"


def test_system_command_prints_a_table_and_json() -> None:
    runner = CliRunner()
    table = runner.invoke(main, ["system"])
    assert table.exit_code == 0, table.output
    assert "CPU frequency governor" in table.output and "verdict: " in table.output
    data = runner.invoke(main, ["system", "--json"])
    assert data.exit_code == 0
    parsed = json.loads(data.output)
    assert {"checks", "warnings", "verdict"} <= set(parsed)
    assert {"name", "value", "state", "advice"} == set(parsed["checks"][0])
