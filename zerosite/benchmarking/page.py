"""The self-contained ``index.html`` of a benchmark run: what to act on first, then the run, charts, every cell."""

from __future__ import annotations

import base64
import datetime as dt
import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from zerosite.benchmarking.analysis import LEVEL_NAMES, Analysis, CellFigures
from zerosite.benchmarking.cells import BASELINE, BUSY_MACHINE, LEVELS, SCENARIOS, TIMES
from zerosite.benchmarking.charts import Chart
from zerosite.benchmarking.colours import StrategyColours
from zerosite.benchmarking.machine import Machine
from zerosite.benchmarking.service_level import described
from zerosite.benchmarking.targets import TARGET_SPECS, Targets, quantity
from zerosite.benchmarking.verdicts import Judgement, Verdict
from zerosite.benchmarking.winners import Contender, Standing, margin_text

__all__ = ["Badge", "CellRow", "ProfileLink", "cell_row", "modules_phrase", "render_page"]

VERDICT_ORDER = {Verdict.FAIL: 0, Verdict.INCONCLUSIVE: 1, Verdict.PASS: 2}
SHORT_TARGET = {
    "single_report_ms": "time",
    "pipeline_ms": "time",
    "batch_100_s": "time",
    "memory_per_report_mb": "mem",
    "auto_vs_best_fixed": "vs best",
    "service_p95_ms": "p95",
    "service_error_rate": "errors",
}
LISTED = 4
"""Items of one kind shown on the first screen; the rest fold into a <details>."""
MODES = {"time": "wall time", "instructions": "CPU instructions counted under valgrind (deterministic)"}


@dataclass(frozen=True)
class ProfileLink:
    """A profile file to link from the page (path relative to the page)."""

    label: str
    href: str


@dataclass(frozen=True)
class Badge:
    """One judgement as the cell table shows it: ``FAIL time ≤ 20 ms``, its message as a tooltip."""

    verdict: str
    text: str
    title: str


@dataclass(frozen=True)
class CellRow:
    """One row of the cell table: display text per column, and a sort key where text would sort badly."""

    figures: CellFigures
    badges: tuple[Badge, ...]
    verdict_rank: int
    median: str
    median_ci: str
    precision: str
    precision_missed: bool
    speedup: str
    speedup_ci: str
    efficiency: str
    karp_flatt: str
    p95: str
    memory: str
    samples: str
    busy: str
    reports_per_s: str
    overhead: str

    @property
    def verdicts(self) -> str:
        """Every badge's text, for tests and plain-text readers."""
        return "; ".join(b.text for b in self.badges)


