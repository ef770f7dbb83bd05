"""Where zerosite sequential's instructions beyond a bare loop go: each part of its extra work switched off in turn.

    python bench/overhead.py                          # every part, at 40 and 160 projects
    python bench/overhead.py --parts index,search --projects 100,400 --jobs 1

Each run counts instructions under callgrind (the same from run to run) in a fresh process: the bare loop of
``bench/contenders.py`` (compute, render, write a file), zerosite sequential, and zerosite sequential with one part
of its extra work switched off. Each count is taken at the margin between two batch sizes, a report's share of
the difference, so that what a batch pays once (loading the modules, opening the index) drops out. A part's cost
is sequential's count less the count without it. Counts are exact whatever else runs, so they run side by side
(``--jobs``, default: one per CPU).

Switching a part off patches zerosite's own functions in the measured process: a measurement, not something
zerosite can be asked to do (a batch without its index would not be a batch). The reports are the same bytes.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import gc
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

PARTS: dict[str, str] = {
    "input-hash": "the input hash of each report (resume, the cache)",
    "file-hash": "the SHA-256 of each file written",
    "atomic-write": "the atomic write (instead: open, write, close, as the bare loop does)",
    "watch": "the Ctrl-C watch around each project",
    "index": "the index: each report's row, its search terms, the tally's statuses",
    "search": "the index's full-text search terms (part of the index)",
}

_WITHIN = {"search": "index"}
"""Parts that are part of another: left out of the sum that leaves the rest."""


def switch_off(part: str) -> None:
    """Patch ``part`` of zerosite sequential's work out of this process (see :data:`PARTS`)."""
    import zerosite.files as files
    import zerosite.store as store
    import zerosite.worker as worker

    patches: dict[str, tuple[object, str, object]] = {
        "input-hash": (worker, "input_hashes", lambda project, keys: dict.fromkeys((n for n, _ in keys), "0" * 64)),
        "file-hash": (files, "hashlib", _NoSha256),
        "atomic-write": (files.ReportFiles, "write", _plain_write),
        "watch": (worker, "watch_interrupts", _no_watch),
        "index": (store.ReportStore, "record_result", lambda self, result, *_: ["written"] * len(result.reports)),
        "search": (store, "_update_search", lambda conn, dropped, added: None),
    }
    if part not in patches:
        raise SystemExit(f"unknown part {part!r}; known: {', '.join(PARTS)}")
    owner, name, replacement = patches[part]
    setattr(owner, name, replacement)


class _NoSha256:
    """Stands in for ``hashlib`` in ``zerosite.files``: ``sha256(data)`` hashes nothing."""

    @staticmethod
    def sha256(data: bytes) -> Any:
        return _NoDigest()


class _NoDigest:
    def hexdigest(self) -> str:
        return "0" * 64


def _plain_write(self: Any, project_id: str, module: str, html: str) -> Any:
    """The bare loop's write (a folder made once a project, then open, write, close), with the file's hash."""
    import hashlib
    import time

    from zerosite.types import WrittenFile

    started = time.perf_counter_ns()
    folder = os.path.join(self.out_dir, project_id)
    if project_id not in self._folders:
        os.makedirs(folder, exist_ok=True)
        self._folders.add(project_id)
    path = os.path.join(folder, f"{module}.html")
    data = html.encode("utf-8")
    with open(path, "wb") as handle:
        handle.write(data)
    return WrittenFile(path, len(data), hashlib.sha256(data).hexdigest(), time.perf_counter_ns() - started)


@contextlib.contextmanager
def _no_watch() -> Iterator[Any]:
    from zerosite.pipeline import InterruptWatch

    yield InterruptWatch()


