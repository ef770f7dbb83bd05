"""Profiles per strategy and scenario: py-spy flamegraph SVG and speedscope JSON (workers followed), else cProfile.

py-spy is looked for beside the running interpreter first (where ``pip install`` put it in a virtual
environment that was never activated), then on PATH. The io and mixed scenarios profile against a loopback
:class:`~zerosite.testing.ProjectServer` with the benchmark's latency (``SCENARIO_LATENCY_SHARE``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from zerosite.benchmarking.workloads import SCENARIO_LATENCY_SHARE
from zerosite.sample import sample_projects
from zerosite.testing import ProjectServer

__all__ = ["PY_SPY_FORMATS", "ProfileFile", "find_py_spy", "profile_strategies", "profile_strategy"]

PY_SPY_FORMATS: dict[str, str] = {"flamegraph": "svg", "speedscope": "speedscope.json"}
"""py-spy output format -> file suffix."""


@dataclass(frozen=True)
class ProfileFile:
    """One profile written: what it shows, where, which tool made it."""

    label: str
    path: Path
    tool: str


def find_py_spy(executable: str | None = None, path: str | None = None) -> tuple[str | None, list[str]]:
    """py-spy beside ``executable`` (default ``sys.executable``, symlinks NOT resolved: a venv's python is
    often a link to the base interpreter, whose folder has no py-spy), else on ``path`` (default PATH).

    :returns: the program found (or None) and the places looked, for a warning that names them.
    """
    beside = str(Path(executable or sys.executable).parent)
    found = shutil.which("py-spy", path=beside)
    if found is not None:
        return found, [beside]
    return shutil.which("py-spy", path=path), [beside, "PATH"]


def _driver(strategy: str, workers: int, projects: int, out: Path, data_url: str | None = None) -> list[str]:
    """The profiled program: the real ``zerosite generate`` a user runs, on sample projects."""
    source = ["--data-url", data_url] if data_url else []
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
        *source,
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
    py_spy, looked = find_py_spy()
    if py_spy is None:
        return f"py-spy is not installed (looked beside the interpreter in {looked[0]} and on PATH)"
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


@contextmanager
def _data_url(scenario: str, projects: int, latency_ms: float) -> Iterator[str | None]:
    """None for the cpu scenario (embedded data); else a loopback server at the scenario's share of the latency."""
    if scenario not in SCENARIO_LATENCY_SHARE:
        raise ValueError(f"unknown scenario {scenario!r}; known: {', '.join(SCENARIO_LATENCY_SHARE)}")
    share = SCENARIO_LATENCY_SHARE[scenario]
    if share is None:
        yield None
        return
    with ProjectServer(sample_projects(projects), latency_s=latency_ms / 1000 * share) as server:
        yield server.url


def profile_strategy(
    strategy: str,
    workers: int,
    folder: Path,
    projects: int = 20,
    rate: int = 200,
    scenario: str = "cpu",
    latency_ms: float = 20.0,
) -> list[ProfileFile]:
    """Profile one small batch under ``strategy`` in ``scenario``: a flamegraph and a speedscope file by py-spy;
    where py-spy is missing or cannot attach (no ptrace), a cProfile file and a warning instead.

    Files are named ``<strategy>-workers=<n>-scenario=<scenario>.<suffix>``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{strategy}-workers={workers}-scenario={scenario}"
    with (
        tempfile.TemporaryDirectory(prefix="zerosite-profile-") as scratch,
        _data_url(scenario, projects, latency_ms) as url,
    ):
        return _profile(_driver(strategy, workers, projects, Path(scratch), url), stem, folder, rate)


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


def profile_strategies(
    strategies: Sequence[tuple[str, int]],
    folder: Path,
    projects: int = 20,
    scenarios: Sequence[str] = ("cpu", "io", "mixed"),
    latency_ms: float = 20.0,
) -> list[ProfileFile]:
    """Profiles for each ``(strategy, workers)`` in each scenario (see ``SCENARIO_LATENCY_SHARE``)."""
    return [
        f
        for scenario in scenarios
        for strategy, workers in strategies
        for f in profile_strategy(strategy, workers, folder, projects, scenario=scenario, latency_ms=latency_ms)
    ]
