"""Derived figures per cell (speedup, efficiency, Karp-Flatt, stage split, memory, overhead) and verdicts."""

from __future__ import annotations

import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace

from zerosite.benchmarking.cells import (
    BARE,
    BASELINE,
    INSTRUCTIONS,
    LEVELS,
    STAGES,
    Cell,
    CellResult,
    RoundOutcome,
)
from zerosite.benchmarking.leads import AutoAgainstBest, Lead, against_best, against_references, standings
from zerosite.benchmarking.service_level import ServiceAnalysis
from zerosite.benchmarking.stats import (
    Interval,
    Spread,
    bootstrap_ci,
    efficiency,
    grouped_ratio_ci,
    groups_of,
    karp_flatt,
    median_interval,
    ratio_ci,
    relative_half_width,
    speedup,
    spread,
)
from zerosite.benchmarking.targets import TARGET_SPECS
from zerosite.benchmarking.verdicts import Judgement, Verdict, judge
from zerosite.benchmarking.winners import Standing

__all__ = ["LEVEL_NAMES", "Analysis", "CellFigures", "analyse", "level_unit", "level_value"]

MB = 1024 * 1024
LEVEL_NAMES = {"single": "Single report", "pipeline": "Pipeline", "batch": "Batch"}
TIME_TARGET = {"single": "single_report_ms", "pipeline": "pipeline_ms", "batch": "batch_100_s"}


def level_unit(level: str) -> str:
    """The unit a level's time figure is shown in (that of its target)."""
    return TARGET_SPECS[TIME_TARGET[level]].unit


def level_value(cell: Cell, outcome: RoundOutcome) -> float:
    """One sample's wall time in the unit of the level's target: per iteration in ms (single, pipeline),
    seconds per 100 projects (batch)."""
    if cell.level == "batch":
        return outcome.wall_s * 100 / max(outcome.projects, 1)
    return outcome.per_iteration_s * 1000


@dataclass(frozen=True)
class CellFigures:
    """Everything derived for one cell; times in the unit of the level (``unit``)."""

    cell: Cell
    unit: str
    samples: tuple[float, ...]
    time: Spread
    time_ci: Interval
    reports_per_s: float
    stage_ms_per_report: Mapping[str, float]
    memory_mb: Spread | None
    memory_ci: Interval | None
    speedup: float | None = None
    speedup_ci: Interval | None = None
    efficiency: float | None = None
    karp_flatt: float | None = None
    overhead: float | None = None
    """Sequential cells only: median time over the bare loop's, minus one (0.05 = 5 % slower)."""
    failed_reports: int = 0
    judgements: tuple[Judgement, ...] = ()
    precision: float = math.inf
    """Relative half-width of the median's 95 % interval reached (0.05 = +/-5 %)."""
    speedup_precision: float | None = None
    """Relative half-width of the speedup's 95 % interval reached."""
    loops: int = 1
    """Iterations per sample, from calibration."""
    stopped: str = ""
    """Why measuring stopped: precision, budget, max-rounds or starts (``harness.ROUNDS_PER_START``)."""
    busy_rounds: int = 0
    """Samples taken while this machine was busy (other processes, or steal by the host)."""
    loads: tuple[Mapping[str, object], ...] = ()
    """Per sample, the machine's load (load average, other processes' CPU, steal, busy)."""
    instructions: int | None = None
    """Instruction-count mode: the instructions of ``iterations`` rounds (``samples`` holds per round)."""
    iterations: int = 0
    canary_s: tuple[float, ...] = ()
    """The machine's own speed during this cell's rounds (``canary.Canary``), for ``zerosite compare``."""
    starts: tuple[int, ...] = ()
    """Per sample, which start of the cell's workers took it (``CellResult.starts``), for ``zerosite compare``."""
    ran_as: Mapping[str, int] = field(default_factory=dict)
    """A strategy that chooses another for each batch (``auto``): how many of its batches ran on each, most first."""

    @property
    def noisy(self) -> bool:
        """More than a tenth of the samples were taken while the machine was busy."""
        return self.busy_rounds * 10 > self.time.n

    def as_dict(self) -> dict[str, object]:
        """JSON-ready figures (also merged into pytest-benchmark's ``extra_info``)."""
        return {
            "cell": self.cell.id,
            "group": self.cell.group,
            **self.cell.as_info(),
            "unit": self.unit,
            "median": self.time.median,
            "iqr": self.time.iqr,
            "q1": self.time.q1,
            "q3": self.time.q3,
            "p95": self.time.p95,
            "ci": [self.time_ci.low, self.time_ci.high],
            "rounds": self.time.n,
            "reports_per_s": self.reports_per_s,
            "stage_ms_per_report": dict(self.stage_ms_per_report),
            "memory_per_report_mb_p95": self.memory_mb.p95 if self.memory_mb else None,
            "memory_per_report_mb_median": self.memory_mb.median if self.memory_mb else None,
            "speedup": self.speedup,
            "speedup_ci": [self.speedup_ci.low, self.speedup_ci.high] if self.speedup_ci else None,
            "efficiency": self.efficiency,
            "karp_flatt": self.karp_flatt,
            "engine_overhead": self.overhead,
            "failed_reports": self.failed_reports,
            "verdicts": {j.target_name: str(j.verdict) for j in self.judgements},
            "samples": list(self.samples),
            "precision": self.precision,
            "speedup_precision": self.speedup_precision,
            "loops": self.loops,
            "stopped": self.stopped,
            "busy_rounds": self.busy_rounds,
            "loads": list(self.loads),
            "instructions": round(self.samples[0]) if self.instructions is not None else None,
            "instruction_total": self.instructions,
            "iterations": self.iterations,
            "canary_s": list(self.canary_s),
            "starts": list(self.starts),
            "ran_as": dict(self.ran_as),
        }


