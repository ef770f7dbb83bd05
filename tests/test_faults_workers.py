"""Hostile plugins against the workers: sys.exit and other BaseExceptions, os._exit, unprintable errors,
reports that swallow their time limit, a pool rebuilt from a process running threads (issue 11)."""

from __future__ import annotations

import dataclasses
import gc
import logging
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import pytest
from helpers import communicate, failures, hostile_plugin, projects

from zerosite import strategies, types
from zerosite.engine import BatchOptions, IsolatedWarning, generate
from zerosite.files import LOCK_FILE, FolderLock, OutputBusy
from zerosite.store import ReportStore, StoreError

STRATEGIES = ["sequential", "thread", "process", "async"]

# --- 1. sys.exit() and other BaseExceptions in plugin code fail a report, never the batch ------------------

RAISER = """
    def hostile(project, deps):
        if project.id.startswith("p0002"):
            {action}
        return project.id

    @hookimpl
    def zerosite_register_modules(register):
        register(ReportModule(name="HOSTILE", title="적대", compute=hostile, template="hostile.html.j2"))
        register(ReportModule(name="AFTER", title="후속", compute=lambda p, d: d["HOSTILE"],
                              template="hostile.html.j2", requires=("HOSTILE",)))
"""


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize(
    ("action", "named"),
    [
        ("sys.exit(0)", "SystemExit: 0"),
        ("raise KeyboardInterrupt('pressed by the plugin')", "KeyboardInterrupt: pressed by the plugin"),
        ("raise BaseException('anything')", "BaseException: anything"),
    ],
    ids=["sys.exit", "KeyboardInterrupt", "BaseException"],
)
def test_a_base_exception_from_a_module_fails_its_report_only(
    tmp_path: Path, strategy: str, action: str, named: str
) -> None:
    settings = hostile_plugin(tmp_path / "plugins", RAISER.format(action=action))
    options = BatchOptions(
        out=tmp_path / "out", plugins=settings, strategy=strategy, workers=2, modules=("M2", "HOSTILE", "AFTER")
    )
    summary = generate(projects(4), options)
    assert (summary.written, summary.failed) == (4 * 3 - 2, 2)
    failed = failures(summary)
    assert set(failed) == {("p0002-gongdeok", "HOSTILE"), ("p0002-gongdeok", "AFTER")}
    assert failed["p0002-gongdeok", "HOSTILE"].startswith(
        f"HOSTILE compute failed for project 'p0002-gongdeok': {named} (at hostile.py:"
    )
    assert "requires HOSTILE, which failed" in failed["p0002-gongdeok", "AFTER"]


