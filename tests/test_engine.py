"""The run engine: same bytes under every strategy, failures contained, nothing lost, resumable, flat memory."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Collection, Iterator
from pathlib import Path

import psutil
import pytest
from helpers import communicate, files_of, projects

from zerosite.engine import BatchOptions, ReportOutcome, generate
from zerosite.plugins import PluginSettings
from zerosite.project import Project, parse_project
from zerosite.sample import iter_sample_projects, sample_projects
from zerosite.store import ReportStore, StoreError, search_reports
from zerosite.testing import ProjectServer
from zerosite.worker import input_hashes

BUILTIN_STRATEGIES = ["sequential", "thread", "process", "async"]


def index_rows(db: Path) -> list[tuple[str, str, str]]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT project_id, module, status FROM reports ORDER BY project_id, module").fetchall()


def workers_left(before: Collection[int] = ()) -> list[psutil.Process]:
    """This process's children, but for multiprocessing's fork server and resource tracker (started
    once, for the pools rebuilt after a worker died, and ending with this process) and the ``before`` pids."""
    helpers = ("multiprocessing.forkserver", "multiprocessing.resource_tracker")
    me = psutil.Process()
    left = []
    for child in me.children(recursive=True):
        if child.pid in before:
            continue
        with contextlib.suppress(psutil.Error):  # the fork server's workers have its command line: not skipped
            if child.ppid() != me.pid or not any(helper in " ".join(child.cmdline()) for helper in helpers):
                left.append(child)
    return left


def local_plugin(
    folder: Path, source: str, template: str = "<p>{{ module.name }} {{ result }}</p>\n"
) -> PluginSettings:
    """A plugins folder holding one plugin file and its template folder."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "extra.py").write_text(textwrap.dedent(source), encoding="utf-8")
    (folder / "templates").mkdir(exist_ok=True)
    (folder / "templates" / "extra.html.j2").write_text(template, encoding="utf-8")
    return PluginSettings(plugins_dir=folder).resolved()


PLUGIN_HEAD = """
    import os
    import signal
    from pathlib import Path

    from zerosite import ReportModule, hookimpl

    HERE = Path(__file__).parent


    @hookimpl
    def zerosite_template_dirs():
        return [HERE / "templates"]
"""


@pytest.mark.parametrize("strategy", BUILTIN_STRATEGIES[1:])
def test_every_strategy_writes_the_same_bytes(tmp_path: Path, strategy: str) -> None:
    batch = projects(6)
    baseline = generate(batch, BatchOptions(out=tmp_path / "sequential"))
    other = generate(batch, BatchOptions(out=tmp_path / strategy, strategy=strategy, workers=2))
    assert (baseline.written, other.written, other.failed) == (30, 30, 0)
    assert files_of(tmp_path / strategy) == files_of(tmp_path / "sequential")


def test_a_rerun_with_nothing_to_make_starts_no_worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A user audit: a rerun under a local Dask cluster took 3 s to make nothing (process x2: 0.07 s).
    from zerosite import engine

    started: list[str] = []
    start = engine.start_runner
    monkeypatch.setattr(engine, "start_runner", lambda *args: started.append("runner") or start(*args))
    options = BatchOptions(out=tmp_path / "out", strategy="process", workers=2)
    assert generate(projects(3), options).written == 15
    assert started == ["runner"]
    again = generate(projects(3), options)
    assert (again.skipped, again.workers, again.restarts) == (15, 2, 0)
    assert started == ["runner"]  # none for the rerun
    assert generate(projects(4), options).written == 5  # one project more: started for it
    assert started == ["runner", "runner"]


