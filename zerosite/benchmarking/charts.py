"""Charts of one benchmark run as PNG files (matplotlib, Agg canvas, no pyplot state)."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.legend import Legend
from matplotlib.lines import Line2D
from matplotlib.text import Text
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

from zerosite.benchmarking.analysis import TIME_TARGET, Analysis, CellFigures
from zerosite.benchmarking.cells import BASELINE, STAGES, TIMES
from zerosite.benchmarking.colours import StrategyColours
from zerosite.benchmarking.leads import standings
from zerosite.benchmarking.service_level import ServiceAnalysis
from zerosite.benchmarking.stats import Interval
from zerosite.benchmarking.targets import TARGET_SPECS, quantity
from zerosite.benchmarking.winners import Standing

__all__ = ["Chart", "ChartStyle", "ideal_line", "ideal_speedup", "shared_target", "write_charts"]

LEVEL_TITLES = {
    "single": "single report (and the modules it requires, warm)",
    "pipeline": "pipeline (one project)",
    "batch": "batch",
}
MEMORY_TARGET = "memory_per_report_mb"


@dataclass(frozen=True)
class ChartStyle:
    """How the charts look and when an axis turns logarithmic."""

    width_in: float = 12.0
    """Figures are at most this wide (12 in at 100 dpi: the page's 1200 px column)."""
    dpi: int = 100
    edge_in: float = 0.3
    """Room kept beside a figure's title and legend, both sides together."""
    log_when_span_exceeds: float = 20.0
    """A value axis turns logarithmic when its largest value is this many times its smallest."""
    target_within: float = 1.6
    """A target line is drawn when it lies within this factor of the data; beyond, a note says where it is."""
    stage_colours: tuple[str, ...] = ("#d9d9d9", "#969696", "#525252", "#1a1a1a")
    """Greys, so that stages never look like strategies (which own the hues)."""
    target_colour: str = "#b00020"
    oversubscribed_colour: str = "#eeeeee"
    busy_colour: str = "#e41a1c"


STYLE = ChartStyle()


@dataclass(frozen=True)
class Chart:
    """One chart written: its file and what it shows."""

    path: Path
    title: str
    level: str | None


def ideal_speedup(workers: int, cores: int | None) -> float:
    """The best speedup ``workers`` can reach: one per worker, but never more than the cores present."""
    return float(min(workers, cores) if cores else workers)


def ideal_line(workers: Iterable[int], cores: int | None) -> tuple[list[int], list[float]]:
    """Points of the ideal-speedup line from one worker to the most measured, bending flat at ``cores``."""
    counts = {1, *workers}
    top = max(counts)
    if cores and 1 < cores < top:
        counts.add(cores)
    xs = sorted(counts)
    return xs, [ideal_speedup(w, cores) for w in xs]


def shared_target(cells: Iterable[CellFigures], name: str, fallback: float | None = None) -> float | None:
    """The target ``name`` that every judged cell of ``cells`` was held to; None when they differ (a marker
    gave some cells their own), ``fallback`` (the run-wide value) when no cell was judged against it."""
    values = {j.target for f in cells for j in f.judgements if j.target_name == name}
    if not values:
        return fallback
    return values.pop() if len(values) == 1 else None


def _targets_differ(cells: Iterable[CellFigures], name: str) -> bool:
    return len({j.target for f in cells for j in f.judgements if j.target_name == name}) > 1


def _plain(value: float, _position: float | None = None) -> str:
    """Tick labels as plain numbers (``0.5``, ``20``, ``300``), never ``10^1``."""
    return f"{value:,.6g}".replace(",", "\u2009")


def _save(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)
    fig.savefig(path, format="png", dpi=STYLE.dpi)
    return path


def _quantity(unit: str) -> str:
    return "time" if unit in ("ms", "s", "us", "\N{MICRO SIGN}s", "ns") else unit


def _per(level: str) -> str:
    return " per 100 projects" if level == "batch" else ""


def _errors(centres: Sequence[float], intervals: Sequence[Interval | None]) -> list[list[float]]:
    """``yerr`` for matplotlib from intervals (never negative, zero where there is none)."""
    below = [max(c - i.low, 0.0) if i else 0.0 for c, i in zip(centres, intervals, strict=True)]
    above = [max(i.high - c, 0.0) if i else 0.0 for c, i in zip(centres, intervals, strict=True)]
    return [below, above]


def _value_axis(ax: Axes, low: float, high: float, *, from_zero: bool) -> bool:
    """Scale the y axis to the data (``low``..``high``), logarithmic when it spans a wide range; ticks
    labelled as plain numbers. Returns whether the axis is logarithmic."""
    log = low > 0 and high / low > STYLE.log_when_span_exceeds
    if log:
        ax.set_yscale("log")
        ax.set_ylim(low / 1.4, high * 1.4)
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_minor_locator(LogLocator(base=10, subs=tuple(float(s) for s in range(1, 10))))
        ax.yaxis.set_minor_formatter(NullFormatter())
    else:
        pad = (high - low) * 0.08 or abs(high) * 0.05 or 1.0
        ax.set_ylim(0.0 if from_zero else max(low - pad, 0.0), high + pad)
        ax.yaxis.set_major_locator(MaxNLocator(nbins=7, steps=[1, 2, 2.5, 5, 10]))
    ax.yaxis.set_major_formatter(FuncFormatter(_plain))
    ax.grid(axis="y", which="major", alpha=0.35)
    return log


def _note(ax: Axes, text: str, log: bool) -> None:
    """A line of text at the top of the axes, in headroom made for it so that it covers no data."""
    bottom, top = ax.get_ylim()
    ax.set_ylim(bottom, top * 1.7 if log else top + (top - bottom) * 0.12)
    ax.text(0.99, 0.98, text, transform=ax.transAxes, ha="right", va="top", fontsize="small", color=STYLE.target_colour)


def _target(ax: Axes, name: str, value: float | None, high: float, log: bool, differ: bool) -> None:
    """The target as a line when it lies near the data; otherwise a note at the top saying where it is."""
    unit = TARGET_SPECS[name].unit
    if value is None:
        if differ:
            _note(ax, f"no target line: cells have their own {name} (see the targets table)", log)
        return
    if value <= high * STYLE.target_within:
        ax.axhline(value, color=STYLE.target_colour, linestyle="--", linewidth=1.4, zorder=5)
        bottom, top = ax.get_ylim()
        if value * 1.08 > top:
            ax.set_ylim(bottom, value * (1.25 if log else 1.08))
        label = f"target {value:g} {unit} "
        ax.text(
            0.995,
            value,
            label,
            transform=ax.get_yaxis_transform(),
            ha="right",
            va="bottom",
            fontsize="small",
            color=STYLE.target_colour,
            zorder=6,
        )
        return
    shown = quantity(f"{value:g}", unit)
    _note(ax, f"\N{UPWARDS ARROW} target {name} = {shown}, {value / high:.0f}{TIMES} the highest value", log)


def _label_order(cells: Sequence[CellFigures]) -> list[str]:
    """Strategy labels: sequential first, then by strategy and worker count."""
    keys = {f.cell.label: (f.cell.strategy != BASELINE, f.cell.strategy, f.cell.workers) for f in cells}
    return sorted(keys, key=keys.__getitem__)


Facet = tuple[str, dict[str, list[CellFigures]]]


def _facets(level: str, cells: Sequence[CellFigures]) -> list[Facet]:
    """Single reports: one panel per scenario, modules along x. Other levels: one panel, scenarios along x."""
    panels: dict[str, dict[str, list[CellFigures]]] = defaultdict(lambda: defaultdict(list))
    for f in cells:
        if level == "single":
            panels[f"scenario {f.cell.scenario}"][f.cell.module or ""].append(f)
        else:
            panels["all scenarios"][f.cell.scenario].append(f)
    return [(title, dict(xs)) for title, xs in panels.items()]


def _panels(count: int, height: float) -> tuple[Figure, list[Axes]]:
    fig = Figure(figsize=(STYLE.width_in, height * count + 0.6), layout="constrained")
    return fig, list(fig.subplots(count, 1, squeeze=False)[:, 0])


def _strategy_legend(
    fig: Figure, labels: Sequence[str], colours: StrategyColours, extra: Sequence[Line2D] = ()
) -> None:
    handles = [Line2D([], [], color=colours.of_label(label), linewidth=8, label=label) for label in labels]
    fig.legend(handles=[*handles, *extra], loc="outside right upper", fontsize="small", title="strategy")


def _interval_handle() -> Line2D:
    return Line2D([], [], color="black", marker="|", markersize=10, linestyle="none", label="95% interval")


def _strategy_comparison(
    level: str, cells: list[CellFigures], run_target: float | None, colours: StrategyColours, path: Path
) -> Path:
    facets = _facets(level, cells)
    labels = _label_order(cells)
    fig, axes = _panels(len(facets), 3.6)
    width = 0.84 / max(len(labels), 1)
    name = TIME_TARGET[level]
    for ax, (title, xs) in zip(axes, facets, strict=True):
        members = [f for group in xs.values() for f in group]
        for i, label in enumerate(labels):
            points = [(x, f) for x, group in enumerate(xs.values()) for f in group if f.cell.label == label]
            medians = [f.time.median for _, f in points]
            ax.bar(
                [x + (i - (len(labels) - 1) / 2) * width for x, _ in points],
                medians,
                width,
                yerr=_errors(medians, [f.time_ci for _, f in points]),
                capsize=1.5,
                error_kw={"elinewidth": 0.9},
                color=colours.of_label(label),
                label=label,
            )
        highs = [f.time_ci.high for f in members]
        log = _value_axis(ax, min(f.time_ci.low for f in members), max(highs), from_zero=True)
        _target(ax, name, shared_target(members, name, run_target), max(highs), log, _targets_differ(members, name))
        ax.set_xticks(range(len(xs)), list(xs))
        ax.set_xlim(-0.5, len(xs) - 0.5)
        ax.set_xlabel("module" if level == "single" else "scenario")
        ax.set_ylabel(f"median {_quantity(cells[0].unit)} ({cells[0].unit}{_per(level)}){', log' if log else ''}")
        ax.set_title(title, fontsize="medium")
    _strategy_legend(fig, labels, colours, [_interval_handle()])
    fig.suptitle(f"Strategy comparison: {LEVEL_TITLES[level]}: medians and their 95% intervals")
    return _save(fig, path)


def _standings_of(analysis: Analysis, level: str) -> list[Standing]:
    found = [s for s in analysis.standings if s.level == level]
    return found or list(standings(analysis.of_level(level)))


def _speedup(
    level: str, found: Sequence[Standing], cores: int | None, colours: StrategyColours, modules: int, path: Path
) -> Path:
    fig = Figure(figsize=(min(STYLE.width_in, 3.6 * len(found) + 0.8), 4.2), layout="constrained")
    axes = fig.subplots(1, len(found), squeeze=False, sharey=True)[0]
    workers = sorted({c.workers for s in found for c in s.ranked} | {1})
    strategies = sorted({c.strategy for s in found for c in s.ranked if c.strategy != BASELINE})
    tops = [c.interval.high for s in found for c in s.ranked]
    xs, ideal = ideal_line(workers, cores)
    top = max([*tops, *ideal, 1.0]) * 1.1
    for ax, standing in zip(axes, found, strict=True):
        ax.plot(xs, ideal, color="#888888", linestyle=":", linewidth=1.5)
        ax.axhline(1.0, color="black", linewidth=0.8)
        if cores and cores < workers[-1]:
            ax.axvspan(cores + 0.15, workers[-1] + 0.5, color=STYLE.oversubscribed_colour, zorder=0)
        for k, strategy in enumerate(strategies):
            points = sorted((c.workers, c) for c in standing.ranked if c.strategy == strategy)
            if not points:
                continue
            shift = (k - (len(strategies) - 1) / 2) * 0.05
            values = [c.speedup for _, c in points]
            ax.errorbar(
                [w + shift for w, _ in points],
                values,
                yerr=_errors(values, [c.interval for _, c in points]),
                color=colours.of_strategy(strategy),
                marker="o",
                markersize=5,
                capsize=3,
                linewidth=1.6,
            )
        ax.set_title(f"{standing.scenario}: {standing.outcome}", fontsize="medium")
        ax.set_xticks(workers)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.0f}"))
        ax.set_xlim(0.5, workers[-1] + 0.5)
        ax.set_ylim(0.0, top)
        ax.yaxis.set_major_locator(MaxNLocator(nbins=6, steps=[1, 2, 2.5, 5, 10]))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}{TIMES}"))
        ax.grid(axis="y", alpha=0.35)
        ax.set_xlabel("workers")
    axes[0].set_ylabel(f"speedup over sequential ({TIMES})")
    capped = bool(cores and cores < workers[-1])
    extra = [
        Line2D([], [], color="#888888", linestyle=":", label=f"ideal (capped at {cores} cores)" if capped else "ideal"),
        Line2D([], [], color="black", linewidth=0.8, label=f"sequential (1{TIMES})"),
        _interval_handle(),
    ]
    if capped:
        extra.append(Line2D([], [], color=STYLE.oversubscribed_colour, linewidth=8, label="more workers than cores"))
    handles = [Line2D([], [], color=colours.of_strategy(s), marker="o", label=s) for s in strategies]
    over = f"; geometric mean over {modules} modules" if level == "single" and modules > 1 else ""
    title = fig.suptitle(f"Speedup against workers: {LEVEL_TITLES[level]} (95% intervals{over})")
    _fit_title_and_legend(fig, title, [*handles, *extra])
    return _save(fig, path)


