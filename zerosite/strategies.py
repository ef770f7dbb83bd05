"""Concurrency strategies, registered as plugins: how a batch of projects is spread over workers."""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import ctypes
import faulthandler
import functools
import itertools
import multiprocessing
import multiprocessing.connection
import multiprocessing.util
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from multiprocessing.context import BaseContext
from typing import Any, TypeVar

from zerosite import hookimpl
from zerosite.chunking import tapered
from zerosite.hurry import hurried
from zerosite.pipeline import GivenUp, plugin_raised, watch_interrupts
from zerosite.plugins import BUILTIN_PLUGINS
from zerosite.project import Project
from zerosite.types import (
    PluginError,
    ProjectResult,
    ReportWriter,
    Runner,
    StartError,
    StoreError,
    Strategy,
    StrategyOptions,
    WorkerConfig,
    WrittenFile,
    describe_error,
)
from zerosite.worker import Progress, Worker, make_worker, warm_process

__all__ = [
    "AsyncStrategy",
    "ProcessStrategy",
    "Runner",
    "SequentialStrategy",
    "Strategy",
    "StrategyOptions",
    "ThreadStrategy",
    "default_start_method",
]

KILL_GRACE_S = 1.0
"""How long past ``--timeout`` a pool worker may go on with a report (its own alarm swallowed by plugin
code) before it is killed and replaced."""

WATCH_INTERVAL_S = 0.05
"""How often a runner with a time limit looks for reports past it."""

PARENT_POLL_S = 0.5
"""Where the kernel cannot end a pool worker with its parent, how often the worker looks whether it was orphaned."""

WRITES_ENDING_S = 1.0
"""When a thread runner abandons its threads (the command stopping now), how long the report writes already under
way get to end before the clean-up goes on without them (a write refused from then on)."""

T = TypeVar("T")


def bounded(
    submit: Callable[[T], cf.Future[Any]],
    items: Iterable[T],
    limit: int,
    tick: Callable[[], None] | None = None,
) -> Iterator[tuple[T, cf.Future[Any]]]:
    """Submit ``items`` with at most ``limit`` in flight; yield ``(item, future)`` as each completes. Closed early
    by the caller, it waits for the work in flight (so that none of it writes a file once the caller cleans up: a
    warm runner's pass that the index refused), unless the command stops now (:func:`~zerosite.hurry.hurried`:
    that work is abandoned, the runner's close ends it); stopped by an exception (Ctrl-C), it cancels what has not
    started and leaves the rest to the runner's close.

    Given ``tick``, it is called every :data:`WATCH_INTERVAL_S` while waiting (to enforce time limits).
    Each future reports its own completion to a queue (``cf.wait`` would install and remove a waiter on every
    pending future for each one that completes).
    """
    pending: dict[cf.Future[Any], T] = {}
    completed: queue.SimpleQueue[cf.Future[Any]] = queue.SimpleQueue()
    source = iter(items)
    interval = None if tick is None else WATCH_INTERVAL_S

    def send(count: int) -> None:
        for item in itertools.islice(source, count):
            future = submit(item)
            pending[future] = item
            future.add_done_callback(completed.put)

    try:
        send(limit)
        while pending:
            try:
                future = completed.get(timeout=interval)
            except queue.Empty:
                future = None
            if tick is not None:
                tick()
            if future is not None:
                yield pending.pop(future), future
                send(1)
    except GeneratorExit:
        # Not cancelled first: a future cancelled while a process pool still holds its work item breaks the pool's
        # manager thread if the pool then breaks (InvalidStateError from terminate_broken, CPython 3.11).
        while cf.wait(pending, timeout=WATCH_INTERVAL_S).not_done:
            if hurried():  # the pool's workers are being killed: nothing cancelled now (see above), the close cancels
                pending.clear()
                break
            if tick is not None:
                tick()
        raise
    finally:
        for future in pending:
            future.cancel()


def _timed_out(config: WorkerConfig, project: Project, module: int, what: str, spent_s: float) -> dict[str, GivenUp]:
    """``{module name: given up}`` for a report stopped from outside because it ran past the time limit, after
    ``spent_s`` seconds."""
    name = config.compute[module]
    return {name: GivenUp(f"{name} timed out for project {project.id!r}: {what}", int(spent_s * 1e9))}


