"""Count the instructions the engine's parent spends on each report, with the workers' results replayed.

    python bench/parent_replay.py
    python bench/parent_replay.py --tree /path/to/other/checkout   # that checkout's code too (its .venv)

Each project's results are made first, by a worker in the same process, and pickled ten projects to a chunk as a
pool hands them back. Then, under callgrind, ``generate`` runs with a runner that unpickles the chunks and yields
their results: the parent's whole path for a report (unpickling, the index with its search rows, the tally) without
the pool's threads and pipes, counted in about a minute where ``bench/contenders.py --instructions`` takes ten.
Printed: the count at 100 and at 400 projects, and the margin, the difference over the 1,500 reports between them,
which leaves out what a batch pays once (opening the index, the plan).

    python bench/parent_replay.py --large 2000,6000

runs the same replay natively at those sizes instead, where the index's own growth shows (its indexes and search
rows outgrow what one commit touches): the parent's CPU a report, timed, and the bytes it wrote a report (the
index: its write-ahead log and the checkpoints into the database; ``/proc/self/io``), which do not move with the
machine's speed.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

SIZES = (100, 400)
CHUNK = 10


def replay(projects: int, out: Path, counting_clocks: bool = False) -> None:
    """Make and pickle the results of ``projects`` projects, then count ``generate`` replaying them (the child).
    ``counting_clocks`` (for a count): the engine's clocks become counters, so that its commits every second do not
    come as often as valgrind's slowdown makes them."""
    if counting_clocks:
        from zerosite.benchmarking.instructions_driver import use_counting_clocks

        use_counting_clocks()
    from zerosite.benchmarking.workloads import scenario_projects
    from zerosite.engine import BatchOptions, generate, plan_batch
    from zerosite.files import ReportFiles
    from zerosite.project import Project
    from zerosite.types import PluginSettings, ProjectResult, Runner
    from zerosite.worker import make_worker

    batch = scenario_projects(projects)
    shutil.rmtree(out, ignore_errors=True)  # a fresh folder and index each run (the native run first used it)
    out.mkdir(parents=True)
    options = BatchOptions(out=out.resolve(), plugins=PluginSettings())
    chosen = plan_batch(options)
    worker, files = make_worker(chosen.config), ReportFiles(out.resolve())
    chunks = [
        pickle.dumps([worker.run(p, files) for p in batch[i : i + CHUNK]], protocol=pickle.HIGHEST_PROTOCOL)
        for i in range(0, len(batch), CHUNK)
    ]

    class Replay(Runner):
        def run(self, projects: Iterable[Project], files: Any = None) -> Iterator[ProjectResult]:
            wanted = iter(projects)
            for chunk in chunks:
                for _ in range(CHUNK):
                    next(wanted, None)  # read the input as a pool runner would
                yield from pickle.loads(chunk)

    import gc

    from zerosite.benchmarking.instructions import START_MARKER, STOP_MARKER

    gc.collect()
    written_before, cpu_before = _written_bytes(), time.process_time()
    getattr(os, START_MARKER)()
    summary = generate(batch, options, runner=Replay(), batch_plan=chosen)
    getattr(os, STOP_MARKER)()
    cpu_s, written = time.process_time() - cpu_before, _written_bytes() - written_before
    if summary.written != 5 * projects:
        raise SystemExit(f"expected {5 * projects} reports written, got {summary.written}")
    print(json.dumps({"reports": summary.written, "cpu_s": cpu_s, "written_bytes": written}))


def _written_bytes() -> int:
    """The bytes this process has handed to write calls so far (``wchar``: its files, whatever the disk cache did)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    raise SystemExit("/proc/self/io has no wchar line: --large needs Linux")


def _count(python: str, projects: int) -> int:
    from zerosite.benchmarking.instructions import InstructionCountError, count_marked_run

    with tempfile.TemporaryDirectory(prefix="parent-replay-") as tmp:
        command = [python, __file__, "--one", str(projects), "--out", str(Path(tmp) / "out"), "--counting-clocks"]
        try:
            return count_marked_run(command, os.environ, Path(tmp))[0]
        except InstructionCountError as error:
            raise SystemExit(str(error)) from None


def _measure(python: str, projects: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="parent-replay-") as tmp:
        command = [python, __file__, "--one", str(projects), "--out", str(Path(tmp) / "out")]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"the replay of {projects} projects failed:\n{done.stderr}")
        measured: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        return measured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--counting-clocks", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tree", help="another checkout to count too (its .venv)")
    parser.add_argument("--large", help="comma-separated sizes (projects): time them natively, with bytes written")
    args = parser.parse_args()
    if args.one is not None:
        replay(args.one, args.out, args.counting_clocks)
        return
    from zerosite.benchmarking.checkouts import pythons

    trees = list(pythons([args.tree] if args.tree else []).items())
    if args.large:
        for name, python in trees:
            for projects in map(int, args.large.split(",")):
                found = _measure(python, projects)
                cpu_s, written = (found[k] / found["reports"] for k in ("cpu_s", "written_bytes"))
                print(f"{name}: {projects:,} projects: {cpu_s * 1e6:.1f} us of CPU a report, ", end="")
                print(f"{written:,.0f} bytes written a report")
        return
    for name, python in trees:
        small, large = (_count(python, n) for n in SIZES)
        margin = (large - small) / (5 * (SIZES[1] - SIZES[0]))
        print(f"{name}: {small:,} instructions at {SIZES[0]} projects, {large:,} at {SIZES[1]}; ", end="")
        print(f"{margin:,.0f} a report at the margin")


if __name__ == "__main__":
    main()
