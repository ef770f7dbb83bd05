"""Profiles per strategy and scenario: py-spy flamegraph SVG and speedscope JSON (workers followed), else cProfile.

py-spy is looked for beside the running interpreter first (where ``pip install`` put it in a virtual
environment that was never activated), then on PATH. The io and mixed scenarios profile against a loopback
:class:`~zerosite.testing.ProjectServer` with the benchmark's latency (``SCENARIO_LATENCY_SHARE``).

Neither profiler tells how the profiled program ended (``py-spy record`` exits 0 after it, ``python -m cProfile``
swallows its ``SystemExit``), so the profiled ``zerosite generate`` prints its ``--json`` summary: a run without
one, or with failed reports, failed, and its profile is not kept.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zerosite.benchmarking.workloads import SCENARIO_LATENCY_SHARE
from zerosite.sample import sample_projects
from zerosite.testing import ProjectServer

__all__ = [
    "PY_SPY_FORMATS",
    "ProfileError",
    "ProfileFile",
    "find_py_spy",
    "profile_strategies",
    "profile_strategy",
]

PY_SPY_FORMATS: dict[str, str] = {"flamegraph": "svg", "speedscope": "speedscope.json"}
"""py-spy output format -> file suffix."""

_FAILURES_SHOWN = 5
"""Failed reports of a profiled batch named in its :class:`ProfileError`."""


@dataclass(frozen=True)
class ProfileFile:
    """One profile written: what it shows, where, which tool made it."""

    label: str
    path: Path
    tool: str


class ProfileError(Exception):
    """A profiled ``zerosite generate`` failed (or no profiler could run it): a profile of it would show its
    failure, not a batch. ``output`` holds what the run wrote to standard error, line by line."""

    def __init__(self, message: str, output: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.output = list(output)


def _warn(message: str) -> None:
    warnings.warn(message, RuntimeWarning, stacklevel=3)


def _warn_failed(error: ProfileError) -> None:
    _warn("; ".join([str(error), *error.output]))


@dataclass(frozen=True)
class _Run:
    """What one profiled ``zerosite generate --json`` said: its summary (None when it printed none: it stopped
    before the end) and its standard error, line by line."""

    summary: dict[str, Any] | None
    stderr: list[str]

    @classmethod
    def of(cls, stdout: str, stderr: str) -> _Run:
        ours = "\n".join(line for line in stdout.splitlines() if not line.startswith("py-spy> "))  # py-spy's own
        try:
            summary = json.loads(ours)
        except ValueError:
            summary = None
        return cls(summary if isinstance(summary, dict) else None, [line for line in stderr.splitlines() if line])

    def workers(self, stem: str) -> int:
        """The workers the batch ran with (``generate`` caps them to the machine, runs ``sequential`` with one).

        :raises ProfileError: the run failed.
        """
        summary = self.summary or {}
        workers, failed = summary.get("workers"), summary.get("failed")
        if self.summary is None or not isinstance(workers, int):
            raise ProfileError(f"profiling {stem}: the profiled `zerosite generate` failed", self.stderr)
        if failed:
            failures = [
                f"failed: {f.get('project_id')}/{f.get('module')}: {f.get('error')}"
                for f in summary.get("failures", [])[:_FAILURES_SHOWN]
                if isinstance(f, dict)
            ]
            raise ProfileError(
                f"profiling {stem}: {failed} report(s) of the profiled batch failed", [*self.stderr, *failures]
            )
        return workers


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
    """The profiled program: the real ``zerosite generate`` a user runs, on sample projects; ``--json`` for the
    summary that says whether it ran and with how many workers."""
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
        "--json",
        *source,
    ]


def _environment() -> dict[str, str]:
    """This environment, with the folder that holds ``zerosite`` on PYTHONPATH (works from a checkout)."""
    import zerosite

    root = str(Path(zerosite.__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    return env


def _py_spy(command: list[str], fmt: str, output: Path, rate: int) -> _Run | str:
    """Run ``command`` under ``py-spy record --subprocesses``: what it said, or why py-spy itself failed."""
    py_spy, looked = find_py_spy()
    if py_spy is None:
        return f"py-spy is not installed (looked beside the interpreter in {looked[0]} and on PATH)"
    args = [py_spy, "record", "--subprocesses", "--rate", str(rate), "--format", fmt, "-o", str(output), "--", *command]
    completed = subprocess.run(args, env=_environment(), capture_output=True, text=True, check=False)
    if completed.returncode != 0 or not output.exists():
        tail = (completed.stderr or completed.stdout).strip().splitlines()[-1:] or ["no output"]
        return f"py-spy failed (exit {completed.returncode}): {tail[0]}"
    return _Run.of(completed.stdout, completed.stderr)


def _cprofile(command: list[str], output: Path) -> _Run:
    """Run ``command`` (a ``python -m`` driver) under cProfile; only the main process is seen."""
    runner = [command[0], "-m", "cProfile", "-o", str(output), *command[1:]]
    completed = subprocess.run(runner, env=_environment(), capture_output=True, text=True, check=False)
    return _Run.of(completed.stdout, completed.stderr)


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
    relay: Callable[[str], None] = _warn,
) -> list[ProfileFile]:
    """Profile one small batch under ``strategy`` in ``scenario``: a flamegraph and a speedscope file by py-spy;
    where py-spy is missing or cannot attach (no ptrace), a cProfile file and a warning instead.

    Files are named ``<strategy>-workers=<n>-scenario=<scenario>.<suffix>``, ``n`` the workers the batch ran
    with (``generate`` caps ``workers`` to the machine). What the run wrote to standard error (its warnings) is
    passed to ``relay``, a line at a time, after the name of the profile.

    :raises ProfileError: the profiled run failed; no file of it is kept.
    """
    folder.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory(prefix="zerosite-profile-") as scratch,
        _data_url(scenario, projects, latency_ms) as url,
    ):
        command = _driver(strategy, workers, projects, Path(scratch), url)
        return _Profile(strategy, workers, scenario, folder, relay).made(command, rate)


@dataclass
class _Profile:
    """The files of one profile as they are made, named after the workers the batch ran with."""

    strategy: str
    workers: int
    scenario: str
    folder: Path
    relay: Callable[[str], None]

    @property
    def stem(self) -> str:
        return f"{self.strategy}-workers={self.workers}-scenario={self.scenario}"

    def made(self, command: list[str], rate: int) -> list[ProfileFile]:
        written: list[ProfileFile] = []
        said: set[str] = set()  # each format is a run of its own: their warnings are said once
        output: Path | None = None
        try:
            for fmt, suffix in PY_SPY_FORMATS.items():
                output = self.folder / f"{self.stem}.{suffix}"
                run = _py_spy(command, fmt, output, rate)
                if isinstance(run, str):
                    return [self._cprofiled(command, run)]
                path = self._kept(run, output, suffix, said)
                written.append(ProfileFile(f"{self.stem} ({fmt}, py-spy, workers included)", path, "py-spy"))
        except BaseException:  # a failed run, or a Ctrl-C: no file of it is kept, the one py-spy was writing included
            for stale in [*(file.path for file in written), *([output] if output is not None else [])]:
                stale.unlink(missing_ok=True)
            raise
        return written

    def _cprofiled(self, command: list[str], why: str) -> ProfileFile:
        fallback = self.folder / f"{self.stem}.prof"
        _warn(f"profiling {self.stem}: {why}; falling back to cProfile ({fallback}, main process only)")
        try:
            run = _cprofile(command, fallback)
        except OSError as error:
            raise ProfileError(f"profiling {self.stem}: cProfile failed too: {error}") from None
        if run.summary is not None and not fallback.exists():
            raise ProfileError(f"profiling {self.stem}: cProfile wrote no profile", run.stderr)
        path = self._kept(run, fallback, "prof", set())
        return ProfileFile(f"{self.stem} (cProfile, main process only)", path, "cProfile")

    def _kept(self, run: _Run, output: Path, suffix: str, said: set[str]) -> Path:
        """``output`` renamed after the workers the run used; its warnings relayed. ProfileError (and no file)
        when the run failed."""
        try:
            self.workers = run.workers(self.stem)
        except ProfileError:
            output.unlink(missing_ok=True)
            raise
        path = output.replace(self.folder / f"{self.stem}.{suffix}")
        for line in run.stderr:
            if line not in said:
                said.add(line)
                self.relay(f"{self.stem}: {line}")
        return path


def profile_strategies(
    strategies: Sequence[tuple[str, int]],
    folder: Path,
    projects: int = 20,
    scenarios: Sequence[str] = ("cpu", "io", "mixed"),
    latency_ms: float = 20.0,
    relay: Callable[[str], None] = _warn,
    failed: Callable[[ProfileError], None] = _warn_failed,
) -> list[ProfileFile]:
    """Profiles for each ``(strategy, workers)`` in each scenario (see ``SCENARIO_LATENCY_SHARE``).

    A profiled run that failed is passed to ``failed`` and the others are still made: by default it is a
    warning (the benchmark's report goes on without that profile); ``zerosite profile`` exits 1 at the end.
    """
    written: list[ProfileFile] = []
    for scenario in scenarios:
        for strategy, workers in strategies:
            try:
                written += profile_strategy(
                    strategy, workers, folder, projects, scenario=scenario, latency_ms=latency_ms, relay=relay
                )
            except ProfileError as error:
                failed(error)
    return written
