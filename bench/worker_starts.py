"""How much a cell's speed depends on the start of its workers it got: the evidence behind
``cells.WORKER_STARTS``.

For each strategy, ``--starts`` pools are started one after another in this process, each measuring one module's
report (``--module``) in ``--samples`` samples of about 20 ms (as the benchmark calibrates them), taking turns with
``sequential``, which runs all along on one warm worker; per start it prints both medians and their ratio, and per
strategy how far its starts' medians spread, beside how far sequential's did over the same time::

    python bench/worker_starts.py --module M3 --starts 5
"""

from __future__ import annotations

import argparse
import statistics

from zerosite.benchmarking.cells import Cell
from zerosite.benchmarking.harness import calibrate
from zerosite.benchmarking.workloads import Workload, cell_round, scenario_projects


def _median_ms(samples: list[float]) -> str:
    return f"{statistics.median(samples) * 1e3:.3f} ms"


def _spread(medians: list[float]) -> str:
    """``0.528-0.667 ms (+26 %)``: the least and the most of the medians, and how much more the most is."""
    low, high = min(medians), max(medians)
    return f"{low * 1e3:.3f}-{high * 1e3:.3f} ms (+{(high / low - 1) * 100:.0f} %)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--module", default="M3")
    parser.add_argument("--starts", type=int, default=5)
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--strategies", default="thread,process,async")
    args = parser.parse_args()
    workload = Workload(projects=scenario_projects(20), urls={"cpu": None})
    sequential = Cell("single", "cpu", "sequential", 1, args.module)
    with cell_round(sequential, workload) as steady:
        steady_loops = calibrate(steady, 0.02)
        for strategy in args.strategies.split(","):
            cell = Cell("single", "cpu", strategy, 2, args.module)
            pools: list[float] = []
            beside: list[float] = []
            for start in range(args.starts):
                with cell_round(cell, workload) as pooled:
                    loops = calibrate(pooled, 0.02)
                    pooled(), steady()  # warm
                    ours: list[float] = []
                    theirs: list[float] = []
                    for _ in range(args.samples):
                        ours.append(sum(pooled().per_iteration_s for _ in range(loops)) / loops)
                        theirs.append(sum(steady().per_iteration_s for _ in range(steady_loops)) / steady_loops)
                pools.append(statistics.median(ours))
                beside.append(statistics.median(theirs))
                ratio = pools[-1] / beside[-1]
                print(
                    f"{cell.label} start {start}: {_median_ms(ours)}; sequential {_median_ms(theirs)}; "
                    f"ratio {ratio:.3f}",
                    flush=True,
                )
            print(f"{cell.label}: its starts {_spread(pools)}; sequential beside them {_spread(beside)}", flush=True)


if __name__ == "__main__":  # pools started by forkserver import this file again
    main()
