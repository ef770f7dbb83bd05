"""Tests of the report store: atomic files, gzip, the SQLite index, search and resume."""

from __future__ import annotations

import errno
import gzip
import hashlib
import os
import sqlite3
from pathlib import Path

import pytest

from zerosite.store import IndexWarning, ReportRow, ReportStore, StoreError, recent_reports, search_reports

HTML = '<!doctype html><html lang="ko"><body><h1>토지 감정평가</h1><p>서울특별시 강남구 역삼동</p></body></html>'


def _row(store: ReportStore, project_id: str, module: str, address: str, **extra: object) -> ReportRow:
    written = store.write(project_id, module, HTML)
    values: dict[str, object] = {
        "path": str(written.path),
        "size_bytes": written.size_bytes,
        "sha256": written.sha256,
        "write_ns": written.write_ns,
        "input_hash": f"hash-{project_id}-{module}",
    }
    values.update(extra)
    return ReportRow(project_id, module, address, **values)  # type: ignore[arg-type]


def _temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".tmp")]


class _LogStaysUnfolded:
    """An index connection whose checkpoint fails as on a full disk (a tmpfs filled to the last block did it)."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection

    def execute(self, sql: str, *args: object) -> sqlite3.Cursor:
        if sql.startswith("PRAGMA wal_checkpoint"):
            raise sqlite3.OperationalError("database or disk is full")
        return self.connection.execute(sql, *args)

    def __getattr__(self, name: str) -> object:
        return getattr(self.connection, name)


def test_an_index_whose_log_cannot_be_folded_in_says_so(tmp_path: Path) -> None:
    # A user audit: on a nearly full disk a run that succeeded left its rows in index.sqlite-wal, silently, and a copy
    # of index.sqlite alone was empty.
    store = ReportStore(tmp_path / "out")
    store._db = _LogStaysUnfolded(store._db)  # type: ignore[assignment]
    said = r"latest rows are in index\.sqlite-wal beside .*index\.sqlite, not in it \(database or disk is full\)"
    with pytest.warns(IndexWarning, match=said):
        store.close()


def test_a_closed_index_is_one_file(tmp_path: Path) -> None:
    store = ReportStore(tmp_path / "out")
    store.close()
    assert not (tmp_path / "out" / "index.sqlite-wal").exists()


def test_write_creates_file_atomically(tmp_path: Path) -> None:
    with ReportStore(tmp_path) as store:
        written = store.write("p0001-yeoksam", "M2", HTML)
    assert written.path == (tmp_path / "p0001-yeoksam" / "M2.html").resolve()
    data = written.path.read_bytes()
    assert data.decode("utf-8") == HTML
    assert written.size_bytes == len(data)
    assert written.sha256 == hashlib.sha256(data).hexdigest()
    assert written.write_ns > 0
    assert _temp_files(tmp_path) == []


def test_rewrite_replaces_file(tmp_path: Path) -> None:
    with ReportStore(tmp_path) as store:
        store.write("p1", "M2", "old")
        written = store.write("p1", "M2", "new")
    assert written.path.read_text(encoding="utf-8") == "new"


def test_failed_replace_leaves_no_temp_and_keeps_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with ReportStore(tmp_path) as store:
        store.write("p1", "M2", "old")

        def full_disk(src: object, dst: object) -> None:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        monkeypatch.setattr(os, "replace", full_disk)
        with pytest.raises(StoreError, match=r"M2 of project p1 .*M2\.html.*no space left"):
            store.write("p1", "M2", "new")
    assert _temp_files(tmp_path) == []
    assert (tmp_path / "p1" / "M2.html").read_text(encoding="utf-8") == "old"


def test_failed_write_leaves_no_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refused(fd: int, data: object) -> int:
        raise OSError(errno.EACCES, os.strerror(errno.EACCES))

    with ReportStore(tmp_path) as store:
        monkeypatch.setattr(os, "write", refused)
        with pytest.raises(StoreError, match="Permission denied"):
            store.write("p1", "M3", HTML)
    assert _temp_files(tmp_path) == []
    assert not (tmp_path / "p1" / "M3.html").exists()


def test_a_project_whose_reports_all_failed_leaves_no_empty_folder(tmp_path: Path) -> None:
    """A worker made the project's folder, then no file could be written in it (a full disk): the index records the
    failures and the folder goes (it stayed, one empty folder a project, when no stale file was there to remove)."""
    from zerosite.project import parse_project
    from zerosite.sample import sample_project
    from zerosite.types import ProjectResult

    project = parse_project(sample_project(1))
    with ReportStore(tmp_path) as store:
        (tmp_path / project.id).mkdir()
        result = ProjectResult.failed(project, ("M2", "M3"), "cannot write: no space left on the device")
        assert store.record_result(result, ["h2", "h3"], "2026-11-28T00:00:00+00:00") == ["failed", "failed"]
    assert not (tmp_path / project.id).exists()


@pytest.mark.parametrize("bad_id", ["../evil", "..", "a/b", "/etc", "", ".hidden", "a\\b", "x" * 200])
def test_path_traversal_is_rejected(tmp_path: Path, bad_id: str) -> None:
    with ReportStore(tmp_path / "out") as store, pytest.raises(StoreError, match="unsafe project id"):
        store.write(bad_id, "M2", HTML)
    assert all(p.name.startswith("index.sqlite") for p in (tmp_path / "out").iterdir())
    assert not (tmp_path / "evil").exists()


def test_bad_module_name_is_rejected(tmp_path: Path) -> None:
    with ReportStore(tmp_path) as store, pytest.raises(StoreError, match="unsafe module name"):
        store.write("p1", "../M2", HTML)


def test_gzip_round_trip_and_determinism(tmp_path: Path) -> None:
    with ReportStore(tmp_path / "a", gzip=True) as store:
        first = store.write("p1", "M2", HTML)
    with ReportStore(tmp_path / "b", gzip=True, fsync=True) as store:
        second = store.write("p1", "M2", HTML)
    assert first.path.name == "M2.html.gz"
    assert gzip.decompress(first.path.read_bytes()).decode("utf-8") == HTML
    assert first.path.read_bytes() == second.path.read_bytes()
    assert first.sha256 == second.sha256
    assert first.path.read_bytes()[4:8] == b"\0\0\0\0"  # mtime field of the gzip header


def test_upsert_replaces_row(tmp_path: Path) -> None:
    with ReportStore(tmp_path) as store:
        store.record(ReportRow("p1", "M2", "서울특별시 강남구 역삼동 737", status="failed", error="boom"))
        store.record(_row(store, "p1", "M2", "서울특별시 강남구 역삼동 737"))
        store.record(_row(store, "p1", "M3", "서울특별시 강남구 역삼동 737"))
    conn = sqlite3.connect(tmp_path / "index.sqlite")
    rows = conn.execute("SELECT project_id, module, status, error, path FROM reports ORDER BY module").fetchall()
    assert rows == [
        ("p1", "M2", "written", None, "p1/M2.html"),
        ("p1", "M3", "written", None, "p1/M3.html"),
    ]
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    # the full-text index followed the upsert: one entry per row
    assert conn.execute("SELECT count(*) FROM reports_fts WHERE reports_fts MATCH '역삼동'").fetchone() == (2,)
    conn.close()
    with ReportStore(tmp_path) as store:  # a new address replaces the old one in the search index too
        store.record(_row(store, "p1", "M2", "서울특별시 마포구 공덕동 1"))
        assert [r.module for r in store.search("역삼동")] == ["M3"]
        assert [r.module for r in store.search("공덕동")] == ["M2"]
    conn = sqlite3.connect(tmp_path / "index.sqlite")
    conn.execute("INSERT INTO reports_fts (reports_fts, rank) VALUES ('integrity-check', 1)")  # raises if out of sync
    conn.close()


def _search_index_in_step(db: Path) -> None:
    conn = sqlite3.connect(db)
    try:
        conn.execute("INSERT INTO reports_fts (reports_fts, rank) VALUES ('integrity-check', 1)")  # raises if not
    finally:
        conn.close()


def test_search_index_follows_inserts_updates_and_discards_in_one_flush(tmp_path: Path) -> None:
    with ReportStore(tmp_path, commit_every_rows=10_000, commit_every_s=3600) as store:
        for i in range(130):  # more rows than one upsert statement takes
            store.record(_row(store, f"p{i}", "M3", f"서울특별시 강남구 역삼동 {i}"))
        for i in range(30):
            store.record(_row(store, f"p{i}", "M2", f"서울특별시 강남구 역삼동 {i}"))
        store.record(_row(store, "p3", "M2", "서울특별시 마포구 공덕동 3"))  # the same report twice before a flush
        store.flush()
        store.record(_row(store, "p4", "M2", "서울특별시 마포구 공덕동 4"))  # an update in a later flush
        store.record(_row(store, "p30", "M2", "서울특별시 마포구 공덕동 30"))  # and a new row beside it
        store.discard("p5", ["M2"])
        assert {r.project_id for r in store.search("공덕동")} == {"p3", "p4", "p30"}
        assert len(store.search("역삼동", limit=1000)) == 27 + 130
        store.record(_row(store, "p100", "M3", "서울특별시 마포구 공덕동 100"))  # a late update among many new rows
        for i in range(130, 200):
            store.record(_row(store, f"p{i}", "M3", f"서울특별시 강남구 역삼동 {i}"))
        store.flush()
        assert {r.project_id for r in store.search("공덕동", module="M3")} == {"p100"}
        assert len(store.search("역삼동", module="M3", limit=1000)) == 199
    conn = sqlite3.connect(tmp_path / "index.sqlite")
    assert conn.execute("SELECT count(*), count(DISTINCT rowid) FROM reports").fetchone() == (230, 230)
    conn.close()
    _search_index_in_step(tmp_path / "index.sqlite")


def test_an_earlier_index_loses_its_triggers_and_replaced_indexes_and_stays_in_step(tmp_path: Path) -> None:
    earlier = """
    CREATE TRIGGER reports_fts_insert AFTER INSERT ON reports BEGIN
        INSERT INTO reports_fts (rowid, address, module) VALUES (new.rowid, new.address, new.module);
    END;
    CREATE TRIGGER reports_fts_delete AFTER DELETE ON reports BEGIN
        INSERT INTO reports_fts (reports_fts, rowid, address, module)
            VALUES ('delete', old.rowid, old.address, old.module);
    END;
    CREATE TRIGGER reports_fts_update AFTER UPDATE ON reports BEGIN
        INSERT INTO reports_fts (reports_fts, rowid, address, module)
            VALUES ('delete', old.rowid, old.address, old.module);
        INSERT INTO reports_fts (rowid, address, module) VALUES (new.rowid, new.address, new.module);
    END;
    CREATE INDEX reports_status ON reports (status);
    CREATE INDEX reports_module ON reports (module);
    CREATE INDEX reports_input_hash ON reports (input_hash);
    INSERT INTO reports (project_id, module, address, status, generated_at)
        VALUES ('p1', 'M2', '서울특별시 강남구 역삼동 1', 'failed', '2026-01-01T00:00:00+00:00');
    """
    with ReportStore(tmp_path):
        pass
    conn = sqlite3.connect(tmp_path / "index.sqlite")
    conn.executescript(earlier)
    conn.close()
    with ReportStore(tmp_path) as store:
        store.record(_row(store, "p1", "M2", "서울특별시 마포구 공덕동 1"))
        store.record(_row(store, "p2", "M2", "서울특별시 마포구 공덕동 2"))
        assert {r.project_id for r in store.search("공덕동")} == {"p1", "p2"}
        assert store.search("역삼동") == []
    conn = sqlite3.connect(tmp_path / "index.sqlite")
    assert conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall() == []
    indexes = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert indexes >= {"reports_generated_at", "reports_input_key"}
    assert not indexes & {"reports_status", "reports_module", "reports_input_hash"}
    conn.close()
    _search_index_in_step(tmp_path / "index.sqlite")


def test_invalid_status_is_rejected() -> None:
    with pytest.raises(ValueError, match="status"):
        ReportRow("p1", "M2", status="done")  # type: ignore[arg-type]


def _fill(store: ReportStore) -> None:
    store.record(_row(store, "p0001-yeoksam", "M2", "서울특별시 강남구 테헤란로 152 (역삼동)"))
    store.record(_row(store, "p0001-yeoksam", "M3", "서울특별시 강남구 테헤란로 152 (역삼동)"))
    store.record(_row(store, "p0002-gongdeok", "M2", "서울특별시 마포구 마포대로 84 (공덕동)"))
    store.record(_row(store, "p0003-udong", "M2", "부산광역시 해운대구 해운대로 79 (우동)"))


def test_search_by_korean_address_fragment(tmp_path: Path) -> None:
    with ReportStore(tmp_path) as store:
        _fill(store)
        assert {(r.project_id, r.module) for r in store.search("역삼동")} == {
            ("p0001-yeoksam", "M2"),
            ("p0001-yeoksam", "M3"),
        }
        assert {r.project_id for r in store.search("테헤란")} == {"p0001-yeoksam"}  # word prefix
        assert {r.project_id for r in store.search("마포구 공덕")} == {"p0002-gongdeok"}  # every word
        assert [r.project_id for r in store.search("해운대구")] == ["p0003-udong"]
        assert store.search("강남구 마포구") == []
        assert len(store.search("서울특별시", limit=2)) == 2
    # the read-only module-level function sees the same
    found = search_reports(tmp_path / "index.sqlite", "공덕동")
    assert [(r.project_id, r.address, r.status) for r in found] == [
        ("p0002-gongdeok", "서울특별시 마포구 마포대로 84 (공덕동)", "written")
    ]


def test_search_finds_a_project_by_its_id_first(tmp_path: Path) -> None:
    with ReportStore(tmp_path) as store:
        _fill(store)
        store.record(_row(store, "p0004-mapo", "M2", "서울특별시 강남구 p0001 길 (역삼동)"))  # its address names the id
        assert [(r.project_id, r.module) for r in store.search("p0001-yeoksam")] == [
            ("p0001-yeoksam", "M2"),
            ("p0001-yeoksam", "M3"),
        ]
        assert [r.project_id for r in store.search(" p0001-yeoksam ", module="M3")] == ["p0001-yeoksam"]
        assert [r.project_id for r in store.search("p0001-yeoksam", limit=1)] == ["p0001-yeoksam"]
        assert [r.project_id for r in store.search("p0001")] == ["p0004-mapo"]  # not an id: words, as before
    assert [r.module for r in search_reports(tmp_path / "index.sqlite", "p0002-gongdeok")] == ["M2"]


def test_search_module_filter(tmp_path: Path) -> None:
    with ReportStore(tmp_path) as store:
        _fill(store)
        assert [r.module for r in store.search("역삼동", module="M3")] == ["M3"]
        assert store.search("역삼동", module="M9") == []
        assert store.search("역삼동", module="M2' OR '1'='1") == []


@pytest.mark.parametrize(
    "text",
    ['"', "*", "OR", ")", "(", "'; DROP TABLE reports; --", '역삼동" OR "공덕동', "NEAR(a b)", "^역삼", "-", "", "  "],
)
def test_search_input_is_inert(tmp_path: Path, text: str) -> None:
    with ReportStore(tmp_path) as store:
        _fill(store)
        found = store.search(text)
        assert all("역삼동" in r.address or "역삼" in text for r in found)
        if "역삼" not in text:
            assert found == []
        assert len(store.recent(100)) == 4  # the table is still there
    assert search_reports(tmp_path / "index.sqlite", text) == found


def test_recent_newest_first(tmp_path: Path) -> None:
    with ReportStore(tmp_path) as store:
        store.record(ReportRow("p1", "M2", "a", generated_at="2026-01-01T00:00:01.000000+00:00"))
        store.record(ReportRow("p2", "M2", "b", generated_at="2026-01-01T00:00:03.000000+00:00"))
        store.record(ReportRow("p3", "M2", "c", generated_at="2026-01-01T00:00:02.000000+00:00"))
        assert [r.project_id for r in store.recent(2)] == ["p2", "p3"]
        # a re-run of p1 makes it the newest
        store.record(ReportRow("p1", "M2", "a", generated_at="2026-01-01T00:00:04.000000+00:00"))
        assert [r.project_id for r in store.recent(10)] == ["p1", "p2", "p3"]
        assert store.recent(0) == []
    assert [r.project_id for r in recent_reports(tmp_path / "index.sqlite", 1)] == ["p1"]


def test_index_consistent_after_exception_in_block(tmp_path: Path) -> None:
    with (
        pytest.raises(KeyboardInterrupt),
        ReportStore(tmp_path, commit_every_rows=10_000, commit_every_s=3600) as store,
    ):
        for i in range(5):
            store.record(_row(store, f"p{i}", "M2", f"서울특별시 강남구 역삼동 {i}"))
        raise KeyboardInterrupt
    rows = recent_reports(tmp_path / "index.sqlite", 100)
    assert sorted(r.project_id for r in rows) == [f"p{i}" for i in range(5)]
    for row in rows:
        assert (tmp_path / row.path).read_bytes() and hashlib.sha256(
            (tmp_path / row.path).read_bytes()
        ).hexdigest() == row.sha256
    assert len(search_reports(tmp_path / "index.sqlite", "역삼동", limit=100)) == 5


def test_a_transaction_a_stop_left_open_is_rolled_back_before_the_next(tmp_path: Path) -> None:
    """A stop signal landing after BEGIN and before the ``with`` block starts leaves the transaction open and its
    generator abandoned (CI: "cannot start a transaction within a transaction" from the clean-up's flush)."""
    with ReportStore(tmp_path, commit_every_rows=10_000, commit_every_s=3600) as store:
        store.record(_row(store, "p1", "M2", "서울특별시 강남구 역삼동 1"))
        abandoned = store._transaction(1)
        abandoned.__enter__()  # BEGIN, and the exception that would have entered the block never does
        store.flush()
        del abandoned
    assert [r.project_id for r in recent_reports(tmp_path / "index.sqlite", 10)] == ["p1"]


@pytest.mark.parametrize("there", ["nothing", "an empty folder", "a report"])
def test_a_run_ended_before_its_first_report_leaves_no_trace(tmp_path: Path, there: str) -> None:
    """An error before anything was indexed (an unreachable Dask scheduler, a Ctrl-C while the workers start) left
    the output folder and an empty index behind; what was there before stays."""
    out = tmp_path / "out"
    if there != "nothing":
        out.mkdir()
    if there == "a report":
        with ReportStore(out) as store:
            store.record(_row(store, "p1", "M2", "서울특별시 강남구 역삼동"))
    before = sorted(p.relative_to(out) for p in out.rglob("*")) if out.exists() else None
    with pytest.raises(KeyboardInterrupt), ReportStore(out):
        raise KeyboardInterrupt
    assert (sorted(p.relative_to(out) for p in out.rglob("*")) if out.exists() else None) == before
    with ReportStore(out):
        pass
    assert (out / "index.sqlite").exists()  # a run that ends well keeps its index, empty or not


def test_an_index_in_a_folder_that_does_not_exist_is_refused_not_made(tmp_path: Path) -> None:
    """Service audit F5: a typo in ``--db`` made the whole tree of folders it named, wherever that was (the index's
    own folder is made, as ``mkdir`` would, not its parents)."""
    with pytest.raises(StoreError, match=r"No such file or directory: .*typo/dir"):
        ReportStore(tmp_path / "out", tmp_path / "typo" / "dir" / "index.sqlite")
    assert not (tmp_path / "typo").exists() and not (tmp_path / "out").exists()


def test_a_lock_file_that_is_a_symbolic_link_is_refused_and_its_target_left_alone(tmp_path: Path) -> None:
    """Batch audit: the lock file was opened following a link, then truncated and written with the pid: a link
    planted in a shared output folder (or copied with it) wiped whatever file it named."""
    precious = tmp_path / "precious.txt"
    precious.write_text("precious data")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / ".zerosite.lock").symlink_to(precious)
    with pytest.raises(StoreError, match="is a symbolic link, not zerosite's lock file: remove it"):
        ReportStore(tmp_path / "out")
    assert precious.read_text() == "precious data"