def test_a_failing_module_fails_its_dependents_only(tmp_path: Path) -> None:
    settings = local_plugin(
        tmp_path / "plugins",
        PLUGIN_HEAD
        + """
    def boom(project, deps):
        if project.id == "p0002-gongdeok":
            raise ValueError("no road access")
        return deps["M3"].selected_label

    @hookimpl
    def zerosite_register_modules(register):
        register(ReportModule(name="BOOM", title="검토", compute=boom, template="extra.html.j2", requires=("M3",)))
        register(ReportModule(name="AFTER", title="후속", compute=lambda p, d: d["BOOM"], template="extra.html.j2",
                              requires=("BOOM",)))
    """,
    )
    seen: list[ReportOutcome] = []
    summary = generate(
        projects(3),
        BatchOptions(out=tmp_path / "out", plugins=settings, strategy="process", workers=2),
        on_report=seen.append,
    )
    failed = {(o.project_id, o.module): o.error for o in seen if o.status == "failed"}
    assert set(failed) == {("p0002-gongdeok", "BOOM"), ("p0002-gongdeok", "AFTER")}
    assert (
        "BOOM compute failed for project 'p0002-gongdeok': ValueError: no road access"
        in failed["p0002-gongdeok", "BOOM"]
    )
    assert "requires BOOM, which failed" in failed["p0002-gongdeok", "AFTER"]
    assert (summary.written, summary.failed) == (3 * 7 - 2, 2)
    assert ("p0002-gongdeok", "BOOM", "failed") in index_rows(tmp_path / "out" / "index.sqlite")


def test_a_worker_killed_mid_batch_loses_nothing(tmp_path: Path) -> None:
    settings = local_plugin(
        tmp_path / "plugins",
        PLUGIN_HEAD
        + """
    def die_once(project, deps):
        marker = HERE / "killed"
        if project.id == "p0005-hangangno" and not marker.exists():
            marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)
        return project.id

    @hookimpl
    def zerosite_register_modules(register):
        register(ReportModule(name="KILL", title="중단", compute=die_once, template="extra.html.j2"))
    """,
    )
    options = BatchOptions(out=tmp_path / "out", plugins=settings, strategy="process", workers=2, chunksize=2)
    summary = generate(projects(12), options)
    assert (tmp_path / "plugins" / "killed").exists()
    assert summary.restarts >= 1
    assert (summary.written, summary.failed) == (12 * 6, 0)
    assert not list((tmp_path / "out").rglob("*.tmp"))
    assert len(index_rows(tmp_path / "out" / "index.sqlite")) == 12 * 6


@pytest.mark.parametrize("strategy", ["thread", "process"])
def test_the_batchs_tail_commits_the_index_before_the_end(tmp_path: Path, strategy: str) -> None:
    """Once the input is used up, the rows are committed as the results come rather than all at the end: when the
    last report is in, only its own project's rows wait to be committed (not the whole batch's, under the 1,000-row
    and one-second limits)."""
    db = tmp_path / "out" / "index.sqlite"
    committed: list[int] = []

    def count(outcome: ReportOutcome) -> None:
        with contextlib.closing(sqlite3.connect(db)) as conn:
            committed.append(conn.execute("SELECT count(*) FROM reports").fetchone()[0])

    options = BatchOptions(out=tmp_path / "out", strategy=strategy, workers=2, chunksize=2)
    assert generate(iter(projects(12)), options, on_report=count).written == 60
    assert committed[-1] >= 60 - 5
    assert len(index_rows(db)) == 60


