"""The async strategy's runner: an event loop awaits the fetches, a process pool does the CPU work.

Apart from :mod:`zerosite.strategies`, which registers the strategy, so that asyncio is imported only when the
strategy runs (``bench/startup.py``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import contextlib
import itertools
import signal
import threading
import time
from collections.abc import AsyncGenerator, Callable, Iterable, Iterator
from types import FrameType
from typing import Any, TypeVar

from zerosite.pipeline import InterruptWatch, plugin_raised
from zerosite.project import Project
from zerosite.strategies import (
    WATCH_INTERVAL_S,
    Job,
    PooledRunner,
    ProcessPool,
    make_fetched_chunk,
)
from zerosite.types import (
    ProjectResult,
    ReportWriter,
    StartError,
    StrategyOptions,
    WorkerConfig,
    describe_error,
    error_message,
)
from zerosite.worker import open_source

__all__ = ["AsyncRunner", "StopSignalsBetweenSteps"]

T = TypeVar("T")


class StopSignalsBetweenSteps:
    """Ctrl-C and SIGTERM that arrive while an event loop runs, delivered once it has stopped.

    Their handlers (Python's, or the command line's) raise an exception wherever the main thread is. Raised
    inside one of the loop's callbacks, it can drop a task's wake-up: that task then never ends, and the
    stream's clean-up, which waits for its tasks, waits for ever. So the first signal only stops the loop
    (every callback under way completes); its handler runs in :meth:`run`, between loop iterations, and
    the step goes on if the handler returns. A second signal before that goes to its handler at once (to
    stop what hangs), as with :class:`asyncio.Runner`. Outside :meth:`run`, and outside the main thread,
    signals reach their handlers as before.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.running = False
        self.held: list[tuple[int, FrameType | None]] = []
        self.handlers: dict[int, Callable[[int, FrameType | None], Any]] = {}

    def __enter__(self) -> StopSignalsBetweenSteps:
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                handler = signal.getsignal(signum)
                if callable(handler):
                    self.handlers[signum] = handler
                    signal.signal(signum, self._arrived)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for signum, handler in self.handlers.items():
            if signal.getsignal(signum) == self._arrived:  # not if a handler meanwhile put another in its place
                signal.signal(signum, handler)

    def _arrived(self, signum: int, frame: FrameType | None) -> Any:
        if not self.running or self.held:
            return self.handlers[signum](signum, frame)
        self.held.append((signum, frame))
        self.loop.stop()  # harmless if it just stopped: the next run_forever() makes one pass, and run() goes on
        self.loop.call_soon_threadsafe(_nothing)  # wakes a loop asleep in select()
        return None

    def run(self, step: asyncio.Future[T]) -> T:
        """Run the loop until ``step`` is done (its result, or its exception raised)."""
        if step.done():  # else its callback, scheduled at once, would stop the loop's next run, whoever ran it
            return step.result()
        step.add_done_callback(_stop_its_loop)
        self.running = True
        try:
            while not step.done():
                self.loop.run_forever()
                self._deliver()
        finally:
            self.running = False
            step.remove_done_callback(_stop_its_loop)
            self._deliver()
        return step.result()

    def _deliver(self) -> None:
        if self.held:
            signum, frame = self.held.pop()
            self.handlers[signum](signum, frame)


def _nothing() -> None:
    pass


def _stop_its_loop(future: asyncio.Future[Any]) -> None:
    future.get_loop().stop()


