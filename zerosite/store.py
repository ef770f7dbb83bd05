"""The report store: the report files (:mod:`zerosite.files`) with a SQLite index of them, searched by full text."""

from __future__ import annotations

import datetime as dt
import functools
import gzip as gzip_module
import hashlib
import os
import re
import sqlite3
import threading
import time
import warnings
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass, field, fields
from itertools import chain, count
from operator import attrgetter
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from zerosite.files import LOCK_FILE, FolderLock, OutputBusy, ReportFiles
from zerosite.plugins import PluginWarning
from zerosite.types import STATUSES, ProjectResult, ReportStatus, StoreError, StoreUnusable, WrittenFile

__all__ = [
    "STATUSES",
    "IndexWarning",
    "ReportRow",
    "ReportStore",
    "Status",
    "StoreError",
    "WrittenFile",
    "WrittenReports",
    "open_for_reading",
    "recent_reports",
    "search_reports",
]

Status = ReportStatus
"""The report status, as the index stores it (``zerosite.types.ReportStatus``)."""

# What FTS5's unicode61 tokenizer keeps together: letters and digits (underscore is a separator).
_SEARCH_TOKEN = re.compile(r"[^\W_]+")


def _index_names(db_path: Path, out_dir: Path) -> frozenset[str]:
    """The names of the index's files (the database and SQLite's own beside it) where they lie in ``out_dir``."""
    db = db_path.resolve()
    if db.parent != out_dir:
        return frozenset()
    return frozenset({db.name, *(f"{db.name}{suffix}" for suffix in ("-wal", "-shm", "-journal"))})


def utc_now() -> str:
    """Now, as the index stores times: ISO 8601, UTC, microseconds."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")


class IndexWarning(PluginWarning):
    """The index is usable, but not as a lone file: its latest rows are in its write-ahead log beside it."""


@dataclass(frozen=True, slots=True)
class ReportRow:
    """One row of the index: a report's outcome, file facts and timings.

    ``path`` is stored relative to the output folder when the file lies inside it (POSIX separators), so the
    folder can be moved; ``generated_at`` is ISO 8601 UTC and defaults to now.
    """

    project_id: str
    module: str
    address: str = ""
    path: str = ""
    size_bytes: int = 0
    sha256: str = ""
    input_hash: str = ""
    fetch_ns: int = 0
    compute_ns: int = 0
    render_ns: int = 0
    write_ns: int = 0
    peak_memory_bytes: int = 0
    status: ReportStatus = "written"
    error: str | None = None
    generated_at: str = field(default_factory=utc_now)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}, got {self.status!r}")


_COLUMNS = tuple(f.name for f in fields(ReportRow))
_COLUMN_LIST = ", ".join(_COLUMNS)
_VALUES_OF = attrgetter(*_COLUMNS)


_NO_FILE: tuple[str, int, str] = ("", 0, "")
"""The path, size and SHA-256 columns of a report with no file."""
_WRITTEN: tuple[ReportStatus, None] = ("written", None)
"""The status and error columns of a written report."""

_TEXT = tuple(i for i, f in enumerate(fields(ReportRow)) if f.type in ("str", "str | None", "ReportStatus"))

_INPUT_KEY_CHARS = 8
"""The input hash's first hex digits, indexed for the lookups by input hash (the ``local`` report cache): a lookup
reads the rows that share them (one other in four billion) and compares the whole hash. With the whole 64-digit hash
as its key, that index made nearly half of the bytes the index wrote in a large batch: a random key lands on a random
page, so each commit rewrote most of its pages (``bench/parent_replay.py --large``: at 6,000 projects, 8,591 bytes
written a report with the whole hash, 4,740 with its first digits)."""

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS reports (
    project_id TEXT NOT NULL,
    module TEXT NOT NULL,
    address TEXT NOT NULL DEFAULT '',
    path TEXT NOT NULL DEFAULT '',
    size_bytes INTEGER NOT NULL DEFAULT 0,
    sha256 TEXT NOT NULL DEFAULT '',
    input_hash TEXT NOT NULL DEFAULT '',
    fetch_ns INTEGER NOT NULL DEFAULT 0,
    compute_ns INTEGER NOT NULL DEFAULT 0,
    render_ns INTEGER NOT NULL DEFAULT 0,
    write_ns INTEGER NOT NULL DEFAULT 0,
    peak_memory_bytes INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL CHECK (status IN ({", ".join(f"'{s}'" for s in STATUSES)})),
    error TEXT,
    generated_at TEXT NOT NULL,
    PRIMARY KEY (project_id, module)
);
CREATE INDEX IF NOT EXISTS reports_generated_at ON reports (generated_at);
CREATE INDEX IF NOT EXISTS reports_input_key ON reports (substr(input_hash, 1, {_INPUT_KEY_CHARS}));
CREATE VIRTUAL TABLE IF NOT EXISTS reports_fts USING fts5 (
    address, module, content='reports', content_rowid='rowid', tokenize='unicode61'
);
CREATE TABLE IF NOT EXISTS isolated_projects (
    project_id TEXT PRIMARY KEY,
    modules TEXT NOT NULL,
    noted_at TEXT NOT NULL
);
"""

