"""The ``auto`` strategy: measure a batch's first projects, then hand the rest to the strategy the figures favour."""

from __future__ import annotations

import collections
import itertools
import math
import statistics
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace

from zerosite import hookimpl
from zerosite.cores import usable_cores
from zerosite.plugins import get_strategies
from zerosite.project import Project
from zerosite.strategies import default_start_method
from zerosite.types import PluginError, ProjectResult, ReportWriter, Runner, Strategy, StrategyOptions, WorkerConfig

__all__ = [
    "AUTO_COSTS",
    "CANDIDATES",
    "AutoChoice",
    "AutoCosts",
    "AutoFigures",
    "AutoRunner",
    "AutoStrategy",
    "choose",
    "estimates_ms",
    "usable_cores",
]

CANDIDATES: tuple[str, ...] = ("sequential", "thread", "process", "async")
"""The strategies ``auto`` chooses from, in the order that breaks a tie (the simplest first)."""

TIMES = "\N{MULTIPLICATION SIGN}"


@dataclass(frozen=True)
class AutoCosts:
    """What the choice weighs besides the batch's own figures. Measured on the 2-core development machine
    (``bench/auto_vs_fixed.py``; docs/architecture.md, "How auto chooses", gives the runs)."""

    probe_projects: int = 4
    """Projects made one at a time in this process, and measured, before anything is chosen. The figures are
    medians of all but the first, which pays once for what the others reuse (lazy imports, caches)."""
    probe_budget_ms: float = 500.0
    """The probe also stops once the projects after the first have taken this long (slow modules)."""
    probe_failures: int = 8
    """Failed projects (a report of theirs failed: a fetch refused, a module's error) are left out of the figures:
    they stand for nothing but themselves (a 404 from the source costs 1 ms where a project takes 50). The first
    probe makes up to this many more projects to measure enough that succeeded, within its budget; where none did,
    the figures are the failed ones', and the line says so."""
    measure_share: float = 0.05
    """A reused runner measures one more project alone, so that its figures follow the load, once the batches
    since its last measurement took twenty times (1 / this) what such a project takes: at most about 5 % of
    its time goes to measuring."""
    lookahead_projects: int = 512
    """How far past the probe the batch is read to count what is left; beyond it, "at least this many"."""
    fork_pool_start_ms: float = 70.0
    """A process pool of two started by ``fork``: how much later its first result comes than a sequential one's."""
    forkserver_pool_start_ms: float = 1300.0
    """The same by ``forkserver`` (the start method once this process runs threads, its server already
    running): each worker loads the plugins and compiles the templates again."""
    spawn_pool_start_ms: float = 1700.0
    """The same by ``spawn``: each worker also imports everything."""
    thread_start_ms: float = 0.2
    """Per thread of a thread pool."""
    worker_speed: float = 0.9
    """A pool worker process's pace against this process alone (results pickled, caches cold)."""
    gil_speed: float = 0.8
    """CPU work on several threads against one: GIL hand-offs, each write and wait giving the GIL up and taking it
    back (0.88 x for pure CPU work, measured on a 2-core machine like CI's; 0.77-0.8 x for the benchmark's cpu
    batches)."""
    process_parent_ms: float = 0.1
    """Per project, this process's CPU to send it to a process pool and take its result back, beyond ``parent_ms``
    (measured at the margin between batches of 200 and 1,000 projects: docs/architecture.md)."""
    async_parent_ms: float = 0.55
    """The same under ``async``: its event loop, the input hash, and a task for each few projects fetched together."""
    async_batch_ms: float = 25.0
    """Per batch under ``async``: filling and draining its pipeline of fetches and tasks."""
    tie_margin: float = 0.10
    """Estimates within this share of the fastest tie, and a tie goes to the simplest (``CANDIDATES``' order, then
    fewer workers): the figures are measured on a few projects of a busy machine and move from run to run (the
    CPU per project of the same 40 projects, 4.0 to 5.0 ms over ten runs, moves sequential's estimate against
    process x 2's by about 10 %), so that a closer call would be decided by the noise. It is also the benchmark's
    bar: auto within 10 % of the best fixed strategy (``bench/auto_vs_fixed.py``)."""
    switch_margin: float = 0.15
    """A reused runner leaves the strategy of its previous batch only for one estimated this much faster: the
    estimates move with the load from batch to batch, and a pool switched to starts in the batch that uses it."""
    waiting_ms: float = 0.5
    """A fetch waiting at least this long per project is said to wait on the source, and a project blocked this
    long elsewhere to be blocked: with neither, threads are no candidate (they have no wait to overlap, and CPU
    work under the GIL goes no faster on two: 1.13 x one thread's time here)."""

    def pool_start_ms(self, start_method: str) -> float:
        """The start-up cost of a process pool started with ``start_method``."""
        return float(getattr(self, f"{start_method}_pool_start_ms", self.spawn_pool_start_ms))


