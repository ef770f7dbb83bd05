"""Report files: each written atomically under the output folder, and the folder's lock, held by the one run that
writes there (the index of what was written is :mod:`zerosite.store`'s)."""

from __future__ import annotations

import errno
import fcntl
import gzip as gzip_module
import hashlib
import os
import re
import stat
import threading
import time
from collections.abc import Collection
from contextlib import suppress
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path
from typing import Any

from zerosite.types import StoreError, WrittenFile

__all__ = ["LOCK_FILE", "FolderLock", "OutputBusy", "ReportFiles"]

_temp_numbers = count(1)

_FOLDERS_REMEMBERED = 1024
"""Project folders a :class:`ReportFiles` remembers as made (then it forgets them all and checks each again)."""

LOCK_FILE = ".zerosite.lock"
"""The file in an output folder that the run writing there holds locked (``flock``): its pid on the first line, and
while it makes projects in its own process, a ``making ID ...`` line naming them and a ``modules NAME ...`` line
naming what they compute (:meth:`FolderLock.note_making`)."""

_SLUG = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")  # fullmatch, not match with "$": no "id\n"
_MODULE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


@dataclass(frozen=True)
class ReportFiles:
    """Report files under one output folder, each written atomically; small and picklable, so worker
    processes write their own reports in parallel while the parent keeps the index.

    :param out_dir: the output folder (absolute); reports go to ``out_dir/<project_id>/<module>.html``.
    :param gzip: write ``<module>.html.gz`` (deterministic: no timestamp in the gzip header).
    :param fsync: fsync each file (and its folder) before it becomes visible; slower, survives power loss.
    """

    out_dir: Path
    gzip: bool = False
    fsync: bool = False
    reserved: frozenset[str] = frozenset()
    """Names in ``out_dir`` that no project's folder may take: the index's own files when it lies there."""
    _folders: set[str] = field(default_factory=set, init=False, repr=False, compare=False)
    """The project folders this copy has made, or found and checked, already: each is made once, not per file."""

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.out_dir, self.gzip, self.fsync, self.reserved)  # a copy checks its folders itself

    def path(self, project_id: str, module: str) -> Path:
        """Where the report of ``module`` for ``project_id`` lives; rejects anything that could leave ``out_dir``."""
        self._check_id(project_id)
        path = self.out_dir / project_id / self._file_name(module)
        if path.parent.parent != self.out_dir or not path.resolve().is_relative_to(self.out_dir):
            raise StoreError(f"report path {path} for project {project_id!r} escapes the output folder {self.out_dir}")
        return path

    def _check_id(self, project_id: str) -> None:
        """A project id that can name a folder of its own in ``out_dir``: a slug, and not one of :attr:`reserved`
        (a project ``index.sqlite-journal`` made a folder where SQLite looks for its journal: the index could no
        longer be opened, by that run or any other)."""
        _check_slug(project_id)
        if project_id in self.reserved:
            raise StoreError(
                f"project id {project_id!r} is the name of the index's own file in {self.out_dir}: give the project "
                "another id, or the index another place (--db)"
            )

    def _file_name(self, module: str) -> str:
        if not isinstance(module, str) or not _MODULE_NAME.fullmatch(module):
            raise StoreError(f"unsafe module name {module!r}: expected letters, digits and '_'")
        return f"{module}.html.gz" if self.gzip else f"{module}.html"

    def write(self, project_id: str, module: str, html: str) -> WrittenFile:
        """Write one report atomically (temp file in the same folder, then ``os.replace``).

        The project's folder is made (or checked, when it exists: it must not lead out of ``out_dir``) at its
        first report only. The report's own name is never followed: ``os.replace`` replaces a link there.

        :raises StoreError: naming the report and the path; no temp file is left behind.
        """
        started = time.perf_counter_ns()
        name = self._file_name(module)
        if project_id not in self._folders:
            self._check_id(project_id)
        try:
            data = html.encode("utf-8")
        except UnicodeEncodeError as error:
            raise StoreError(f"cannot encode report {module} of project {project_id} as UTF-8: {error}") from error
        if self.gzip:
            data = gzip_module.compress(data, compresslevel=6, mtime=0)
        # Joined as text: the names are checked (a slug, a module name), and os.path.join cost a report more than
        # its atomic write's own calls.
        folder = f"{os.fspath(self.out_dir)}{os.sep}{project_id}"
        final = f"{folder}{os.sep}{name}"
        temp: str | None = None
        try:
            self._make_folder(project_id, folder)
            prefix = f"{folder}{os.sep}.{name}.{os.getpid()}.{threading.get_ident()}."
            remade = False
            while True:
                temp = f"{prefix}{next(_temp_numbers)}.tmp"  # named before it exists: an interrupt can remove it
                try:
                    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
                    break
                except FileExistsError:  # left by a process of the same pid: not ours to remove
                    temp = None
                except FileNotFoundError:  # the folder was removed since it was made
                    if remade:
                        raise
                    self._folders.discard(project_id)
                    self._make_folder(project_id, folder)
                    remade = True
            try:
                _write_all(fd, data)
                if self.fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temp, final)
            temp = None
            if self.fsync:
                _fsync_dir(Path(folder))
        except OSError as error:
            reason = error.strerror or str(error)
            if error.errno == errno.ENOSPC:
                reason = "no space left on the device"
            raise StoreError(f"cannot write report {module} of project {project_id} to {final}: {reason}") from error
        finally:
            if temp is not None:
                with suppress(OSError):
                    os.unlink(temp)
        return WrittenFile(final, len(data), hashlib.sha256(data).hexdigest(), time.perf_counter_ns() - started)

    def remove_folder_if_empty(self, project_id: str) -> None:
        """Remove the project's folder once nothing is left in it (its reports discarded, or all of them failed)."""
        _check_slug(project_id)
        self._folders.discard(project_id)  # a write into it makes it again
        with suppress(OSError):  # not empty, or not there
            os.rmdir(self.out_dir / project_id)

    def _make_folder(self, project_id: str, folder: str) -> None:
        """Make the project's folder, once; one that exists already must lead nowhere outside ``out_dir``."""
        if project_id in self._folders:
            return
        try:
            os.mkdir(folder)
        except FileExistsError:
            if not Path(folder).resolve().is_relative_to(self.out_dir):
                raise StoreError(
                    f"report folder {folder} for project {project_id!r} escapes the output folder {self.out_dir}"
                ) from None
        if len(self._folders) >= _FOLDERS_REMEMBERED:
            self._folders.clear()
        self._folders.add(project_id)

    def cleanup_temp_files(self) -> int:
        """Remove stale ``.*.tmp`` files that a killed process left in the project folders, or in the output folder
        itself (a Dask batch's probe); returns how many."""
        removed = 0
        with os.scandir(self.out_dir) as top:
            folders = [self.out_dir]
            for entry in top:
                if entry.is_dir(follow_symlinks=False):
                    folders.append(Path(entry.path))
        for folder in folders:
            with os.scandir(folder) as entries:
                for entry in entries:
                    if entry.name.startswith(".") and entry.name.endswith(".tmp") and entry.is_file():
                        with suppress(FileNotFoundError):
                            os.unlink(entry.path)
                            removed += 1
        return removed


