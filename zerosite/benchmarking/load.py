"""Per-round machine load: load average, CPU time of other processes, CPU steal, and a busy flag.

How a round is judged busy (the rule, thresholds in :class:`LoadThresholds`):

- ``other_cpu_s`` is the machine's busy CPU time over the round (``/proc/stat``: user, nice, system, irq,
  softirq; not idle or iowait, not steal, which is reported apart, not guest, which user already holds)
  minus the CPU time of this process and every descendant (pool workers are ours, not "other").
- A round is busy when other processes used more than ``other_share_of_core`` (25 %) of one core over the
  round's wall time AND more than ``min_ticks`` (2) clock ticks; or when steal passes the same two bars.
  ``/proc/stat`` counts in 10 ms ticks per CPU, so a short quiet round can show a tick or two of "other"
  time from rounding alone: the tick bar keeps those from being flagged.
- Kernel work done for us but not charged to us (disk writeback threads, some softirq) counts as other.

Cost: reading ``/proc/stat`` and ``/proc/<pid>/stat`` directly takes ~30 µs a file here (psutil's
``cpu_times`` ~110 µs), so a ``begin``/``end`` pair with two live pool workers costs ~0.2 ms. The list of
descendants is rebuilt only when the kernel's fork counter (``processes`` in ``/proc/stat``) moved, and
then only the new pids are read (a ``/proc`` listing, ~60 µs, plus one small file per new pid).

Where ``/proc/stat`` is missing (not Linux), rounds report zero CPU times, ``busy`` False, and the load
average from ``os.getloadavg``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = [
    "DescendantTracker",
    "LoadMark",
    "LoadMonitor",
    "LoadThresholds",
    "RoundLoad",
    "RoundWatch",
    "StatSnapshot",
    "parse_stat",
    "read_stat",
]


@dataclass(frozen=True)
class LoadThresholds:
    """When a round counts as busy: both bars must be passed (see the module docstring)."""

    other_share_of_core: float = 0.25
    min_ticks: int = 2


@dataclass(frozen=True)
class RoundLoad:
    """What else the machine did while one round ran."""

    load1: float
    other_cpu_s: float
    steal_s: float
    wall_s: float
    busy: bool

    def as_dict(self) -> dict[str, float | bool]:
        return asdict(self)


@dataclass(frozen=True)
class StatSnapshot:
    """The aggregate ``cpu`` line of ``/proc/stat`` in seconds, and the fork counter."""

    busy_s: float
    steal_s: float
    forks: int


@dataclass(frozen=True)
class LoadMark:
    """Counters at the start of a round: the token ``begin`` hands out and ``end`` takes back."""

    wall: float
    stat: StatSnapshot | None
    own_cpu_s: float


@dataclass
class RoundWatch:
    """Filled in when the ``with monitor.round()`` block ends."""

    load: RoundLoad | None = None


_TICK_S = 1 / (os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100)


def _read(path: str) -> bytes:
    """One small /proc file, without Python's buffered file objects (half the cost)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.read(fd, 1 << 16)
    finally:
        os.close(fd)


def parse_stat(text: bytes, tick_s: float = _TICK_S) -> StatSnapshot:
    """Parse ``/proc/stat`` content: ``cpu user nice system idle iowait irq softirq steal guest guest_nice``."""
    busy = steal = 0
    forks = 0
    for line in text.splitlines():
        if line.startswith(b"cpu "):
            fields = [int(v) for v in line.split()[1:]] + [0] * 8
            user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
            busy = user + nice + system + irq + softirq
        elif line.startswith(b"processes "):
            forks = int(line.split()[1])
    return StatSnapshot(busy_s=busy * tick_s, steal_s=steal * tick_s, forks=forks)


def read_stat(proc: Path = Path("/proc")) -> StatSnapshot | None:
    """The machine's CPU counters now; None where there is no ``/proc/stat``."""
    try:
        return parse_stat(_read(str(proc / "stat")))
    except (OSError, ValueError):
        return None


def _load1(proc: Path) -> float:
    """The 1-minute load average: a fake root's ``loadavg`` file where there is one, else ``os.getloadavg``."""
    if proc != Path("/proc"):
        try:
            return float(_read(str(proc / "loadavg")).split()[0])
        except (OSError, ValueError, IndexError):
            pass
    try:
        return os.getloadavg()[0]  # one syscall, ~1 µs: cheaper than reading /proc/loadavg
    except OSError:
        return 0.0