def _fit_title_and_legend(fig: Figure, title: Text, handles: Sequence[Line2D]) -> Legend:
    """A legend of ``handles`` under the panels, and ``fig`` widened (at most to the page's width) until it and the
    title fit on one row: constrained layout shrinks the panels, never these, so a one-panel figure cut them off.
    A legend still too wide then takes as few more rows as it needs."""
    FigureCanvasAgg(fig)  # text is measured with its renderer

    def legend(ncols: int) -> Legend:
        return fig.legend(handles=handles, loc="outside lower center", fontsize="small", ncols=ncols)

    def inches(artist: Text | Legend) -> float:
        return float(artist.get_window_extent().width) / fig.dpi + STYLE.edge_in

    made = legend(len(handles))
    width, height = fig.get_size_inches()
    width = min(max(width, inches(title), inches(made)), STYLE.width_in)
    fig.set_size_inches(width, height)
    rows = 1
    while inches(made) > width and rows < len(handles):
        rows += 1
        made.remove()
        made = legend(math.ceil(len(handles) / rows))
    return made


def _cell_name(f: CellFigures) -> str:
    return f"{f.cell.module} {f.cell.label}" if f.cell.module else f"{f.cell.scenario} {f.cell.label}"


def _per_cell(
    level: str,
    cells: list[CellFigures],
    colours: StrategyColours,
    draw: Callable[[Axes, list[CellFigures]], None],
) -> Figure:
    """One panel per facet with one x position per cell; tick labels in the strategy's colour."""
    facets = _facets(level, cells)
    members = [[f for xs in panel.values() for f in xs] for _, panel in facets]
    fig, axes = _panels(len(facets), 4.0)
    for ax, (title, _), panel in zip(axes, facets, members, strict=True):
        draw(ax, panel)
        ax.set_xticks(
            range(1, len(panel) + 1),
            [_cell_name(f) for f in panel],
            rotation=60,
            ha="right",
            rotation_mode="anchor",
            fontsize="small",
        )
        for tick, f in zip(ax.get_xticklabels(), panel, strict=True):
            tick.set_color(colours.of_strategy(f.cell.strategy))
        ax.set_xlim(0.4, len(panel) + 0.6)
        ax.set_title(title, fontsize="medium")
    return fig


