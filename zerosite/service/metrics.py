"""What a server process measures: Prometheus metrics (``/metrics``) and the old service's JSON (``/v1/stats``)."""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import psutil
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

from zerosite.engine import ReportOutcome
from zerosite.types import STAGES, CacheStats, ReportCache

__all__ = ["CONTENT_TYPE", "MULTIPROCESS_DIR", "ProcessTree", "ServiceMetrics", "Stats"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
REPORT_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
HTTP_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
RATE_WINDOW_S = 60.0
REPORT_STATUSES = ("written", "cached", "failed")
"""The statuses ``zerosite_reports_total`` counts (a report skipped as unchanged counts as cached)."""
LOCAL_CACHE = "local"
"""The ``cache`` label of the store's own lookups (resume): the ``local`` cache, always there."""
MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"
"""Set (to an empty folder) before the server processes start, their counters and histograms are summed in every
``/metrics`` answer (prometheus_client's multiprocess mode); ``zerosite serve --processes N`` sets it."""


class ProcessTree:
    """CPU and memory of this process and every process it started (the runner's workers), summed."""

    def __init__(self) -> None:
        self.me = psutil.Process()
        self._lock = threading.Lock()
        self._workers_high = 0.0
        """The workers' CPU seconds never go down (a Prometheus counter)."""
        self._last = (time.monotonic(), self._cpu_seconds()[0] + self._cpu_seconds()[1])

    def _members(self) -> Iterator[tuple[str, psutil.Process]]:
        yield "server", self.me
        try:
            children = self.me.children(recursive=True)
        except psutil.Error:
            children = []
        for child in children:
            yield "workers", child

    def _cpu_seconds(self) -> tuple[float, float]:
        """``(server, workers)`` CPU seconds, user and system; the workers' with those that ended (a closed runner's):
        a process reaped by its parent leaves its time in the parent's ``children_*`` fields."""
        totals = {"server": 0.0, "workers": 0.0}
        for role, process in self._members():
            try:
                times = process.cpu_times()
            except psutil.Error:
                continue
            totals[role] += times.user + times.system
            totals["workers"] += times.children_user + times.children_system
        with self._lock:  # a worker read alive, then reaped before its parent is read, counts twice for a moment
            self._workers_high = max(self._workers_high, totals["workers"])
            return totals["server"], self._workers_high

    def cpu_seconds(self) -> tuple[float, float]:
        return self._cpu_seconds()

    def memory_bytes(self) -> tuple[int, int, int]:
        """``(server, workers, processes)``: resident bytes of this process, of its workers, and how many there are."""
        server = workers = count = 0
        for role, process in self._members():
            try:
                rss = process.memory_info().rss
            except psutil.Error:
                continue
            count += 1
            if role == "server":
                server += rss
            else:
                workers += rss
        return server, workers, count

    def cpu_percent(self) -> float:
        """CPU use of the tree since the last call (100 = one core busy)."""
        now = time.monotonic()
        used = sum(self._cpu_seconds())
        with self._lock:
            then, before = self._last
            self._last = (now, used)
        elapsed = now - then
        return max(0.0, (used - before) / elapsed * 100) if elapsed > 0 else 0.0


class _TreeCollector(Collector):
    """This server process's own figures, read when scraped; labelled with its pid when several processes serve."""

    def __init__(
        self, tree: ProcessTree, started: float, depth: Callable[[], int], ready: Callable[[], bool], by_pid: bool
    ) -> None:
        self.tree = tree
        self.started = started
        self.depth = depth
        self.ready = ready
        self.pid = [str(os.getpid())] if by_pid else []
        self.pid_label = ["pid"] if by_pid else []

    def _gauge(self, name: str, documentation: str, value: float) -> GaugeMetricFamily:
        gauge = GaugeMetricFamily(name, documentation, labels=self.pid_label)
        gauge.add_metric(self.pid, value)
        return gauge

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        server_cpu, workers_cpu = self.tree.cpu_seconds()
        cpu = CounterMetricFamily(
            "zerosite_process_cpu_seconds",
            "CPU seconds (user + system) of the server process and of its worker processes, those that ended included",
            labels=["process", *self.pid_label],
        )
        cpu.add_metric(["server", *self.pid], server_cpu)
        cpu.add_metric(["workers", *self.pid], workers_cpu)
        yield cpu
        server_rss, workers_rss, count = self.tree.memory_bytes()
        memory = GaugeMetricFamily(
            "zerosite_process_resident_memory_bytes",
            "Resident memory of the server process and of its worker processes",
            labels=["process", *self.pid_label],
        )
        memory.add_metric(["server", *self.pid], server_rss)
        memory.add_metric(["workers", *self.pid], workers_rss)
        yield memory
        yield self._gauge("zerosite_processes", "The server process and its workers", count)
        uptime = time.monotonic() - self.started
        yield self._gauge("zerosite_uptime_seconds", "Seconds since this server process started", uptime)
        waiting = "Projects waiting to be made (single requests and batches)"
        yield self._gauge("zerosite_queue_depth", waiting, self.depth())
        yield self._gauge("zerosite_ready", "1 once the workers are warm", 1 if self.ready() else 0)


@dataclass(frozen=True)
class Stats:
    """The old service's ``/metrics`` JSON, for this server process."""

    uptime_s: float
    reports_generated: int
    reports_cached: int
    reports_failed: int
    avg_ms_per_report: float
    reports_per_minute: float
    cpu_percent: float
    memory_mb: float
    queue_depth: int
    in_flight: int
    processes: int
    pid: int


class ServiceMetrics:
    """The metrics of one app, in a registry of its own (so two apps in one process never mix)."""

    def __init__(self, depth: Callable[[], int], ready: Callable[[], bool], cache: ReportCache | None = None) -> None:
        self.started = time.monotonic()
        self.registry = CollectorRegistry()
        self.tree = ProcessTree()
        self.depth = depth
        self.reports = Counter(
            "zerosite_reports",
            "Reports by module and status (written, cached, failed)",
            ["module", "status"],
            registry=self.registry,
        )
        self.report_seconds = Histogram(
            "zerosite_report_duration_seconds",
            "Time to make one report, by module and stage (fetch, compute, render, write, total)",
            ["module", "stage"],
            buckets=REPORT_BUCKETS_S,
            registry=self.registry,
        )
        self.http_seconds = Histogram(
            "zerosite_http_request_duration_seconds",
            "HTTP request duration by route and status",
            ["method", "route", "status"],
            buckets=HTTP_BUCKETS_S,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "zerosite_http_requests_in_flight",
            "HTTP requests being answered",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        cache_label = (
            'by cache: "local", the store itself (a report whose input is unchanged is found by resume), and the '
            "report cache that --cache names when it keeps copies (redis://...), as that cache counted"
        )
        self.cache_hits = Counter(
            "zerosite_cache_hits", f"Reports found instead of made, {cache_label}", ["cache"], registry=self.registry
        )
        self.cache_misses = Counter(
            "zerosite_cache_misses",
            f"Reports looked up and not found, {cache_label}",
            ["cache"],
            registry=self.registry,
        )
        self.cache_puts = Counter(
            "zerosite_cache_puts", "Reports stored in the report cache (--cache)", ["cache"], registry=self.registry
        )
        self.cache_errors = Counter(
            "zerosite_cache_errors",
            "Failed calls to the report cache's backend (each outage starts with one; lookups are misses meanwhile)",
            ["cache"],
            registry=self.registry,
        )
        self.cache = cache if cache is not None and cache.keeps_copies else None
        # Every cache series at 0 from the start: a rate or an alert has a series before the first event.
        for counter in (self.cache_hits, self.cache_misses):
            counter.labels(LOCAL_CACHE)
        if self.cache is not None:
            for counter in (self.cache_hits, self.cache_misses, self.cache_puts, self.cache_errors):
                counter.labels(self.cache.url)
        self._cache_seen = CacheStats()
        self._cache_lock = threading.Lock()
        self.multiprocess = bool(os.environ.get(MULTIPROCESS_DIR))
        self.own = _TreeCollector(self.tree, self.started, depth, ready, by_pid=self.multiprocess)
        self.registry.register(self.own)
        self._lock = threading.Lock()
        self._written = self._cached = self._failed = 0
        self._written_ns = 0
        self._recent: deque[float] = deque()
        self._in_flight = 0

    def expect_reports(self, modules: Sequence[str]) -> None:
        """Each module's report series, written, cached and failed, at 0 until its first report."""
        for module in modules:
            for status in REPORT_STATUSES:
                self.reports.labels(module, status)

    def request_started(self) -> None:
        with self._lock:
            self._in_flight += 1
        self.in_flight.inc()

    def request_ended(self, method: str, route: str, status: int, seconds: float) -> None:
        with self._lock:
            self._in_flight -= 1
        self.in_flight.dec()
        self.http_seconds.labels(method, route, str(status)).observe(seconds)

    def record(self, outcome: ReportOutcome) -> None:
        """Count one report's outcome and its stage times (called from the thread that runs the engine)."""
        status = "cached" if outcome.status == "skipped" or outcome.from_cache else outcome.status
        self.reports.labels(outcome.module, status).inc()
        if outcome.status == "skipped":
            self.cache_hits.labels(LOCAL_CACHE).inc()
        else:
            self.cache_misses.labels(LOCAL_CACHE).inc()
        self.count_cache()
        total_ns = 0
        if status != "cached":
            for stage in STAGES:
                ns: int = getattr(outcome.timings, f"{stage}_ns")
                total_ns += ns
                self.report_seconds.labels(outcome.module, stage).observe(ns / 1e9)
            self.report_seconds.labels(outcome.module, "total").observe(total_ns / 1e9)
        now = time.monotonic()
        with self._lock:
            if status == "written":
                self._written += 1
                self._written_ns += total_ns
                self._recent.append(now)
            elif status == "cached":
                self._cached += 1
            else:
                self._failed += 1
            self._trim(now)

    def count_cache(self) -> None:
        """Add what the report cache counted since the last call to its counters (its own stats, not a guess)."""
        if self.cache is None:
            return
        with self._cache_lock:
            now, seen = self.cache.stats, self._cache_seen
            self._cache_seen = now
        url = self.cache.url
        for counter, new, old in (
            (self.cache_hits, now.hits, seen.hits),
            (self.cache_misses, now.misses, seen.misses),
            (self.cache_puts, now.puts, seen.puts),
            (self.cache_errors, now.errors, seen.errors),
        ):
            if new > old:
                counter.labels(url).inc(new - old)

    def _trim(self, now: float) -> None:
        while self._recent and now - self._recent[0] > RATE_WINDOW_S:
            self._recent.popleft()

    def stats(self) -> Stats:
        now = time.monotonic()
        uptime = now - self.started
        with self._lock:
            self._trim(now)
            written, cached, failed, written_ns = self._written, self._cached, self._failed, self._written_ns
            last_minute = len(self._recent)
        server_rss, workers_rss, count = self.tree.memory_bytes()
        return Stats(
            uptime_s=round(uptime, 3),
            reports_generated=written,
            reports_cached=cached,
            reports_failed=failed,
            avg_ms_per_report=round(written_ns / written / 1e6, 3) if written else 0.0,
            reports_per_minute=float(last_minute) if uptime >= RATE_WINDOW_S else round(last_minute * 60 / uptime, 1),
            cpu_percent=round(self.tree.cpu_percent(), 1),
            memory_mb=round((server_rss + workers_rss) / 2**20, 1),
            queue_depth=self.depth(),
            in_flight=self._in_flight,
            processes=count,
            pid=os.getpid(),
        )

    def exposition(self) -> bytes:
        """The text exposition: with several server processes (multiprocess mode) the counters and histograms
        of all of them summed, and this process's own figures labelled with its pid."""
        self.count_cache()
        if not self.multiprocess:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        registry.register(self.own)
        return generate_latest(registry)

    def close(self) -> None:
        """In multiprocess mode, drop this process's live gauges (in flight) from the sums."""
        if self.multiprocess:
            mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]
