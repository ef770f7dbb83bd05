"""Compare two benchmark runs cell by cell: times with a significance test, speedups as ratios, instructions exactly,
the service level's p95 latency by its intervals and its error rate as counted."""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zerosite.benchmarking import fingerprint
from zerosite.benchmarking.cells import BARE, BASELINE, TIMES
from zerosite.benchmarking.compare_service import CAPACITY, ServiceFigures, p95_ratio_interval, service_figures
from zerosite.benchmarking.stats import (
    Interval,
    grouped_ratio_ci,
    groups_of,
    mann_whitney_u,
    ratio_ci,
    speedup_change_ci,
)
from zerosite.benchmarking.targets import quantity
from zerosite.project import printable

__all__ = [
    "EXIT_INCOMPARABLE",
    "EXIT_OK",
    "EXIT_REGRESSED",
    "CellChange",
    "CompareError",
    "Comparison",
    "SpeedupChange",
    "compare_runs",
    "load_run",
    "parse_threshold",
]

EXIT_OK = 0
EXIT_REGRESSED = 1
EXIT_INCOMPARABLE = 2

FASTER = "faster"
SLOWER = "slower"
UNCHANGED = "unchanged"
INCONCLUSIVE = "inconclusive"
"""A change that may be the machine's: either run took the cell's samples while the machine was busy."""
ONLY_IN_BASE = "only in base"
ONLY_IN_NEW = "only in new"

P95 = "p95 latency"
"""The measure of a service point's latency row (``CellChange.measure``)."""
ERROR_RATE = "error rate"
"""The measure of a service point's error row: percent of requests that failed, counted."""

MAX_THRESHOLD = 10.0
"""The highest ``--fail-threshold``, 1000 %: a cell more than eleven times as slow still fails the check."""

FORCE_HINT = "zerosite compare --force compares them anyway"
"""How to compare runs that were refused; the pytest plugin's ``--zerosite-compare`` shows it too."""

RESAMPLES = 1000
"""Bootstrap resamples per interval: enough for stable 95 % ends, and a 168-cell run compares in seconds."""

REQUIRED_KEYS: tuple[str, ...] = ("level", "cell", "group", "strategy", "workers", "scenario", "unit", "median")

MACHINE_SHARE = Interval(0.4, 1.0)
"""How much of the machine's own change of speed shows in a cell's time: when the canary (timed beside
the cell's rounds, ``canary.Canary``) takes ``d`` times as long, a cell takes ``d ** k`` times as long for
some ``k`` in this range. Measured on this 2-core VM over 5 minutes in 30 s windows (``python
bench/machine_drift.py``, 2026-11-27): k from 0.47 to 1.00 while the canary moved by up to 38 %; 0.4 leaves a
margin. A cell's change
is judged with every ``k`` in the range: only a change beyond what any of them explains is a verdict."""


class CompareError(Exception):
    """A benchmark JSON that cannot be read or compared; the message is one line, fit to print as is."""


@dataclass(frozen=True)
class _Cell:
    """One cell of one run, read from the JSON and checked."""

    key: str
    level: str
    group: str
    strategy: str
    workers: int
    scenario: str
    module: str | None
    unit: str
    median: float
    samples: tuple[float, ...]
    speedup: float | None
    instructions: float | None
    noisy: bool = False
    """More than a tenth of the samples were taken while the machine was busy (``cells.BUSY_MACHINE``)."""
    canary: tuple[float, ...] = ()
    """The machine's own speed during the cell's rounds (seconds per canary render); empty in older runs."""
    starts: tuple[int, ...] = ()
    """Per sample, which start of the cell's workers took it (``Cell.worker_starts``); empty in older runs."""

    @property
    def groups(self) -> list[tuple[float, ...]]:
        """The samples of each start of the cell's workers, where it had more than one; else none."""
        groups = groups_of(self.samples, self.starts)
        return groups if len(groups) > 1 else []

    @property
    def label(self) -> str:
        """Short name for the table: ``single M2 sequential cpu``, ``batch process\N{MULTIPLICATION SIGN}2 io``."""
        where = f"single {self.module}" if self.level == "single" else self.level
        return f"{where} {self._strategy_label} {self.scenario}"

    @property
    def subject(self) -> str:
        """Name in words for the summary: ``single report M2 sequential cpu``."""
        where = f"single report {self.module}" if self.level == "single" else self.level
        return f"{where} {self._strategy_label} {self.scenario}"

    @property
    def location(self) -> float:
        """The median of the samples (the recorded median where there are none)."""
        return statistics.median(self.samples) if self.samples else self.median

    @property
    def _strategy_label(self) -> str:
        return self.strategy if self.strategy in (BASELINE, BARE) else f"{self.strategy}{TIMES}{self.workers}"