def _stage_split(level: str, cells: list[CellFigures], colours: StrategyColours, path: Path) -> Path:
    def draw(ax: Axes, panel: list[CellFigures]) -> None:
        bottom = [0.0] * len(panel)
        for stage, colour in zip(STAGES, STYLE.stage_colours, strict=False):
            values = [f.stage_ms_per_report.get(stage, 0.0) for f in panel]
            ax.bar(range(1, len(panel) + 1), values, bottom=bottom, color=colour, edgecolor="white", linewidth=0.3)
            bottom = [b + v for b, v in zip(bottom, values, strict=True)]
        _value_axis(ax, 0.0, max(bottom) or 1.0, from_zero=True)
        ax.set_ylabel("ms per report")

    fig = _per_cell(level, cells, colours, draw)
    handles = [Line2D([], [], color=c, linewidth=8, label=s) for s, c in zip(STAGES, STYLE.stage_colours, strict=False)]
    fig.legend(handles=handles[::-1], loc="outside right upper", fontsize="small", title="stage")
    fig.suptitle(f"Stage split per report: {LEVEL_TITLES[level]} (worker time, summed over workers)")
    return _save(fig, path)


def _busy_samples(f: CellFigures) -> list[float]:
    return [s for s, load in zip(f.samples, f.loads, strict=False) if load.get("busy")]