# The search index is kept in step with the table by the store itself, in each flush, rather than by triggers. FTS5
# flushes its pending terms at every statement savepoint, and a trigger (or an INSERT ... SELECT) opens one per row:
# that cost twice as much as the row itself. Single-row VALUES need the rowid, so the store numbers new rows itself
# (in a write transaction, from the largest rowid). Indexes made by earlier versions lose their triggers when opened.
_DROP_TRIGGERS = "".join(f"DROP TRIGGER IF EXISTS reports_fts_{event};" for event in ("insert", "update", "delete"))
# Dropped from indexes made by earlier versions: indexes that no query of the store's used (a status or a module
# matches a fifth or more of the rows: a scan is as quick) and that every row paid for, and the index on the whole
# input hash, which reports_input_key replaced.
_DROP_OLD_INDEXES = (
    "DROP INDEX IF EXISTS reports_status; DROP INDEX IF EXISTS reports_module; DROP INDEX IF EXISTS reports_input_hash;"
)
_BY_INPUT_HASH = (
    f"SELECT path FROM reports WHERE substr(input_hash, 1, {_INPUT_KEY_CHARS}) = ? AND +input_hash = ?"
    " AND status = 'written' LIMIT 1"
)
"""A written report's file by its input hash: its first digits through reports_input_key, then the whole hash (the
unary ``+``: with a plain ``input_hash = ?`` beside it, SQLite 3.40 scans the table instead of using that index)."""
_FAILED = "SELECT 1 FROM reports WHERE project_id = ? AND module = ? AND status != 'written'"
_FTS_ADD = "INSERT INTO reports_fts (rowid, address, module) VALUES (?, ?, ?)"
_FTS_DROP = "INSERT INTO reports_fts (reports_fts, rowid, address, module) VALUES ('delete', ?, ?, ?)"
_PROJECT_ID, _MODULE, _ADDRESS, _PATH, _SIZE, _SHA256, _INPUT_HASH, _STATUS = (
    _COLUMNS.index(name)
    for name in ("project_id", "module", "address", "path", "size_bytes", "sha256", "input_hash", "status")
)
_IN_CLAUSE_IDS = 500
"""Project ids per ``IN (...)`` lookup (SQLite allows 32,766 parameters, older builds 999)."""

_UPSERT_ROWS = 60
"""Rows per upsert statement (60 rows of 16 values: 960 parameters, under 999, the limit of older SQLite builds): a
statement per row cost SQLite 82,000 instructions a row here, one per 60 rows 48,000."""


@functools.cache
def _upsert(rows: int) -> str:
    """The statement that inserts ``rows`` rows (rowid first, then every column), or updates each one indexed."""
    one = f"(?, {', '.join('?' for _ in _COLUMNS)})"
    return (
        f"INSERT INTO reports (rowid, {_COLUMN_LIST}) VALUES {', '.join([one] * rows)} "
        "ON CONFLICT (project_id, module) DO UPDATE SET "
        + ", ".join(f"{c} = excluded.{c}" for c in _COLUMNS if c not in {"project_id", "module"})
    )