AUTO_COSTS = AutoCosts()


@dataclass(frozen=True)
class AutoFigures:
    """What ``auto`` measured and counted before choosing; :func:`choose` decides from these alone. The
    per-project figures are medians over the projects measured (the latest three after the first)."""

    cpu_ms: float
    """Per project, the CPU time of making it (fetch, compute, render, write) in one thread."""
    fetch_ms: float
    """Per project, the fetch's wall time."""
    wait_ms: float
    """Per project, how much of the fetch was waiting on the source (off the CPU, not for a core)."""
    blocked_ms: float
    """Per project, waiting elsewhere: modules or writes blocked off the CPU, not for a core."""
    queued_ms: float
    """Per project, time spent ready to run but waiting for a core (other processes keep them busy)."""
    write_ms: float
    """Per project, writing its files (hashing, the system calls): work that does not hold the GIL."""
    parent_ms: float
    """Per project, the caller's CPU between two results (the engine's hashing and indexing)."""
    projects: int
    """Projects left to make after the probe, counted up to ``AutoCosts.lookahead_projects``."""
    more: bool
    """More projects are left than were counted."""
    cores: int
    """Cores this process may use (:func:`usable_cores`)."""
    workers: int
    """The most workers ``auto`` may use (``--workers``)."""
    in_flight: int | None = None
    """``StrategyOptions.in_flight`` (None: 4 per worker)."""
    start_method: str = "fork"
    """How a process pool would start now."""
    warm: frozenset[str] = frozenset()
    """Runners already started by an earlier batch of the same runner, by label: no start-up cost."""
    served: int = 0
    """Projects this runner made in earlier batches. A runner asked for another batch is long-lived (a
    service, a benchmark): a pool's start-up is then paid once over its life, and left out."""
    previous: str | None = None
    """The label of the strategy its previous batch ran on (kept unless another is ``switch_margin`` faster)."""
    failed: int = 0
    """Projects of this probe that failed, left out of the figures (``AutoCosts.probe_failures``)."""
    of_failed: bool = False
    """No project measured succeeded: the figures are those of failed projects."""

    def as_dict(self) -> dict[str, object]:
        return {
            "cpu_ms": round(self.cpu_ms, 3),
            "fetch_ms": round(self.fetch_ms, 3),
            "wait_ms": round(self.wait_ms, 3),
            "blocked_ms": round(self.blocked_ms, 3),
            "queued_ms": round(self.queued_ms, 3),
            "write_ms": round(self.write_ms, 3),
            "parent_ms": round(self.parent_ms, 3),
            "projects": self.projects,
            "more": self.more,
            "cores": self.cores,
            "workers": self.workers,
            "in_flight": self.in_flight,
            "start_method": self.start_method,
            "warm": sorted(self.warm),
            "served": self.served,
            "previous": self.previous,
            "failed": self.failed,
            "of_failed": self.of_failed,
        }