def _distribution(
    level: str, cells: list[CellFigures], run_target: float | None, colours: StrategyColours, path: Path
) -> Path:
    name = TIME_TARGET[level]

    def draw(ax: Axes, panel: list[CellFigures]) -> None:
        boxes = ax.boxplot(
            [list(f.samples) for f in panel],
            whis=(5, 95),
            patch_artist=True,
            widths=0.6,
            showfliers=True,
            medianprops={"color": "black", "linewidth": 1.2},
            flierprops={"markersize": 3, "alpha": 0.6},
        )
        for patch, f in zip(boxes["boxes"], panel, strict=True):
            patch.set_facecolor(colours.of_label(f.cell.label))
            patch.set_alpha(0.85)
        positions = range(1, len(panel) + 1)
        medians = [f.time.median for f in panel]
        ax.errorbar(
            [p + 0.38 for p in positions],
            medians,
            yerr=_errors(medians, [f.time_ci for f in panel]),
            fmt="none",
            ecolor="black",
            elinewidth=1.0,
            capsize=2,
        )
        busy = [(p, s) for p, f in zip(positions, panel, strict=True) for s in _busy_samples(f)]
        if busy:
            ax.plot([p for p, _ in busy], [s for _, s in busy], "x", color=STYLE.busy_colour, markersize=5)
        low = min(min(f.samples) for f in panel)
        high = max(max(f.samples) for f in panel)
        log = _value_axis(ax, low, high, from_zero=False)
        _target(ax, name, shared_target(panel, name, run_target), high, log, _targets_differ(panel, name))
        unit = cells[0].unit
        ax.set_ylabel(f"{_quantity(unit)} per sample ({unit}{_per(level)}){', log' if log else ''}")

    fig = _per_cell(level, cells, colours, draw)
    extra = [
        Line2D([], [], color="#777777", linewidth=8, label="box: quartiles"),
        Line2D([], [], color="black", label="median; whiskers p5-p95"),
        Line2D([], [], color="black", marker="|", markersize=10, linestyle="none", label="95% interval of median"),
        Line2D([], [], color=STYLE.busy_colour, marker="x", linestyle="none", label="sample on a busy machine"),
    ]
    fig.legend(handles=extra, loc="outside right upper", fontsize="small")
    fig.suptitle(f"Distribution over samples: {LEVEL_TITLES[level]}")
    return _save(fig, path)


