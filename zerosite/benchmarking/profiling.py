"""Profiles per strategy: py-spy flamegraph SVG and speedscope JSON (worker processes followed), else cProfile."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PY_SPY_FORMATS", "ProfileFile", "profile_strategies", "profile_strategy"]

PY_SPY_FORMATS: dict[str, str] = {"flamegraph": "svg", "speedscope": "speedscope.json"}
"""py-spy output format -> file suffix."""


@dataclass(frozen=True)
class ProfileFile:
    """One profile written: what it shows, where, which tool made it."""

    label: str
    path: Path
    tool: str


def _driver(strategy: str, workers: int, projects: int, out: Path) -> list[str]:
    """The profiled program: the real ``zerosite generate`` a user runs, on sample projects."""
    return [
        sys.executable,
        "-m",
        "zerosite",
        "generate",
        "--sample",
        str(projects),
        "--strategy",
        strategy,
        "--workers",
        str(workers),
        "--out",
        str(out),
        "--force",
        "--quiet",
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
    scratch = tempfile.TemporaryDirectory(prefix="zerosite-profile-")
    with scratch:
        return _profile(
            _driver(strategy, workers, projects, Path(scratch.name)), f"{strategy}-workers={workers}", folder, rate
        )


def _profile(command: list[str], stem: str, folder: Path, rate: int) -> list[ProfileFile]:
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


def profile_strategies(strategies: Sequence[tuple[str, int]], folder: Path, projects: int = 20) -> list[ProfileFile]:
    """Profiles for each ``(strategy, workers)``, on the embedded data source (the cpu scenario)."""
    return [f for strategy, workers in strategies for f in profile_strategy(strategy, workers, folder, projects)]
