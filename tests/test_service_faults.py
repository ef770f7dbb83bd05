"""``zerosite serve`` when things go wrong underneath it: a full disk, a batch book that cannot be written, paths in
errors, tiny time limits, and the runners of module selections; the queue driven directly, without a server."""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import contextlib
import dataclasses
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import httpx
import pytest
from click.testing import CliRunner

from zerosite.cli import main
from zerosite.engine import ReportOutcome, StageTimings
from zerosite.project import parse_project
from zerosite.sample import sample_projects
from zerosite.service import ConfigError, ServiceConfig, create_app, jobs, routes
from zerosite.service.app import open_report_cache
from zerosite.service.batches import BOOK_FILE, BatchBook
from zerosite.service.errors import without_paths
from zerosite.service.jobs import GivenUp, ReportQueue, _Waiting
from zerosite.service.metrics import ServiceMetrics
from zerosite.service.response_bodies import ResponseBodyCache
from zerosite.service.routes import _describe
from zerosite.store import ReportStore
from zerosite.strategies import bounded
from zerosite.types import StoreError

MODULES = ("M2", "M3", "M4", "M5", "M6")


def test_closing_bounded_early_waits_for_the_work_already_running() -> None:
    """The engine cleans up after a pass the index refused as soon as it closes the runner's results: work still
    running then wrote its files afterwards, which the index lacked (a warm runner is not closed, and not joined)."""
    started, release = threading.Event(), threading.Event()
    finished: list[int] = []

    def work(item: int) -> int:
        if item == 1:
            started.set()
            release.wait(30)
        finished.append(item)
        return item

    with cf.ThreadPoolExecutor(2) as pool:
        results = bounded(lambda item: pool.submit(work, item), [0, 1, 2], 2)
        first: Any = next(results)
        assert first[0] == 0
        started.wait(30)  # item 1 runs; item 2 is queued behind it
        threading.Timer(0.2, release.set).start()
        results.close()
        assert 1 in finished  # waited for, not left running
        assert 2 not in finished  # cancelled before it started


def named(prefix: str, n: int, seed: int) -> list[dict[str, Any]]:
    return [{**project, "id": f"{prefix}-{i:04d}"} for i, project in enumerate(sample_projects(n, seed=seed), 1)]


def queue_on(out: Path, counted: list[ReportOutcome] | None = None, **settings: Any) -> ReportQueue:
    """A queue with no dispatcher (its passes run on the test's thread), taking work."""
    config = ServiceConfig(out=out, **{"strategy": "thread", "workers": 2, **settings})
    config.out.mkdir(exist_ok=True)
    queue = ReportQueue(config, open_report_cache(config), (counted if counted is not None else []).append)
    queue.ready.set()
    return queue