def _memory(cells: list[CellFigures], run_target: float | None, colours: StrategyColours, path: Path) -> Path:
    """Per module (single-report cells) or for all modules (other levels), one bar per strategy."""
    measured = [f for f in cells if f.memory_mb is not None and not f.cell.is_reference]
    single = [f for f in measured if f.cell.level == "single"]
    shown = single or [f for f in measured if f.cell.level == measured[0].cell.level]
    by_x: dict[str, dict[str, CellFigures]] = defaultdict(dict)
    for f in shown:
        by_x[f.cell.module or "all modules"].setdefault(f.cell.label, f)  # same for every scenario
    labels = _label_order(shown)
    fig = Figure(figsize=(STYLE.width_in, 4.2), layout="constrained")
    ax = fig.add_subplot()
    width = 0.84 / max(len(labels), 1)
    highs: list[float] = []
    lows: list[float] = []
    for i, label in enumerate(labels):
        xs = [x for x, values in enumerate(by_x.values()) if label in values]
        members = [values[label] for values in by_x.values() if label in values]
        p95s = [f.memory_mb.p95 for f in members if f.memory_mb is not None]
        intervals = [f.memory_ci for f in members]
        highs += [max(i.high, v) if i else v for v, i in zip(p95s, intervals, strict=True)]
        lows += [min(i.low, v) if i else v for v, i in zip(p95s, intervals, strict=True)]
        ax.bar(
            [x + (i - (len(labels) - 1) / 2) * width for x in xs],
            p95s,
            width,
            color=colours.of_label(label),
            yerr=_errors(p95s, intervals),
            capsize=1.5,
            error_kw={"elinewidth": 0.9},
        )
    log = _value_axis(ax, min(lows), max(highs), from_zero=True)
    target = shared_target(shown, MEMORY_TARGET, run_target)
    _target(ax, MEMORY_TARGET, target, max(highs), log, _targets_differ(shown, MEMORY_TARGET))
    ax.set_ylabel(f"p95 peak traced memory per report (MB){', log' if log else ''}")
    ax.set_xticks(range(len(by_x)), list(by_x))
    ax.set_xlim(-0.5, len(by_x) - 0.5)
    ax.set_xlabel("module")
    _strategy_legend(fig, labels, colours, [_interval_handle()])
    fig.suptitle("Memory per report (p95 of peaks, measured in the process that made the report; 95% intervals)")
    return _save(fig, path)