@dataclass(frozen=True)
class CellChange:
    """How one cell's time (or instruction count), or a service point's p95 latency or error rate, changed from
    the base run to the new one.

    ``interval`` is the confidence interval of ``new / base`` (None for exact counts and one-sided rows);
    ``detail`` refines an ``unchanged`` verdict, e.g. ``slower within threshold``. ``machine`` is how much
    slower the machine itself ran during the new run's rounds of the cell (its canary, new over base), when
    both runs timed it: the change and its interval are then the cell's own, net of the machine's.
    """

    key: str
    label: str
    subject: str
    measure: str
    unit: str
    base: float | None
    new: float | None
    interval: Interval | None
    p_value: float | None
    verdict: str
    detail: str = ""
    machine: float | None = None

    @property
    def ratio(self) -> float | None:
        """``new / base``, net of the machine's change; above 1 is slower (lower is better for times and counts)."""
        if self.base is None or self.new is None or self.base <= 0:
            return None
        return self.new / self.base / _machine_factor(self.machine)

    @property
    def change(self) -> str:
        """``+31%``; for an error rate, percentage points (``+2.5 pts``): from no errors there is no ratio."""
        if self.measure == ERROR_RATE and self.base is not None and self.new is not None:
            return f"{self.new - self.base:+.3g} pts"
        ratio = self.ratio
        return "" if ratio is None else _percent(ratio)

    @property
    def change_text(self) -> str:
        """``+31% [+27%, +35%]`` (the interval left out where there is none); ``+50 pts (0% -> 50%)``."""
        if self.measure == ERROR_RATE and self.base is not None and self.new is not None:
            return f"{self.change} ({_quantity(self.base, '%')} -> {_quantity(self.new, '%')})"
        interval = "" if self.interval is None else f" {_interval_text(self.interval)}"
        return f"{self.change}{interval}" if self.change else ""

    def as_dict(self) -> dict[str, object]:
        """JSON-ready."""
        return {
            "key": self.key,
            "label": self.subject,
            "measure": self.measure,
            "unit": self.unit,
            "base": self.base,
            "new": self.new,
            "ratio": self.ratio,
            "interval": None if self.interval is None else [self.interval.low, self.interval.high],
            "p_value": self.p_value,
            "verdict": self.verdict,
            "detail": self.detail,
            "machine": self.machine,
        }


@dataclass(frozen=True)
class SpeedupChange:
    """How one cell's speedup over its group's sequential baseline changed; informative, never a regression."""

    key: str
    label: str
    base: float
    new: float
    interval: Interval | None
    verdict: str

    @property
    def ratio(self) -> float:
        """``new speedup / base speedup``; above 1: the strategy gained on sequential."""
        return self.new / self.base

    def as_dict(self) -> dict[str, object]:
        """JSON-ready."""
        return {
            "key": self.key,
            "base": self.base,
            "new": self.new,
            "ratio": self.ratio,
            "interval": None if self.interval is None else [self.interval.low, self.interval.high],
            "verdict": self.verdict,
        }