def test_sys_exit_in_a_module_exits_1_on_the_command_line(tmp_path: Path) -> None:
    hostile_plugin(tmp_path / "plugins", RAISER.format(action="sys.exit(0)"))
    out = tmp_path / "out"
    command = [sys.executable, "-m", "zerosite", "--plugins-dir", str(tmp_path / "plugins"), "generate"]
    command += ["--sample", "6", "--strategy", "process", "--workers", "2", "--out", str(out), "--quiet"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    assert "failed: p0002-gongdeok/HOSTILE: HOSTILE compute failed for project 'p0002-gongdeok': SystemExit: 0" in (
        done.stderr
    )
    assert len(list(out.glob("*/*.html"))) == 6 * 7 - 2


def test_a_real_ctrl_c_during_a_module_still_stops_the_batch(tmp_path: Path) -> None:
    """Plugin code's KeyboardInterrupt fails a report; the one a Ctrl-C raises stops the batch (exit 130)."""
    hostile_plugin(
        tmp_path / "plugins",
        """
        def slow(project, deps):
            time.sleep(0.2)
            return project.id

        @hookimpl
        def zerosite_register_modules(register):
            register(ReportModule(name="SLOW", title="지연", compute=slow, template="hostile.html.j2"))
        """,
    )
    out = tmp_path / "out"
    command = [sys.executable, "-m", "zerosite", "--plugins-dir", str(tmp_path / "plugins"), "generate"]
    command += ["--sample", "100", "--module", "SLOW", "--strategy", "sequential", "--out", str(out), "--quiet"]
    child = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(list(out.glob("*/*.html"))) < 3:
        time.sleep(0.05)
    child.send_signal(signal.SIGINT)  # lands inside SLOW's sleep, in plugin code
    _, stderr = communicate(child, timeout=30)
    assert child.returncode == 130, stderr
    assert "interrupted" in stderr


# --- 6. os._exit() in one project fails that project alone, named -------------------------------------


# A module that ends its process at project 3; each project it is asked to make is noted in HERE/made.
EXITS_AT_P0003 = """
    def exits(project, deps):
        with open(HERE / "made", "a") as made:
            made.write(project.id + "\\n")
        if project.id.startswith("p0003"):
            os._exit(3)
        return project.id

    @hookimpl
    def zerosite_register_modules(register):
        register(ReportModule(name="EXIT", title="종료", compute=exits, template="hostile.html.j2"))
"""


@pytest.mark.parametrize("strategy", ["process", "async"])
def test_a_project_that_kills_its_worker_fails_alone_named(tmp_path: Path, strategy: str) -> None:
    settings = hostile_plugin(tmp_path / "plugins", EXITS_AT_P0003)
    options = BatchOptions(
        out=tmp_path / "out", plugins=settings, strategy=strategy, workers=2, chunksize=4, modules=("M2", "EXIT")
    )
    summary = generate(projects(8), options)
    assert (summary.written, summary.failed) == (8 * 2 - 2, 2)
    failed = failures(summary)
    assert set(failed) == {("p0003-jamsil", "M2"), ("p0003-jamsil", "EXIT")}
    assert failed["p0003-jamsil", "EXIT"] == "worker died while making project p0003-jamsil: exit code 3"
    assert summary.restarts >= 2  # the pool it broke, and the one-worker pool that named it
    assert not list((tmp_path / "out").rglob("*.tmp"))


@pytest.mark.parametrize("strategy", ["process", "async"])
def test_the_reports_a_dead_worker_wrote_go_with_its_project(tmp_path: Path, strategy: str) -> None:
    """The project is failed, every report of it: the files its worker wrote before it died used to stay,
    beside index rows that say failed."""
    settings = hostile_plugin(
        tmp_path / "plugins",
        """
        def kills(project, deps):  # after M3: M2 and M3 are written by then
            if project.id.startswith("p0003"):
                os.kill(os.getpid(), 9)
            return project.id

        @hookimpl
        def zerosite_register_modules(register):
            register(
                ReportModule(name="KILL", title="중단", compute=kills, template="hostile.html.j2", requires=("M3",))
            )
        """,
    )
    out = tmp_path / "out"
    options = BatchOptions(out=out, plugins=settings, strategy=strategy, workers=2, modules=("M2", "M3", "KILL"))
    summary = generate(projects(6), options)
    assert (summary.written, summary.failed) == (5 * 3, 3)
    assert {p.parent.name for p in out.glob("*/*.html")} == {p.id for p in projects(6)} - {"p0003-jamsil"}
    assert not (out / "p0003-jamsil").exists()  # nor its folder, empty


def test_a_report_that_fails_now_leaves_no_file_from_an_earlier_run(tmp_path: Path) -> None:
    settings = hostile_plugin(
        tmp_path / "plugins",
        """
        def picky(project, deps):
            if project.land_area_sqm > 5000:
                raise ValueError("too large a site")
            return project.id

        @hookimpl
        def zerosite_register_modules(register):
            register(ReportModule(name="PICKY", title="선별", compute=picky, template="hostile.html.j2"))
        """,
    )
    out = tmp_path / "out"
    options = BatchOptions(out=out, plugins=settings, strategy="sequential", modules=("PICKY",))
    batch = projects(2)
    assert generate(batch, options).written == 2
    changed = dataclasses.replace(batch[0], land_area_sqm=9999.0)
    assert generate([changed, batch[1]], options).failed == 1
    assert [p.parent.name for p in out.glob("*/*.html")] == [batch[1].id]  # not the report of the old input


# --- 6b. a project that ends this process (sequential, thread, auto's first projects): made apart afterwards ---

EXIT_UNLESS_FIXED = """
    def exits(project, deps):
        if project.id.startswith("p0003") and not os.environ.get("FIXED") and not (HERE / "fixed").exists():
            os._exit(3)
        return f"{project.id} {os.getpid()}"

    @hookimpl
    def zerosite_register_modules(register):
        register(ReportModule(name="EXIT", title="종료", compute=exits, template="hostile.html.j2"))
"""


@pytest.mark.parametrize("strategy", ["sequential", "thread", "auto"])
def test_a_project_that_ended_the_run_is_made_apart_from_then_on(tmp_path: Path, strategy: str) -> None:
    """In this process nothing survives ``os._exit()``: that run ends, as before. It used to end every rerun at the
    same project too; now the next run makes that project in a worker process of its own, where it fails alone,
    named, and the rest is written, until a run makes it without dying."""
    hostile_plugin(tmp_path / "plugins", EXIT_UNLESS_FIXED)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "zerosite", "--plugins-dir", str(tmp_path / "plugins"), "generate", "--sample"]
    command += ["6", "--strategy", strategy, "--workers", "2", "--out", str(out)]

    def run(*options: str, modules: tuple[str, ...] = ("M2", "EXIT"), **env: str) -> subprocess.CompletedProcess[str]:
        selected = [word for module in modules for word in ("--module", module)]
        return subprocess.run(
            [*command, *selected, *options], capture_output=True, text=True, timeout=120, env={**os.environ, **env}
        )

    ended = run()
    assert ended.returncode == 3, ended.stderr  # the module's own exit: this process could not outlive it
    making, modules = (line.split() for line in (out / LOCK_FILE).read_text().split("\n")[1:3])
    assert making[0] == "making" and "p0003-jamsil" in making  # what it was making, left for the next run
    assert len(making) <= 3  # no more than the threads making a project then (not all in flight; audit F1, F5)
    assert modules[0] == "modules" and sorted(modules[1:]) == ["EXIT", "M2"]

    warned = (
        f"warning: zerosite: project p0003-jamsil ended a run into {out} that made it in its own process with EXIT, M2 "
        "(os._exit(), a fatal signal or a crash in a module?), and no run has made it since without dying: it is made "
        "last, in a worker process of its own"
    )
    for _ in range(2):  # until it is made without dying, however many runs that takes
        apart = run()
        assert apart.returncode == 1, apart.stderr
        assert warned in apart.stderr
        assert "failed: p0003-jamsil/EXIT: worker died while making project p0003-jamsil: exit code 3" in apart.stderr
        # under thread, with the project that ran beside it when the process died (made apart once, then cleared)
        assert re.search(r", [12] projects? apart in a worker process\); ", apart.stdout), apart.stdout
        assert {p.parent.name for p in out.glob("*/EXIT.html")} == {p.id for p in projects(6)} - {"p0003-jamsil"}
        assert not (out / LOCK_FILE).exists()

    m2_only = run("--force", modules=("M2",))  # made apart, which proves nothing of EXIT
    assert m2_only.returncode == 0 and warned in m2_only.stderr, m2_only.stderr
    assert warned in run().stderr  # still apart (audit F2: a run without the module that killed it cleared it)

    fixed = run(FIXED="1")
    assert fixed.returncode == 0, fixed.stderr
    assert warned in fixed.stderr
    assert (out / "p0003-jamsil" / "EXIT.html").exists()
    again = run()
    assert again.returncode == 0, again.stderr
    assert "warning" not in again.stderr


