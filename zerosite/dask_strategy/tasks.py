"""What runs on a Dask worker: the plugins that fit it for a batch, and the task that makes a chunk."""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import itertools
import os
import signal
import threading
import time
import warnings
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from distributed import Scheduler, WorkerPlugin, get_worker
from distributed import Worker as DaskWorker

from zerosite.plugins import PluginWarning, get_modules
from zerosite.project import Project
from zerosite.rendering import forget_loaded_code, get_environment, templates_fingerprint
from zerosite.types import (
    PluginSettings,
    ProjectResult,
    ReportResult,
    ReportWriter,
    WorkerConfig,
    WrittenFile,
    describe_error,
)
from zerosite.worker import Worker, warm_process

__all__ = [
    "DIED_TOPIC",
    "UNFIT_TOPIC",
    "ChunkCancelled",
    "ChunkResult",
    "LoadedCode",
    "Made",
    "MakingNote",
    "SeesOutput",
    "UnfitWorker",
    "WarmWorker",
    "chunks_running",
    "drop_worker",
    "forget_resources",
    "make_chunk",
    "sees_folder",
    "tasks_to_run",
]

COMPRESSION_LEVEL = 1
"""zlib level for HTML handed back: level 1 shrinks a report about threefold (21.6 KB to 7.0 KB) at the least CPU."""

UNFIT_TOPIC = "zerosite-unfit-worker"
"""The Dask event topic on which a worker says why it cannot take a batch's chunks (``{"worker", "why"}``)."""


DIED_TOPIC = "zerosite-died-making"
"""The Dask event topic on which a worker process that its nanny started after the last one died says what that
one was making when it died (``{"worker", "key", "index"}``: the dead worker's address, the chunk task's key and
the project's place in it)."""


class UnfitWorker(Exception):
    """A Dask worker cannot take a batch's chunks; the message names it and says why (``Dask worker tcp://... could
    not be warmed: ...``)."""


@dataclass(frozen=True)
class LoadedCode:
    """What a process's report code was loaded from, for one batch's plugin settings and modules: what the
    parent's content hashes cover (module versions, templates) and the plugins folder's Python files. A long-lived
    Dask worker keeps what it loaded for as long as it runs; a batch gives it what the parent loaded, and a worker
    whose code differs loads it again (:class:`WarmWorker`)."""

    versions: tuple[tuple[str, str | None], ...]
    """``(module, version)`` of each module the batch computes (``None``: not registered)."""
    templates: str
    """:func:`zerosite.rendering.templates_fingerprint` of the templates (their sources as they are on disk now)."""
    plugin_files: tuple[tuple[str, str], ...]
    """``(file name, SHA-256)`` of each Python file in the plugins folder."""

    @classmethod
    def now(cls, config: WorkerConfig) -> LoadedCode:
        """This process's loaded modules for ``config``, with the templates and plugin files as they are now.

        :raises PluginError: the plugins or templates cannot be loaded.
        """
        modules = get_modules(config.plugins)
        versions = tuple((name, getattr(modules.get(name), "version", None)) for name in config.compute)
        templates = templates_fingerprint(get_environment(config.plugins))
        return cls(versions, templates, _plugin_files(config.plugins))

    def differences(self, expected: LoadedCode) -> str:
        """How this code differs from ``expected`` (the parent's), in a few words."""
        mine, theirs = dict(self.versions), dict(expected.versions)
        said = [
            f"module {name} {_version(mine.get(name))} here, {_version(wanted)} in zerosite's process"
            for name, wanted in theirs.items()
            if mine.get(name) != wanted
        ]
        if self.templates != expected.templates:
            said.append("other templates")
        files, wanted_files = dict(self.plugin_files), dict(expected.plugin_files)
        changed = sorted(
            name for name in files.keys() | wanted_files.keys() if files.get(name) != wanted_files.get(name)
        )
        if changed:
            said.append(f"other plugin files ({', '.join(changed)})")
        return "; ".join(said) or "none"


def _version(version: str | None) -> str:
    return "missing" if version is None else f"version {version}"


def _plugin_files(settings: PluginSettings) -> tuple[tuple[str, str], ...]:
    folder = settings.plugins_dir
    if folder is None or not folder.is_dir():
        return ()
    files = []
    for path in sorted(folder.glob("*.py")):
        try:
            files.append((path.name, hashlib.sha256(path.read_bytes()).hexdigest()))
        except OSError:
            files.append((path.name, ""))
    return tuple(files)


