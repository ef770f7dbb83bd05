"""The work of one server process: single reports and batches, made by warm runners on one thread of their own.

The event loop only hands work over and waits for it: every pass of the engine (``engine.generate`` on a warm
runner) runs on the dispatcher thread. The output folder is one writer's at a time (the store's lock), so a
pass takes it and gives it back; another server process on the same folder waits its turn.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import itertools
import logging
import os
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from zerosite.engine import BatchOptions, BatchPlan, ReportOutcome, generate, plan_batch, start_runner
from zerosite.files import OutputBusy
from zerosite.project import Project, parse_project
from zerosite.sample import iter_sample_projects
from zerosite.service.batches import BOOK_FILE, FINAL_STATES, BatchBook, BatchView
from zerosite.service.config import LIMITS, ServiceConfig
from zerosite.store import ReportStore
from zerosite.types import ReportCache, Runner, describe_error

__all__ = ["Batch", "GivenUp", "ReportQueue", "Selection", "Unavailable"]

log = logging.getLogger("zerosite.service")

IDLE_WAIT_S = 0.5
WAITING_FILE = ".zerosite.waiting"
"""Touched by a server process that finds the output folder held; the holder gives it up after its pass.

A server process keeps the folder's store open from pass to pass (opening it reads the index's resume table
and scans the folder for stale temporary files, which grows with the folder), and gives it back once idle for
``LIMITS.store_idle_s`` or at once when another server process waits for it."""


class _Idle:
    """What :meth:`ReportQueue._next` hands back when the store has been idle long enough to give back."""


_IDLE = _Idle()
GIVE_UP_EARLY_S = 0.1
"""A request still waiting for the output folder is given up this long before its caller's deadline."""


class GivenUp(Exception):
    """A single request given up before it was made because its time limit came first; the message says what held
    it up: the output folder held by another writer, or the requests ahead of it in the queue."""


BUSY = "the output folder stayed busy (another zerosite run is writing to it)"
BEHIND = "the requests ahead of it in the queue took the time"


class Unavailable(Exception):
    """The service cannot take this work now (queue full, warming up, stopping): 503 with ``Retry-After``."""

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class Selection:
    """The modules a request asked for, planned once: its options, plan, and the reports it gets."""

    options: BatchOptions
    plan: BatchPlan

    @property
    def reports(self) -> tuple[str, ...]:
        return self.plan.config.reports


@dataclass(eq=False)
class _Waiting:
    project: Project
    selection: Selection
    future: cf.Future[tuple[ReportOutcome, ...]]
    deadline: float


@dataclass(eq=False)
class Batch:
    """A batch this process runs: its projects, how far it got, whether a cancel was asked for."""

    id: str
    selection: Selection
    projects: Sequence[Project]
    position: int = 0
    cancel: threading.Event = field(default_factory=threading.Event)
    counts: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(
            ("done", "failed", "cached", "reports_written", "reports_cached", "reports_failed"), 0
        )
    )

    @property
    def remaining(self) -> int:
        return len(self.projects) - self.position

    def count(self, outcomes: Sequence[ReportOutcome]) -> None:
        """One finished project."""
        statuses = ["cached" if o.status == "skipped" or o.from_cache else o.status for o in outcomes]
        self.counts["done"] += 1
        self.counts["failed"] += "failed" in statuses
        self.counts["cached"] += all(s == "cached" for s in statuses)
        self.counts["reports_written"] += statuses.count("written")
        self.counts["reports_cached"] += statuses.count("cached")
        self.counts["reports_failed"] += statuses.count("failed")


