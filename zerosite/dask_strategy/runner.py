"""The client side of the dask strategy: the cluster to run on, and a runner that streams chunks through it."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import dask.config
from distributed import Client, Future, LocalCluster, as_completed
from distributed.comm.addressing import get_address_host_port, parse_address
from distributed.scheduler import KilledWorker

from zerosite.chunking import Taper
from zerosite.dask_strategy.chunks import ChunkPolicy, ChunkSizer
from zerosite.dask_strategy.tasks import ChunkResult, WarmWorker, make_chunk, sees_folder
from zerosite.files import ReportFiles
from zerosite.project import Project
from zerosite.types import (
    ProjectResult,
    ReportWriter,
    Runner,
    StartError,
    StrategyOptions,
    WorkerConfig,
    describe_error,
)

__all__ = ["CONNECT_TIMEOUT_S", "SCHEDULER_ENV", "WORKERS_TIMEOUT_S", "DaskRunner", "connect"]

SCHEDULER_ENV = "ZEROSITE_DASK_SCHEDULER"
"""The scheduler's address when ``--scheduler`` is not given."""

CONNECT_TIMEOUT_S = 5.0
"""How long to try to reach a scheduler before saying it cannot be reached."""

WORKERS_TIMEOUT_S = 10.0
"""How long to wait for a reachable scheduler to have at least one worker."""

CLUSTER_CHECK_S = 1.0
"""How often the runner asks the scheduler how many worker threads there are (to bound the work in flight)."""

LOCAL_WORKER_CONFIG = {"distributed.worker.profile.enabled": False}
"""Dask settings for the workers of a local cluster: no statistical profiler (it samples every thread's stack
every 10 ms, under the GIL, and slowed reports several times over here)."""

TASKS_PER_THREAD = 2
"""Tasks in flight per worker thread: one running, one waiting, so no worker idles between tasks."""

CALIBRATION_TASKS_PER_THREAD = 8
"""No-op tasks per worker thread sent when the runner starts, to measure Dask's cost per task here ..."""

CALIBRATION_TASKS_MOST = 256
"""... and no more than this many."""


def connect(options: StrategyOptions) -> tuple[Client, LocalCluster | None]:
    """A client of the scheduler at ``options.scheduler`` (else ``$ZEROSITE_DASK_SCHEDULER``), or of a local
    cluster of ``options.workers`` single-threaded worker processes started here (returned too, to close).

    :raises StartError: the scheduler cannot be reached within :data:`CONNECT_TIMEOUT_S`, or has no worker.
    """
    address = options.scheduler or os.environ.get(SCHEDULER_ENV) or None
    if address is None:
        with dask.config.set(LOCAL_WORKER_CONFIG):  # the nannies keep it for the workers they start
            cluster = LocalCluster(
                n_workers=options.workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=":0",  # None still binds :8787 (dask/distributed#8136): a free port, no clash
                silence_logs=logging.ERROR,
            )
        return Client(cluster, set_as_default=False), cluster
    try:
        _knock(address)
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


_Submit = Callable[[list[Project]], None]
"""Sends a chunk of projects to the cluster as one task."""


def _nothing(i: int) -> int:
    return i


def _knock(address: str) -> None:
    """Knock at a ``tcp://`` scheduler's door before Dask's client does: a refused connection fails at once (the
    client would retry until its timeout), and a port that takes the connection but never speaks within the
    timeout (the client would wait for its handshake forever) is no scheduler that can be used."""
    scheme, _ = parse_address(address)
    if scheme != "tcp":
        return
    deadline = time.monotonic() + CONNECT_TIMEOUT_S
    with socket.create_connection(get_address_host_port(address), timeout=CONNECT_TIMEOUT_S) as door:
        door.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            answered = door.recv(1)  # a Dask server sends its handshake as soon as it accepts
        except TimeoutError:
            raise TimeoutError(f"no answer within {CONNECT_TIMEOUT_S:g} s") from None
        if not answered:
            raise ConnectionError("it closed the connection without answering")


class _LostWorkers:
    """Counts the workers the scheduler lost without being asked to (killed, crashed, unreachable)."""

    def __init__(self, client: Client) -> None:
        self.count = 0
        self.client = client
        client.subscribe_topic("all", self._on_event)

    def stop(self) -> None:
        """Stop listening (before the client closes: else the scheduler reports the client's own leaving)."""
        self.client.unsubscribe_topic("all")

    def _on_event(self, event: tuple[float, Any]) -> None:
        _, message = event
        if isinstance(message, dict) and message.get("action") == "remove-worker" and not message.get("expected"):
            self.count += 1


