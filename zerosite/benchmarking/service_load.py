"""The service level's load generator: ``zerosite serve`` in a child process, driven over loopback by virtual users
(closed loop) and by a fixed arrival rate (open loop), with the server's CPU and memory sampled meanwhile.

Our own asyncio client, not locust: locust's users are closed loop (a user sends again only after its answer,
and times a request from when it was really sent), so the open-loop sweep, each request timed from its
*scheduled* send time, cannot be written with its users and statistics; and ``import locust`` monkey-patches
threading, sockets, subprocesses and time (gevent) for the whole pytest process that also runs the other levels.
The client speaks just enough HTTP/1.1 over asyncio streams (keep-alive, Content-Length or chunked bodies): on
this 2-core machine the load generator shares the CPU with the server, and httpx spent about 2.5 ms of CPU per
request, more than the server's own work for a GET, where this client spends a tenth of that.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import importlib.util
import json
import math
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import psutil

from zerosite.benchmarking.load import LoadMonitor, RoundLoad
from zerosite.sample import sample_projects
from zerosite.service.process import ServerProcess

__all__ = [
    "HttpError",
    "LoadPoint",
    "LoadSettings",
    "Request",
    "ResourceUse",
    "ServicePointId",
    "ServiceRun",
    "SweepStep",
    "drive_server",
    "error_percent",
    "error_reasons",
    "held",
    "launch_server",
    "quantile_ms",
    "run_service_load",
    "serve_unavailable_reason",
]

SERVE_EXTRA = ("fastapi", "uvicorn", "prometheus_client")
CANARY_SAMPLES = 20
"""Canary samples (``canary.Canary``, about 5 ms each) timed before a server's users start and again once it stopped:
the machine's own speed around its points, for ``zerosite compare``. Twenty a side, a tenth of a second: the
machine's speed moves in bursts (two quick service runs, ``pytest bench/ --zerosite-quick -k service``: the canary's
median 0.421 ms before and 0.576 ms after, then 0.441 and 0.428 ms)."""
CANARY_SETTLE_S = 0.5
"""How long a server just ready is left before the canary is timed, so that what its start still does (its last
lines of log, its workers' last imports) is not taken for the machine's speed."""
OK_STATUSES = (200, 304)


def serve_unavailable_reason() -> str | None:
    """Why ``zerosite serve`` cannot run here (the serve extra missing), or None."""
    missing = [name for name in SERVE_EXTRA if importlib.util.find_spec(name) is None]
    if missing:
        return f"the serve extra is not installed ({', '.join(missing)} missing): pip install -e '.[serve]'"
    return None


@dataclass(frozen=True)
class LoadSettings:
    """What the service level measures, and for how long."""

    strategies: tuple[str, ...] = ("thread", "process", "async")
    users: tuple[int, ...] = (50, 100, 200)
    """Virtual users, added step by step on one server: each level ramps up, then is measured."""
    workers: int = 2
    """The server's runner workers (``zerosite serve --workers``)."""
    ramp_s: float = 0.8
    """The users a level adds start spread over this long; nothing is counted meanwhile."""
    window_s: float = 2.5
    """Each level's measured window: requests sent in it count."""
    think_mean_s: float = 1.0
    """A user's wait between an answer and its next request: exponential, this mean."""
    post_share: float = 0.2
    """A request POSTs a new project with this probability, else GETs a report made before."""
    seed_projects: int = 8
    """Projects made before the users start, so that the first GETs have reports to ask for."""
    sweep_strategies: tuple[str, ...] = ("process",)
    """The open-loop sweep runs on these servers (the default ``zerosite serve`` strategy)."""
    sweep_start_per_s: float = 40.0
    sweep_factor: float = 1.5
    sweep_steps: int = 6
    sweep_window_s: float = 1.5
    request_timeout_s: float = 10.0
    """A request not answered within this long counts as an error (the open loop gives up on it after the step)."""
    seed: int = 8

    @classmethod
    def quick(cls) -> LoadSettings:
        return cls(strategies=("process",), ramp_s=0.5, window_s=1.5, sweep_window_s=1.0, sweep_steps=4)


@dataclass(frozen=True)
class ServicePointId:
    """One test of the service level: a server strategy (and its workers) at a number of virtual users."""

    strategy: str
    workers: int
    users: int

    @property
    def id(self) -> str:
        return f"strategy={self.strategy}-workers={self.workers}-users={self.users}"


@dataclass(frozen=True, slots=True)
class Request:
    """One request: when it was due (its scheduled send time) and how long it took from then, in seconds."""

    kind: str
    """``post`` (a new project's reports made) or ``get`` (a report made before)."""
    due_s: float
    latency_s: float
    status: int
    """The HTTP status; 0 when no answer came (refused, reset, timed out)."""
    why: str = ""
    """Why it failed, where it did: ``HTTP 503``, or what came instead of an answer."""

    @property
    def ok(self) -> bool:
        return self.status in OK_STATUSES


@dataclass(frozen=True)
class ResourceUse:
    """CPU and memory over a window: the server's process tree (server and runner workers), and this process
    (the load generator). CPU in percent of one core."""

    server_cpu_percent: float
    server_rss_mb: float
    """The most the server's processes held resident at once."""
    server_processes: int
    generator_cpu_percent: float

    def as_dict(self) -> dict[str, float]:
        return {
            "server_cpu_percent": round(self.server_cpu_percent, 1),
            "server_rss_mb": round(self.server_rss_mb, 1),
            "server_processes": self.server_processes,
            "generator_cpu_percent": round(self.generator_cpu_percent, 1),
        }


@dataclass(frozen=True)
class LoadPoint:
    """One strategy at one number of virtual users: every request sent in the measured window."""

    strategy: str
    users: int
    window_s: float
    requests: tuple[Request, ...]
    resources: ResourceUse
    load: RoundLoad | None = None
    """Other processes' CPU over the window (``busy``: the machine was not ours)."""


@dataclass(frozen=True)
class SweepStep:
    """One arrival rate of the open-loop sweep."""

    rate_per_s: float
    window_s: float
    requests: tuple[Request, ...]
    resources: ResourceUse
    load: RoundLoad | None = None


@dataclass
class ServiceRun:
    """What one server (one strategy) did: its closed-loop points and, where asked, its open-loop sweep."""

    strategy: str
    workers: int
    points: list[LoadPoint] = field(default_factory=list)
    sweep: list[SweepStep] = field(default_factory=list)
    start_s: float = 0.0
    """Seconds from starting the server until it was ready (workers warm)."""
    canary_s: list[float] = field(default_factory=list)
    """The machine's own speed around the server's points (:data:`CANARY_SAMPLES` before, as many after)."""


# -- the server's process tree, sampled on a thread of its own -------------------------------------------------


class _Sampler:
    """Every ``period_s``: the CPU seconds and resident memory of the server and its descendants, and this
    process's CPU seconds. On its own thread, so the load generator's event loop does no psutil work."""

    def __init__(self, pid: int, period_s: float = 0.2) -> None:
        self.server = psutil.Process(pid)
        self.me = psutil.Process()
        self.period_s = period_s
        self.samples: list[tuple[float, float, float, int, float]] = []
        """(monotonic, server CPU s, server RSS bytes, server processes, generator CPU s)."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="service-sampler", daemon=True)

    def _sample(self) -> None:
        cpu = rss = 0.0
        count = 0
        try:
            members = [self.server, *self.server.children(recursive=True)]
        except psutil.Error:
            members = []
        for process in members:
            try:
                times = process.cpu_times()
                memory = process.memory_info().rss
            except psutil.Error:
                continue
            cpu += times.user + times.system + times.children_user + times.children_system
            rss += memory
            count += 1
        mine = self.me.cpu_times()
        self.samples.append((time.monotonic(), cpu, rss, count, mine.user + mine.system))

    def _run(self) -> None:
        while not self._stop.wait(self.period_s):
            self._sample()

    def __enter__(self) -> _Sampler:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def over(self, start: float, end: float) -> ResourceUse:
        """CPU and memory between two ``time.monotonic()`` readings (the samples nearest them)."""
        self._sample()
        samples = sorted(self.samples)
        first = min(samples, key=lambda s: abs(s[0] - start))
        last = min(samples, key=lambda s: abs(s[0] - end))
        inside = [s for s in samples if first[0] <= s[0] <= last[0]] or [last]
        wall = max(last[0] - first[0], 1e-9)
        return ResourceUse(
            server_cpu_percent=max(0.0, last[1] - first[1]) / wall * 100,
            server_rss_mb=max(s[2] for s in inside) / 2**20,
            server_processes=max(s[3] for s in inside),
            generator_cpu_percent=max(0.0, last[4] - first[4]) / wall * 100,
        )


# -- a lean HTTP/1.1 client -----------------------------------------------------------------------------------------


class HttpError(Exception):
    """No usable answer: the connection failed, closed early, or the answer was not HTTP/1.1."""


class _Connection:
    """One keep-alive HTTP/1.1 connection on asyncio streams; answers with Content-Length or chunked bodies."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: bytes = b"", headers: str = "") -> tuple[int, bytes]:
        """``(status, body)``; the connection is opened when needed and closed after an error or ``close``."""
        if self.reader is not None and self.reader.at_eof():
            # The server closed it while it was idle (uvicorn after 5 s, its keep-alive timeout), as any HTTP
            # client checks before it reuses a connection: a request sent on it would get no answer.
            self.close()
        try:
            if self.writer is None or self.reader is None:
                self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
            head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Length: {len(body)}\r\n{headers}\r\n"
            self.writer.write(head.encode() + body)
            await self.writer.drain()
            answer = await self.reader.readuntil(b"\r\n\r\n")
            if not answer.startswith(b"HTTP/1.1 "):
                raise HttpError(f"not an HTTP/1.1 answer: {answer[:40]!r}")
            status = int(answer[9:12])
            fields = {}
            for line in answer.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                fields[name.strip().lower()] = value.strip().lower()
            if status in (204, 304) or method == "HEAD":
                data = b""
            elif fields.get(b"transfer-encoding") == b"chunked":
                data = await self._chunked(self.reader)
            else:
                data = await self.reader.readexactly(int(fields.get(b"content-length", b"0")))
            if fields.get(b"connection") == b"close":
                self.close()
            return status, data
        except asyncio.IncompleteReadError as error:
            self.close()
            raise HttpError(
                f"the server closed the connection after {len(error.partial)} bytes of an answer"
            ) from error
        except (OSError, EOFError, ValueError, asyncio.LimitOverrunError) as error:
            self.close()
            raise HttpError(str(error) or type(error).__name__) from error
        except BaseException:
            self.close()  # cancelled or timed out mid-answer: the connection is in an unknown state
            raise

    @staticmethod
    async def _chunked(reader: asyncio.StreamReader) -> bytes:
        parts: list[bytes] = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                return b"".join(parts)
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


class _Client:
    """Keep-alive connections to one server, each used by one request at a time (a pool without a limit)."""

    def __init__(self, url: str, timeout_s: float) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.timeout_s = timeout_s
        self._idle: list[_Connection] = []
        self._all: list[_Connection] = []

    async def request(self, method: str, path: str, body: bytes = b"", headers: str = "") -> tuple[int, bytes]:
        connection = self._idle.pop() if self._idle else None
        if connection is None:
            connection = _Connection(self.host, self.port)
            self._all.append(connection)
        try:
            answer = await asyncio.wait_for(connection.request(method, path, body, headers), self.timeout_s)
        except BaseException:
            connection.close()
            self._idle.append(connection)
            raise
        self._idle.append(connection)
        return answer

    def close(self) -> None:
        for connection in self._all:
            connection.close()


# -- the traffic: what one request is ----------------------------------------------------------------------------


class _Traffic:
    """20 % POSTs of a new sample project (its reports made), 80 % GETs of a report made before."""

    def __init__(self, client: _Client, strategy: str, settings: LoadSettings) -> None:
        self.client = client
        self.settings = settings
        self.rng = random.Random(f"{settings.seed}-{strategy}")
        self.templates = sample_projects(64, seed=settings.seed)
        self.prefix = f"load-{strategy}"
        self.count = 0
        self.reports: list[str] = []

    def _new_project(self) -> bytes:
        self.count += 1
        template = self.templates[self.count % len(self.templates)]
        return json.dumps({**template, "id": f"{self.prefix}-{self.count:06d}"}).encode()

    async def post(self) -> int:
        status, body = await self.client.request(
            "POST", "/v1/reports", self._new_project(), "Content-Type: application/json\r\n"
        )
        if status == 200:
            self.reports.extend(r["url"] for r in json.loads(body)["reports"] if r.get("url"))
        return status

    async def get(self) -> int:
        status, _ = await self.client.request(
            "GET", self.rng.choice(self.reports), headers="Accept-Encoding: br, gzip\r\n"
        )
        return status

    async def one(self, due: float) -> Request:
        """One request, timed from ``due`` (``time.perf_counter()``): its scheduled send time."""
        kind = "post" if not self.reports or self.rng.random() < self.settings.post_share else "get"
        try:
            status = await (self.post() if kind == "post" else self.get())
        except HttpError as error:
            status, why = 0, f"no answer: {error}"
        except TimeoutError:
            status, why = 0, f"no answer within {self.client.timeout_s:g} s"
        else:
            why = "" if status in OK_STATUSES else f"HTTP {status}"
        return Request(kind, due, time.perf_counter() - due, status, why)


# -- closed loop: virtual users with think time ------------------------------------------------------------------


async def _closed_loop(traffic: _Traffic, settings: LoadSettings, sampler: _Sampler, strategy: str) -> list[LoadPoint]:
    done: list[Request] = []
    stop = asyncio.Event()
    rng = random.Random(f"{settings.seed}-users-{strategy}")

    async def user(delay_s: float, think: random.Random) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay_s)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), think.expovariate(1 / settings.think_mean_s))
            if stop.is_set():
                return
            done.append(await traffic.one(time.perf_counter()))

    users: list[asyncio.Task[None]] = []
    windows: list[tuple[int, float, float, float, float, RoundLoad | None]] = []
    monitor = LoadMonitor()
    for level in settings.users:
        for _ in range(level - len(users)):
            think = random.Random(rng.random())
            users.append(asyncio.create_task(user(rng.uniform(0, settings.ramp_s), think)))
        await asyncio.sleep(settings.ramp_s)
        mark = monitor.begin()
        start, start_m = time.perf_counter(), time.monotonic()
        await asyncio.sleep(settings.window_s)
        windows.append((level, start, time.perf_counter(), start_m, time.monotonic(), monitor.end(mark)))
    stop.set()
    await asyncio.wait(users, timeout=settings.request_timeout_s + 1)
    for task in users:
        task.cancel()
    return [
        LoadPoint(
            strategy=strategy,
            users=level,
            window_s=end - start,
            requests=tuple(r for r in done if start <= r.due_s < end),
            resources=sampler.over(start_m, end_m),
            load=load,
        )
        for level, start, end, start_m, end_m, load in windows
    ]