@dataclass(frozen=True)
class Comparison:
    """The outcome of comparing two runs: a row per cell, speedup changes, notes, and why not (``refusals``).

    Refusals with ``forced`` False mean nothing was compared (``exit_code`` 2); so does ``nothing_in_common``,
    forced or not: a gate that compared no cell has checked nothing and must not pass.
    """

    rows: tuple[CellChange, ...]
    speedups: tuple[SpeedupChange, ...]
    notes: tuple[str, ...]
    refusals: tuple[str, ...]
    threshold: float
    confidence: float
    forced: bool = False
    nothing_in_common: bool = False

    @property
    def refused(self) -> bool:
        """Whether the runs were not compared: they differ in workload, machine or cells measured and nobody
        forced it, or they have no cell in common."""
        return self.nothing_in_common or (bool(self.refusals) and not self.forced)

    @property
    def regressions(self) -> tuple[CellChange, ...]:
        """The cells significantly slower beyond the threshold."""
        return tuple(row for row in self.rows if row.verdict == SLOWER)

    @property
    def machine_change(self) -> tuple[float, float] | None:
        """The least and the most the machine's own speed changed over the cells (canary new/base), if timed."""
        changes = sorted(row.machine for row in self.rows if row.machine is not None)
        return (changes[0], changes[-1]) if changes else None

    @property
    def exit_code(self) -> int:
        """0: nothing slower beyond the threshold; 1: some cell regressed; 2: the runs cannot be compared."""
        if self.refused:
            return EXIT_INCOMPARABLE
        return EXIT_REGRESSED if self.regressions else EXIT_OK

    def summary(self) -> str:
        """One line: the counts, then each regressed cell with its change and interval."""
        if self.refused:
            hint = "" if self.nothing_in_common else f" ({FORCE_HINT})"
            return f"cannot compare: {'; '.join(map(printable, self.refusals))}{hint}"
        counts = {v: sum(row.verdict == v for row in self.rows) for v in (FASTER, SLOWER, UNCHANGED, INCONCLUSIVE)}
        parts = [f"{counts[FASTER]} faster, {counts[SLOWER]} slower, {counts[UNCHANGED]} unchanged"]
        inconclusive = [row for row in self.rows if row.verdict == INCONCLUSIVE]
        if inconclusive:
            servers = any(CAPACITY in row.detail for row in inconclusive)
            unsampled = any(row.detail == "no samples to test" for row in inconclusive)
            parts.append(
                f"{counts[INCONCLUSIVE]} inconclusive (changed, but measured while the machine was busy"
                f"{', or a server at its CPU capacity' if servers else ''}"
                f"{', or without samples to test' if unsampled else ''}: rerun on a quiet machine, or count "
                "instructions)"
            )
        parts += [f"{n} {v}" for v in (ONLY_IN_BASE, ONLY_IN_NEW) if (n := sum(r.verdict == v for r in self.rows))]
        text = ", ".join(parts)
        if not self.regressions:
            # Said of the cells judged alone: an inconclusive cell may have slowed far beyond the threshold, and a
            # cell one run lacks (a base run cut short) was not checked at all.
            judged = counts[FASTER] + counts[SLOWER] + counts[UNCHANGED]
            unchecked = sum(row.verdict in (ONLY_IN_BASE, ONLY_IN_NEW) for row in self.rows)
            scope = [f"{unchecked} not checked"] if unchecked else []
            worst = max((row.ratio for row in inconclusive if row.ratio is not None), default=None)
            if worst is not None and worst > 1:
                scope.append(f"{counts[INCONCLUSIVE]} not judged, the most slowed {_percent(worst)}")
            said = f" in the {judged} cells judged ({'; '.join(scope)})" if scope else ""
            return f"{text}; no regression beyond {_fraction_text(self.threshold)}{said}"
        regressed = "; ".join(f"{printable(row.subject)} {row.change_text}" for row in self.regressions)
        return f"{text}; regressed: {regressed}"

    def render(self) -> str:
        """The plain-text report: the cell table, speedup changes, notes, and the summary line last."""
        if self.refused:
            lines = ["cannot compare these runs: they measured different workloads or machines"]
            lines += [f"  {printable(reason)}" for reason in self.refusals]
            return "\n".join([*lines, self.summary()])
        sections = [_cell_table(self.rows, self.confidence)]
        machine = self.machine_change
        if machine is not None:
            low, high = machine
            sections.append(
                f"the machine itself (a fixed render timed beside every cell) ran {_percent(low)} to "
                f"{_percent(high)} in the new run's cells: each time change above is net of it"
            )
        if self.speedups:
            sections.append(_speedup_table(self.speedups, self.confidence))
        if self.notes:
            sections.append("\n".join(["notes:", *(f"  {printable(note)}" for note in self.notes)]))
        return "\n\n".join([*sections, self.summary()])

    def as_dict(self) -> dict[str, object]:
        """JSON-ready, for ``zerosite compare --json``."""
        return {
            "exit_code": self.exit_code,
            "threshold": self.threshold,
            "confidence": self.confidence,
            "forced": self.forced,
            "refusals": list(self.refusals),
            "notes": list(self.notes),
            "regressions": [row.key for row in self.regressions],
            "summary": self.summary(),
            "cells": [row.as_dict() for row in self.rows],
            "speedups": [change.as_dict() for change in self.speedups],
        }


def parse_threshold(text: str) -> float:
    """A regression threshold as a fraction: ``"10%"`` and ``"0.1"`` give 0.1; a bare number above 1 is refused."""
    cleaned = text.strip()
    percent = cleaned.endswith("%")
    try:
        value = float(cleaned.removesuffix("%"))
    except ValueError:
        raise CompareError(f"threshold {text!r} is not a number; write e.g. 10% or 0.1") from None
    if percent:
        value /= 100
    elif value > 1:
        raise CompareError(f"threshold {text!r} is ambiguous; write {value:g}% or {value / 100:g}")
    if not 0 <= value <= MAX_THRESHOLD:
        raise CompareError(f"threshold {text!r} must be from 0% to {_fraction_text(MAX_THRESHOLD)}")
    return value