@dataclass(frozen=True)
class Analysis:
    """All cells' figures, every judgement, and per level and scenario the winner, the tie or those too close to
    call."""

    cells: tuple[CellFigures, ...]
    standings: tuple[Standing, ...] = ()
    auto: tuple[AutoAgainstBest, ...] = ()
    """Per batch scenario, each ``auto`` cell against the fastest fixed strategy (also among its judgements)."""
    service: ServiceAnalysis | None = None
    """The service level (``zerosite serve`` under load), when it was measured."""

    @property
    def sentences(self) -> dict[str, str]:
        """One line per level: each scenario's winner or tie, in plain words."""
        lines: dict[str, list[str]] = defaultdict(list)
        for standing in self.standings:
            lines[standing.level].append(f"{standing.scenario}: {standing.sentence()}")
        return {level: f"{LEVEL_NAMES[level]} — " + " ".join(parts) for level, parts in lines.items()}

    @property
    def leads(self) -> list[Lead]:
        """Per level and scenario with reference code measured: our fastest strategy against each reference
        (:func:`leads.against_references`)."""
        return against_references(self.standings, self.cells)

    def winners(self) -> dict[str, dict[str, dict[str, object]]]:
        """``winners[level][scenario]``: the verdicts as data (see :meth:`Standing.as_dict`)."""
        table: dict[str, dict[str, dict[str, object]]] = defaultdict(dict)
        for standing in self.standings:
            table[standing.level][standing.scenario] = standing.as_dict()
        return dict(table)

    @property
    def judgements(self) -> list[Judgement]:
        cells = [j for figures in self.cells for j in figures.judgements]
        return cells + (self.service.judgements if self.service is not None else [])

    @property
    def failures(self) -> list[Judgement]:
        return [j for j in self.judgements if j.verdict is Verdict.FAIL]

    @property
    def noisy(self) -> list[CellFigures]:
        """The noisy cells (:attr:`CellFigures.noisy`) of every kind, ours, the bare loop's and reference code's:
        the one list the page, the terminal and the JSON count."""
        return [f for f in self.cells if f.noisy]

    def by_id(self) -> dict[str, CellFigures]:
        """Cells by ``group/id`` (unique across levels)."""
        return {f"{f.cell.level}/{f.cell.id}": f for f in self.cells}

    def levels(self) -> list[str]:
        """The levels measured, in matrix order."""
        present = {f.cell.level for f in self.cells}
        return [level for level in LEVELS if level in present]

    def of_level(self, level: str, bare: bool = False) -> list[CellFigures]:
        return [f for f in self.cells if f.cell.level == level and (bare or f.cell.strategy != BARE)]

    def as_dict(self) -> dict[str, object]:
        """The top-level ``zerosite`` block of the JSON: cells, verdict counts, sentences."""
        counts = {str(v): 0 for v in Verdict}
        for judgement in self.judgements:
            counts[str(judgement.verdict)] += 1
        return {
            "cells": [f.as_dict() for f in self.cells],
            "judgements": [j.as_dict() for j in self.judgements],
            "verdict_counts": counts,
            "winners": self.winners(),
            "references": [lead.as_dict() | {"level": lead.level, "scenario": lead.scenario} for lead in self.leads],
            "auto_vs_best_fixed": [check.as_dict() for check in self.auto],
            "sentences": self.sentences,
            "noisy_cells": [f"{f.cell.level}/{f.cell.id}" for f in self.noisy],
            "service": self.service.as_dict() if self.service is not None else None,
        }


