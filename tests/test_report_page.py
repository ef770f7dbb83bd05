"""Tests of the report's charts and page: scaled axes, capped ideal line, one colour per strategy, the
at-a-glance summary (winners, ties, verdict counts, failures, noise), each cell's own target."""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from zerosite.benchmarking import charts as charts_module
from zerosite.benchmarking.analysis import Analysis, analyse
from zerosite.benchmarking.cells import LEVELS, SCENARIOS, TIMES, Cell, CellResult, RoundOutcome
from zerosite.benchmarking.charts import Chart, ideal_line, ideal_speedup, shared_target, write_charts
from zerosite.benchmarking.colours import KNOWN_STRATEGY_COLOURS, StrategyColours
from zerosite.benchmarking.load import RoundLoad
from zerosite.benchmarking.machine import Machine
from zerosite.benchmarking.page import ProfileLink, cell_row, render_page
from zerosite.benchmarking.plugin import noisy_lines
from zerosite.benchmarking.targets import load_targets
from zerosite.benchmarking.winners import NOT_JUDGED

TARGETS = {"single_report_ms": 300.0, "pipeline_ms": 500.0, "batch_100_s": 30.0, "memory_per_report_mb": 10.0}
MACHINE = Machine(
    cpu_count=2, usable_cpus=2, cpu_quota=None, python="3.11.2", implementation="CPython", platform="Linux-test"
)

MODULE_MS = {"M2": 1.2, "M3": 3.5, "M4": 8.0, "M5": 25.0, "M6": 0.8}
"""Median ms of one warm report per module in the cpu scenario."""
SPEEDUPS: Mapping[str, Mapping[tuple[str, int], float]] = {
    "cpu": {
        ("thread", 2): 0.95,
        ("thread", 4): 0.93,
        ("process", 2): 1.8,
        ("process", 4): 1.55,
        ("async", 2): 0.97,
        ("async", 4): 0.96,
    },
    "io": {
        ("thread", 2): 1.9,
        ("thread", 4): 3.4,
        ("process", 2): 1.6,
        ("process", 4): 2.6,
        ("async", 2): 1.95,
        ("async", 4): 3.45,
    },
    "mixed": {
        ("thread", 2): 1.4,
        ("thread", 4): 1.6,
        ("process", 2): 1.5,
        ("process", 4): 1.7,
        ("async", 2): 1.45,
        ("async", 4): 1.65,
    },
}
SCENARIO_EXTRA_MS = {"cpu": 0.0, "io": 6.0, "mixed": 3.0}
NOISY = Cell("pipeline", "mixed", "thread", 4)
OWN_TARGET_MS = {"M5": 20.0}
"""M5's single-report cells carry their own target (as a pytest marker would give them): 25 ms FAILs it."""


def _sample(rng: random.Random, median: float, sigma: float) -> float:
    return median * math.exp(rng.gauss(0.0, sigma))


def _result(cell: Cell, median_s: float, rng: random.Random, rounds: int = 14, projects: int = 1) -> CellResult:
    loops = max(1, round(0.02 / median_s)) if cell.level != "batch" else 1
    outcomes = []
    for i in range(rounds):
        busy = cell == NOISY and i % 3 == 0
        per = _sample(rng, median_s * (1.6 if busy else 1.0), 0.05 if cell.level == "batch" else 0.025)
        reports = projects * (5 if cell.level != "single" else 1) * loops
        stage_ns = {
            s: int(per * loops * 1e9 * share)
            for s, share in (("fetch", 0.1), ("compute", 0.6), ("render", 0.25), ("write", 0.05))
        }
        load = RoundLoad(
            load1=1.9 if busy else 0.3, other_cpu_s=0.4 if busy else 0.0, steal_s=0.0, wall_s=per * loops, busy=busy
        )
        outcomes.append(
            RoundOutcome(
                wall_s=per * loops,
                projects=projects * loops,
                reports=reports,
                stage_ns=stage_ns,
                peak_memory_bytes=tuple(int(rng.uniform(2.5, 3.5) * 2**20) for _ in range(3)),
                iterations=loops,
                load=load,
            )
        )
    canary_s = [0.001 if cell.level == "batch" else 0.0008] * rounds  # the machine slower during the batch level
    return CellResult(
        cell, outcomes, loops=loops, stopped="budget" if cell == NOISY else "precision", canary_s=canary_s
    )