def test_async_sends_the_projects_fetched_together_as_one_task(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under async, the projects fetched in the same turn of the event loop go to the pool as one task, no more than
    a worker's share of those in flight over two (one chunk running, one waiting); each gets its own reports."""
    import zerosite.strategies as strategies

    sizes: list[int] = []
    submit = strategies.ProcessPool.submit

    def noted(pool: strategies.ProcessPool, fn: object, *args: object) -> object:
        if fn is strategies.make_fetched_chunk:
            sizes.append(len(args[0]))  # type: ignore[arg-type]
        return submit(pool, fn, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(strategies.ProcessPool, "submit", noted)
    batch = projects(12)
    options = BatchOptions(out=tmp_path / "async", strategy="async", workers=2)  # 8 in flight: chunks of 2
    assert generate(batch, options).written == 60
    assert sum(sizes) == 12 and max(sizes) == 2 and len(sizes) < 12
    assert generate(batch, BatchOptions(out=tmp_path / "sequential")).written == 60
    assert files_of(tmp_path / "async") == files_of(tmp_path / "sequential")
    assert index_rows(tmp_path / "async" / "index.sqlite") == index_rows(tmp_path / "sequential" / "index.sqlite")


def test_resume_skips_unchanged_reports(tmp_path: Path) -> None:
    batch = projects(4)
    options = BatchOptions(out=tmp_path / "out")
    assert generate(batch, options).written == 20
    again = generate(batch, options)
    assert (again.written, again.skipped) == (0, 20)
    changed = [dataclasses.replace(batch[0], land_area_sqm=999.0)]
    partly = generate(changed + batch[1:], options)
    assert (partly.written, partly.skipped) == (5, 15)
    assert generate(batch, BatchOptions(out=tmp_path / "out", force=True)).written == 20


def test_each_outcome_carries_the_sha256_and_size_of_its_own_file(tmp_path: Path) -> None:
    """The service answers with it: the file may be replaced by the next batch before the answer is sent."""
    batch = projects(2)
    options = BatchOptions(out=tmp_path / "out")
    made: list[ReportOutcome] = []
    generate(batch, options, on_report=made.append)
    assert len(made) == 10
    for outcome in made:
        assert outcome.status == "written" and outcome.path is not None
        assert outcome.sha256 == hashlib.sha256(outcome.path.read_bytes()).hexdigest()
    skipped: list[ReportOutcome] = []
    generate(batch, options, on_report=skipped.append)
    assert {(o.project_id, o.module): (o.status, o.sha256, o.size_bytes) for o in skipped} == {
        (o.project_id, o.module): ("skipped", o.sha256, o.size_bytes) for o in made
    }


@pytest.mark.parametrize("strategy", ["sequential", "process"])
def test_an_index_that_takes_no_more_stops_the_batch_with_the_folder_matching_it(
    tmp_path: Path, strategy: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk under the index: its rows and files used to part (files on disk, never indexed)."""
    out = tmp_path / "out"
    options = BatchOptions(out=out, strategy=strategy, workers=2, chunksize=2)
    commits = 0
    begin = ReportStore._transaction

    @contextlib.contextmanager
    def filling_up(store: ReportStore, rows: int) -> Iterator[sqlite3.Connection]:
        nonlocal commits
        commits += 1
        if commits > 2:
            raise StoreError(f"cannot write {rows} rows to the index: database or disk is full")
        with begin(store, rows) as conn:
            yield conn

    monkeypatch.setattr(ReportStore, "_transaction", filling_up)
    with ReportStore(out, commit_every_rows=20) as store, pytest.raises(StoreError, match="make room and run"):
        generate(projects(30), options, store=store)
    monkeypatch.undo()
    indexed = {f"{project}/{module}" for project, module, _ in index_rows(out / "index.sqlite")}
    assert len(indexed) == 40  # two commits of 20 rows
    assert {str(p.relative_to(out).with_suffix("")) for p in out.glob("*/*.html")} == indexed
    assert not list(out.rglob("*.tmp"))
    assert {p.name for p in out.iterdir() if p.is_dir()} == {key.split("/")[0] for key in indexed}
    again = generate(projects(30), options)
    assert (again.skipped, again.written, again.failed) == (40, 110, 0)


def test_an_interrupted_batch_resumes(tmp_path: Path) -> None:
    options = BatchOptions(out=tmp_path / "out", strategy="process", workers=2, start_method="fork")
    before = {child.pid for child in psutil.Process().children(recursive=True)}  # other tests' leftovers
    made = 0

    def interrupt(outcome: ReportOutcome) -> None:
        nonlocal made
        made += 1
        if made == 12:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        generate(projects(10), options, on_report=interrupt)
    assert not workers_left(before), "worker processes were left running"
    rows = index_rows(tmp_path / "out" / "index.sqlite")
    written_files = {p for p in files_of(tmp_path / "out") if p.endswith(".html")}
    # the project in flight when Ctrl-C came is discarded whole: the index holds whole projects only
    assert len(rows) == 10 and len(written_files) == len(rows)
    resumed = generate(projects(10), options)
    assert resumed.skipped >= 10 and resumed.written + resumed.skipped == 50


@pytest.mark.parametrize("strategy", ["process", "async"])
def test_ctrl_c_on_the_command_line(tmp_path: Path, strategy: str) -> None:
    out = tmp_path / "out"
    command = [
        sys.executable,
        "-m",
        "zerosite",
        "generate",
        "--sample",
        "400",
        "--strategy",
        strategy,
        "--workers",
        "2",
        "--out",
        str(out),
        "--quiet",
    ]
    child = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(list(out.glob("*/*.html"))) < 50:
        time.sleep(0.05)
    os.killpg(child.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole process group
    _, stderr = communicate(child, timeout=30)
    assert child.returncode == 130, stderr
    assert "interrupted" in stderr and "resume" in stderr
    assert not [p for p in psutil.process_iter(["cmdline"]) if str(out) in " ".join(p.info["cmdline"] or [])]
    assert not list(out.rglob("*.tmp"))
    rows = index_rows(out / "index.sqlite")
    assert len(rows) == len(list(out.glob("*/*.html")))
    rerun = subprocess.run([*command, "--json"], capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    assert f'"skipped": {len(rows)}' in rerun.stdout


@pytest.mark.parametrize("strategy", ["sequential", "async"])
def test_http_source_fetches_each_project(tmp_path: Path, strategy: str) -> None:
    raw = sample_projects(6)
    served = {p["id"]: {**p, "official_price_per_sqm": p["official_price_per_sqm"] + 1000} for p in raw}
    with ProjectServer(served, latency_s=0.01) as server:
        summary = generate(
            [parse_project(p) for p in raw],
            BatchOptions(out=tmp_path / "out", strategy=strategy, workers=2, data_url=server.url),
        )
        assert server.requests == 6
    assert (summary.written, summary.failed) == (30, 0)
    assert summary.stage_ns.fetch_ns > 0


@pytest.mark.parametrize("strategy", ["sequential", "process", "async"])
def test_resume_hashes_the_input_not_what_the_source_filled_in(tmp_path: Path, strategy: str) -> None:
    raw = sample_projects(3)
    served = {p["id"]: {**p, "road_address": p["road_address"] + " 별관"} for p in raw}
    batch = [parse_project(p) for p in raw]
    with ProjectServer(served, latency_s=0) as server:
        options = BatchOptions(out=tmp_path / "out", strategy=strategy, workers=2, data_url=server.url)
        assert generate(batch, options).written == 15
        again = generate(batch, options)
    assert (again.written, again.skipped) == (0, 15)
    found = search_reports(tmp_path / "out" / "index.sqlite", "별관", module="M2")  # the address as fetched
    assert {row.project_id for row in found} == {p["id"] for p in raw}


def test_input_hashes_follow_every_value_and_nothing_else() -> None:
    """Equal projects hash alike, whichever of their strings are one object (JSON makes two, a literal in code may
    make one); a change to any field, a nested one too, or to a report's key changes the hash."""
    keys = (("M2", b"key-a"), ("M3", b"key-b"))
    project = projects(1)[0]
    one = "세종특별자치시"
    shared = dataclasses.replace(project, sido=one, sigungu=one)
    apart = dataclasses.replace(project, sido="".join(["세종", "특별자치시"]), sigungu="".join(["세종특별", "자치시"]))
    assert shared.sido is shared.sigungu and apart.sido is not apart.sigungu
    assert input_hashes(shared, keys) == input_hashes(apart, keys)
    hashes = input_hashes(project, keys)
    assert hashes["M2"] != hashes["M3"]
    (first, *rest) = project.transactions
    changed = [
        dataclasses.replace(project, land_area_sqm=project.land_area_sqm + 0.1),
        dataclasses.replace(project, corner_lot=not project.corner_lot),
        dataclasses.replace(project, transactions=(dataclasses.replace(first, price_krw=first.price_krw + 1), *rest)),
        dataclasses.replace(project, transactions=tuple(rest)),
        dataclasses.replace(project, demographics=dataclasses.replace(project.demographics, youth=0.125)),
    ]
    assert all(input_hashes(other, keys)["M2"] != hashes["M2"] for other in changed)
    assert input_hashes(project, (("M2", b"key-c"),))["M2"] != hashes["M2"]


@pytest.mark.parametrize("strategy", ["thread", "async"])
def test_a_failing_http_source_fails_its_projects_clearly(tmp_path: Path, strategy: str) -> None:
    with ProjectServer({}, latency_s=0, always_fail=503) as server:
        url = server.url
        summary = generate(projects(2), BatchOptions(out=tmp_path / "out", strategy=strategy, workers=2, data_url=url))
    assert (summary.written, summary.failed) == (0, 10)
    error = summary.failures[0].error or ""
    assert "fetch failed" in error and url in error and "503" in error


def test_memory_stays_flat_over_6000_projects(tmp_path: Path) -> None:
    settings = local_plugin(
        tmp_path / "plugins",
        PLUGIN_HEAD
        + """
    @hookimpl
    def zerosite_register_modules(register):
        register(ReportModule(name="TINY", title="요약", compute=lambda p, d: p.dong, template="extra.html.j2"))
    """,
    )
    process = psutil.Process()
    rss: dict[int, int] = {}

    counter = iter(range(1, 6_001))

    def sample_rss(outcome: ReportOutcome) -> None:
        seen = next(counter)
        if seen in (1_000, 6_000):
            rss[seen] = process.memory_info().rss

    def stream() -> Iterator[Project]:
        return (parse_project(raw) for raw in iter_sample_projects(6_000))

    summary = generate(
        stream(), BatchOptions(out=tmp_path / "out", plugins=settings, modules=("TINY",)), on_report=sample_rss
    )
    assert summary.written == 6_000
    growth_mb = (rss[6000] - rss[1000]) / 2**20
    assert growth_mb < 12, f"RSS grew {growth_mb:.1f} MB between report 1,000 and 6,000"  # < 2.5 KB a project


@pytest.mark.parametrize("strategy", ["sequential", "process", "thread"])
def test_a_report_past_its_time_limit_fails_alone(tmp_path: Path, strategy: str) -> None:
    settings = local_plugin(
        tmp_path / "plugins",
        PLUGIN_HEAD
        + """
    import time

    def slow(project, deps):
        if project.id == "p0002-gongdeok":
            time.sleep(2.5)
        return project.id

    @hookimpl
    def zerosite_register_modules(register):
        register(ReportModule(name="SLOW", title="지연", compute=slow, template="extra.html.j2"))
    """,
    )
    # A limit well above a normal report's time even on a busy machine (its first report compiles templates).
    options = BatchOptions(
        out=tmp_path / "out", plugins=settings, strategy=strategy, workers=2, timeout_s=0.8, modules=("SLOW", "M2")
    )
    summary = generate(projects(3), options)
    assert (summary.written, summary.failed) == (5, 1)
    (failure,) = summary.failures
    assert (failure.project_id, failure.module) == ("p0002-gongdeok", "SLOW")
    assert "timed out" in (failure.error or "")
    # The time it ran until its alarm gave it up, not none (service audit F13: "ms": 0.031 for a report given up
    # after 1 s). A thread abandoned (or a worker killed) ran in an attempt whose time no result carries.
    if strategy != "thread":
        assert failure.timings.compute_ns >= 0.75e9, failure.timings


@pytest.mark.parametrize("start_method", ["forkserver", "spawn"])
def test_every_start_method_writes_the_same_bytes(tmp_path: Path, start_method: str) -> None:
    batch = projects(3)
    generate(batch, BatchOptions(out=tmp_path / "fork", strategy="process", workers=2, start_method="fork"))
    options = BatchOptions(out=tmp_path / start_method, strategy="process", workers=2, start_method=start_method)
    assert generate(batch, options).written == 15
    assert files_of(tmp_path / start_method) == files_of(tmp_path / "fork")
