"""The client side of the dask strategy: the cluster to run on, and a runner that streams chunks through it."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
import signal
import socket
import struct
import time
import uuid
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import dask.config
from distributed import Client, Future, LocalCluster, WorkerPlugin, as_completed
from distributed.comm.addressing import get_address_host_port, parse_address
from distributed.comm.registry import get_backend
from distributed.core import rpc
from distributed.deploy.spec import SpecCluster
from distributed.scheduler import KilledWorker
from distributed.security import Security

from zerosite.chunking import Taper
from zerosite.dask_strategy import scheduler_address
from zerosite.dask_strategy.chunks import ChunkPolicy, ChunkSizer
from zerosite.dask_strategy.tasks import (
    DIED_TOPIC,
    UNFIT_TOPIC,
    ChunkCancelled,
    ChunkResult,
    LoadedCode,
    SeesOutput,
    UnfitWorker,
    WarmWorker,
    chunks_running,
    drop_worker,
    forget_resources,
    make_chunk,
    sees_folder,
    tasks_to_run,
)
from zerosite.files import ReportFiles
from zerosite.hurry import hurried
from zerosite.plugins import PluginWarning
from zerosite.project import Project
from zerosite.types import (
    ProjectResult,
    ReportWriter,
    Runner,
    StartError,
    StrategyOptions,
    WorkerConfig,
    WorkersLost,
    describe_error,
    error_message,
)

__all__ = ["CONNECT_TIMEOUT_S", "WORKERS_TIMEOUT_S", "ClusterLost", "DaskRunner", "UnfitWorkerWarning", "connect"]
"""The scheduler's address when ``--scheduler`` is not given."""

CONNECT_TIMEOUT_S = 5.0
"""How long to try to reach a scheduler before saying it cannot be reached."""

WORKERS_TIMEOUT_S = 10.0
"""How long to wait for a reachable scheduler to have a worker that can take the batch's chunks, at the start and
whenever it has none mid-batch."""

CLUSTER_CHECK_S = 1.0
"""How often the runner asks the scheduler how many worker threads can take chunks (to bound the work in flight,
and to notice a cluster left with none)."""

POLL_S = 0.1
"""How long the runner waits for a chunk to finish before it looks at the cluster again."""

PARKED_S = 2.0
"""How long a chunk in flight may stay unassigned (on no worker's list: Dask's "no-worker") while a worker that can
take it is there, before the runner sends it again: Dask does not look again at a task it parked for want of a
worker when a worker gains the resource it asks for (dask/distributed#6677), as a worker restarted by its nanny
does, so the batch would wait for ever."""

PARKED_MOST = 3
"""How many times in a row, with no chunk finished meanwhile, the runner sends parked chunks again before it stops
the batch, naming the cause."""

SILENT_S = 20.0
"""How long a worker that holds one of the batch's chunks may go unheard by the scheduler (no heartbeat: frozen,
stopped, cut off) before the runner has the scheduler drop it, so that its chunks run elsewhere. Dask's own limit
(``distributed.scheduler.worker-ttl``, 5 minutes) did not end a wait of 7 minutes in a user audit."""

SETTLE_S = 0.25
"""How long cancelled tasks are watched at least, however soon none seems left: the scheduler may not have taken a
task sent just before (it takes graphs in the background), and a cancel that came first is lost."""

STOP_WAIT_S = 10.0
"""How long a stopped batch waits for its cancelled chunks, still running on the workers, to end (each ends before
its next write), before the engine discards their projects' files: a report being written past it may be left."""

WORKER_CONNECT_TIMEOUT_S = CONNECT_TIMEOUT_S
"""While a runner is open, how long Dask tries to connect to a worker (its default, 30 s, is
``distributed.comm.timeouts.connect``): a result on a worker just killed, before the scheduler has noticed, was
gathered from it for 30 s, connection refused again and again, and the batch waited as long."""

HANDSHAKE_MOST_BYTES = 1 << 20
"""A Dask server's first message, its handshake, is a few hundred bytes: a peer whose first eight bytes announce
more than this speaks another protocol (read as Dask's frame length, an SSH banner asks for exbibytes)."""

LOCAL_WORKER_CONFIG = {"distributed.worker.profile.enabled": False}
"""Dask settings for the workers of a local cluster: no statistical profiler (it samples every thread's stack
every 10 ms, under the GIL, and slowed reports several times over here)."""

TASKS_PER_THREAD = 2
"""Tasks in flight per worker thread: one running, one waiting, so no worker idles between tasks."""

CALIBRATION_TASKS_PER_THREAD = 8
"""No-op tasks per worker thread sent when the runner starts, to measure Dask's cost per task here ..."""

CALIBRATION_TASKS_MOST = 256
"""... and no more than this many."""

DEATHS_MOST = 2
"""How many worker processes a project may take down with it before it fails, named (the first time, it is made
again alone: the worker may have been killed from outside)."""

_STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


class UnfitWorkerWarning(PluginWarning):
    """A Dask worker that joined mid-batch cannot take its chunks (named, with why); the batch goes on without it.
    A :class:`~zerosite.plugins.PluginWarning`: the command line prints it as one ``warning:`` line."""