def _g(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"


def _percent(share: float) -> str:
    return "" if math.isinf(share) or math.isnan(share) else f"\u00b1{share * 100:.1f}%"


def _badge(j: Judgement) -> Badge:
    short = SHORT_TARGET.get(j.target_name, j.target_name)
    return Badge(str(j.verdict), f"{j.verdict} {short} \u2264 {j.bound()}", j.message())


def cell_row(f: CellFigures, precision_goal: float) -> CellRow:
    """What the cell table shows of ``f``; Karp-Flatt blank where the analysis left it out."""
    badges = tuple(sorted((_badge(j) for j in f.judgements), key=lambda b: VERDICT_ORDER[Verdict(b.verdict)]))
    worst = min((VERDICT_ORDER[j.verdict] for j in f.judgements), default=3)
    missed = f.precision > precision_goal or (f.speedup_precision or 0.0) > precision_goal
    return CellRow(
        figures=f,
        badges=badges,
        verdict_rank=worst,
        median=f"{_g(f.time.median)} {f.unit}",
        median_ci=f"[{_g(f.time_ci.low)}, {_g(f.time_ci.high)}]",
        precision=_percent(f.precision),
        precision_missed=missed,
        speedup="" if f.speedup is None else f"{f.speedup:.2f}{TIMES}",
        speedup_ci="" if f.speedup_ci is None else f"[{f.speedup_ci.low:.2f}, {f.speedup_ci.high:.2f}]",
        efficiency="" if f.efficiency is None else f"{f.efficiency * 100:.0f}%",
        karp_flatt="" if f.karp_flatt is None else f"{f.karp_flatt:.2f}",
        p95=_g(f.time.p95),
        memory="" if f.memory_mb is None else _g(f.memory_mb.p95),
        samples=f"{f.time.n}" + (f" \u00d7 {f.loops}" if f.loops > 1 else ""),
        busy=f"{f.busy_rounds} busy" if f.busy_rounds else "",
        reports_per_s="" if math.isnan(f.reports_per_s) else _g(f.reports_per_s),
        overhead="" if f.overhead is None else f"{f.overhead * 100:+.1f}%",
    )


def modules_phrase(modules: Sequence[str]) -> str:
    """``the 5 modules M2, M3, M4, M5, M6`` (``the module M2`` for one, ``no modules`` for none)."""
    if not modules:
        return "no modules"
    if len(modules) == 1:
        return f"the module {modules[0]}"
    return f"the {len(modules)} modules {', '.join(modules)}"


def _where(f: CellFigures) -> str:
    """``single cpu M5 process x2``: a cell in four words."""
    return " ".join(p for p in (f.cell.level, f.cell.scenario, f.cell.module, f.cell.label) if p)


def _ram_backed(path: str, mounts: Path = Path("/proc/mounts")) -> bool:
    """Whether ``path`` lies on a tmpfs (RAM-backed) mount, judged from the longest mount point above it."""
    try:
        lines = mounts.read_text().splitlines()
    except OSError:
        return path.startswith("/dev/shm")
    best, kind = "", ""
    for line in lines:
        fields = line.split()
        above = len(fields) >= 3 and (path == fields[1] or path.startswith(fields[1].rstrip("/") + "/"))
        if above and len(fields[1]) > len(best):
            best, kind = fields[1], fields[2]
    return kind in ("tmpfs", "ramfs")


def _scratch_text(scratch: str | None) -> str:
    """``scratch`` None or ``disk``: the system's temporary folder; a path: whether it is RAM-backed."""
    if scratch is None or scratch == "disk":
        return "the disk (the system's temporary folder)"
    return f"{'a RAM-backed folder' if _ram_backed(scratch) else 'the disk'}: {scratch}"


@dataclass(frozen=True)
class _Outcome:
    """One level and scenario on the first screen."""

    standing: Standing
    colours: StrategyColours

    @property
    def contenders(self) -> tuple[Contender, ...]:
        winner = self.standing.winner
        return (winner,) if winner is not None else self.standing.tied or self.standing.close

    def colour(self, c: Contender) -> str:
        return self.colours.of_label(c.label)


@dataclass(frozen=True)
class _TargetRow:
    name: str
    value: float
    unit: str
    figure: str
    origin: str
    own: tuple[tuple[str, int, str], ...]
    """Per value the cells were judged against: (value, cell count, whose)."""

    @property
    def shown(self) -> str:
        return quantity(f"{self.value:g}", self.unit)


def _whose(judgements: Iterable[Judgement]) -> str:
    """``single report M5`` from the subjects (``single report M5, strategy sequential, scenario cpu``)."""
    return ", ".join(sorted({j.subject.split(", strategy")[0] for j in judgements}))


def _target_rows(analysis: Analysis, targets: Targets) -> list[_TargetRow]:
    judged: dict[str, dict[float, list[Judgement]]] = defaultdict(lambda: defaultdict(list))
    for j in analysis.judgements:
        judged[j.target_name][j.target].append(j)
    rows = []
    for name, value in targets.values.items():
        spec = TARGET_SPECS[name]
        own = tuple(
            (quantity(f"{v:g}", spec.unit), len(js), _whose(js) if v != value else "the rest")
            for v, js in sorted(judged[name].items())
        )
        rows.append(_TargetRow(name, value, spec.unit, spec.figure, targets.origins.get(name, ""), own))
    return rows


def _scenario_order(scenario: str) -> tuple[int, str]:
    return (SCENARIOS.index(scenario) if scenario in SCENARIOS else len(SCENARIOS), scenario)


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def render_page(
    analysis: Analysis,
    targets: Targets,
    machine: Machine,
    charts: Sequence[Chart] = (),
    profiles: Sequence[ProfileLink] = (),
    json_name: str = "benchmark.json",
    quick: bool = False,
    generated: str | None = None,
    *,
    modules: Sequence[str] = (),
    scratch: str | None = None,
    mode: str = "time",
    precision_goal: float = 0.05,
    colours: StrategyColours | None = None,
    batch_projects: int | None = None,
) -> str:
    """The page as HTML; charts are embedded as base64 PNG data URIs, so the file stands alone.

    ``modules``: the modules measured (default: those the cells name); ``scratch``: where the batch level
    wrote (a folder; None or ``"disk"``: the system's temporary folder); ``mode``: ``time`` or
    ``instructions``; ``precision_goal``: the relative half-width each cell aimed for (0.05 = ±5 %);
    ``colours``: the run's one mapping unless given; ``batch_projects``: the projects of a batch round, where known.
    """
    env = Environment(
        loader=FileSystemLoader(Path(__file__).parent), autoescape=True, undefined=StrictUndefined, trim_blocks=True
    )
    env.filters["described"] = described  # why requests failed, in the words of the terminal's line
    colours = colours or StrategyColours.for_cells(f.cell for f in analysis.cells)
    modules = list(modules) or sorted({f.cell.module for f in analysis.cells if f.cell.module})
    counts = {str(v): 0 for v in Verdict}
    for judgement in analysis.judgements:
        counts[str(judgement.verdict)] += 1
    outcomes = {(s.level, s.scenario): _Outcome(s, colours) for s in analysis.standings}
    scenarios = sorted({s.scenario for s in analysis.standings}, key=_scenario_order)
    rows = [cell_row(f, precision_goal) for f in analysis.cells]
    levels = [(LEVEL_NAMES[level], [r for r in rows if r.figures.cell.level == level]) for level in LEVELS]
    return env.get_template("index.html.j2").render(
        generated=generated or dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        quick=quick,
        busy_machine=BUSY_MACHINE,
        json_name=json_name,
        counts=counts,
        scenarios=scenarios,
        outcomes=[
            (LEVEL_NAMES[level], [outcomes.get((level, scenario)) for scenario in scenarios])
            for level in LEVELS
            if any(key[0] == level for key in outcomes)
        ],
        failures=analysis.failures,
        leads=analysis.leads,
        auto_checks=analysis.auto,
        margin=margin_text(),
        noisy=[(_where(f), f) for f in analysis.noisy],
        imprecise=sorted(
            ((_where(r.figures), r) for r in rows if r.precision_missed and not r.figures.cell.is_reference),
            key=lambda pair: -max(pair[1].figures.precision, pair[1].figures.speedup_precision or 0.0),
        ),
        listed=LISTED,
        machine=machine,
        mode=MODES.get(mode, mode),
        mode_key=mode,
        scratch=_scratch_text(scratch),
        batch_projects=batch_projects,
        precision_goal=_percent(precision_goal).replace(".0%", "%"),
        modules=modules_phrase(modules),
        targets=_target_rows(analysis, targets),
        levels=[(name, level_rows) for name, level_rows in levels if level_rows],
        colours=colours,
        baseline=BASELINE,
        charts=[{"title": c.title, "src": _data_uri(c.path)} for c in charts],
        profiles=profiles,
        service=analysis.service,
        machine_speed=_machine_speed(analysis),
    )


def _machine_speed(analysis: Analysis) -> str | None:
    """How the machine's own speed moved over the run, or None where it was not timed (instruction counts).

    Per group of cells, the canary's median over every pass of the group: the samples of the cell that ran
    longest, the baseline (each pass's sample is noted in every cell of the pass, so pooling would repeat it).
    """
    longest: dict[str, tuple[float, ...]] = {}
    for figures in analysis.cells:
        if len(figures.canary_s) > len(longest.get(figures.cell.group, ())):
            longest[figures.cell.group] = figures.canary_s
    medians = sorted(statistics.median(samples) for samples in longest.values())
    if not medians:
        return None
    fastest, slowest = medians[0], medians[-1]
    return (
        f"a fixed render took {fastest * 1e3:.2f} to {slowest * 1e3:.2f} ms (median per group of cells): "
        f"the machine ran {(slowest / fastest - 1) * 100:.0f}% slower at its slowest than at its fastest"
    )