@pytest.mark.parametrize("left", [True, False], ids=["a-run-died-holding-the-folder", "none-did"])
def test_report_files_a_dead_run_wrote_after_its_last_commit_go(tmp_path: Path, left: bool) -> None:
    """Batch audit: after a kill -9 the files written since the last commit stayed (143 of them in one run) until the
    same batch was run again; any other batch, --verify and publish then met a folder that did not match the index."""
    with ReportStore(tmp_path) as store:
        store.record(_row(store, "p1", "M2", "서울특별시 강남구 역삼동"))
        unindexed = [store.write("p1", "M3", HTML).path, store.write("p2", "M2", HTML).path]
    (tmp_path / "notes.txt").write_text("the user's own file")
    if left:
        (tmp_path / ".zerosite.lock").write_text("999999\n")  # its holder killed outright: never released
    with ReportStore(tmp_path):
        pass
    assert [path.exists() for path in unindexed] == [not left, not left]
    assert (tmp_path / "p1" / "M2.html").exists() and (tmp_path / "notes.txt").exists()
    assert (tmp_path / "p2").exists() is not left  # a folder left empty goes too


def test_batch_commits_are_visible_to_readers(tmp_path: Path) -> None:
    with ReportStore(tmp_path, commit_every_rows=3, commit_every_s=3600) as store:
        for i in range(4):
            store.record(ReportRow(f"p{i}", "M2", "x", status="skipped"))
        assert len(recent_reports(tmp_path / "index.sqlite", 10)) == 3  # the fourth is still pending
        store.flush()
        assert len(recent_reports(tmp_path / "index.sqlite", 10)) == 4