class ClusterLost(WorkersLost):
    """The cluster can no longer run the batch (its scheduler gone, or no worker left that can take a chunk): the
    batch stops, its projects in flight discarded, and the same command resumes."""


def connect(options: StrategyOptions) -> tuple[Client, LocalCluster | None]:
    """A client of the scheduler at ``options.scheduler`` (else ``$ZEROSITE_DASK_SCHEDULER``), or of a local
    cluster of ``options.workers`` single-threaded worker processes started here (returned too, to close).

    :raises StartError: the scheduler cannot be reached within :data:`CONNECT_TIMEOUT_S`, or has no worker.
    """
    address = scheduler_address(options.scheduler)
    if address is None:
        cluster = _local_cluster(options.workers)
        return Client(cluster, set_as_default=False), cluster
    try:
        _check_address(address)
        _knock(address)
        _identify(address)
        client = Client(address, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
    except Exception as error:  # OSError, TimeoutError, ValueError (a malformed address), ...
        raise StartError(f"cannot reach the Dask scheduler at {address}: {describe_error(error)}") from None
    try:
        client.wait_for_workers(1, timeout=WORKERS_TIMEOUT_S)
    except TimeoutError:
        client.close()
        raise StartError(
            f"the Dask scheduler at {address} has no worker (waited {WORKERS_TIMEOUT_S:g} s); "
            f"start some with `dask worker {address} --nthreads 1`"
        ) from None
    return client, None


def _local_cluster(workers: int) -> LocalCluster:
    """A local cluster of ``workers`` single-threaded worker processes. Ctrl-C and SIGTERM wait while it starts
    (a second or two), then stop the batch as usual: interrupted half-way, Dask leaves nannies it cannot close
    (each a traceback at exit) and worker processes importing Dask (each a traceback of its own); the worker
    processes, started from threads that block the signals, never see them at all (the parent closes them)."""
    before = set(SpecCluster._instances)
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    try:
        with dask.config.set(LOCAL_WORKER_CONFIG):  # the nannies keep it for the workers they start
            return LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=":0",  # None still binds :8787 (dask/distributed#8136): a free port, no clash
                silence_logs=logging.CRITICAL,  # a worker lost and replaced is the parent's to tell, once
            )
    except BaseException:
        for cluster in set(SpecCluster._instances) - before:  # half-started: close what it started
            with contextlib.suppress(BaseException):  # a nanny never started fails Dask's own assertion
                cluster.close(timeout=CONNECT_TIMEOUT_S)
            SpecCluster._instances.discard(cluster)  # so that it is not closed again, with a traceback, at exit
        raise
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)  # a signal that came meanwhile is raised now


_Submit = Callable[[list[Project]], None]
"""Sends a chunk of projects to the cluster as one task."""


def _no_submit(chunk: list[Project]) -> None:
    raise RuntimeError("no batch runs")


class _SentAgain(Exception):
    """The chunk awaited was parked by Dask and sent again under another key: its results come from that one."""


@dataclass
class _Parked:
    """The chunks in flight that Dask has on no worker's list, watched (:meth:`DaskRunner._send_parked_again`)."""

    progress_at: float = field(default_factory=time.monotonic)
    """When a chunk last finished (or the batch started)."""
    checked_at: float = 0.0
    since: float | None = None
    """When the chunks of ``seen`` were first seen parked."""
    seen: set[Future[ChunkResult]] = field(default_factory=set)
    tries: int = 0
    """How many times parked chunks were sent again with no chunk finished since."""

    def progress(self) -> None:
        self.progress_at, self.tries = time.monotonic(), 0


@dataclass
class _Batch:
    """What the runner keeps of the batch it runs (of the last, between batches): made anew by each ``run``."""

    prefix: str = ""
    """Its tasks' keys begin so."""
    chunks: dict[Future[ChunkResult], list[Project]] = field(default_factory=dict)
    """The chunks in flight, by their futures."""
    sent: dict[str, list[Project]] = field(default_factory=dict)
    """Its chunks by their tasks' keys, until their results came: in flight, and those cancelled or sent again,
    which may still run (what a worker's death names)."""
    deaths: collections.Counter[str] = field(default_factory=collections.Counter)
    """Per project id, the worker processes that died making it."""
    cancelled: dict[str, Future[ChunkResult]] = field(default_factory=dict)
    """Its tasks cancelled, by key: cancelled again while the scheduler still holds them."""
    sent_again: set[tuple[str, ...]] = field(default_factory=set)
    """Its chunks whose result could not come back, sent once more before their projects fail."""
    submit: _Submit = _no_submit
    parked: _Parked = field(default_factory=_Parked)
    threads: tuple[float, int] = (0.0, 0)
    """When the worker threads that can take its chunks were last counted, and how many."""
    most_threads: int = 0
    """The most counted at once (the summary's workers)."""
    none_since: float | None = None
    """Since when no worker could take its chunks."""


def _nothing(i: int) -> int:
    return i


def _check_address(address: str) -> None:
    """Refuse, before Dask's client tries, an address it cannot use: an unknown scheme, or TLS without the
    settings it needs (the client would fail only after its timeout, and again, with a traceback, at exit)."""
    scheme, _ = parse_address(address)
    get_backend(scheme)  # ValueError naming the known schemes
    if scheme in ("tls", "wss") and Security().get_connection_args("client")["ssl_context"] is None:
        raise ValueError(f"{scheme}:// needs TLS settings: distributed.comm.tls.* in the Dask configuration")