@dataclass(frozen=True)
class AutoChoice:
    """The strategy and worker count ``auto`` chose for (the rest of) a batch, and why."""

    strategy: str
    workers: int
    figures: AutoFigures
    estimates_ms: Mapping[str, float]
    """Each candidate's estimated time for the projects left, by label (as ``process`` TIMES ``2``), fastest first."""
    probed: int
    """Projects of this batch made alone and measured before the choice (one once the runner is reused)."""
    why: str = "fastest"
    """``fastest``: the fastest estimate; ``tie``: the simplest of those within ``AutoCosts.tie_margin`` of it;
    ``kept``: the previous batch's, none being ``switch_margin`` faster."""

    @property
    def label(self) -> str:
        return _label(self.strategy, self.workers)

    @property
    def free_cores(self) -> float:
        return _free_cores(self.figures)

    @property
    def line(self) -> str:
        """One line for the terminal: which, and why."""
        f = self.figures
        waiting = f"{f.wait_ms:.1f} ms waiting" if f.wait_ms >= AUTO_COSTS.waiting_ms else "not waiting"
        blocked = f", {f.blocked_ms:.1f} ms blocked elsewhere" if f.blocked_ms >= AUTO_COSTS.waiting_ms else ""
        busy = f" ({f.queued_ms:.1f} ms waiting for one)" if f.queued_ms >= AUTO_COSTS.waiting_ms else ""
        failed = ""
        if f.of_failed:
            failed = f", measured on failed projects (none of {self.probed} succeeded)"
        elif f.failed:
            failed = f", {f.failed} failed project{'s' if f.failed != 1 else ''} left out"
        figures = (
            f"{f.cpu_ms:.1f} ms CPU per project, fetch {f.fetch_ms:.1f} ms ({waiting}){blocked}, "
            f"{f.cores} core{'s' if f.cores != 1 else ''}{busy}{failed}"
        )
        if not f.projects:
            whole = f"{self.probed} project{'s' if self.probed != 1 else ''}"
            return f"auto: sequential \N{EM DASH} {figures}; the whole batch ({whole}) was measured"
        left = f"{f.projects}{'+' if f.more else ''} project{'s' if f.projects != 1 or f.more else ''} to go"
        ranked = list(self.estimates_ms.items())
        other = next((item for item in ranked if item[0] != self.label), None)
        against = f" (next: {other[0]} ~{_seconds(other[1])})" if other else ""
        if self.why == "tie":
            against = f" (ties with {ranked[0][0]} ~{_seconds(ranked[0][1])}: the simpler)"
        elif self.why == "kept":
            against = f" (kept from the last batch: {ranked[0][0]} ~{_seconds(ranked[0][1])} is not enough faster)"
        return f"auto: {self.label} \N{EM DASH} {figures}; {left}: ~{_seconds(self.estimates_ms[self.label])}{against}"

    def as_dict(self) -> dict[str, object]:
        return {
            "strategy": self.strategy,
            "workers": self.workers,
            "why": self.why,
            "line": self.line,
            "probed_projects": self.probed,
            "free_cores": round(self.free_cores, 2),
            "figures": self.figures.as_dict(),
            "estimates_s": {name: round(ms / 1000, 4) for name, ms in self.estimates_ms.items()},
        }


def _label(strategy: str, workers: int) -> str:
    return strategy if strategy == "sequential" else f"{strategy}{TIMES}{workers}"


def _free_cores(figures: AutoFigures) -> float:
    """The cores, times the share of its time a ready thread of this process got one in the probe."""
    ready_ms = figures.cpu_ms + figures.queued_ms
    return max(1, figures.cores) * (figures.cpu_ms / ready_ms if ready_ms > 0 else 1.0)


def _seconds(ms: float) -> str:
    return f"{ms / 1000:.2f} s" if ms >= 100 else f"{ms:.0f} ms"


