"""The behaviour plugins provide: data sources, strategies and their runners, and where reports are written."""

from __future__ import annotations

import abc
import contextlib
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import ClassVar, Protocol

from zerosite.project import Project
from zerosite.types.results import ProjectResult, WrittenFile
from zerosite.types.settings import SourceSettings, StrategyOptions, WorkerConfig

__all__ = ["DataSource", "ReportWriter", "Runner", "Strategy"]


class ReportWriter(Protocol):
    """Where a worker writes a report (``zerosite.files.ReportFiles``); picklable, atomic."""

    def write(self, project_id: str, module: str, html: str) -> WrittenFile:
        """Write one report; raise :class:`~zerosite.types.StoreError` naming the file and the cause."""
        ...


class DataSource(abc.ABC):
    """One way to get a project's inputs: subclass it and register an instance through the hook.

    Lifecycle: ``open(settings)`` once per process (a strategy does it in its worker initializer,
    or around the batch for in-process strategies), then any number of ``fetch``/``afetch`` calls,
    from any thread, then ``close()`` (and ``await aclose()`` inside each event loop that called
    ``afetch``). ``session``/``asession`` wrap that in ``with``/``async with``.
    Clients are created lazily on first use and reused: one per process for ``fetch``,
    one per event loop for ``afetch``; never one per request.
    """

    name: str = ""
    description: str = ""
    settings: SourceSettings = SourceSettings()
    validates_answers: bool = False
    """True when every project ``fetch`` returns was made by :func:`zerosite.project.parse_project` (as the
    ``http`` source's are): the engine then checks only its type and id, not its fields again."""

    def open(self, settings: SourceSettings) -> None:
        """Configure the source for this process; cheap and idempotent (clients start lazily)."""
        self.settings = settings

    def close(self) -> None:  # noqa: B027 (optional hook: nothing to release by default)
        """Release this process's sync resources; the source may be opened again later."""

    async def aclose(self) -> None:  # noqa: B027 (optional hook: nothing to release by default)
        """Release the resources that ``afetch`` created in the running event loop."""

    @abc.abstractmethod
    def fetch(self, project: Project) -> Project:
        """Return ``project`` with its inputs filled in or refreshed; thread-safe."""

    async def afetch(self, project: Project) -> Project:
        """Async :meth:`fetch`. The default calls ``fetch`` inline: override it if ``fetch`` blocks."""
        return self.fetch(project)

    @contextlib.contextmanager
    def session(self, settings: SourceSettings) -> Iterator[DataSource]:
        """``with source.session(settings):`` opens the source and closes it afterwards."""
        self.open(settings)
        try:
            yield self
        finally:
            self.close()

    @contextlib.asynccontextmanager
    async def asession(self, settings: SourceSettings) -> AsyncIterator[DataSource]:
        """``async with source.asession(settings):`` opens, then closes this loop's and the sync resources."""
        self.open(settings)
        try:
            yield self
        finally:
            try:
                await self.aclose()
            finally:
                self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


class Runner(abc.ABC):
    """A started strategy: workers warm; ``run`` may serve several batches; ``close`` stops the workers."""

    @property
    def restarts(self) -> int:
        """How often a broken pool was replaced."""
        return 0

    @property
    def workers(self) -> int | None:
        """The workers its latest batch ran on, where the runner knows better than the options' ``workers`` (a
        cluster it did not start: the threads of its workers); ``None`` otherwise."""
        return None

    @property
    def runs_here(self) -> bool:
        """Whether the projects it takes now are made in this process (their modules' ``os._exit()`` or crash ends
        it, and the batch): the engine then keeps back a project that ended an earlier run, and makes it in a worker
        process of its own instead (the workers of this process note what they make: ``zerosite.making``)."""
        return False

    @abc.abstractmethod
    def run(self, projects: Iterable[Project], files: ReportWriter | None = None) -> Iterator[ProjectResult]:
        """Make every project's reports, yielding results as they complete; input is read lazily.

        Given ``files``, the workers write each report there themselves and hand back its file
        facts; without, they hand back the HTML.
        """

    def close(self) -> None:  # noqa: B027 - a runner without workers has nothing to stop
        """Stop the workers; work not yet started is cancelled."""

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Strategy(abc.ABC):
    """A way to run a batch; subclass it and register an instance through ``zerosite_register_strategies``."""

    name: ClassVar[str]
    description: ClassVar[str]
    batches_only: ClassVar[bool] = False
    """Made for whole batches (a cluster's per-task cost dwarfs one project): the benchmark measures it at the
    batch level only, not for one report or one project at a time."""

    def unavailable_reason(self) -> str | None:
        """Why this strategy cannot run here, or ``None`` when it can."""
        return None

    @abc.abstractmethod
    def start(self, config: WorkerConfig, options: StrategyOptions) -> Runner:
        """Start the workers, warmed with ``config`` (the batch's plan); the caller closes the runner."""
