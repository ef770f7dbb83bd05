"""Full-text search of the report index for ``GET /v1/search``: plain words, or an FTS5 expression checked first."""

from __future__ import annotations

import sqlite3
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from zerosite.store import ReportRow, StoreError, open_for_reading, search_reports

__all__ = ["BadQuery", "Hit", "search"]

_PROGRESS_EVERY = 1000
"""SQLite virtual machine steps between two looks at the query's deadline."""


class BadQuery(ValueError):
    """A full-text expression SQLite cannot run (its reason in the message), or one that ran too long."""


@dataclass(frozen=True)
class Hit:
    project_id: str
    module: str
    address: str
    status: str
    generated_at: str


def search(db_path: Path, text: str, *, fts: bool, module: str | None, limit: int, deadline_s: float) -> list[Hit]:
    """Reports matching ``text``: with ``fts`` an FTS5 expression (``jamsil OR gongdeok``, ``"mapo gu"``,
    ``seo*``, ``module:M2``), else words matched as prefixes, whatever characters they hold (as ``zerosite search``).

    An index not made yet holds nothing: no hit.

    :raises BadQuery: the expression is malformed, or ran past ``deadline_s``.
    :raises StoreError: the index cannot be read.
    """
    if not db_path.is_file():
        return []
    if not fts:
        return [_hit(row) for row in search_reports(db_path, text, module=module, limit=limit)]
    sql = (
        "SELECT reports.project_id, reports.module, reports.address, reports.status, reports.generated_at "
        "FROM reports_fts JOIN reports ON reports.rowid = reports_fts.rowid "
        "WHERE reports_fts MATCH ? AND (? IS NULL OR reports.module = ?) "
        "ORDER BY reports_fts.rank, reports.generated_at DESC LIMIT ?"
    )
    try:
        conn = open_for_reading(db_path, timeout_s=5)
    except sqlite3.Error as error:
        raise StoreError(f"cannot open the report index {db_path}: {error}") from error
    stop_at = time.monotonic() + deadline_s
    conn.set_progress_handler(lambda: 1 if time.monotonic() > stop_at else 0, _PROGRESS_EVERY)
    with closing(conn):
        try:
            rows = conn.execute(sql, (text, module, module, limit)).fetchall()
        except sqlite3.OperationalError as error:
            if str(error) == "interrupted":
                raise BadQuery(f"the query ran longer than {deadline_s:g} s and was stopped") from None
            if _in_the_expression(error):
                raise BadQuery(f"malformed full-text query: {error}") from None
            raise StoreError(f"cannot read the report index {db_path}: {error}") from error
        except sqlite3.Error as error:
            raise StoreError(f"cannot read the report index {db_path}: {error}") from error
    return [Hit(*row) for row in rows]


def _in_the_expression(error: sqlite3.OperationalError) -> bool:
    """Whether SQLite refused the MATCH expression rather than the index: the statement itself is fixed, so a plain
    SQL error (``SQLITE_ERROR``) is the expression's (``fts5: syntax error``, ``unknown special query``, ``no such
    column``, ``unterminated string``...), unless the index lacks a table; locks, I/O and corruption have codes
    of their own."""
    return getattr(error, "sqlite_errorcode", None) == sqlite3.SQLITE_ERROR and "no such table" not in str(error)


def _hit(row: ReportRow) -> Hit:
    return Hit(row.project_id, row.module, row.address, row.status, row.generated_at)