class SequentialStrategy(Strategy):
    name = "sequential"
    description = "One project after another in this process: the baseline every other is compared with."

    def start(self, config: WorkerConfig, options: StrategyOptions) -> Runner:
        return _InlineRunner(make_worker(config))


class _InlineRunner(Runner):
    runs_here = True

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


class _Gate:
    """The way out of a thread pool for report files: shut when the pool abandons its threads, so that none of
    them writes a file once the batch has cleaned up (a write under way when it shuts is waited for, a while)."""

    def __init__(self) -> None:
        self.changed = threading.Condition()
        self.open = True
        self.writing = 0

    @contextlib.contextmanager
    def passing(self, project_id: str, module: str) -> Iterator[None]:
        with self.changed:
            if not self.open:
                raise StoreError(f"not written: report {module} of project {project_id} was abandoned (stopping)")
            self.writing += 1
        try:
            yield
        finally:
            with self.changed:
                self.writing -= 1
                self.changed.notify_all()

    def shut(self, timeout_s: float) -> None:
        """Refuse every later write; wait up to ``timeout_s`` for those under way."""
        with self.changed:
            self.open = False
            self.changed.wait_for(lambda: self.writing == 0, timeout_s)


class _Threads:
    """A thread pool of daemon threads: a thread left behind with a report past its time limit, or when the
    command stops now, is abandoned (replaced, in the first case), and never keeps the process from exiting."""

    def __init__(self, workers: int) -> None:
        self.tasks: queue.SimpleQueue[tuple[cf.Future[Any], Callable[[], Any]] | None] = queue.SimpleQueue()
        self.threads: set[threading.Thread] = set()
        self.retired: set[threading.Thread] = set()
        self.started = itertools.count()
        self.gate = _Gate()
        for _ in range(workers):
            self._add()

    def _add(self) -> None:
        thread = threading.Thread(target=self._work, name=f"zerosite_{next(self.started)}", daemon=True)
        self.threads.add(thread)
        thread.start()

    def submit(self, fn: Callable[..., T], *args: Any) -> cf.Future[T]:
        future: cf.Future[T] = cf.Future()
        self.tasks.put((future, functools.partial(fn, *args)))
        return future

    def _work(self) -> None:
        me = threading.current_thread()
        while (task := self.tasks.get()) is not None:
            future, call = task
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(call())
                except BaseException as error:  # handed to whoever waits on the future
                    future.set_exception(error)
            if me in self.retired:
                return

    def abandon(self, thread: threading.Thread) -> None:
        """Leave ``thread`` to finish on its own (it takes no more work) and start another in its place."""
        if thread in self.threads:
            self.threads.discard(thread)
            self.retired.add(thread)
            self._add()

    def close(self) -> None:
        """Cancel the work not started, wait for the threads still in the pool (not the abandoned); once the command
        stops now (:func:`~zerosite.hurry.hurried`), abandon those still running, their writes refused (a report
        blocked for good would hold the stop, and the batch's clean-up, for ever)."""
        while True:
            try:
                task = self.tasks.get_nowait()
            except queue.Empty:
                break
            if task is not None:
                task[0].cancel()
        for _ in self.threads:
            self.tasks.put(None)
        for thread in self.threads:
            while thread.is_alive() and not hurried():
                thread.join(WATCH_INTERVAL_S)
        self.gate.shut(WRITES_ENDING_S if any(thread.is_alive() for thread in self.threads) else 0)


