"""The dask strategy: a local cluster, a real `dask scheduler` with two `dask worker`s on loopback (one killed
mid-batch), hand-back, an unreachable scheduler, chunk sizing. Skipped where Dask distributed is not installed."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import importlib.util
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import psutil
import pytest
from helpers import communicate, failures, hostile_plugin, projects

from zerosite.dask_strategy import DaskStrategy
from zerosite.dask_strategy.chunks import ChunkPolicy, ChunkSizer
from zerosite.engine import BatchOptions, BatchSummary, ReportOutcome, generate, plan_batch, start_runner
from zerosite.project import Project, parse_project
from zerosite.sample import sample_projects
from zerosite.types import PluginSettings, Runner, StartError, WorkersLost

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


def start(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """A `dask` command in its own process group (a worker's nanny and worker process are killed together)."""
    return subprocess.Popen(
        [str(DASK_BIN), *args],
        env={**os.environ, **QUIET_WORKERS, **(env or {})},
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

    def stop(self) -> None:
        for process in reversed(self.processes):
            stop(process)

    def add_worker(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        worker = start(
            "worker", self.address, "--nthreads", "1", "--no-dashboard", "--host", "127.0.0.1", *args, env=env
        )
        self.processes.append(worker)
        return worker


def start_cluster(workers: int, *worker_args: str) -> Cluster:
    """A `dask scheduler` on a free loopback port with ``workers`` single-threaded workers, all started."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    running = Cluster(address, [start("scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard")])
    try:
        for _ in range(workers):
            running.add_worker(*worker_args)
        if workers:
            wait_for_workers(address, workers)
    except BaseException:
        running.stop()
        raise
    return running


def running_cluster(workers: int) -> Iterator[Cluster]:
    """A fixture's cluster of ``workers`` `dask worker` processes, stopped when the fixture ends."""
    if not DASK_BIN.exists():
        pytest.skip(f"no `dask` command at {DASK_BIN}")
    running = start_cluster(workers)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def cluster(dask_installed: None) -> Iterator[Cluster]:
    yield from running_cluster(2)


def zerosite_cli(*args: str, out: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "zerosite", "generate", "--out", str(out), "-q", *args]
    return subprocess.run(command, capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=120)


def test_external_scheduler_from_the_command_line(cluster: Cluster, expected: dict[str, bytes], tmp_path: Path) -> None:
    # --workers beyond this machine's cap: the cluster's workers run the batch, so it is neither capped nor used
    args = ["--sample", str(PROJECTS), "--strategy", "dask", "--scheduler", cluster.address, "--workers", "999"]
    done = zerosite_cli(*args, "--json", out=tmp_path / "out")
    assert done.returncode == 0, done.stderr
    assert '"written": 120' in done.stdout and '"failed": 0' in done.stdout
    assert f"warning: --workers is not used: the Dask scheduler at {cluster.address}" in done.stderr
    assert "capped" not in done.stderr
    assert_index_matches_files(tmp_path / "out", expected)


BLOCKS_ZEROSITE = """
import importlib.abc, sys

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "zerosite" or name.startswith("zerosite."):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return None

sys.meta_path.insert(0, Block())
"""


def test_a_worker_without_zerosite_is_named(dask_installed: None, batch: list[Project], tmp_path: Path) -> None:
    # A user audit: `the Dask workers could not be warmed: Exception: ModuleNotFoundError("No module named
    # 'zerosite'")`, on 64 machines naming none.
    if not DASK_BIN.exists():
        pytest.skip(f"no `dask` command at {DASK_BIN}")
    blocking = tmp_path / "blocking"
    blocking.mkdir()
    (blocking / "sitecustomize.py").write_text(BLOCKS_ZEROSITE, encoding="utf-8")
    running = start_cluster(0)
    try:
        running.add_worker("--no-nanny", env={"PYTHONPATH": str(blocking)})
        wait_for_workers(running.address, 1)
        options = BatchOptions(out=tmp_path / "out", strategy="dask", scheduler=running.address)
        with pytest.raises(StartError) as raised:
            generate(batch[:2], options)
    finally:
        running.stop()
    assert re.fullmatch(
        r"Dask worker\(s\) tcp://127\.0\.0\.1:\d+ cannot load zerosite \(ModuleNotFoundError: No module named "
        r"'zerosite'\): install zerosite there, the same version as here \(pip install 'zerosite\[dask\]' on each "
        r"worker's machine\), and restart the worker",
        str(raised.value),
    ), raised.value
    assert not (tmp_path / "out").exists()


def test_long_lived_workers_keep_no_resource_of_an_ended_batch(
    cluster: Cluster, batch: list[Project], tmp_path: Path
) -> None:
    # A user audit: each batch left two Dask resources on every worker (43 after 22 batches), in every answer the
    # scheduler gives about its workers and on the dashboard.
    from distributed import Client

    def resources(client: Client) -> tuple[dict[str, Any], dict[str, Any]]:
        scheduler = {a: w.get("resources", {}) for a, w in client.scheduler_info(n_workers=-1)["workers"].items()}
        workers = client.run(lambda dask_worker: dict(dask_worker.state.total_resources))
        return scheduler, workers

    with Client(cluster.address, timeout=30, set_as_default=False) as watcher:
        before = resources(watcher)
        for run in range(2):
            options = BatchOptions(out=tmp_path / f"out{run}", strategy="dask", scheduler=cluster.address)
            assert generate(batch[:4], options).written == 20
        assert resources(watcher) == before


def test_a_workers_or_nannys_address_given_for_the_schedulers_says_so(cluster: Cluster, tmp_path: Path) -> None:
    """Dask audit: ``dask worker`` prints a worker's and a nanny's address; given one for the scheduler's, the client
    failed past its whole timeout (11-12 s) with a TypeError from inside Dask and its __del__'s traceback."""
    from distributed import Client

    with Client(cluster.address, set_as_default=False, timeout=10) as client:
        workers = client.scheduler_info(n_workers=-1)["workers"]
    worker, info = next(iter(workers.items()))
    for address, kind in [(worker, "Worker"), (info["nanny"], "Nanny")]:
        started = time.monotonic()
        done = zerosite_cli("--sample", "2", "--strategy", "dask", "--scheduler", address, out=tmp_path / kind)
        assert done.returncode == 2
        assert done.stderr == (
            f"error: cannot reach the Dask scheduler at {address}: ConnectionError: it is a Dask {kind}, not the "
            "scheduler: give the address `dask scheduler` printed\n"
        )
        assert time.monotonic() - started < 8  # the interpreter's start-up and imports included
        assert not (tmp_path / kind).exists()


def test_external_workers_hand_reports_back(
    cluster: Cluster, batch: list[Project], expected: dict[str, bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ZEROSITE_DASK_SCHEDULER", cluster.address)  # instead of --scheduler
    summary = generate(batch, BatchOptions(out=tmp_path / "out", strategy="dask", hand_back=True))
    assert (summary.written, summary.failed) == (REPORTS, 0)
    assert summary.workers == 2  # the cluster's, not --workers (1 by default)
    assert_index_matches_files(tmp_path / "out", expected)


def test_a_dask_worker_killed_mid_batch_loses_nothing(
    cluster: Cluster, batch: list[Project], expected: dict[str, bytes], tmp_path: Path
) -> None:
    from distributed import Client

    with Client(cluster.address, timeout=30, set_as_default=False) as watcher:
        before = set(watcher.scheduler_info()["workers"])
        victim = cluster.add_worker()
        watcher.wait_for_workers(3, timeout=60)
        (address,) = set(watcher.scheduler_info()["workers"]) - before
        going = threading.Event()

        def kill_while_it_holds_a_chunk() -> None:
            # Killed while the batch runs, holding one of its chunks.
            going.wait(30)
            deadline = time.monotonic() + 30
            while not watcher.processing(workers=[address]).get(address) and time.monotonic() < deadline:
                time.sleep(0.001)
            os.killpg(victim.pid, signal.SIGKILL)

        killer = threading.Thread(target=kill_while_it_holds_a_chunk)
        killer.start()
        options = BatchOptions(
            out=tmp_path / "out", strategy="dask", scheduler=cluster.address, chunksize=1, force=True
        )
        try:
            summary: BatchSummary = generate(batch, options, on_report=lambda outcome: going.set())
        finally:
            going.set()
            killer.join()
    assert victim.wait(timeout=10) == -signal.SIGKILL
    assert (summary.written, summary.failed) == (REPORTS, 0)
    assert summary.workers == 3  # the most that took chunks, not those left at the end
    assert summary.restarts >= 1, "the scheduler's loss of the worker was not noticed"
    assert_index_matches_files(tmp_path / "out", expected)


def test_the_summarys_workers_are_the_most_that_could_take_chunks(dask_installed: None) -> None:
    # A user audit: after a worker was lost near the end, the summary said `dask x1` of a batch made mostly on two.
    from zerosite.dask_strategy.runner import DaskRunner, _Batch

    answers = iter([3, 2])

    class Scheduler:
        status = "running"

        def scheduler_info(self, n_workers: int) -> dict[str, Any]:
            count = next(answers)
            return {"workers": {f"tcp://w{i}": {"nthreads": 1, "resources": {"r": 1}} for i in range(count)}}

    runner = object.__new__(DaskRunner)  # its cluster is a stand-in: only its count of workers is asked
    runner.client = Scheduler()  # type: ignore[assignment]
    runner._batch, runner._heard, runner._silent = _Batch(), {}, set()
    assert runner._threads_now({"r": 1}) == 3
    runner._batch.threads = (0.0, 3)  # time to ask again
    assert runner._threads_now({"r": 1}) == 2
    assert runner.workers == 3


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
    assert not (tmp_path / "out").exists()  # not even an empty folder and index


def assert_folder_matches_index(out: Path) -> None:
    """Every report file in ``out`` is indexed as written (none left that the index does not have), no failed row."""
    with sqlite3.connect(out / "index.sqlite") as conn:
        rows = conn.execute("SELECT path, status FROM reports").fetchall()
        failed = conn.execute("SELECT project_id, module, error FROM reports WHERE status != 'written'").fetchall()
    assert not failed, failed  # with why, should it ever happen again
    indexed = {str((out / path).resolve()) for path, _ in rows}
    on_disk = {str(p.resolve()) for p in out.rglob("*.html")}
    assert on_disk == indexed, f"{len(on_disk - indexed)} files not indexed"
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp") or p.name.startswith(".zerosite-probe")]


def test_a_worker_that_sees_the_folder_read_only_is_not_fit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Dask audit: a worker with --out mounted read-only was fit (it saw the probe), took chunks and failed every report
    of them, 615 of 1,000, faster than the fit worker made its own."""
    from zerosite.dask_strategy.tasks import sees_folder

    (tmp_path / "probe.tmp").touch()
    assert sees_folder(tmp_path, "probe.tmp")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["probe.tmp"]  # its trial file gone
    real_open = os.open

    def read_only(path: Any, flags: int, *args: Any) -> int:
        if flags & os.O_CREAT:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", read_only)
    assert not sees_folder(tmp_path, "probe.tmp")
    assert not sees_folder(tmp_path, "no-probe.tmp")


# A worker that joins mid-batch unfit, simulated by a preload module: one that sees another, empty folder where the
# parent's --out is (as a machine that does not mount it), one whose zerosite
# lacks M6 (its warm-up fails).
UNFIT_PRELOADS = {
    "blind": """
        import os
        from pathlib import Path
        import zerosite.dask_strategy.tasks as tasks
        import zerosite.files
        OUT, SHADOW = Path(os.environ["TEST_OUT"]), Path(os.environ["TEST_SHADOW"])
        def view(path):
            path = Path(path)
            return SHADOW / path.relative_to(OUT) if path.is_relative_to(OUT) else path
        real_init = zerosite.files.ReportFiles.__init__
        def init(self, out_dir, *args, **kwargs):
            real_init(self, view(out_dir), *args, **kwargs)
        zerosite.files.ReportFiles.__init__ = init
        tasks.sees_folder = lambda folder, probe: os.path.isfile(view(folder) / probe)
    """,
    "unwarmable": """
        import zerosite.plugins
        zerosite.plugins.BUILTIN_PLUGINS = tuple(p for p in zerosite.plugins.BUILTIN_PLUGINS if "m6" not in p)
        zerosite.plugins._load_plugins_dir = lambda pm, folder: None  # nor from the plugins folder
    """,
}


@pytest.mark.parametrize("unfit", sorted(UNFIT_PRELOADS))
def test_a_worker_joining_unfit_mid_batch_gets_no_chunk(
    cluster: Cluster, batch: list[Project], expected: dict[str, bytes], tmp_path: Path, unfit: str
) -> None:
    from zerosite.dask_strategy.runner import UnfitWorkerWarning

    out, shadow = tmp_path / "out", tmp_path / "shadow"
    shadow.mkdir()
    preload = tmp_path / "preload.py"
    preload.write_text(textwrap.dedent(UNFIT_PRELOADS[unfit]))
    late: list[subprocess.Popen[bytes]] = []

    def join_late(outcome: ReportOutcome) -> None:
        if not late:  # the batch runs: a worker joins, and the batch goes on once it has
            env = {"TEST_OUT": str(out), "TEST_SHADOW": str(shadow)}
            late.append(cluster.add_worker("--no-nanny", "--preload", str(preload), env=env))
            wait_for_workers(cluster.address, 3)
            time.sleep(0.5)  # its plugins set up

    options = BatchOptions(out=out, strategy="dask", scheduler=cluster.address, chunksize=1)
    try:
        # one `warning:` line on the command line (a PluginWarning), not Python's with ZeroSite's source line
        with pytest.warns(
            UnfitWorkerWarning, match="Dask worker tcp://.* (does not see the output|could not be warmed)"
        ):
            summary = generate(batch, options, on_report=join_late)
    finally:
        for worker in late:
            stop(worker)
            cluster.processes.remove(worker)
        wait_for_workers(cluster.address, 2)
    assert (summary.written, summary.failed) == (REPORTS, 0), summary.failures[:1]
    assert_index_matches_files(out, expected)
    assert not list(shadow.rglob("*.html")), "a report was written where the parent cannot see it"


@pytest.fixture
def doomed_cluster(dask_installed: None) -> Iterator[Cluster]:
    """A scheduler and one worker without a nanny (none restarts it), for a test that kills one of them."""
    if not DASK_BIN.exists():
        pytest.skip(f"no `dask` command at {DASK_BIN}")
    running = start_cluster(1, "--no-nanny")
    try:
        yield running
    finally:
        running.stop()


def generate_in_time(batch: list[Project], options: BatchOptions, on_report: Any, limit_s: float) -> BaseException:
    """What ``generate`` raised, within ``limit_s`` (a hang fails the test instead of holding it)."""
    raised: list[BaseException] = []

    def batch_run() -> None:
        try:
            generate(batch, options, on_report=on_report)
        except BaseException as error:
            raised.append(error)

    thread = threading.Thread(target=batch_run, daemon=True)
    thread.start()
    thread.join(limit_s)
    assert not thread.is_alive(), f"the batch still ran {limit_s} s on"
    assert raised, "the batch ended as if nothing happened"
    return raised[0]


@pytest.mark.parametrize("victim", ["worker", "scheduler"])
def test_a_cluster_lost_mid_batch_stops_it_naming_the_scheduler(
    doomed_cluster: Cluster, batch: list[Project], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, victim: str
) -> None:
    from zerosite.dask_strategy import runner

    monkeypatch.setattr(runner, "WORKERS_TIMEOUT_S", 1.0)
    scheduler, worker = doomed_cluster.processes
    killed = []

    def kill(outcome: ReportOutcome) -> None:
        if not killed:
            killed.append(outcome)
            os.killpg((worker if victim == "worker" else scheduler).pid, signal.SIGKILL)

    options = BatchOptions(out=tmp_path / "out", strategy="dask", scheduler=doomed_cluster.address, chunksize=1)
    error = generate_in_time(batch, options, kill, limit_s=30)  # before: for ever
    assert isinstance(error, WorkersLost), repr(error)  # not a usage error: the command exits 1
    assert doomed_cluster.address in str(error)
    assert_folder_matches_index(tmp_path / "out")  # the projects in flight discarded, none indexed as failed


SLOW_PLUGIN = '''
    """M9, a slow module: for the test of a batch stopped while its chunks run."""
    import time
    from pathlib import Path
    from zerosite import ReportModule, hookimpl

    def compute(project, deps):
        time.sleep(0.3)
        return {"id": project.id}

    @hookimpl
    def zerosite_register_modules(register):
        register(ReportModule(name="M9", title="Slow", compute=compute, template="m9.html.j2", requires=("M2",)))

    @hookimpl
    def zerosite_template_dirs():
        return [Path(__file__).parent / "templates"]
'''


def test_a_batch_stopped_leaves_no_file_unindexed_on_external_workers(
    cluster: Cluster, batch: list[Project], tmp_path: Path, fresh_plugins: None
) -> None:
    plugins = tmp_path / "plugins"
    (plugins / "templates").mkdir(parents=True)
    (plugins / "m9_slow.py").write_text(textwrap.dedent(SLOW_PLUGIN))
    (plugins / "templates" / "m9.html.j2").write_text('{% extends "default:base.html.j2" %}')
    out = tmp_path / "out"
    options = BatchOptions(
        out=out,
        strategy="dask",
        scheduler=cluster.address,
        chunksize=3,
        modules=("M9",),
        plugins=PluginSettings(plugins_dir=plugins),
    )

    def interrupt(outcome: ReportOutcome) -> None:
        if outcome.module == "M9":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        generate(batch, options, on_report=interrupt)
    assert_folder_matches_index(out)
    time.sleep(1.5)  # longer than the chunks that ran when the batch stopped
    assert_folder_matches_index(out)


@pytest.mark.parametrize(
    "address",
    ["tcp://127.0.0.1:{garbage}", "foo://bar", "tls://127.0.0.1:{garbage}"],
    ids=["not-dask", "unknown-scheme", "tls-unconfigured"],
)
def test_a_bad_address_is_one_clear_error_at_once(dask_installed: None, tmp_path: Path, address: str) -> None:
    with socket.socket() as talker:  # a port that answers, but not as Dask does
        talker.bind(("127.0.0.1", 0))
        talker.listen()
        stop_talking = threading.Event()

        def answer() -> None:
            talker.settimeout(0.2)
            while not stop_talking.is_set():
                with contextlib.suppress(OSError):
                    conn, _ = talker.accept()
                    conn.sendall(b"SSH-2.0-OpenSSH_9.0\r\n" + b"x" * 100)

        thread = threading.Thread(target=answer, daemon=True)
        thread.start()
        address = address.format(garbage=talker.getsockname()[1])
        started = time.monotonic()
        try:
            done = zerosite_cli("--sample", "2", "--strategy", "dask", "--scheduler", address, out=tmp_path / "out")
        finally:
            stop_talking.set()
    assert done.returncode == 2
    assert done.stderr.startswith(f"error: cannot reach the Dask scheduler at {address}: "), done.stderr
    assert len(done.stderr.splitlines()) == 1, done.stderr  # no traceback, no MemoryError
    assert "MemoryError" not in done.stderr
    assert time.monotonic() - started < 8  # the interpreter's start-up and imports included; was 10.7 s


def test_ctrl_c_while_the_local_cluster_starts_is_one_line(dask_installed: None, tmp_path: Path) -> None:
    command = [sys.executable, "-m", "zerosite", "generate", "--out", str(tmp_path / "out"), "-q"]
    command += ["--sample", "1000", "--strategy", "dask", "--workers", "2"]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 60
    while not psutil.Process(process.pid).children():  # the cluster starting: its first worker process spawned
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    # To the parent alone: a worker process that a terminal's Ctrl-C finds mid-import prints its own traceback
    # (docs/scaling.md); the parent's part is what this checks, at a moment that does not depend on the machine.
    os.kill(process.pid, signal.SIGINT)
    _, stderr = communicate(process, timeout=60)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr and "Exception ignored" not in stderr, stderr


def test_workers_lost_outside_a_batch_are_not_its_restarts(
    cluster: Cluster, batch: list[Project], tmp_path: Path
) -> None:
    options = BatchOptions(out=tmp_path / "out", strategy="dask", scheduler=cluster.address)
    runner = start_runner(options)
    try:
        passer_by = cluster.add_worker()
        wait_for_workers(cluster.address, 3)
        os.killpg(passer_by.pid, signal.SIGKILL)  # lost before the batch: it took none of its chunks
        passer_by.wait()
        cluster.processes.remove(passer_by)
        time.sleep(0.5)
        summary = generate(batch[:4], options, runner=runner)
    finally:
        runner.close()
    assert (summary.written, summary.restarts) == (20, 0)


@pytest.fixture
def lone_nanny_cluster(dask_installed: None) -> Iterator[Cluster]:
    """A scheduler and one worker with its nanny (which restarts its worker process when it dies)."""
    yield from running_cluster(1)


def worker_process(nanny: subprocess.Popen[bytes]) -> psutil.Process:
    """The worker process that a `dask worker`'s nanny started (not multiprocessing's resource tracker)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for child in psutil.Process(nanny.pid).children():
            with contextlib.suppress(psutil.Error):
                if "spawn_main" in " ".join(child.cmdline()):
                    return child
        time.sleep(0.05)
    raise AssertionError("the nanny started no worker process")


def test_what_a_worker_process_was_making_outlives_it_and_is_said_once(dask_installed: None, tmp_path: Path) -> None:
    path = tmp_path / "zerosite-making-test"
    script = textwrap.dedent(
        f"""
        import os, threading
        from pathlib import Path
        from zerosite.dask_strategy.tasks import MakingNote

        note = MakingNote(Path({str(path)!r}), "tcp://127.0.0.1:1")
        note.making("zerosite-chunk-b-1", 0)
        note.done()
        note.making("zerosite-chunk-b-2", 3)  # this thread's record, then another thread's
        other = threading.Thread(target=note.making, args=("zerosite-chunk-b-3", 17))
        other.start()
        other.join()
        os._exit(9)  # as a module that ends its process
        """
    )
    assert subprocess.run([sys.executable, "-c", script], check=False).returncode == 9
    from zerosite.dask_strategy.tasks import MakingNote

    following = MakingNote(path, "tcp://127.0.0.1:2")
    assert following.left() == [
        ("tcp://127.0.0.1:1", "zerosite-chunk-b-2", 3),
        ("tcp://127.0.0.1:1", "zerosite-chunk-b-3", 17),
    ]
    assert following.left() == []  # said once
    following.making("zerosite-chunk-c-1", 0)
    following.done()
    assert MakingNote(path, "tcp://127.0.0.1:3").left() == []  # ended between chunks: nothing to say
    following.remove()
    assert not path.exists()


# A module that ends its worker process at project 3, after M2 was written.
KILLS_AT_P0003 = """
    def kills(project, deps):
        if project.id.startswith("p0003"):
            os._exit(3)
        return project.id

    @hookimpl
    def zerosite_register_modules(register):
        register(ReportModule(name="KILL", title="종료", compute=kills, template="hostile.html.j2", requires=("M2",)))
"""


@pytest.mark.parametrize("where", ["local x1", "local x2", "external x2"])
def test_a_project_that_kills_its_worker_fails_alone_named(
    dask_installed: None, where: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    # A user audit: on fewer than four workers Dask never gives up on such a project's task (a chunk that kills both
    # of two workers is parked, sent again under a new key, its count of deaths begun anew), and the batch stopped
    # after 20 to 70 s, every rerun the same. The nanny's next worker process names the project its last one made.
    settings = hostile_plugin(tmp_path / "plugins", KILLS_AT_P0003)
    out = tmp_path / "out"
    options = BatchOptions(out=out, plugins=settings, strategy="dask", chunksize=4, modules=("M2", "KILL"))
    if where == "external x2":
        options = replace(options, scheduler=request.getfixturevalue("cluster").address)
    else:
        options = replace(options, workers=int(where[-1]))
    summary = generate(projects(12), options)
    assert (summary.written, summary.failed) == (11 * 2, 2)
    failed = failures(summary)
    assert set(failed) == {("p0003-jamsil", "M2"), ("p0003-jamsil", "KILL")}
    said = re.fullmatch(
        r"worker died while making project p0003-jamsil: it ended (\d+) Dask worker processes "
        r"\(the last tcp://127\.0\.0\.1:\d+\), each restarted by its nanny",
        failed["p0003-jamsil", "KILL"],
    )
    assert said and int(said[1]) >= 2, failed  # more where deaths were said together
    assert summary.restarts >= 2
    assert not (out / "p0003-jamsil").exists()  # nor the M2 report its worker wrote before it died
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]


def test_a_worker_lost_while_the_workers_warm_up_is_a_lost_worker(
    dask_installed: None, batch: list[Project], tmp_path: Path
) -> None:
    # A user audit: the scheduler's broadcast of the warm-up plugin failed with the worker, the scheduler dropped the
    # client's connection with it, and the batch refused to start (exit 2, a comm error naming the scheduler).
    if not DASK_BIN.exists():
        pytest.skip(f"no `dask` command at {DASK_BIN}")
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "slow_import.py").write_text(
        "import os, time\nif os.environ.get('ZEROSITE_TEST_SLOW_IMPORT'):\n    time.sleep(3)\n", encoding="utf-8"
    )
    running = start_cluster(0)
    try:
        nannies = [running.add_worker(env={"ZEROSITE_TEST_SLOW_IMPORT": "1"}) for _ in range(2)]
        wait_for_workers(running.address, 2)
        victim = worker_process(nannies[0])
        killer = threading.Timer(1.5, victim.kill)  # while it imports the plugins folder's files
        options = BatchOptions(
            out=tmp_path / "out",
            plugins=PluginSettings(plugins_dir=plugins),
            strategy="dask",
            scheduler=running.address,
        )
        killer.start()
        try:
            summary = generate(batch, options)
        finally:
            killer.cancel()
    finally:
        running.stop()
    assert not victim.is_running()
    assert (summary.written, summary.failed) == (REPORTS, 0)


def test_a_frozen_worker_holding_a_chunk_is_dropped_and_its_chunks_run_elsewhere(
    dask_installed: None,
    batch: list[Project],
    expected: dict[str, bytes],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A user audit: a worker stopped (SIGSTOP: a hung machine, a network cut off) kept its chunk, the scheduler kept
    # it as a worker, and the batch waited silently for more than 7 minutes.
    from zerosite.dask_strategy import runner as dask_runner

    monkeypatch.setattr(dask_runner, "SILENT_S", 3.0)
    if not DASK_BIN.exists():
        pytest.skip(f"no `dask` command at {DASK_BIN}")
    running = start_cluster(2)
    frozen: list[psutil.Process] = []

    def freeze(outcome: ReportOutcome) -> None:
        if not frozen:
            frozen.append(worker_process(running.processes[1]))
            frozen[0].suspend()

    options = BatchOptions(out=tmp_path / "out", strategy="dask", scheduler=running.address, chunksize=2)
    summaries: list[BatchSummary] = []
    said: list[warnings.WarningMessage] = []

    def run() -> None:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            summaries.append(generate(batch, options, on_report=freeze))
        said.extend(caught)

    thread = threading.Thread(target=run, daemon=True)
    try:
        thread.start()
        thread.join(60)
        assert not thread.is_alive(), "the batch still waited 60 s on"
    finally:
        for process in frozen:
            process.resume()
        running.stop()
    (summary,) = summaries
    assert (summary.written, summary.failed) == (REPORTS, 0)
    assert_index_matches_files(tmp_path / "out", expected)
    assert [w for w in said if re.search(r"has not been heard from for 3 s .* run elsewhere", str(w.message))], said


@pytest.mark.parametrize("chunksize", [1, 4], ids=["alone", "in-a-chunk"])
def test_a_batch_whose_only_worker_its_nanny_restarts_finishes(
    lone_nanny_cluster: Cluster, batch: list[Project], expected: dict[str, bytes], tmp_path: Path, chunksize: int
) -> None:
    # Killed as the OOM killer would, the worker process is restarted by its nanny: for a moment no worker holds
    # the batch's resources, Dask parks the chunks in flight ("no-worker") and never looks at them again once the
    # restarted worker has the resources (dask/distributed#6677). Before: the batch waited for ever, silently.
    # In a chunk, the project its worker was making (the nanny's next process names it) is made again alone: a
    # worker killed from outside costs it nothing more.
    _, nanny = lone_nanny_cluster.processes
    killed: list[int] = []

    def kill(outcome: ReportOutcome) -> None:
        if not killed:
            victim = worker_process(nanny)
            killed.append(victim.pid)
            victim.kill()
            victim.wait(10)

    options = BatchOptions(
        out=tmp_path / "out", strategy="dask", scheduler=lone_nanny_cluster.address, chunksize=chunksize
    )
    summaries: list[BatchSummary] = []
    thread = threading.Thread(target=lambda: summaries.append(generate(batch, options, on_report=kill)), daemon=True)
    thread.start()
    thread.join(60)
    assert not thread.is_alive(), "the batch still waited 60 s on"
    (summary,) = summaries
    assert killed
    assert (summary.written, summary.failed) == (REPORTS, 0)
    assert_index_matches_files(tmp_path / "out", expected)


EDITED_PLUGIN = '''
    """M7, a plugin module that the test edits between two batches."""
    from pathlib import Path
    from zerosite import ReportModule, hookimpl

    def compute(project, deps):
        return {"made_by": "CODE-ONE"}

    @hookimpl
    def zerosite_register_modules(register):
        register(ReportModule(name="M7", title="Edited", compute=compute, template="m7.html.j2", version="1"))

    @hookimpl
    def zerosite_template_dirs():
        return [Path(__file__).parent / "templates"]
'''


def test_long_lived_workers_make_reports_with_the_plugins_as_edited(cluster: Cluster, tmp_path: Path) -> None:
    # A `dask worker` keeps what it loaded for a --plugins-dir: before, after the plugin and its template were
    # edited (version bumped) the workers still made the old reports, indexed under the new content hash.
    plugins, out = tmp_path / "plugins", tmp_path / "out"
    (plugins / "templates").mkdir(parents=True)
    code, template = plugins / "m7_edited.py", plugins / "templates" / "m7.html.j2"
    code.write_text(textwrap.dedent(EDITED_PLUGIN))
    template.write_text(
        '{% extends "default:base.html.j2" %}{% block analysis %}TEMPLATE-ONE {{ result.made_by }}{% endblock %}'
    )
    args = ["--sample", "4", "--module", "M7", "--strategy", "dask", "--scheduler", cluster.address]
    env = {"ZEROSITE_PLUGINS_DIR": str(plugins)}
    for edit in ("ONE", "TWO", "THREE"):
        if edit == "TWO":  # code and template, version bumped
            code.write_text(textwrap.dedent(EDITED_PLUGIN).replace("CODE-ONE", "CODE-TWO").replace('"1"', '"2"'))
            template.write_text(template.read_text().replace("TEMPLATE-ONE", "TEMPLATE-TWO"))
        elif edit == "THREE":  # the template alone: its fingerprint is in the content hash
            template.write_text(template.read_text().replace("TEMPLATE-TWO", "TEMPLATE-THREE"))
        done = zerosite_cli(*args, "--json", out=out, env=env)
        assert done.returncode == 0, done.stderr
        assert '"written": 4' in done.stdout, done.stdout
        made = [path.read_text() for path in sorted(out.rglob("M7.html"))]
        assert len(made) == 4
        want = f"TEMPLATE-{edit} CODE-{'ONE' if edit == 'ONE' else 'TWO'}"
        assert all(want in html for html in made), f"after edit {edit}: stale reports ({made[0][-300:]})"


def test_a_worker_that_cannot_load_the_parents_code_refuses_the_batch(
    dask_installed: None, fresh_plugins: None
) -> None:
    from types import SimpleNamespace

    from zerosite.dask_strategy.tasks import LoadedCode, UnfitWorker, WarmWorker

    config = plan_batch(BatchOptions(out=Path("unused"), strategy="dask")).config
    loaded = LoadedCode.now(config)
    newer = replace(loaded, versions=tuple((name, f"{version}-new") for name, version in loaded.versions))
    warm = WarmWorker(config, "zerosite-test", expected=newer)  # the parent runs a newer zerosite
    with pytest.raises(UnfitWorker, match=r"module M2 version 1 here, version 1-new in zerosite's.*restart it"):
        warm.fit(SimpleNamespace(address="tcp://127.0.0.1:1"))  # type: ignore[arg-type]
    assert warm.worker is None
    WarmWorker(config, "zerosite-test", expected=loaded).fit(SimpleNamespace(nanny=None))  # type: ignore[arg-type]


def test_dasks_own_log_records_stay_quiet_while_zerosite_drives_it(cluster: Cluster, tmp_path: Path) -> None:
    # Before, a batch that succeeded after a worker was lost printed Dask's "distributed.scheduler - ERROR -
    # Couldn't gather keys" / "distributed.client - WARNING - ..." lines, and a stop its tracebacks.
    import logging

    names = ("distributed.scheduler", "distributed.client", "distributed.worker", "distributed.batched")
    before = {name: logging.getLogger(name).level for name in names}
    runner = start_runner(BatchOptions(out=tmp_path / "out", strategy="dask", scheduler=cluster.address))
    try:
        loud = [name for name in names if logging.getLogger(name).isEnabledFor(logging.ERROR)]
        assert not loud, f"Dask's loggers {loud} reach the user's terminal"
    finally:
        runner.close()
    assert {name: logging.getLogger(name).level for name in names} == before