@dataclass(frozen=True)
class _Loaded:
    """What this process's cached plugins and templates for some settings were built from, and the plugin warnings
    building them gave (a plugin file skipped, with why: the cause when a module is then missing)."""

    code: LoadedCode | None
    warned: tuple[str, ...]


_LOADED: dict[PluginSettings, _Loaded] = {}
"""Per plugin settings, what this worker process last loaded (:func:`_load`)."""


def _forget_loaded_code() -> None:
    """Drop this process's cached plugin managers, modules and template environments: the next use builds them
    from the files as they are now. Plugin files are imported again; installed packages (ZeroSite's own modules,
    entry-point plugins) stay as imported, and only a restart loads them again."""
    forget_loaded_code()
    _LOADED.clear()


def _load(config: WorkerConfig, expected: LoadedCode | None) -> _Loaded:
    """This process's code for ``config``, loaded again when it was loaded by another batch from other files than
    ``expected`` (the parent's), or not by a batch at all."""
    loaded = _LOADED.get(config.plugins)
    if loaded is not None and loaded.code is not None and (expected is None or loaded.code == expected):
        return loaded
    _forget_loaded_code()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", PluginWarning)
        try:
            code: LoadedCode | None = LoadedCode.now(config)
        except Exception:
            code = None  # the warm-up says why
    warned = tuple(str(w.message).removeprefix("zerosite: ") for w in caught if issubclass(w.category, PluginWarning))
    loaded = _LOADED[config.plugins] = _Loaded(code, warned)
    return loaded


class _Fitness(WorkerPlugin):
    """A worker plugin that grants its worker the Dask resource ``resource`` (one unit per thread) once the worker
    is fit, and never otherwise: tasks that ask for the resource then run only on fit workers, those present
    when the plugin is registered and those that join later alike. A worker that is not fit says why on
    :data:`UNFIT_TOPIC` and raises :class:`UnfitWorker` (Dask logs it there; at registration the client raises it).
    """

    def __init__(self, resource: str) -> None:
        self.resource = resource

    def fit(self, worker: DaskWorker) -> None:
        """Make ``worker`` fit; raise :class:`UnfitWorker` saying why it cannot be."""
        raise NotImplementedError

    async def setup(self, worker: DaskWorker) -> None:
        try:
            self.fit(worker)
        except UnfitWorker as unfit:
            worker.log_event(UNFIT_TOPIC, {"worker": worker.address, "why": str(unfit)})
            raise UnfitWorker(f"Dask worker {worker.address} {unfit}") from None
        await worker.set_resources(**{self.resource: worker.state.nthreads})

    def teardown(self, worker: DaskWorker) -> None:
        """Take the resource back from the worker (the scheduler's word of it goes with :func:`forget_resources`):
        a long-lived worker kept one more resource for each batch it took. Not while a task still holds it."""
        state = worker.state
        if state.available_resources.get(self.resource) == state.total_resources.get(self.resource):
            state.total_resources.pop(self.resource, None)
            state.available_resources.pop(self.resource, None)