SERVICE_TARGET = "service_p95_ms"


def _service(service: ServiceAnalysis, run_target: float | None, colours: StrategyColours, path: Path) -> Path:
    """Latency (p50, p95 with its 95 % interval, p99) and throughput against virtual users, one colour per server
    strategy; with a sweep, p95 against the arrival rate offered (open loop)."""
    sweeps = [s for s in service.sweeps if s.steps]
    panels = 3 if sweeps else 2
    fig = Figure(figsize=(STYLE.width_in, 4.2), layout="constrained")
    axes = fig.subplots(1, panels, squeeze=False)[0]
    latency, throughput = axes[0], axes[1]
    strategies = sorted({p.strategy for p in service.points})
    users = sorted({p.users for p in service.points})
    lows: list[float] = []
    highs: list[float] = []
    for k, strategy in enumerate(strategies):
        points = sorted((p for p in service.points if p.strategy == strategy), key=lambda p: p.users)
        colour = colours.of_strategy(strategy)
        shift = (k - (len(strategies) - 1) / 2) * 0.015 * max(users)
        xs = [p.users + shift for p in points]
        p95 = [p.p95_ms for p in points]
        latency.errorbar(
            xs, p95, yerr=_errors(p95, [p.p95_ci for p in points]), color=colour, marker="o", capsize=3, linewidth=1.6
        )
        latency.plot(xs, [p.p50_ms for p in points], color=colour, marker=".", linestyle=":", linewidth=1.0)
        latency.plot(xs, [p.p99_ms for p in points], color=colour, marker="^", linestyle="--", linewidth=0.8)
        lows += [p.p50_ms for p in points if p.p50_ms > 0]
        highs += [max(p.p99_ms, p.p95_ci.high) for p in points]
        throughput.plot([p.users for p in points], [p.throughput_per_s for p in points], color=colour, marker="o")
        errors = [(p.users, p.throughput_per_s) for p in points if p.errors]
        if errors:
            throughput.plot(*zip(*errors, strict=True), "x", color=STYLE.busy_colour, markersize=9)
    log = _value_axis(latency, min(lows or [1.0]), max(highs or [1.0]), from_zero=True)
    target = shared_target(service.points, SERVICE_TARGET, run_target)  # type: ignore[arg-type]
    _target(latency, SERVICE_TARGET, target, max(highs or [1.0]), log, False)
    latency.set_ylabel(f"latency (ms){', log' if log else ''}")
    latency.set_title("latency", fontsize="medium")
    ideal = [u / 1.0 for u in users]  # a user thinks 1 s on average: at best one request per user per second
    throughput.plot(users, ideal, color="#888888", linestyle=":", linewidth=1.2)
    _value_axis(throughput, 0.0, max([*ideal, *(p.throughput_per_s for p in service.points)]), from_zero=True)
    throughput.set_ylabel("requests answered per second")
    throughput.set_title("throughput", fontsize="medium")
    for ax in (latency, throughput):
        ax.set_xticks(users)
        ax.set_xlabel("virtual users")
        ax.set_xlim(0, max(users) * 1.08)
    if sweeps:
        ax = axes[2]
        tops: list[float] = []
        for sweep in sweeps:
            xs = [s.offered_per_s for s in sweep.steps]
            ys = [s.p95_ms for s in sweep.steps]
            tops += ys
            ax.plot(xs, ys, color=colours.of_strategy(sweep.strategy), marker="o")
            bad = [(s.offered_per_s, s.p95_ms) for s in sweep.steps if not s.held]
            if bad:
                ax.plot(*zip(*bad, strict=True), "x", color=STYLE.busy_colour, markersize=9)
        top = max(*tops, sweeps[0].target_p95_ms)  # the target always in view: the sweep is about it
        sweep_log = _value_axis(ax, min(tops), top, from_zero=True)
        _target(ax, SERVICE_TARGET, sweeps[0].target_p95_ms, top, sweep_log, False)
        ax.set_xlabel("arrival rate offered (requests/s, open loop)")
        ax.set_ylabel(f"p95 from the scheduled send (ms){', log' if sweep_log else ''}")
        ax.set_title("open-loop sweep", fontsize="medium")
    handles = [Line2D([], [], color=colours.of_strategy(s), marker="o", label=s) for s in strategies]
    handles += [
        Line2D([], [], color="black", marker="o", label="p95, 95% interval"),
        Line2D([], [], color="black", marker=".", linestyle=":", linewidth=1.0, label="p50"),
        Line2D([], [], color="black", marker="^", linestyle="--", linewidth=0.8, label="p99"),
        Line2D([], [], color="#888888", linestyle=":", label="1 request per user per s"),
        Line2D([], [], color=STYLE.busy_colour, marker="x", linestyle="none", label="errors / not held"),
    ]
    fig.legend(handles=handles, loc="outside right upper", fontsize="small", title="server strategy")
    fig.suptitle("Service level: zerosite serve under load (closed loop: virtual users, 1 s think time)")
    return _save(fig, path)


