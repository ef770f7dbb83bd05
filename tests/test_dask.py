"""The dask strategy: a local cluster, a real `dask scheduler` with two `dask worker`s on loopback (one killed
mid-batch), hand-back, an unreachable scheduler, chunk sizing. Skipped where Dask distributed is not installed."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from zerosite.dask_strategy import DaskStrategy
from zerosite.dask_strategy.chunks import ChunkPolicy, ChunkSizer
from zerosite.engine import BatchOptions, BatchSummary, ReportOutcome, generate, plan_batch
from zerosite.project import Project, parse_project
from zerosite.sample import sample_projects
from zerosite.types import Runner, StartError

PROJECTS = 24
REPORTS = PROJECTS * 5
DASK_BIN = Path(sys.executable).parent / "dask"
QUIET_WORKERS = {"DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED": "False"}


@pytest.fixture(scope="module")
def dask_installed() -> None:
    pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def batch() -> list[Project]:
    return [parse_project(raw) for raw in sample_projects(PROJECTS)]


@pytest.fixture(scope="module")
def expected(batch: list[Project], tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """The report files the sequential strategy writes for ``batch``: every strategy must write the same."""
    out = tmp_path_factory.mktemp("sequential")
    generate(batch, BatchOptions(out=out))
    return report_files(out)


def report_files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.html"))}


def assert_index_matches_files(out: Path, expected: dict[str, bytes]) -> None:
    """Every report written once: the files are the expected ones, each indexed once with its SHA-256, no temp file."""
    assert report_files(out) == expected
    with sqlite3.connect(out / "index.sqlite") as conn:
        rows = conn.execute("SELECT path, sha256, status FROM reports").fetchall()
    assert len(rows) == len(expected)
    assert {path: (sha, status) for path, sha, status in rows} == {
        path: (hashlib.sha256(data).hexdigest(), "written") for path, data in expected.items()
    }
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp") or p.name.startswith(".zerosite-probe")]


# --- Chunk sizing and availability: no Dask needed ----------------------------------------------------------


def test_chunks_hold_enough_work_to_hide_the_task_overhead() -> None:
    policy = ChunkPolicy(overhead_share=0.05, most_projects=64)
    assert policy.task_ms(overhead_ms=1.0, threads=2) == 40.0  # Dask's serial 1 ms a task, for 2 threads
    assert policy.task_ms(overhead_ms=1.0, threads=16) == 320.0  # more threads, longer tasks
    assert policy.projects_for(10.0, overhead_ms=1.0, threads=2) == 4  # 40 ms of work per task
    assert policy.projects_for(100.0, overhead_ms=1.0, threads=2) == 1
    assert policy.projects_for(0.01, overhead_ms=1.0, threads=2) == 64
    sizer = ChunkSizer(policy, first=4, overhead_ms=1.0)
    assert (sizer.size(threads=2), sizer.project_ms) == (4, None)
    sizer.observe(projects=4, busy_ns=20_000_000)  # 5 ms per project
    assert sizer.size(threads=2) == 8
    assert sizer.size(threads=4) == 16
    with pytest.raises(ValueError):
        ChunkPolicy(overhead_share=1.5)


def test_unavailable_without_distributed(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "distributed" else real(name, *a))
    assert DaskStrategy().unavailable_reason() == "needs Dask distributed: pip install 'zerosite[dask]'"


def test_scheduler_needs_the_dask_strategy(tmp_path: Path) -> None:
    done = zerosite_cli("--sample", "1", "--strategy", "process", "--scheduler", "tcp://127.0.0.1:1", out=tmp_path)
    assert (done.returncode, done.stderr.strip()) == (2, "error: --scheduler is for --strategy dask")


# --- A local cluster ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def local_runner(dask_installed: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runner]:
    """One local cluster of two workers for the module's batches."""
    options = BatchOptions(out=tmp_path_factory.mktemp("unused"), strategy="dask", workers=2)
    plan = plan_batch(options)
    runner = plan.strategy.start(plan.config, plan.strategy_options)
    try:
        yield runner
    finally:
        runner.close()


@pytest.mark.parametrize("hand_back", [False, True], ids=["workers-write", "hand-back"])
def test_local_cluster_writes_every_report_once(
    local_runner: Runner, batch: list[Project], expected: dict[str, bytes], tmp_path: Path, hand_back: bool
) -> None:
    options = BatchOptions(out=tmp_path / "out", strategy="dask", workers=2, hand_back=hand_back)
    summary = generate(batch, options, runner=local_runner)
    assert (summary.written, summary.failed, summary.restarts) == (REPORTS, 0, 0)
    assert_index_matches_files(tmp_path / "out", expected)
    again = generate(batch, options, runner=local_runner)
    assert (again.written, again.skipped) == (0, REPORTS)


