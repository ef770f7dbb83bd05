"""Per-report CPU of compute + render (the five modules, no writing), compared across checkouts side by side.

    .venv/bin/python bench/report_cpu.py /work/wt9-render-base /work/wt9-render
    .venv/bin/python bench/report_cpu.py --instructions /work/wt9-render-base /work/wt9-render

Each checkout is measured by its own ``.venv/bin/python`` running this file in a fresh process (``--child``)
with the checkout as working directory, processes of the checkouts interleaved (A B A B ...). A child makes
every report of ``--warmup`` sample projects (seed + 1) to warm up (templates compiled, caches filled), then
every report of ``--projects`` other sample projects, once each, and gives the CPU time (``time.process_time``)
of those per report. The split by module, and into compute and render, comes from as many projects again
(seed + 2), timed module by module, so that its clock readings stay out of the figure per report.

``--instructions`` instead runs one child per checkout under callgrind and counts the instructions of its
measured projects (the same from run to run: ``PYTHONHASHSEED=0``, bytecode compiled by a native run just
before, start-up objects frozen out of the garbage collector).
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def child(projects: int, seed: int, warmup: int, split: bool) -> dict[str, Any]:
    """Measure in this process: CPU per report over the measured projects; then, with ``split``, on as many
    other projects, each module's CPU (time between the pipeline's outcomes) and its compute alone (a pass
    that renders nothing), the rest being its render."""
    from zerosite.pipeline import compute_and_render, plan
    from zerosite.plugins import get_modules
    from zerosite.project import parse_project
    from zerosite.rendering import get_environment
    from zerosite.sample import sample_projects

    modules = get_modules()
    steps, env, everything = plan(modules), get_environment(), set(modules)

    def batch(count: int, batch_seed: int) -> list[Any]:
        return [parse_project(raw) for raw in sample_projects(count, batch_seed)]

    def make(projects: list[Any]) -> int:
        """Every report of ``projects``; how many."""
        made = 0
        for project in projects:
            for outcome in compute_and_render(project, steps, everything, env):
                if outcome.html is None:
                    raise RuntimeError(outcome.error)
                made += 1
        return made

    def by_module(projects: list[Any], reports: set[str]) -> dict[str, int]:
        """CPU ns of each module over ``projects``, reporting ``reports``."""
        cpu_ns: dict[str, int] = {}
        for project in projects:
            started = time.process_time_ns()
            for outcome in compute_and_render(project, steps, reports, env):
                now = time.process_time_ns()
                cpu_ns[outcome.module.name] = cpu_ns.get(outcome.module.name, 0) + now - started
                started = time.process_time_ns()
        return cpu_ns

    measured, others = batch(projects, seed), batch(projects, seed + 2)
    make(batch(warmup, seed + 1))  # other projects: compiles the templates, fills the caches
    gc.collect()
    gc.freeze()  # what start-up left is not the reports' to collect: full collections skip it, in every checkout
    os.getppid()
    started = time.process_time_ns()
    reports = make(measured)
    cpu_ns = time.process_time_ns() - started
    os.getpgrp()
    made, computed = (by_module(others, everything), by_module(others, set())) if split else ({}, {})
    return {
        "reports": reports,
        "cpu_us_per_report": cpu_ns / reports / 1e3,
        "modules": {
            name: {
                "compute_us": computed[name] / projects / 1e3,
                "render_us": (made[name] - computed[name]) / projects / 1e3,
            }
            for name in sorted(made)
        },
    }


def _child_command(checkout: Path, args: argparse.Namespace, split: bool = True) -> list[str]:
    from zerosite.benchmarking.checkouts import python_of  # here: a child may run another checkout's zerosite

    return [
        python_of(checkout),
        str(Path(__file__).resolve()),
        "--child",
        f"--projects={args.projects}",
        f"--seed={args.seed}",
        f"--warmup={args.warmup}",
        *([] if split else ["--no-split"]),
    ]


def _environment(**extra: str) -> dict[str, str]:
    keep = ("PATH", "HOME", "LANG", "LC_ALL")
    return {**{k: os.environ[k] for k in keep if k in os.environ}, "PYTHONHASHSEED": "0", **extra}


def _run_child(checkout: Path, args: argparse.Namespace) -> dict[str, Any]:
    done = subprocess.run(
        _child_command(checkout, args), cwd=checkout, env=_environment(), capture_output=True, text=True, check=True
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def mann_whitney_p(a: Sequence[float], b: Sequence[float]) -> float:
    """Exact two-sided p of the Mann-Whitney U test (no ties assumed): every split of the pooled values."""
    pooled = [*a, *b]
    ranks = {value: rank for rank, value in enumerate(sorted(pooled))}
    observed = sum(ranks[value] for value in a)
    mean = len(a) * (len(pooled) - 1) / 2
    sums = [sum(split) for split in itertools.combinations(range(len(pooled)), len(a))]
    return sum(abs(s - mean) >= abs(observed - mean) for s in sums) / len(sums)


def compare_cpu(checkouts: Sequence[Path], args: argparse.Namespace) -> None:
    """Interleaved fresh processes per checkout; median CPU per report, spread, and the ratio to the first."""
    runs: dict[Path, list[dict[str, Any]]] = {checkout: [] for checkout in checkouts}
    for _ in range(args.processes):
        for checkout in checkouts:
            runs[checkout].append(_run_child(checkout, args))
    print(
        f"{args.projects} sample projects (seed {args.seed}) x 5 modules after {args.warmup} others, "
        f"{args.processes} processes per checkout, interleaved; CPU per report (time.process_time)"
    )
    first = [run["cpu_us_per_report"] for run in runs[checkouts[0]]]
    for checkout, results in runs.items():
        values = [run["cpu_us_per_report"] for run in results]
        median = statistics.median(values)
        line = f"  {checkout}: median {median:7.1f} us  (min {min(values):.1f}, max {max(values):.1f})"
        if checkout != checkouts[0]:
            change = median / statistics.median(first) - 1
            line += f"  {change:+.1%} vs the first, Mann-Whitney p = {mann_whitney_p(first, values):.3f}"
        print(line)
        modules = {
            name: tuple(
                statistics.median(run["modules"][name][part] for run in results) for part in ("compute_us", "render_us")
            )
            for name in results[0]["modules"]
        }
        print(
            "    "
            + "  ".join(f"{name} {c:.0f}+{r:.0f}" for name, (c, r) in modules.items())
            + "  (compute+render us of CPU)"
        )


def _instructions(checkout: Path, args: argparse.Namespace) -> tuple[int, int]:
    """(instructions of the measured passes, reports made) of one child under callgrind (the child calls the
    markers, ``os.getppid()`` and ``os.getpgrp()``, just before and just after its measured projects)."""
    from zerosite.benchmarking.instructions import count_marked_run

    with tempfile.TemporaryDirectory(prefix="report-cpu-") as tmp:
        command = _child_command(checkout, args, split=False)
        total, printed = count_marked_run(command, _environment(), Path(tmp), cwd=checkout)
        return total, json.loads(printed)["reports"]


def compare_instructions(checkouts: Sequence[Path], args: argparse.Namespace) -> None:
    """Instructions per report of each checkout, and the change against the first."""
    print(f"{args.projects} sample projects (seed {args.seed}) x 5 modules after {args.warmup} others; callgrind Ir")
    first = None
    for checkout in checkouts:
        total, reports = _instructions(checkout, args)
        per_report = total / reports
        first = first or per_report
        change = "" if per_report == first else f"  {per_report / first - 1:+.2%} vs the first"
        print(f"  {checkout}: {per_report:,.0f} instructions per report ({reports} reports){change}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkouts", nargs="*", type=Path, help="checkouts to compare, each with a .venv")
    parser.add_argument("--projects", type=int, default=200, help="measured sample projects (default 200)")
    parser.add_argument("--seed", type=int, default=0, help="their seed (default 0); the warm-up's is seed + 1")
    parser.add_argument("--warmup", type=int, default=20, help="other sample projects made first (default 20)")
    parser.add_argument("--processes", type=int, default=6, help="processes per checkout (CPU time)")
    parser.add_argument("--instructions", action="store_true", help="count instructions under callgrind instead")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--no-split", dest="split", action="store_false", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.projects, args.seed, args.warmup, args.split)))
        return 0
    checkouts = [path.resolve() for path in args.checkouts] or [Path.cwd()]
    if args.instructions:
        compare_instructions(checkouts, args)
    else:
        compare_cpu(checkouts, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
