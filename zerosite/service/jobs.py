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
import sqlite3
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace

from zerosite.engine import BatchOptions, BatchPlan, ReportOutcome, generate, plan_batch, start_runner
from zerosite.files import OutputBusy
from zerosite.project import Project, parse_project
from zerosite.sample import iter_sample_projects
from zerosite.service.batches import BOOK_FILE, FINAL_STATES, BatchBook, BatchView
from zerosite.service.config import LIMITS, ConfigError, ServiceConfig
from zerosite.service.errors import public_cause
from zerosite.store import ReportStore
from zerosite.types import ReportCache, Runner, StoreError, describe_error

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
_RECORD_ENDS = _Idle()
"""What :meth:`ReportQueue._next` hands back when a batch's end that the book refused is due to be tried again."""
GIVE_UP_EARLY_S = 0.1
"""A request still waiting for the output folder is given up this long before its caller's deadline (a tenth of
the time limit at most, so that a short limit still gives a request most of it)."""
RECORD_RETRY_S = 1.0
"""How often the end of a batch that the batch book refused (a full disk) is written to it again."""


class GivenUp(Exception):
    """A single request given up before it was made because its time limit came first; the message says what held
    it up: the output folder held by another writer, or the requests ahead of it in the queue."""


BUSY = "the output folder stayed busy (another zerosite run is writing to it)"
BEHIND = "the requests ahead of it in the queue took the time"
STARTING = "the workers for its module selection were being started"
TOO_SHORT = "the time limit is too short for a request to get its turn"
NOT_KEPT = "not kept: the index refused it"
INTERNAL = "the batch stopped: an internal error; the server log has the details"


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
    behind: bool = True
    """Whether other work was queued or running when it came (else a time limit it missed was too short)."""


@dataclass(eq=False)
class Batch:
    """A batch this process runs: its projects, how far it got, whether a cancel was asked for."""

    id: str
    selection: Selection
    projects: Sequence[Project]
    position: int = 0
    cancel: threading.Event = field(default_factory=threading.Event)
    state: str = "queued"
    error: str | None = None
    created_at: str = ""
    started_s: float | None = None
    finished_s: float | None = None
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

    def view(self) -> BatchView:
        """The batch as this process knows it: what it answers, whatever the batch book holds."""
        return BatchView(
            id=self.id,
            state=self.state,
            modules=",".join(self.selection.reports),
            total=len(self.projects),
            **self.counts,
            created_at=self.created_at,
            started_s=self.started_s,
            finished_s=self.finished_s,
            cancel_requested=self.cancel.is_set(),
            pid=os.getpid(),
            error=self.error,
        )


@dataclass(frozen=True)
class _Pass:
    """What one pass of the engine kept: its outcomes as the index holds them (a report the index refused is
    ``failed``, its project in ``dropped``), and the error that stopped it, if one did."""

    outcomes: list[ReportOutcome]
    dropped: frozenset[str] = frozenset()
    error: Exception | None = None
    made: bool = True
    """False: given up while another writer held the output folder."""

    def by_project(self) -> dict[str, list[ReportOutcome]]:
        found: dict[str, list[ReportOutcome]] = {}
        for outcome in self.outcomes:
            found.setdefault(outcome.project_id, []).append(outcome)
        return found