def _knock(address: str) -> None:
    """Knock at a ``tcp://`` scheduler's door before Dask's client does: a refused connection fails at once (the
    client would retry until its timeout), a port that takes the connection but never speaks within the timeout
    (the client would wait for its handshake forever), or that speaks another protocol (the client would read its
    first bytes as a length to allocate), is no scheduler that can be used."""
    scheme, _ = parse_address(address)
    if scheme != "tcp":
        return
    deadline = time.monotonic() + CONNECT_TIMEOUT_S
    with socket.create_connection(get_address_host_port(address), timeout=CONNECT_TIMEOUT_S) as door:
        answer = b""
        while len(answer) < 8:  # a Dask server sends its handshake as soon as it accepts: a length first
            door.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                more = door.recv(8 - len(answer))
            except TimeoutError:
                raise TimeoutError(f"no answer within {CONNECT_TIMEOUT_S:g} s") from None
            if not more:
                raise ConnectionError("it closed the connection without answering")
            answer += more
        (length,) = struct.unpack("<Q", answer)
        if not 0 < length <= HANDSHAKE_MOST_BYTES:
            raise ConnectionError(f"it answered, but not as a Dask scheduler does (first bytes {answer!r})")


def _identify(address: str) -> None:
    """Ask what answers at a ``tcp://`` address (Dask's ``identity`` call) before making a client of it: a worker's
    or a nanny's address given for the scheduler's (``dask worker`` prints both) made the client fail only past its
    whole timeout, with a ``TypeError`` from deep inside and its ``__del__``'s traceback after it."""
    if parse_address(address)[0] != "tcp":
        return
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # none here, as in the command: ask
        pass
    else:
        return  # on an event loop's own thread (a caller's): the client finds out itself

    async def ask() -> object:
        async with rpc(address, timeout=CONNECT_TIMEOUT_S) as server:
            return await asyncio.wait_for(server.identity(), CONNECT_TIMEOUT_S)

    try:
        identity = asyncio.run(ask())
    except Exception as error:
        raise ConnectionError(f"it answered, but not as a Dask scheduler does ({describe_error(error)})") from None
    kind = identity.get("type") if isinstance(identity, dict) else None
    if kind != "Scheduler":
        what = f"a Dask {kind}" if isinstance(kind, str) else "no Dask scheduler"
        raise ConnectionError(f"it is {what}, not the scheduler: give the address `dask scheduler` printed")


