"""Under load the service degrades honestly: a full queue is a 503 with Retry-After, the time limit a 504, and
SIGTERM finishes the requests in flight and leaves nothing half-written.

The work is held up the way a real server can be: another run holds the output folder (a ``ReportStore`` opened
by the test, as ``zerosite generate`` would), so requests pile up deterministically, without sleeping plugins.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import hashlib
import signal
import socket
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from zerosite.files import OutputBusy
from zerosite.sample import sample_projects
from zerosite.service.batches import BOOK_FILE
from zerosite.service.process import ServerProcess
from zerosite.store import ReportStore

REQUEST_TIMEOUT_S = 2.0


def named(prefix: str, n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` sample projects with ids of their own (``PREFIX-0001``...), so that no two tests share a project."""
    return [{**project, "id": f"{prefix}-{i:04d}"} for i, project in enumerate(sample_projects(n, seed=seed), 1)]


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("limited")


@pytest.fixture(scope="module")
def server(out: Path) -> Iterator[ServerProcess]:
    args = ["--out", str(out), "--strategy", "thread", "--workers", "1", "--queue-size", "2"]
    with ServerProcess([*args, "--request-timeout", str(REQUEST_TIMEOUT_S)]) as running:
        yield running


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as http:
        yield http


def wait_until(condition: Callable[[], bool], timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


def held_store(out: Path, timeout_s: float = 20) -> ReportStore:
    """The output folder's store, as another run would hold it: the server gives the folder back once idle for a
    moment (``LIMITS.store_idle_s``), so try until it has."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return ReportStore(out)
        except OutputBusy:
            assert time.monotonic() < deadline, "the server kept the output folder"
            time.sleep(0.02)


def stats(url: str) -> dict[str, Any]:
    answer: dict[str, Any] = httpx.get(f"{url}/v1/stats", timeout=10).json()
    return answer


def post(url: str, project: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{url}/v1/reports", json=project, timeout=60)


def test_past_the_time_limit_is_504_and_nothing_is_made(server: ServerProcess, client: httpx.Client, out: Path) -> None:
    project = named("s91", 1, seed=91)[0]
    with held_store(out):  # another run writes there: the service waits its turn
        started = time.monotonic()
        response = client.post("/v1/reports", json=project)
        waited = time.monotonic() - started
    assert response.status_code == 504
    assert REQUEST_TIMEOUT_S - 0.1 <= waited < REQUEST_TIMEOUT_S + 3
    assert "time limit (2 s)" in response.json()["error"]
    assert not (out / project["id"]).exists()
    retried = client.post("/v1/reports", json=project)
    assert retried.status_code == 200 and [r["status"] for r in retried.json()["reports"]] == ["written"] * 5


def stalled_post(port: int, timeout_s: float) -> bytes:
    """A POST that declares 100 bytes of body, sends one, then waits: what the server answers, if anything."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as connection:
        connection.sendall(b"POST /v1/reports HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        answer = b""
        with contextlib.suppress(TimeoutError):
            while chunk := connection.recv(4096):
                answer += chunk
        return answer


def test_a_body_that_stalls_is_408_within_the_time_limit(server: ServerProcess) -> None:
    started = time.monotonic()
    answer = stalled_post(httpx.URL(server.url).port or 0, timeout_s=REQUEST_TIMEOUT_S + 5)
    waited = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert b'{"error":"the request body did not all arrive within the time limit (2 s)"}' in answer
    assert REQUEST_TIMEOUT_S - 0.1 <= waited < REQUEST_TIMEOUT_S + 2


def test_a_body_that_stalls_does_not_hold_the_shutdown(tmp_path: Path) -> None:
    args = ["--out", str(tmp_path / "out"), "--strategy", "thread", "--workers", "1", "--request-timeout", "30"]
    with ServerProcess(args) as server, cf.ThreadPoolExecutor(1) as pool:
        stalled = pool.submit(stalled_post, httpx.URL(server.url).port or 0, 20)
        wait_until(lambda: stats(server.url)["in_flight"] >= 2)
        started = time.monotonic()
        server.send_signal(signal.SIGTERM)
        code = server.stop()
        assert time.monotonic() - started < 5, server.log
        assert stalled.result().startswith(b"HTTP/1.1 503 "), server.log
    assert code == 128 + signal.SIGTERM and "Traceback" not in server.log, server.log


def test_full_queue_is_503_with_retry_after(server: ServerProcess, client: httpx.Client, out: Path) -> None:
    projects = named("s92", 5, seed=92)
    with held_store(out), cf.ThreadPoolExecutor(4) as pool:
        first = pool.submit(post, server.url, projects[0])  # taken by the dispatcher, which waits for the folder
        wait_until(lambda: stats(server.url)["in_flight"] >= 2)
        time.sleep(0.3)
        waiting = [pool.submit(post, server.url, p) for p in projects[1:3]]  # the queue holds 2
        wait_until(lambda: stats(server.url)["queue_depth"] == 2)
        refused = client.post("/v1/reports", json=projects[3])
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "1"
        assert refused.json() == {"error": "the queue is full (2 requests waiting)"}
        metrics = client.get("/metrics").text
        assert "zerosite_queue_depth 2.0" in metrics
        answers = [first.result(), *(w.result() for w in waiting)]
    assert [a.status_code for a in answers] == [504, 504, 504]
    assert "the output folder stayed busy (another zerosite run is writing to it)" in answers[0].json()["error"]
    assert all(a.json()["error"].endswith("nothing was made") for a in answers[1:])  # withdrawn, or given up
    assert not any((out / p["id"]).exists() for p in projects)
    assert client.post("/v1/reports", json=projects[4]).status_code == 200


def test_sigterm_finishes_the_requests_in_flight_and_leaves_nothing_half_written(tmp_path: Path) -> None:
    out = tmp_path / "out"
    projects = named("s93", 6, seed=93)
    batch = named("s94", 60, seed=94)
    args = ["--out", str(out), "--strategy", "thread", "--workers", "2", "--processes", "1"]
    with ServerProcess(args) as server, cf.ThreadPoolExecutor(8) as pool:
        url = server.url
        post(url, projects[0])
        with held_store(out):  # hold the work back so that the requests are surely in flight at the signal
            in_flight = [pool.submit(post, url, p) for p in projects[1:]]
            accepted = httpx.post(f"{url}/v1/batches", json=batch, timeout=10).json()
            wait_until(lambda: stats(url)["in_flight"] >= len(in_flight) + 1)
            server.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            with pytest.raises(httpx.HTTPError):  # no longer listening
                httpx.post(f"{url}/v1/reports", json=named("s95", 1, seed=95)[0], timeout=5)
        answers = [future.result() for future in in_flight]
        code = server.stop()
    assert code == 128 + signal.SIGTERM, server.log
    assert [a.status_code for a in answers] == [200] * 5, [a.text for a in answers]
    assert all(r["status"] == "written" for a in answers for r in a.json()["reports"])
    assert "Application shutdown complete." in server.log and "Traceback" not in server.log

    # Nothing half-written: no temporary file; every report file indexed with its hash, every written row's file there.
    assert not list(out.glob("*/.*.tmp"))
    with sqlite3.connect(out / "index.sqlite") as conn:
        rows = conn.execute("SELECT path, sha256 FROM reports WHERE status = 'written'").fetchall()
    assert len(rows) == 6 * 5
    assert {path for path, _ in rows} == {str(p.relative_to(out)) for p in out.glob("*/*.html")}
    assert all(hashlib.sha256((out / path).read_bytes()).hexdigest() == sha for path, sha in rows)
    with sqlite3.connect(out / BOOK_FILE) as conn:
        state, done, error = conn.execute(
            "SELECT state, done, error FROM batches WHERE id = ?", (accepted["id"],)
        ).fetchone()
    assert state == "interrupted" and done == 0 and "send the batch again to resume" in error


def test_a_stopping_queue_serves_the_single_requests_waiting_even_on_a_batchs_turn(tmp_path: Path) -> None:
    """stop() promises to finish the single requests waiting: with a batch queued too, the dispatcher used to end on
    the batch's turn and answer them "the server stopped before making it" (503), a race the SIGTERM test lost."""
    import itertools

    from zerosite.project import parse_project
    from zerosite.service.app import open_report_cache
    from zerosite.service.config import ServiceConfig
    from zerosite.service.jobs import Batch, ReportQueue, _Waiting

    config = ServiceConfig(out=tmp_path / "out", strategy="sequential", workers=1)
    config.out.mkdir()
    queue = ReportQueue(config, open_report_cache(config), lambda outcome: None)  # not started: no dispatcher
    projects = [parse_project(p) for p in named("s96", 3, seed=96)]
    waiting = [_Waiting(p, queue.default, cf.Future(), time.monotonic() + 60) for p in projects[:2]]
    queue._waiting.extend(waiting)
    queue._batches.append(Batch("b1", queue.default, projects[2:]))
    queue._turns = itertools.count(1)  # the batch's turn
    queue.stopping.set()
    assert queue._next() == waiting
    assert queue._next() is None  # then it ends; the batch is left to be marked interrupted


def test_a_request_given_up_says_what_held_it_up(tmp_path: Path) -> None:
    """Past its time limit, a request is given up before it is made: "the output folder stayed busy" only when
    another writer held the folder; when it only waited behind other requests, it says so."""
    from zerosite.project import parse_project
    from zerosite.service.app import open_report_cache
    from zerosite.service.config import ServiceConfig
    from zerosite.service.jobs import GivenUp, ReportQueue, _Waiting

    config = ServiceConfig(out=tmp_path / "out", strategy="sequential", workers=1)
    config.out.mkdir()
    queue = ReportQueue(config, open_report_cache(config), lambda outcome: None)  # not started: no dispatcher
    behind, busy = (
        _Waiting(parse_project(p), queue.default, cf.Future(), time.monotonic()) for p in named("s97", 2, 97)
    )
    try:
        queue._make([behind])  # the folder is free: it only came too late
        queue._release_store()
        with held_store(config.out):
            queue._make([busy])
    finally:
        queue._close_all()
    for waiting, why in ((behind, "the requests ahead of it in the queue took the time"), (busy, "stayed busy")):
        error = waiting.future.exception()
        assert isinstance(error, GivenUp) and why in str(error)
    assert "busy" not in str(behind.future.exception())
    assert not (config.out / behind.project.id).exists()


@pytest.mark.parametrize("processes", [1, 2])
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_the_signal_that_stopped_the_server_is_its_exit_status(tmp_path: Path, signum: int, processes: int) -> None:
    """Ctrl-C ended ``serve`` with 0 (uvicorn swallows it) and SIGTERM with 143, or 0 for both with several server
    processes: now 130 and 143, as ``generate``, whatever the processes."""
    with ServerProcess(["--out", str(tmp_path / "out"), "--processes", str(processes)]) as server:
        code = server.stop(signum)
    assert code == 128 + signum and "Traceback" not in server.log, server.log


def test_a_port_in_use_is_one_line_before_anything_starts(tmp_path: Path) -> None:
    """The workers started and warmed, "workers ready" was logged, then the bind failed and the command exited 3."""
    import subprocess
    import sys

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "zerosite", "serve", "--out", str(tmp_path / "out"), "--port", str(port)],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr == f"error: cannot listen on 127.0.0.1:{port}: Address already in use\n"
