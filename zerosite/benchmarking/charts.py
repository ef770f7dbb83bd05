"""Charts of one benchmark run as PNG files (matplotlib, Agg canvas, no pyplot state)."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from zerosite.benchmarking.analysis import TIME_TARGET, Analysis, CellFigures
from zerosite.benchmarking.cells import BARE, BASELINE, STAGES, TIMES
from zerosite.benchmarking.targets import TARGET_SPECS

__all__ = ["Chart", "write_charts"]

LEVEL_TITLES = {"single": "single report (one module, warm)", "pipeline": "pipeline (one project)", "batch": "batch"}
STAGE_COLOURS = {"fetch": "#4c72b0", "compute": "#dd8452", "render": "#55a868", "write": "#c44e52"}
TARGET_STYLE: dict[str, Any] = {"color": "#b00020", "linestyle": "--", "linewidth": 1.5}
LOG_WHEN_TARGET_EXCEEDS = 3.0
"""Use a log scale when the target is this many times above the largest value, so both stay visible."""

Facet = tuple[str, dict[str, list[CellFigures]]]


@dataclass(frozen=True)
class Chart:
    """One chart written: its file and what it shows."""

    path: Path
    title: str
    level: str | None


def _save(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=100)
    return path


def _label_order(cells: Sequence[CellFigures]) -> list[str]:
    """Strategy labels, sequential first."""
    return sorted({f.cell.label for f in cells}, key=lambda s: (s != BASELINE, s))


def _facets(level: str, cells: Sequence[CellFigures]) -> list[Facet]:
    """Single reports: one panel per scenario, modules along x. Other levels: one panel, scenarios along x."""
    panels: dict[str, dict[str, list[CellFigures]]] = defaultdict(lambda: defaultdict(list))
    for f in cells:
        if level == "single":
            panels[f"scenario {f.cell.scenario}"][f.cell.module or ""].append(f)
        else:
            panels["all scenarios"][f.cell.scenario].append(f)
    return [(title, dict(xs)) for title, xs in panels.items()]


def _time_axis(ax: Axes, level: str, unit: str, values: Sequence[float], target: float | None, what: str) -> None:
    per = " per 100 projects" if level == "batch" else ""
    log = bool(values) and target is not None and target > LOG_WHEN_TARGET_EXCEEDS * max(values) and min(values) > 0
    if log:
        ax.set_yscale("log")
    ax.set_ylabel(f"{what} ({unit}{per}){', log scale' if log else ''}")


def _target_line(ax: Axes, name: str, value: float | None) -> None:
    if value is not None:
        ax.axhline(value, label=f"target {name} = {value:g} {TARGET_SPECS[name].unit}", **TARGET_STYLE)


def _panels(count: int, width: float, height: float = 4.2) -> tuple[Figure, list[Axes]]:
    fig = Figure(figsize=(width, height * count))
    return fig, list(fig.subplots(count, 1, squeeze=False)[:, 0])


def _strategy_comparison(level: str, cells: list[CellFigures], target: float | None, path: Path) -> Path:
    facets = _facets(level, cells)
    labels = _label_order(cells)
    widest = max(len(xs) for _, xs in facets)
    fig, axes = _panels(len(facets), max(8.0, 0.3 * widest * len(labels) + 2))
    width = 0.8 / max(len(labels), 1)
    for ax, (title, xs) in zip(axes, facets, strict=True):
        for i, label in enumerate(labels):
            points = [(x, f) for x, members in enumerate(xs.values()) for f in members if f.cell.label == label]
            ax.bar(
                [x + (i - (len(labels) - 1) / 2) * width for x, _ in points],
                [f.time.median for _, f in points],
                width,
                yerr=[[f.time.median - f.time.q1 for _, f in points], [f.time.q3 - f.time.median for _, f in points]],
                capsize=2,
                label=label,
            )
        _target_line(ax, TIME_TARGET[level], target)
        _time_axis(ax, level, cells[0].unit, [f.time.q3 for f in cells], target, "median time, whiskers IQR")
        ax.set_xticks(range(len(xs)), list(xs))
        ax.set_xlabel("module" if level == "single" else "scenario")
        ax.set_title(title)
        ax.legend(fontsize="small", ncols=2)
    fig.suptitle(f"Strategy comparison: {LEVEL_TITLES[level]}")
    return _save(fig, path)


def _speedup(level: str, cells: list[CellFigures], path: Path) -> Path:
    scenarios = sorted({f.cell.scenario for f in cells})
    fig = Figure(figsize=(4.4 * len(scenarios), 4.4))
    axes = fig.subplots(1, len(scenarios), squeeze=False)[0]
    top = max([f.cell.workers for f in cells] + [2])
    for ax, scenario in zip(axes, scenarios, strict=True):
        ax.plot([1, top], [1, top], color="grey", linestyle=":", label="ideal (speedup = workers)")
        ax.axhline(1.0, color="black", linewidth=0.8, label=f"sequential (1{TIMES})")
        series: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
        for f in cells:
            if f.cell.scenario == scenario and f.speedup is not None and f.cell.strategy not in (BASELINE, BARE):
                series[f.cell.strategy][f.cell.workers].append(f.speedup)
        for strategy, points in sorted(series.items()):
            workers = sorted(points)
            means = [math.exp(sum(map(math.log, points[w])) / len(points[w])) for w in workers]
            ax.plot(workers, means, marker="o", label=strategy)
        ax.set_xlabel("workers")
        ax.set_ylabel(f"speedup over sequential ({TIMES})")
        ax.set_title(f"scenario {scenario}")
        ax.legend(fontsize="small")
    over = " (geometric mean over modules)" if level == "single" else ""
    fig.suptitle(f"Speedup against workers: {LEVEL_TITLES[level]}{over}")
    return _save(fig, path)


def _cell_name(f: CellFigures) -> str:
    return f"{f.cell.module} {f.cell.label}" if f.cell.module else f"{f.cell.scenario} {f.cell.label}"


def _per_cell(level: str, cells: list[CellFigures], draw: Callable[[Axes, list[CellFigures]], None]) -> Figure:
    """One panel per facet with one x position per cell."""
    facets = _facets(level, cells)
    members = [[f for xs in panel.values() for f in xs] for _, panel in facets]
    fig, axes = _panels(len(facets), max(8.0, 0.32 * max(len(m) for m in members) + 2), 4.6)
    for ax, (title, _), panel in zip(axes, facets, members, strict=True):
        draw(ax, panel)
        ax.set_xticks(range(1, len(panel) + 1), [_cell_name(f) for f in panel], rotation=60, ha="right")
        ax.set_xlabel("cell")
        ax.set_title(title)
    return fig


def _stage_split(level: str, cells: list[CellFigures], path: Path) -> Path:
    def draw(ax: Axes, panel: list[CellFigures]) -> None:
        bottom = [0.0] * len(panel)
        for stage in STAGES:
            values = [f.stage_ms_per_report.get(stage, 0.0) for f in panel]
            ax.bar(range(1, len(panel) + 1), values, bottom=bottom, label=stage, color=STAGE_COLOURS[stage])
            bottom = [b + v for b, v in zip(bottom, values, strict=True)]
        ax.set_ylabel("time per report (ms)")
        ax.legend(fontsize="small")

    fig = _per_cell(level, cells, draw)
    fig.suptitle(f"Stage split per report: {LEVEL_TITLES[level]} (worker time, summed over workers)")
    return _save(fig, path)


def _distribution(level: str, cells: list[CellFigures], target: float | None, path: Path) -> Path:
    def draw(ax: Axes, panel: list[CellFigures]) -> None:
        ax.boxplot([list(f.samples) for f in panel], whis=(5, 95))
        ax.plot([], [], color="black", label="box: IQR, line: median, whiskers: p5-p95")
        _target_line(ax, TIME_TARGET[level], target)
        _time_axis(ax, level, cells[0].unit, [max(f.samples) for f in panel], target, "time per round")
        ax.legend(fontsize="small")

    fig = _per_cell(level, cells, draw)
    fig.suptitle(f"Latency distribution over rounds: {LEVEL_TITLES[level]}")
    return _save(fig, path)


def _memory(cells: list[CellFigures], target: float | None, path: Path) -> Path:
    """Per module (single-report cells) or for all modules (other levels), one bar per strategy."""
    measured = [f for f in cells if f.memory_mb is not None and f.cell.strategy != BARE]
    single = [f for f in measured if f.cell.level == "single"]
    shown = single or [f for f in measured if f.cell.level == measured[0].cell.level]
    by_x: dict[str, dict[str, float]] = defaultdict(dict)
    for f in shown:
        assert f.memory_mb is not None
        by_x[f.cell.module or "all modules"][f.cell.label] = f.memory_mb.p95  # same for every scenario
    labels = _label_order(shown)
    fig = Figure(figsize=(max(8.0, 0.3 * len(by_x) * len(labels) + 2), 4.8))
    ax = fig.add_subplot()
    width = 0.8 / max(len(labels), 1)
    for i, label in enumerate(labels):
        xs = [x for x, values in enumerate(by_x.values()) if label in values]
        heights = [values[label] for values in by_x.values() if label in values]
        ax.bar([x + (i - (len(labels) - 1) / 2) * width for x in xs], heights, width, label=label)
    _target_line(ax, "memory_per_report_mb", target)
    values = [v for values in by_x.values() for v in values.values()]
    log = bool(values) and target is not None and target > LOG_WHEN_TARGET_EXCEEDS * max(values) and min(values) > 0
    if log:
        ax.set_yscale("log")
    ax.set_ylabel(f"p95 peak traced memory per report (MB){', log scale' if log else ''}")
    ax.set_xticks(range(len(by_x)), list(by_x))
    ax.set_xlabel("module")
    ax.set_title("Memory per report against its target (measured in the process that made it)")
    ax.legend(fontsize="small", ncols=2)
    return _save(fig, path)


def write_charts(analysis: Analysis, targets: dict[str, float], folder: Path) -> list[Chart]:
    """Write every chart of ``analysis`` into ``folder`` and return them in page order."""
    folder.mkdir(parents=True, exist_ok=True)
    charts: list[Chart] = []
    for level in analysis.levels():
        cells = analysis.of_level(level)
        target = targets.get(TIME_TARGET[level])
        title = LEVEL_TITLES[level]
        made = [
            (_strategy_comparison(level, cells, target, folder / f"{level}-strategies.png"), "Strategy comparison"),
            (_speedup(level, cells, folder / f"{level}-speedup.png"), "Speedup against workers"),
            (_stage_split(level, cells, folder / f"{level}-stages.png"), "Stage split"),
            (_distribution(level, cells, target, folder / f"{level}-distribution.png"), "Latency distribution"),
        ]
        charts += [Chart(path, f"{what}: {title}", level) for path, what in made]
    if any(f.memory_mb is not None for f in analysis.cells):
        path = _memory(list(analysis.cells), targets.get("memory_per_report_mb"), folder / "memory.png")
        charts.append(Chart(path, "Memory per report against its target", None))
    return charts