def _figures(
    result: CellResult,
    targets: Mapping[str, float],
    baseline: CellResult | None,
    bare: CellResult | None,
    confidence: float,
    cores: int | None,
) -> CellFigures:
    cell = result.cell
    if result.instructions is not None:
        return _instruction_figures(result, bare)
    rounds = result.rounds
    samples = tuple(level_value(cell, r) for r in rounds)
    time_ci = median_interval(samples, confidence)
    reports = sum(r.reports for r in rounds)
    stage_totals = {s: sum(r.stage_ns.get(s, 0) for r in rounds) for s in STAGES}
    peaks = [p / MB for p in result.peaks]
    memory = spread(peaks) if peaks else None
    memory_ci = bootstrap_ci(peaks, quantile=95, confidence=confidence) if peaks else None
    figures: dict[str, object] = {}
    if baseline is not None and cell.strategy not in (BASELINE, BARE):
        # Per project (batch) or per iteration: a reference measured on fewer projects compares fairly.
        base, own = [level_value(baseline.cell, r) for r in baseline.rounds], list(samples)
        s = speedup(statistics.median(base), statistics.median(own))
        # Where the cell's rounds came from several starts of its workers, resampled start by start: the spread
        # between the pools it got belongs in a speedup that the next run is to reproduce (``Cell.worker_starts``).
        starts = groups_of(own, result.starts)
        interval = (
            grouped_ratio_ci([base], starts, confidence=confidence)
            if len(starts) > 1
            else ratio_ci(base, own, confidence=confidence)
        )
        figures.update(
            speedup=s,
            speedup_ci=interval,
            speedup_precision=relative_half_width(interval, s),
            efficiency=efficiency(s, cell.workers),
            karp_flatt=_serial_fraction(s, cell.workers, cores),
        )
    elif cell.strategy == BASELINE:
        figures.update(speedup=1.0, efficiency=1.0)
        if bare is not None:
            figures["overhead"] = (
                statistics.median(result.per_iteration_s) / statistics.median(bare.per_iteration_s) - 1
            )
    judgements: list[Judgement] = []
    if not cell.is_reference:
        time_target = TIME_TARGET[cell.level]
        if time_target in targets:
            judgements.append(_judgement(cell, time_target, statistics.median(samples), time_ci, targets[time_target]))
        if memory is not None and memory_ci is not None and "memory_per_report_mb" in targets:
            judgements.append(
                _judgement(cell, "memory_per_report_mb", memory.p95, memory_ci, targets["memory_per_report_mb"])
            )
    # Of the median round, as the median column is: a mean over every round read as another figure beside it
    wall = statistics.median(result.wall_s) if result.wall_s else 0.0
    reports_a_round = reports / max(len(result.wall_s), 1)
    return CellFigures(
        cell=cell,
        unit=level_unit(cell.level),
        samples=samples,
        time=spread(samples),
        time_ci=time_ci,
        reports_per_s=reports_a_round / wall if wall > 0 else math.nan,
        stage_ms_per_report={s: ns / 1e6 / max(reports, 1) for s, ns in stage_totals.items()},
        memory_mb=memory,
        memory_ci=memory_ci,
        failed_reports=sum(r.failed for r in rounds),
        judgements=tuple(judgements),
        precision=relative_half_width(time_ci, statistics.median(samples)),
        loops=result.loops,
        stopped=result.stopped,
        busy_rounds=result.busy_rounds,
        loads=tuple(r.load.as_dict() for r in rounds if r.load is not None),
        canary_s=tuple(result.canary_s),
        starts=tuple(result.starts),
        ran_as=dict(Counter(label for r in rounds for label in r.ran_as).most_common()),
        **figures,  # type: ignore[arg-type]
    )