def write_charts(
    analysis: Analysis,
    targets: Mapping[str, float],
    folder: Path,
    cores: int | None = None,
    colours: StrategyColours | None = None,
) -> list[Chart]:
    """Write every chart of ``analysis`` into ``folder`` and return them in page order.

    ``targets`` are the run-wide values, drawn where a chart's cells carry no judgement of their own;
    ``cores`` (usable CPUs) caps the ideal speedup line; ``colours`` defaults to the run's one mapping.
    """
    folder.mkdir(parents=True, exist_ok=True)
    colours = colours or StrategyColours.for_cells(f.cell for f in analysis.cells)
    modules = len({f.cell.module for f in analysis.cells if f.cell.module})
    charts: list[Chart] = []
    for level in analysis.levels():
        cells = analysis.of_level(level)
        target = targets.get(TIME_TARGET[level])
        title = LEVEL_TITLES[level]
        found = [s for s in _standings_of(analysis, level) if len(s.ranked) > 1]
        made = [(_strategy_comparison(level, cells, target, colours, folder / f"{level}-strategies.png"), "Strategies")]
        if found:
            made.append((_speedup(level, found, cores, colours, modules, folder / f"{level}-speedup.png"), "Speedup"))
        made += [
            (_distribution(level, cells, target, colours, folder / f"{level}-distribution.png"), "Distribution"),
        ]
        staged = [f for f in cells if not f.cell.is_reference]  # reference code records no stages: no empty slots
        if staged:
            made.append((_stage_split(level, staged, colours, folder / f"{level}-stages.png"), "Stage split"))
        charts += [Chart(path, f"{what}: {title}", level) for path, what in made]
    if analysis.service is not None and analysis.service.points:
        run_target = targets.get(SERVICE_TARGET)
        path = _service(analysis.service, run_target, colours, folder / "service.png")
        charts.append(Chart(path, "Service level: latency and throughput against users", "service"))
    if any(f.memory_mb is not None for f in analysis.cells):
        path = _memory(list(analysis.cells), targets.get(MEMORY_TARGET), colours, folder / "memory.png")
        charts.append(Chart(path, "Memory per report", None))
    return charts