def load_run(path: str | Path) -> Mapping[str, Any]:
    """A benchmark JSON written by ``pytest bench/``, checked to hold a ZeroSite block with cells."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CompareError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise CompareError(f"{path}: cannot read it ({error})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise CompareError(f"{path}: not JSON ({error.msg} at line {error.lineno})") from None
    zerosite = data.get("zerosite") if isinstance(data, dict) else None
    if not isinstance(zerosite, dict) or not isinstance(zerosite.get("cells"), list):
        raise CompareError(
            f"{path}: not a ZeroSite benchmark JSON (no 'zerosite' block with cells); "
            "write one with `pytest bench/ --benchmark-json=FILE`"
        )
    run: Mapping[str, Any] = data
    return run


def compare_runs(
    base: Mapping[str, Any],
    new: Mapping[str, Any],
    *,
    threshold: float = 0.10,
    force: bool = False,
    confidence: float = 0.95,
) -> Comparison:
    """Compare two runs (whole benchmark JSONs, or their ``zerosite`` blocks) cell by cell.

    A time regresses when the new samples are significantly slower (Mann-Whitney p below
    ``1 - confidence``) and the bootstrap interval of the ratio of medians lies wholly above
    ``1 + threshold``; an instruction count regresses when it grew beyond the threshold. Runs of other
    workloads or machines, and a new run that lacks some of the base run's cells (a ``-k`` selection, a
    strategy that crashed, a level left out), are refused (``exit_code`` 2) unless ``force``; runs with no
    cell in common are refused even then. Raises ``CompareError`` for malformed data.
    """
    if threshold < 0:
        raise CompareError(f"threshold must be >= 0, got {threshold!r}")
    if not 0 < confidence < 1:
        raise CompareError(f"confidence must be within (0, 1), got {confidence!r}")
    base_block, new_block = _block(base, "base"), _block(new, "new")
    refusals, notes = _check_comparable(base_block, new_block)
    outcome = Comparison((), (), tuple(notes), tuple(refusals), threshold, confidence, forced=force)
    if outcome.refused:
        return outcome
    base_cells, new_cells = _cells(base_block, "base"), _cells(new_block, "new")
    base_points, new_points = _service(base_block, "base"), _service(new_block, "new")
    base_labels, new_labels = _labels(base_cells, base_points), _labels(new_cells, new_points)
    if not base_labels.keys() & new_labels.keys():
        reason = _nothing_in_common(len(base_labels), len(new_labels))
        return Comparison((), (), tuple(notes), (reason,), threshold, confidence, force, nothing_in_common=True)
    missing = [label for key, label in base_labels.items() if key not in new_labels]
    if missing:
        refusals = [*refusals, _missing(missing, len(base_labels))]
        if not force:
            return Comparison((), (), tuple(notes), tuple(refusals), threshold, confidence)
    if refusals:
        notes = [*(f"compared although {reason}" for reason in refusals), *notes]
    return Comparison(
        rows=(
            *_rows(base_cells, new_cells, threshold, confidence),
            *_service_rows(base_points, new_points, threshold),
        ),
        speedups=tuple(_speedups(base_cells, new_cells, threshold, confidence)),
        notes=tuple(notes),
        refusals=tuple(refusals),
        threshold=threshold,
        confidence=confidence,
        forced=force,
    )


# -- reading -----------------------------------------------------------------------------------


def _block(run: Mapping[str, Any], side: str) -> Mapping[str, Any]:
    """The ``zerosite`` block of a whole benchmark JSON, or the mapping itself when it is that block."""
    block = run.get("zerosite", run)
    if not isinstance(block, Mapping) or not isinstance(block.get("cells"), list):
        raise CompareError(f"{side}: not a ZeroSite benchmark run (no 'zerosite' block with cells)")
    return block


def _nothing_in_common(base: int, new: int) -> str:
    """Why runs with no cell in common cannot be compared, ``--force`` or not."""
    if not new:
        return "the new run has no cells (a run that crashed or measured nothing): nothing to compare"
    if not base:
        return "the base run has no cells: nothing to compare"
    return f"the runs have no cell in common ({base} in base, {new} in new): nothing to compare"


def _missing(labels: Sequence[str], total: int, shown: int = 3) -> str:
    """Why a new run that lacks some of the base run's cells is refused: those cells would go unchecked, and
    a gate that passed them would say 'no regression' of code it never ran (pyperf's compare_to only lists
    them, but it is no gate)."""
    named = ", ".join(labels[:shown]) + (f" and {len(labels) - shown} more" if len(labels) > shown else "")
    return (
        f"the new run lacks {len(labels)} of the base run's {total} cells ({named}), so they cannot be checked: "
        "measure the same selection: no -k, every level and strategy run to the end"
    )


def _check_comparable(base: Mapping[str, Any], new: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """Why the runs cannot be compared (refusals), and the code changes between them (notes)."""
    refusals = [
        f"{side} run records no fingerprint or mode (an older ZeroSite wrote it), so what it measured is unknown"
        for side, block in (("base", base), ("new", new))
        if not isinstance(block.get("fingerprint"), Mapping) or "mode" not in block
    ]
    if refusals:
        return refusals, []
    base_print, new_print = base["fingerprint"], new["fingerprint"]
    refusals = fingerprint.refusals(base_print, new_print)
    if base["mode"] != new["mode"] and not any(r.startswith("workload.mode:") for r in refusals):
        refusals.append(f"mode: {base['mode']} -> {new['mode']}")
    return refusals, fingerprint.notes(base_print, new_print)


def _cells(block: Mapping[str, Any], side: str) -> dict[str, _Cell]:
    """The run's cells by key (``level/cell``), checked."""
    cells: dict[str, _Cell] = {}
    for index, raw in enumerate(block["cells"]):
        cell = _cell(raw, f"{side} cell {index}")
        if cell.key in cells:
            raise CompareError(f"{side}: cell {cell.key} appears twice")
        cells[cell.key] = cell
    return cells