def synthetic_results(
    modules: Mapping[str, float] = MODULE_MS, levels: Sequence[str] = LEVELS, scenarios: Sequence[str] = SCENARIOS
) -> list[CellResult]:
    """Sequential, bare and three strategies at 2 and 4 workers, in every level and scenario asked for."""
    rng = random.Random(7)
    results = []
    for level in levels:
        for scenario in scenarios:
            factors = SPEEDUPS[scenario]
            groups: list[str | None] = list(modules) if level == "single" else [None]
            for module in groups:
                if level == "single":
                    assert module is not None
                    base_s = (modules[module] + SCENARIO_EXTRA_MS[scenario]) / 1000
                elif level == "pipeline":
                    base_s = (sum(modules.values()) + 5 * SCENARIO_EXTRA_MS[scenario]) / 1000
                else:
                    base_s = 1.2 + 0.4 * SCENARIO_EXTRA_MS[scenario]
                projects = 20 if level == "batch" else 1
                rounds = 5 if level == "batch" else 14
                results.append(_result(Cell(level, scenario, "sequential", 1, module), base_s, rng, rounds, projects))
                results.append(_result(Cell(level, scenario, "bare", 1, module), base_s * 0.97, rng, rounds, projects))
                for (strategy, workers), factor in factors.items():
                    cell = Cell(level, scenario, strategy, workers, module)
                    results.append(_result(cell, base_s / factor, rng, rounds, projects))
    return results


def _targets_for(cell: Cell) -> dict[str, float]:
    own = OWN_TARGET_MS.get(cell.module or "")
    return {**TARGETS, "single_report_ms": own} if own else TARGETS


def synthetic_analysis(
    modules: Mapping[str, float] = MODULE_MS, levels: Sequence[str] = LEVELS, scenarios: Sequence[str] = SCENARIOS
) -> Analysis:
    return analyse(synthetic_results(modules, levels, scenarios), _targets_for, cores=2)


@pytest.fixture(scope="module")
def analysis() -> Analysis:
    return synthetic_analysis()


@pytest.fixture(scope="module")
def charts(tmp_path_factory: pytest.TempPathFactory) -> list[Chart]:
    """Every kind of chart, from fewer cells than the page tests use (drawing is the slow part)."""
    small = synthetic_analysis({m: MODULE_MS[m] for m in ("M2", "M5")}, scenarios=("cpu", "io"))
    return write_charts(small, TARGETS, tmp_path_factory.mktemp("charts"), cores=2)


def _all_busy(results: Sequence[CellResult], wanted: Callable[[Cell], bool]) -> None:
    """Every round of the cells ``wanted`` picks taken while the machine was busy."""
    for result in results:
        if wanted(result.cell):
            result.rounds = [replace(r, load=replace(r.load, busy=True) if r.load else None) for r in result.rounds]


def _drawn(monkeypatch: pytest.MonkeyPatch, analysis: Analysis, folder: Path) -> dict[str, Figure]:
    """The figures ``write_charts`` makes, by file name, laid out as saved but not encoded (fast)."""
    figures: dict[str, Figure] = {}

    def keep(fig: Figure, path: Path) -> Path:
        FigureCanvasAgg(fig)
        fig.draw_without_rendering()
        figures[path.name] = fig
        return path

    monkeypatch.setattr(charts_module, "_save", keep)
    write_charts(analysis, TARGETS, folder, cores=2)
    return figures


def _page(analysis: Analysis, tmp_path: Path, charts: Sequence[Chart] = (), **kwargs: object) -> str:
    modules = sorted({f.cell.module for f in analysis.cells if f.cell.module})
    options: dict[str, object] = {
        "modules": modules,
        "scratch": "/dev/shm/zerosite-scratch",
        "mode": "time",
        "precision_goal": 0.05,
        **kwargs,
    }
    return render_page(
        analysis=analysis,
        targets=load_targets(tmp_path),
        machine=MACHINE,
        charts=charts,
        profiles=[ProfileLink("process (flamegraph)", "profiles/process-workers=2.svg")],
        **options,  # type: ignore[arg-type]
    )