class WarmWorker(_Fitness):
    """On each worker (and each that joins later) it loads the plugins, compiles the templates and opens the data
    source once (:func:`zerosite.worker.warm_process`); tasks find it by name. A worker that cannot be warmed (a
    plugin missing there) gets no task.

    A long-lived worker keeps the plugins and templates it loaded for earlier batches: given ``expected``, the
    parent's :class:`LoadedCode`, a worker whose code was loaded from other files loads it again (the plugins
    folder's files, the templates), and one still running other code (an installed package changed since it
    started) refuses the batch, naming itself and asking for a restart: a report made by other code than the
    parent hashed would be indexed as current.

    With ``ignore_sigint`` (the workers of a local cluster, started by this batch) the worker ignores Ctrl-C, as
    pool workers do: the parent alone decides how a batch stops, and closes the cluster.
    """

    def __init__(
        self,
        config: WorkerConfig,
        resource: str,
        ignore_sigint: bool = False,
        expected: LoadedCode | None = None,
    ) -> None:
        super().__init__(resource)
        self.config = config
        self.ignore_sigint = ignore_sigint
        self.expected = expected
        self.worker: Worker | None = None

    def fit(self, worker: DaskWorker) -> None:
        if self.ignore_sigint and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        loaded = _load(self.config, self.expected)
        try:
            warm = warm_process(self.config)
        except Exception as error:
            skipped = f" (skipped there: {'; '.join(loaded.warned)})" if loaded.warned else ""
            raise UnfitWorker(f"could not be warmed: {describe_error(error)}{skipped}") from None
        if self.expected is not None and loaded.code != self.expected:
            warm.source.close()
            code = loaded.code
            differs = code.differences(self.expected) if code else "unknown"
            # Files read again from that machine's disk differ there: a restart reads the same; modules imported
            # when the worker started (installed packages) are what a restart brings up to date.
            files_differ = code is not None and dict(code.versions) == dict(self.expected.versions)
            advice = (
                "make --plugins-dir and --templates-dir hold the same files on every worker's machine"
                if files_differ
                else "restart it (a `dask worker` keeps the installed packages it imported when it started)"
            )
            raise UnfitWorker(
                f"runs other report code than zerosite's process, even loaded again ({differs}): {advice}"
            )
        _note(worker)
        self.worker = warm

    def teardown(self, worker: DaskWorker) -> None:
        if self.worker is not None:
            self.worker.source.close()
            self.worker = None
        super().teardown(worker)


class SeesOutput(_Fitness):
    """For one batch whose workers write the reports: fit is a worker that sees the output folder as the client
    does (the file ``probe`` that the client made there for the batch), so that none writes where the parent
    cannot see, whenever it joined."""

    def __init__(self, folder: Path, probe: str, resource: str) -> None:
        super().__init__(resource)
        self.folder = folder
        self.probe = probe

    def fit(self, worker: DaskWorker) -> None:
        if not sees_folder(self.folder, self.probe):
            raise UnfitWorker(f"does not see the output folder {self.folder}, or cannot write there")


class MakingNote:
    """A file where a worker process notes, for each of its threads, the chunk and project it is making, so that
    the next worker process of the same nanny, started after this one died, can say which project was running
    (:data:`DIED_TOPIC`). Dask alone cannot: it counts a death against every task the worker held, running or
    waiting, and on a cluster of fewer than four workers never gives up on a project that kills them.

    One per nanny, beside the worker processes' own folders (``dask-scratch-space``): a note costs one ``pwrite`` a
    project, and a record outlives the process that wrote it however it ended. A worker without a nanny (nothing
    restarts it) keeps none."""

    RECORD = 256
    """Bytes a thread's record takes: ``"{index} {key} {worker}"``, padded with spaces (a key is about 60
    characters, a worker's address 20 to 50)."""

    def __init__(self, path: Path, worker: str) -> None:
        self.path = path
        self.worker = worker
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        self._slots = threading.local()
        self._slots_given = itertools.count()  # next() on a count is atomic: no lock

    @classmethod
    def for_worker(cls, worker: DaskWorker) -> MakingNote | None:
        """The note of ``worker``'s nanny, or ``None`` (no nanny, or no file can be kept there)."""
        if not worker.nanny or not hasattr(os, "pwrite"):  # no nanny, or not POSIX
            return None
        name = hashlib.sha256(str(worker.nanny).encode()).hexdigest()[:16]
        try:
            return cls(Path(worker.local_directory).parent / f"zerosite-making-{name}", worker.address)
        except OSError:
            return None

    def left(self) -> list[tuple[str, str, int]]:
        """What the last process of this nanny was making when it ended (``(worker, key, index)`` per thread,
        none if it ended between chunks), and the note cleared for this one."""
        size = os.fstat(self.fd).st_size
        data = os.pread(self.fd, size, 0)
        os.ftruncate(self.fd, 0)
        making = []
        for start in range(0, len(data) - self.RECORD + 1, self.RECORD):
            match data[start : start + self.RECORD].decode(errors="replace").split():
                case [index, key, worker] if index.isdigit():
                    making.append((worker, key, int(index)))
        return making

    def making(self, key: str, index: int) -> None:
        """Note that this thread is making project ``index`` of chunk ``key``."""
        record = f"{index} {key} {self.worker}".encode()
        os.pwrite(self.fd, record.ljust(self.RECORD)[: self.RECORD], self._offset())

    def done(self) -> None:
        """Note that this thread is making nothing."""
        os.pwrite(self.fd, b" " * self.RECORD, self._offset())

    def remove(self) -> None:
        """The process ends on its own: nothing to say to the next one."""
        with contextlib.suppress(OSError):
            os.close(self.fd)
            self.path.unlink()

    def _offset(self) -> int:
        slot = getattr(self._slots, "slot", None)
        if slot is None:
            slot = self._slots.slot = next(self._slots_given)
        return int(slot) * self.RECORD