def run_one(run: str, projects: int, out: Path) -> None:
    """The measured process: a warm-up batch, then one of ``projects`` between the markers, into ``out/batch``."""
    from zerosite.benchmarking.contenders import contender
    from zerosite.benchmarking.instructions_driver import use_counting_clocks
    from zerosite.benchmarking.workloads import scenario_projects

    # Counters for clocks, as in the harness's driver: the index commits every 1,000 rows or every second, and under
    # valgrind's slowdown "every second" would come as often as the machine is busy.
    use_counting_clocks()
    shutil.rmtree(out, ignore_errors=True)  # an earlier run's index would make this one resume, not make
    name = "bare" if run == "bare" else "sequential"
    if run not in {"bare", "sequential"}:
        switch_off(run)
    chosen = contender(name, 1)
    chosen.run(scenario_projects(3, seed=9), out / "warm-up", 1)  # templates compiled, caches filled
    batch = scenario_projects(projects)
    gc.collect()
    os.getppid()  # instructions.START_MARKER
    chosen.run(batch, out / "batch", 1)
    os.getpgrp()  # instructions.STOP_MARKER


def count(run: str, projects: int) -> int:
    """Instructions of one run of ``projects`` between its markers, in a fresh process under callgrind."""
    from zerosite.benchmarking.instructions import count_marked_run

    folder = Path(tempfile.mkdtemp(prefix=f"overhead-{run}-"))
    quiet = folder / "cwd"  # an empty working folder: importlib.metadata lists it, and the count follows
    quiet.mkdir()
    try:
        # The same arguments for the native run and the counted one (the count follows the argument vector).
        command = [sys.executable, os.path.abspath(__file__), "--one", run, "--projects", str(projects)]
        instructions, _ = count_marked_run([*command, "--out", "out"], os.environ, folder, cwd=quiet)
        return instructions
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def at_margin(run: str, small: int, large: int, reports_per_project: int = 5) -> int:
    """Instructions a report of ``run`` between batches of ``small`` and ``large`` projects."""
    return round((count(run, large) - count(run, small)) / ((large - small) * reports_per_project))


def table(counts: dict[str, int], parts: list[str], emit: Callable[[str], None] = print) -> None:
    """The breakdown: each run's count, and what each part costs a report. Under callgrind the files' SHA-256 runs
    OpenSSL's portable code (valgrind lacks the CPU's SHA instructions), several times its native cost, so where
    it was switched off too the shares are of the gap without it, and the rest is what no part named holds."""
    bare, sequential = counts["bare"], counts["sequential"]
    without_sha = counts.get("file-hash")
    gap = sequential - bare if without_sha is None else without_sha - bare
    emit(f"| run | instructions a report | vs bare loop | the part's cost | share of the gap ({gap:,}) |")
    emit("|---|---|---|---|---|")
    emit(f"| bare loop | {bare:,} | | | |")
    emit(f"| zerosite sequential | {sequential:,} | {sequential / bare - 1:+.1%} | | |")
    named = 0
    for part in parts:
        cost = sequential - counts[part]
        share = "" if part == "file-hash" and without_sha is not None else f"{cost / gap:.0%}"
        emit(f"| without {PARTS[part]} | {counts[part]:,} | {counts[part] / bare - 1:+.1%} | {cost:,} | {share} |")
        if part != "file-hash" and part not in _WITHIN:
            named += cost
    if without_sha is not None:
        emit(f"| the rest: what no part above holds | | | {gap - named:,} | {(gap - named) / gap:.0%} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--projects", default="40,160", help="the two batch sizes, SMALL,LARGE")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of: {', '.join(PARTS)}")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="counts at once (default: the CPUs)")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        run_one(args.one, int(args.projects), Path(args.out))
        return
    small, large = (int(n) for n in args.projects.split(","))
    parts = [p for p in args.parts.split(",") if p]
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        raise SystemExit(f"unknown part(s) {', '.join(unknown)}; known: {', '.join(PARTS)}")
    runs = ["bare", "sequential", *parts]
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:  # each count is a process of its own
        counted = {run: pool.submit(at_margin, run, small, large) for run in runs}
        counts = {run: future.result() for run, future in counted.items()}
    for run in runs:
        print(f"{run}: {counts[run]:,} instructions a report", file=sys.stderr)
    table(counts, parts)


if __name__ == "__main__":
    main()