READS_THE_NOTE = """
    def note(project, deps):  # what the lock file notes while this project is made ("" when nothing)
        time.sleep({wait_s})
        out = Path((HERE / "out").read_text())
        return (out / ".zerosite.lock").read_text().split("\\n")[1].strip()

    @hookimpl
    def zerosite_register_modules(register):
        register(ReportModule(name="NOTE", title="기록", compute=note, template="hostile.html.j2"))
"""


def test_the_lock_file_names_what_this_process_makes_itself(tmp_path: Path) -> None:
    """While a module runs in this process, the lock file names its project; a pool worker's project is not named
    (its death is no danger to the run); the note is gone once the batch is done."""
    settings = hostile_plugin(tmp_path / "plugins", READS_THE_NOTE.format(wait_s=0))
    for strategy, noted in [("sequential", "making p0002-gongdeok"), ("process", "")]:
        out = tmp_path / strategy
        (tmp_path / "plugins" / "out").write_text(str(out))
        options = BatchOptions(out=out, plugins=settings, strategy=strategy, modules=("NOTE",))
        with ReportStore(out) as store:
            assert generate(projects(3), options, store=store).written == 3
            assert (out / LOCK_FILE).read_text().strip() == str(os.getpid())  # cleared after the batch
        assert (out / "p0002-gongdeok" / "NOTE.html").read_text().strip() == f"<p>NOTE {noted}</p>"


