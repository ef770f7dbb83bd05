"""Batch level, side by side: ``auto`` against every fixed strategy, per scenario, many interleaved rounds.

The same round as ``pytest bench/`` (``workloads.cell_round``: warm runner reused, files written and
indexed), more rounds than the quick matrix, and the ratio of each cell's median to the best fixed
cell's with a 95 % bootstrap interval. Run it from the repository root::

    python bench/auto_vs_fixed.py --rounds 12 --projects 20 --workers 2 [--scratch /dev/shm]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import zerosite.strategies_auto
from zerosite.benchmarking.cells import Cell
from zerosite.benchmarking.harness import RoundFunction
from zerosite.benchmarking.stats import ratio_ci
from zerosite.benchmarking.workloads import SCENARIO_LATENCY_SHARE, Workload, cell_round, scenario_projects
from zerosite.plugins import get_strategies
from zerosite.project import project_to_dict
from zerosite.testing import ProjectServer

FIXED = ("sequential", "thread", "process", "async")

CHOICES: list[zerosite.strategies_auto.AutoChoice] = []
_choose = zerosite.strategies_auto.choose


def _noted_choose(*args: Any, **kwargs: Any) -> zerosite.strategies_auto.AutoChoice:
    """``auto``'s own choice, noted for the summary."""
    CHOICES.append(_choose(*args, **kwargs))
    return CHOICES[-1]


zerosite.strategies_auto.choose = _noted_choose


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--projects", type=int, default=20, help="projects per batch")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--scenario", action="append", help="cpu, io, mixed (default: all)")
    parser.add_argument("--scratch", type=Path, default=Path(tempfile.gettempdir()))
    args = parser.parse_args()

    projects = scenario_projects(max(60, args.projects))
    scenarios = args.scenario or list(SCENARIO_LATENCY_SHARE)
    strategies = [name for name in get_strategies() if name in (*FIXED, "auto")]
    print(
        f"batch of {args.projects} projects, workers={args.workers}, {args.rounds} interleaved rounds, "
        f"latency {args.latency_ms:g} ms, scratch {args.scratch}, load average at start {os.getloadavg()[0]:.1f}"
    )
    with contextlib.ExitStack() as stack:
        urls: dict[str, str | None] = {}
        for scenario, share in SCENARIO_LATENCY_SHARE.items():
            if share is None:
                urls[scenario] = None
            else:
                raw = {p.id: project_to_dict(p) for p in projects}
                server = stack.enter_context(ProjectServer(raw, latency_s=args.latency_ms / 1000 * share))
                urls[scenario] = server.url
        workload = Workload(projects, urls, batch_projects=args.projects, scratch=args.scratch)
        for scenario in scenarios:
            _compare(scenario, strategies, workload, args.workers, args.rounds)


def _compare(scenario: str, strategies: list[str], workload: Workload, workers: int, rounds: int) -> None:
    cells = [Cell("batch", scenario, name, 1 if name == "sequential" else workers) for name in strategies]
    samples: dict[Cell, list[float]] = {cell: [] for cell in cells}
    load: list[float] = []
    with _rounds(cells, workload) as functions:
        for function in functions.values():
            function()  # one untimed round per cell, as the benchmark drops its first
        CHOICES.clear()
        for index in range(rounds):
            shift = index % len(cells)
            for cell in cells[shift:] + cells[:shift]:
                samples[cell].append(functions[cell]().wall_s)
            load.append(os.getloadavg()[0])
    said = Counter(f"{c.label} for {c.figures.projects}" for c in CHOICES)
    fixed = [cell for cell in cells if cell.strategy in FIXED]
    best = min(fixed, key=lambda cell: statistics.median(samples[cell]))
    print(f"\n{scenario}: load average {min(load):.1f}-{max(load):.1f} during the rounds; best fixed: {best.label}")
    if CHOICES:
        print(f"  auto chose, per timed round (projects left): {dict(said)}; the last said:\n    {CHOICES[-1].line}")
    for cell in sorted(cells, key=lambda cell: statistics.median(samples[cell])):
        values = samples[cell]
        median = statistics.median(values)
        q1, _, q3 = statistics.quantiles(values, n=4)
        ratio = ratio_ci(samples[cell], samples[best])  # median(cell) / median(best): above 1 is slower
        print(
            f"  {cell.label:14} median {median * 1000:7.1f} ms  IQR {q1 * 1000:6.1f}-{q3 * 1000:6.1f}  "
            f"vs best {median / statistics.median(samples[best]):5.2f}x [{ratio.low:.2f}, {ratio.high:.2f}]"
        )


@contextlib.contextmanager
def _rounds(cells: list[Cell], workload: Workload) -> Iterator[dict[Cell, RoundFunction]]:
    with contextlib.ExitStack() as stack:
        started = time.perf_counter()
        functions = {cell: stack.enter_context(cell_round(cell, workload)) for cell in cells}
        print(f"  (runners started and warmed in {time.perf_counter() - started:.1f} s)", end="")
        yield functions


if __name__ == "__main__":
    main()