def test_resume_lookup(tmp_path: Path) -> None:
    with ReportStore(tmp_path) as store:
        store.record(_row(store, "p1", "M2", "a"))
        store.record(_row(store, "p2", "M2", "b"))
        store.record(_row(store, "p3", "M2", "c"))
        store.record(ReportRow("p3", "M2", "c", input_hash="hash-p3-M2", status="failed", error="ValueError"))
        assert store.input_hash_of("p1", "M2") == "hash-p1-M2"
        assert store.input_hash_of("p3", "M2") is None  # failed
    (tmp_path / "p2" / "M2.html").unlink()
    with ReportStore(tmp_path) as store:  # reopened: loaded from the index
        assert store.input_hash_of("p1", "M2") == "hash-p1-M2"
        assert store.input_hash_of("p2", "M2") is None  # file missing
        assert store.input_hash_of("p3", "M2") is None  # failed
        assert store.input_hash_of("p9", "M2") is None  # never seen
        assert store.input_hash_of("p1", "M3") is None


def test_cleanup_temp_files(tmp_path: Path) -> None:
    with ReportStore(tmp_path) as store:
        store.write("p1", "M2", HTML)
        (tmp_path / "p1" / ".M3.html.1234.1.tmp").write_text("partial")
        (tmp_path / "p2").mkdir()
        (tmp_path / "p2" / ".M2.html.99.7.tmp").write_text("partial")
        (tmp_path / "p2" / "notes.tmp").write_text("not ours")
        (tmp_path / ".zerosite-probe-0a1b.tmp").touch()  # a Dask batch's, its parent killed
        assert store.cleanup_temp_files() == 3
        assert store.cleanup_temp_files() == 0
    assert (tmp_path / "p1" / "M2.html").exists()
    assert (tmp_path / "p2" / "notes.tmp").exists()
    assert _temp_files(tmp_path) == [tmp_path / "p2" / "notes.tmp"]