# -- open loop: a fixed arrival rate, each request timed from when it was due ------------------------------------


async def _open_loop_step(
    traffic: _Traffic, rate_per_s: float, settings: LoadSettings, sampler: _Sampler, rng: random.Random
) -> SweepStep:
    """Requests due at Poisson arrival times at ``rate_per_s`` for a window; each is sent at its due time
    whatever the others are doing, and timed from that time, so a slow server cannot hide its backlog
    (no coordinated omission). Requests still unanswered a little after the window count as errors."""
    monitor = LoadMonitor()
    mark = monitor.begin()
    start, start_m = time.perf_counter() + 0.01, time.monotonic()
    dues: list[float] = []
    t = rng.expovariate(rate_per_s)
    while t < settings.sweep_window_s:
        dues.append(start + t)
        t += rng.expovariate(rate_per_s)
    tasks: list[asyncio.Task[Request]] = []
    for due in dues:
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(traffic.one(due)))
    end_m = time.monotonic()
    resources = sampler.over(start_m, end_m)
    load = monitor.end(mark)
    grace = min(settings.request_timeout_s, max(1.0, settings.sweep_window_s))
    if tasks:
        await asyncio.wait(tasks, timeout=grace)
    requests = []
    for due, task in zip(dues, tasks, strict=True):
        if task.done() and not task.cancelled():
            requests.append(task.result())
        else:
            task.cancel()
            requests.append(
                Request("unanswered", due, time.perf_counter() - due, 0, "unanswered by the end of the step")
            )
    return SweepStep(rate_per_s, settings.sweep_window_s, tuple(requests), resources, load)