class ReportStore:
    """Writes report files atomically and indexes them in SQLite; one writer (the parent process) at a time.

    Use it as a context manager: on leaving the block, normally or by an exception (Ctrl-C included), the
    pending index rows are committed and the database is closed, so the index always matches the files.
    While open it holds the output folder's lock (``OUT/.zerosite.lock``): a second store on the same folder,
    in this process or another, raises :class:`OutputBusy` instead of disturbing the first one's files.

    :param out_dir: the output folder; reports go to ``out_dir/<project_id>/<module>.html``.
    :param db_path: the SQLite index, ``out_dir/index.sqlite`` by default.
    :param gzip: write ``<module>.html.gz`` (deterministic: no timestamp in the gzip header).
    :param fsync: fsync each file (and its folder) before it becomes visible; slower, survives power loss.
    :param commit_every_rows: commit the index after this many rows ...
    :param commit_every_s: ... or this many seconds since the last commit, whichever comes first.
    """

    def __init__(
        self,
        out_dir: Path,
        db_path: Path | None = None,
        gzip: bool = False,
        *,
        fsync: bool = False,
        commit_every_rows: int = 1000,
        commit_every_s: float = 1.0,
    ) -> None:
        self.out_dir = Path(out_dir)
        self.db_path = Path(db_path) if db_path is not None else self.out_dir / "index.sqlite"
        self.gzip = gzip
        self.fsync = fsync
        self.commit_every_rows = commit_every_rows
        self.commit_every_s = commit_every_s
        self._rows: list[tuple[Any, ...]] = []  # values in column order
        self._superseded: list[str] = []
        """Files of reports indexed under another name (the other of plain and gzip), removed once the rows that
        replace theirs are committed: the index names one file a report, and the folder holds no other."""
        self._last_commit = time.monotonic()
        self._lock: FolderLock | None = None
        self._made_folder = not self.out_dir.exists()  # this store's to remove again if the run made nothing
        self._made_index = not self.db_path.exists()
        self._reported = False  # whether a report was recorded or discarded: the run began
        try:
            if self.out_dir.is_symlink() and not self.out_dir.exists():  # mkdir says only "File exists"
                raise FileNotFoundError(f"{self.out_dir} links to {os.readlink(self.out_dir)}, which does not exist")
            self.out_dir.mkdir(parents=True, exist_ok=True)
            self._root = self.out_dir.resolve()
            self._root_prefix = str(self._root) + os.sep
            self._lock = FolderLock(self._root)
            self._lock.acquire()
            self.files = ReportFiles(
                self._root, gzip=gzip, fsync=fsync, reserved=_index_names(self.db_path, self._root)
            )
            self.db_path.parent.mkdir(exist_ok=True)  # its folder, not a tree of them from a typo in --db
            self._db: sqlite3.Connection | None = sqlite3.connect(self.db_path, isolation_level=None, timeout=30)
        except OutputBusy:
            raise
        except (OSError, sqlite3.Error) as error:
            self._unlock()
            self._remove_made_folder()
            raise StoreUnusable(
                f"cannot open the report store at {self.out_dir} (index {self.db_path}): {error}"
            ) from error
        try:
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = NORMAL")
            self._db.executescript(_SCHEMA + _DROP_TRIGGERS + _DROP_OLD_INDEXES)
            # Resume lookups: every written report's input hash, file, SHA-256 and size, loaded once (10,000 projects
            # ≈ 50,000 rows).
            self._written: dict[tuple[str, str], tuple[str, str, str, int]] = {
                (project_id, module): (input_hash, path, sha256, size)
                for project_id, module, input_hash, path, sha256, size in self._db.execute(
                    "SELECT project_id, module, input_hash, path, sha256, size_bytes FROM reports WHERE status = ?",
                    ("written",),
                )
            }
            self.isolated = self._isolated(self._lock.left_making, self._lock.left_modules)
            self._lock.note_making(())  # kept in the index now
            if self._lock.left_by_a_dead_run:
                self._remove_unindexed_reports()
        except sqlite3.Error as error:
            self._db.close()
            self._db = None
            self._unlock()
            self._remove_made_folder()
            raise StoreUnusable(f"cannot set up the report index {self.db_path}: {error}") from error

    def _remove_unindexed_reports(self) -> None:
        """Remove the report files no row names, where the run before died holding the folder (SIGKILL, the OOM
        killer, a power cut): those its workers wrote after its last commit. They stayed until the same batch was run
        again, and the folder no longer held what the index says to any other batch, ``--verify``, or ``publish``."""
        indexed = {path for _, path, _, _ in self._written.values()}
        with suppress(OSError):
            for folder in self._root.iterdir():
                if folder.is_symlink() or not folder.is_dir():
                    continue
                for file in folder.iterdir():
                    if file.name.endswith((".html", ".html.gz")) and f"{folder.name}/{file.name}" not in indexed:
                        with suppress(OSError):
                            file.unlink()
                with suppress(OSError, StoreError):
                    self.files.remove_folder_if_empty(folder.name)

    # -- context manager -------------------------------------------------------------------------------------

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close(unused=exc is not None and not self._reported and not self.isolated)
        if exc is not None:
            self._remove_made_folder()

    def _remove_made_folder(self) -> None:
        """Remove the output folder if this store made it and nothing is in it: made for nothing."""
        if self._made_folder:
            with suppress(OSError):
                self.out_dir.rmdir()  # not if anything is in it

    def close(self, unused: bool = False) -> None:
        """Commit what is pending, close the index and release the output folder; safe to call twice. ``unused``:
        the run ended before its first report (an unreachable scheduler, a Ctrl-C while its workers started), so
        the index this store made goes too, if nothing but it is in the folder."""
        if self._db is None:
            return
        try:
            self.flush()
            self._fold_log()
        finally:
            self._db.close()
            self._db = None
            if unused and self._made_index:
                self._remove_index()
            self._unlock()

    def _fold_log(self) -> None:
        """Fold the index's write-ahead log into the index file, as SQLite does when its last connection closes,
        and say so when it cannot: on a full disk it failed silently, and the run's rows stayed in ``-wal`` alone
        (a copy of the index file alone is then empty). Where another connection reads (the service), the log is
        folded by the last to close, and nothing is said."""
        try:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # type: ignore[union-attr]
        except sqlite3.Error as error:
            warnings.warn(
                f"zerosite: the index's latest rows are in {self.db_path.name}-wal beside {self.db_path}, not in it "
                f"({error}): keep the two together; the next run into the folder, with room, folds them in",
                IndexWarning,
                stacklevel=3,
            )

    def _remove_index(self) -> None:
        index = [Path(f"{self.db_path}{suffix}") for suffix in ("", "-wal", "-shm")]
        with suppress(OSError):
            if all(path in index or path.name == LOCK_FILE for path in self.out_dir.iterdir()):
                for path in index:
                    path.unlink(missing_ok=True)

    def _unlock(self) -> None:
        if self._lock is not None:
            self._lock.release()

    # -- projects that ended the process making them ----------------------------------------------------------------

    def _isolated(self, left_making: Sequence[str], left_modules: Sequence[str]) -> dict[str, frozenset[str]]:
        """The projects to make in a worker process of their own, each with the modules it computed when it killed
        a run: those an earlier run into this folder was making in its own process when it died (``left_making``,
        computing ``left_modules``; recorded now), and those recorded before that no run has made since, with those
        modules, without its process dying."""
        conn = self._conn
        isolated = {
            project_id: frozenset(modules.split())
            for project_id, modules in conn.execute("SELECT project_id, modules FROM isolated_projects")
        }
        if left_making:
            for project_id in left_making:
                isolated[project_id] = isolated.get(project_id, frozenset()) | frozenset(left_modules)
            conn.executemany(
                "INSERT OR REPLACE INTO isolated_projects (project_id, modules, noted_at) VALUES (?, ?, ?)",
                [(project_id, " ".join(sorted(isolated[project_id])), utc_now()) for project_id in left_making],
            )
        return isolated

    def note_making(self, project_ids: Collection[str], modules: Collection[str] = ()) -> None:
        """Note that this process makes ``project_ids`` itself now, computing ``modules`` (no project: clear the
        note), in the folder's lock file: should the process die of one (``os._exit()``, a fatal signal, a crash in
        a module's native code), the next run into this folder makes them in a worker process of their own
        (:attr:`isolated`). A :data:`zerosite.making.Note`."""
        if self._lock is not None:
            self._lock.note_making(project_ids, modules)

    def made_without_dying(self, project_id: str, modules: Collection[str]) -> None:
        """``project_id``, one of :attr:`isolated`, was made computing ``modules`` without its process dying (in a
        worker process of its own, or its reports are all written as they stand): where those include every module
        it computed when it killed a run, it is made like any other from now on."""
        if not self.isolated.get(project_id, frozenset()) <= frozenset(modules):
            return
        self.isolated.pop(project_id, None)
        try:
            self._conn.execute("DELETE FROM isolated_projects WHERE project_id = ?", (project_id,))
        except sqlite3.Error as error:
            raise StoreError(f"cannot write to the index {self.db_path}: {error}") from error

    # -- files ----------------------------------------------------------------------------------------------------

    def write(self, project_id: str, module: str, html: str) -> WrittenFile:
        """Write one report atomically (see :meth:`ReportFiles.write`)."""
        return self.files.write(project_id, module, html)

    def cleanup_temp_files(self) -> int:
        """Remove stale temporary files that a killed process left behind; returns how many. Only the holder of
        the output folder's lock (an open store) does it: another run's files in progress are never touched."""
        return self.files.cleanup_temp_files()

    def discard(self, project_id: str, modules: Iterable[str]) -> None:
        """Forget the reports of ``project_id``: their files and their index rows (an interrupted project)."""
        self.flush()
        keys = self.remove_files(project_id, modules)
        with self._transaction(len(keys)) as conn:
            indexed = _indexed(conn, {project_id}, keys)
            conn.executemany(_FTS_DROP, [(rowid, address, module) for (_, module), (rowid, address) in indexed.items()])
            conn.executemany("DELETE FROM reports WHERE rowid = ?", [(rowid,) for rowid, _ in indexed.values()])

    def remove_files(self, project_id: str, modules: Iterable[str]) -> set[tuple[str, str]]:
        """Remove the files of these reports of ``project_id`` and forget them for resume, the index as it is
        (:meth:`discard` then drops their rows); returns their keys."""
        keys = {(project_id, module) for module in modules}
        self._reported = True
        for key in keys:
            with suppress(FileNotFoundError, StoreError):  # StoreError: an id that could have no file (a reserved name)
                self.files.path(*key).unlink()
            self._written.pop(key, None)
        self.files.remove_folder_if_empty(project_id)
        return keys

    def abandon_pending(self) -> int:
        """Give up the rows not committed, which the index refused (a full disk), with the files they name, so that
        the folder holds what the index says; returns how many files were removed."""
        removed = 0
        for values in self._rows:
            self._written.pop((values[_PROJECT_ID], values[_MODULE]), None)
            if values[_STATUS] == "written":
                with suppress(OSError):
                    (self._root / values[_PATH]).unlink()
                    removed += 1
                    self.files.remove_folder_if_empty(values[_PROJECT_ID])
        self._rows.clear()
        self._superseded.clear()  # their rows stay, as committed: so do their files
        return removed

    def _remove_stale_file(self, project_id: str, module: str) -> None:
        """Remove the file of a report that failed, if there is one; where it cannot be, it stays (a read-only
        folder, an id that is no folder): the failure was recorded with its own cause."""
        with suppress(OSError, StoreError):
            with suppress(FileNotFoundError):  # none written (a full disk): its folder may still be there, empty
                self.files.path(project_id, module).unlink()
            self.files.remove_folder_if_empty(project_id)

    # -- index ----------------------------------------------------------------------------------------------------

    @property
    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise StoreError(f"the report store at {self.out_dir} is closed")
        return self._db

    def record(self, row: ReportRow) -> None:
        """Insert or replace the index row of ``(row.project_id, row.module)``; written in batches."""
        self._add(_VALUES_OF(row))

    def record_result(
        self, result: ProjectResult, input_hashes: Sequence[str], generated_at: str
    ) -> list[ReportStatus]:
        """:meth:`record` the rows of one project's reports as its worker handed them back (written: the file; else
        failed: the error), ``input_hashes`` in the same order; their statuses, in order. The fields of
        :class:`ReportRow`, without making one: the parent does this for every report of a batch."""
        self._conn  # noqa: B018 - raises StoreError once the store is closed
        self._reported = True
        project_id, address = _storable(result.project_id), _storable(result.address)
        rows = self._rows
        statuses: list[ReportStatus] = []
        outcome: tuple[ReportStatus, str | None]
        for report, input_hash in zip(result.reports, input_hashes, strict=True):
            t, written, module = report.timings, report.written, _storable(report.module)
            if written is None:
                self._note_file((project_id, module), None)
                # No file where the index says failed: not one from an earlier run (made from other input), nor one
                # that a worker wrote before it died and took the project with it.
                self._remove_stale_file(result.project_id, report.module)
                file, outcome = _NO_FILE, ("failed", report.error and _storable(report.error))
            else:
                path = _storable(self._relative(written.location))
                self._note_file((project_id, module), (input_hash, path, written.sha256, written.size_bytes))
                file, outcome = (path, written.size_bytes, written.sha256), _WRITTEN
            timings = (t.fetch_ns, t.compute_ns, t.render_ns, t.write_ns, report.peak_memory_bytes)
            rows.append((project_id, module, address, *file, input_hash, *timings, *outcome, generated_at))
            statuses.append(outcome[0])
        self._flush_when_due()
        return statuses

    @property
    def pending_rows(self) -> int:
        """Index rows recorded and not yet committed (:meth:`flush` commits them)."""
        return len(self._rows)

    def _add(self, row: tuple[Any, ...]) -> None:
        self._conn  # noqa: B018 - raises StoreError once the store is closed
        self._reported = True
        values = list(row)
        values[_PATH] = path = self._relative(values[_PATH])
        for i in _TEXT:
            if values[i] is not None and not values[i].isascii():
                values[i] = _storable(values[i])
        self._rows.append(tuple(values))
        written = values[_STATUS] == "written"
        self._note_file(
            (values[_PROJECT_ID], values[_MODULE]),
            (values[_INPUT_HASH], path, values[_SHA256], values[_SIZE]) if written else None,
        )
        self._flush_when_due()

    def _note_file(self, key: tuple[str, str], written: tuple[str, str, str, int] | None) -> None:
        """Remember the file of a report written (``(input hash, path, SHA-256, size)``), or that it was not (None),
        for resume; a file indexed for it before under another name is superseded (:attr:`_superseded`)."""
        earlier = self._written.get(key)
        if earlier is not None and earlier[1] and (written is None or earlier[1] != written[1]):
            self._superseded.append(earlier[1])
        if written is None:
            self._written.pop(key, None)
        else:
            self._written[key] = written

    def _flush_when_due(self) -> None:
        if len(self._rows) >= self.commit_every_rows or time.monotonic() - self._last_commit >= self.commit_every_s:
            self.flush()

    def flush(self) -> None:
        """Write and commit the pending index rows now, in one transaction."""
        self._last_commit = time.monotonic()
        if not self._rows:
            self._conn  # noqa: B018 - raises StoreError once the store is closed
            return
        latest = {(values[_PROJECT_ID], values[_MODULE]): values for values in self._rows}  # the last of a report wins
        with self._transaction(len(latest)) as conn:
            indexed = _indexed(conn, {project_id for project_id, _ in latest}, latest)
            (last,) = conn.execute("SELECT coalesce(max(rowid), 0) FROM reports").fetchone()
            new_rowids = count(last + 1)
            upserts: list[tuple[Any, ...]] = []
            searched: list[tuple[int, str, str]] = []
            for key, values in latest.items():
                # A report indexed keeps its rowid (None: the upsert updates it in place); a new one is numbered.
                found = indexed.get(key)
                rowid = next(new_rowids) if found is None else found[0]
                upserts.append((rowid if found is None else None, *values))
                searched.append((rowid, values[_ADDRESS], values[_MODULE]))
            for start in range(0, len(upserts), _UPSERT_ROWS):
                part = upserts[start : start + _UPSERT_ROWS]
                conn.execute(_upsert(len(part)), list(chain.from_iterable(part)))
            _update_search(
                conn, [(rowid, address, module) for (_, module), (rowid, address) in indexed.items()], searched
            )
        self._rows.clear()
        for path in self._superseded:
            with suppress(OSError):  # gone already, or the file of a failed report removed with it
                (self._root / path).unlink()
        self._superseded.clear()

    @contextmanager
    def _transaction(self, rows: int) -> Iterator[sqlite3.Connection]:
        """One write transaction, rolled back whole by any exception (a Ctrl-C between BEGIN and COMMIT too).

        A stop signal's exception can land after BEGIN and before the ``with`` block starts, where nothing rolls
        back: the transaction stays open, and the clean-up's flush then failed with "cannot start a transaction
        within a transaction" (CI, an async batch stopped by SIGTERM). Such a transaction kept nothing (its rows are
        still pending), so it is rolled back before the next begins; the abandoned generator, finalized once the
        index is closed, has nothing left to undo."""
        conn = self._conn
        if conn.in_transaction:
            conn.rollback()
        try:
            conn.execute("BEGIN IMMEDIATE")
            yield conn
            conn.execute("COMMIT")
        except BaseException as error:
            with suppress(sqlite3.ProgrammingError):  # the index closed under an abandoned transaction
                if conn.in_transaction:
                    conn.rollback()
            if isinstance(error, sqlite3.Error):
                raise StoreError(f"cannot write {rows} rows to the index {self.db_path}: {error}") from error
            raise

    def input_hash_of(self, project_id: str, module: str) -> str | None:
        """The input hash of a report that was written and whose file still exists, else ``None`` (for resume)."""
        found = self._written.get((project_id, module))
        if found is None:
            return None
        input_hash, path, *_ = found
        return input_hash if path and (self._root / path).is_file() else None

    def indexed_file(self, project_id: str, module: str) -> tuple[str, int] | None:
        """The indexed SHA-256 and size of a written report's file, else ``None``."""
        found = self._written.get((project_id, module))
        if found is None:
            return None
        _, _, sha256, size = found
        return sha256, size

    def file_intact(self, project_id: str, module: str) -> bool:
        """Whether a written report's file still has the SHA-256 the index recorded (``--verify``): it is
        read and hashed again, so a file edited, truncated or replaced since is found out."""
        found = self._written.get((project_id, module))
        if found is None or not found[1]:
            return False
        digest = hashlib.sha256()
        try:
            with (self._root / found[1]).open("rb") as handle:
                while chunk := handle.read(1 << 20):
                    digest.update(chunk)
        except OSError:
            return False
        return digest.hexdigest() == found[2]

    def search(self, text: str, module: str | None = None, limit: int = 20) -> list[ReportRow]:
        """The reports of the project whose id is ``text``, then those whose address (or module) contains every
        word of ``text`` as a word prefix; best match first.

        ``text`` is never FTS5 syntax: quotes, ``*``, ``OR``, brackets are plain words or ignored.
        """
        self.flush()
        return _search(self._conn, text, module, limit)

    def recent(self, n: int = 20) -> list[ReportRow]:
        """The ``n`` most recently generated reports, newest first."""
        self.flush()
        return _recent(self._conn, n)

    def _relative(self, path: str | os.PathLike[str]) -> str:
        if not path:
            return ""
        text = os.fspath(path)
        if text.startswith(self._root_prefix):  # the common case, without building Path objects
            return text[len(self._root_prefix) :]
        candidate = Path(text)
        if candidate.is_absolute():
            for root in (self._root, self.out_dir.absolute()):
                if candidate.is_relative_to(root):
                    return candidate.relative_to(root).as_posix()
        return candidate.as_posix()