class _Watch:
    """One project on a thread, watched from the batch's thread for a report past its time limit.

    The worker thread reports each module as it starts (``progress``); the batch's thread abandons it
    at the deadline and sends the project again with that report failed (``failed``).
    """

    def __init__(self, project: Project, result: cf.Future[ProjectResult], failed: Mapping[str, GivenUp]) -> None:
        self.project = project
        self.result = result
        """What the batch waits for: the outcome of the last attempt, never of an abandoned one."""
        self.failed = failed
        self.state = (-1, 0.0)  # (module index or -1, when it started), replaced whole: read without a lock
        self.thread: threading.Thread | None = None
        self.abandoned = False
        self.lock = threading.Lock()

    def progress(self, module: int) -> None:
        if module >= 0 and self.abandoned:
            raise _Abandoned("its thread was abandoned at the time limit")
        self.state = (module, time.monotonic())

    def finish(self, attempt: cf.Future[ProjectResult]) -> None:
        with self.lock, contextlib.suppress(cf.InvalidStateError):  # invalid: the batch stopped, cancelling it
            if self.abandoned:
                return  # late: the project was sent again
            if (error := attempt.exception()) is not None:
                self.result.set_exception(error)
            else:
                self.result.set_result(attempt.result())

    def abandon(self) -> bool:
        """Give up on this attempt, unless it has finished already; whether it was given up."""
        with self.lock:
            self.abandoned = not self.result.done()
            return self.abandoned


class _Abandoned(Exception):
    """Raised in an abandoned thread when it would start another module: it makes nothing more."""


class _AbandonableWriter:
    """``files`` for a thread pool's projects: refuses to write once the pool abandoned its threads (its gate shut)
    or, given the ``watch`` of one project, once that project's thread was abandoned at its time limit."""

    def __init__(self, files: ReportWriter, gate: _Gate, watch: _Watch | None = None) -> None:
        self.files = files
        self.gate = gate
        self.watch = watch

    def write(self, project_id: str, module: str, html: str) -> WrittenFile:
        if self.watch is not None and self.watch.abandoned:
            raise StoreError(f"not written: report {module} of project {project_id} was abandoned at its time limit")
        with self.gate.passing(project_id, module):
            return self.files.write(project_id, module, html)


class _ThreadRunner(Runner):
    """Projects on a pool of threads. A signal cannot interrupt a thread, so under a time limit each
    project is watched: at the deadline its report fails, the project is sent again without it, and
    the thread is abandoned (whatever it makes later is discarded). When the command stops now, the close
    abandons the threads still running (:meth:`_Threads.close`); their files are refused either way."""

    runs_here = True

    def __init__(self, worker: Worker, options: StrategyOptions) -> None:
        self.worker = worker
        self.options = options
        self.limit_s = worker.config.timeout_s
        self.pool = _Threads(options.workers)

    def run(self, projects: Iterable[Project], files: ReportWriter | None = None) -> Iterator[ProjectResult]:
        if not self.limit_s:
            writer = None if files is None else _AbandonableWriter(files, self.pool.gate)
            run = lambda p: self.pool.submit(self.worker.run, p, writer)  # noqa: E731
            for _, future in bounded(run, projects, self.options.max_in_flight):
                yield future.result()
            return
        watches: dict[cf.Future[ProjectResult], _Watch] = {}

        def submit(project: Project) -> cf.Future[ProjectResult]:
            result: cf.Future[ProjectResult] = cf.Future()
            watches[result] = watch = _Watch(project, result, {})
            self._attempt(watch, files)
            return result

        def tick() -> None:
            now = time.monotonic()
            for result, watch in list(watches.items()):
                module, started = watch.state
                if module < 0 or now - started <= (self.limit_s or 0) or not watch.abandon():
                    continue
                if watch.thread is not None:
                    self.pool.abandon(watch.thread)
                what = f"still running after {self.limit_s:g} s; its thread was abandoned"
                given_up = _timed_out(self.worker.config, watch.project, module, what, now - started)
                failed = {**watch.failed, **given_up}
                watches[result] = again = _Watch(watch.project, result, failed)
                self._attempt(again, files)

        for _, result in bounded(submit, projects, self.options.max_in_flight, tick):
            del watches[result]
            yield result.result()

    def _attempt(self, watch: _Watch, files: ReportWriter | None) -> None:
        writer = None if files is None else _AbandonableWriter(files, self.pool.gate, watch)

        def make() -> ProjectResult:
            watch.thread = threading.current_thread()
            return self.worker.run(watch.project, writer, watch.failed, watch.progress)

        self.pool.submit(make).add_done_callback(watch.finish)

    def close(self) -> None:
        self.pool.close()