_NOTE: list[MakingNote | None] = []
"""This worker process's :class:`MakingNote` once the first batch's plugin opened it (``[None]``: it keeps none)."""


def _note(worker: DaskWorker) -> MakingNote | None:
    """This process's note, opened the first time: what the process before it was making when it died is then
    said on :data:`DIED_TOPIC`."""
    if not _NOTE:
        note = MakingNote.for_worker(worker)
        _NOTE.append(note)
        if note is not None:
            atexit.register(note.remove)
            for died, key, index in note.left():
                worker.log_event(DIED_TOPIC, {"worker": died, "key": key, "index": index})
    return _NOTE[0]


@dataclass(frozen=True, slots=True)
class Made:
    """One project as a task hands it back: its result (the project's id and index address, not the project)."""

    made: ProjectResult
    """Its reports without their HTML when it is ``packed``."""
    packed: tuple[bytes | None, ...] | None
    """Hand-back: each report's HTML, zlib-compressed (smaller on the wire), in report order."""

    def result(self) -> ProjectResult:
        """The project's result on the client."""
        if self.packed is None:
            return self.made
        return replace(self.made, reports=tuple(map(_with_html, self.made.reports, self.packed)))


@dataclass(frozen=True, slots=True)
class ChunkResult:
    """A chunk's projects as a task hands them back, in the order sent, and how long the worker spent on them."""

    made: tuple[Made, ...]
    busy_ns: int

    def results(self) -> list[ProjectResult]:
        return [made.result() for made in self.made]


class ChunkCancelled(Exception):
    """The chunk being made was cancelled (its batch stopped): it stopped before its next write."""


_WANTED_STATES = frozenset({"executing", "long-running", "resumed"})
"""A task's states on a worker while its client still wants it ("cancelled": released while it runs)."""


def _wanted(key: str) -> bool:
    """On a worker, in a task: whether the client still wants the task ``key`` (it was not cancelled)."""
    task = get_worker().state.tasks.get(key)  # a read of the worker's state: atomic under the GIL
    return task is not None and task.state in _WANTED_STATES


@dataclass(frozen=True)
class _WhileWanted:
    """``files`` for one chunk's task ``key``: each write only while the client still wants the chunk."""

    files: ReportWriter
    key: str

    def write(self, project_id: str, module: str, html: str) -> WrittenFile:
        if not _wanted(self.key):
            raise ChunkCancelled(f"the batch stopped: report {module} of project {project_id} not written")
        return self.files.write(project_id, module, html)


def make_chunk(plugin: str, projects: Sequence[Project], files: ReportWriter | None) -> ChunkResult:
    """The task: make ``projects`` with the worker that plugin ``plugin`` warmed here; given ``files``, write
    each report there, else hand its HTML back compressed. A project that raises fails alone, named.

    A chunk that the client cancels while it runs (its batch stopped) stops before its next write; the parent,
    which waits for it to end, then discards its projects' files with the rest of those in flight. It removes
    none itself: the same task may have run again elsewhere (a worker lost, its tasks sent again) and written
    the same files, which are then the index's.
    """
    started = time.perf_counter_ns()
    here = get_worker()
    warm = here.plugins[plugin]
    if not isinstance(warm, WarmWorker) or warm.worker is None:  # the plugin grants the resource only when warm
        raise RuntimeError(f"Dask worker {here.address} is not warm for this batch")
    key = str(here.get_current_task())
    guarded = None if files is None else _WhileWanted(files, key)
    note = _NOTE[0] if _NOTE else None
    made = []
    try:
        for index, project in enumerate(projects):
            if not _wanted(key):
                break
            if note is not None:
                note.making(key, index)
            made.append(_handed_back(_make_one(warm.worker, project, guarded)))
    finally:
        if note is not None:
            note.done()
    if not _wanted(key):
        raise ChunkCancelled("the batch stopped: the chunk stopped before its next write")
    return ChunkResult(tuple(made), time.perf_counter_ns() - started)