def estimates_ms(figures: AutoFigures, costs: AutoCosts = AUTO_COSTS) -> dict[tuple[str, int], float]:
    """Each candidate's estimated wall time, in ms, for the projects left: ``{(strategy, workers): ms}``.

    A model of the costs, not a measurement. Per project: ``c`` CPU, of which ``x`` writing (free of the
    GIL), ``q`` waiting for a core, ``w`` waiting on the source, ``b`` waiting elsewhere (a module, a
    write), ``p`` the caller's CPU; ``P`` projects left; ``k`` pool processes (at most the cores and
    ``workers``; for a process pool, also ``workers`` where a project waits); ``f`` free cores (the cores
    times ``c / (c + q)``, the share of its time a ready thread got one). Start-ups count in a runner's
    first batch only (see ``AutoFigures.served``). Whichever bound is longest, and for a pool the last
    result's ``p`` after it:

    - sequential: ``P (c + q + w + b + p)``.
    - thread x ``workers``: the threads (no more than there are projects) take turns at the GIL, each project
      holding it for ``(c - x + p) / gil_speed + q`` (a thread that waits for a core keeps the GIL: CPython's
      holder gives it up only when it runs) and off it for ``x + w + b`` (the writes and the waits):
      :func:`_turns_ms`, a thread back from a wait queueing for the GIL behind the others; or all the CPU over
      ``f``.
    - process x ``k``: a pool start-up unless warm; then the busiest worker's share, ``ceil(P / k)`` projects (the
      last chunks taper: the workers finish together), each ``c / worker_speed + q + w + b``; the caller's share
      (sending, taking back, indexing); or all the CPU over ``f``. Where a project waits (``waiting_ms``, as for
      threads), also x ``workers`` beyond the cores: its processes overlap their waits, the CPU bound the same.
    - async x ``k``: the same start-up and bounds, a task for the few projects fetched together (a higher cost
      to the caller) and a pipeline to fill and drain; fetches overlap up to ``in_flight``, the rest over ``k``
      processes.
    """
    n_left, c, p = figures.projects, figures.cpu_ms, figures.parent_ms
    w, b, x, q = figures.wait_ms, figures.blocked_ms, min(figures.write_ms, figures.cpu_ms), figures.queued_ms
    pooled = c / costs.worker_speed + q + b  # a project's time in a pool worker, fetch aside
    cores, free = max(1, figures.cores), _free_cores(figures)
    estimates = {("sequential", 1): n_left * (c + q + w + b + p)}

    def start_ms(key: str, cost_ms: float) -> float:
        return 0.0 if figures.served or key in figures.warm else cost_ms

    threads = figures.workers
    if threads > 1:
        start = start_ms(_label("thread", threads), threads * costs.thread_start_ms)
        each = _turns_ms((c - x + p) / costs.gil_speed + q, x + w + b, min(threads, n_left))
        estimates["thread", threads] = start + max(n_left * each, n_left * (c + p) / free) + p
    k = max(1, min(figures.workers, cores))
    pool_start = costs.pool_start_ms(figures.start_method)
    parent = n_left * (p + costs.process_parent_ms)
    cpu_share = n_left * (c / costs.worker_speed + p)
    # Processes beyond the cores only where a project waits: they overlap its waits, and have nothing else to.
    waits = max(w, b) >= costs.waiting_ms
    for processes in {max(1, min(n, n_left)) for n in ((k, figures.workers) if waits else (k,))}:
        busiest = math.ceil(n_left / processes)  # the last chunks taper (chunking.Taper): the workers finish together
        start = start_ms(_label("process", processes), pool_start)
        estimates["process", processes] = (
            start + max(parent, busiest * (pooled + w), (cpu_share + n_left * costs.process_parent_ms) / free) + p
        )
    in_flight = figures.in_flight or 4 * k
    start = start_ms(_label("async", k), pool_start) + costs.async_batch_ms
    estimates["async", k] = (
        start
        + max(
            n_left * (p + costs.async_parent_ms),
            n_left * pooled / k,
            n_left * (w + pooled) / in_flight,
            w + pooled if n_left else 0.0,  # one project's own time
            (cpu_share + n_left * costs.async_parent_ms) / free,
        )
        + p
    )
    return estimates


def _turns_ms(holding: float, elsewhere: float, threads: int) -> float:
    """Per project, the time between two projects done by ``threads`` threads that each hold one lock (the GIL)
    for ``holding`` ms a project and are off it for ``elsewhere`` ms: exact mean value analysis of a closed
    queueing network of one queue and one delay (Reiser and Lavenberg, 1980). Never less than either bound,
    ``holding`` (the lock busy throughout) or ``(holding + elsewhere) / threads`` (no thread ever waiting for
    it): a thread back from a wait finds the others queued for the lock and waits its turn, which the bounds
    leave out (for two threads, by a quarter where the two are equal)."""
    queued, cycle = 0.0, holding + elsewhere
    for n in range(1, max(1, threads) + 1):
        at_lock = holding * (1 + queued)  # its own hold, after those queued ahead of it
        cycle = (at_lock + elsewhere) / n  # per project: n threads, each once round the cycle
        queued = at_lock / cycle if cycle > 0 else 0.0  # Little's law at the lock: threads there
    return cycle