# -- charts ------------------------------------------------------------------------------------


def test_charts_are_written_as_png(charts: list[Chart]) -> None:
    assert {c.path.name for c in charts} >= {
        "single-strategies.png",
        "single-speedup.png",
        "single-distribution.png",
        "pipeline-speedup.png",
        "batch-speedup.png",
        "batch-stages.png",
        "memory.png",
    }
    for chart in charts:
        data = chart.path.read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 1000


def test_ideal_speedup_is_capped_at_the_cores_present() -> None:
    assert ideal_speedup(4, cores=2) == 2.0
    assert ideal_speedup(2, cores=8) == 2.0
    assert ideal_speedup(4, cores=None) == 4.0
    assert ideal_line([2, 4], cores=2) == ([1, 2, 4], [1.0, 2.0, 2.0])
    assert ideal_line([2, 8], cores=4) == ([1, 2, 4, 8], [1.0, 2.0, 4.0, 4.0])
    assert ideal_line([2, 4], cores=None) == ([1, 2, 4], [1.0, 2.0, 4.0])


def test_a_chart_target_line_only_where_all_its_cells_share_it(analysis: Analysis) -> None:
    single = analysis.of_level("single")
    m2 = [f for f in single if f.cell.module == "M2"]
    m5 = [f for f in single if f.cell.module == "M5"]
    assert shared_target(m2, "single_report_ms") == 300.0
    assert shared_target(m5, "single_report_ms") == 20.0
    assert shared_target(single, "single_report_ms", fallback=300.0) is None  # they differ: no line
    assert shared_target([f for f in single if f.cell.strategy == "bare"], "single_report_ms", 300.0) == 300.0


def test_one_colour_per_strategy_label_everywhere(analysis: Analysis) -> None:
    colours = StrategyColours.for_cells(f.cell for f in analysis.cells)
    again = StrategyColours.for_cells(reversed([f.cell for f in analysis.cells]))
    assert colours == again  # the order cells come in changes nothing
    assert colours.of_strategy("process") == KNOWN_STRATEGY_COLOURS["process"]
    assert colours.of_label(f"process{TIMES}4") == KNOWN_STRATEGY_COLOURS["process"]  # most workers: full colour
    assert colours.of_label(f"process{TIMES}2") != colours.of_label(f"process{TIMES}4")
    assert len(set(colours.labels.values())) == len(colours.labels)
    plugin = StrategyColours.for_cells([Cell("batch", "cpu", "dask", 2), Cell("batch", "cpu", "ray", 2)])
    assert plugin.of_strategy("dask") != plugin.of_strategy("ray")
    assert plugin.of_strategy("dask") not in KNOWN_STRATEGY_COLOURS.values()


def _inside(fig: Figure) -> list[str]:
    """The texts and legends of ``fig`` (laid out) that do not fit in its width."""
    width = fig.bbox.width
    outside = [
        t.get_text() for t in fig.texts if not 0 <= t.get_window_extent().x0 <= t.get_window_extent().x1 <= width
    ]
    outside += [
        f"legend of {len(legend.legend_handles)}"
        for legend in fig.legends
        if not 0 <= legend.get_window_extent().x0 <= legend.get_window_extent().x1 <= width
    ]
    return outside


