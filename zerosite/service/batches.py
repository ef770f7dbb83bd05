"""The batch book: every batch's state and progress in a small SQLite file that all server processes share."""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["BOOK_FILE", "FINAL_STATES", "BatchBook", "BatchView"]

BOOK_FILE = ".zerosite-batches.sqlite"
"""In the output folder, beside the reports (not in the index, which is the store's)."""

FINAL_STATES = ("done", "cancelled", "interrupted", "failed")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (
    id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    modules TEXT NOT NULL,
    total INTEGER NOT NULL,
    done INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0,
    cached INTEGER NOT NULL DEFAULT 0,
    reports_written INTEGER NOT NULL DEFAULT 0,
    reports_cached INTEGER NOT NULL DEFAULT 0,
    reports_failed INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    started_s REAL,
    finished_s REAL,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    pid INTEGER NOT NULL,
    error TEXT
);
"""


@dataclass(frozen=True)
class BatchView:
    """A batch as ``GET /v1/batches/{id}`` shows it. ``done`` counts finished projects, ``failed`` those of
    them with a failed report, ``cached`` those whose reports were all unchanged (not made again)."""

    id: str
    state: str
    modules: str
    total: int
    done: int
    failed: int
    cached: int
    reports_written: int
    reports_cached: int
    reports_failed: int
    created_at: str
    started_s: float | None
    finished_s: float | None
    cancel_requested: bool
    pid: int
    error: str | None

    @property
    def rate_per_s(self) -> float:
        if self.started_s is None:
            return 0.0
        elapsed = (self.finished_s or time.time()) - self.started_s
        return round(self.done / elapsed, 3) if elapsed > 0 else 0.0

    def as_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["modules"] = self.modules.split(",") if self.modules else []
        data["rate_per_s"] = self.rate_per_s
        data["elapsed_s"] = (
            round((self.finished_s or time.time()) - self.started_s, 3) if self.started_s is not None else 0.0
        )
        data["final"] = self.state in FINAL_STATES
        return data


class BatchBook:
    """Batches by id in ``OUT/.zerosite-batches.sqlite`` (WAL): the process running a batch writes its progress,
    any process reads it or asks for a cancel. A batch whose process is gone reads as ``interrupted``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with self._connect() as conn:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.executescript(_SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        with closing(sqlite3.connect(self.path, timeout=30, isolation_level=None)) as conn:
            yield conn

    def create(self, batch_id: str, total: int, modules: tuple[str, ...]) -> None:
        with self._connect() as conn:
            conn.execute(
                "INSERT INTO batches (id, state, modules, total, created_at, pid) VALUES (?, 'queued', ?, ?, ?, ?)",
                (
                    batch_id,
                    ",".join(modules),
                    total,
                    dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                    os.getpid(),
                ),
            )

    def update(self, batch_id: str, **fields: object) -> None:
        columns = ", ".join(f"{name} = ?" for name in fields)
        with self._connect() as conn:
            conn.execute(f"UPDATE batches SET {columns} WHERE id = ?", (*fields.values(), batch_id))

    def get(self, batch_id: str) -> BatchView | None:
        with self._connect() as conn:
            row = conn.execute("SELECT * FROM batches WHERE id = ?", (batch_id,)).fetchone()
        if row is None:
            return None
        view = BatchView(*row)
        view = BatchView(**{**asdict(view), "cancel_requested": bool(view.cancel_requested)})
        if view.state not in FINAL_STATES and view.pid != os.getpid() and not _alive(view.pid):
            why = f"its server process (pid {view.pid}) ended before the batch did"
            self.update(batch_id, state="interrupted", error=why, finished_s=time.time())
            return self.get(batch_id)
        return view

    def cancel_requested(self, batch_id: str) -> bool:
        with self._connect() as conn:
            row = conn.execute("SELECT cancel_requested FROM batches WHERE id = ?", (batch_id,)).fetchone()
        return bool(row and row[0])

    def request_cancel(self, batch_id: str) -> None:
        with self._connect() as conn:
            conn.execute("UPDATE batches SET cancel_requested = 1 WHERE id = ?", (batch_id,))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