def test_a_project_left_in_the_lock_file_is_made_in_a_worker_process(tmp_path: Path) -> None:
    """The lock file of a run that died (its holder gone) names what it was making: the next store records it,
    and a batch whose runner makes projects here makes it in a worker process instead, once."""
    settings = hostile_plugin(tmp_path / "plugins", EXIT_UNLESS_FIXED)
    out = tmp_path / "out"
    out.mkdir()
    (out / LOCK_FILE).write_text("999999\nmaking p0002-gongdeok p0004-seocho\nmodules EXIT\n   ")
    isolated = {"p0002-gongdeok": frozenset({"EXIT"}), "p0004-seocho": frozenset({"EXIT"})}
    with ReportStore(out) as store:
        assert store.isolated == isolated
    with ReportStore(out) as store:
        assert store.isolated == isolated  # kept in the index until made
    options = BatchOptions(out=out, plugins=settings, strategy="sequential", modules=("EXIT",), force=True)
    (tmp_path / "plugins" / "fixed").touch()
    with pytest.warns(IsolatedWarning) as warned:
        summary = generate(projects(5), options)
    assert [str(w.message).split(" ended a run")[0] for w in warned] == [
        "zerosite: project p0002-gongdeok",
        "zerosite: project p0004-seocho",
    ]
    assert summary.written == 5
    made_by = {p.parent.name: p.read_text().split()[-1].removesuffix("</p>") for p in out.glob("*/EXIT.html")}
    elsewhere = {project for project, pid in made_by.items() if pid != str(os.getpid())}
    assert elsewhere == {"p0002-gongdeok", "p0004-seocho"}
    with ReportStore(out) as store:
        assert store.isolated == {}


def test_a_project_set_apart_that_kills_its_worker_is_made_once(tmp_path: Path) -> None:
    """Alone on a one-worker pool, its worker's death names it: it is not made a second time to find out (it was,
    with two pool starts for one crasher)."""
    settings = hostile_plugin(tmp_path / "plugins", EXITS_AT_P0003)
    out = tmp_path / "out"
    out.mkdir()
    (out / LOCK_FILE).write_text("999999\nmaking p0003-jamsil\nmodules EXIT\n")
    options = BatchOptions(out=out, plugins=settings, strategy="sequential", modules=("EXIT",))
    with pytest.warns(IsolatedWarning):
        summary = generate(projects(4), options)
    assert (summary.written, summary.failed, summary.restarts) == (3, 1, 1)
    assert summary.made_apart == ("p0003-jamsil",) and summary.as_dict()["made_apart"] == ["p0003-jamsil"]
    assert "exit code 3" in summary.failures[0].error
    assert (tmp_path / "plugins" / "made").read_text().split().count("p0003-jamsil") == 1