# --- A real `dask scheduler` and `dask worker`s on loopback ------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start(*args: str) -> subprocess.Popen[bytes]:
    """A `dask` command in its own process group (a worker's nanny and worker process are killed together)."""
    return subprocess.Popen(
        [str(DASK_BIN), *args],
        env={**os.environ, **QUIET_WORKERS},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def stop(process: subprocess.Popen[bytes], how: signal.Signals = signal.SIGTERM) -> None:
    if process.poll() is None:
        os.killpg(process.pid, how)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def wait_for_workers(address: str, count: int) -> None:
    from distributed import Client

    with Client(address, timeout=30, set_as_default=False) as client:
        client.wait_for_workers(count, timeout=60)


@dataclass
class Cluster:
    address: str
    processes: list[subprocess.Popen[bytes]]

    def add_worker(self) -> subprocess.Popen[bytes]:
        worker = start("worker", self.address, "--nthreads", "1", "--no-dashboard", "--host", "127.0.0.1")
        self.processes.append(worker)
        return worker


@pytest.fixture(scope="module")
def cluster(dask_installed: None) -> Iterator[Cluster]:
    if not DASK_BIN.exists():
        pytest.skip(f"no `dask` command at {DASK_BIN}")
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    scheduler = start("scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard")
    running = Cluster(address, [scheduler])
    try:
        running.add_worker()
        running.add_worker()
        wait_for_workers(address, 2)
        yield running
    finally:
        for process in reversed(running.processes):
            stop(process)


def zerosite_cli(*args: str, out: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "zerosite", "generate", "--out", str(out), "-q", *args]
    return subprocess.run(command, capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=120)


def test_external_scheduler_from_the_command_line(cluster: Cluster, expected: dict[str, bytes], tmp_path: Path) -> None:
    args = ["--sample", str(PROJECTS), "--strategy", "dask", "--scheduler", cluster.address, "--json"]
    done = zerosite_cli(*args, out=tmp_path / "out")
    assert done.returncode == 0, done.stderr
    assert '"written": 120' in done.stdout and '"failed": 0' in done.stdout
    assert_index_matches_files(tmp_path / "out", expected)


def test_external_workers_hand_reports_back(
    cluster: Cluster, batch: list[Project], expected: dict[str, bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ZEROSITE_DASK_SCHEDULER", cluster.address)  # instead of --scheduler
    summary = generate(batch, BatchOptions(out=tmp_path / "out", strategy="dask", hand_back=True))
    assert (summary.written, summary.failed) == (REPORTS, 0)
    assert_index_matches_files(tmp_path / "out", expected)


def test_a_dask_worker_killed_mid_batch_loses_nothing(
    cluster: Cluster, batch: list[Project], expected: dict[str, bytes], tmp_path: Path
) -> None:
    victim = cluster.add_worker()
    wait_for_workers(cluster.address, 3)
    killed_after = 20

    def kill(outcome: ReportOutcome) -> None:
        nonlocal killed_after
        killed_after -= 1
        if killed_after == 0:
            os.killpg(victim.pid, signal.SIGKILL)

    options = BatchOptions(out=tmp_path / "out", strategy="dask", scheduler=cluster.address, chunksize=1, force=True)
    summary: BatchSummary = generate(batch, options, on_report=kill)
    assert victim.wait(timeout=10) == -signal.SIGKILL
    assert (summary.written, summary.failed) == (REPORTS, 0)
    assert summary.restarts >= 1, "the scheduler's loss of the worker was not noticed"
    assert_index_matches_files(tmp_path / "out", expected)


def test_an_unreachable_scheduler_is_named_within_10_s(dask_installed: None, tmp_path: Path) -> None:
    address = f"tcp://127.0.0.1:{free_port()}"
    with socket.socket() as silent:  # a port that takes connections and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        for unreachable in (address, f"tcp://127.0.0.1:{silent.getsockname()[1]}"):
            plan = plan_batch(BatchOptions(out=tmp_path / "unused", strategy="dask", scheduler=unreachable))
            started = time.monotonic()
            with pytest.raises(StartError, match=f"^cannot reach the Dask scheduler at {unreachable}: "):
                plan.strategy.start(plan.config, plan.strategy_options)
            assert time.monotonic() - started < 10
    # on the command line: exit 2 like any usage error, one line, nothing written (the start-up's time aside:
    # this machine may be busy)
    done = zerosite_cli("--sample", "2", "--strategy", "dask", "--scheduler", address, out=tmp_path / "out")
    assert done.returncode == 2
    assert done.stderr.startswith(f"error: cannot reach the Dask scheduler at {address}: ")
    assert "Traceback" not in done.stderr
    assert not report_files(tmp_path / "out")