class ReportQueue:
    """Bounded queues of work and the thread that does it: start with :meth:`start`, end with :meth:`stop`."""

    def __init__(self, config: ServiceConfig, cache: ReportCache, on_report: Callable[[ReportOutcome], None]) -> None:
        self.config = config
        self.cache = cache
        self.on_report = on_report
        self.out = config.out
        self._selections: dict[tuple[str, ...] | None, Selection] = {}
        self.default = self.selection(None)  # an unknown strategy or a plugin problem: raised here, at start
        self.book = BatchBook(config.out / BOOK_FILE)
        self.ready = threading.Event()
        self.failure: str | None = None
        self.stopping = threading.Event()
        self._cond = threading.Condition()
        self._waiting: deque[_Waiting] = deque()
        self._batches: deque[Batch] = deque()
        self._runners: OrderedDict[tuple[str, ...], Runner] = OrderedDict()
        self._turns = itertools.count()
        self._store: ReportStore | None = None
        self._store_since_ns = 0
        self._last_pass = 0.0
        self._waiting_file = config.out / WAITING_FILE
        self._thread = threading.Thread(target=self._work, name="zerosite-dispatcher", daemon=True)

    # -- what the routes call (event loop or its thread pool) -----------------------------------------------

    def selection(self, modules: Sequence[str] | None) -> Selection:
        """The plan for these modules (all when ``None``), made once per distinct choice.

        :raises EngineError: an unknown module.
        """
        key = tuple(sorted(set(modules))) if modules else None
        found = self._selections.get(key)
        if found is None:
            options = BatchOptions(
                out=self.config.out,
                db=self.config.db,
                modules=key,
                strategy=self.config.strategy,
                workers=1 if self.config.strategy == "sequential" else self.config.workers,
                chunksize=self.config.chunksize,
                timeout_s=self.config.report_timeout_s,
            )
            found = Selection(options, plan_batch(options))
            if len(self._selections) < 64:
                self._selections[key] = found
        return found

    def start(self) -> None:
        self._thread.start()

    def depth(self) -> int:
        """Projects waiting: single requests not started and the projects of batches not yet handed over."""
        with self._cond:
            return len(self._waiting) + sum(batch.remaining for batch in self._batches)

    def _refuse_unless_open(self) -> None:
        if self.stopping.is_set():
            raise Unavailable("the server is stopping; try another server or again later", 5)
        if self.failure is not None:
            raise Unavailable(self.failure, 30)
        if not self.ready.is_set():
            raise Unavailable("the workers are warming up", 1)

    def submit(
        self, project: Project, selection: Selection, deadline: float | None = None
    ) -> cf.Future[tuple[ReportOutcome, ...]]:
        """Queue one project; its future gets the project's report outcomes once they are written and indexed.

        ``deadline`` (``time.monotonic()``, default the request time limit from now): past it, a project still
        waiting for the output folder or behind other requests is given up (its future raises :class:`GivenUp`)
        a little before the caller stops waiting, so that the caller can say why.

        :raises Unavailable: the queue is full, or the service is not taking work.
        """
        future: cf.Future[tuple[ReportOutcome, ...]] = cf.Future()
        with self._cond:
            self._refuse_unless_open()
            if len(self._waiting) >= self.config.queue_size:
                raise Unavailable(
                    f"the queue is full ({self.config.queue_size} requests waiting)", self.config.retry_after_s
                )
            if deadline is None:
                deadline = time.monotonic() + self.config.request_timeout_s
            self._waiting.append(_Waiting(project, selection, future, deadline - GIVE_UP_EARLY_S))
            self._cond.notify()
        return future

    def submit_batch(self, projects: Sequence[Project], selection: Selection) -> BatchView:
        """Queue a batch; it runs a chunk at a time, its progress in the batch book.

        :raises Unavailable: too many batches queued or running in this process, or not taking work.
        """
        with self._cond:
            self._refuse_unless_open()
            if len(self._batches) >= self.config.batch_queue_size:
                raise Unavailable(
                    f"too many batches queued or running ({self.config.batch_queue_size})",
                    5 * self.config.retry_after_s,
                )
            batch = Batch(uuid.uuid4().hex, selection, projects)
            self.book.create(batch.id, len(projects), selection.reports)
            self._batches.append(batch)
            self._cond.notify()
        view = self.book.get(batch.id)
        assert view is not None
        return view

    def cancel_batch(self, batch_id: str) -> tuple[BatchView | None, bool]:
        """Ask for a batch to stop, whichever process runs it: ``(the batch, whether it had finished already)``;
        ``(None, False)`` when there is no such batch."""
        view = self.book.get(batch_id)
        if view is None or view.state in FINAL_STATES:
            return view, view is not None
        self.book.request_cancel(batch_id)
        with self._cond:
            for batch in self._batches:
                if batch.id == batch_id:
                    batch.cancel.set()
            self._cond.notify()
        return self.book.get(batch_id), False

    def stop(self, timeout_s: float) -> None:
        """Take no more work, finish the single requests waiting (batches stop at the end of their chunk,
        ``interrupted``), then close the runners. Safe to call twice."""
        self.stopping.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        if self._thread.is_alive():
            log.warning("the dispatcher did not finish within %.1f s; leaving it", timeout_s)

    # -- the dispatcher thread ------------------------------------------------------------------------------

    def _work(self) -> None:
        try:
            try:
                self._warm(self._runner(self.default))
            except BaseException as error:
                self.failure = f"the workers did not start: {describe_error(error)}"
                log.error("%s", self.failure)
                return
            if self.stopping.is_set():
                return
            self.ready.set()
            log.info("workers ready: %s x%d", self.config.strategy, self.default.options.workers)
            while True:
                work = self._next()
                if work is None:
                    return
                if isinstance(work, _Idle):
                    self._release_store()  # idle a while: a run or another server process may have the folder
                    continue
                try:
                    if isinstance(work, Batch):
                        self._batch_step(work)
                    else:
                        self._make(work)
                except Exception as error:  # a bug or a broken batch book: logged, the service goes on
                    log.exception("the dispatcher failed: %s", describe_error(error))
                    if isinstance(work, Batch):
                        self._finish(work, "failed", f"the batch stopped: {describe_error(error)}")
                self._last_pass = time.monotonic()
                if self._store is not None and self._others_waiting():
                    self._release_store()  # another server process waits for the folder: its turn
                    time.sleep(LIMITS.busy_retry_s)
        finally:
            self._close_all()

    def _has_work(self) -> bool:
        with self._cond:
            return bool(self._waiting) or (bool(self._batches) and not self.stopping.is_set())

    def _next(self) -> list[_Waiting] | Batch | _Idle | None:
        with self._cond:
            while True:
                # Single requests and batches take turns; once stopping, the requests waiting are all served first.
                if self._waiting and (not self._batches or self.stopping.is_set() or next(self._turns) % 2 == 0):
                    taken = self._take_waiting()
                    if taken:
                        return taken
                    continue
                if self._batches and not self.stopping.is_set():
                    return self._batches[0]
                if self.stopping.is_set():
                    return None
                if self._store is not None:
                    idle_s = time.monotonic() - self._last_pass
                    if idle_s >= LIMITS.store_idle_s:
                        return _IDLE
                    self._cond.wait(LIMITS.store_idle_s - idle_s)
                else:
                    self._cond.wait(IDLE_WAIT_S)

    def _take_waiting(self) -> list[_Waiting]:
        """Up to a micro-batch of waiting projects of one module selection, each id once; the rest stay queued."""
        selection = self._waiting[0].selection
        taken: list[_Waiting] = []
        ids: set[str] = set()
        kept: deque[_Waiting] = deque()
        while self._waiting and len(taken) < LIMITS.max_micro_batch_projects:
            waiting = self._waiting.popleft()
            if waiting.selection is not selection or waiting.project.id in ids:
                kept.append(waiting)
            elif waiting.future.set_running_or_notify_cancel():  # else withdrawn: it timed out before it started
                taken.append(waiting)
                ids.add(waiting.project.id)
        kept.extend(self._waiting)
        self._waiting = kept
        return taken

    def _runner(self, selection: Selection) -> Runner:
        key = selection.reports
        runner = self._runners.get(key)
        if runner is None:
            runner = start_runner(selection.options, selection.plan)
            self._runners[key] = runner
            while len(self._runners) > LIMITS.warm_runners:
                oldest = next(k for k in self._runners if k != self.default.reports)
                self._runners.pop(oldest).close()
        self._runners.move_to_end(key)
        return runner

    def _warm(self, runner: Runner) -> None:
        """Make a few sample projects without writing them, so that every worker is started and warm; no more
        once the server is stopping."""
        options = self.default.options
        count = max(2, 2 * options.workers * options.chunksize)
        samples = (
            parse_project(raw, f"sample[{i}]")
            for i, raw in enumerate(iter_sample_projects(count))
            if not self.stopping.is_set()
        )
        for _ in runner.run(samples, None):
            pass

    def _open_store(self) -> ReportStore | None:
        """The output folder's store, opened (and its stale temporary files removed) unless this process has it
        already; ``None`` while another process or run holds the folder."""
        if self._store is None:
            try:
                self._store = ReportStore(self.out, self.config.db)
            except OutputBusy:
                with contextlib.suppress(OSError):  # say so to the holder, if it is a server process
                    self._waiting_file.touch()
                return None
            self._store_since_ns = time.time_ns()
            self._store.cleanup_temp_files()
        return self._store

    def _others_waiting(self) -> bool:
        """Whether another server process asked for the output folder since this one took it (one ``stat``)."""
        try:
            return os.stat(self._waiting_file).st_mtime_ns > self._store_since_ns
        except OSError:
            return False

    def _release_store(self) -> None:
        """Commit and close the store: the folder is free for another server process or run."""
        store, self._store = self._store, None
        if store is not None:
            try:
                store.close()
            except Exception as error:
                log.error("closing the report store failed: %s", describe_error(error))

    def _generate(
        self,
        selection: Selection,
        projects: Callable[[], Iterator[Project]],
        on_report: Callable[[ReportOutcome], None],
        give_up: Callable[[], bool],
    ) -> bool:
        """One pass of the engine over ``projects()``, its rows committed at the end; while another process
        holds the output folder, wait and try again until ``give_up()``. False if it gave up."""
        runner = self._runner(selection)
        while True:
            store = self._open_store()
            if store is None:
                if give_up():
                    return False
                time.sleep(LIMITS.busy_retry_s)
                continue
            try:
                generate(
                    projects(),
                    selection.options,
                    on_report,
                    runner=runner,
                    batch_plan=selection.plan,
                    cache=self.cache,
                    store=store,
                )
                store.flush()
            except BaseException:
                self._release_store()  # whatever state it is in, the next pass opens it afresh
                raise
            return True

    def _make(self, taken: list[_Waiting]) -> None:
        """Make a micro-batch of single requests; each gets its outcomes once all are written and indexed."""
        selection = taken[0].selection
        made: dict[str, list[ReportOutcome]] = {w.project.id: [] for w in taken}

        def on_report(outcome: ReportOutcome) -> None:
            self.on_report(outcome)
            made[outcome.project_id].append(outcome)

        held_up = False  # by another writer holding the output folder, at some point of this pass

        def still_wanted() -> list[_Waiting]:
            now = time.monotonic()
            for waiting in taken:
                if waiting.deadline <= now and not waiting.future.done():
                    waiting.future.set_exception(GivenUp(BUSY if held_up else BEHIND))
            return [w for w in taken if not w.future.done()]

        def give_up() -> bool:
            nonlocal held_up
            held_up = True
            return not still_wanted()

        try:
            done = self._generate(selection, lambda: (w.project for w in still_wanted()), on_report, give_up)
        except BaseException as error:
            log.error("making %d project(s) failed: %s", len(taken), describe_error(error))
            for waiting in taken:
                if not waiting.future.done():
                    waiting.future.set_exception(error if isinstance(error, Exception) else RuntimeError(str(error)))
            if not isinstance(error, Exception):
                raise
            return
        for waiting in taken:
            if not waiting.future.done():
                if done:
                    waiting.future.set_result(tuple(made[waiting.project.id]))
                else:
                    waiting.future.set_exception(GivenUp(BUSY))

    def _batch_step(self, batch: Batch) -> None:
        """Hand the next chunk of a batch to the engine; finish the batch when it is done, cancelled or stopped."""
        if batch.position == 0 and batch.counts["done"] == 0:
            self.book.update(batch.id, state="running", started_s=time.time())
        if self.book.cancel_requested(batch.id):
            batch.cancel.set()
        end = min(len(batch.projects), batch.position + LIMITS.batch_chunk_projects)
        reports = batch.selection.reports
        seen: dict[str, list[ReportOutcome]] = {}
        made_after_cancel: list[str] = []

        def feed() -> Iterator[Project]:
            while batch.position < end:
                if batch.cancel.is_set() or self.stopping.is_set():
                    return
                project = batch.projects[batch.position]
                batch.position += 1
                yield project

        def on_report(outcome: ReportOutcome) -> None:
            self.on_report(outcome)
            outcomes = seen.setdefault(outcome.project_id, [])
            outcomes.append(outcome)
            if len(outcomes) < len(reports):
                return
            if batch.cancel.is_set() and any(o.status != "skipped" for o in outcomes):
                made_after_cancel.append(outcome.project_id)  # in flight when the cancel came: discarded whole
            else:
                batch.count(outcomes)

        error: str | None = None
        try:
            self._generate(batch.selection, feed, on_report, lambda: batch.cancel.is_set() or self.stopping.is_set())
        except Exception as failure:
            error = f"the batch stopped: {describe_error(failure)}"
            log.error("batch %s: %s", batch.id, error)
        if made_after_cancel:
            self._discard(batch.selection, made_after_cancel)
        state = None
        if error is not None:
            state = "failed"
        elif batch.cancel.is_set() and (made_after_cancel or batch.remaining > 0):
            state = "cancelled"
        elif batch.remaining == 0:
            state = "done"
        elif self.stopping.is_set():
            state, error = (
                "interrupted",
                "the server stopped; send the batch again to resume (unchanged projects are skipped)",
            )
        self.book.update(batch.id, **batch.counts)
        if state is not None:
            self._finish(batch, state, error)

    def _finish(self, batch: Batch, state: str, error: str | None) -> None:
        try:
            self.book.update(batch.id, state=state, error=error, finished_s=time.time(), **batch.counts)
        except Exception as failure:
            log.error("batch %s: cannot record its end (%s): %s", batch.id, state, describe_error(failure))
        with self._cond:
            if batch in self._batches:
                self._batches.remove(batch)
        log.info("batch %s %s: %s", batch.id, state, batch.counts)

    def _discard(self, selection: Selection, project_ids: list[str]) -> None:
        """Forget projects whole, files and index rows, as a Ctrl-C forgets those in flight."""
        while (store := self._open_store()) is None:
            time.sleep(LIMITS.busy_retry_s)
        for project_id in project_ids:
            store.discard(project_id, selection.reports)
        store.flush()

    def _close_all(self) -> None:
        with self._cond:
            waiting, self._waiting = list(self._waiting), deque()
            batches = list(self._batches)
        for item in waiting:
            if item.future.set_running_or_notify_cancel():
                item.future.set_exception(Unavailable(self.failure or "the server stopped before making it", 5))
        for batch in batches:
            if self.failure is not None:
                self._finish(batch, "failed", self.failure)
            else:
                why = "the server stopped; send the batch again to resume (unchanged projects are skipped)"
                self._finish(batch, "interrupted", why)
        self._release_store()
        for runner in reversed(self._runners.values()):
            try:
                runner.close()
            except Exception as error:
                log.warning("closing a runner failed: %s", describe_error(error))
        self._runners.clear()
        try:
            self.cache.close()
        except Exception as error:
            log.warning("closing the cache failed: %s", describe_error(error))