def default_start_method() -> str:
    """``fork`` starts fastest, but forking a process that runs threads may deadlock: ``forkserver`` then."""
    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and threading.active_count() == 1:
        return "fork"
    return "forkserver" if "forkserver" in methods else "spawn"


def _safe_start_method(chosen: str | None, rebuild: bool = False) -> str:
    """``chosen`` (default :func:`default_start_method`), but never ``fork`` while this process runs
    threads, nor for a pool rebuilt after a worker died (the broken pool's threads may be ending then:
    a fork server is started instead, once, and forks every later worker from a single thread)."""
    method = chosen or default_start_method()
    if method == "fork" and (rebuild or threading.active_count() > 1):
        methods = multiprocessing.get_all_start_methods()
        return "forkserver" if "forkserver" in methods else "spawn"
    return method


class _Heartbeat:
    """Shared memory where each pool worker process notes the project (ticket) and module it is making,
    and since when; the parent reads it to kill a worker whose report runs far past its time limit."""

    FIELDS = 4  # pid, ticket, module index (-1: between modules), time.monotonic() at the module's start

    def __init__(self, context: BaseContext, workers: int) -> None:
        self.workers = workers
        self.slots = context.RawArray("d", [-1.0] * (workers * self.FIELDS))  # no lock: a killed writer holds none
        self.claimed = context.Value("i", 0)

    def claim(self) -> int | None:
        """In a worker process: this process's slot (None if the pool has more processes than slots)."""
        with self.claimed.get_lock():
            slot: int = self.claimed.value
            self.claimed.value += 1
        if slot >= self.workers:
            return None
        self.slots[slot * self.FIELDS] = os.getpid()
        return slot

    def note(self, slot: int, ticket: int, module: int) -> None:
        """In a worker process: module ``module`` of project ``ticket`` starts now (-1: it is done)."""
        base = slot * self.FIELDS
        self.slots[base + 3] = time.monotonic()  # before the module: a reader never pairs it with an old start
        self.slots[base + 2] = module
        self.slots[base + 1] = ticket

    def overdue(self, limit_s: float) -> Iterator[tuple[int, int, int]]:
        """``(pid, ticket, module)`` of each worker making one module for longer than ``limit_s``."""
        now = time.monotonic()
        for slot in range(self.workers):
            base = slot * self.FIELDS
            module, ticket, started, pid = (self.slots[base + i] for i in (2, 1, 3, 0))
            if module >= 0 and ticket >= 0 and pid > 0 and now - started > limit_s:
                yield int(pid), int(ticket), int(module)


class ProcessPool:
    """One executor for the whole batch, warmed by an initializer and rebuilt when a worker dies.

    Under a time limit its workers note what they make (:class:`_Heartbeat`) and :meth:`cull` kills
    one whose report runs :data:`KILL_GRACE_S` past the limit (its alarm swallowed by plugin code).
    """

    def __init__(self, factory: Callable[[], tuple[cf.Executor, _Heartbeat | None]], limit_s: float | None) -> None:
        self.factory = factory
        self.executor, self.heartbeat = factory()
        self.limit_s = limit_s
        self.restarts = 0
        self.killed: dict[int, int] = {}
        """Ticket -> index of the module that ran past the limit, for each project whose worker was killed."""
        self.culled: set[cf.Executor] = set()
        """Executors broken by :meth:`cull` rather than by a worker that died of itself."""
        self.deaths: dict[cf.Executor, str] = {}

    def submit(self, fn: Callable[..., T], *args: Any) -> cf.Future[T]:
        try:
            future = self.executor.submit(fn, *args)
        except cf.BrokenExecutor:
            self.restart(self.executor)
            future = self.executor.submit(fn, *args)
        future.executor = self.executor  # type: ignore[attr-defined]
        return future

    def restart(self, broken: cf.Executor, wait: bool = False) -> None:
        """Replace ``broken`` unless that was done already (its futures all report the same breakage).

        With ``wait``, wait for its workers to end and note how (:meth:`death`): for a one-worker pool.
        """
        if broken is self.executor:
            processes = list((getattr(broken, "_processes", None) or {}).values())  # private: the exit codes
            _shut_down(broken, wait)
            if wait:
                self.deaths[broken] = _how_it_died(processes)
            self.executor, self.heartbeat = self.factory()
            self.restarts += 1

    def death(self, broken: cf.Executor) -> str:
        """How the worker of ``broken`` ended, as noted by :meth:`restart`."""
        return self.deaths.get(broken, "how is not known")

    def cull(self) -> None:
        """Kill each worker whose report runs past the time limit and the grace period."""
        if self.heartbeat is None or not self.limit_s:
            return
        for pid, ticket, module in self.heartbeat.overdue(self.limit_s + KILL_GRACE_S):
            if ticket in self.killed:
                continue
            self.killed[ticket] = module
            self.culled.add(self.executor)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def close(self) -> None:
        _shut_down(self.executor, wait=True)


