"""Two server processes on one port, one store, one index: ``uvicorn --factory zerosite.service:create_app
--workers 2`` configured by ``ZEROSITE_*`` variables, each with a warm process pool."""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import sqlite3
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from zerosite.sample import sample_projects
from zerosite.service.process import ServerProcess
from zerosite.store import search_reports

MODULES = ("M2", "M3", "M4", "M5", "M6")


def named(prefix: str, n: int, seed: int) -> list[dict[str, Any]]:
    return [{**project, "id": f"{prefix}-{i:04d}"} for i, project in enumerate(sample_projects(n, seed=seed), 1)]


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("shared")


@pytest.fixture(scope="module")
def server(out: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    command = [sys.executable, "-m", "uvicorn", "--factory", "zerosite.service:create_app"]
    command += ["--workers", "2", "--host", "127.0.0.1", "--port", "0", "--timeout-graceful-shutdown", "20"]
    env = {"ZEROSITE_OUT": str(out), "ZEROSITE_STRATEGY": "process", "ZEROSITE_WORKERS": "1"}
    env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path_factory.mktemp("metrics"))  # /metrics sums both processes
    with ServerProcess(command=command, env=env, ready_timeout_s=90) as running:
        pids = seen_pids(running.url, "/readyz", lambda answer: answer["ready"] is True)
        assert len(pids) == 2, running.log
        yield running


def seen_pids(url: str, path: str, accept: Any, timeout_s: float = 90) -> dict[int, dict[str, Any]]:
    """Ask ``path`` on new connections until both processes answered with what ``accept`` likes; by pid."""
    found: dict[int, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout_s
    while len(found) < 2 and time.monotonic() < deadline:
        try:
            answer = httpx.get(f"{url}{path}", timeout=10).json()  # a new connection each time
        except httpx.HTTPError:
            continue
        if accept(answer):
            found[answer["pid"]] = answer
        else:
            time.sleep(0.05)
    return found


def post(url: str, project: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{url}/v1/reports", json=project, timeout=60)


def test_two_processes_make_reports_into_one_store(server: ServerProcess, out: Path) -> None:
    projects = named("two", 24, seed=71)
    with cf.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda p: post(server.url, p), projects))
    assert [a.status_code for a in answers] == [200] * 24, [a.text for a in answers if a.status_code != 200]
    assert all(r["status"] == "written" for a in answers for r in a.json()["reports"])

    # Both processes did some of the work; each counts what it made itself.
    stats = seen_pids(server.url, "/v1/stats", lambda s: s["reports_generated"] > 0, timeout_s=30)
    assert len(stats) == 2, "one process made every report"
    assert sum(s["reports_generated"] for s in stats.values()) == 24 * 5
    for _ in range(4):  # whichever process answers /metrics, it counts the reports both made
        metrics = httpx.get(f"{server.url}/metrics").text
        assert 'zerosite_reports_total{module="M2",status="written"} 24.0' in metrics
        assert 'zerosite_report_duration_seconds_count{module="M6",stage="total"} 24.0' in metrics
    workers_rss = [
        float(line.split()[-1])
        for line in metrics.splitlines()
        if line.startswith('zerosite_process_resident_memory_bytes{pid="') and 'process="workers"' in line
    ]
    assert workers_rss and workers_rss[0] > 10e6  # the answering process's pool worker counted

    # One index, consistent with the files.
    with sqlite3.connect(out / "index.sqlite") as conn:
        rows = conn.execute("SELECT project_id, module, path, sha256 FROM reports WHERE status = 'written'").fetchall()
    assert {(p, m) for p, m, _, _ in rows} == {(p["id"], m) for p in projects for m in MODULES}
    assert all(hashlib.sha256((out / path).read_bytes()).hexdigest() == sha for _, _, path, sha in rows)
    assert not list(out.glob("*/.*.tmp"))
    assert len(search_reports(out / "index.sqlite", projects[0]["dong"], limit=1000)) >= 5

    # Every report is served by either process, with the same ETag.
    for answer in answers[:4]:
        report = answer.json()["reports"][0]
        for _ in range(4):
            got = httpx.get(f"{server.url}{report['url']}", headers={"Accept-Encoding": "identity"})
            assert got.status_code == 200 and got.headers["etag"] == f'"{report["sha256"]}"'


def test_the_same_project_posted_to_both_processes_at_once(server: ServerProcess, out: Path) -> None:
    project = named("same", 1, seed=72)[0]
    with cf.ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: post(server.url, project), range(6)))
    assert [a.status_code for a in answers] == [200] * 6
    hashes = {tuple(r["sha256"] for r in a.json()["reports"]) for a in answers}
    assert len(hashes) == 1  # the same reports, whoever made them
    assert sum(r["status"] == "written" for a in answers for r in a.json()["reports"]) >= 5


def test_a_batch_is_seen_and_cancelled_from_either_process(server: ServerProcess) -> None:
    done = httpx.post(f"{server.url}/v1/batches", json=named("b1", 12, seed=73), timeout=30).json()
    long = httpx.post(f"{server.url}/v1/batches", json=named("b2", 400, seed=74), timeout=30).json()
    deadline = time.monotonic() + 60
    views: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        views = [httpx.get(f"{server.url}{batch['url']}").json() for batch in (done, long) for _ in range(3)]
        if views[0]["final"] and views[3]["done"] > 0:
            break
        time.sleep(0.05)
    assert views[0]["state"] == "done" and views[0]["done"] == 12
    for _ in range(4):  # whichever process answers, the cancel reaches the one running the batch
        response = httpx.delete(f"{server.url}{long['url']}")
        if response.status_code == 409:
            break
        assert response.status_code == 202
    while not (view := httpx.get(f"{server.url}{long['url']}").json())["final"]:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert view["state"] == "cancelled" and 0 < view["done"] < 400


def test_each_process_logs_the_services_own_lines_under_uvicorn(server: ServerProcess) -> None:
    """Service audit F7: under ``uvicorn --factory`` the service's lines (``workers ready``, batches ending) went
    nowhere; they are logged beside uvicorn's, as ``zerosite serve`` logs them."""
    assert server.log.count("INFO:     workers ready: process x1") == 2, server.log