class _ClusterEvents:
    """What the scheduler tells about the workers: those lost unasked while a batch runs, each worker that
    cannot take chunks, with why, and what each worker process that died was making (said by the next one its
    nanny started)."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.lost = 0
        self.prefix: str | None = None
        self.unfit: dict[str, str] = {}
        self.died: collections.deque[tuple[str, str, int]] = collections.deque()
        """``(worker, chunk key, project index)``, in the order said; taken by the runner."""
        client.subscribe_topic("all", self._on_event)
        client.subscribe_topic(UNFIT_TOPIC, self._on_unfit)
        client.subscribe_topic(DIED_TOPIC, self._on_died)

    def batch(self, prefix: str | None) -> None:
        """Count the losses of the batch whose task keys start with ``prefix`` from now on (``None``: no batch)."""
        self.prefix = prefix
        if prefix is not None:
            self.lost = 0

    def stop(self) -> None:
        """Stop listening (before the client closes: else the scheduler reports the client's own leaving)."""
        self.client.unsubscribe_topic("all")
        self.client.unsubscribe_topic(UNFIT_TOPIC)
        self.client.unsubscribe_topic(DIED_TOPIC)

    def _on_event(self, event: tuple[float, Any]) -> None:
        _, message = event
        if self.prefix is None or not isinstance(message, dict) or message.get("action") != "remove-worker":
            return
        # Any worker lost unasked while the batch runs: whether it held one of the batch's chunks at that moment
        # is a race between its last result and its death (a test that counted only those saw 0 one time in 4).
        if not message.get("expected"):
            self.lost += 1

    def _on_unfit(self, event: tuple[float, Any]) -> None:
        _, message = event
        if isinstance(message, dict):
            self.unfit[str(message.get("worker"))] = str(message.get("why"))

    def _on_died(self, event: tuple[float, Any]) -> None:
        _, message = event
        if isinstance(message, dict) and isinstance(message.get("index"), int):
            self.died.append((str(message.get("worker")), str(message.get("key")), message["index"]))


class DaskRunner(Runner):
    """Chunks of projects as Dask tasks: workers warmed once by a worker plugin, chunks sized from the measured
    cost per project, a bounded number in flight, results yielded as they complete. A worker that dies takes
    its tasks with it and the scheduler runs them elsewhere; the project a worker process was making when it
    died (its nanny's next process says which: :class:`MakingNote`) is made again alone, and fails, named, when
    it kills another; a chunk on which Dask gives up (``KilledWorker``, on workers without a nanny) is split.

    Chunks ask for Dask resources that only fit workers hold: warmed (:class:`WarmWorker`) and, where the workers
    write the reports, seeing the output folder (:class:`SeesOutput`); a worker that joins unfit is named once,
    in a warning, and gets no chunk. A cluster left with no fit worker for :data:`WORKERS_TIMEOUT_S`, or whose
    scheduler is lost, stops the batch (:class:`ClusterLost`)."""

    def __init__(self, config: WorkerConfig, options: StrategyOptions, policy: ChunkPolicy | None = None) -> None:
        self.config = config
        self.options = options
        self.policy = policy or ChunkPolicy()
        self._timeouts = dask.config.set({"distributed.comm.timeouts.connect": f"{WORKER_CONNECT_TIMEOUT_S:g}s"})
        self._quiet = _QuietDask()
        try:
            self.client, self.cluster = connect(options)
        except BaseException:
            self._quiet.restore()
            self._timeouts.__exit__(None, None, None)
            raise
        self._quiet.loop(self.client)
        self.address = scheduler_address(options.scheduler) or str(self.cluster and self.cluster.scheduler_address)
        self.plugin = f"zerosite-{uuid.uuid4().hex}"
        self.keys = itertools.count()
        self._batch = _Batch()
        self._heard: dict[str, tuple[float, float]] = {}
        """Per worker, the scheduler's last word of it (its ``last_seen``) and when that last changed, here."""
        self._silent: set[str] = set()
        """The workers unheard for :data:`SILENT_S`: their threads not counted, dropped if they hold a chunk."""
        self._warned: set[str] = set()
        try:
            self.events = _ClusterEvents(self.client)
            expected = LoadedCode.now(config)  # what this process loaded: what the content hashes cover
            warm = WarmWorker(config, self.plugin, ignore_sigint=self.cluster is not None, expected=expected)
            self._register(warm, self.plugin)
            self._resources = {self.plugin: 1}
            self.overhead_ms = self._task_overhead_ms()
        except BaseException as error:  # Ctrl-C too: the cluster is closed either way
            plain = isinstance(error, Exception) and not isinstance(error, UnfitWorker)
            unloaded = self._without_zerosite() if plain else []
            self.close()
            if isinstance(error, UnfitWorker):
                raise StartError(str(error)) from None
            if unloaded:
                raise StartError(
                    f"Dask worker(s) {'; '.join(unloaded)}: install zerosite there, the same version as here "
                    "(pip install 'zerosite[dask]' on each worker's machine), and restart the worker"
                ) from None
            if isinstance(error, Exception):
                raise StartError(f"the Dask workers could not be warmed: {describe_error(error)}") from None
            raise

    @property
    def restarts(self) -> int:
        return self.events.lost

    @property
    def workers(self) -> int | None:
        """The most worker threads that could take the last batch's chunks at any time it asked; ``None`` before any
        batch (a worker lost near the end made the summary say ``dask x1`` of a batch made mostly on two)."""
        return self._batch.most_threads or None

    def run(self, projects: Iterable[Project], files: ReportWriter | None = None) -> Iterator[ProjectResult]:
        batch = uuid.uuid4().hex
        with self._fit_workers(files, batch) as resources:
            yield from self._run(projects, files, batch, resources)

    def _run(
        self, projects: Iterable[Project], files: ReportWriter | None, batch: str, resources: dict[str, int]
    ) -> Iterator[ProjectResult]:
        sizer = ChunkSizer(self.policy, self.options.chunksize, self.overhead_ms)
        taper = Taper(projects)
        self._batch = _Batch(prefix=f"zerosite-chunk-{batch}-")
        chunks = self._batch.chunks
        done = as_completed(loop=self.client.loop)

        def submit(chunk: list[Project]) -> None:
            key = f"{self._batch.prefix}{next(self.keys)}"
            future = self.client.submit(make_chunk, self.plugin, chunk, files, key=key, pure=False, resources=resources)
            chunks[future] = self._batch.sent[key] = chunk
            done.add(future)

        self._batch.submit = submit

        def top_up() -> None:
            while True:
                threads = max(1, self._threads_now(resources))
                if len(chunks) >= (self.options.in_flight or TASKS_PER_THREAD * threads):
                    return
                chunk = taper.take(sizer.size(threads), threads)
                if not chunk:
                    return
                submit(chunk)

        self.events.batch(self._batch.prefix)
        try:
            top_up()
            while chunks:
                self._watch(resources)
                blamed = self._blamed()
                if blamed:
                    yield from blamed
                    top_up()
                future = _next_done(done)
                if future is not None and future in chunks:  # not one parked, cancelled and sent again
                    self._batch.parked.progress()
                    results = self._outcome(future, chunks[future], sizer, submit, resources)
                    chunks.pop(future, None)
                    self._batch.sent.pop(str(future.key), None)
                    yield from results
                    top_up()
        finally:
            self._stop_chunks()
            self.events.batch(None)
            self._batch.submit = _no_submit

    @contextlib.contextmanager
    def _fit_workers(self, files: ReportWriter | None, batch: str) -> Iterator[dict[str, int]]:
        """The resources a batch's chunks ask for: a warm worker's, and where workers of another cluster are to
        write, one that only the workers that see the output folder get, for as long as the batch runs (a worker
        present now that does not see it refuses the batch)."""
        if self.cluster is not None or not isinstance(files, ReportFiles):
            yield self._resources
            return
        probe = files.out_dir / f".zerosite-probe-{batch}.tmp"  # a stale one goes with the temporary files
        sees = f"zerosite-sees-{batch}"
        probe.touch()
        try:
            try:
                self._register(SeesOutput(files.out_dir, probe.name, sees), sees)
            except UnfitWorker:
                seen = self.client.run(sees_folder, files.out_dir, probe.name)
                blind = sorted(worker for worker, sees in seen.items() if not sees) or ["(one that left)"]
                raise StartError(
                    f"Dask worker(s) {', '.join(blind)} do not see the output folder {files.out_dir}, or cannot "
                    "write there: give "
                    "--hand-back (the workers hand each report back and this process writes it), or put --out on "
                    "a filesystem that every worker mounts at the same path"
                ) from None
            yield {**self._resources, sees: 1}
        finally:
            if self.client.status == "running":
                with contextlib.suppress(Exception):
                    self.client.unregister_worker_plugin(sees)
                    self.client.run_on_scheduler(forget_resources, [sees])
            probe.unlink(missing_ok=True)

    def _outcome(
        self,
        future: Future[ChunkResult],
        chunk: list[Project],
        sizer: ChunkSizer,
        submit: _Submit,
        resources: dict[str, int],
    ) -> list[ProjectResult]:
        """What a finished task gives: its chunk's results; for a chunk Dask gave up on, each of its projects
        sent again alone (nothing yet), or the lone project's failure; for a result that could not come back, the
        chunk sent once more, then every project failed."""
        try:
            outcome = self._result(future, resources)
        except _SentAgain:  # parked by Dask while its result was awaited, and sent again
            return []
        except ChunkCancelled:  # released on its worker while it ran, yet still wanted: sent again
            submit(chunk)
            return []
        except KilledWorker as error:
            if len(chunk) > 1:
                for project in chunk:
                    submit([project])
                return []
            why = f"worker died while making project {chunk[0].id}: {error}"
            return [ProjectResult.failed(chunk[0], self.config.reports, why)]
        except (Exception, asyncio.CancelledError) as error:  # a result that could not come back
            # Dask gathers again, elsewhere, a result lost with a worker: what it raises is the scheduler's loss,
            # seen as the client's state, its cancelling reason, or (before the client has noticed) a comm error;
            # a comm error is also what gathering from a worker just killed gives: the scheduler is asked.
            lost = "scheduler-connection-lost" in error_message(error)
            lost = lost or (isinstance(error, OSError) and not self._scheduler_answers())
            if lost or self.client.status != "running":
                raise self._lost_scheduler() from None
            ids = tuple(project.id for project in chunk)
            if ids not in self._batch.sent_again:  # once more: a worker lost with it, the cluster watched meanwhile
                self._batch.sent_again.add(ids)
                submit(chunk)
                return []
            why = f"making project failed: {describe_error(error)}"
            return [ProjectResult.failed(project, self.config.reports, why) for project in chunk]
        sizer.observe(len(chunk), outcome.busy_ns)
        return outcome.results()

    def _blamed(self) -> list[ProjectResult]:
        """Act on what the worker processes that died were making, as their nannies' next ones said: a project
        in a chunk still in flight is taken out of it and made again alone (the rest of the chunk, without it,
        goes again as one), and one that took :data:`DEATHS_MOST` workers down fails, named. Dask's own count
        cannot say this (it counts every task a dead worker held, and a task sent again starts it anew). The
        deaths said meanwhile are all counted first: two workers that died on the same project restart together,
        and a lone task sent for it after the first would be cancelled as it started."""
        blamed: dict[str, tuple[Project, str]] = {}
        while self.events.died:
            worker, key, index = self.events.died.popleft()
            chunk = self._batch.sent.get(key)
            if chunk is not None and 0 <= index < len(chunk):  # else another batch's or client's
                project = chunk[index]
                self._batch.deaths[project.id] += 1
                blamed[project.id] = (project, worker)
        failed: list[ProjectResult] = []
        for project, worker in blamed.values():
            holding = next((future for future, held in self._batch.chunks.items() if project in held), None)
            if holding is None:
                continue  # made meanwhile (another worker made it: a worker killed from outside), or failed
            deaths = self._batch.deaths[project.id]
            held = self._batch.chunks[holding]
            if deaths < DEATHS_MOST and len(held) == 1:
                continue  # alone already: Dask sends it again
            self._batch.chunks.pop(holding)
            self._cancel([holding])
            rest = [other for other in held if other is not project]
            if rest:
                self._batch.submit(rest)
            if deaths < DEATHS_MOST:
                self._batch.submit([project])
                continue
            # Failed only once no task that held it runs (one may still write a report of it, then die): the
            # engine then removes its reports' files, and none comes after.
            self._wait_ended(frozenset(key for key, chunk in self._batch.sent.items() if project in chunk))
            why = (
                f"worker died while making project {project.id}: it ended {deaths} Dask worker processes "
                f"(the last {worker}), each restarted by its nanny"
            )
            failed.append(ProjectResult.failed(project, self.config.reports, why))
        return failed

    def _result(self, future: Future[ChunkResult], resources: dict[str, int]) -> ChunkResult:
        """The finished task's result. Its worker may be lost before the result is gathered: Dask then runs the task
        again, and the wait is the batch's, with the cluster watched meanwhile (a cluster left with no worker
        stops the batch instead of holding it for ever)."""
        while True:
            try:
                return future.result(timeout=CLUSTER_CHECK_S)
            except TimeoutError:
                self._watch(resources)
                if future not in self._batch.chunks:
                    raise _SentAgain from None

    def _without_zerosite(self) -> list[str]:
        """The workers that cannot load zerosite, each with why (``tcp://...: ModuleNotFoundError: ...``): the
        warm-up plugin, zerosite's own, cannot even be unpacked there, and Dask's error names no worker."""

        def zerosite_loads() -> bool | str:  # a local function travels by value: it runs where zerosite is missing
            import importlib

            try:
                importlib.import_module("zerosite.dask_strategy.tasks")
            except Exception as error:
                return f"{type(error).__name__}: {error}"
            return True

        try:
            found = self.client.run(zerosite_loads, on_error="return")
        except Exception:
            return []
        return [
            f"{worker} cannot load zerosite ({describe_error(answer) if isinstance(answer, BaseException) else answer})"
            for worker, answer in sorted(found.items())
            if answer is not True
        ]

    def _register(self, plugin: WorkerPlugin, name: str) -> None:
        """Register a worker plugin on the cluster's workers and on those that join later. A worker lost while Dask
        sends the plugin out is a lost worker, not the batch's end: the scheduler, whose broadcast then fails,
        drops the client's connection too (a comm error here; a user audit's batch refused to start, exit 2), but
        it keeps the plugin for the workers that join, that worker's next process too.

        :raises UnfitWorker: a worker present refused the plugin, saying why.
        """
        try:
            self.client.register_plugin(plugin, name=name)
        except OSError:  # Dask's CommClosedError too
            if not self._scheduler_answers():
                raise

    def _scheduler_answers(self) -> bool:
        """Whether the scheduler still answers the client."""
        try:
            self.client.scheduler_info(n_workers=0)
        except Exception:
            return False
        return self.client.status == "running"

    def _lost_scheduler(self) -> ClusterLost:
        return ClusterLost(
            f"lost the Dask scheduler at {self.address} mid-batch; the projects in flight were discarded: "
            "run the same command again to resume"
        )

    def _watch(self, resources: dict[str, int]) -> None:
        """Warn once of each worker that cannot take chunks; stop the batch when the scheduler is lost, or when no
        worker that can take its chunks has been there for :data:`WORKERS_TIMEOUT_S`."""
        for worker, why in list(self.events.unfit.items()):
            if worker not in self._warned:
                self._warned.add(worker)
                warnings.warn(
                    f"zerosite: Dask worker {worker} {why}; it gets none of this batch's chunks",
                    UnfitWorkerWarning,
                    stacklevel=2,
                )
        if self._threads_now(resources):
            self._batch.none_since = None
            self._drop_silent()
            self._send_parked_again(resources)
            return
        now = time.monotonic()
        if self._batch.none_since is None:
            self._batch.none_since = now
        elif now - self._batch.none_since >= WORKERS_TIMEOUT_S:
            unfit = "; ".join(f"{worker} {why}" for worker, why in sorted(self.events.unfit.items()))
            raise ClusterLost(
                f"the Dask scheduler at {self.address} has had no worker that can take this batch's chunks for "
                f"{WORKERS_TIMEOUT_S:g} s{f' ({unfit})' if unfit else ''}; the projects in flight were discarded: "
                f"start workers with `dask worker {self.address} --nthreads 1` and run the same command again"
            )

    def _send_parked_again(self, resources: dict[str, int]) -> None:
        """Send again, under new keys, the chunks that Dask has left on no worker's list for :data:`PARKED_S` while
        workers that can take them are there (dask/distributed#6677: a worker restarted by its nanny gains the
        batch's resources, and Dask does not look at its parked tasks again). A parked chunk has run nowhere, so
        its projects are made once; chunks still parked after :data:`PARKED_MOST` tries stop the batch, naming the
        cause. Asked of the scheduler only while no chunk has finished for :data:`CLUSTER_CHECK_S`."""
        parked = self._batch.parked
        now = time.monotonic()
        if not self._batch.chunks or now - max(parked.progress_at, parked.checked_at) < CLUSTER_CHECK_S:
            return
        parked.checked_at = now
        try:
            processing = {key for keys in self.client.processing().values() for key in keys}
        except Exception:
            if self.client.status != "running":
                raise self._lost_scheduler() from None
            return  # asked again at the next check
        stuck = {future for future in self._batch.chunks if not future.done() and future.key not in processing}
        if not stuck:
            parked.since = None
            return
        if parked.since is None or not stuck & parked.seen:
            parked.since, parked.seen = now, stuck
            return
        parked.seen &= stuck
        if now - parked.since < PARKED_S:
            return
        if parked.tries >= PARKED_MOST:
            raise ClusterLost(
                f"the Dask scheduler at {self.address} keeps {len(parked.seen)} of this batch's chunks waiting for "
                f"a worker although {self._threads_now(resources)} worker thread(s) can take them (sent again "
                f"{parked.tries} times; a worker restarted mid-batch, dask/distributed#6677); the projects in "
                "flight were discarded: restart the Dask workers and run the same command again (where workers "
                "without a nanny died each time such a chunk ran, a project in it may be killing them: Dask gives up "
                "on its task only on 4 workers or more; --strategy process fails it alone, named)"
            )
        parked.tries += 1
        for future in sorted(parked.seen, key=lambda future: str(future.key)):
            chunk = self._batch.chunks.pop(future)
            self._cancel([future])
            self._batch.submit(chunk)
        parked.since, parked.seen = None, set()

    def _threads_now(self, resources: dict[str, int]) -> int:
        """The worker threads that can take this batch's chunks (their workers hold ``resources``), asked of the
        scheduler at most every :data:`CLUSTER_CHECK_S`."""
        checked, threads = self._batch.threads
        if time.monotonic() - checked > CLUSTER_CHECK_S:
            if self.client.status != "running":
                raise self._lost_scheduler()
            try:
                workers = self.client.scheduler_info(n_workers=-1)["workers"]
            except Exception:
                if self.client.status != "running":
                    raise self._lost_scheduler() from None
                raise
            self._listen(workers)
            threads = sum(
                worker["nthreads"]
                for address, worker in workers.items()
                if address not in self._silent
                and all(worker.get("resources", {}).get(name, 0) >= need for name, need in resources.items())
            )
            self._batch.threads = (time.monotonic(), threads)
            self._batch.most_threads = max(self._batch.most_threads, threads)
        return threads

    def _listen(self, workers: dict[str, dict[str, Any]]) -> None:
        """Note which ``workers`` (the scheduler's word of each) have gone unheard for :data:`SILENT_S`."""
        now = time.monotonic()
        heard = {}
        for address, worker in workers.items():
            last_seen = float(worker.get("last_seen", 0.0))
            before = self._heard.get(address)
            heard[address] = before if before is not None and before[0] == last_seen else (last_seen, now)
        self._heard = heard
        self._silent = {address for address, (_, changed) in heard.items() if now - changed >= SILENT_S}

    def _drop_silent(self) -> None:
        """Have the scheduler drop each worker unheard for :data:`SILENT_S` that holds one of the batch's chunks, as
        Dask does with a worker it lost: its chunks run elsewhere (each report is still written once: a chunk run
        again writes the same bytes, and its projects are indexed once, from the run whose result comes). Named
        once, in a warning. A worker that wakes up later joins the cluster again."""
        if not self._silent or not self._batch.chunks:
            return
        try:
            processing = self.client.processing(workers=sorted(self._silent))
        except Exception:
            return  # asked again at the next check
        keys = {str(future.key) for future in self._batch.chunks}
        for address, held in processing.items():
            if not keys.intersection(map(str, held)):
                continue
            warnings.warn(
                f"zerosite: Dask worker {address} has not been heard from for {SILENT_S:g} s (frozen, stopped or "
                "cut off) while it held chunks of this batch: the scheduler dropped it, and its chunks run elsewhere",
                UnfitWorkerWarning,
                stacklevel=3,
            )
            with contextlib.suppress(Exception):
                self.client.run_on_scheduler(drop_worker, address)
            self._heard.pop(address, None)
            self._silent.discard(address)

    def _stop_chunks(self) -> None:
        """Cancel the chunks still in flight (a batch stopped: the engine discards their projects), and wait, at
        most :data:`STOP_WAIT_S`, for those running to end: each stops before its next write, so that once the
        engine has discarded the projects' files none is written that the index does not have."""
        chunks, self._batch.chunks = list(self._batch.chunks), {}
        if not chunks or self.client.status != "running":
            return
        self._cancel(chunks)
        self._wait_ended()

    def _cancel(self, futures: list[Future[ChunkResult]]) -> None:
        """Cancel the tasks of ``futures``, and keep them to cancel again (:meth:`_wait_ended`): the scheduler takes
        a task's graph in the background, and a cancel that reaches it first is lost (the task runs all the same:
        a chunk sent again and cancelled at once wrote a report of a project already failed)."""
        self._batch.cancelled.update((str(future.key), future) for future in futures)
        with contextlib.suppress(Exception):  # a cluster that fails here has nothing more to stop
            self.client.cancel(futures)

    def _wait_ended(self, keys: frozenset[str] | None = None) -> None:
        """Wait, at most :data:`STOP_WAIT_S`, until no task of the batch (of ``keys``, given them) is left to run:
        the scheduler holds none to send to a worker (those it holds although cancelled are cancelled again), and
        no worker runs one (a cancelled one stops before its next write, one that kills its worker ends with it),
        for at least :data:`SETTLE_S`. Not past the command's hurry (a second Ctrl-C, or its grace): a stopped batch
        waited on, the command's forced exit came first, and the engine never discarded the projects in flight
        (their files stayed, unindexed)."""
        started = time.monotonic()
        while time.monotonic() - started < STOP_WAIT_S and not hurried() and self.client.status == "running":
            try:
                held = self.client.run_on_scheduler(tasks_to_run, self._batch.prefix, keys=keys)
                lost = [self._batch.cancelled[key] for key in held if key in self._batch.cancelled]
                if lost:
                    self.client.cancel(lost)
                running = sum(self.client.run(chunks_running, self._batch.prefix, keys=keys).values())
                if not held and not running and time.monotonic() - started >= SETTLE_S:
                    return
            except Exception:  # a worker lost as it was asked: asked again
                pass
            time.sleep(POLL_S)

    def _task_overhead_ms(self) -> float:
        """Dask's cost per task on this cluster now: the wall time of a stream of no-op tasks, per task, sent once
        a worker is warm. Tasks sent while none is are parked by Dask for good (dask/distributed#6677): a stream
        that has not ended in :data:`WORKERS_TIMEOUT_S` (a worker lost under it) is sent once more, then the
        batch refuses to start, never a silent wait.

        :raises StartError: no worker warm for :data:`WORKERS_TIMEOUT_S`, or the stream did not end twice.
        """
        for attempt in (1, 2):
            count = min(CALIBRATION_TASKS_MOST, CALIBRATION_TASKS_PER_THREAD * self._warm_threads())
            started = time.perf_counter()
            futures = [
                self.client.submit(
                    _nothing, i, key=f"zerosite-calibrate-{self.plugin}-{attempt}-{i}", resources=self._resources
                )
                for i in range(count)
            ]
            deadline = started + WORKERS_TIMEOUT_S
            try:
                for future in futures:
                    future.result(timeout=max(0.0, deadline - time.perf_counter()))
            except TimeoutError:
                self.client.cancel(futures)
                continue
            return (time.perf_counter() - started) * 1e3 / count
        raise StartError(
            f"the Dask workers of the scheduler at {self.address} did not run {count} no-op tasks in "
            f"{WORKERS_TIMEOUT_S:g} s, twice (workers lost as the batch started?): run the same command again"
        )

    def _warm_threads(self) -> int:
        """The worker threads warm for the batch, once there is one.

        :raises StartError: none for :data:`WORKERS_TIMEOUT_S` (every worker lost while they were warmed).
        """
        deadline = time.monotonic() + WORKERS_TIMEOUT_S
        while not (threads := self._threads_now(self._resources)):
            if time.monotonic() > deadline:
                raise StartError(
                    f"no Dask worker of the scheduler at {self.address} was warm {WORKERS_TIMEOUT_S:g} s after the "
                    "workers were asked to load the plugins (lost meanwhile?): run the same command again"
                )
            time.sleep(POLL_S)
        return threads

    def close(self) -> None:
        try:
            self._stop_chunks()  # a batch stopped in the engine's hands (Ctrl-C while it indexed) ends here first
            if self.client.status == "running":
                with contextlib.suppress(Exception):  # the plugin is gone with a local cluster anyway
                    self.events.stop()
                    if self.cluster is None:
                        self.client.unregister_worker_plugin(self.plugin)
                        self.client.run_on_scheduler(forget_resources, [self.plugin])
        finally:
            try:
                # A client whose scheduler is gone has nothing left to close; Dask logs its reconnection, cancelled
                # here, as an error with a traceback (kept quiet, as all of Dask's records are until the end of this
                # close: _QuietDask): the batch's own error has said what happened.
                with contextlib.suppress(Exception):
                    self.client.close(timeout=CONNECT_TIMEOUT_S)
            finally:
                try:
                    if self.cluster is not None:
                        self.cluster.close()
                finally:
                    self._timeouts.__exit__(None, None, None)  # Dask's own setting back
                    self._quiet.restore()


class _QuietDask:
    """While ZeroSite drives a Dask client, Dask's own log records (a worker lost, a result gathered again, a
    plugin's set-up cut short by a stop: records of its scheduler, client and workers in this process, some with
    tracebacks) are below the user's concern: the runner says what matters in one line. Its loggers are raised to
    CRITICAL meanwhile, and the client loop's tasks that end with Dask's own exceptions once the client closes
    ("Task exception was never retrieved ... AllExit") are not reported."""

    def __init__(self) -> None:
        names = ["distributed", *(name for name in logging.root.manager.loggerDict if name.startswith("distributed."))]
        self.levels = {name: logging.getLogger(name).level for name in names}
        for name in names:
            logging.getLogger(name).setLevel(logging.CRITICAL)

    def loop(self, client: Client) -> None:
        """Leave out of the client loop's unretrieved exceptions those of Dask's own tasks (for good: they are
        collected after the client closes)."""
        with contextlib.suppress(Exception):
            loop: asyncio.AbstractEventLoop = client.loop.asyncio_loop  # type: ignore[union-attr]
            loop.set_exception_handler(_dask_exceptions_left_out)

    def restore(self) -> None:
        for name, level in self.levels.items():
            logging.getLogger(name).setLevel(level)


def _dask_exceptions_left_out(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    error = context.get("exception")
    if isinstance(error, asyncio.CancelledError | OSError) or type(error).__module__.startswith("distributed"):
        return
    loop.default_exception_handler(context)


def _next_done(done: as_completed) -> Future[ChunkResult] | None:
    """The next finished task of ``done``, or ``None`` when none finished within :data:`POLL_S` (as_completed's own
    iterator waits without end: the runner looks at the cluster meanwhile)."""
    if not done.has_ready():
        with done.thread_condition:  # notified by as_completed as each task finishes
            done.thread_condition.wait(timeout=POLL_S)
        if not done.has_ready():
            return None
    future: Future[ChunkResult] = next(done)
    return future