def _shut_down(executor: cf.Executor, wait: bool) -> None:
    """``executor.shutdown``, also of one whose manager thread a stop signal kept from starting (raised in
    ``Thread.start``): its shutdown cannot join that thread (a ``RuntimeError`` that hid the stop, and then the
    interpreter waited for ever at exit for workers no one would end), so its workers are killed instead."""
    try:
        executor.shutdown(wait=wait, cancel_futures=True)
    except RuntimeError:
        for process in list((getattr(executor, "_processes", None) or {}).values()):  # private: none else to end
            with contextlib.suppress(OSError, ValueError):
                process.kill()
                process.join(1)


def _how_it_died(processes: Sequence[multiprocessing.process.BaseProcess]) -> str:
    """How the worker process of a broken one-worker pool ended: its exit code, or the signal."""
    codes = [process.exitcode for process in processes if process.exitcode not in (None, -signal.SIGTERM)]
    if not codes:  # only the pool's own SIGTERM seen: it may have come first
        codes = [process.exitcode for process in processes if process.exitcode is not None]
    if not codes:
        return "how is not known"
    code = codes[0]
    assert code is not None
    if code >= 0:
        return f"exit code {code}"
    try:
        return f"killed by {signal.Signals(-code).name}"
    except ValueError:
        return f"killed by signal {-code}"


_pool_worker: Worker | None = None
"""This pool worker process's worker, made once by the pool's initializer (private to these strategies)."""

_pool_warm_error: str | None = None
"""Why this pool worker process could not be warmed (a plugin that loaded in the parent failed here): each task it
is given raises :class:`StartError` saying so, and the runner ends the batch with it."""

_pool_heartbeat: tuple[_Heartbeat, int] | None = None
"""Where this pool worker process notes what it makes, under a time limit: the pool's heartbeat, its slot."""


def _init_pool_worker(config: WorkerConfig, ignore_sigint: bool = False, heartbeat: _Heartbeat | None = None) -> None:
    """A pool's initializer: warm this worker process once. The parent alone decides how a batch stops:
    process pool workers leave its process group, so that neither a terminal's Ctrl-C nor a ``kill -- -PGID``
    reaches them, and ignore Ctrl-C. A SIGTERM sent to one of them ends it at once, as the pool expects when it
    ends the workers of a broken pool (not the parent's handler, inherited by fork, which would raise into the
    project under way). They end with their parent and never wait for threads."""
    global _pool_worker, _pool_heartbeat
    with contextlib.suppress(ValueError, OSError, AttributeError, RuntimeError):  # no standard error: no stacks
        faulthandler.enable()  # a crash in native code says where, whatever the start method (fork inherits it)
    if ignore_sigint:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.setpgrp()
        _end_with_parent()
        _before_joining_threads(_exit_without_waiting_for_threads)
    try:
        _pool_worker = warm_process(config)
    except Exception as error:  # kept for the first task to raise: a raw traceback, a broken pool, "exit code 0"
        global _pool_warm_error
        _pool_warm_error = str(error) if isinstance(error, PluginError) else describe_error(error)
        return
    slot = None if heartbeat is None else heartbeat.claim()
    _pool_heartbeat = None if heartbeat is None or slot is None else (heartbeat, slot)


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
        if _pool_warm_error is not None:
            raise StartError(f"a worker process could not start: {_pool_warm_error}")
        raise RuntimeError("this process is not a warmed pool worker")
    return _pool_worker


