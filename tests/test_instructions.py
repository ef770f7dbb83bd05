"""Instruction counts under valgrind: which cells can be counted, the dumps read back, exact and sensitive counts."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from zerosite.benchmarking import instructions
from zerosite.benchmarking.cells import Cell
from zerosite.benchmarking.instructions import (
    InstructionCount,
    InstructionCountError,
    count_instructions,
    uncountable_reason,
    valgrind_unavailable,
)

LOOP_PLUGIN = '''
    """MX: a test module whose compute runs a loop of ZEROSITE_TEST_LOOPS steps, so its work can be set."""

    from __future__ import annotations

    import os
    from dataclasses import dataclass
    from pathlib import Path

    from zerosite import ReportModule, hookimpl

    LOOPS = int(os.environ.get("ZEROSITE_TEST_LOOPS", "0"))


    @dataclass(frozen=True)
    class Work:
        total: int


    def work(project, deps):
        total = 0
        for step in range(LOOPS):
            total += step & 7
        return Work(total)


    MODULE = ReportModule(name="MX", title="일정한 작업", compute=work, template="mx_loop.html.j2")


    @hookimpl
    def zerosite_register_modules(register):
        register(MODULE)


    @hookimpl
    def zerosite_template_dirs():
        return [Path(__file__).parent / "templates"]
'''

LOOPS = 100_000
"""Steps of MX's loop in the base runs: about 7 M instructions, far more than the report around it."""
MORE_LOOPS = 103_000
"""3 % more work."""

M2 = Cell("single", "cpu", "sequential", 1, "M2")
MX = Cell("single", "cpu", "sequential", 1, "MX")
PIPELINE_BARE = Cell("pipeline", "cpu", "bare", 1)
CELLS = (M2, MX, PIPELINE_BARE)
ITERATIONS = 5


# --- Without valgrind -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cell", "words"),
    [
        (Cell("batch", "cpu", "sequential", 1), "level 'batch'"),
        (Cell("single", "io", "sequential", 1, "M2"), "scenario 'io'"),
        (Cell("pipeline", "mixed", "bare", 1), "scenario 'mixed'"),
        (Cell("pipeline", "cpu", "process", 2), "strategy 'process'"),
        (Cell("single", "cpu", "thread", 2, "M3"), "strategy 'thread'"),
    ],
    ids=lambda value: value.id if isinstance(value, Cell) else "",
)
def test_out_of_process_and_waiting_cells_are_uncountable_with_a_reason(cell: Cell, words: str) -> None:
    reason = uncountable_reason(cell)
    assert reason is not None and words in reason
    with pytest.raises(ValueError, match=words):
        count_instructions([cell])


@pytest.mark.parametrize("cell", [M2, PIPELINE_BARE, Cell("pipeline", "cpu", "sequential", 1)], ids=lambda c: c.id)
def test_in_process_cpu_cells_are_countable(cell: Cell) -> None:
    assert uncountable_reason(cell) is None


def test_per_iteration() -> None:
    assert InstructionCount(total=1_000, iterations=4).per_iteration == 250.0


def test_missing_valgrind_is_named_with_how_to_install_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    valgrind_unavailable.cache_clear()
    try:
        reason = valgrind_unavailable()
    finally:
        valgrind_unavailable.cache_clear()
    assert reason is not None
    assert "valgrind is not on PATH" in reason and "apt-get install valgrind" in reason


def _dump(folder: Path, part: int, trigger: str, instructions: int) -> None:
    desc = f"--dump-before={trigger}" if trigger else "Program termination"
    text = f"version: 1\ncreator: callgrind-3.19.0\npid: 1\npart: {part}\n\ndesc: Trigger: {desc}\n\n"
    text += f"events: Ir\nsummary: {instructions}\n\nfn=(1) main\n0 {instructions}\n\ntotals: {instructions}\n"
    name = f"callgrind.out.{part}" if trigger else "callgrind.out"
    (folder / name).write_text(text, encoding="utf-8")


