"""Derived figures per cell (speedup, efficiency, Karp-Flatt, stage split, memory, overhead) and verdicts."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial

from zerosite.benchmarking.cells import BARE, BASELINE, LEVELS, STAGES, TIMES, Cell, CellResult
from zerosite.benchmarking.stats import (
    Interval,
    Spread,
    bootstrap_ci,
    efficiency,
    karp_flatt,
    percentile,
    ratio_ci,
    speedup,
    spread,
)
from zerosite.benchmarking.targets import TARGET_SPECS
from zerosite.benchmarking.verdicts import Judgement, Verdict, judge

__all__ = ["Analysis", "CellFigures", "analyse", "level_unit", "level_value"]

MB = 1024 * 1024
TIME_TARGET = {"single": "single_report_ms", "pipeline": "pipeline_ms", "batch": "batch_100_s"}


def level_unit(level: str) -> str:
    """The unit a level's time figure is shown in (that of its target)."""
    return TARGET_SPECS[TIME_TARGET[level]].unit


def level_value(cell: Cell, wall_s: float, projects: int) -> float:
    """One round's wall time in the unit of the level's target (batch: seconds per 100 projects)."""
    if cell.level == "batch":
        return wall_s * 100 / max(projects, 1)
    return wall_s * 1000


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
        }


@dataclass(frozen=True)
class Analysis:
    """All cells' figures, every judgement, and one sentence per level naming the winner."""

    cells: tuple[CellFigures, ...]
    sentences: Mapping[str, str] = field(default_factory=dict)

    @property
    def judgements(self) -> list[Judgement]:
        return [j for figures in self.cells for j in figures.judgements]

    @property
    def failures(self) -> list[Judgement]:
        return [j for j in self.judgements if j.verdict is Verdict.FAIL]

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
            "winners": dict(self.sentences),
        }


def _figures(
    result: CellResult,
    targets: Mapping[str, float],
    baseline: CellResult | None,
    bare: CellResult | None,
    confidence: float,
) -> CellFigures:
    cell = result.cell
    rounds = result.rounds
    samples = tuple(level_value(cell, r.wall_s, r.projects) for r in rounds)
    time_ci = bootstrap_ci(samples, confidence=confidence)
    reports = sum(r.reports for r in rounds)
    stage_totals = {s: sum(r.stage_ns.get(s, 0) for r in rounds) for s in STAGES}
    peaks = [p / MB for p in result.peaks]
    memory = spread(peaks) if peaks else None
    memory_ci = bootstrap_ci(peaks, statistic=partial(percentile, q=95), confidence=confidence) if peaks else None
    figures: dict[str, object] = {}
    if baseline is not None and cell.strategy not in (BASELINE, BARE):
        s = speedup(statistics.median(baseline.wall_s), statistics.median(result.wall_s))
        figures.update(
            speedup=s,
            speedup_ci=ratio_ci(baseline.wall_s, result.wall_s, confidence=confidence),
            efficiency=efficiency(s, cell.workers),
            karp_flatt=karp_flatt(s, cell.workers),
        )
    elif cell.strategy == BASELINE:
        figures.update(speedup=1.0, efficiency=1.0)
        if bare is not None:
            figures["overhead"] = statistics.median(result.wall_s) / statistics.median(bare.wall_s) - 1
    judgements: list[Judgement] = []
    if cell.strategy != BARE:
        time_target = TIME_TARGET[cell.level]
        if time_target in targets:
            judgements.append(_judgement(cell, time_target, statistics.median(samples), time_ci, targets[time_target]))
        if memory is not None and memory_ci is not None and "memory_per_report_mb" in targets:
            judgements.append(
                _judgement(cell, "memory_per_report_mb", memory.p95, memory_ci, targets["memory_per_report_mb"])
            )
    return CellFigures(
        cell=cell,
        unit=level_unit(cell.level),
        samples=samples,
        time=spread(samples),
        time_ci=time_ci,
        reports_per_s=reports / sum(result.wall_s) if sum(result.wall_s) > 0 else math.nan,
        stage_ms_per_report={s: ns / 1e6 / max(reports, 1) for s, ns in stage_totals.items()},
        memory_mb=memory,
        memory_ci=memory_ci,
        failed_reports=sum(r.failed for r in rounds),
        judgements=tuple(judgements),
        **figures,  # type: ignore[arg-type]
    )


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


def _geomean(values: Iterable[float]) -> float:
    values = list(values)
    return math.exp(statistics.fmean(math.log(v) for v in values))


def _times(speedup_: float) -> str:
    return f"{speedup_:.2f}{TIMES} sequential" + (" (slower)" if speedup_ < 0.995 else "")


def winner_sentence(level: str, cells: list[CellFigures]) -> str:
    """One sentence: per scenario, the fastest strategy of ``level`` and its speedup over sequential.

    Where a level has several groups per scenario (one per module), speedups are geometric means.
    """
    by_scenario: dict[str, dict[tuple[str, int], list[float]]] = defaultdict(lambda: defaultdict(list))
    noise: set[tuple[str, str, int]] = set()  # cells whose 95 % speedup interval includes 1x
    for figures in cells:
        if figures.speedup is not None and figures.cell.strategy != BARE:
            key = (figures.cell.strategy, figures.cell.workers)
            by_scenario[figures.cell.scenario][key].append(figures.speedup)
            ci = figures.speedup_ci
            if ci is not None and ci.low <= 1.0 <= ci.high:
                noise.add((figures.cell.scenario, *key))
    parts = []
    for scenario, candidates in sorted(by_scenario.items()):
        ranked = sorted(((_geomean(v), key) for key, v in candidates.items()), reverse=True)
        best, (strategy, workers) = ranked[0]
        if strategy == BASELINE:
            others = [r for r in ranked if r[1][0] != BASELINE]
            if others:
                runner_up, (name, n) = others[0]
                parts.append(
                    f"sequential in {scenario} (the best alternative, {name}{TIMES}{n}, ran at {_times(runner_up)})"
                )
            else:
                parts.append(f"sequential in {scenario} (no alternative measured)")
        else:
            within = ""
            if (scenario, strategy, workers) in noise:
                within = f" (within the noise: its 95 % interval includes 1{TIMES})"
            parts.append(f"{strategy}{TIMES}{workers} in {scenario} at {_times(best)}{within}")
    title = {"single": "Single report", "pipeline": "Pipeline", "batch": "Batch"}[level]
    return f"{title}: fastest was " + "; ".join(parts) + "." if parts else f"{title}: nothing measured."


def analyse(
    results: Iterable[CellResult],
    targets_for: Callable[[Cell], Mapping[str, float]],
    confidence: float = 0.95,
) -> Analysis:
    """Figures and judgements for every measured cell, each compared with its group's baseline."""
    results = [r for r in results if r.rounds]
    index = {r.cell: r for r in results}
    figures = tuple(
        _figures(r, targets_for(r.cell), index.get(r.cell.baseline), index.get(r.cell.bare), confidence)
        for r in sorted(results, key=lambda r: (LEVELS.index(r.cell.level), r.cell.group, r.cell.sort_key))
    )
    sentences = {
        level: winner_sentence(level, [f for f in figures if f.cell.level == level])
        for level in LEVELS
        if any(f.cell.level == level for f in figures)
    }
    return Analysis(cells=figures, sentences=sentences)