_Item = tuple[int, Project, Mapping[str, GivenUp] | None]
"""One project as sent to a pool worker: its ticket (how the parent knows it), the project, and the
modules already known to fail for it."""


def _run_chunk(items: Sequence[_Item], files: ReportWriter | None = None) -> list[ProjectResult]:
    """Fetch, make and write a chunk of projects (the unit of work sent to a pool)."""
    worker = _current_pool_worker()
    return [_make_one(worker, *item, files, None) for item in items]


def make_fetched_chunk(items: Sequence[tuple[_Item, int]], files: ReportWriter | None = None) -> list[ProjectResult]:
    """Make projects already fetched elsewhere (by an event loop): ``(item, fetch_ns)`` pairs."""
    worker = _current_pool_worker()
    return [
        _make_one(worker, ticket, project, failed, files, fetch_ns) for (ticket, project, failed), fetch_ns in items
    ]


def _make_one(
    worker: Worker,
    ticket: int,
    project: Project,
    failed: Mapping[str, GivenUp] | None,
    files: ReportWriter | None,
    fetch_ns: int | None,
) -> ProjectResult:
    progress: Progress | None = None
    if _pool_heartbeat is not None:
        heartbeat, slot = _pool_heartbeat
        progress = functools.partial(heartbeat.note, slot, ticket)
    with watch_interrupts() as interrupts:
        try:
            if fetch_ns is None:
                return worker.run(project, files, failed, progress)
            return worker.make(project, fetch_ns, files, failed, progress)
        except BaseException as error:  # escaped the worker's containment (a plugin's GeneratorExit too): named
            if not plugin_raised(error, interrupts) and not isinstance(error, GeneratorExit):
                raise
            return worker.failed(project, f"making project {project.id!r} failed: {describe_error(error)}")


def process_pool(
    config: WorkerConfig, options: StrategyOptions, workers: int | None = None, rebuild: bool = False
) -> ProcessPool:
    """A process pool of ``workers`` (default ``options.workers``); ``rebuild``: made after a worker died."""
    count = workers or options.workers
    builds = itertools.count()

    def build() -> tuple[cf.Executor, _Heartbeat | None]:
        method = _safe_start_method(options.start_method, rebuild=rebuild or next(builds) > 0)
        context = multiprocessing.get_context(method)
        if method == "forkserver":
            # The fork server imports the engine and the built-in plugins once; each worker forked from it
            # starts with them loaded instead of importing them again (no effect once the server runs).
            context.set_forkserver_preload(["zerosite.worker", *BUILTIN_PLUGINS])
        heartbeat = _Heartbeat(context, count) if config.timeout_s else None
        executor = cf.ProcessPoolExecutor(
            count, mp_context=context, initializer=_init_pool_worker, initargs=(config, True, heartbeat)
        )
        return executor, heartbeat

    return ProcessPool(build, config.timeout_s)


@dataclass(frozen=True, slots=True)
class Job:
    """One project on its way through a pool runner."""

    ticket: int
    project: Project
    failed: Mapping[str, GivenUp] | None = None

    @property
    def item(self) -> _Item:
        return (self.ticket, self.project, self.failed)


class Breakage:
    """What became of the projects a broken pool lost, decided once per project: which to send again,
    which to try alone (on a one-worker pool, where a death names its cause), which failed."""

    def __init__(self, config: WorkerConfig) -> None:
        self.config = config

    def sort(self, pool: ProcessPool, broken: cf.Executor, job: Job, alone: bool) -> tuple[str, Job | ProjectResult]:
        """``("again", job)``, ``("alone", job)`` or ``("failed", result)`` for ``job``, lost with ``broken``."""
        module = pool.killed.pop(job.ticket, None)
        if module is not None:
            limit = (pool.limit_s or 0) + KILL_GRACE_S
            what = f"still running {limit:g} s after it started; its worker process was killed"
            failed = {**(job.failed or {}), **_timed_out(self.config, job.project, module, what, limit)}
            return "again", replace(job, failed=failed)
        if broken in pool.culled:
            return "again", job  # a bystander of a worker killed for its time limit
        if not alone:
            return "alone", job
        why = f"worker died while making project {job.project.id}: {pool.death(broken)}"
        return "failed", ProjectResult.failed(job.project, self.config.reports, why)


