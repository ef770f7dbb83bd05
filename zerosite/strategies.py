"""Concurrency strategies, registered as plugins: how a batch of projects is spread over workers."""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import contextlib
import ctypes
import itertools
import multiprocessing
import multiprocessing.connection
import multiprocessing.util
import os
import signal
import sys
import threading
import time
from collections.abc import AsyncGenerator, Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

from zerosite import hookimpl
from zerosite.project import Project
from zerosite.types import ProjectResult, ReportWriter, Runner, Strategy, StrategyOptions, WorkerConfig
from zerosite.worker import Worker, make_worker, open_source, warm_process

__all__ = [
    "AsyncStrategy",
    "InterpreterStrategy",
    "ProcessStrategy",
    "Runner",
    "SequentialStrategy",
    "Strategy",
    "StrategyOptions",
    "ThreadStrategy",
    "default_start_method",
]

MAX_ATTEMPTS = 3
"""How often work is sent to a pool whose worker died under it before its reports are failed."""

PARENT_POLL_S = 0.5
"""Where the kernel cannot end a pool worker with its parent, how often the worker looks whether it was orphaned."""

T = TypeVar("T")


def bounded(
    submit: Callable[[T], cf.Future[Any]], items: Iterable[T], limit: int
) -> Iterator[tuple[T, cf.Future[Any]]]:
    """Submit ``items`` with at most ``limit`` in flight; yield ``(item, future)`` as each completes."""
    pending: dict[cf.Future[Any], T] = {}
    source = iter(items)
    try:
        for item in itertools.islice(source, limit):
            pending[submit(item)] = item
        while pending:
            done, _ = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
            for future in done:
                yield pending.pop(future), future
                for item in itertools.islice(source, 1):
                    pending[submit(item)] = item
    finally:
        for future in pending:
            future.cancel()