class AsyncRunner(PooledRunner):
    """One event loop reused across batches, driven step by step so results stream to the caller."""

    def __init__(self, config: WorkerConfig, options: StrategyOptions) -> None:
        super().__init__(config, options)
        self.alone_lock: asyncio.Lock | None = None
        self._filling: _Chunk | None = None
        # Two chunks a worker in flight, one running and one waiting: a worker never waits for the loop.
        self._chunk_limit = max(1, options.max_in_flight // (2 * max(1, options.workers)))
        self.source = open_source(config)
        self.loop = asyncio.Runner()

    def run(self, projects: Iterable[Project], files: ReportWriter | None = None) -> Iterator[ProjectResult]:
        stream = self._stream(projects, files)
        loop = self.loop.get_loop()

        async def step() -> ProjectResult:
            return await anext(stream)

        with StopSignalsBetweenSteps(loop) as signals:
            try:
                while True:
                    task = loop.create_task(step())
                    try:
                        result = signals.run(task)
                    except StopAsyncIteration:
                        return
                    except BaseException:
                        # A stop signal (delivered once the step ended) or a second Ctrl-C inside it: cancel
                        # the step, so the stream cancels its own tasks, before it is closed and the pool shut down.
                        task.cancel()
                        with contextlib.suppress(BaseException):
                            signals.run(task)
                        raise
                    yield result
            finally:
                if not loop.is_closed():  # else the runner was closed first, and its loop closed the stream then
                    signals.run(loop.create_task(stream.aclose()))

    async def _stream(
        self, projects: Iterable[Project], files: ReportWriter | None
    ) -> AsyncGenerator[ProjectResult, None]:
        source = iter(projects)
        limit = self.options.max_in_flight
        interval = WATCH_INTERVAL_S if self.config.timeout_s else None
        pending = {asyncio.ensure_future(self._one(p, files)) for p in itertools.islice(source, limit)}
        done: set[asyncio.Task[ProjectResult]] = set()
        try:
            while pending:
                done, pending = await asyncio.wait(pending, timeout=interval, return_when=asyncio.FIRST_COMPLETED)
                self.pool.cull()
                if self.alone is not None:
                    self.alone.cull()
                # The next projects start before any result is handed on, so that those fetched in the same turn
                # of the loop can go to the pool together (:class:`_Chunk`).
                pending.update(asyncio.ensure_future(self._one(p, files)) for p in itertools.islice(source, len(done)))
                while done:
                    yield done.pop().result()
        finally:
            for task in done:  # the batch stops on an error: those not handed on are not "never retrieved"
                if not task.cancelled():
                    task.exception()
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
        except (asyncio.CancelledError, KeyboardInterrupt, GeneratorExit):
            raise  # in an event loop a Ctrl-C may surface anywhere: never taken for the source's own
        except BaseException as error:
            if not plugin_raised(error, InterruptWatch()):
                raise
            why = f"fetch failed: {error_message(error)}"
            return ProjectResult.failed(project, self.reports, why, time.monotonic_ns() - started)
        fetch_ns = time.monotonic_ns() - started
        job, alone = Job(next(self.tickets), fetched), False
        while True:
            if alone:
                self.alone_lock = self.alone_lock or asyncio.Lock()
                async with self.alone_lock:  # one project at a time on the one-worker pool
                    pool = self._alone()
                    outcome = await self._attempt(pool, job, fetch_ns, files, alone)
            else:
                outcome = await self._attempt(self.pool, job, fetch_ns, files, alone)
            if isinstance(outcome, ProjectResult):
                return outcome
            verdict, job = outcome
            alone = alone or verdict == "alone"

    async def _attempt(
        self, pool: ProcessPool, job: Job, fetch_ns: int, files: ReportWriter | None, alone: bool
    ) -> ProjectResult | tuple[str, Job]:
        chunk = self._filling
        if alone or chunk is None or chunk.full or chunk.pool is not pool:
            chunk = _Chunk(pool, files, 1 if alone else self._chunk_limit)
            self._filling = None if alone else chunk
        index = chunk.add(job, fetch_ns)
        if index == 0:  # the chunk's first project sends it, once the others fetched in this turn of the loop joined
            try:
                if not alone:
                    await asyncio.sleep(0)
            except BaseException:
                chunk.done.cancel()  # never sent: its other projects are not left waiting
                raise
            finally:
                if self._filling is chunk:
                    self._filling = None
            chunk.submit()
        try:
            return (await asyncio.shield(chunk.done))[index]  # shielded: one project cancelled is not all of them
        except cf.BrokenExecutor:
            broken = chunk.executor
            if broken is None:  # refused before it was sent: its first project raised it from ``submit`` already
                raise
            pool.restart(broken, wait=alone)  # alone: one dead worker, quickly joined
        except StartError:
            raise
        except Exception as error:  # a result that could not come back
            why = f"making project failed: {describe_error(error)}"
            return ProjectResult.failed(job.project, self.reports, why, fetch_ns)
        verdict, outcome = self.breakage.sort(pool, broken, job, alone)
        return outcome if isinstance(outcome, ProjectResult) else (verdict, outcome)

    def close(self) -> None:
        try:
            self.loop.run(self.source.aclose())
            self.source.close()
            self.loop.close()
        finally:
            super().close()


class _Chunk:
    """Projects fetched in the same turn of the event loop, sent to the pool as one task (``make_fetched_chunk``):
    one submit, one wake-up of the executor's threads and one result for them all, where a task a project cost
    the parent a quarter of its CPU (docs/performance.md). Each project awaits its own result in :attr:`done`;
    a worker that dies fails the chunk's task, and each of its projects is sorted as before (``Breakage``)."""

    def __init__(self, pool: ProcessPool, files: ReportWriter | None, limit: int) -> None:
        self.pool, self.files, self.limit = pool, files, limit
        self.items: list[tuple[Any, int]] = []
        self.done: asyncio.Future[list[ProjectResult]] = asyncio.get_running_loop().create_future()
        self.executor: cf.Executor | None = None
        """The executor the task went to, once sent: the one to restart if it broke."""

    @property
    def full(self) -> bool:
        return len(self.items) >= self.limit

    def add(self, job: Job, fetch_ns: int) -> int:
        """Add ``job``'s project; its index in the chunk's results."""
        self.items.append((job.item, fetch_ns))
        return len(self.items) - 1

    def submit(self) -> None:
        """Send the chunk to the pool; an executor that refuses it raises here, as ``ProcessPool.submit`` does."""
        try:
            future = self.pool.submit(make_fetched_chunk, self.items, self.files)
        except Exception as error:  # the chunk's other projects get it too
            self.done.set_exception(error)
            self.done.exception()  # retrieved: the chunk's first project raises it itself, below
            raise
        except BaseException:
            self.done.cancel()
            raise
        self.executor = future.executor  # type: ignore[attr-defined]
        asyncio.wrap_future(future).add_done_callback(self._settle)

    def _settle(self, sent: asyncio.Future[list[ProjectResult]]) -> None:
        if self.done.done():
            return
        if sent.cancelled():
            self.done.cancel()
        elif (error := sent.exception()) is not None:
            self.done.set_exception(error)
            self.done.exception()  # retrieved: each project awaiting it raises it; none left when the batch ended
        else:
            self.done.set_result(sent.result())