_ENDED_STATES = frozenset({"memory", "error", "released", "forgotten"})
"""A task's states on a worker once it can no longer run there."""


def chunks_running(prefix: str, dask_worker: DaskWorker, keys: frozenset[str] | None = None) -> int:
    """On a worker (``client.run``): how many tasks whose key starts with ``prefix`` (and is one of ``keys``, given
    them) run there or may still start, cancelled ones included (a running task's thread cannot be stopped: it
    ends at its next check; one waiting for the thread starts when it is free, until the scheduler's word that
    it was cancelled has come)."""
    return sum(
        1
        for key, task in list(dask_worker.state.tasks.items())
        if str(key).startswith(prefix) and (keys is None or key in keys) and task.state not in _ENDED_STATES
    )


def forget_resources(names: Sequence[str], dask_scheduler: Scheduler) -> None:
    """On the scheduler (``client.run_on_scheduler``): forget the Dask resources ``names`` of an ended batch on every
    worker (none held by a task): Dask has no call that removes a resource, and each batch's stayed on every
    long-lived worker, in each answer about the workers and on the dashboard (43 after 22 batches, a user audit)."""
    for worker in dask_scheduler.workers.values():
        for name in names:
            if not worker.used_resources.get(name):
                worker.resources.pop(name, None)
                worker.used_resources.pop(name, None)
                dask_scheduler.resources.get(name, {}).pop(worker.address, None)
    for name in names:
        if not dask_scheduler.resources.get(name, True):
            del dask_scheduler.resources[name]


async def drop_worker(address: str, dask_scheduler: Scheduler) -> str:
    """On the scheduler (``client.run_on_scheduler``): drop the worker at ``address`` as one lost (its tasks are run
    elsewhere), without asking it to close: one that wakes up registers again."""
    return await dask_scheduler.remove_worker(address, stimulus_id=f"zerosite-silent-{time.time()}", close=False)


def tasks_to_run(prefix: str, dask_scheduler: Scheduler, keys: frozenset[str] | None = None) -> list[str]:
    """On the scheduler (``client.run_on_scheduler``): the keys of the tasks whose key starts with ``prefix`` (and is
    one of ``keys``, given them) that it may still send to a worker or has sent (cancelled ones are forgotten, done
    ones kept)."""
    return [
        str(key)
        for key, task in list(dask_scheduler.tasks.items())
        if str(key).startswith(prefix) and (keys is None or key in keys) and task.state not in ("memory", "erred")
    ]


def _handed_back(result: ProjectResult) -> Made:
    if all(report.html is None for report in result.reports):
        return Made(result, None)
    packed = tuple(map(_pack, result.reports))
    return Made(replace(result, reports=tuple(replace(report, html=None) for report in result.reports)), packed)


def _make_one(worker: Worker, project: Project, files: ReportWriter | None) -> ProjectResult:
    try:
        return worker.run(project, files)
    except BaseException as error:  # escaped the worker's containment; no signal reaches a Dask task's thread
        return worker.failed(project, f"making project {project.id!r} failed: {describe_error(error)}")


def _pack(report: ReportResult) -> bytes | None:
    if report.html is None:
        return None
    return zlib.compress(report.html.encode("utf-8", "surrogatepass"), COMPRESSION_LEVEL)


def _with_html(report: ReportResult, packed: bytes | None) -> ReportResult:
    if packed is None:
        return report
    return replace(report, html=zlib.decompress(packed).decode("utf-8", "surrogatepass"))


def sees_folder(folder: Path, probe: str) -> bool:
    """On a worker: whether it sees ``folder`` as the client does (the file ``probe`` the client made is there) and
    can write there: one that sees it read-only (an NFS mount made so) took chunks and failed every report of them,
    faster than a fit worker made its own (615 of 1,000 in a user audit)."""
    if not os.path.isfile(folder / probe):
        return False
    trial = folder / f"{probe}.{os.getpid()}-{threading.get_ident()}.tmp"  # a .tmp: a stale one goes as those do
    try:
        os.close(os.open(trial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        os.unlink(trial)
    except OSError:
        return False
    return True