def _instruction_figures(result: CellResult, bare: CellResult | None) -> CellFigures:
    """A counted cell: instructions per round, exact (its interval is the point); no time targets apply."""
    per_round = result.instructions / max(result.iterations, 1) if result.instructions is not None else math.nan
    overhead = None
    if result.cell.strategy == BASELINE and bare is not None and bare.instructions:
        overhead = per_round / (bare.instructions / max(bare.iterations, 1)) - 1
    return CellFigures(
        cell=result.cell,
        unit=INSTRUCTIONS,
        samples=(per_round,),
        time=spread([per_round]),
        time_ci=Interval(per_round, per_round),
        reports_per_s=math.nan,
        stage_ms_per_report={},
        memory_mb=None,
        memory_ci=None,
        overhead=overhead,
        precision=0.0,
        instructions=result.instructions,
        iterations=result.iterations,
        stopped="counted",
    )


def _serial_fraction(speedup_: float, workers: int, cores: int | None) -> float | None:
    """Karp-Flatt where it means something: over the processors really used (workers, at most the
    cores), and only for a speedup between 1 and that count; None elsewhere."""
    processors = min(workers, cores) if cores else workers
    if processors <= 1 or not 1 <= speedup_ <= processors:
        return None
    return karp_flatt(speedup_, processors)


def _judgement(cell: Cell, name: str, value: float, interval: Interval, target: float) -> Judgement:
    spec = TARGET_SPECS[name]
    return Judgement(
        subject=cell.subject,
        target_name=name,
        figure=spec.figure,
        value=value,
        interval=interval,
        target=target,
        unit=spec.unit,
        verdict=judge(interval, target),
    )


def analyse(
    results: Iterable[CellResult],
    targets_for: Callable[[Cell], Mapping[str, float]],
    confidence: float = 0.95,
    cores: int | None = None,
) -> Analysis:
    """Figures and judgements for every measured cell, each compared with its group's baseline;
    ``cores`` (usable CPUs) bounds the processors in Karp-Flatt's serial fraction."""
    results = [r for r in results if r.rounds or r.instructions is not None]
    index = {r.cell: r for r in results}
    figures = tuple(
        _figures(r, targets_for(r.cell), index.get(r.cell.baseline), index.get(r.cell.bare), confidence, cores)
        for r in sorted(results, key=lambda r: (LEVELS.index(r.cell.level), r.cell.group, r.cell.sort_key))
    )
    checks = against_best(figures, targets_for, confidence)
    judged = {check.judgement.subject: check.judgement for check in checks}
    figures = tuple(
        replace(f, judgements=(*f.judgements, judged[f.cell.subject])) if f.cell.subject in judged else f
        for f in figures
    )
    return Analysis(cells=figures, standings=standings(figures, confidence), auto=tuple(checks))