class OutputBusy(StoreError):
    """Another run holds the output folder's lock: it is writing there now."""


class FolderLock:
    """An exclusive ``flock`` on ``folder/.zerosite.lock``, held from :meth:`acquire` to :meth:`release`; the file
    holds the holder's pid and is removed on release. The kernel drops the lock when its holder dies, however it
    dies, so a lock file left behind by a killed run is taken over, never in the way.

    What the run that left it was making in its own process when it died is read as the file is taken over
    (:attr:`left_making`, :attr:`left_modules`), and stays noted in it until its new holder has kept it elsewhere
    (``note_making(())``): a release before then leaves the file, and the note, for the next run."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / LOCK_FILE
        self._fd: int | None = None
        self._noted = 0  # the bytes of the last note: a shorter one is padded over them
        self._names_projects = False  # whether the note names projects now
        self.left_making: tuple[str, ...] = ()
        """The projects the lock file's last holder noted it was making in its own process: that holder died
        making them (a holder that ends normally removes the file, and clears its note after each batch)."""
        self.left_modules: tuple[str, ...] = ()
        """The modules those projects computed."""
        self.left_by_a_dead_run = False
        """Whether the lock file was there when taken: its holder died holding it (one that ends removes it)."""

    def acquire(self) -> None:
        """Take the lock, or raise :class:`OutputBusy` naming the pid that holds it."""
        while True:
            fd = self._open()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _pid_in(fd)
                os.close(fd)
                by = f" (pid {holder})" if holder else ""
                raise OutputBusy(f"another zerosite run{by} is writing to {self.folder}") from None
            except BaseException:
                os.close(fd)
                raise
            # The run before may have removed the file between our open and our lock: lock the file that is there.
            try:
                current = os.stat(self.path)
            except FileNotFoundError:
                current = None
            if current is not None and os.path.samestat(os.fstat(fd), current):
                break
            os.close(fd)
        self.left_making, self.left_modules = _making_in(fd)
        self.left_by_a_dead_run = os.fstat(fd).st_size > 0  # a new file is empty: one left holds its holder's pid
        os.ftruncate(fd, 0)
        self._fd = fd
        self.note_making(self.left_making, self.left_modules)

    def _open(self) -> int:
        """The lock file, opened (made if need be) without following a symbolic link: one planted there (or copied
        with the folder) would have its target truncated and overwritten with this process's id."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NOCTTY, 0o644)
        except OSError as error:
            if error.errno != errno.ELOOP:
                raise
            raise OSError(f"{self.path} is a symbolic link, not zerosite's lock file: remove it") from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise OSError(f"{self.path} is not a file, as zerosite's lock file is: remove it")
        return fd

    def note_making(self, project_ids: Collection[str], modules: Collection[str] = ()) -> None:
        """Note in the lock file that this process makes ``project_ids`` itself now, computing ``modules`` (no
        project: clear the note), so that the next run knows them if this one dies of it; one ``pwrite`` into the
        page cache, which outlives the process. Ids and module names hold no spaces (``_SLUG``, ``_MODULE_NAME``)."""
        if self._fd is None:
            return
        note = f"{os.getpid()}\n"
        if project_ids:
            note += f"making {' '.join(project_ids)}\nmodules {' '.join(modules)}\n"
        data = note.encode().ljust(self._noted)  # spaces over the rest of a longer note: no truncate call
        os.pwrite(self._fd, data, 0)
        self._noted = len(data)
        self._names_projects = bool(project_ids)

    def release(self) -> None:
        """Remove the lock file (while still holding it), then unlock; safe to call twice."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        if not self._names_projects:  # else the note is left for the next run (see the class)
            with suppress(OSError):
                os.unlink(self.path)
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)  # for every process that shares it (pool workers forked meanwhile)
        finally:
            os.close(fd)


def _pid_in(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").partition("\n")[0].strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _making_in(fd: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The project ids and the module names of a lock file's note (see :meth:`FolderLock.note_making`), if any."""
    try:
        text = os.pread(fd, min(os.fstat(fd).st_size, 1 << 20), 0).decode("ascii", "replace")
    except OSError:
        return (), ()
    noted = {words[0]: words[1:] for words in map(str.split, text.splitlines()[1:]) if words}
    projects = tuple(word for word in noted.get("making", ()) if _SLUG.fullmatch(word))
    modules = tuple(word for word in noted.get("modules", ()) if _MODULE_NAME.fullmatch(word))
    return projects, modules if projects else ()


def _check_slug(project_id: str) -> None:
    if not isinstance(project_id, str) or not _SLUG.fullmatch(project_id):
        raise StoreError(f"unsafe project id {project_id!r}: expected a slug of letters, digits, '.', '_', '-'")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
