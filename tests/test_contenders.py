"""The benchmark's reference contenders do the same work as zerosite: every report, the same bytes."""

from __future__ import annotations

import argparse
import importlib.util
import os
from pathlib import Path
from typing import Any

import pytest

from zerosite.benchmarking.contenders import CONTENDERS, contender
from zerosite.benchmarking.workloads import scenario_projects


def _files(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.glob("*/*.html"))}


@pytest.mark.parametrize("name", CONTENDERS)
def test_each_contender_writes_every_report_with_zerosite_bytes(tmp_path: Path, name: str) -> None:
    projects = scenario_projects(4)
    reference = tmp_path / "reference"
    assert contender("bare").run(projects, reference, 1) == 4 * 5
    chosen = contender(name, workers=2)
    out = tmp_path / name
    assert chosen.run(projects, out, chosen.workers) == 4 * 5
    assert _files(out) == _files(reference)
    assert chosen.writes_index == (out / "index.sqlite").exists()


def _bench_script(name: str) -> Any:
    path = Path(__file__).parent.parent / "bench" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_script_compares_contenders_round_by_round_and_says_when_rounds_disagree() -> None:
    script = _bench_script("contenders")

    def runs(walls: dict[str, list[float]]) -> list[dict[str, Any]]:
        return [{"name": n, "round": i, "wall_s": w} for n, ws in walls.items() for i, w in enumerate(ws)]

    # The machine slows down threefold over the rounds: each round's ratio is the same all the same.
    steady = runs({"process": [1.0, 2.0, 3.0], "pool": [1.25, 2.5, 3.75]})
    assert script._paired(steady, "process", "pool") == pytest.approx([1.25, 1.25, 1.25])
    assert script._verdict(script._paired(steady, "process", "pool"), "x") == (
        "1.25x (rounds 1.25x to 1.25x; ahead in every round)"
    )
    assert script._verdict(script._paired(steady, "pool", "process"), "%").endswith("behind in every round)")
    mixed = runs({"sequential": [1.1, 0.95, 1.2], "bare": [1.0, 1.0, 1.0]})
    assert script._verdict(script._paired(mixed, "sequential", "bare"), "%") == (
        "+10.0% (rounds -5.0% to +20.0%; not resolved: ahead in 1 of 3 rounds)"
    )
    assert script._verdict([], "x") == "-"


def test_the_table_gives_the_kernels_cpu_and_each_parallel_contenders_parent_share_hand_written_pools_too(
    capsys: pytest.CaptureFixture[str],
) -> None:
    script = _bench_script("contenders")
    described = {"bare": "a bare loop", "process": "zerosite process x2", "pool": "multiprocessing.Pool x2"}
    # Per round: the parent's CPU and its children's; 500 reports.
    cpu = {"bare": [(1.0, 0.0)] * 3, "process": [(0.05, 0.95), (0.06, 0.94), (0.04, 0.96)], "pool": [(0.03, 0.97)] * 3}
    runs = [
        {"name": n, "description": described[n], "round": i, "wall_s": 1.0, "reports": 500}
        | {"self_cpu_s": s, "children_cpu_s": c, "system_cpu_s": 0.05}
        for n, rounds in cpu.items()
        for i, (s, c) in enumerate(rounds)
    ]
    script._table("this", runs, list(cpu), argparse.Namespace(projects=100, workers=2, rounds=3))
    printed = capsys.readouterr().out
    assert "| zerosite process x2 | 2.000 | 2.000-2.000 | 1.00x | 2.000 (0.100 + 1.900) | 0.100 |" in printed
    assert "parent's CPU share under zerosite process x2: median 5.0% (range 4.0%-6.0%; 100 us per report)" in printed
    assert "under multiprocessing.Pool x2: median 3.0% (range 3.0%-3.0%; 60 us per report)" in printed
    assert "under a bare loop" not in printed  # one process: no parent to speak of