def test_measured_regions_are_the_dumps_at_the_stop_marker(tmp_path: Path) -> None:
    for part, (trigger, count) in enumerate(
        [("getppid", 3_000_000_000), ("getpgrp", 55), ("getppid", 200_000_000), ("getpgrp", 323)], start=1
    ):
        _dump(tmp_path, part, trigger, count)
    _dump(tmp_path, 5, "", 66_000_000)
    assert instructions._measured_regions(tmp_path) == [55, 323]


def test_a_stray_marker_call_is_refused_not_counted(tmp_path: Path) -> None:
    for part, trigger in enumerate(["getppid", "getppid", "getpgrp"], start=1):
        _dump(tmp_path, part, trigger, 10)
    with pytest.raises(InstructionCountError, match="do not alternate"):
        instructions._measured_regions(tmp_path)


# --- Under valgrind: three runs, side by side -------------------------------------------------------


@pytest.fixture(scope="module")
def plugins_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("instruction-plugins")
    (folder / "mx_loop.py").write_text(textwrap.dedent(LOOP_PLUGIN), encoding="utf-8")
    (folder / "templates").mkdir()
    (folder / "templates" / "mx_loop.html.j2").write_text("<p>{{ result.total }}</p>\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def runs(plugins_dir: Path) -> Iterator[list[dict[Cell, InstructionCount]]]:
    """Counts of the same cells from three valgrind runs at once: LOOPS, LOOPS again, MORE_LOOPS."""
    reason = valgrind_unavailable()
    if reason is not None:
        pytest.skip(reason)

    def run(loops: int) -> dict[Cell, InstructionCount]:
        return count_instructions(
            CELLS,
            iterations=ITERATIONS,
            warmup=1,
            plugins_dir=plugins_dir,
            projects=20,
            extra_env={"ZEROSITE_TEST_LOOPS": str(loops)},
        )

    with ThreadPoolExecutor(max_workers=3) as pool:
        yield list(pool.map(run, [LOOPS, LOOPS, MORE_LOOPS]))


@pytest.mark.valgrind
def test_the_same_code_gives_the_same_count_in_two_runs(runs: list[dict[Cell, InstructionCount]]) -> None:
    first, second, _ = runs
    assert set(first) == set(CELLS)
    assert {cell.id: count.total for cell, count in first.items()} == {
        cell.id: count.total for cell, count in second.items()
    }
    assert all(count.iterations == ITERATIONS for count in first.values())


@pytest.mark.valgrind
def test_three_percent_more_work_gives_a_proportionally_larger_count(
    runs: list[dict[Cell, InstructionCount]],
) -> None:
    base, _, more = runs
    growth = more[MX].total / base[MX].total - 1
    # The loop is nearly all of MX's report: 3 % more steps, a little under 3 % more instructions.
    assert 0.027 < growth <= 0.030, growth
    # The pipeline makes MX's report too: the same extra steps, about the same extra instructions.
    extra_single = more[MX].total - base[MX].total
    extra_pipeline = more[PIPELINE_BARE].total - base[PIPELINE_BARE].total
    # The same extra work at both levels; within 5 %: the `num` filter remembers figures it formatted, and the
    # pipeline's other modules fill that memory first.
    assert extra_pipeline == pytest.approx(extra_single, rel=0.05)
    # A cell without MX is untouched by its loop.
    assert more[M2].total == base[M2].total


@pytest.mark.valgrind
def test_a_whole_run_counts_the_interpreter_start_and_what_the_program_adds(tmp_path: Path) -> None:
    """``count_whole_run`` (``bench/startup.py``): a program's every instruction, start to exit, the same twice."""
    import sys

    reason = valgrind_unavailable()
    if reason is not None:
        pytest.skip(reason)
    counts = {}
    for name, code in (("a", "pass"), ("b", "pass"), ("c", "import decimal")):  # folders' names of one length
        (tmp_path / name).mkdir()
        counts[name], printed = instructions.count_whole_run([sys.executable, "-c", code], {}, tmp_path / name)
        assert printed == ""
    assert counts["a"] == counts["b"]
    assert counts["c"] > counts["a"] + 1_000_000  # decimal's module, unmarshalled and run
