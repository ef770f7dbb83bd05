"""Time how a batch ends under zerosite's process pool and the hand-written pool, rounds interleaved.

    python bench/batch_tail.py --projects 1000 --rounds 8
    python bench/batch_tail.py --tree /path/to/other/checkout   # also that checkout's code, side by side

Each run, in a fresh process, notes the moment every worker finishes each of its chunks. Printed, per
contender (median over rounds, and the range): the serial tail, from the last chunk's end to the end of the
run (the results' last trip back, the last index commit, the pool's shutdown, the index closed), while every
worker is idle; and the spread of the workers' last chunk ends, how long the first worker to run out of work
waits for the last (a core idle for it). The whole run's time is printed too, but two contenders' tails differ
by milliseconds in runs of seconds that move by tens of percent: bench/contenders.py judges the whole.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# The functions each contender's workers run on a chunk of projects: wrapped, in the parent before the pool
# forks, to note when each call ends.
_CHUNK_FUNCTIONS = {"process": ("zerosite.strategies", "_run_chunk"), "pool": (None, "_make_chunk_by_hand")}


def run_one(name: str, projects: int, workers: int, out: Path, log: Path) -> dict[str, Any]:
    """Run one contender in this process, noting each chunk's end in ``log`` (one line per chunk)."""
    import importlib

    from zerosite.benchmarking import contenders
    from zerosite.benchmarking.workloads import scenario_projects

    module_name, function_name = _CHUNK_FUNCTIONS[name]
    module = importlib.import_module(module_name) if module_name else contenders
    function = getattr(module, function_name)

    def noted(*args: Any, **kwargs: Any) -> Any:
        result = function(*args, **kwargs)
        ended = time.monotonic()
        with open(log, "a") as handle:
            handle.write(f"{os.getpid()} {ended}\n")
        return result

    noted.__module__, noted.__qualname__ = function.__module__, function.__qualname__  # pickled by its name
    setattr(module, function_name, noted)
    chosen = contenders.contender(name, workers)
    batch = scenario_projects(projects)
    started = time.monotonic()
    chosen.run(batch, out, chosen.workers)
    ended = time.monotonic()
    if not log.exists():
        raise SystemExit(f"{name}: no chunk's end was noted: its workers were not forked from this process")
    ends = log.read_text().splitlines()
    last: dict[str, float] = {}
    for line in ends:
        pid, at = line.split()
        last[pid] = max(last.get(pid, 0.0), float(at))
    return {
        "name": name,
        "wall_ms": (ended - started) * 1e3,
        "serial_tail_ms": (ended - max(last.values())) * 1e3,
        "spread_ms": (max(last.values()) - min(last.values())) * 1e3,
        "chunks": len(ends),
    }


def _spawn(python: str, name: str, args: argparse.Namespace) -> dict[str, Any]:
    scratch = Path(tempfile.mkdtemp(prefix=f"tail-{name}-", dir=args.scratch))
    try:
        command = [python, __file__, "--one", name, "--projects", str(args.projects), "--workers", str(args.workers)]
        command += ["--out", str(scratch / "out"), "--log", str(scratch / "chunks.log")]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"{name} ({python}) failed with exit code {done.returncode}:\n{done.stderr}")
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        return result
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _median_range(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--projects", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--tree", action="append", default=[], help="another checkout to run too (its .venv)")
    parser.add_argument("--scratch", default=None, help="folder for the output (default: the system's temp)")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--log", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.scratch:
        Path(args.scratch).mkdir(parents=True, exist_ok=True)
    if args.one:
        print(json.dumps(run_one(args.one, args.projects, args.workers, Path(args.out), Path(args.log))))
        return

    from zerosite.benchmarking.checkouts import pythons as checkout_pythons

    pythons = checkout_pythons(args.tree)
    contenders = [*((tree, "process") for tree in pythons), ("this", "pool")]  # the pool: the same code everywhere
    runs: list[dict[str, Any]] = []
    for round_number in range(args.rounds):
        shift = round_number % len(contenders)
        for tree, name in contenders[shift:] + contenders[:shift]:
            result = _spawn(pythons[tree], name, args) | {"tree": tree}
            runs.append(result)
            print(
                f"round {round_number + 1}: {tree} {name}: serial tail {result['serial_tail_ms']:.1f} ms, "
                f"spread {result['spread_ms']:.1f} ms",
                file=sys.stderr,
            )
    print(f"{args.projects} projects, {args.workers} workers, {args.rounds} rounds; ms, median (range)")
    print("| checkout | contender | serial tail | spread of the workers' last chunk ends | chunks | whole run |")
    print("|---|---|---|---|---|---|")
    for tree, name in contenders:
        mine = [r for r in runs if (r["tree"], r["name"]) == (tree, name)]
        print(
            f"| {tree} | {name} | {_median_range([r['serial_tail_ms'] for r in mine])} "
            f"| {_median_range([r['spread_ms'] for r in mine])} | {mine[0]['chunks']} "
            f"| {_median_range([r['wall_ms'] for r in mine])} |"
        )


if __name__ == "__main__":
    main()