def test_instruction_counts_take_the_parents_run_and_every_worker_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The parent (the first process) from its start marker to its stop marker, forks inside included; each
    worker (every other process) whole; SHA-256's share summed from the same dumps."""
    script = _bench_script("contenders")

    def dump(name: str, trigger: str, instructions: int) -> None:
        part = name.split(".")[2] if name.count(".") == 2 else "9"  # the file without a suffix is the last part
        text = f"version: 1\npart: {part}\ndesc: Trigger: {trigger}\nsummary: {instructions}\n"
        (tmp_path / name).write_text(text)

    dump("cg.100.1", "--dump-before=getppid", 7_000)  # start-up: imports, the projects made
    dump("cg.100.2", "--dump-before=fork", 50)  # the run, up to the first worker's fork
    dump("cg.100.3", "--dump-before=fork", 60)
    dump("cg.100.4", "--dump-before=getpgrp", 400)  # the rest of the run
    dump("cg.100", "Program termination", 9_000)  # shutting down, after the run
    dump("cg.101", "Program termination", 1_000)  # a forked worker, counted from its fork
    dump("cg.102.1", "--dump-before=getppid", 300)  # another: a worker may call getppid itself
    dump("cg.102", "Program termination", 700)
    shas = {"cg.100.4": 40, "cg.101": 100, "cg.100": 999}
    monkeypatch.setattr(script, "_sha256_of", lambda path: shas.get(path.name, 0))
    assert script.count_dumps(tmp_path) == {
        "parent_instructions": 510,
        "children_instructions": 2_000,
        "sha256_instructions": 140,
    }


def test_the_parent_replay_indexes_every_replayed_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``bench/parent_replay.py`` counts the parent's real path: the replayed results are indexed, every one; and it
    says what that took (``--large``): the parent's CPU and the bytes it wrote, which are the index's."""
    import json
    import sqlite3

    _bench_script("parent_replay").replay(6, tmp_path / "out")
    with sqlite3.connect(tmp_path / "out" / "index.sqlite") as conn:
        assert conn.execute(
            "SELECT count(*), count(DISTINCT sha256) FROM reports WHERE status = 'written'"
        ).fetchone() == (30, 30)
    measured = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert measured["reports"] == 30 and measured["cpu_s"] > 0
    assert measured["written_bytes"] >= 4096  # a commit's pages, at the least


@pytest.mark.parametrize("name", ["process", "pool"])
def test_the_tail_script_notes_every_chunk_of_each_pool_and_what_follows_the_last(tmp_path: Path, name: str) -> None:
    """``bench/batch_tail.py``: the chunk ends it notes come from the workers, every chunk of the batch (else its
    tail and spread would be measured from some other moment), and the batch is still made whole."""
    import json
    import subprocess
    import sys

    script = Path(__file__).parent.parent / "bench" / "batch_tail.py"
    arguments = [
        "--one",
        name,
        "--projects",
        "12",
        "--out",
        str(tmp_path / "out"),
        "--log",
        str(tmp_path / "chunks.log"),
    ]
    done = subprocess.run([sys.executable, script, *arguments], capture_output=True, text=True, check=True)
    measured = json.loads(done.stdout.splitlines()[-1])  # in a fresh process, as the script runs each contender
    pids = {line.split()[0] for line in (tmp_path / "chunks.log").read_text().splitlines()}
    assert pids and str(os.getpid()) not in pids  # noted by the workers
    assert measured["chunks"] == (7 if name == "process" else 2)  # tapered from the start: 3, 3, 2, 1, 1, 1, 1
    assert measured["spread_ms"] >= 0 and 0 < measured["serial_tail_ms"] < measured["wall_ms"]
    assert len(_files(tmp_path / "out")) == 12 * 5


def test_the_batch_sizes_script_times_both_cells_at_each_size_and_leaves_no_batch_behind(tmp_path: Path) -> None:
    """``bench/batch_sizes.py``: a row a size, with both cells' time a project and their ratio, from the benchmark's
    own rounds (which remove their batches)."""
    import re
    import subprocess
    import sys

    script = Path(__file__).parent.parent / "bench" / "batch_sizes.py"
    arguments = ["--sizes", "2,3", "--rounds", "1", "--scratch", str(tmp_path)]
    done = subprocess.run([sys.executable, script, *arguments], capture_output=True, text=True, check=True)
    table_row = re.compile(r"\| \d+ \| [\d.]+ \| [\d.]+ \| [\d.]+x \[[\d.]+x, [\d.]+x\] \|")  # size, times, lead [95 %]
    rows = [line for line in done.stdout.splitlines() if table_row.fullmatch(line)]
    assert [row.split(" | ")[0] for row in rows] == ["| 2", "| 3"]
    assert "process x2 against pool x2" in done.stdout
    assert list(tmp_path.iterdir()) == []


def test_the_startup_script_times_each_command_in_a_fresh_interpreter() -> None:
    """``bench/startup.py``: every command it times runs (from an empty folder) and takes CPU time."""
    import sys

    startup = _bench_script("startup")
    for name in startup.COMMANDS:
        wall_ms, cpu_ms = startup.timed(sys.executable, name, 1)
        assert wall_ms > 0 and cpu_ms > 0, name


def test_the_floor_script_times_each_part_over_the_batchs_own_reports(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``bench/floor.py``: a report of each project made by zerosite's worker, every part timed over them (real work
    takes time), the floor their sum, and each timed run's files gone after it."""
    floor = _bench_script("floor")
    reports, bare_s, parts = floor.measure(3, 1, tmp_path)
    assert reports == 3 * 5 and len(list((tmp_path / "made").glob("*/*.html"))) == reports
    assert set(parts) == set(floor.PARTS)
    assert all(parts[name] > 0 for name in ("file-hash", "input-hash", "index"))
    assert parts["file-hash"] < bare_s  # hashing a report costs less than making it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["made"]
    floor.table(reports, bare_s, parts)
    assert f"| {sum(parts.values()) * 1e6:.1f} |" in capsys.readouterr().out.splitlines()[-1]