def _update_search(
    conn: sqlite3.Connection, dropped: Sequence[tuple[int, str, str]], added: Sequence[tuple[int, str, str]]
) -> None:
    """Keep the full-text search in step with the table: the terms of the rows replaced (``(rowid, address,
    module)`` as they were) out, those of the rows written in. Each statement names the values itself, so the
    order against the table's own writes does not matter."""
    conn.executemany(_FTS_DROP, dropped)
    conn.executemany(_FTS_ADD, added)


def _storable(text: str) -> str:
    """Text as SQLite can hold it: valid UTF-8. Validation keeps lone surrogates out of projects, but an error
    message (or a row built by other code) may still carry one; it is stored escaped (``\\udc80``) rather than
    stopping the whole index with ``UnicodeEncodeError``."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def _indexed(
    conn: sqlite3.Connection, project_ids: Collection[str], keys: Collection[tuple[str, str]]
) -> dict[tuple[str, str], tuple[int, str]]:
    """``(project_id, module) -> (rowid, address)`` of each of ``keys`` that the index holds now."""
    found: dict[tuple[str, str], tuple[int, str]] = {}
    ids = list(project_ids)
    for start in range(0, len(ids), _IN_CLAUSE_IDS):
        part = ids[start : start + _IN_CLAUSE_IDS]
        sql = (
            f"SELECT rowid, project_id, module, address FROM reports WHERE project_id IN ({', '.join('?' * len(part))})"
        )
        for rowid, project_id, module, address in conn.execute(sql, part):
            if (project_id, module) in keys:
                found[(project_id, module)] = (rowid, address)
    return found


def _fts_query(text: str) -> str | None:
    """``text`` as an FTS5 query of quoted word prefixes (implicit AND), or ``None`` when it holds no word."""
    words = _SEARCH_TOKEN.findall(text)
    if not words:
        return None
    return " ".join('"' + word.replace('"', '""') + '"*' for word in words)


def _rows(cursor: sqlite3.Cursor) -> list[ReportRow]:
    return [ReportRow(*values) for values in cursor]


def _search(conn: sqlite3.Connection, text: str, module: str | None, limit: int) -> list[ReportRow]:
    """The reports of the project whose id is ``text`` (a user often has the id at hand), then those whose
    address or module holds every word of ``text`` as a word prefix, best match first."""
    if limit <= 0:
        return []
    sql = (
        f"SELECT {_COLUMN_LIST} FROM reports WHERE project_id = ? AND (? IS NULL OR module = ?) ORDER BY module LIMIT ?"
    )
    found = _rows(conn.execute(sql, (text.strip(), module, module, limit)))
    query = _fts_query(text)
    if query is None or len(found) >= limit:
        return found
    columns = ", ".join(f"reports.{c}" for c in _COLUMNS)
    sql = (
        f"SELECT {columns} FROM reports_fts JOIN reports ON reports.rowid = reports_fts.rowid "
        "WHERE reports_fts MATCH ? AND (? IS NULL OR reports.module = ?) "
        "ORDER BY reports_fts.rank, reports.generated_at DESC LIMIT ?"
    )
    by_words = _rows(conn.execute(sql, (query, module, module, limit)))
    return found + [row for row in by_words if row not in found][: limit - len(found)]


def _recent(conn: sqlite3.Connection, n: int) -> list[ReportRow]:
    if n <= 0:
        return []
    sql = f"SELECT {_COLUMN_LIST} FROM reports ORDER BY generated_at DESC, rowid DESC LIMIT ?"
    return _rows(conn.execute(sql, (n,)))


def open_for_reading(
    db_path: Path, *, immutable: bool = False, check_same_thread: bool = True, timeout_s: float = 30
) -> sqlite3.Connection:
    """A connection that only reads ``db_path`` (``PRAGMA query_only``). It is opened for writing where the file
    allows (else for reading, as SQLite's ``mode=rw`` does): the last connection to close a WAL database removes its
    ``-wal`` and ``-shm`` files, which a read-only one cannot do, so each ``search`` left both in the folder."""
    if not Path(db_path).is_file():
        raise StoreError(f"no report index at {db_path}")
    mode = "immutable=1" if immutable else "mode=rw"
    uri = f"{Path(db_path).absolute().as_uri()}?{mode}"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=timeout_s, check_same_thread=check_same_thread)
    except sqlite3.Error as error:
        raise StoreError(f"cannot open the report index {db_path}: {error}") from error
    try:
        conn.execute("PRAGMA query_only = 1")  # its errors are the caller's to tell, as a query's
    except BaseException:
        conn.close()
        raise
    return conn


def _read(db_path: Path, query: Callable[[sqlite3.Connection], list[ReportRow]]) -> list[ReportRow]:
    """Run a read-only query; an index that is not one (corrupt, truncated, not SQLite, another schema,
    unreadable) is a :class:`StoreError` naming the file and the cause, never a traceback.

    On read-only media SQLite cannot make the shared-memory file a WAL database needs even to read; an
    index closed cleanly (no ``-wal`` file: every row is in the database file) is then read as immutable.
    """
    try:
        try:
            with closing(open_for_reading(db_path)) as conn:
                return query(conn)
        except sqlite3.OperationalError:
            if Path(f"{db_path}-wal").exists():
                raise
            with closing(open_for_reading(db_path, immutable=True)) as conn:
                return query(conn)
    except (sqlite3.Error, ValueError, TypeError) as error:
        raise StoreError(f"cannot read the report index {db_path}: {error}") from error


def search_reports(db_path: Path, text: str, module: str | None = None, limit: int = 20) -> list[ReportRow]:
    """:meth:`ReportStore.search` on an index opened read-only (for the CLI, while or after a batch runs).

    :raises StoreError: the index is missing or cannot be read.
    """
    return _read(db_path, lambda conn: _search(conn, text, module, limit))


def recent_reports(db_path: Path, n: int = 20) -> list[ReportRow]:
    """:meth:`ReportStore.recent` on an index opened read-only.

    :raises StoreError: the index is missing or cannot be read.
    """
    return _read(db_path, lambda conn: _recent(conn, n))


class WrittenReports:
    """Written reports looked up by input hash in an index opened read-only (the ``local`` report cache).

    One connection per thread, opened on first use; a missing index finds nothing. Only a file inside
    ``out_dir`` is ever read, whatever path a row holds.
    """

    def __init__(self, out_dir: Path, db_path: Path | None = None) -> None:
        self.out_dir = Path(out_dir).resolve()
        self.db_path = Path(db_path) if db_path is not None else self.out_dir / "index.sqlite"
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def html_of(self, input_hash: str) -> bytes | None:
        """The HTML (decompressed from ``.gz``) of the written report whose input hash is ``input_hash``.

        :raises StoreError: the index exists but cannot be read.
        """
        conn = self._connection()
        if conn is None:
            return None
        try:
            found = conn.execute(_BY_INPUT_HASH, (input_hash[:_INPUT_KEY_CHARS], input_hash)).fetchone()
        except sqlite3.Error as error:
            raise StoreError(f"cannot read the report index {self.db_path}: {error}") from error
        if found is None or not isinstance(found[0], str) or not found[0]:
            return None
        path = (self.out_dir / found[0]).resolve()
        if not path.is_relative_to(self.out_dir):
            return None
        try:
            data = path.read_bytes()
            return gzip_module.decompress(data) if path.suffix == ".gz" else data
        except (OSError, EOFError, gzip_module.BadGzipFile):
            return None

    def failed(self, project_id: str, module: str) -> bool:
        """Whether the index records the last making of this report as failed: a file of it still in the folder is
        from an earlier input (one the store could not remove, a read-only folder). An unreadable index: ``False``."""
        try:
            conn = self._connection()
            return conn is not None and conn.execute(_FAILED, (project_id, module)).fetchone() is not None
        except (sqlite3.Error, StoreError):
            return False

    def _connection(self) -> sqlite3.Connection | None:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            if not self.db_path.is_file():
                return None
            try:  # used by this thread only; closed by whichever thread calls close()
                conn = open_for_reading(self.db_path, check_same_thread=False)
            except sqlite3.Error as error:
                raise StoreError(f"cannot open the report index {self.db_path}: {error}") from error
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def close(self) -> None:
        """Close every thread's connection."""
        with self._lock:
            connections, self._connections = self._connections, []
        for conn in connections:
            with suppress(sqlite3.Error):
                conn.close()
        self._local = threading.local()