def quantile_ms(requests: Sequence[Request], q: float) -> float:
    """The ``q`` quantile (0..1) of the latencies in ms, nearest rank (a request never answered counts at how
    long it was waited for); NaN for no requests."""
    values = sorted(r.latency_s for r in requests)
    if not values:
        return math.nan
    return values[min(len(values) - 1, max(0, math.ceil(q * len(values)) - 1))] * 1000


def error_percent(requests: Sequence[Request]) -> float:
    """The share of requests that failed, in percent; NaN for no requests."""
    return 100 * sum(not r.ok for r in requests) / len(requests) if requests else math.nan


def error_reasons(requests: Sequence[Request]) -> tuple[tuple[str, int], ...]:
    """Why the failed requests failed: each reason and how many, the most frequent first."""
    return tuple(collections.Counter(r.why or f"HTTP {r.status}" for r in requests if not r.ok).most_common())


def held(requests: Sequence[Request], target_p95_ms: float, max_error_percent: float) -> bool:
    """Whether a step kept its p95 at or under the target and its errors at or under the share allowed."""
    return (
        bool(requests) and quantile_ms(requests, 0.95) <= target_p95_ms and error_percent(requests) <= max_error_percent
    )


async def _sweep(
    traffic: _Traffic, settings: LoadSettings, sampler: _Sampler, target_p95_ms: float, max_error_percent: float
) -> list[SweepStep]:
    """Rates from ``sweep_start_per_s`` up by ``sweep_factor`` until a step is not held (or the last step)."""
    rng = random.Random(f"{settings.seed}-arrivals")
    steps = []
    rate = settings.sweep_start_per_s
    for _ in range(settings.sweep_steps):
        step = await _open_loop_step(traffic, rate, settings, sampler, rng)
        steps.append(step)
        if not held(step.requests, target_p95_ms, max_error_percent):
            break
        rate *= settings.sweep_factor
    return steps