def _labels(cells: Mapping[str, _Cell], points: Mapping[str, ServiceFigures]) -> dict[str, str]:
    """What a run measured, cells and service points alike, by key: the label of each."""
    return {key: item.label for items in (cells, points) for key, item in items.items()}


def _service(block: Mapping[str, Any], side: str) -> dict[str, ServiceFigures]:
    """The run's service points by key, checked (none when it has no service level)."""
    try:
        return service_figures(block, side)
    except ValueError as error:
        raise CompareError(str(error)) from None


def _cell(raw: object, where: str) -> _Cell:
    if not isinstance(raw, Mapping):
        raise CompareError(f"{where}: not an object")
    missing = [key for key in REQUIRED_KEYS if key not in raw]
    if missing:
        raise CompareError(f"{where}: no {', '.join(missing)}")
    try:
        samples = tuple(float(s) for s in raw.get("samples") or ())
        cell = _Cell(
            key=f"{raw['level']}/{raw['cell']}",
            level=str(raw["level"]),
            group=str(raw["group"]),
            strategy=str(raw["strategy"]),
            workers=int(raw["workers"]),
            scenario=str(raw["scenario"]),
            module=None if raw.get("module") is None else str(raw["module"]),
            unit=str(raw["unit"]),
            median=float(raw["median"]),
            samples=samples,
            speedup=_optional_float(raw.get("speedup")),
            instructions=_instructions(raw),
            noisy=int(raw.get("busy_rounds") or 0) * 10 > len(samples),
            canary=tuple(float(s) for s in raw.get("canary_s") or ()),
            starts=tuple(int(k) for k in raw.get("starts") or ()),
        )
    except (TypeError, ValueError) as error:
        raise CompareError(f"{where}: {error}") from None
    times = (*samples, *cell.canary, cell.median)
    if not all(math.isfinite(t) for t in times) or (
        cell.instructions is not None and not math.isfinite(cell.instructions)
    ):
        raise CompareError(f"{where} ({cell.key}): times must be finite numbers")  # NaN passed every check as unchanged
    if any(s <= 0 for s in (*samples, *cell.canary)) or cell.median < 0:
        raise CompareError(f"{where} ({cell.key}): times must be positive")
    return cell


def _instructions(raw: Mapping[str, Any]) -> float | None:
    """Instructions per iteration: recorded, or ``instruction_total / iterations``; None in time mode."""
    if raw.get("instructions") is not None:
        return float(raw["instructions"])
    total, iterations = raw.get("instruction_total"), raw.get("iterations")
    if total is not None and iterations:
        return float(total) / float(iterations)
    return None


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


# -- comparing ---------------------------------------------------------------------------------


def _rows(base: Mapping[str, _Cell], new: Mapping[str, _Cell], threshold: float, confidence: float) -> list[CellChange]:
    """A row per cell: the base run's order, then the cells only the new run has."""
    rows = []
    for key, cell in base.items():
        if key not in new:
            rows.append(_one_sided(cell, ONLY_IN_BASE))
        elif cell.instructions is not None and new[key].instructions is not None:
            rows.append(_compare_instructions(cell, new[key], threshold))
        else:
            rows.append(_compare_times(cell, new[key], threshold, confidence))
    rows += [_one_sided(cell, ONLY_IN_NEW) for key, cell in new.items() if key not in base]
    return rows


def _one_sided(cell: _Cell, verdict: str) -> CellChange:
    value = cell.instructions if cell.instructions is not None else cell.location
    measure = "time" if cell.instructions is None else "instructions"
    unit = cell.unit if cell.instructions is None else "instructions"
    base, new = (value, None) if verdict == ONLY_IN_BASE else (None, value)
    return CellChange(cell.key, cell.label, cell.subject, measure, unit, base, new, None, None, verdict)


