"""Deterministic measurement: CPU instructions of a cell's rounds, counted by valgrind's callgrind.

Wall time on a shared machine varies by tens of per cent between runs; the number of instructions the
same code executes does not. :func:`count_instructions` runs every requested cell in ONE valgrind process
(start-up under valgrind costs about ten seconds): callgrind counts from the start, and the driver
(:mod:`zerosite.benchmarking.instructions_driver`) marks each cell's measured rounds by calling two libc
functions that CPython calls nowhere else; callgrind dumps its counters on entering each
(``--dump-before``), so start-up, set-up and warm-up land in dumps that are thrown away and each cell's
measured rounds land in a dump of their own.

What keeps the count exact from run to run: ``PYTHONHASHSEED=0`` (string hashes, hence dict and set
layouts); the same environment, argument vector and working-directory contents for every run (the
environment's size moves the stack; ``importlib.metadata`` lists the working directory); a bytecode cache of
the run's own, filled by a native run of the same driver just before (a module compiled during the counted
run moves the heap, and with it ``id``-based hashes and the type attribute cache, which is indexed by
addresses); warm-up rounds that fill lazy caches (compiled templates, specialised bytecode) before the
markers; a ``gc.collect()`` just before the start marker; and clocks that count instead of telling the time
(the engine times its stages, and real readings change the cost of CPython's integer subtraction).
Address-space randomisation does not matter: valgrind places the client's memory itself, at the same
addresses with or without ``setarch -R``.

What remains: the count of a cell depends on what ran before it in the same process (the cells asked for
before it, the workload size), so compare counts of the same request only. Code edited between two runs
is, of course, other code.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from zerosite.benchmarking.cells import BARE, BASELINE, Cell

__all__ = [
    "COUNTABLE_LEVELS",
    "COUNTABLE_SCENARIOS",
    "COUNTABLE_STRATEGIES",
    "START_MARKER",
    "STOP_MARKER",
    "CallgrindDump",
    "InstructionCount",
    "InstructionCountError",
    "callgrind_command",
    "count_instructions",
    "count_marked_run",
    "count_whole_run",
    "own_bytecode_cache",
    "read_dump",
    "uncountable_reason",
    "valgrind_unavailable",
]

COUNTABLE_LEVELS: tuple[str, ...] = ("single", "pipeline")
COUNTABLE_SCENARIOS: tuple[str, ...] = ("cpu",)
COUNTABLE_STRATEGIES: tuple[str, ...] = (BASELINE, BARE)

START_MARKER = "getppid"
"""The libc function whose entry starts a measured region: the driver calls ``os.getppid()``."""
STOP_MARKER = "getpgrp"
"""The libc function whose entry ends a measured region: the driver calls ``os.getpgrp()``."""

INSTALL_ADVICE = "install valgrind from the OS package manager (apt-get install valgrind)"

_STABLE_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "PYTHONPATH")
"""Variables passed on to the measured process; everything else is left out so that runs see the same
environment (its size moves the stack, hence alignment and the instructions of some copies)."""


@dataclass(frozen=True)
class InstructionCount:
    """Instructions executed by ``iterations`` measured rounds of one cell (callgrind's ``Ir``)."""

    total: int
    iterations: int

    @property
    def per_iteration(self) -> float:
        """Instructions per round."""
        return self.total / self.iterations


class InstructionCountError(RuntimeError):
    """valgrind or the measured process failed, or its dumps do not match the cells asked for."""


def uncountable_reason(cell: Cell) -> str | None:
    """Why ``cell`` cannot be measured in instructions, or None when it can."""
    if cell.level not in COUNTABLE_LEVELS:
        return (
            f"level {cell.level!r} is not counted in instructions: a batch writes and indexes files, "
            f"and disk time is not instructions (countable levels: {', '.join(COUNTABLE_LEVELS)})"
        )
    if cell.scenario not in COUNTABLE_SCENARIOS:
        return (
            f"scenario {cell.scenario!r} is not counted in instructions: it waits on an HTTP server, "
            f"and waiting is not instructions (countable scenarios: {', '.join(COUNTABLE_SCENARIOS)})"
        )
    if cell.strategy not in COUNTABLE_STRATEGIES:
        return (
            f"strategy {cell.strategy!r} is not counted in instructions: valgrind counts one process and runs "
            f"its threads one at a time, so counts of workers are not comparable "
            f"(countable strategies: {', '.join(COUNTABLE_STRATEGIES)})"
        )
    return None


def _interpreter() -> str:
    """The interpreter to run under valgrind: ``sys.executable`` itself when it is (a link to) an ELF binary,
    so that a virtual environment still applies; its resolved target otherwise (a pyenv shim is a script)."""
    executable = Path(sys.executable)
    if _is_elf(executable):
        return str(executable)
    real = executable.resolve()
    if _is_elf(real):
        return str(real)
    raise InstructionCountError(f"the interpreter {sys.executable} is not an ELF binary: valgrind cannot run it")


def _is_elf(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            return handle.read(4) == b"\x7fELF"
    except OSError:
        return False


@functools.cache
def valgrind_unavailable() -> str | None:
    """Why instructions cannot be counted here, or None when they can (checked once per process)."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        return f"valgrind is not on PATH: {INSTALL_ADVICE}"
    true = shutil.which("true") or "/bin/true"
    with tempfile.TemporaryDirectory(prefix="zerosite-valgrind-check-") as tmp:
        out = Path(tmp) / "callgrind.out"
        try:
            done = subprocess.run(
                [valgrind, "--tool=callgrind", f"--callgrind-out-file={out}", true],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            return f"valgrind failed its self-test ({error}): {INSTALL_ADVICE}"
        if done.returncode != 0 or _summary(out) is None:
            tail = " ".join(done.stderr.strip().splitlines()[-3:])
            return f"valgrind --tool=callgrind failed its self-test (exit {done.returncode}: {tail})"
    return None


def count_instructions(
    cells: Sequence[Cell],
    iterations: int = 10,
    warmup: int = 2,
    plugins_dir: Path | None = None,
    projects: int = 100,
    timeout_s: float = 1800.0,
    extra_env: Mapping[str, str] | None = None,
) -> dict[Cell, InstructionCount]:
    """Count the instructions of ``iterations`` rounds of each cell, after ``warmup`` uncounted rounds.

    All cells run in one valgrind process, one after another, each with its own warm workload round
    (:func:`~zerosite.benchmarking.workloads.cell_round`) on ``projects`` sample projects.

    :param cells: countable cells (see :func:`uncountable_reason`); each is measured once.
    :param plugins_dir: the plugins folder for the measured process; default: this process's setting
        (``--plugins-dir``, ``ZEROSITE_PLUGINS_DIR`` or ``./plugins``).
    :param projects: sample projects in the workload; rounds cycle through them.
    :param extra_env: more environment variables for the measured process, which otherwise sees only
        ``PATH``, ``HOME``, the locale, ``PYTHONHASHSEED=0`` and the plugin settings.
    :returns: per cell, the instructions of its measured rounds.
    :raises ValueError: a cell cannot be counted, or ``iterations`` < 1.
    :raises InstructionCountError: valgrind is unavailable or the measured process failed.
    """
    if iterations < 1 or warmup < 0:
        raise ValueError(f"need iterations >= 1 and warmup >= 0, got {iterations} and {warmup}")
    for cell in cells:
        reason = uncountable_reason(cell)
        if reason is not None:
            raise ValueError(f"cannot count {cell.subject}: {reason}")
    unique = list(dict.fromkeys(cells))
    if not unique:
        return {}
    problem = valgrind_unavailable()
    if problem is not None:
        raise InstructionCountError(problem)
    with tempfile.TemporaryDirectory(prefix="zerosite-instructions-") as tmp:
        workdir = Path(tmp)
        spec = {
            "cells": [cell.as_info() for cell in unique],
            "iterations": iterations,
            "warmup": warmup,
            "projects": projects,
        }
        (workdir / "spec.json").write_text(json.dumps(spec), encoding="utf-8")
        env = {**_environment(plugins_dir), **(extra_env or {}), "PYTHONPYCACHEPREFIX": str(workdir / "pycache")}
        _prepare(workdir, env, timeout_s)
        _run_valgrind(workdir, {**env, "PYTHONDONTWRITEBYTECODE": "1"}, timeout_s)
        regions = _measured_regions(workdir)
        manifest = json.loads((workdir / "manifest.json").read_text(encoding="utf-8"))
    measured = [Cell(**coordinates) for coordinates in manifest["cells"]]
    if measured != unique or len(regions) != len(unique):
        raise InstructionCountError(
            f"the measured process reported {len(measured)} cells and callgrind dumped {len(regions)} "
            f"measured regions for {len(unique)} cells asked for"
        )
    counts = zip(unique, regions, strict=True)
    return {cell: InstructionCount(total=total, iterations=iterations) for cell, total in counts}


def _environment(plugins_dir: Path | None) -> dict[str, str]:
    """The measured process's whole environment: fixed hash seed, plugin settings, and little else."""
    from zerosite.plugins import plugin_settings  # importlib.metadata: heavy, and only needed here

    settings = plugin_settings()
    env = {name: os.environ[name] for name in _STABLE_ENV if name in os.environ}
    env["PYTHONHASHSEED"] = "0"
    folder = plugins_dir.resolve() if plugins_dir is not None else settings.plugins_dir
    if folder is not None:
        env["ZEROSITE_PLUGINS_DIR"] = str(folder)
    if settings.disabled:
        env["ZEROSITE_DISABLE_PLUGINS"] = ",".join(sorted(settings.disabled))
    if settings.templates_dir is not None:
        env["ZEROSITE_TEMPLATES_DIR"] = str(settings.templates_dir)
    return env


def _driver_command() -> list[str]:
    return [_interpreter(), "-m", "zerosite.benchmarking.instructions_driver", "spec.json", "manifest.json"]


def _prepare(workdir: Path, env: Mapping[str, str], timeout_s: float) -> None:
    """Run the driver once without valgrind (one round per cell), so that every module it imports is
    compiled into the run's own bytecode cache (``PYTHONPYCACHEPREFIX``) before the counted run.

    Otherwise the counted run compiles whichever sources lack an up-to-date ``.pyc`` at that moment (other
    processes write and invalidate them), which moves the whole heap and the type attribute cache: the
    measured rounds then differ by a few hundredths of a per cent from run to run."""
    command = [*_driver_command(), "--prepare"]
    try:
        done = subprocess.run(
            command, cwd=workdir, env=dict(env), capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired as error:
        raise InstructionCountError(f"the preparing run took longer than {timeout_s:.0f} s") from error
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-20:])
        raise InstructionCountError(f"the measured code failed without valgrind (exit {done.returncode}):\n{tail}")
    (workdir / "manifest.json").unlink()


def _run_valgrind(workdir: Path, env: Mapping[str, str], timeout_s: float) -> None:
    """Run the driver under callgrind in ``workdir``; relative paths keep the argument vector the same."""
    command = [*callgrind_command("callgrind.out", "--log-file=valgrind.log"), *_driver_command()]
    try:
        done = subprocess.run(
            command, cwd=workdir, env=dict(env), capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired as error:
        raise InstructionCountError(f"valgrind ran longer than {timeout_s:.0f} s and was stopped") from error
    if done.returncode != 0 or not (workdir / "manifest.json").exists():
        log = (
            (workdir / "valgrind.log").read_text(encoding="utf-8", errors="replace")
            if (workdir / "valgrind.log").exists()
            else ""
        )
        tail = "\n".join((done.stderr + log).strip().splitlines()[-20:])
        raise InstructionCountError(f"the measured process failed under valgrind (exit {done.returncode}):\n{tail}")


def own_bytecode_cache(env: Mapping[str, str], folder: Path) -> dict[str, str]:
    """``env`` for a run that writes the bytecode of what it imports into a cache of its own under ``folder``
    (``PYTHONPYCACHEPREFIX``), even where ``env`` says not to write any: a later run then counts or times no
    compiling, whether the checkout is fresh, edited since its bytecode was written, or this workplace's shell
    sets ``PYTHONDONTWRITEBYTECODE``."""
    kept = {key: value for key, value in env.items() if key != "PYTHONDONTWRITEBYTECODE"}
    return kept | {"PYTHONPYCACHEPREFIX": str(folder / "pycache")}


def callgrind_command(out_file: str | Path, *options: str) -> list[str]:
    """valgrind counting a program's instructions into ``out_file``, with a dump at each marker (before the program's
    arguments; ``options``: valgrind's own, such as ``--trace-children=yes``)."""
    valgrind = shutil.which("valgrind") or "valgrind"
    markers = (f"--dump-before={START_MARKER}", f"--dump-before={STOP_MARKER}")
    return [valgrind, "--tool=callgrind", f"--callgrind-out-file={out_file}", *markers, *options]


def count_marked_run(
    command: Sequence[str], env: Mapping[str, str], folder: Path, cwd: Path | None = None
) -> tuple[int, str]:
    """The instructions between the markers of one program that calls each once, and what it printed.

    ``command`` runs once natively first, compiling everything it imports into a bytecode cache of its own under
    ``folder`` (even where ``env`` says not to write bytecode), then under callgrind with that cache, so that the
    count holds no compiling; the hash seed is fixed.

    :raises InstructionCountError: valgrind is missing, the program failed, or it did not mark one region.
    """
    dumps, printed = _count_run(command, env, folder, cwd)
    measured = [dump.instructions for dump in dumps if dump.trigger == STOP_MARKER]
    if len(measured) != 1:
        raise InstructionCountError(f"expected one measured region under callgrind, found {len(measured)}")
    return measured[0], printed


def count_whole_run(
    command: Sequence[str], env: Mapping[str, str], folder: Path, cwd: Path | None = None
) -> tuple[int, str]:
    """The instructions of one program from the interpreter's start to its exit (its own process, not its
    children's), and what it printed; run twice as :func:`count_marked_run` runs it.

    :raises InstructionCountError: valgrind is missing or the program failed.
    """
    dumps, printed = _count_run(command, env, folder, cwd)
    return sum(dump.instructions for dump in dumps), printed


def _count_run(
    command: Sequence[str], env: Mapping[str, str], folder: Path, cwd: Path | None
) -> tuple[list[CallgrindDump], str]:
    """Every callgrind dump of ``command``'s counted run (after a native one that writes its bytecode), and what
    the counted run printed."""
    problem = valgrind_unavailable()
    if problem is not None:
        raise InstructionCountError(problem)
    env = own_bytecode_cache(env, folder) | {"PYTHONHASHSEED": "0"}
    out_file = folder / "callgrind.out"
    for run, prefix in (("natively", []), ("under valgrind", callgrind_command(out_file))):
        done = subprocess.run([*prefix, *command], cwd=cwd, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            tail = "\n".join(done.stderr.strip().splitlines()[-20:])
            raise InstructionCountError(f"{command[0]} failed {run} (exit {done.returncode}):\n{tail}")
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    return [read_dump(path) for path in folder.glob("callgrind.out*")], done.stdout


_TRIGGER = re.compile(r"^desc: Trigger: --dump-before=(\S+)$", re.MULTILINE)
_SUMMARY = re.compile(r"^summary: (\d+)$", re.MULTILINE)
_PART = re.compile(r"^part: (\d+)$", re.MULTILINE)


def _summary(path: Path) -> int | None:
    """The instructions (``Ir``) a callgrind dump counted, from its ``summary:`` line."""
    try:
        match = _SUMMARY.search(path.read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return None
    return int(match.group(1)) if match else None


@dataclass(frozen=True)
class CallgrindDump:
    """One dump of a callgrind run: its part number, what triggered it, the instructions it counted."""

    part: int
    trigger: str
    """The function a ``--dump-before`` named (a marker, ``fork``), or ``""`` at the program's end."""
    instructions: int


def read_dump(path: Path) -> CallgrindDump:
    """The part, trigger and instruction count (``Ir``) of one callgrind dump file.

    :raises InstructionCountError: the file is not a complete dump.
    """
    text = path.read_text(encoding="utf-8", errors="replace")
    part, trigger, summary = _PART.search(text), _TRIGGER.search(text), _SUMMARY.search(text)
    if part is None or summary is None:
        raise InstructionCountError(f"cannot read the callgrind dump {path.name}")
    return CallgrindDump(int(part.group(1)), trigger.group(1) if trigger else "", int(summary.group(1)))


def _measured_regions(workdir: Path) -> list[int]:
    """The instructions of each measured region, in order: every dump triggered by the stop marker.

    The dumps must alternate start, stop, start, stop: another call of a marker function (by CPython or a
    library) would show up as an extra dump and is refused rather than silently cutting a region short.
    """
    dumps = sorted((read_dump(path) for path in workdir.glob("callgrind.out.*")), key=lambda dump: dump.part)
    triggers = [dump.trigger for dump in dumps]
    expected = [START_MARKER, STOP_MARKER] * (len(dumps) // 2)
    if triggers != expected:
        raise InstructionCountError(
            f"callgrind's dumps do not alternate {START_MARKER}, {STOP_MARKER}: {', '.join(triggers)} "
            f"(a library called a marker function inside the measured code?)"
        )
    return [dump.instructions for dump in dumps if dump.trigger == STOP_MARKER]