def test_custom_db_path_and_closed_store(tmp_path: Path) -> None:
    store = ReportStore(tmp_path / "out", db_path=tmp_path / "db" / "idx.sqlite")
    store.record(ReportRow("p1", "M2", "a", status="skipped"))
    store.close()
    store.close()
    assert (tmp_path / "db" / "idx.sqlite").exists()
    assert not (tmp_path / "out" / "index.sqlite").exists()
    with pytest.raises(StoreError, match="closed"):
        store.record(ReportRow("p1", "M2", "a", status="skipped"))
    with pytest.raises(StoreError, match="no report index"):
        recent_reports(tmp_path / "missing.sqlite")


def test_switching_gzip_on_and_off_leaves_one_file_a_report(tmp_path: Path) -> None:
    """A project remade in the other form (``--gzip`` or not) had its earlier file left beside the new one: not in the
    index, and showing the old figures once the input had changed. It goes once the new row is committed."""
    from dataclasses import replace

    from zerosite.engine import BatchOptions, generate
    from zerosite.project import parse_project
    from zerosite.sample import sample_project

    project = parse_project(sample_project(1))
    out = tmp_path / "out"
    for gzipped, area in ((False, 1650.0), (True, 3000.0), (False, 1700.0)):
        changed = replace(project, land_area_sqm=area)
        summary = generate([changed], BatchOptions(out=out, modules=("M2",), gzip=gzipped))
        assert summary.written == 1
        files = sorted(p.name for p in (out / project.id).iterdir())
        assert files == (["M2.html.gz"] if gzipped else ["M2.html"])
        with sqlite3.connect(out / "index.sqlite") as db:
            assert db.execute("SELECT path FROM reports").fetchall() == [(f"{project.id}/{files[0]}",)]