def test_a_speedup_chart_of_one_panel_shows_its_whole_title_and_legend(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # As in quick mode: the single level in the cpu scenario only, one panel.
    one = synthetic_analysis(levels=("single",), scenarios=("cpu",))
    figure = _drawn(monkeypatch, one, tmp_path)["single-speedup.png"]
    assert len(figure.axes) == 1 and _inside(figure) == []
    one_row = figure.legends[0].get_window_extent().height
    # More strategies than one row can hold at the page's width: the legend takes two rows.
    rng = random.Random(3)
    many = synthetic_results({"M2": 1.2}, levels=("single",), scenarios=("cpu",))
    for name in ("dask", "ray", "loky", "forkserver-pool", "subinterpreters", "free-threaded"):
        many.append(_result(Cell("single", "cpu", name, 2, "M2"), 0.0011, rng))
    figure = _drawn(monkeypatch, analyse(many, _targets_for, cores=2), tmp_path)["single-speedup.png"]
    assert _inside(figure) == [] and figure.get_size_inches()[0] == 12.0
    assert 1.5 * one_row < figure.legends[0].get_window_extent().height < 2.5 * one_row


# -- page --------------------------------------------------------------------------------------


def test_page_leads_with_winners_ties_verdict_counts_and_what_needs_attention(
    analysis: Analysis, tmp_path: Path
) -> None:
    html = _page(analysis, tmp_path)
    glance = html[: html.index('id="run"')]
    for standing in analysis.standings:
        assert standing.sentence() in html
    assert any(s.winner is not None for s in analysis.standings) and any(s.tied for s in analysis.standings)
    assert "tie" in glance
    counts = analysis.as_dict()["verdict_counts"]
    assert isinstance(counts, dict)
    assert f'<span class="count FAIL">{counts["FAIL"]} FAIL</span>' in glance
    assert counts["FAIL"] > 0 and "single report M5" in glance  # the FAIL, named
    assert "busy" in glance and f"thread{TIMES}4" in glance  # the noisy cell
    assert html.index("<h2>Charts</h2>") < html.index('id="cells"')  # the full table last


def test_page_shows_machine_mode_scratch_modules_and_profiles(
    analysis: Analysis, charts: list[Chart], tmp_path: Path
) -> None:
    html = _page(analysis, tmp_path, charts)
    assert "CPU cores" in html and "cgroup CPU quota" in html
    assert "/dev/shm/zerosite-scratch" in html and "wall time" in html and "±5%" in html
    assert "the 5 modules M2, M3, M4, M5, M6" in html
    assert "a fixed render took 0.80 to 1.00 ms (median per group of cells): the machine ran 25% slower" in html
    assert "data:image/png;base64," in html and 'href="profiles/process-workers=2.svg"' in html


def test_a_run_without_the_canary_says_the_machine_was_not_timed(tmp_path: Path) -> None:
    results = synthetic_results(levels=("pipeline",), scenarios=("cpu",))
    for result in results:
        result.canary_s = []  # as counted instructions are: no timed rounds
    html = _page(analyse(results, _targets_for, cores=2), tmp_path)
    assert "<th>the machine's own speed</th><td>not timed in this run</td>" in html
    assert "<p>No charts in this run.</p>" in html  # none handed in


def test_a_level_not_measured_in_a_scenario_says_so_at_a_glance(tmp_path: Path) -> None:
    # As in quick mode: each module alone in the cpu scenario only, the pipeline in every scenario.
    results = synthetic_results(levels=("single",), scenarios=("cpu",)) + synthetic_results(levels=("pipeline",))
    html = _page(analyse(results, _targets_for, cores=2), tmp_path)
    glance = html[: html.index('id="run"')]
    assert glance.count("not measured in this run") == 2  # single report: io and mixed


def test_page_takes_module_names_from_the_data_never_five(tmp_path: Path) -> None:
    seven = {**MODULE_MS, "M7": 2.0, "M8": 1.5}
    analysis = synthetic_analysis(seven, levels=("single",), scenarios=("cpu",))
    html = _page(analysis, tmp_path, modules=sorted(seven))
    assert "the 7 modules M2, M3, M4, M5, M6, M7, M8" in html
    assert not re.search(r"\bfive\b", html, re.IGNORECASE)
    no_list = _page(analysis, tmp_path, modules=())  # not handed in: taken from the cells
    assert "the 7 modules M2, M3, M4, M5, M6, M7, M8" in no_list


def test_targets_table_shows_each_cells_own_target(analysis: Analysis, tmp_path: Path) -> None:
    html = _page(analysis, tmp_path)
    targets = html[html.index('id="targets"') : html.index("<h2>Charts</h2>")]
    assert "20 ms" in targets and "300 ms" in targets and "single report M5" in targets
    m5 = next(f for f in analysis.cells if f.cell.module == "M5" and f.cell.strategy == "sequential")
    assert "≤ 20 ms" in cell_row(m5, 0.05).verdicts


def test_karp_flatt_hidden_where_it_means_nothing(analysis: Analysis) -> None:
    slower = next(f for f in analysis.cells if f.cell.strategy == "thread" and f.speedup and f.speedup < 1)
    assert slower.karp_flatt is None and cell_row(slower, 0.05).karp_flatt == ""
    faster = next(f for f in analysis.cells if f.karp_flatt is not None)
    assert cell_row(faster, 0.05).karp_flatt == f"{faster.karp_flatt:.2f}"


def test_cell_table_is_sortable_grouped_by_level_with_the_verdict_first(analysis: Analysis, tmp_path: Path) -> None:
    html = _page(analysis, tmp_path)
    table = html[html.index('id="cells"') :]
    assert table.count('<table class="cells sortable"') == 3
    first_header = re.search(r"<thead><tr><th[^>]*>([^<]+)<", table)
    assert first_header is not None and first_header.group(1) == "verdict"
    assert "addEventListener" in html  # header click sorts


def test_charts_and_page_say_the_same_of_a_scenario_measured_on_a_busy_machine(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    results = synthetic_results(levels=("pipeline",), scenarios=("cpu", "io"))
    _all_busy(results, lambda cell: cell.scenario == "cpu")
    analysis = analyse(results, _targets_for, cores=2)
    speedup = _drawn(monkeypatch, analysis, tmp_path)["pipeline-speedup.png"]
    titles = [ax.get_title() for ax in speedup.axes]
    assert titles[0] == "cpu: not judged (machine busy)"  # no tie: nothing was judged
    glance = _page(analysis, tmp_path)
    glance = glance[: glance.index('id="run"')]
    assert '<span class="tie">not judged (machine busy)</span>' in glance
    cpu, io = analysis.standings
    assert cpu.unjudged and cpu.outcome == NOT_JUDGED and not io.unjudged
    assert titles == [f"{s.scenario}: {s.outcome}" for s in analysis.standings]


def test_page_terminal_and_json_count_the_same_noisy_cells(tmp_path: Path) -> None:
    results = synthetic_results(levels=("pipeline", "batch"), scenarios=("mixed",))
    _all_busy(results, lambda cell: cell.level == "batch" and cell.strategy in ("bare", "thread"))
    analysis = analyse(results, _targets_for, cores=2)
    noisy_cells = analysis.as_dict()["noisy_cells"]
    assert isinstance(noisy_cells, list) and len(noisy_cells) == 4  # the bare loop's too
    assert "<strong>4 noisy cells</strong>" in _page(analysis, tmp_path)
    noisy = analysis.noisy
    assert [f.cell.label for f in noisy] == [f"thread{TIMES}4", f"thread{TIMES}2", f"thread{TIMES}4", "bare"]
    assert noisy_cells == [f"{f.cell.level}/{f.cell.id}" for f in noisy]
    lines = noisy_lines(analysis, tmp_path / "index.html")
    assert lines[0] == "4 cell(s) measured while the machine was busy:"
    assert lines[1:] == [f"  {f.cell.subject}" for f in noisy]  # one a line: each holds commas
    many = noisy_lines(replace(analysis, cells=analysis.cells * 2), tmp_path / "index.html")
    assert len(many) == 7 and many[-1] == f"  and 3 more (all in {tmp_path / 'index.html'})"


def _css_rules(html: str) -> list[tuple[list[str], str]]:
    style = html[html.index("<style>") + len("<style>") : html.index("</style>")]
    return [
        ([s.strip() for s in selectors.split(",")], body)
        for selectors, body in re.findall(r"([^{}]+)\{([^}]*)\}", style)
    ]


def test_numbers_badges_and_strategies_in_the_cell_tables_never_wrap_or_spill(
    analysis: Analysis, tmp_path: Path
) -> None:
    html = _page(analysis, tmp_path)
    rules = _css_rules(html)
    nowrap = {s for selectors, body in rules if "white-space: nowrap" in body for s in selectors}
    assert {"table.cells td.n", ".badge", ".nowrap"} <= nowrap
    # A fixed layout keeps its column widths whatever the content: a number or a badge that cannot wrap spills over.
    assert not any("table.cells" in selectors and "table-layout: fixed" in body for selectors, body in rules)
    table = html[html.index('id="cells"') :]
    assert '<span class="nowrap"><span class="sw" style="background:' in table