def choose(
    figures: AutoFigures,
    available: Iterable[str] = CANDIDATES,
    costs: AutoCosts = AUTO_COSTS,
    probed: int = 0,
) -> AutoChoice:
    """The fastest estimate among the ``available`` strategies; deterministic. Estimates within ``tie_margin`` of
    the fastest tie, and a tie goes to the simplest (``CANDIDATES``' order, then fewer workers); threads are a
    candidate only where a project waits (``waiting_ms``, on the source or elsewhere), having nothing else to
    overlap; a reused runner keeps its previous batch's strategy unless another is ``switch_margin`` faster."""
    if not figures.projects:  # the probe made the whole batch
        return AutoChoice("sequential", 1, figures, {"sequential": 0.0}, probed)
    allowed = set(available) | {"sequential"}
    if max(figures.wait_ms, figures.blocked_ms) < costs.waiting_ms:
        allowed.discard("thread")
    estimates = {key: ms for key, ms in estimates_ms(figures, costs).items() if key[0] in allowed}
    order = {name: i for i, name in enumerate(CANDIDATES)}

    def simplicity(key: tuple[str, int]) -> tuple[int, int]:
        return order.get(key[0], len(order)), key[1]

    ranked = sorted(estimates.items(), key=lambda item: (item[1], simplicity(item[0])))
    fastest = ranked[0][1]
    strategy, workers = min((key for key, ms in ranked if ms <= fastest * (1 + costs.tie_margin)), key=simplicity)
    why = "fastest" if (strategy, workers) == ranked[0][0] else "tie"
    kept = [key for key, ms in ranked if _label(*key) == figures.previous]
    if kept and kept[0] != (strategy, workers) and fastest >= estimates[kept[0]] * (1 - costs.switch_margin):
        (strategy, workers), why = kept[0], "kept"
    shown = {_label(*key): ms for key, ms in ranked}
    return AutoChoice(strategy, workers, figures, shown, probed, why)


@dataclass(frozen=True, slots=True)
class _Sample:
    """One probe project (ns): its wall and CPU time, its wait for a core, its fetch's wall time, and the
    caller's CPU around it."""

    wall_ns: int
    cpu_ns: int
    queued_ns: int
    fetch_ns: int
    write_ns: int
    parent_ns: int

    @property
    def off_cpu_ns(self) -> int:
        """Waiting, but not for a core: on the network, the disk, a sleep."""
        return max(0, self.wall_ns - self.cpu_ns - self.queued_ns)

    @property
    def fetch_wait_ns(self) -> int:
        return min(self.fetch_ns, self.off_cpu_ns)


def _queued_ns() -> int:
    """This thread's time so far ready to run but waiting for a core (Linux schedstat), or 0 where unknown."""
    try:
        with open("/proc/thread-self/schedstat", "rb") as stats:
            return int(stats.read().split()[1])
    except (OSError, IndexError, ValueError):
        return 0


class AutoStrategy(Strategy):
    name = "auto"
    batches_only = True  # it chooses for a batch: one project at a time would measure its probe, not its choice
    description = (
        "Measures the first projects, then runs the rest as sequential, thread, process or async, "
        "with as many workers as the cores (at most --workers; a process pool may have all of --workers where "
        "projects wait on the source): the fastest by its cost model."
    )

    def unavailable_reason(self) -> str | None:
        if "sequential" not in get_strategies():
            return "it measures with the sequential strategy, which is not registered (plugin zerosite.strategies)"
        return None

    def start(self, config: WorkerConfig, options: StrategyOptions) -> Runner:
        strategies = get_strategies(config.plugins)
        usable = {
            name: strategies[name]
            for name in CANDIDATES
            if name in strategies and strategies[name].unavailable_reason() is None
        }
        if "sequential" not in usable:
            raise PluginError(f"strategy 'auto': {self.unavailable_reason() or 'sequential is not available'}")
        return AutoRunner(config, options, usable)