# -- one server, start to end ------------------------------------------------------------------------------------


async def _drive(
    run: ServiceRun,
    url: str,
    settings: LoadSettings,
    sampler: _Sampler,
    sweep: bool,
    target_p95_ms: float,
    max_error_percent: float,
) -> None:
    client = _Client(url, settings.request_timeout_s)
    try:
        traffic = _Traffic(client, run.strategy, settings)
        for _ in range(settings.seed_projects):
            if await traffic.post() != 200:
                raise RuntimeError(f"the {run.strategy} server did not make the seed projects")
        run.points = await _closed_loop(traffic, settings, sampler, run.strategy)
        if sweep:
            run.sweep = await _sweep(traffic, settings, sampler, target_p95_ms, max_error_percent)
    finally:
        client.close()


def launch_server(strategy: str, settings: LoadSettings, out: Path) -> ServerProcess:
    """``zerosite serve --strategy STRATEGY`` on a free loopback port, launched (not yet ready: see
    :meth:`ServerProcess.wait_ready`), so that several servers warm up at once."""
    args = ["--out", str(out), "--strategy", strategy, "--workers", str(settings.workers)]
    return ServerProcess(args, ready_timeout_s=180).launch()


def drive_server(
    server: ServerProcess,
    strategy: str,
    settings: LoadSettings,
    target_p95_ms: float,
    max_error_percent: float,
    log: Callable[[str], None] | None = None,
    canary: Callable[[], float] | None = None,
) -> ServiceRun:
    """Wait until ``server`` is ready, drive it (users, then the sweep where the settings say), stop it; with
    ``canary``, time the machine's own speed before driving it (the server idle and settled) and once it stopped
    (whatever it still had to do for the last requests is not the machine's)."""
    say = log or (lambda line: None)
    run = ServiceRun(strategy, settings.workers)
    started = time.monotonic()
    try:
        server.wait_ready()
        run.start_s = time.monotonic() - started
        command = f"zerosite serve --strategy {strategy} --workers {settings.workers}"
        say(f"service: {command} ready (waited {run.start_s:.1f} s)")
        before = _machine_speed(canary, settle_s=CANARY_SETTLE_S)
        with _Sampler(server.pid) as sampler:
            sweep = strategy in settings.sweep_strategies
            asyncio.run(_drive(run, server.url, settings, sampler, sweep, target_p95_ms, max_error_percent))
    finally:
        server.__exit__(None, None, None)
    run.canary_s = before + _machine_speed(canary)
    return run


def _machine_speed(canary: Callable[[], float] | None, settle_s: float = 0.0) -> list[float]:
    if canary is None:
        return []
    time.sleep(settle_s)
    return [canary() for _ in range(CANARY_SAMPLES)]


def run_service_load(
    strategy: str,
    settings: LoadSettings,
    out: Path,
    target_p95_ms: float,
    max_error_percent: float,
    log: Callable[[str], None] | None = None,
    canary: Callable[[], float] | None = None,
) -> ServiceRun:
    """Start ``zerosite serve --strategy STRATEGY`` on loopback, drive it, stop it; what it measured.

    ``log`` (a callable taking one line) hears what happens as it happens; ``canary`` times the machine's own
    speed around it (:func:`drive_server`).
    """
    server = launch_server(strategy, settings, out)
    return drive_server(server, strategy, settings, target_p95_ms, max_error_percent, log, canary)
