"""Time zerosite's strategies against hand-written code, interleaved, each run in a fresh process.

    python bench/contenders.py --projects 1000 --rounds 3
    python bench/contenders.py --tree /path/to/other/checkout   # also that checkout's code, side by side

Each round runs every contender once (in a rotating order), each in a new interpreter: the projects
are made and parsed first, then the clock runs from the contender's start (pool start included) to its
last report. Printed: ms per report (median over rounds, and the range), the ratio to the bare loop in
the same round (median), CPU per report (the process's own and its children's; and the kernel's part of it,
system time, which an instruction count leaves out), and the parent's share of the CPU under each contender
with several workers, the hand-written ones too.

    python bench/contenders.py --instructions --projects 100 --rounds 1

counts instructions instead (callgrind, every process of a contender, the same from run to run): the parent's
from the contender's start to its last report, each worker's from its fork (or its start, for a worker that
is a new program) to its end. The SHA-256 of each report file is counted apart: under valgrind it runs
OpenSSL's portable code (valgrind lacks the CPU's SHA instructions), several times its native cost.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

DEFAULT_CONTENDERS = ("bare", "sequential", "process", "async", "pool", "joblib")


def _cpu_s(who: int) -> tuple[float, float]:
    """The CPU time of ``who`` so far: all of it, and the kernel's part (system time, which callgrind does not
    count: files made and renamed, the index's writes, the pool's pipes)."""
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime, usage.ru_stime


def _used_since(who: int, before: tuple[float, float]) -> tuple[float, float]:
    now = _cpu_s(who)
    return now[0] - before[0], now[1] - before[1]


def run_one(name: str, projects: int, workers: int, out: Path, counting_clocks: bool = False) -> dict[str, Any]:
    """Run one contender in this process and measure it (the child's side). ``counting_clocks``: for a count of
    instructions, the clocks the engine reads become counters (as the harness's driver does), so that what the
    engine does by the clock (it commits its index every 1,000 rows or every second) does not depend on how much
    valgrind slows the run down; the times measured are then meaningless."""
    from zerosite.benchmarking.contenders import contender
    from zerosite.benchmarking.workloads import scenario_projects

    if counting_clocks:
        from zerosite.benchmarking.instructions_driver import use_counting_clocks

        use_counting_clocks()
    chosen = contender(name, workers)
    batch = scenario_projects(projects)
    self_before, children_before = _cpu_s(resource.RUSAGE_SELF), _cpu_s(resource.RUSAGE_CHILDREN)
    os.getppid()  # instructions.START_MARKER: callgrind dumps here under --instructions
    started = time.perf_counter()
    reports = chosen.run(batch, out, chosen.workers)
    wall_s = time.perf_counter() - started
    os.getpgrp()  # instructions.STOP_MARKER
    self_cpu_s, self_sys_s = _used_since(resource.RUSAGE_SELF, self_before)
    if name == "joblib":  # loky keeps its workers for reuse: end them so that their CPU time is counted
        from joblib.externals.loky import get_reusable_executor

        get_reusable_executor().shutdown(wait=True)
    children_cpu_s, children_sys_s = _used_since(resource.RUSAGE_CHILDREN, children_before)
    return {
        "name": name,
        "description": chosen.description,
        "wall_s": wall_s,
        "reports": reports,
        "self_cpu_s": self_cpu_s,
        "children_cpu_s": children_cpu_s,
        "system_cpu_s": self_sys_s + children_sys_s,
    }


_SHA256 = re.compile(r"^\s*([\d,]+) .*\bSHA256_Update\b", re.MULTILINE)


def _spawn(python: str, name: str, args: argparse.Namespace) -> dict[str, Any]:
    out = Path(tempfile.mkdtemp(prefix=f"contender-{name}-", dir=args.scratch))
    counts = Path(tempfile.mkdtemp(prefix=f"callgrind-{name}-")) if args.instructions else None
    try:
        command = [python, __file__, "--one", name, "--projects", str(args.projects), "--workers", str(args.workers)]
        env = None
        if counts is not None:
            # A native run first compiles every module the contender imports into a bytecode cache of the run's
            # own, as the harness does, so that the count holds no compiling.
            from zerosite.benchmarking.instructions import own_bytecode_cache

            env = own_bytecode_cache(os.environ, counts) | {"PYTHONHASHSEED": "0"}
            warm = [python, __file__, "--one", name, "--projects", "2", "--workers", str(args.workers)]
            warm.append("--counting-clocks")
            subprocess.run([*warm, "--out", str(out / "warm-up")], capture_output=True, check=True, env=env)
            shutil.rmtree(out / "warm-up", ignore_errors=True)
            command = [*_valgrind(counts), *command, "--counting-clocks"]
            env["PYTHONDONTWRITEBYTECODE"] = "1"
        done = subprocess.run([*command, "--out", str(out)], capture_output=True, text=True, check=False, env=env)
        if done.returncode != 0:
            raise SystemExit(f"{name} ({python}) failed with exit code {done.returncode}:\n{done.stderr}")
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        if counts is not None:
            result |= count_dumps(counts)
        return result
    finally:
        shutil.rmtree(out, ignore_errors=True)
        if counts is not None:
            shutil.rmtree(counts, ignore_errors=True)


def _valgrind(folder: Path) -> list[str]:
    # Imported here, not at the top: a contender's own process may run another checkout's zerosite (--tree).
    from zerosite.benchmarking.instructions import callgrind_command, valgrind_unavailable

    reason = valgrind_unavailable()
    if reason is not None:
        raise SystemExit(f"--instructions: {reason}")
    # A forked worker's count starts at its fork, not with its parent's past.
    return callgrind_command(folder / "cg.%p", "--trace-children=yes", "--dump-before=fork")


def count_dumps(folder: Path) -> dict[str, int]:
    """Instructions of one contender from its callgrind dumps (``cg.<pid>[.<part>]``): the parent's (the first
    process) from its start marker to its stop marker, every other process's whole; and of those, SHA-256's."""
    from zerosite.benchmarking.instructions import START_MARKER, STOP_MARKER, read_dump

    dumps: dict[int, list[tuple[int, str, int, Path]]] = {}
    for path in folder.glob("cg.*"):
        dump = read_dump(path)
        pid = int(path.name.removeprefix("cg.").partition(".")[0])
        dumps.setdefault(pid, []).append((dump.part, dump.trigger, dump.instructions, path))
    mine = sorted(dumps.pop(min(dumps)))
    triggers = [trigger for _, trigger, _, _ in mine]
    if START_MARKER not in triggers or STOP_MARKER not in triggers:
        raise SystemExit(f"callgrind dumps in {folder} have no start or stop marker of the measured run")
    stop = len(triggers) - triggers[::-1].index(STOP_MARKER)
    region = mine[triggers.index(START_MARKER) + 1 : stop]
    children = [dump for parts in dumps.values() for dump in parts]
    return {
        "parent_instructions": sum(instructions for _, _, instructions, _ in region),
        "children_instructions": sum(instructions for _, _, instructions, _ in children),
        "sha256_instructions": sum(_sha256_of(path) for *_, path in region + children),
    }


def _sha256_of(path: Path) -> int:
    """The instructions inside OpenSSL's SHA-256 in one callgrind dump (``callgrind_annotate``, inclusive)."""
    annotated = subprocess.run(
        ["callgrind_annotate", "--inclusive=yes", "--threshold=100", str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found = _SHA256.search(annotated)
    return int(found[1].replace(",", "")) if found else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--projects", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--contenders", default=",".join(DEFAULT_CONTENDERS), help="comma-separated names")
    parser.add_argument("--tree", action="append", default=[], help="another checkout to run too (its .venv)")
    parser.add_argument("--scratch", default=None, help="folder for the output (default: the system's temp)")
    parser.add_argument("--json", dest="json_path", default=None, help="also write every measurement here")
    parser.add_argument("--instructions", action="store_true", help="count instructions under callgrind instead")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--counting-clocks", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.scratch:
        Path(args.scratch).mkdir(parents=True, exist_ok=True)
    if args.one:
        print(json.dumps(run_one(args.one, args.projects, args.workers, Path(args.out), args.counting_clocks)))
        return

    names = [n for n in args.contenders.split(",") if n]
    from zerosite.benchmarking.checkouts import pythons as checkout_pythons

    pythons = checkout_pythons(args.tree)
    runs: list[dict[str, Any]] = []
    for round_number in range(args.rounds):
        shift = round_number % len(names)
        for name in names[shift:] + names[:shift]:
            for tree, python in pythons.items():
                result = _spawn(python, name, args) | {"tree": tree, "round": round_number}
                runs.append(result)
                if args.json_path:  # after every run: a long measurement can be read while it goes on
                    Path(args.json_path).write_text(json.dumps(runs, indent=1))
                if args.instructions:  # its clocks were counters: no time to tell
                    print(f"round {round_number + 1}: {tree} {name}: counted", file=sys.stderr)
                    continue
                wall, cpu = (result[k] / result["reports"] * 1e3 for k in ("wall_s", "self_cpu_s"))
                children = result["children_cpu_s"] / result["reports"] * 1e3
                print(
                    f"round {round_number + 1}: {tree} {name}: {wall:.3f} ms/report, "
                    f"CPU {cpu:.3f} + {children:.3f} ms/report",
                    file=sys.stderr,
                )
    for tree in pythons:
        mine = [r for r in runs if r["tree"] == tree]
        if args.instructions:
            _instruction_table(tree, mine, names, args)
        else:
            _table(tree, mine, names, args)


def _table(tree: str, runs: list[dict[str, Any]], names: list[str], args: argparse.Namespace) -> None:
    print(f"\n{tree}: {args.projects} projects, {args.workers} workers, {args.rounds} rounds ({os.cpu_count()} CPUs)")
    print(
        "| contender | ms per report (median) | range | vs bare loop | CPU ms per report (self + children) "
        "| of it, the kernel's |"
    )
    print("|---|---|---|---|---|---|")
    medians: dict[str, float] = {}
    for name in names:
        mine = [r for r in runs if r["name"] == name]
        per_report = [r["wall_s"] / r["reports"] * 1e3 for r in mine]
        medians[name] = statistics.median(per_report)
        ratios = _paired(runs, name, "bare")
        ratio = f"{statistics.median(ratios):.2f}x" if ratios else "-"
        cpu = statistics.median((r["self_cpu_s"] + r["children_cpu_s"]) / r["reports"] * 1e3 for r in mine)
        own = statistics.median(r["self_cpu_s"] / r["reports"] * 1e3 for r in mine)
        spread = f"{min(per_report):.3f}-{max(per_report):.3f}"
        cpu_split = f"{cpu:.3f} ({own:.3f} + {cpu - own:.3f})"
        kernel = statistics.median(r["system_cpu_s"] / r["reports"] * 1e3 for r in mine)
        print(f"| {mine[0]['description']} | {medians[name]:.3f} | {spread} | {ratio} | {cpu_split} | {kernel:.3f} |")
    for name in ("process", "async", "pool", "joblib"):  # the hand-written pools' too: what a parent costs anyway
        mine = [r for r in runs if r["name"] == name]
        if mine:
            shares = [r["self_cpu_s"] / (r["self_cpu_s"] + r["children_cpu_s"]) for r in mine]
            per_report_us = statistics.median(r["self_cpu_s"] / r["reports"] * 1e6 for r in mine)
            print(
                f"parent's CPU share under {mine[0]['description']}: median "
                f"{statistics.median(shares):.1%} (range {min(shares):.1%}-{max(shares):.1%}; "
                f"{per_report_us:.0f} us per report)"
            )
    ours = [n for n in ("process", "async") if n in medians]
    if ours:
        best = min(ours, key=medians.__getitem__)
        for rival in ("joblib", "pool"):
            if rival in medians:
                print(f"best of ours ({best}) vs {rival}: {_verdict(_paired(runs, best, rival), 'x')}")
    if "sequential" in medians and "bare" in medians:
        print(f"sequential vs bare loop: {_verdict(_paired(runs, 'sequential', 'bare'), '%')} time")


def _instruction_table(tree: str, runs: list[dict[str, Any]], names: list[str], args: argparse.Namespace) -> None:
    """Instructions per report of each contender (the first round's: the count does not vary), and the ratios."""
    print(f"\n{tree}: {args.projects} projects, {args.workers} workers; callgrind instructions per report")
    print("| contender | all (millions) | without SHA-256 | SHA-256 | parent | vs bare loop (without SHA-256) |")
    print("|---|---|---|---|---|---|")
    first = {r["name"]: r for r in runs if r["round"] == 0}
    reports = {name: first[name]["reports"] for name in names}
    sha = {name: first[name]["sha256_instructions"] / reports[name] for name in names}
    parent = {name: first[name]["parent_instructions"] / reports[name] for name in names}
    everything = {name: parent[name] + first[name]["children_instructions"] / reports[name] for name in names}
    without_sha = {name: everything[name] - sha[name] for name in names}
    for name in names:
        versus = f"{without_sha[name] / without_sha['bare'] - 1:+.1%}" if "bare" in without_sha else "-"
        print(
            f"| {first[name]['description']} | {everything[name] / 1e6:.3f} | {without_sha[name] / 1e6:.3f} | "
            f"{sha[name] / 1e6:.3f} | {parent[name] / 1e6:.3f} ({parent[name] / everything[name]:.1%}) | {versus} |"
        )
    for name in ("process", "async"):
        for rival in ("joblib", "pool"):
            if name in without_sha and rival in without_sha:
                extra = without_sha[name] / without_sha[rival] - 1
                print(f"{name} vs {rival}, instructions without SHA-256: {extra:+.1%}")


def _paired(runs: list[dict[str, Any]], name: str, rival: str) -> list[float]:
    """``rival``'s wall time over ``name``'s in each round both ran (above 1: ``name`` was faster). Contenders
    of one round run one after another, so a ratio leaves out most of this machine's drift from round to round."""
    theirs = {r["round"]: r["wall_s"] for r in runs if r["name"] == rival}
    return [theirs[r["round"]] / r["wall_s"] for r in runs if r["name"] == name and r["round"] in theirs]


def _verdict(ratios: list[float], form: str) -> str:
    """The median of per-round ratios, their range, and whether every round agreed (``x``: a speedup; ``%``: the
    extra time against the rival)."""
    if not ratios:
        return "-"

    def shown(ratio: float) -> str:
        return f"{ratio:.2f}x" if form == "x" else f"{1 / ratio - 1:+.1%}"

    ahead = sum(ratio > 1 for ratio in ratios)
    agreed = {0: "behind in every round", len(ratios): "ahead in every round"}.get(
        ahead, f"not resolved: ahead in {ahead} of {len(ratios)} rounds"
    )
    low, high = (min(ratios), max(ratios)) if form == "x" else (max(ratios), min(ratios))
    return f"{shown(statistics.median(ratios))} (rounds {shown(low)} to {shown(high)}; {agreed})"


if __name__ == "__main__":
    main()