def test_a_project_found_unchanged_is_set_apart_no_more(tmp_path: Path) -> None:
    """Its reports were all made, so it did not kill the run that noted it (it ran beside the one that did, under
    thread): it is not made apart, nor warned of, for ever after."""
    settings = hostile_plugin(tmp_path / "plugins", EXIT_UNLESS_FIXED)
    (tmp_path / "plugins" / "fixed").touch()
    out = tmp_path / "out"
    options = BatchOptions(out=out, plugins=settings, strategy="sequential", modules=("EXIT",))
    assert generate(projects(3), options).written == 3
    (out / LOCK_FILE).write_text("999999\nmaking p0002-gongdeok\nmodules EXIT\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error", IsolatedWarning)
        assert generate(projects(3), options).skipped == 3
    with ReportStore(out) as store:
        assert store.isolated == {}


def test_a_note_left_behind_stays_until_an_index_keeps_it(tmp_path: Path) -> None:
    """Audit F3: the next run took the note out of the lock file before its index kept it; an index it could not
    open then lost it, and the run after crashed again."""
    out = tmp_path / "out"
    out.mkdir()
    (out / LOCK_FILE).write_text("999999\nmaking p0003-jamsil\nmodules M2 EXIT\n")
    (tmp_path / "not-a-file").mkdir()
    with pytest.raises(StoreError, match="cannot open the report store"):
        ReportStore(out, tmp_path / "not-a-file")
    assert "making p0003-jamsil" in (out / LOCK_FILE).read_text()
    with ReportStore(out) as store:
        assert store.isolated == {"p0003-jamsil": frozenset({"M2", "EXIT"})}
        assert "making" not in (out / LOCK_FILE).read_text()  # kept in the index now
    assert not (out / LOCK_FILE).exists()


@pytest.mark.parametrize("strategy", ["thread", "auto"])
def test_only_the_projects_being_made_here_are_noted(tmp_path: Path, strategy: str) -> None:
    """Audit F5: every project handed to the thread pool was noted, and those already made stayed noted. F1: every
    project ``auto`` read ahead was noted, whether its choice then made them here or in a pool."""
    settings = hostile_plugin(tmp_path / "plugins", READS_THE_NOTE.format(wait_s=0.02))
    out = tmp_path / "out"
    (tmp_path / "plugins" / "out").write_text(str(out))
    options = BatchOptions(out=out, plugins=settings, strategy=strategy, workers=2, modules=("NOTE",))
    assert generate(projects(20), options).written == 20
    for report in out.glob("*/NOTE.html"):
        noted = report.read_text().removeprefix("<p>NOTE").split("</p>")[0].split()
        assert not noted or (noted[0] == "making" and report.parent.name in noted and len(noted) <= 3), (
            noted
        )  # two threads at most


def test_a_closed_standard_error_is_no_failure() -> None:
    """Audit F4: with standard error closed, enabling faulthandler raised, and every command exited 1, silent."""
    done = subprocess.run(
        [sys.executable, "-m", "zerosite", "sample", "1"],
        stdout=subprocess.PIPE,
        stderr=None,
        timeout=60,
        preexec_fn=lambda: os.close(2),
    )
    assert done.returncode == 0 and done.stdout.startswith(b"[")


def test_a_lock_held_by_a_run_names_its_pid_whatever_it_notes(tmp_path: Path) -> None:
    lock = FolderLock(tmp_path)
    lock.acquire()
    try:
        lock.note_making(["p0001-yeoksam", "p0002-gongdeok"])
        lock.note_making(["p0003-jamsil"])
        assert (tmp_path / LOCK_FILE).read_text().split("\n")[:2] == [str(os.getpid()), "making p0003-jamsil"]
        with pytest.raises(OutputBusy, match=f"pid {os.getpid()}"):
            FolderLock(tmp_path).acquire()
    finally:
        lock.release()
    assert "making p0003-jamsil" in (tmp_path / LOCK_FILE).read_text()  # released while noting: left for the next
    lock = FolderLock(tmp_path)
    lock.acquire()
    assert lock.left_making == ("p0003-jamsil",)
    lock.note_making(())  # kept elsewhere
    lock.release()
    assert not (tmp_path / LOCK_FILE).exists()