def chunked(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive lists of ``size`` items (the last may be shorter), read lazily."""
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


class SequentialStrategy(Strategy):
    name = "sequential"
    description = "One project after another in this process: the baseline every other is compared with."

    def start(self, config: WorkerConfig, options: StrategyOptions) -> Runner:
        return _InlineRunner(make_worker(config))


class _InlineRunner(Runner):
    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    def run(self, projects: Iterable[Project], files: ReportWriter | None = None) -> Iterator[ProjectResult]:
        for project in projects:
            yield self.worker.run(project, files)


class ThreadStrategy(Strategy):
    name = "thread"
    description = (
        "One thread pool for the batch; the GIL runs one thread's Python at a time, so CPU work does not speed up."
    )

    def start(self, config: WorkerConfig, options: StrategyOptions) -> Runner:
        return _ThreadRunner(make_worker(config), options)


class _ThreadRunner(Runner):
    def __init__(self, worker: Worker, options: StrategyOptions) -> None:
        self.worker = worker
        self.options = options
        self.pool = cf.ThreadPoolExecutor(options.workers, thread_name_prefix="zerosite")

    def run(self, projects: Iterable[Project], files: ReportWriter | None = None) -> Iterator[ProjectResult]:
        submit = lambda p: self.pool.submit(self.worker.run, p, files)  # noqa: E731
        for _, future in bounded(submit, projects, self.options.max_in_flight):
            yield future.result()

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def default_start_method() -> str:
    """``fork`` starts fastest, but forking a process that runs threads may deadlock: ``forkserver`` then."""
    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and threading.active_count() == 1:
        return "fork"
    return "forkserver" if "forkserver" in methods else "spawn"


class _Pool:
    """One executor for the whole batch, warmed by an initializer and rebuilt when a worker dies."""

    def __init__(self, factory: Callable[[], cf.Executor]) -> None:
        self.factory = factory
        self.executor = factory()
        self.restarts = 0

    def submit(self, fn: Callable[..., T], *args: Any) -> cf.Future[T]:
        try:
            future = self.executor.submit(fn, *args)
        except cf.BrokenExecutor:
            self.restart(self.executor)
            future = self.executor.submit(fn, *args)
        future.executor = self.executor  # type: ignore[attr-defined]
        return future

    def restart(self, broken: cf.Executor) -> None:
        """Replace ``broken`` unless that was done already (its futures all report the same breakage)."""
        if broken is self.executor:
            broken.shutdown(wait=False, cancel_futures=True)
            self.executor = self.factory()
            self.restarts += 1

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)


_pool_worker: Worker | None = None
"""This pool worker process's worker, made once by the pool's initializer (private to these strategies)."""


def _init_pool_worker(config: WorkerConfig, ignore_sigint: bool = False) -> None:
    """A pool's initializer: warm this worker process once. Process pool workers ignore Ctrl-C, so that
    the parent alone decides how a batch stops; they end with their parent and never wait for threads."""
    global _pool_worker
    if ignore_sigint:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        _end_with_parent()
        _before_joining_threads(_exit_without_waiting_for_threads)
    _pool_worker = warm_process(config)


_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _end_with_parent() -> None:
    """Make this pool worker process die when its parent does, so that a parent killed outright (SIGKILL) leaves
    no orphan holding its caller's pipes.

    Forked by the parent's main thread (``fork``, ``spawn``) on Linux, the kernel sends SIGKILL
    (``PR_SET_PDEATHSIG``). That signal fires when the *thread* that forked this process ends, not the
    process, hence "main thread": pools fork their workers from the thread that submits work, the main
    thread of a batch. Otherwise a daemon thread watches the parent: under ``forkserver`` (the fork server,
    this process's parent, lives on as long as its children hold its pipe, so it cannot be the signal),
    when another thread forked this process, or where there is no ``prctl``.
    """
    parent = multiprocessing.parent_process()  # the process that asked for this worker
    ppid = os.getppid()
    requester = parent.pid if parent is not None and parent.pid is not None else ppid
    forked_by_main_thread = threading.current_thread().name == "MainThread"  # after fork(): the forking thread
    if requester == ppid and forked_by_main_thread and _set_parent_death_signal(signal.SIGKILL):
        if os.getppid() != requester:  # the parent died before the request (the prctl(2) idiom)
            os._exit(1)
        return
    watcher = threading.Thread(target=_watch_parent, args=(ppid, requester), name="zerosite-parent-watch")
    watcher.daemon = True
    watcher.start()


def _set_parent_death_signal(signum: int) -> bool:
    """Ask Linux to send ``signum`` to this process when its parent thread ends; whether it was done."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return False
    return bool(prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0) == 0)


def _watch_parent(ppid: int, requester: int) -> None:
    """A daemon thread's loop: end this worker process at once when the process that asked for it is gone (its
    pipe to this one closed, or no such process) or when another process adopted this one."""
    parent = multiprocessing.parent_process()
    sentinels = [parent.sentinel] if parent is not None and parent.sentinel is not None else []
    while os.getppid() == ppid and not multiprocessing.connection.wait(sentinels, timeout=PARENT_POLL_S):
        try:
            os.kill(requester, 0)
        except ProcessLookupError:
            break
        except PermissionError:
            pass
    os._exit(1)


def _before_joining_threads(func: Callable[[], None]) -> None:
    """Call ``func`` when this process leaves, before Python joins its non-daemon threads. A pool worker joins
    them in ``threading._shutdown``, which runs the functions registered with ``threading._register_atexit``
    first (CPython's own hook, also used by ``concurrent.futures``); multiprocessing's exit finalizers run
    before that join up to Python 3.11 only, so they are the fallback."""
    register = getattr(threading, "_register_atexit", None)
    if callable(register):
        register(func)
    else:
        multiprocessing.util.Finalize(None, func, exitpriority=-100)


def _exit_without_waiting_for_threads() -> None:
    """The last step of a pool worker that is leaving: where plugin code left non-daemon threads running, end
    the process now rather than wait for them forever (the pool, and with it the batch and its index, would
    wait too)."""
    others = [t for t in threading.enumerate() if t is not threading.current_thread() and not t.daemon]
    if any(t.is_alive() for t in others):
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(0)


def _current_pool_worker() -> Worker:
    if _pool_worker is None:
        raise RuntimeError("this process is not a warmed pool worker")
    return _pool_worker


def _run_chunk(projects: Sequence[Project], files: ReportWriter | None = None) -> list[ProjectResult]:
    """Fetch, make and write a chunk of projects (the unit of work sent to a pool)."""
    worker = _current_pool_worker()
    return [worker.run(project, files) for project in projects]


def _make_fetched_chunk(items: Sequence[tuple[Project, int]], files: ReportWriter | None = None) -> list[ProjectResult]:
    """Make projects already fetched elsewhere (by an event loop): ``(project, fetch_ns)`` pairs."""
    worker = _current_pool_worker()
    return [worker.make(project, fetch_ns, files) for project, fetch_ns in items]


def _process_pool(config: WorkerConfig, options: StrategyOptions) -> _Pool:
    method = options.start_method or default_start_method()
    return _Pool(
        lambda: cf.ProcessPoolExecutor(
            options.workers,
            mp_context=multiprocessing.get_context(method),
            initializer=_init_pool_worker,
            initargs=(config, True),
        )
    )


class _PoolRunner(Runner):
    """Chunks of projects on a pool; chunks lost with a dying worker are sent again (bounded)."""

    def __init__(self, config: WorkerConfig, options: StrategyOptions, pool: _Pool) -> None:
        self.options = options
        self.pool = pool
        self.reports = config.reports

    @property
    def restarts(self) -> int:
        return self.pool.restarts

    def run(self, projects: Iterable[Project], files: ReportWriter | None = None) -> Iterator[ProjectResult]:
        tasks: Iterable[tuple[list[Project], int]] = ((c, 1) for c in chunked(projects, self.options.chunksize))
        submit = lambda task: self.pool.submit(_run_chunk, task[0], files)  # noqa: E731
        while True:
            retry: list[tuple[list[Project], int]] = []
            for (chunk, attempt), future in bounded(submit, tasks, self.options.max_in_flight):
                try:
                    yield from future.result()
                except cf.BrokenExecutor:
                    self.pool.restart(future.executor)  # type: ignore[attr-defined]
                    if attempt < MAX_ATTEMPTS:
                        retry.append((chunk, attempt + 1))
                    else:
                        why = f"a worker process died while making this project ({attempt} attempts)"
                        yield from (ProjectResult.failed(p, self.reports, why) for p in chunk)
            if not retry:
                return
            tasks = retry

    def close(self) -> None:
        self.pool.close()


class ProcessStrategy(Strategy):
    name = "process"
    description = "One process pool for the batch, workers warmed once, projects sent in chunks: real parallelism."

    def start(self, config: WorkerConfig, options: StrategyOptions) -> Runner:
        return _PoolRunner(config, options, _process_pool(config, options))


class InterpreterStrategy(Strategy):
    name = "interpreter"
    description = "Subinterpreters (concurrent.futures.InterpreterPoolExecutor), each with its own GIL."

    def unavailable_reason(self) -> str | None:
        if not hasattr(cf, "InterpreterPoolExecutor"):
            return "needs concurrent.futures.InterpreterPoolExecutor (Python 3.14+)"
        return None

    def start(self, config: WorkerConfig, options: StrategyOptions) -> Runner:
        executor_type = cf.InterpreterPoolExecutor  # type: ignore[attr-defined]
        pool = _Pool(lambda: executor_type(options.workers, initializer=_init_pool_worker, initargs=(config,)))
        return _PoolRunner(config, options, pool)


class AsyncStrategy(Strategy):
    name = "async"
    description = "asyncio: fetches awaited natively with bounded fan-out; CPU work on one shared process pool."

    def start(self, config: WorkerConfig, options: StrategyOptions) -> Runner:
        return _AsyncRunner(config, options)


class _AsyncRunner(Runner):
    """One event loop reused across batches, driven step by step so results stream to the caller."""

    def __init__(self, config: WorkerConfig, options: StrategyOptions) -> None:
        self.options = options
        self.pool = _process_pool(config, options)
        self.reports = config.reports
        self.source = open_source(config)
        self.loop = asyncio.Runner()

    @property
    def restarts(self) -> int:
        return self.pool.restarts

    def run(self, projects: Iterable[Project], files: ReportWriter | None = None) -> Iterator[ProjectResult]:
        stream = self._stream(projects, files)
        loop = self.loop.get_loop()

        async def step() -> ProjectResult:
            return await anext(stream)

        try:
            while True:
                task = loop.create_task(step())
                try:
                    result = loop.run_until_complete(task)
                except StopAsyncIteration:
                    return
                except BaseException:
                    # Ctrl-C (KeyboardInterrupt from a signal handler) left the step half done: cancel it, so the
                    # stream cancels its own tasks, before the stream is closed and the pool shut down.
                    task.cancel()
                    with contextlib.suppress(BaseException):
                        loop.run_until_complete(task)
                    raise
                yield result
        finally:
            if not loop.is_closed():  # else the runner was closed first, and its loop closed the stream then
                self.loop.run(stream.aclose())

    async def _stream(
        self, projects: Iterable[Project], files: ReportWriter | None
    ) -> AsyncGenerator[ProjectResult, None]:
        source = iter(projects)
        limit = self.options.max_in_flight
        pending = {asyncio.ensure_future(self._one(p, files)) for p in itertools.islice(source, limit)}
        try:
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    yield task.result()
                    pending.update(asyncio.ensure_future(self._one(p, files)) for p in itertools.islice(source, 1))
        finally:
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
                for task in pending:  # a Ctrl-C that landed in one is the batch's to report ("never retrieved")
                    if not task.cancelled():
                        task.exception()

    async def _one(self, project: Project, files: ReportWriter | None) -> ProjectResult:
        started = time.monotonic_ns()
        try:
            fetched = await self.source.afetch(project)
        except Exception as error:
            return ProjectResult.failed(project, self.reports, f"fetch failed: {error}", time.monotonic_ns() - started)
        fetch_ns = time.monotonic_ns() - started
        for _attempt in range(MAX_ATTEMPTS):
            future = self.pool.submit(_make_fetched_chunk, [(fetched, fetch_ns)], files)
            try:
                (result,) = await asyncio.wrap_future(future)
                return result
            except cf.BrokenExecutor:
                self.pool.restart(future.executor)  # type: ignore[attr-defined]
        why = f"a worker process died while making this project ({MAX_ATTEMPTS} attempts)"
        return ProjectResult.failed(project, self.reports, why, fetch_ns)

    def close(self) -> None:
        try:
            self.loop.run(self.source.aclose())
            self.source.close()
            self.loop.close()
        finally:
            self.pool.close()


@hookimpl
def zerosite_register_strategies(register: Callable[[Strategy], None]) -> None:
    for strategy in (SequentialStrategy(), ThreadStrategy(), ProcessStrategy(), AsyncStrategy(), InterpreterStrategy()):
        register(strategy)
