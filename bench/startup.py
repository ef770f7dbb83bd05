"""Measure what starting zerosite costs: whole commands in fresh processes, against the bare interpreter.

    python bench/startup.py                        # timed: median wall and CPU of 10 runs of each command
    python bench/startup.py --instructions         # counted under callgrind instead (the same from run to run)
    python bench/startup.py --tree /path/to/other/checkout   # that checkout's code too, side by side (its .venv)

A batch pays its start once, and ``bench/contenders.py`` times a batch from its first report, so start-up is
measured here: what a user waits for before the first report of a small batch, and what each worker a new program
starts (``--start-method spawn``, a Dask worker) pays again. Each command runs as ``python -m zerosite ...`` in a
new interpreter, its bytecode written first (a cache of the run's own, as the other bench scripts do), in an empty
folder: the current one would put its own ``zerosite`` (and ``./plugins``) before the measured checkout's.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

COMMANDS: dict[str, list[str]] = {
    "the interpreter alone": ["-c", "pass"],
    "zerosite --version": ["-m", "zerosite", "--version"],
    "zerosite modules": ["-m", "zerosite", "modules"],
    "generate, 1 project": ["-m", "zerosite", "generate", "--sample", "1", "-s", "sequential", "-q", "--out", "{out}"],
}


def _command(python: str, name: str, tmp: Path) -> list[str]:
    return [python, *(part.replace("{out}", str(tmp / "out")) for part in COMMANDS[name])]


def timed(python: str, name: str, runs: int) -> tuple[float, float]:
    """The median wall time and median CPU time (user and system) of ``runs`` fresh runs, in ms."""
    from zerosite.benchmarking.instructions import own_bytecode_cache

    walls: list[float] = []
    cpus: list[float] = []
    with tempfile.TemporaryDirectory(prefix="startup-") as folder:
        tmp = Path(folder)
        env = own_bytecode_cache(os.environ, tmp)
        subprocess.run(_command(python, name, tmp), cwd=tmp, env=env, capture_output=True, check=True)  # bytecode
        for run in range(runs):
            command = _command(python, name, tmp / str(run))
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            started = time.perf_counter()
            subprocess.run(command, cwd=tmp, env=env, capture_output=True, check=True)
            walls.append((time.perf_counter() - started) * 1e3)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpus.append((after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) * 1e3)
    return statistics.median(walls), statistics.median(cpus)


def counted(python: str, name: str) -> int:
    """The instructions of one run of the command, start to exit."""
    from zerosite.benchmarking.instructions import InstructionCountError, count_whole_run

    with tempfile.TemporaryDirectory(prefix="startup-") as folder:
        tmp = Path(folder)
        try:
            return count_whole_run(_command(python, name, tmp), os.environ, tmp, cwd=tmp)[0]
        except InstructionCountError as error:
            raise SystemExit(str(error)) from None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="timed runs of each command (default 10)")
    parser.add_argument("--instructions", action="store_true", help="count instructions under callgrind instead")
    parser.add_argument("--tree", action="append", default=[], help="another checkout to measure too (its .venv)")
    args = parser.parse_args()
    from zerosite.benchmarking.checkouts import pythons as checkout_pythons

    pythons = checkout_pythons(args.tree)
    for tree, python in pythons.items():
        print(f"{tree} ({python}):")
        floor: float | None = None
        for name in COMMANDS:
            if args.instructions:
                count = counted(python, name)
                floor = count if floor is None else floor
                print(f"  {name:24} {count:>14,} instructions   {count - floor:>+14,} over the interpreter")
            else:
                wall, cpu = timed(python, name, args.runs)
                floor = cpu if floor is None else floor
                over = cpu - floor
                print(f"  {name:24} {wall:8.1f} ms wall   {cpu:8.1f} ms CPU   {over:+8.1f} ms CPU over the interpreter")


if __name__ == "__main__":
    main()