# --- 7. an error that cannot be put into words --------------------------------------------------------


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no __str__ for you")

    def __repr__(self) -> str:
        raise RuntimeError("no __repr__ either")


class OnlyRepr(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no __str__")


def test_describing_an_error_never_fails() -> None:
    assert types.describe_error(ValueError("no road access")) == "ValueError: no road access"
    assert types.describe_error(ValueError()) == "ValueError: "
    assert types.describe_error(Unprintable()) == "Unprintable: <unprintable Unprintable>"
    assert types.describe_error(OnlyRepr("x")) == "OnlyRepr: OnlyRepr('x')"
    assert types.error_message(ValueError("lone \udc80 surrogate")) == "lone \\udc80 surrogate"
    types.error_message(ValueError("lone \udc80 surrogate")).encode("utf-8")


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_an_unprintable_error_fails_its_report_only(tmp_path: Path, strategy: str) -> None:
    settings = hostile_plugin(
        tmp_path / "plugins",
        """
        class Unprintable(Exception):
            def __str__(self):
                raise RuntimeError("no __str__ for you")

            def __repr__(self):
                raise RuntimeError("no __repr__ either")

        def unprintable(project, deps):
            if project.id.startswith("p0002"):
                raise Unprintable()
            if project.id.startswith("p0003"):
                raise ValueError("lone \\udc80 surrogate")
            return project.id

        @hookimpl
        def zerosite_register_modules(register):
            register(ReportModule(name="UGLY", title="오류", compute=unprintable, template="hostile.html.j2"))
        """,
    )
    options = BatchOptions(out=tmp_path / "out", plugins=settings, strategy=strategy, workers=2, modules=("UGLY",))
    summary = generate(projects(4), options)
    assert (summary.written, summary.failed) == (2, 2)
    failed = failures(summary)
    assert "Unprintable: <unprintable Unprintable> (at hostile.py:" in failed["p0002-gongdeok", "UGLY"]
    assert "ValueError: lone \\udc80 surrogate (at hostile.py:" in failed["p0003-jamsil", "UGLY"]


# --- 8. a report that swallows its time limit ---------------------------------------------------------

STUBBORN = """
    import signal
    import threading

    def stubborn(project, deps):
        if project.id.startswith("p0002"):
            if threading.current_thread() is threading.main_thread():
                # Ignores the alarm, as code with its own SIGALRM handler does. (A loop that catches the
                # alarm's exception still lets it out between two iterations, about once in a few hundred runs.)
                signal.signal(signal.SIGALRM, signal.SIG_IGN)
            time.sleep({seconds})
        return project.id

    @hookimpl
    def zerosite_register_modules(register):
        register(ReportModule(name="STUBBORN", title="고집", compute=stubborn, template="hostile.html.j2"))
        register(ReportModule(name="AFTER", title="후속", compute=lambda p, d: d["STUBBORN"],
                              template="hostile.html.j2", requires=("STUBBORN",)))
        register(ReportModule(name="ZLAST", title="마지막", compute=lambda p, d: p.id, template="hostile.html.j2"))
"""


@pytest.mark.parametrize("strategy", ["process", "async", "thread"])
def test_a_report_that_swallows_its_time_limit_is_stopped(tmp_path: Path, strategy: str) -> None:
    """Processes: the worker is killed after a grace period and replaced; threads: the report fails at
    the deadline and the batch does not wait for the thread. Either way the other reports are made."""
    settings = hostile_plugin(tmp_path / "plugins", STUBBORN.format(seconds=4 if strategy == "thread" else 60))
    modules = ("M2", "STUBBORN", "AFTER", "ZLAST")
    options = BatchOptions(
        out=tmp_path / "out", plugins=settings, strategy=strategy, workers=2, chunksize=2, timeout_s=1.0
    )
    options = dataclasses.replace(options, modules=modules)
    started = time.monotonic()
    summary = generate(projects(4), options)
    took = time.monotonic() - started
    assert took < (3.5 if strategy == "thread" else 20), f"the batch waited for the stubborn report ({took:.1f} s)"
    failed = failures(summary)
    assert set(failed) == {("p0002-gongdeok", "STUBBORN"), ("p0002-gongdeok", "AFTER")}
    assert "STUBBORN timed out for project 'p0002-gongdeok'" in failed["p0002-gongdeok", "STUBBORN"]
    assert "requires STUBBORN, which failed" in failed["p0002-gongdeok", "AFTER"]
    assert (summary.written, summary.failed) == (4 * 4 - 2, 2)
    with sqlite3.connect(tmp_path / "out" / "index.sqlite") as conn:  # the time until it was given up, not 0
        (spent_ns,) = conn.execute("SELECT compute_ns FROM reports WHERE module = 'STUBBORN' AND status = 'failed'")
    assert spent_ns[0] >= 1e9, spent_ns
    if strategy == "thread":  # the abandoned thread finishes later: what it makes then is discarded
        time.sleep(max(0.0, 4.5 - (time.monotonic() - started)))
        assert not (tmp_path / "out" / "p0002-gongdeok" / "STUBBORN.html").exists()
    else:
        assert summary.restarts >= 1


# --- 14. a pool rebuilt while this process runs threads is not forked from it ---------------------------


def test_a_rebuilt_pool_is_never_forked_from_a_process_running_threads(tmp_path: Path) -> None:
    """Python 3.12+ warns when it forks a multi-threaded process (the child may deadlock): a pool
    rebuilt after a worker died must not do it (it starts from a fork server)."""
    settings = hostile_plugin(
        tmp_path / "plugins",
        """
        def die_once(project, deps):
            marker = HERE / "killed"
            if project.id.startswith("p0005") and not marker.exists():
                marker.touch()
                os.kill(os.getpid(), 9)
            return project.id

        @hookimpl
        def zerosite_register_modules(register):
            register(ReportModule(name="KILL", title="중단", compute=die_once, template="hostile.html.j2"))
        """,
    )
    options = BatchOptions(out=tmp_path / "out", plugins=settings, strategy="process", workers=2, chunksize=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = generate(projects(24), options)  # more chunks than in flight: submitted right after the death
    assert (summary.written, summary.failed) == (24 * 6, 0)
    assert summary.restarts >= 1
    forked = [str(w.message) for w in caught if "fork" in str(w.message)]
    assert not forked, forked

    stop = threading.Event()
    busy = threading.Thread(target=stop.wait, daemon=True)
    busy.start()
    try:
        assert strategies._safe_start_method("fork") != "fork"
        assert strategies._safe_start_method(None) != "fork"
    finally:
        stop.set()
        busy.join()
    assert strategies._safe_start_method("fork", rebuild=True) != "fork"


# --- 15. a pool that refuses work ends the batch with the pool's own error ---------------------------------


@pytest.mark.parametrize("strategy", ["process", "async"])
def test_a_pool_that_refuses_work_ends_the_batch_with_its_own_error(
    tmp_path: Path, strategy: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """async's runner used to report "Event loop stopped before Future completed" in place of the error, from
    a stop left scheduled by a step that had already ended, and logged the other projects' "Task exception
    was never retrieved"."""

    def refuse(pool: strategies.ProcessPool, fn: object, *args: object) -> None:
        raise RuntimeError("cannot schedule new futures after shutdown")

    monkeypatch.setattr(strategies.ProcessPool, "submit", refuse)
    options = BatchOptions(out=tmp_path / "out", strategy=strategy, workers=2)
    with caplog.at_level(logging.ERROR), pytest.raises(RuntimeError, match=r"^cannot schedule new futures"):
        generate(projects(6), options)
    gc.collect()  # an unretrieved task's exception is logged when the task is collected
    assert not [r.getMessage() for r in caplog.records if r.name == "asyncio"]
