"""The least zerosite's extra work can cost a report: each part it does beyond the bare loop, timed alone, natively.

    python bench/floor.py                                 # 400 sample projects, 7 repeats, in a temporary folder
    python bench/floor.py --projects 200 --repeat 5 --scratch /dev/shm

Issue 9 asks zerosite sequential to come within 5 % of a bare loop (compute, render, write a file) and process x 2 to
match a hand-written pool that does the same. Zerosite also hashes each file (SHA-256, for ``--verify`` and
``publish``), hashes each project's input (resume, the cache), writes each file atomically (a temporary file, then
a rename) and indexes each report (a row, its search terms). This script makes one batch with zerosite's own worker
(``worker.make_worker``, ``Worker.run`` into ``files.ReportFiles``), then times each of those parts over the
batch's real reports on its own, in this process, the least of ``--repeat`` interleaved repeats, against the bare
loop's time for the same projects: what the parts add up to is a floor under zerosite's extra cost, before any of
the engine's bookkeeping. ``bench/overhead.py`` counts the same parts by instructions, inside whole batches.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

PARTS: dict[str, str] = {
    "file-hash": "the SHA-256 of each file written",
    "atomic-write": "the atomic write, less a plain open, write, close (its SHA-256 aside)",
    "input-hash": "the input hash (a project's, shared by its reports)",
    "index": "the index: each report's row and search terms, committed",
}


def _timed(run: Callable[[], object]) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def measure(projects: int, repeat: int, scratch: Path) -> tuple[int, float, dict[str, float]]:
    """The reports made, the bare loop's seconds a report, and each part's (the least of ``repeat`` repeats)."""
    from zerosite.benchmarking.contenders import make_by_hand, module_tools
    from zerosite.benchmarking.workloads import scenario_projects
    from zerosite.engine import BatchOptions, plan_batch
    from zerosite.files import ReportFiles
    from zerosite.store import ReportStore, utc_now
    from zerosite.types import PluginSettings
    from zerosite.worker import input_hashes, make_worker

    batch = scenario_projects(projects)
    made = scratch / "made"
    made.mkdir()
    plan = plan_batch(BatchOptions(out=made, strategy="sequential", plugins=PluginSettings()))
    worker = make_worker(plan.config)
    results = [worker.run(project, ReportFiles(made.resolve())) for project in batch]
    written = [(r.project_id, report) for r in results for report in r.reports if report.written is not None]
    failed = [report.error for r in results for report in r.reports if report.written is None]
    if failed:
        raise SystemExit(f"{len(failed)} reports of the sample batch failed, the first with: {failed[0]}")
    data = [Path(report.written.location).read_bytes() for _, report in written]  # type: ignore[union-attr]
    texts = [d.decode("utf-8") for d in data]
    keys = plan.config.input_keys
    module_tools()  # the bare loop's modules and templates, loaded before it is timed
    numbers = itertools.count()

    def fresh(name: str) -> Path:
        return scratch / f"{name}-{next(numbers)}"

    def bare() -> None:
        out = fresh("bare")
        for project in batch:
            make_by_hand(project, out)

    def plain_writes() -> None:
        out = fresh("plain")
        folders: set[str] = set()
        for (project_id, report), text in zip(written, texts, strict=True):
            folder = f"{out}/{project_id}"
            if project_id not in folders:
                os.makedirs(folder, exist_ok=True)
                folders.add(project_id)
            with open(f"{folder}/{report.module}.html", "wb") as handle:
                handle.write(text.encode("utf-8"))  # as the bare loop and ReportFiles.write do

    def atomic_writes() -> None:
        out = fresh("atomic")
        out.mkdir()
        files = ReportFiles(out.resolve())
        for (project_id, report), text in zip(written, texts, strict=True):
            files.write(project_id, report.module, text)

    def file_hashes() -> None:
        for blob in data:
            hashlib.sha256(blob).hexdigest()

    def project_hashes() -> None:
        for project in batch:
            input_hashes(project, keys)

    def index() -> None:
        # The files lie in ``made``: the index's paths take their usual, relative form. A new index file each time.
        with ReportStore(made, db_path=fresh("index").with_suffix(".sqlite")) as store:
            for result in results:
                store.record_result(result, [report.input_hash for report in result.reports], utc_now())
            store.flush()

    runs: dict[str, Callable[[], object]] = {
        "bare": bare,
        "plain": plain_writes,
        "atomic": atomic_writes,
        "file-hash": file_hashes,
        "input-hash": project_hashes,
        "index": index,
    }
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(repeat):  # interleaved: a slow moment of the machine falls on every part alike
        for name, run in runs.items():
            best[name] = min(best[name], _timed(run))
            for leftover in scratch.glob(f"{name}-*"):
                if leftover.is_dir():
                    shutil.rmtree(leftover)
                else:
                    leftover.unlink()
    reports = len(written)
    each = {name: seconds / reports for name, seconds in best.items()}
    parts = {
        "file-hash": each["file-hash"],
        "atomic-write": each["atomic"] - each["file-hash"] - each["plain"],
        "input-hash": each["input-hash"],
        "index": each["index"],
    }
    return reports, each["bare"], parts


def table(reports: int, bare_s: float, parts: dict[str, float], emit: Callable[[str], None] = print) -> None:
    emit(f"{reports} reports; the bare loop: {bare_s * 1e6:.1f} us a report")
    emit("| part | us a report | of the bare loop's report |")
    emit("|---|---|---|")
    for name, seconds in parts.items():
        emit(f"| {PARTS[name]} | {seconds * 1e6:.1f} | {seconds / bare_s:+.1%} |")
    total = sum(parts.values())
    emit(f"| all of them: the floor | {total * 1e6:.1f} | {total / bare_s:+.1%} |")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--projects", type=int, default=400)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--scratch", type=Path, default=None, help="where to write (default: a temporary folder)")
    args = parser.parse_args(argv)
    if args.scratch is not None:
        args.scratch.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="floor-", dir=args.scratch))
    try:
        table(*measure(args.projects, args.repeat, scratch))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