def _pid_stat(proc: Path, pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds of the process and its reaped children) from ``/proc/<pid>/stat``."""
    try:
        text = _read(f"{proc}/{pid}/stat")
    except OSError:
        return None
    fields = text.rpartition(b")")[2].split()  # after "pid (comm)": state ppid ... utime stime cutime cstime
    try:
        return int(fields[1]), sum(int(v) for v in fields[11:15]) * _TICK_S
    except (IndexError, ValueError):
        return None


class DescendantTracker:
    """CPU time of this process and all its live descendants, with the descendant list kept cheaply."""

    def __init__(self, proc: Path = Path("/proc"), pid: int | None = None) -> None:
        self.proc = proc
        self.pid = os.getpid() if pid is None else pid
        self.descendants: set[int] = set()
        self._seen: set[int] = set()
        self.refreshes = 0

    def refresh(self) -> None:
        """Re-read parents of the known descendants and of pids new since the last refresh."""
        self.refreshes += 1
        try:
            present = {int(name) for name in os.listdir(self.proc) if name.isdigit()}
        except OSError:
            return
        candidates = (present - self._seen) | (self.descendants & present)
        self._seen = present
        parents = {pid: info[0] for pid in candidates if (info := _pid_stat(self.proc, pid)) is not None}
        ours = {self.pid}
        grew = True
        while grew:
            found = {pid for pid, parent in parents.items() if parent in ours} - ours
            grew = bool(found)
            ours |= found
        self.descendants = ours - {self.pid}

    def cpu_s(self) -> float:
        """CPU seconds used so far by this process, its live descendants and every child they reaped."""
        own = os.times()
        total = own.user + own.system + own.children_user + own.children_system
        for pid in tuple(self.descendants):
            info = _pid_stat(self.proc, pid)
            if info is None:
                self.descendants.discard(pid)  # gone: its time now sits in a reaper's children fields
            else:
                total += info[1]
        return total


class LoadMonitor:
    """Per-round load: ``mark = monitor.begin()`` ... ``load = monitor.end(mark)``, or ``with monitor.round()``.

    ``proc`` is the procfs root (tests pass a folder of fake files); ``own_cpu`` replaces the reading of
    this process tree's CPU seconds (tests again); by default a :class:`DescendantTracker` does it.
    """

    def __init__(
        self,
        proc: Path = Path("/proc"),
        thresholds: LoadThresholds = LoadThresholds(),
        own_cpu: Callable[[], float] | None = None,
    ) -> None:
        self.proc = proc
        self.thresholds = thresholds
        self.tracker = DescendantTracker(proc)
        self._own_cpu = own_cpu if own_cpu is not None else self.tracker.cpu_s
        self._forks: int | None = None

    def _snapshot(self) -> StatSnapshot | None:
        """Machine counters, first bringing the descendant list up to date if anything forked since last time."""
        stat = read_stat(self.proc)
        if stat is not None and stat.forks != self._forks:
            self._forks = stat.forks
            self.tracker.refresh()
            stat = read_stat(self.proc)  # the refresh's own CPU time stays outside the two readings
        return stat

    def begin(self) -> LoadMark:
        """Counters at the start of a round."""
        stat = self._snapshot()
        own = self._own_cpu() if stat is not None else 0.0
        return LoadMark(wall=time.perf_counter(), stat=stat, own_cpu_s=own)

    def end(self, mark: LoadMark) -> RoundLoad:
        """What the machine did since ``mark``."""
        wall_s = time.perf_counter() - mark.wall
        stat = self._snapshot()
        load1 = _load1(self.proc)
        if stat is None or mark.stat is None:
            return RoundLoad(load1=load1, other_cpu_s=0.0, steal_s=0.0, wall_s=wall_s, busy=False)
        own_s = self._own_cpu() - mark.own_cpu_s
        other_s = max(0.0, stat.busy_s - mark.stat.busy_s - own_s)
        steal_s = max(0.0, stat.steal_s - mark.stat.steal_s)
        busy = self._over(other_s, wall_s) or self._over(steal_s, wall_s)
        return RoundLoad(load1=load1, other_cpu_s=other_s, steal_s=steal_s, wall_s=wall_s, busy=busy)

    def _over(self, cpu_s: float, wall_s: float) -> bool:
        t = self.thresholds
        return cpu_s > t.other_share_of_core * wall_s and cpu_s > t.min_ticks * _TICK_S + 1e-9

    @contextmanager
    def round(self) -> Iterator[RoundWatch]:
        """``with monitor.round() as watch: ...`` then ``watch.load``."""
        watch = RoundWatch()
        mark = self.begin()
        try:
            yield watch
        finally:
            watch.load = self.end(mark)