class DaskRunner(Runner):
    """Chunks of projects as Dask tasks: workers warmed once by a worker plugin, chunks sized from the measured
    cost per project, a bounded number in flight, results yielded as they complete. A worker that dies takes
    its tasks with it and the scheduler runs them elsewhere; a chunk that kills workers again and again
    (Dask then gives up on it: ``KilledWorker``) is split, and a project that does so alone fails, named."""

    def __init__(self, config: WorkerConfig, options: StrategyOptions, policy: ChunkPolicy | None = None) -> None:
        self.config = config
        self.options = options
        self.policy = policy or ChunkPolicy()
        self.client, self.cluster = connect(options)
        self.plugin = f"zerosite-{uuid.uuid4().hex}"
        try:
            self.lost = _LostWorkers(self.client)
            self.client.register_plugin(WarmWorker(config, self.cluster is not None), name=self.plugin)
            self.keys = itertools.count()
            self._threads = (0.0, 0)
            self.overhead_ms = self._task_overhead_ms()
        except Exception as error:
            self.close()
            raise StartError(f"the Dask workers could not be warmed: {describe_error(error)}") from None

    @property
    def restarts(self) -> int:
        return self.lost.count

    def run(self, projects: Iterable[Project], files: ReportWriter | None = None) -> Iterator[ProjectResult]:
        self._check_output(files)
        sizer = ChunkSizer(self.policy, self.options.chunksize, self.overhead_ms)
        taper = Taper(projects)
        chunks: dict[Future[ChunkResult], list[Project]] = {}
        done = as_completed(loop=self.client.loop)

        def submit(chunk: list[Project]) -> None:
            key = f"zerosite-chunk-{self.plugin}-{next(self.keys)}"
            future = self.client.submit(make_chunk, self.plugin, chunk, files, key=key, pure=False)
            chunks[future] = chunk
            done.add(future)

        def top_up() -> None:
            while True:
                threads = self._threads_now()
                if len(chunks) >= (self.options.in_flight or TASKS_PER_THREAD * threads):
                    return
                chunk = taper.take(sizer.size(threads), threads)
                if not chunk:
                    return
                submit(chunk)

        try:
            top_up()
            for future in done:
                yield from self._outcome(future, chunks.pop(future), sizer, submit)
                top_up()
        finally:
            if chunks:
                self.client.cancel(list(chunks))

    def _outcome(
        self, future: Future[ChunkResult], chunk: list[Project], sizer: ChunkSizer, submit: _Submit
    ) -> list[ProjectResult]:
        """What a finished task gives: its chunk's results; for a chunk Dask gave up on, each of its projects
        sent again alone (nothing yet), or the lone project's failure; for a result lost, every project failed."""
        try:
            outcome: ChunkResult = future.result()
        except KilledWorker as error:
            if len(chunk) > 1:
                for project in chunk:
                    submit([project])
                return []
            why = f"worker died while making project {chunk[0].id}: {error}"
            return [ProjectResult.failed(chunk[0], self.config.reports, why)]
        except (Exception, asyncio.CancelledError) as error:  # a result that could not come back
            why = f"making project failed: {describe_error(error)}"
            return [ProjectResult.failed(project, self.config.reports, why) for project in chunk]
        sizer.observe(len(chunk), outcome.busy_ns)
        return outcome.results()

    def _threads_now(self) -> int:
        """The cluster's worker threads, asked of the scheduler at most every :data:`CLUSTER_CHECK_S`."""
        checked, threads = self._threads
        if time.monotonic() - checked > CLUSTER_CHECK_S:
            threads = max(1, sum(self.client.nthreads().values()))
            self._threads = (time.monotonic(), threads)
        return threads

    def _task_overhead_ms(self) -> float:
        """Dask's cost per task on this cluster now: the wall time of a stream of no-op tasks, per task."""
        count = min(CALIBRATION_TASKS_MOST, CALIBRATION_TASKS_PER_THREAD * self._threads_now())
        started = time.perf_counter()
        self.client.gather(
            [self.client.submit(_nothing, i, key=f"zerosite-calibrate-{self.plugin}-{i}") for i in range(count)]
        )
        return (time.perf_counter() - started) * 1e3 / count

    def _check_output(self, files: ReportWriter | None) -> None:
        """Where workers of another cluster are to write, make sure each one sees the output folder."""
        if self.cluster is not None or not isinstance(files, ReportFiles):
            return
        probe = f".zerosite-probe-{uuid.uuid4().hex}"
        (files.out_dir / probe).touch()
        try:
            seen = self.client.run(sees_folder, files.out_dir, probe)
        finally:
            (files.out_dir / probe).unlink()
        blind = sorted(worker for worker, sees in seen.items() if not sees)
        if blind:
            raise StartError(
                f"Dask worker(s) {', '.join(blind)} do not see the output folder {files.out_dir}: give --hand-back "
                "(the workers hand each report back and this process writes it), or put --out on a filesystem "
                "that every worker mounts at the same path"
            )

    def close(self) -> None:
        try:
            with contextlib.suppress(Exception):  # the plugin is gone with a local cluster anyway
                self.lost.stop()
                if self.cluster is None:
                    self.client.unregister_worker_plugin(self.plugin)
        finally:
            try:
                self.client.close()
            finally:
                if self.cluster is not None:
                    self.cluster.close()