class ReportQueue:
    """Bounded queues of work and the thread that does it: start with :meth:`start`, end with :meth:`stop`."""

    def __init__(self, config: ServiceConfig, cache: ReportCache, on_report: Callable[[ReportOutcome], None]) -> None:
        self.config = config
        self.cache = cache
        self.on_report = on_report
        self.out = config.out
        self._selections: dict[tuple[str, ...] | None, Selection] = {}
        self.default = self.selection(None)  # an unknown strategy or a plugin problem: raised here, at start
        self.book = _open_book(config)
        self.ready = threading.Event()
        self.failure: str | None = None
        self.stopping = threading.Event()
        self._cond = threading.Condition()
        self._waiting: deque[_Waiting] = deque()
        self._batches: deque[Batch] = deque()
        self._ended: dict[str, Batch] = {}
        """Batches that ended and whose end the batch book has not taken yet (a full disk): answered from here."""
        self._record_at = 0.0
        self._warm_runner: Runner | None = None
        self._warm_key: tuple[str, ...] | None = None
        self.runner_starts = 0
        self._started_runner = False
        self._pass_running = False
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
            early = min(GIVE_UP_EARLY_S, self.config.request_timeout_s / 10)
            behind = bool(self._waiting) or self._pass_running
            self._waiting.append(_Waiting(project, selection, future, deadline - early, behind))
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
            try:
                self.book.create(batch.id, len(projects), selection.reports)
                view = self.book.get(batch.id)
            except (sqlite3.Error, OSError) as error:
                log.error("cannot record a new batch in %s: %s", self.book.path, describe_error(error))
                why = public_cause(error)
                raise Unavailable(
                    f"the batch cannot be recorded now ({why}); the server log has the details", 30
                ) from None
            assert view is not None
            batch.created_at = view.created_at
            self._batches.append(batch)
            self._cond.notify()
        return view

    def _mine(self, batch_id: str) -> Batch | None:
        """The batch if this process runs it or ran it and the book lacks its end (then it knows it best)."""
        with self._cond:
            return self._ended.get(batch_id) or next((b for b in self._batches if b.id == batch_id), None)

    def view(self, batch_id: str) -> BatchView | None:
        """A batch as this process runs it, else as the batch book has it (another process's); ``None`` if none.

        :raises sqlite3.Error: the batch book cannot be read.
        """
        mine = self._mine(batch_id)
        return mine.view() if mine is not None else self.book.get(batch_id)

    def cancel_batch(self, batch_id: str) -> tuple[BatchView | None, bool]:
        """Ask for a batch to stop, whichever process runs it: ``(the batch, whether it had finished already)``;
        ``(None, False)`` when there is no such batch."""
        mine = self._mine(batch_id)
        if mine is not None:
            if mine.state in FINAL_STATES:
                return mine.view(), True
            with self._cond:
                mine.cancel.set()
                self._cond.notify()
            try:
                self.book.request_cancel(batch_id)
            except (sqlite3.Error, OSError) as error:  # this process has it: the cancel holds all the same
                log.warning("batch %s: cannot record the cancel: %s", batch_id, describe_error(error))
            return mine.view(), False
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
                if work is _RECORD_ENDS:
                    self._record_ends()
                    continue
                if isinstance(work, _Idle):
                    self._release_store()  # idle a while: a run or another server process may have the folder
                    continue
                self._pass_running = True
                try:
                    if isinstance(work, Batch):
                        self._batch_step(work)
                    else:
                        self._make(work)
                except Exception as error:  # a bug: logged, the service goes on
                    log.exception("the dispatcher failed: %s", describe_error(error))
                    if isinstance(work, Batch):
                        self._finish(work, "failed", INTERNAL)
                finally:
                    self._pass_running = False
                self._last_pass = time.monotonic()
                if self._ended:
                    self._record_ends()
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
                now = time.monotonic()
                if self._ended and now >= self._record_at:
                    return _RECORD_ENDS
                wait_s = IDLE_WAIT_S
                if self._store is not None:
                    idle_s = now - self._last_pass
                    if idle_s >= LIMITS.store_idle_s:
                        return _IDLE
                    wait_s = LIMITS.store_idle_s - idle_s
                if self._ended:
                    wait_s = min(wait_s, self._record_at - now)
                self._cond.wait(wait_s)

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

    @property
    def warm_modules(self) -> tuple[str, ...] | None:
        """The modules the warm runner makes; ``None`` while there is none."""
        return self._warm_key if self._warm_runner is not None else None

    def _runner(self, selection: Selection) -> Runner:
        """The warm runner for ``selection``. One runner at a time, so that a server process never runs more than
        ``--workers`` workers: another module selection closes it and starts its own."""
        key = selection.reports
        if self._warm_runner is None or self._warm_key != key:
            self._close_runner()
            self._warm_runner = start_runner(selection.options, selection.plan)
            self._warm_key = key
            self.runner_starts += 1
        return self._warm_runner

    def _close_runner(self) -> None:
        runner, self._warm_runner = self._warm_runner, None
        if runner is not None:
            try:
                runner.close()
            except Exception as error:
                log.warning("closing a runner failed: %s", describe_error(error))

    def _warm(self, runner: Runner) -> None:
        """Make a few sample projects without writing them, so that every worker is started and warm; no more
        once the server is stopping."""
        options = self.default.options
        count = max(2, 2 * options.workers * options.chunksize)
        # Said first: a module that ends this process on a sample project (sequential, thread) ends the server
        # here, before any note of it can be kept, and this is then the last line of the dispatcher's it wrote.
        log.info("warming the workers: %s x%d, %d sample projects", self.config.strategy, options.workers, count)
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
        give_up: Callable[[], bool],
        on_arrival: Callable[[ReportOutcome], None] | None = None,
    ) -> _Pass:
        """One pass of the engine over ``projects()``, its rows committed at the end; while another process
        holds the output folder, wait and try again until ``give_up()``. Its outcomes are counted (metrics) once
        the pass has ended, as the index kept them; ``on_arrival`` sees each as it comes, before that."""
        starts = self.runner_starts
        runner = self._runner(selection)
        self._started_runner = self.runner_starts != starts
        outcomes: list[ReportOutcome] = []

        def arrived(outcome: ReportOutcome) -> None:
            outcomes.append(outcome)
            if on_arrival is not None:
                on_arrival(outcome)

        while True:
            store = self._open_store()
            if store is None:
                if give_up():
                    return _Pass([], made=False)
                time.sleep(LIMITS.busy_retry_s)
                continue
            try:
                generate(
                    projects(),
                    selection.options,
                    arrived,
                    runner=runner,
                    batch_plan=selection.plan,
                    cache=self.cache,
                    store=store,
                )
                store.flush()
            except Exception as error:
                if isinstance(error, StoreError):
                    store.abandon_pending()  # the index took no more: their files go too
                kept, dropped = self._as_kept(store, outcomes)
                self._release_store()  # whatever state it is in, the next pass opens it afresh
                self._count(kept)
                return _Pass(kept, dropped, error)
            except BaseException:
                self._release_store()
                raise
            self._count(outcomes)
            return _Pass(outcomes)

    def _as_kept(self, store: ReportStore, outcomes: list[ReportOutcome]) -> tuple[list[ReportOutcome], frozenset[str]]:
        """``outcomes`` of a pass that failed, as the index holds them: a report written that the index does not
        hold (its rows were refused, its file removed) is failed; its project's id is in the second part."""
        kept: list[ReportOutcome] = []
        dropped: set[str] = set()
        for outcome in outcomes:
            indexed = store.indexed_file(outcome.project_id, outcome.module)
            if outcome.status == "written" and (indexed is None or indexed[0] != (outcome.sha256 or indexed[0])):
                dropped.add(outcome.project_id)
                outcome = replace(outcome, status="failed", location=None, size_bytes=0, sha256=None, error=NOT_KEPT)
            kept.append(outcome)
        return kept, frozenset(dropped)

    def _count(self, outcomes: list[ReportOutcome]) -> None:
        for outcome in outcomes:
            self.on_report(outcome)

    def public(self, error: BaseException) -> str:
        """Why ``error`` happened, for a client: no path of the server's."""
        return public_cause(error, (self.out,))

    def _make(self, taken: list[_Waiting]) -> None:
        """Make a micro-batch of single requests; each gets its outcomes once all are written and indexed, as the
        index kept them: a pass that failed part-way answers those it kept."""
        selection = taken[0].selection
        held_up = False  # by another writer holding the output folder, at some point of this pass

        def why_late(waiting: _Waiting) -> str:
            if held_up:
                return BUSY
            if waiting.behind:
                return BEHIND
            return STARTING if self._started_runner else TOO_SHORT

        def still_wanted() -> list[_Waiting]:
            now = time.monotonic()
            for waiting in taken:
                if waiting.deadline <= now and not waiting.future.done():
                    waiting.future.set_exception(GivenUp(why_late(waiting)))
            return [w for w in taken if not w.future.done()]

        def give_up() -> bool:
            nonlocal held_up
            held_up = True
            return not still_wanted()

        self._started_runner = False
        try:
            made = self._generate(selection, lambda: (w.project for w in still_wanted()), give_up)
        except BaseException as error:
            log.error("making %d project(s) failed: %s", len(taken), describe_error(error))
            for waiting in taken:
                if not waiting.future.done():
                    waiting.future.set_exception(error if isinstance(error, Exception) else RuntimeError(str(error)))
            if not isinstance(error, Exception):
                raise
            return
        if made.error is not None:
            log.error("making %d project(s) failed: %s", len(taken), describe_error(made.error))
        found = made.by_project()
        reports = len(selection.reports)
        for waiting in taken:
            if waiting.future.done():
                continue
            outcomes = found.get(waiting.project.id, [])
            if not made.made:
                waiting.future.set_exception(GivenUp(BUSY))
            elif made.error is not None and len(outcomes) < reports:
                waiting.future.set_exception(made.error)
            else:
                waiting.future.set_result(tuple(outcomes))

    def _batch_step(self, batch: Batch) -> None:
        """Hand the next chunk of a batch to the engine; finish the batch when it is done, cancelled or stopped."""
        if batch.state == "queued":
            batch.state, batch.started_s = "running", time.time()
            self._record(batch, state=batch.state, started_s=batch.started_s)
        with contextlib.suppress(sqlite3.Error, OSError):  # a cancel through another process; this one's is set
            if self.book.cancel_requested(batch.id):
                batch.cancel.set()
        end = min(len(batch.projects), batch.position + LIMITS.batch_chunk_projects)
        reports = batch.selection.reports
        arrived: dict[str, int] = {}
        after_cancel: set[str] = set()

        def feed() -> Iterator[Project]:
            while batch.position < end:
                if batch.cancel.is_set() or self.stopping.is_set():
                    return
                project = batch.projects[batch.position]
                batch.position += 1
                yield project

        def on_arrival(outcome: ReportOutcome) -> None:
            arrived[outcome.project_id] = arrived.get(outcome.project_id, 0) + 1
            if arrived[outcome.project_id] == len(reports) and batch.cancel.is_set():
                after_cancel.add(outcome.project_id)  # in flight when the cancel came: discarded whole, if made

        made = self._generate(
            batch.selection, feed, lambda: batch.cancel.is_set() or self.stopping.is_set(), on_arrival
        )
        error: str | None = None
        if made.error is not None:
            error = f"the batch stopped: {self.public(made.error)}"
            if isinstance(made.error, StoreError):
                error = (
                    f"the batch stopped: the index took no more reports ({self.public(made.error)}); those it did "
                    "not take were removed, those it took are kept: make room and send the batch again to resume "
                    "(unchanged projects are skipped)"
                )
            log.error("batch %s stopped: %s", batch.id, describe_error(made.error))
        made_after_cancel: list[str] = []
        for project_id, outcomes in made.by_project().items():
            if project_id in made.dropped or len(outcomes) < len(reports):
                continue  # not kept whole: not done (sent again, it is made again)
            if project_id in after_cancel and any(o.status != "skipped" for o in outcomes):
                made_after_cancel.append(project_id)
            else:
                batch.count(outcomes)
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
        if state is not None:
            self._finish(batch, state, error)
        else:
            self._record(batch, **batch.counts)

    def _record(self, batch: Batch, **fields: object) -> bool:
        """Write ``fields`` of ``batch`` to the batch book; whether it took them (else why is logged)."""
        try:
            self.book.update(batch.id, **fields)
        except (sqlite3.Error, OSError) as error:
            log.warning("batch %s: the batch book took no progress: %s", batch.id, describe_error(error))
            return False
        return True

    def _finish(self, batch: Batch, state: str, error: str | None) -> None:
        """End ``batch``: this process answers with its end at once; the batch book gets it now, or, if it
        cannot take it (a full disk), once it can (:meth:`_record_ends`)."""
        batch.state, batch.error, batch.finished_s = state, error, time.time()
        with self._cond:
            if batch in self._batches:
                self._batches.remove(batch)
            self._ended[batch.id] = batch
        if self._record_end(batch):
            with self._cond:
                self._ended.pop(batch.id, None)
        else:
            self._record_at = time.monotonic() + RECORD_RETRY_S
        log.info("batch %s %s: %s", batch.id, state, batch.counts)

    def _record_end(self, batch: Batch) -> bool:
        fields = {"state": batch.state, "error": batch.error, "finished_s": batch.finished_s, **batch.counts}
        if batch.started_s is not None:
            fields["started_s"] = batch.started_s
        return self._record(batch, **fields)

    def _record_ends(self) -> None:
        """Write to the batch book the ends it refused before; those it refuses again are tried later."""
        with self._cond:
            ended = list(self._ended.values())
        for batch in ended:
            if self._record_end(batch):
                log.info("batch %s: its end (%s) is in the batch book now", batch.id, batch.state)
                with self._cond:
                    self._ended.pop(batch.id, None)
        self._record_at = time.monotonic() + RECORD_RETRY_S

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
        if self._ended:
            self._record_ends()  # a last try; what the book still lacks reads as interrupted once this process ends
        self._release_store()
        self._close_runner()
        try:
            self.cache.close()
        except Exception as error:
            log.warning("closing the cache failed: %s", describe_error(error))


def _open_book(config: ServiceConfig) -> BatchBook:
    """The batch book in the output folder.

    :raises ConfigError: it cannot be opened or made (a read-only folder, a full disk, a damaged file), named.
    """
    path = config.out / BOOK_FILE
    try:
        return BatchBook(path)
    except (sqlite3.Error, OSError) as error:
        hint = (
            "move it aside (it only holds the batches' progress) or serve another folder"
            if isinstance(error, sqlite3.DatabaseError) and not isinstance(error, sqlite3.OperationalError)
            else "the output folder must be writable, with room to spare"
        )
        raise ConfigError(f"cannot open the batch book {path}: {error}; {hint}") from None
