"""How our lead over reference code moves with the size of a batch: the benchmark's own batch rounds (``cell_round``,
as ``pytest bench/`` runs them) of one of our strategies and of a reference (the hand-written pool by default), taking
turns, at several batch sizes.

What each of our batches does once (its plan, opening and closing its index, the first chunks' start and the last
ones' end) counts for more in the benchmark's batches, 40 projects (16 in quick mode), than in the whole commands of
1,000 that ``bench/contenders.py`` times; the page says so beside its leads. This measures by how much::

    python bench/batch_sizes.py --sizes 16,40,100,400,1000 --rounds 7 --scratch /dev/shm
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
from dataclasses import replace
from pathlib import Path

from zerosite.benchmarking.cells import Cell
from zerosite.benchmarking.stats import ratio_ci
from zerosite.benchmarking.workloads import Workload, cell_round, scenario_projects


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="16,40,100,400", help="projects a batch, comma-separated")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--ours", default="process")
    parser.add_argument("--reference", default="pool")
    parser.add_argument("--scratch", type=Path, help="folder for the batches (default: the system's temp)")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    projects = scenario_projects(max(sizes))
    ours, reference = (f"{name} x{args.workers}" for name in (args.ours, args.reference))
    print(f"{ours} against {reference}, {args.rounds} rounds each, taking turns; ms a project, median")
    print(f"| projects a batch | {ours} | {reference} | {ours} as fast as {reference} [95% interval] |")
    print("|---|---|---|---|")
    for size in sizes:
        workload = Workload(projects=projects, urls={"cpu": None}, batch_projects=size)
        if args.scratch is not None:
            workload = replace(workload, scratch=args.scratch)
        cells = [Cell("batch", "cpu", name, args.workers) for name in (args.ours, args.reference)]
        times: list[list[float]] = [[], []]
        with contextlib.ExitStack() as stack:
            rounds = [stack.enter_context(cell_round(cell, workload)) for cell in cells]
            for one_round in rounds:
                one_round()  # a first batch into a fresh folder each: not counted
            for _ in range(args.rounds):
                for one_round, kept in zip(rounds, times, strict=True):
                    outcome = one_round()
                    kept.append(outcome.wall_s / outcome.projects)
        mine, theirs = (statistics.median(t) for t in times)
        interval = ratio_ci(times[1], times[0])  # the reference's time over ours, as the page's leads
        lead = f"{theirs / mine:.2f}x [{interval.low:.2f}x, {interval.high:.2f}x]"
        print(f"| {size} | {mine * 1e3:.3f} | {theirs * 1e3:.3f} | {lead} |", flush=True)


if __name__ == "__main__":  # pools started by forkserver import this file again
    main()