def _compare_times(base: _Cell, new: _Cell, threshold: float, confidence: float) -> CellChange:
    """Ratio of medians with its bootstrap interval and a Mann-Whitney test on the samples, both net of the
    machine's own change of speed where both runs timed the canary beside the cell (:data:`MACHINE_SHARE`).

    A cell whose rounds were spread over starts of its workers (a pool's, whose speed depends on the pool it got:
    ``cells.WORKER_STARTS``) is judged by its starts: the interval resamples them, then the samples within each,
    and the test ranks their medians; so the spread between pools, which one run's samples alone do not hold, is
    in both."""
    if not base.samples or not new.samples:  # its median alone, however far it moved, is no evidence either way
        return _two_sided(base, base.location, new.location, verdict=INCONCLUSIVE, detail="no samples to test")
    base_groups, new_groups = base.groups, new.groups
    if base_groups and new_groups:
        interval = grouped_ratio_ci(new_groups, base_groups, confidence, resamples=RESAMPLES)
        base_tested, new_tested = _medians(base_groups), _medians(new_groups)
    else:
        interval = ratio_ci(new.samples, base.samples, confidence, resamples=RESAMPLES)
        base_tested, new_tested = list(base.samples), list(new.samples)
    machine = None
    lightest, heaviest = 1.0, 1.0  # the least and the most of the machine's change that may show in the cell
    if base.canary and new.canary:
        machine = statistics.median(new.canary) / statistics.median(base.canary)
        drift = ratio_ci(new.canary, base.canary, confidence, resamples=RESAMPLES)
        shares = [end**k for end in (drift.low, drift.high) for k in (MACHINE_SHARE.low, MACHINE_SHARE.high)]
        lightest, heaviest = min(shares), max(shares)
        interval = Interval(interval.low / heaviest, interval.high / lightest)
    # Tested against the machine's share that most favours "unchanged".
    share = heaviest if interval.low > 1 else lightest if interval.high < 1 else math.sqrt(lightest * heaviest)
    p_value = mann_whitney_u(base_tested, [sample / share for sample in new_tested]).p_value
    verdict, detail = _time_verdict(interval, p_value < 1 - confidence, threshold)
    if verdict in (SLOWER, FASTER) and (base.noisy or new.noisy):
        # A machine busy with other work slows every cell: that is no verdict on the code.
        verdict, detail = INCONCLUSIVE, f"{verdict}, but measured while the machine was busy"
    return _two_sided(
        base,
        base.location,
        new.location,
        interval=interval,
        p_value=p_value,
        verdict=verdict,
        detail=detail,
        machine=machine,
    )


def _machine_moved(base: Sequence[float], new: Sequence[float]) -> float | None:
    """How many times as long the canary took around the new run's points as around the base run's, where both
    timed it and the change is significant (its interval leaves out 1); else None.

    A cell's time is judged net of the machine's change (:data:`MACHINE_SHARE`); a service's p95 is not: under
    load a queue amplifies a slower machine by an amount not measured here (two full runs of the same code on
    2026-11-29: p95 +40 % to +82 % at the points where the server's CPU for the same load rose 21-37 %). So a
    p95 that moved the way the machine did is no verdict on the code."""
    if not base or not new:
        return None
    drift = ratio_ci(list(new), list(base), resamples=RESAMPLES)
    if drift.low <= 1 <= drift.high:
        return None
    return statistics.median(new) / statistics.median(base)


def _medians(groups: Sequence[Sequence[float]]) -> list[float]:
    return [statistics.median(group) for group in groups]


def _machine_factor(machine: float | None) -> float:
    """The share of the machine's change taken out of a cell's change for its point estimate: the middle
    of :data:`MACHINE_SHARE` (the interval spans the whole range)."""
    return 1.0 if machine is None else machine ** ((MACHINE_SHARE.low + MACHINE_SHARE.high) / 2)


def _time_verdict(interval: Interval, significant: bool, threshold: float) -> tuple[str, str]:
    """Slower only when significant and the whole interval lies beyond the threshold; faster likewise."""
    if not significant:
        return UNCHANGED, ""
    if interval.low > 1:
        if interval.low > 1 + threshold:
            return SLOWER, ""
        return (
            UNCHANGED,
            "slower, perhaps beyond threshold" if interval.high > 1 + threshold else "slower within threshold",
        )
    if interval.high < 1:
        if interval.high < 1 - threshold:
            return FASTER, ""
        return (
            UNCHANGED,
            "faster, perhaps beyond threshold" if interval.low < 1 - threshold else "faster within threshold",
        )
    return UNCHANGED, ""


def _compare_instructions(base: _Cell, new: _Cell, threshold: float) -> CellChange:
    """Counts are deterministic: any difference is real, and beyond the threshold it is a verdict."""
    assert base.instructions is not None and new.instructions is not None
    ratio = new.instructions / base.instructions if base.instructions > 0 else 1.0
    verdict, detail = UNCHANGED, ""
    if ratio > 1:
        verdict, detail = (SLOWER, "") if ratio > 1 + threshold else (UNCHANGED, "slower within threshold")
    elif ratio < 1:
        verdict, detail = (FASTER, "") if ratio < 1 - threshold else (UNCHANGED, "faster within threshold")
    return _two_sided(base, base.instructions, new.instructions, measure="instructions", verdict=verdict, detail=detail)