class AutoRunner(Runner):
    """Makes the first projects one at a time, measured (their reports are written like any other), then
    hands the rest to the chosen strategy's runner. Runners it started are kept for later batches and
    closed with it. A runner that serves several batches chooses again for each, start-ups left out (see
    ``AutoFigures.served``): now and then (``measure_share``) it measures one more project first, so that
    the figures (medians of the latest ``probe_projects - 1``) follow the machine's load; a batch of one
    project goes to the sequential runner, unmeasured and without a choice.

    ``on_choice``, when set, is called with each :class:`AutoChoice` as it is made.
    """

    def __init__(
        self,
        config: WorkerConfig,
        options: StrategyOptions,
        strategies: Mapping[str, Strategy],
        costs: AutoCosts = AUTO_COSTS,
    ) -> None:
        self.config = config
        self.options = options
        self.strategies = dict(strategies)
        self.costs = costs
        self.cores = usable_cores()
        self.cold: _Sample | None = None
        """The first project measured: it pays for lazy imports and caches, so it counts only alone."""
        self.samples: collections.deque[_Sample] = collections.deque(maxlen=max(1, costs.probe_projects - 1))
        """The latest projects measured after it."""
        self.failures: collections.deque[_Sample] = collections.deque(maxlen=self.samples.maxlen)
        """The latest failed projects measured: left out of the figures while any project succeeded."""
        self.failed = 0
        """Failed projects of the latest probe."""
        self.probed = False
        """Whether the first probe is complete (later batches measure one project now and then)."""
        self.unmeasured_ns = 0
        """Wall time of the batches made since the last project measured (see ``AutoCosts.measure_share``)."""
        self.served = 0
        """Projects made by earlier batches."""
        self.runners: dict[tuple[str, int], Runner] = {}
        self.choice: AutoChoice | None = None
        """The latest choice, or None before any project was made."""
        self.on_choice: Callable[[AutoChoice], None] | None = None
        self.ran_on: int | None = None
        """The workers of the latest batch: the chosen runner's, or 1 where this process made it all."""
        self.in_use: Runner | None = None
        """The runner that makes the projects taken now: the sequential one while measuring, then the chosen one."""

    @property
    def restarts(self) -> int:
        return sum(runner.restarts for runner in self.runners.values())

    @property
    def workers(self) -> int | None:
        """The workers the latest batch ran on (1 where it ran here alone), not the most it might use; ``None``
        before any project was made."""
        return self.ran_on

    @property
    def runs_here(self) -> bool:
        return self.in_use is None or self.in_use.runs_here

    def run(self, projects: Iterable[Project], files: ReportWriter | None = None) -> Iterator[ProjectResult]:
        source = iter(projects)
        probed = 0
        self.ran_on = None
        self.in_use = None  # this process, until a runner is chosen
        if self.probed:
            ahead = list(itertools.islice(source, self.costs.lookahead_projects + 1))
            more = len(ahead) > self.costs.lookahead_projects
            if len(ahead) <= 1:  # nothing to share out: no strategy makes one project faster than this thread
                started = time.perf_counter_ns()
                self.ran_on = 1 if ahead else None
                for result in self._runner("sequential", 1).run(ahead, files):
                    self.served += 1
                    yield result
                self.unmeasured_ns += time.perf_counter_ns() - started
                return
            if self._due():  # one project made alone and measured, so that the figures follow the load
                for result in self._probe(iter(ahead[:1]), files):
                    probed += 1
                    yield result
                ahead = ahead[probed:]
                self.unmeasured_ns = 0
        else:
            for result in self._probe(source, files):
                probed += 1
                yield result
            ahead = list(itertools.islice(source, self.costs.lookahead_projects + 1))
            more = len(ahead) > self.costs.lookahead_projects
            if not ahead and not probed:
                return
        counted = min(len(ahead), self.costs.lookahead_projects)
        choice = choose(self.figures(counted, more, self.failed if probed else 0), self.strategies, self.costs, probed)
        self.choice = choice
        if self.on_choice is not None:
            self.on_choice(choice)
        self.served += probed
        self.ran_on = 1 if probed else None
        if ahead:
            self.ran_on = choice.workers
            runner = self.in_use = self._runner(choice.strategy, choice.workers)
            started = time.perf_counter_ns()
            for result in runner.run(itertools.chain(ahead, source), files):
                self.served += 1
                yield result
            self.unmeasured_ns += time.perf_counter_ns() - started

    def _measured(self) -> list[_Sample]:
        """The projects the figures come from: the latest that succeeded after the first, else the first; where
        none succeeded, the latest failed ones."""
        if self.samples:
            return list(self.samples)
        if self.cold is not None:
            return [self.cold]
        return list(self.failures) or [_Sample(0, 0, 0, 0, 0, 0)]

    def _due(self) -> bool:
        """Whether the batches since the last measurement took long enough to pay for one more."""
        alone_ns = statistics.median(s.wall_ns + s.parent_ns for s in self._measured())
        return alone_ns <= self.costs.measure_share * self.unmeasured_ns

    def figures(self, projects: int, more: bool, failed: int = 0) -> AutoFigures:
        """The figures of the probe so far, for ``projects`` left (``more``: at least that many), ``failed`` of the
        projects measured for it having failed."""
        samples = self._measured()
        return AutoFigures(
            cpu_ms=statistics.median(s.cpu_ns for s in samples) / 1e6,
            fetch_ms=statistics.median(s.fetch_ns for s in samples) / 1e6,
            wait_ms=statistics.median(s.fetch_wait_ns for s in samples) / 1e6,
            blocked_ms=statistics.median(s.off_cpu_ns - s.fetch_wait_ns for s in samples) / 1e6,
            queued_ms=statistics.median(s.queued_ns for s in samples) / 1e6,
            write_ms=statistics.median(s.write_ns for s in samples) / 1e6,
            parent_ms=statistics.median(s.parent_ns for s in samples) / 1e6,
            projects=projects,
            more=more,
            cores=self.cores,
            workers=self.options.workers,
            in_flight=self.options.max_in_flight,
            start_method=self._start_method(),
            warm=frozenset(_label(*key) for key in self.runners),
            served=self.served,
            previous=self.choice.label if self.choice is not None and self.served else None,
            failed=failed,
            of_failed=self.cold is None and bool(self.failures),
        )

    def _probe(self, source: Iterator[Project], files: ReportWriter | None) -> Iterator[ProjectResult]:
        """Make projects one at a time on the sequential runner, timing each: the first probe until enough have
        succeeded (or its budget is spent, or ``probe_failures`` more were made), then one project per batch.
        A failed project is measured apart (``failures``), left out of the figures while any succeeded."""
        wanted = self.samples.maxlen or 1
        budget_ns = self.costs.probe_budget_ms * 1e6
        spent_ns = 0  # the probe's projects but the first that succeeded (which pays for lazy imports)
        self.failed = 0
        for made in range(1 if self.probed else self.costs.probe_projects + self.costs.probe_failures):
            if not self.probed and (
                (self.cold is not None and len(self.samples) >= wanted) or (made and spent_ns >= budget_ns)
            ):
                break
            parent_started = time.thread_time_ns()
            project = next(source, None)  # the caller's work too: it hashes and looks up each project
            if project is None:
                return
            wall_started, cpu_started, queued_started = time.perf_counter_ns(), time.thread_time_ns(), _queued_ns()
            parent_ns = cpu_started - parent_started
            (result,) = self._runner("sequential", 1).run([project], files)
            wall_ns, cpu_ns = time.perf_counter_ns() - wall_started, time.thread_time_ns() - cpu_started
            queued_ns = _queued_ns() - queued_started
            fetch_ns = sum(report.timings.fetch_ns for report in result.reports)
            write_ns = sum(report.timings.write_ns for report in result.reports)
            handed = time.thread_time_ns()
            yield result
            parent_ns += time.thread_time_ns() - handed  # the caller indexing the result
            sample = _Sample(wall_ns, cpu_ns, queued_ns, fetch_ns, write_ns, parent_ns)
            if not all(report.ok for report in result.reports):
                self.failed += 1
                self.failures.append(sample)
                spent_ns += wall_ns
            elif self.cold is None:
                self.cold = sample
            else:
                self.samples.append(sample)
                spent_ns += wall_ns
        self.probed = True

    def _start_method(self) -> str:
        method = self.options.start_method or default_start_method()
        return default_start_method() if method == "fork" and threading.active_count() > 1 else method

    def _runner(self, strategy: str, workers: int) -> Runner:
        key = (strategy, workers)
        if key not in self.runners:
            # The projects in flight are those ``--workers`` allows (4 each), however few processes compute them:
            # under async, the fetches they wait on overlap in this process's event loop, not in the workers.
            options = replace(self.options, workers=workers, in_flight=self.options.max_in_flight)
            self.runners[key] = self.strategies[strategy].start(self.config, options)
        return self.runners[key]

    def close(self) -> None:
        runners, self.runners = list(self.runners.values()), {}
        errors: list[BaseException] = []
        for runner in reversed(runners):
            try:
                runner.close()
            except BaseException as error:  # every runner is closed; the first error is raised
                errors.append(error)
        if errors:
            raise errors[0]


@hookimpl
def zerosite_register_strategies(register: Callable[[Strategy], None]) -> None:
    register(AutoStrategy())
