"""Profiles per strategy: py-spy flamegraph SVG and speedscope JSON (worker processes followed), else cProfile."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PY_SPY_FORMATS", "ProfileFile", "main", "profile_strategies", "profile_strategy", "run_batch"]

PY_SPY_FORMATS: dict[str, str] = {"flamegraph": "svg", "speedscope": "speedscope.json"}
"""py-spy output format -> file suffix."""


@dataclass(frozen=True)
class ProfileFile:
    """One profile written: what it shows, where, which tool made it."""

    label: str
    path: Path
    tool: str


def _driver(strategy: str, workers: int, projects: int) -> list[str]:
    """The command that runs one small batch (the profiled program)."""
    return [
        sys.executable,
        "-m",
        "zerosite.benchmarking.profiling",
        "run",
        "--strategy",
        strategy,
        "--workers",
        str(workers),
        "--projects",
        str(projects),
    ]


def _environment() -> dict[str, str]:
    """This environment, with the folder that holds ``zerosite`` on PYTHONPATH (works from a checkout)."""
    import zerosite

    root = str(Path(zerosite.__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    return env


def _py_spy(command: list[str], fmt: str, output: Path, rate: int) -> str | None:
    """Run ``command`` under ``py-spy record --subprocesses``; None on success, else why it failed."""
    py_spy = shutil.which("py-spy")
    if py_spy is None:
        return "py-spy is not installed"
    args = [py_spy, "record", "--subprocesses", "--rate", str(rate), "--format", fmt, "-o", str(output), "--", *command]
    completed = subprocess.run(args, env=_environment(), capture_output=True, text=True, check=False)
    if completed.returncode != 0 or not output.exists():
        tail = (completed.stderr or completed.stdout).strip().splitlines()[-1:] or ["no output"]
        return f"py-spy failed (exit {completed.returncode}): {tail[0]}"
    return None


def _cprofile(command: list[str], output: Path) -> None:
    """Run ``command`` (a ``python -m`` driver) under cProfile; only the main process is seen."""
    runner = [command[0], "-m", "cProfile", "-o", str(output), *command[1:]]
    subprocess.run(runner, env=_environment(), check=True, capture_output=True)


def profile_strategy(
    strategy: str, workers: int, folder: Path, projects: int = 20, rate: int = 200
) -> list[ProfileFile]:
    """Profile one small batch under ``strategy``: a flamegraph and a speedscope file by py-spy;
    where py-spy is missing or cannot attach (no ptrace), a cProfile file and a warning instead."""
    folder.mkdir(parents=True, exist_ok=True)
    command = _driver(strategy, workers, projects)
    stem = f"{strategy}-workers={workers}"
    written: list[ProfileFile] = []
    for fmt, suffix in PY_SPY_FORMATS.items():
        output = folder / f"{stem}.{suffix}"
        why = _py_spy(command, fmt, output, rate)
        if why is not None:
            fallback = folder / f"{stem}.prof"
            warnings.warn(
                f"profiling {stem}: {why}; falling back to cProfile ({fallback}, main process only)",
                RuntimeWarning,
                stacklevel=2,
            )
            try:
                _cprofile(command, fallback)
            except (OSError, subprocess.CalledProcessError) as error:
                warnings.warn(f"profiling {stem}: cProfile failed too: {error}", RuntimeWarning, stacklevel=2)
                return written
            return [ProfileFile(f"{stem} (cProfile, main process only)", fallback, "cProfile")]
        written.append(ProfileFile(f"{stem} ({fmt}, py-spy, workers included)", output, "py-spy"))
    return written


def profile_strategies(
    strategies: Sequence[tuple[str, int]], folder: Path, projects: int = 20, latency_ms: float = 0.0
) -> list[ProfileFile]:
    """Profiles for each ``(strategy, workers)`` (cpu scenario: embedded data source; ``latency_ms`` unused
    until the driver serves the HTTP source)."""
    del latency_ms
    return [f for strategy, workers in strategies for f in profile_strategy(strategy, workers, folder, projects)]


def run_batch(strategy: str, workers: int, projects: int) -> None:
    """The profiled program: ``projects`` sample projects written and indexed under ``strategy``."""
    from zerosite.benchmarking.cells import TIMES
    from zerosite.benchmarking.workloads import scenario_projects
    from zerosite.engine import BatchOptions, generate

    with tempfile.TemporaryDirectory(prefix="zerosite-profile-") as out:
        options = BatchOptions(out=Path(out), strategy=strategy, workers=workers, force=True)
        summary = generate(scenario_projects(projects), options)
    print(f"{strategy}{TIMES}{workers}: {summary.written} written, {summary.failed} failed in {summary.wall_s:.2f} s")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m zerosite.benchmarking.profiling record|run``: profiles per strategy, or the profiled batch."""
    parser = argparse.ArgumentParser(prog="python -m zerosite.benchmarking.profiling", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    record = commands.add_parser("record", help="profile strategies into a folder")
    record.add_argument(
        "--strategy",
        action="append",
        default=None,
        metavar="NAME[:WORKERS]",
        help="repeatable; default: every available strategy with 2 workers",
    )
    record.add_argument("--projects", type=int, default=20)
    record.add_argument("--out", type=Path, default=Path("reports/profiles"))
    run = commands.add_parser("run", help="run one batch (what record profiles)")
    run.add_argument("--strategy", default="sequential")
    run.add_argument("--workers", type=int, default=1)
    run.add_argument("--projects", type=int, default=20)
    args = parser.parse_args(argv)
    if args.command == "run":
        run_batch(args.strategy, args.workers, args.projects)
        return 0
    if args.strategy:
        chosen = [
            (name, int(n) if n else 1 if name == "sequential" else 2)
            for name, _, n in (s.partition(":") for s in args.strategy)
        ]
    else:
        from zerosite.plugins import get_strategies

        chosen = [
            (n, 1 if n == "sequential" else 2) for n, s in get_strategies().items() if s.unavailable_reason() is None
        ]
    for profile in profile_strategies(chosen, args.out, args.projects):
        print(f"{profile.label}: {profile.path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