def _service_rows(
    base: Mapping[str, ServiceFigures], new: Mapping[str, ServiceFigures], threshold: float
) -> list[CellChange]:
    """Two rows per service point both runs measured (p95 latency, error rate), one per point only one did."""
    rows = []
    for key, point in base.items():
        other = new.get(key)
        rows += [_one_sided_point(point, ONLY_IN_BASE)] if other is None else _compare_points(point, other, threshold)
    rows += [_one_sided_point(point, ONLY_IN_NEW) for key, point in new.items() if key not in base]
    return rows


def _one_sided_point(point: ServiceFigures, verdict: str) -> CellChange:
    base, new = (point.p95_ms, None) if verdict == ONLY_IN_BASE else (None, point.p95_ms)
    return CellChange(point.key, point.label, point.subject, P95, "ms", base, new, None, None, verdict)


def _compare_points(base: ServiceFigures, new: ServiceFigures, threshold: float) -> list[CellChange]:
    """The p95 by the interval of its ratio, significant where the interval leaves out 1 and a regression
    only beyond the threshold, as a cell's time; inconclusive where either run's latency was unsteady. The
    error rate is counted, as the run's own verdict counts it: any rise is a regression, whatever the
    threshold (a share of failed requests has no ratio from none, and the target allows none)."""
    interval = p95_ratio_interval(base, new)
    if interval is None:
        verdict, detail = UNCHANGED, "no interval to test"
    else:
        verdict, detail = _time_verdict(interval, interval.low > 1 or interval.high < 1, threshold)
    unsteady = base.unsteady or new.unsteady
    machine = _machine_moved(base.canary, new.canary)
    if verdict in (SLOWER, FASTER) and unsteady:
        verdict, detail = INCONCLUSIVE, f"{verdict}, but {unsteady}"
    elif verdict in (SLOWER, FASTER) and machine is not None and (verdict == SLOWER) == (machine > 1):
        way = "slower" if machine > 1 else "faster"
        verdict, detail = (
            INCONCLUSIVE,
            (
                f"{verdict}, but the machine itself ran {_percent(machine).lstrip('+-')} {way} around these points "
                "(its canary), and a p95 under load moves by more than the machine's speed"
            ),
        )
    latency = CellChange(
        f"{base.key}/p95",
        f"{base.label} p95",
        f"{base.subject}, p95 latency",
        P95,
        "ms",
        base.p95_ms,
        new.p95_ms,
        interval,
        None,
        verdict,
        detail,
    )
    rise = new.error_percent - base.error_percent
    errors = SLOWER if rise > 0 else FASTER if rise < 0 else UNCHANGED
    return [
        latency,
        CellChange(
            f"{base.key}/errors",
            f"{base.label} errors",
            f"{base.subject}, error rate",
            ERROR_RATE,
            "%",
            base.error_percent,
            new.error_percent,
            None,
            None,
            errors,
        ),
    ]


def _two_sided(
    cell: _Cell,
    base: float,
    new: float,
    *,
    verdict: str,
    detail: str,
    measure: str = "time",
    interval: Interval | None = None,
    p_value: float | None = None,
    machine: float | None = None,
) -> CellChange:
    """A row for a cell both runs measured."""
    unit = "instructions" if measure == "instructions" else cell.unit
    return CellChange(
        cell.key, cell.label, cell.subject, measure, unit, base, new, interval, p_value, verdict, detail, machine
    )


def _speedups(
    base: Mapping[str, _Cell], new: Mapping[str, _Cell], threshold: float, confidence: float
) -> list[SpeedupChange]:
    """For each cell with a speedup in both runs: how the speedup changed, with a bootstrap interval."""
    base_baselines, new_baselines = _baselines(base), _baselines(new)
    changes = []
    for key, cell in base.items():
        other = new.get(key)
        if other is None or cell.strategy == BASELINE or cell.speedup is None or other.speedup is None:
            continue
        changes.append(
            _speedup_change(
                cell, other, base_baselines.get(cell.group), new_baselines.get(other.group), threshold, confidence
            )
        )
    return changes


def _baselines(cells: Mapping[str, _Cell]) -> dict[str, _Cell]:
    """The sequential cell of each group."""
    return {cell.group: cell for cell in cells.values() if cell.strategy == BASELINE}


