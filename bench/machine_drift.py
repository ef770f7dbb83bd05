"""How the machine's own speed moves, and how much of it shows in ZeroSite's cells: the evidence behind
``compare.MACHINE_SHARE``.

For ``--seconds``, three sequential cells (single M2, single M5, pipeline; samples of about 20 ms, as the
benchmark calibrates them) take turns with the canary (``zerosite.benchmarking.canary.Canary``). Per
window of ``--window`` seconds it prints each one's median relative to the first window, and the share
``k`` of the canary's change that showed in each cell (``cell = canary ** k``), where the canary moved by
more than 5 %::

    python bench/machine_drift.py --seconds 300 --window 30
"""

from __future__ import annotations

import argparse
import contextlib
import math
import statistics
import time
from collections.abc import Callable

from zerosite.benchmarking.canary import Canary
from zerosite.benchmarking.cells import Cell
from zerosite.benchmarking.harness import calibrate
from zerosite.benchmarking.workloads import ROUND_PERIOD, Workload, cell_round, scenario_projects

CELLS = (
    Cell("single", "cpu", "sequential", 1, "M2"),
    Cell("single", "cpu", "sequential", 1, "M5"),
    Cell("pipeline", "cpu", "sequential", 1),
)


def _per_call(function: Callable[[], object], loops: int) -> float:
    started = time.perf_counter()
    for _ in range(loops):
        function()
    return (time.perf_counter() - started) / loops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--window", type=float, default=30.0)
    args = parser.parse_args()
    workload = Workload(scenario_projects(12), {"cpu": None}, batch_projects=16)
    names = [f"{c.level} {c.module or ''}".strip() for c in CELLS]
    windows: dict[int, list[list[float]]] = {}
    with contextlib.ExitStack() as stack:
        rounds = [stack.enter_context(cell_round(cell, workload)) for cell in CELLS]
        loops = [calibrate(function, 0.02, ROUND_PERIOD) for function in rounds]
        canary = Canary()
        started = time.monotonic()
        while (elapsed := time.monotonic() - started) < args.seconds:
            row = [_per_call(function, n) for function, n in zip(rounds, loops, strict=True)]
            windows.setdefault(int(elapsed // args.window), []).append([*row, canary()])
    medians = [[statistics.median(column) for column in zip(*rows, strict=True)] for _, rows in sorted(windows.items())]
    first = medians[0]
    print("window  " + "  ".join(f"{name:>10}" for name in [*names, "canary"]) + "   k per cell")
    shares = []
    for index, row in enumerate(medians):
        relative = [value / base for value, base in zip(row, first, strict=True)]
        drift = math.log(relative[-1])
        k = [math.log(r) / drift for r in relative[:-1]] if abs(drift) > math.log(1.05) else []
        shares += k
        print(
            f"{index * args.window:5.0f}s  "
            + "  ".join(f"{r:10.3f}" for r in relative)
            + "   "
            + " ".join(f"{value:.2f}" for value in k)
        )
    if shares:
        print(f"k over windows where the canary moved > 5 %: {min(shares):.2f} to {max(shares):.2f}")


if __name__ == "__main__":
    main()