def test_the_overhead_script_switches_each_part_off_and_nothing_else(tmp_path: Path) -> None:
    """``bench/overhead.py``: each part it names is really off in its run (else its cost would read 0), and every
    run still writes every report with the bare loop's bytes."""
    import sqlite3
    import subprocess
    import sys

    script = _bench_script("overhead")
    reference = tmp_path / "reference"
    assert contender("bare").run(scenario_projects(2), reference, 1) == 10

    def made(run: str) -> tuple[Path, list[tuple[str, str, int]]]:
        out = tmp_path / run
        command = [sys.executable, script.__file__, "--one", run, "--projects", "2", "--out", str(out)]
        subprocess.run(command, check=True, capture_output=True)
        assert _files(out / "batch") == _files(reference), run
        if run == "bare":
            return out, []
        with sqlite3.connect(out / "batch" / "index.sqlite") as conn:
            assert run == "index" or _timed_by_counters(conn), run  # the index's run records no times
            rows = conn.execute("SELECT input_hash, sha256, (SELECT count(*) FROM reports_fts_docsize) FROM reports")
            return out, rows.fetchall()

    unhashed = "0" * 64
    _, sequential = made("sequential")
    assert len(sequential) == 10 and unhashed not in {value for row in sequential for value in row[:2]}
    assert {row[2] for row in sequential} == {10}  # every report's search terms
    assert {row[0] for row in made("input-hash")[1]} == {unhashed}
    assert {row[1] for row in made("file-hash")[1]} == {unhashed}
    assert made("index")[1] == []
    without_search = made("search")[1]
    assert len(without_search) == 10 and {row[2] for row in without_search} == {0}
    for run in ("bare", "atomic-write", "watch"):
        made(run)
    assert set(script.PARTS) == {"input-hash", "file-hash", "atomic-write", "watch", "index", "search"}


def _timed_by_counters(conn: Any) -> bool:
    """Whether every stage time in an index is a whole number of microseconds, as the counters that stand in for
    the clocks under a count give (a real clock's nanoseconds are not)."""
    times = [t for row in conn.execute("SELECT compute_ns, render_ns, write_ns FROM reports") for t in row]
    return bool(times) and all(t % 1_000 == 0 for t in times)


@pytest.mark.parametrize(
    "script, arguments",
    [
        ("contenders", ["--one", "sequential", "--projects", "2", "--workers", "1"]),
        ("contenders", ["--one", "process", "--projects", "2", "--workers", "2"]),
        ("parent_replay", ["--one", "2"]),
    ],
)
def test_a_counted_run_reads_counters_for_clocks(tmp_path: Path, script: str, arguments: list[str]) -> None:
    """Under ``--instructions`` the measured process's clocks are counters (the workers' too), so that the index's
    commits "every second" do not come as often as valgrind slows the run; timed, they are real clocks."""
    import sqlite3
    import subprocess
    import sys

    path = Path(__file__).parent.parent / "bench" / f"{script}.py"
    for counted in (True, False):
        out = tmp_path / f"{script}-{counted}"
        command = [sys.executable, str(path), *arguments, "--out", str(out)]
        subprocess.run([*command, "--counting-clocks"] if counted else command, check=True, capture_output=True)
        with sqlite3.connect(out / "index.sqlite") as conn:
            assert _timed_by_counters(conn) == counted