def _speedup_change(
    base: _Cell,
    new: _Cell,
    base_baseline: _Cell | None,
    new_baseline: _Cell | None,
    threshold: float,
    confidence: float,
) -> SpeedupChange:
    assert base.speedup is not None and new.speedup is not None
    base_speedup, new_speedup, interval = base.speedup, new.speedup, None
    if base_baseline and new_baseline and all(c.samples for c in (base, new, base_baseline, new_baseline)):
        base_speedup = base_baseline.location / base.location
        new_speedup = new_baseline.location / new.location
        interval = speedup_change_ci(
            base_baseline.samples, base.samples, new_baseline.samples, new.samples, confidence, RESAMPLES
        )
    ratio = new_speedup / base_speedup if base_speedup > 0 else 1.0
    low, high = (interval.low, interval.high) if interval else (ratio, ratio)
    verdict = "higher" if low > 1 + threshold else "lower" if high < 1 - threshold else UNCHANGED
    return SpeedupChange(base.key, base.label, base_speedup, new_speedup, interval, verdict)


# -- rendering ---------------------------------------------------------------------------------


def _cell_table(rows: Sequence[CellChange], confidence: float) -> str:
    # Net of the machine's own change where both runs timed the canary (the line after the table says by how much):
    # "base" and "new" are as measured, so 26.2 -> 49.2 ms may be a -47 % change.
    change = "net change" if any(row.machine is not None for row in rows) else "change"
    header = ("cell", "base", "new", change, f"{_fraction_text(confidence)} interval", "p", "verdict")
    body = [
        (
            row.label,
            _quantity(row.base, row.unit),
            _quantity(row.new, row.unit),
            row.change,
            _interval_cell(row),
            "-" if row.p_value is None else "<0.001" if row.p_value < 0.001 else f"{row.p_value:.3f}",
            row.detail if row.verdict == UNCHANGED and row.detail else row.verdict,
        )
        for row in rows
    ]
    return _columns(header, body, right=(1, 2, 3, 5))


def _speedup_table(changes: Sequence[SpeedupChange], confidence: float) -> str:
    header = ("speedup over sequential", "base", "new", "change", f"{_fraction_text(confidence)} interval", "verdict")
    body = [
        (
            change.label,
            f"{change.base:.2f}{TIMES}",
            f"{change.new:.2f}{TIMES}",
            _percent(change.ratio),
            "-" if change.interval is None else _interval_text(change.interval),
            change.verdict,
        )
        for change in changes
    ]
    return _columns(header, body, right=(1, 2, 3)) + "\n(speedups are informative: they do not fail the check)"


def _columns(header: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[int]) -> str:
    """Aligned columns two spaces apart, each as wide as its widest text; ``right``: right-aligned.

    Names are never cut: cut to fit 100 columns, a verdict such as ``slower, perhaps beyond threshold`` left
    16 characters of every name, and ``pipeline sequential io`` and ``pipeline sequential mixed`` both read
    ``pipeline sequen…``. The verdict, last, may run past 100 columns instead. Names come from the JSON, often
    another branch's CI artifact: escaped before they are measured, so that a terminal shows them as text and
    the columns still line up."""
    shown = [tuple(printable(text) for text in row) for row in (header, *rows)]
    widths = [max(len(row[i]) for row in shown) for i in range(len(header))]
    lines = []
    for row in shown:
        cells = [
            text.rjust(w) if i in right else text.ljust(w) for i, (text, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def _interval_cell(row: CellChange) -> str:
    if row.interval is not None:
        return _interval_text(row.interval)
    if row.measure == ERROR_RATE and row.base is not None and row.new is not None:
        return "counted"
    return "exact" if row.measure == "instructions" and row.ratio is not None else "-"


def _percent(ratio: float) -> str:
    """``1.31`` -> ``+31%``; small changes keep a decimal: ``1.021`` -> ``+2.1%``."""
    change = (ratio - 1) * 100
    return f"{change:+.1f}%" if abs(change) < 9.95 else f"{change:+.0f}%"


def _fraction_text(fraction: float) -> str:
    """A threshold or confidence as a percentage, with the precision it was given: ``0.004`` -> ``0.4%``
    (``:.0%`` showed it as 0%)."""
    return f"{fraction * 100:g}%"


def _interval_text(interval: Interval) -> str:
    return f"[{_percent(interval.low)}, {_percent(interval.high)}]"


def _quantity(value: float | None, unit: str) -> str:
    """Three significant figures with the unit: ``12.3 ms``, ``31.9 M instr``, ``2.5%``; ``-`` for none."""
    if value is None:
        return "-"
    if unit == "%":
        return quantity(f"{value:.3g}", unit)
    if unit == "instructions":
        for factor, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
            if abs(value) >= factor:
                return f"{_figures(value / factor)} {prefix}instr"
        return f"{value:.0f} instr"
    return quantity(_figures(value), unit)


def _figures(value: float) -> str:
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"