@pytest.mark.parametrize("strategy", ["sequential", "process"])
def test_a_project_named_as_the_index_fails_alone_and_the_folder_stays_usable(tmp_path: Path, strategy: str) -> None:
    """A project ``index.sqlite-journal`` made a folder where SQLite looks for the index's journal: that run and every
    later one into the folder failed with "disk I/O error". Such an id fails its own reports, naming why."""
    from dataclasses import replace

    from zerosite.engine import BatchOptions, generate
    from zerosite.project import parse_project
    from zerosite.sample import sample_project

    out = tmp_path / "out"
    good = parse_project(sample_project(1))
    named = [replace(good, id=f"index.sqlite{suffix}") for suffix in ("", "-journal", "-wal", "-shm")]
    options = BatchOptions(out=out, modules=("M2",), strategy=strategy, workers=2)
    summary = generate([*named, good], options)
    assert (summary.written, summary.failed) == (1, 4)
    assert all("is the name of the index's own file" in (f.error or "") for f in summary.failures)
    assert not any((out / project.id).is_dir() for project in named)
    again = generate([good], options)  # the index opens: the same command resumes
    assert again.skipped == 1


def test_the_index_elsewhere_reserves_no_name(tmp_path: Path) -> None:
    with ReportStore(tmp_path / "out", tmp_path / "db" / "index.sqlite") as store:
        assert store.write("index.sqlite", "M2", HTML).path.is_file()