@pytest.fixture
def refusing_index(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    """The index refuses every commit holding a row of the project named (as a full disk would)."""

    def refuse(project_id: str) -> None:
        flush = ReportStore.flush

        def refusing(store: ReportStore) -> None:
            if any(project_id in row for row in store._rows):
                full = sqlite3.OperationalError("database or disk is full")
                raise StoreError(f"cannot write rows to the index {store.db_path}: {full}") from full
            flush(store)

        monkeypatch.setattr(ReportStore, "flush", refusing)

    return refuse


def indexed_and_on_disk(out: Path) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    with contextlib.closing(sqlite3.connect(out / "index.sqlite")) as db:
        rows = set(db.execute("SELECT project_id, module FROM reports WHERE status = 'written'").fetchall())
    files = {(path.parent.name, path.stem) for path in out.glob("*/*.html")}
    return rows, files


def test_a_pass_the_index_refused_answers_and_counts_what_it_kept(
    tmp_path: Path, refusing_index: Callable[[str], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Findings 3 and 4: a micro-batch whose commit failed answered 500 to every request in it, projects indexed
    before the failure included, and the metrics counted as written the reports then removed."""
    counted: list[ReportOutcome] = []
    queue = queue_on(tmp_path / "out", counted, strategy="sequential")
    projects = [parse_project(p) for p in named("f34", 4, seed=34)]
    refusing_index(projects[2].id)
    monkeypatch.setattr(ReportStore, "_flush_when_due", lambda store: store.flush())  # a commit per project
    taken = [_Waiting(p, queue.default, cf.Future(), time.monotonic() + 60) for p in projects]
    try:
        queue._make(taken)
    finally:
        queue._close_all()
    rows, files = indexed_and_on_disk(queue.out)
    answered: set[tuple[str, str]] = set()
    for waiting in taken:
        error = waiting.future.exception()
        if error is None:
            outcomes = waiting.future.result()
            answered |= {(o.project_id, o.module) for o in outcomes if o.status == "written"}
            for outcome in outcomes:
                if outcome.status == "failed":
                    assert outcome.error == "not kept: the index refused it"
        else:
            assert isinstance(error, StoreError)
    assert (projects[2].id, "M2") not in rows  # the refused project is neither indexed nor on disk
    assert rows == files == answered
    assert {(o.project_id, o.module) for o in counted if o.status == "written"} == rows
    assert {project_id for project_id, _ in answered} == {projects[0].id, projects[1].id}  # committed before it


def test_a_batch_the_index_refused_counts_what_it_kept_and_its_error_names_no_path(
    tmp_path: Path, refusing_index: Callable[[str], None]
) -> None:
    """Findings 4 and 5: done and reports_written counted reports then removed; the error named the index's path
    and gave the CLI's advice."""
    queue = queue_on(tmp_path / "out")
    projects = [parse_project(p) for p in named("f45", 20, seed=45)]
    refusing_index(projects[5].id)
    view = queue.submit_batch(projects, queue.default)
    batch = queue._batches[0]
    try:
        while queue._batches:
            queue._batch_step(batch)
    finally:
        queue._close_all()
    rows, files = indexed_and_on_disk(queue.out)
    ended = queue.book.get(view.id)
    assert ended is not None and ended.state == "failed" and ended.error is not None
    assert ended.reports_written == len(rows) == len(files)
    assert ended.done * len(MODULES) == len(rows)
    assert str(tmp_path) not in ended.error and "database or disk is full" in ended.error
    assert "send the batch again" in ended.error and "run the same command" not in ended.error


def test_a_batch_whose_end_the_book_refuses_ends_all_the_same(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Finding 1: with the batch book refusing writes (a full disk), a batch stayed running for ever: GET said so,
    DELETE answered 202 and did nothing, the events never ended. Its end is answered from memory, and written to
    the book once it takes writes again."""
    queue = queue_on(tmp_path / "out")
    projects = [parse_project(p) for p in named("f1", 3, seed=1)]
    view = queue.submit_batch(projects, queue.default)
    book_update = BatchBook.update

    def full(book: BatchBook, batch_id: str, **fields: object) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(BatchBook, "update", full)
    app = create_app_for(queue)

    async def ask() -> tuple[httpx.Response, httpx.Response, str]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            got = await client.get(f"/v1/batches/{view.id}")
            cancelled = await client.delete(f"/v1/batches/{view.id}")
            events = await client.get(f"/v1/batches/{view.id}/events")
            return got, cancelled, events.text

    try:
        batch = queue._batches[0]
        while queue._batches:
            queue._batch_step(batch)
        stale = queue.book.get(view.id)
        assert stale is not None and stale.state == "queued"  # the book took nothing
        got, cancelled, events = asyncio.run(ask())
        assert got.status_code == 200 and got.json()["state"] == "done" and got.json()["final"] is True
        assert got.json()["done"] == 3
        assert cancelled.status_code == 409
        assert "event: end" in events
        monkeypatch.setattr(BatchBook, "update", book_update)  # room again
        queue._record_ends()
    finally:
        queue._close_all()
    recorded = queue.book.get(view.id)
    assert recorded is not None and recorded.state == "done" and recorded.done == 3
    assert not queue._ended


def create_app_for(queue: ReportQueue) -> Any:
    """An app whose routes answer from ``queue`` (no lifespan: nothing started)."""
    app = create_app(queue.config)
    app.state.service = dataclasses.replace(app.state.service, queue=queue)
    return app


@pytest.mark.parametrize(
    ("make", "why"),
    [
        (lambda path: path.write_bytes(b"not a batch book, not SQLite at all" * 200), "file is not a database"),
        (lambda path: path.mkdir(), "unable to open database file"),
    ],
)
def test_a_batch_book_that_cannot_be_opened_is_one_error_line(tmp_path: Path, make: Any, why: str) -> None:
    """Finding 2: a damaged batch book, or one that cannot be made, was a traceback at start."""
    out = tmp_path / "out"
    out.mkdir()
    make(out / BOOK_FILE)
    with pytest.raises(ConfigError, match=f"cannot open the batch book .*{BOOK_FILE}: {why}"):
        create_app(ServiceConfig(out=out, strategy="thread", workers=1))
    result = CliRunner().invoke(main, ["serve", "--out", str(out)])
    assert result.exit_code == 2
    assert result.output.startswith(f"error: cannot open the batch book {out / BOOK_FILE}: {why}")
    assert "Traceback" not in result.output


def test_a_failed_reports_error_names_no_server_path(tmp_path: Path) -> None:
    """Finding 5: a 500's failed report said where the server writes (``cannot write ... to /srv/out/p/M2.html``)."""
    service: Any = SimpleNamespace(
        bodies=ResponseBodyCache(tmp_path, max_bytes=1 << 20), config=SimpleNamespace(out=tmp_path / "out")
    )
    error = f"cannot write report M2 of project p1 to {tmp_path / 'out' / 'p1' / 'M2.html'}: Read-only file system"
    failed = ReportOutcome("p1", "M2", "failed", None, 0, StageTimings(), 0, error)
    (described,) = _describe(service, [failed])
    assert described["error"] == "cannot write report M2 of project p1 to p1/M2.html: Read-only file system"
    assert without_paths("the index /var/lib/zerosite/index.sqlite: disk full") == "the index index.sqlite: disk full"
    assert without_paths("M2/M3 at 30 km/h, 1/2 of it") == "M2/M3 at 30 km/h, 1/2 of it"


class _FakeRunner:
    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True


def test_one_warm_runner_at_a_time_whatever_the_module_selections(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Finding 6: each module selection kept a runner of its own with --workers workers (up to four at once), while
    /readyz and /v1/stats said --workers."""
    started: list[_FakeRunner] = []

    def start(*_: object) -> _FakeRunner:
        started.append(_FakeRunner())
        return started[-1]

    monkeypatch.setattr(jobs, "start_runner", start)
    queue = queue_on(tmp_path / "out")
    try:
        selections = [queue.default, queue.selection(["M2"]), queue.selection(["M3"]), queue.default]
        for selection in selections:
            queue._runner(selection)
            assert sum(not runner.closed for runner in started) == 1
        assert queue._runner(queue.default) is started[-1]  # the same selection: the same runner
        assert queue.runner_starts == len(started) == 4
        assert queue.warm_modules == MODULES
        stats = routes._stats(cast(Any, SimpleNamespace(metrics=metrics_for(queue), queue=queue, config=queue.config)))
        assert stats["workers"] == 2 and stats["warm_modules"] == list(MODULES) and stats["runner_starts"] == 4
    finally:
        queue._close_all()
    assert all(runner.closed for runner in started)


def metrics_for(queue: ReportQueue) -> ServiceMetrics:
    return ServiceMetrics(depth=queue.depth, ready=queue.ready.is_set, cache=queue.cache)


def test_a_short_time_limit_is_applied_nearly_whole_and_blames_no_empty_queue(tmp_path: Path) -> None:
    """Finding 7: a request's deadline was moved 0.1 s early, so with --request-timeout 0.1 every request was past
    it once queued, and its 504 blamed "the requests ahead of it in the queue" in an empty queue."""
    queue = queue_on(tmp_path / "out", request_timeout_s=0.1, strategy="sequential")
    try:
        project = parse_project(named("f7", 1, seed=7)[0])
        queued_at = time.monotonic()
        queue.submit(project, queue.default)
        (waiting,) = queue._waiting
        assert waiting.deadline - queued_at >= 0.09  # a tenth of the limit early at most
        assert not waiting.behind  # nothing ahead of it
        late = _Waiting(project, queue.default, cf.Future(), time.monotonic(), behind=False)
        queue._make([late])
    finally:
        queue._close_all()
    error = late.future.exception()
    assert isinstance(error, GivenUp) and "ahead of it" not in str(error)


def test_threads_that_end_just_after_the_exit_began_are_waited_for_not_blamed_on_a_plugin() -> None:
    """Finding 9: uvicorn's own worker thread, ending as the server did, was named as left running, "(a plugin's?)",
    and the process exited at once."""
    script = (
        "import threading, time\n"
        "from zerosite.stopping import exit_without_waiting\n"
        "threading.Thread(target=time.sleep, args=(0.3,), name='AnyIO worker thread').start()\n"
        "exit_without_waiting(0)\n"
        "print('waited')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout == "waited\n"
    assert "warning" not in done.stderr and "plugin" not in done.stderr


KILLS_ANY_PROCESS = """
import os
from pathlib import Path

from zerosite import ReportModule, hookimpl

HERE = Path(__file__).parent


@hookimpl
def zerosite_template_dirs():
    return [HERE / "templates"]


def ends(project, deps):
    os._exit(7)


@hookimpl
def zerosite_register_modules(register):
    register(ReportModule(name="END", title="종료", compute=ends, template="end.html.j2"))
"""


def test_a_module_that_ends_the_server_while_it_warms_is_the_last_thing_it_said(tmp_path: Path) -> None:
    """The warm-up makes sample projects outside any batch, so nothing can set such a project apart for the next
    start (crash isolation: README): the log says what the server was doing when it ended (audit of the isolation,
    F6), not only that it started."""
    plugins = tmp_path / "plugins"
    (plugins / "templates").mkdir(parents=True)
    (plugins / "templates" / "end.html.j2").write_text("<p>{{ result }}</p>\n", encoding="utf-8")
    (plugins / "end.py").write_text(KILLS_ANY_PROCESS, encoding="utf-8")
    command = [sys.executable, "-m", "zerosite", "--plugins-dir", str(plugins), "serve", "--out", str(tmp_path / "o")]
    done = subprocess.run(
        [*command, "--port", "0", "--strategy", "sequential"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 7, done.stderr
    assert "INFO:     warming the workers: sequential x1, 2 sample projects\n" in done.stderr  # the start-up's
    assert "workers ready" not in done.stderr  # own lines may come after it: it warms on a thread of its own