class PooledRunner(Runner):
    """What the process and async runners share: the batch's process pool and, made when a worker first dies, a
    one-worker pool on which the projects it took down are made again one at a time, so that only a project that
    kills its worker fails (:class:`Breakage` sorts them)."""

    def __init__(self, config: WorkerConfig, options: StrategyOptions) -> None:
        self.config = config
        self.options = options
        self.pool = process_pool(config, options)
        self.reports = config.reports
        self.alone: ProcessPool | None = None
        self.tickets = itertools.count()
        self.breakage = Breakage(config)

    @property
    def restarts(self) -> int:
        return self.pool.restarts + (self.alone.restarts if self.alone else 0)

    def _alone(self) -> ProcessPool:
        if self.alone is None:
            self.alone = process_pool(self.config, self.options, 1, True)
        return self.alone

    def close(self) -> None:
        try:
            self.pool.close()
        finally:
            if self.alone is not None:
                self.alone.close()


class _PoolRunner(PooledRunner):
    """Chunks of projects on the pool; the projects of a worker that died, again alone (:class:`PooledRunner`)."""

    def run(self, projects: Iterable[Project], files: ReportWriter | None = None) -> Iterator[ProjectResult]:
        chunks = tapered(projects, self.options.chunksize, self.options.workers)
        jobs = ([Job(next(self.tickets), p) for p in chunk] for chunk in chunks)
        tasks: Iterable[list[Job]] = jobs
        # One project on a one-worker pool is alone already: its worker's death names it, not to be made again.
        alone = self.options.workers == 1 and isinstance(projects, Sequence) and len(projects) == 1
        pool, limit = self.pool, self.options.max_in_flight
        waiting: list[Job] = []  # to try alone
        while True:
            again: list[Job] = []
            submit = functools.partial(self._submit, pool, files)
            tick = pool.cull if pool.heartbeat is not None else None
            for chunk, future in bounded(submit, tasks, limit, tick):
                broken: cf.Executor | None = None
                try:
                    results: list[ProjectResult] = future.result()
                except cf.BrokenExecutor:
                    broken = future.executor  # type: ignore[attr-defined]
                    pool.restart(broken, wait=alone)  # alone: wait, so the dead worker's exit code is known
                    results = []
                except StartError:
                    raise
                except Exception as error:  # a result that could not come back
                    why = f"making project failed: {describe_error(error)}"
                    results = [ProjectResult.failed(job.project, self.reports, why) for job in chunk]
                yield from results
                if broken is None:
                    continue
                for job in chunk:
                    verdict, outcome = self.breakage.sort(pool, broken, job, alone)
                    if isinstance(outcome, ProjectResult):
                        yield outcome
                    else:
                        (again if verdict == "again" else waiting).append(outcome)
            if again:
                tasks, pool, limit, alone = [[job] for job in again], self.pool, self.options.max_in_flight, False
            elif waiting:
                tasks, pool, limit, alone = [[job] for job in waiting], self._alone(), 1, True
                waiting = []
            else:
                return

    def _submit(
        self, pool: ProcessPool, files: ReportWriter | None, chunk: list[Job]
    ) -> cf.Future[list[ProjectResult]]:
        return pool.submit(_run_chunk, [job.item for job in chunk], files)


class ProcessStrategy(Strategy):
    name = "process"
    description = "One process pool for the batch, workers warmed once, projects sent in chunks: real parallelism."

    def start(self, config: WorkerConfig, options: StrategyOptions) -> Runner:
        return _PoolRunner(config, options)


class AsyncStrategy(Strategy):
    name = "async"
    description = "asyncio: fetches awaited natively with bounded fan-out; CPU work on one shared process pool."

    def start(self, config: WorkerConfig, options: StrategyOptions) -> Runner:
        from zerosite.strategies_async import AsyncRunner  # asyncio only when the strategy runs: a fast start-up

        return AsyncRunner(config, options)


@hookimpl
def zerosite_register_strategies(register: Callable[[Strategy], None]) -> None:
    for strategy in (SequentialStrategy(), ThreadStrategy(), ProcessStrategy(), AsyncStrategy()):
        register(strategy)
