"""Runs under valgrind: the measured rounds of each cell, between the markers that callgrind dumps at.

Started by :func:`zerosite.benchmarking.instructions.count_instructions` as
``valgrind --tool=callgrind --dump-before=getppid --dump-before=getpgrp python -m
zerosite.benchmarking.instructions_driver SPEC MANIFEST``. ``SPEC`` is a JSON file of the cells, iterations,
warm-up rounds and workload size; ``MANIFEST`` receives the cells in the order measured (with ``--prepare``,
run without valgrind first, each cell gets one round and none measured).

For each cell the driver opens :func:`~zerosite.benchmarking.workloads.cell_round`, runs the warm-up rounds,
collects garbage, calls ``os.getppid()`` (callgrind dumps and zeroes everything before it: start-up, set-up,
warm-up), runs the measured rounds and calls ``os.getpgrp()`` (callgrind dumps the measured rounds). CPython
calls neither function anywhere else; the parent checks that the dumps alternate exactly, one pair per cell.
The clocks are replaced by deterministic counters first (:func:`use_counting_clocks`).
"""

from __future__ import annotations

import gc
import itertools
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from zerosite.benchmarking.cells import Cell
from zerosite.benchmarking.instructions import START_MARKER, STOP_MARKER
from zerosite.benchmarking.workloads import Workload, cell_round, scenario_projects

__all__ = ["main", "measure", "use_counting_clocks"]


_start: Callable[[], int] = getattr(os, START_MARKER)
"""``os.getppid``: CPython's function of the same name as the libc function callgrind dumps at."""
_stop: Callable[[], int] = getattr(os, STOP_MARKER)
"""``os.getpgrp``."""


def use_counting_clocks() -> None:
    """Replace the clocks the engine reads with C counters that advance by 1 microsecond per read.

    The engine times every stage of every report. With real clock values CPython's long subtraction
    (``x_sub``) costs 19 more instructions whenever two readings straddle a multiple of 2**30 ns, so a cell's
    count would vary by a few multiples of 19 from run to run. ``itertools.count(...).__next__`` is a C call,
    like the clocks it replaces, and gives the same readings in every run."""
    time.monotonic_ns = itertools.count(10**12, 1_000).__next__
    time.perf_counter_ns = itertools.count(10**12, 1_000).__next__
    time.monotonic = itertools.count(1_000.0, 1e-6).__next__
    time.perf_counter = itertools.count(1_000.0, 1e-6).__next__


def measure(cells: Sequence[Cell], iterations: int, warmup: int, workload: Workload) -> None:
    """Run each cell's rounds with the start and stop markers around the measured ones."""
    for cell in cells:
        with cell_round(cell, workload) as one_round:
            for _ in range(warmup):
                one_round()
            gc.collect()  # every cell starts its measured rounds with empty young generations
            _start()
            for _ in range(iterations):
                one_round()
            _stop()


def main(argv: Sequence[str] | None = None) -> int:
    """``SPEC MANIFEST``: measure the cells that ``SPEC`` names and write their order to ``MANIFEST``."""
    args = list(sys.argv[1:] if argv is None else argv)
    prepare = "--prepare" in args
    args = [arg for arg in args if arg != "--prepare"]
    if len(args) != 2:
        print(
            "usage: python -m zerosite.benchmarking.instructions_driver SPEC.json MANIFEST.json [--prepare]",
            file=sys.stderr,
        )
        return 2
    use_counting_clocks()
    spec = json.loads(Path(args[0]).read_text(encoding="utf-8"))
    cells = [Cell(**coordinates) for coordinates in spec["cells"]]
    workload = Workload(projects=scenario_projects(spec["projects"]), urls={"cpu": None})
    if prepare:  # one round per cell: imports (and so compiles) all that the counted run will import
        measure(cells, 0, 1, workload)
    else:
        measure(cells, spec["iterations"], spec["warmup"], workload)
    manifest = {"cells": [cell.as_info() for cell in cells], "iterations": spec["iterations"]}
    Path(args[1]).write_text(json.dumps(manifest), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
