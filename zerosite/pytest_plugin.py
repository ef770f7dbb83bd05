"""pytest plugin: the ZeroSite benchmark harness (options, markers, fixtures, verdicts, charts, report page)."""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from zerosite.benchmarking.analysis import Analysis, analyse
from zerosite.benchmarking.cells import BARE, Cell, CellResult
from zerosite.benchmarking.harness import ReplayClock, measure_interleaved
from zerosite.benchmarking.matrix import MatrixSettings, build_matrix
from zerosite.benchmarking.targets import Targets, load_targets
from zerosite.benchmarking.workloads import (
    SCENARIO_LATENCY_SHARE,
    MemoryProbe,
    Workload,
    cell_round,
    scenario_projects,
)

if TYPE_CHECKING:
    from zerosite.benchmarking.profiling import ProfileFile

__all__ = ["CellBenchmark", "Recorder"]

RECORDER = pytest.StashKey["Recorder"]()
JSON_NAME = "benchmark.json"
SAMPLE_PROJECTS = 100


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("zerosite", "ZeroSite benchmark harness")
    group.addoption(
        "--zerosite-reports-dir",
        default="reports",
        help="where JSON, charts, index.html and profiles go (default: reports/)",
    )
    group.addoption(
        "--zerosite-quick",
        action="store_true",
        help="fewer rounds, a smaller batch, one worker count; every strategy, scenario and level still runs",
    )
    group.addoption(
        "--zerosite-target",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a target of [tool.zerosite.targets] for this run (repeatable)",
    )
    group.addoption(
        "--zerosite-profile",
        action="store_true",
        help="also record py-spy profiles per strategy (cProfile where py-spy cannot attach)",
    )
    group.addoption(
        "--zerosite-latency-ms",
        type=float,
        default=20.0,
        help="per-request latency of the loopback HTTP data source (default 20)",
    )
    group.addoption(
        "--zerosite-workers",
        default=None,
        metavar="N,N,...",
        help="worker counts to compare (default 2,4; quick 2), e.g. 1,2,4,8,16 for a scaling run",
    )
    group.addoption(
        "--zerosite-rounds", type=int, default=None, help="timed rounds per cell, every level (default: per level)"
    )
    group.addoption(
        "--zerosite-batch-projects", type=int, default=None, help="projects per batch round (default 100, quick 20)"
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "zerosite_target(**targets): override targets (e.g. single_report_ms=50) for the cells of this test"
    )
    config.addinivalue_line(
        "markers",
        "zerosite_matrix(level, modules=None, scenarios=None, strategies=None, workers=None): "
        "parametrize `zerosite_cell` with the benchmark matrix of a level",
    )
    try:
        targets = load_targets(Path(config.rootpath), config.getoption("zerosite_target"))
    except ValueError as error:
        raise pytest.UsageError(str(error)) from None
    settings = MatrixSettings.quick() if config.getoption("zerosite_quick") else MatrixSettings()
    if (batch := config.getoption("zerosite_batch_projects")) is not None:
        settings = replace(settings, batch_projects=batch)
    if (rounds := config.getoption("zerosite_rounds")) is not None:
        settings = replace(settings, rounds=tuple((level, rounds) for level, _ in settings.rounds))
    if workers := config.getoption("zerosite_workers"):
        try:
            settings = replace(settings, workers=tuple(sorted({int(n) for n in workers.split(",")})))
        except ValueError:
            raise pytest.UsageError(f"--zerosite-workers takes counts such as 2,4,8; got {workers!r}") from None
    config.stash[RECORDER] = Recorder(
        targets=targets, settings=settings, reports_dir=Path(config.getoption("zerosite_reports_dir"))
    )


@dataclass
class Recorder:
    """The session's measurements: which cells are selected, their rounds, targets per cell, the analysis."""

    targets: Targets
    settings: MatrixSettings
    reports_dir: Path
    selected: set[Cell] = field(default_factory=set)
    cell_targets: dict[Cell, dict[str, float]] = field(default_factory=dict)
    results: dict[Cell, CellResult] = field(default_factory=dict)
    fullnames: dict[str, Cell] = field(default_factory=dict)
    clocks: dict[str, ReplayClock] = field(default_factory=dict)
    profiles: list[ProfileFile] = field(default_factory=list)
    _analysis: Analysis | None = None
    _probe: MemoryProbe | None = None

    def select(self, cell: Cell, overrides: dict[str, float]) -> None:
        self.selected.add(cell)
        if overrides:
            self.cell_targets[cell] = dict(self.targets.with_overrides(overrides, "zerosite_target marker").values)

    def group_cells(self, cell: Cell) -> list[Cell]:
        """The cells measured together with ``cell``: the selected ones of its group, baseline and bare loop."""
        members = {c for c in self.selected if c.group == cell.group} | {cell, cell.baseline, cell.bare}
        return sorted(members, key=lambda c: c.sort_key)

    def measure(self, cell: Cell, workload: Workload) -> CellResult:
        """The rounds of ``cell``; its whole group is measured, interleaved, the first time one is asked for."""
        if cell not in self.results:
            measured = measure_interleaved(
                self.group_cells(cell),
                lambda c: cell_round(c, workload),
                self.settings.rounds_for(cell.level),
                warmup_rounds=0 if cell.level == "batch" else 1,  # batch workers are warmed when they start
                memory=self._memory_probe(workload),
            )
            self.results.update(measured)
            self._analysis = None
        return self.results[cell]

    def _memory_probe(self, workload: Workload) -> MemoryProbe:
        if self._probe is None or self._probe.workload is not workload:
            self._probe = MemoryProbe(workload)
        return self._probe

    def targets_for(self, cell: Cell) -> dict[str, float]:
        return self.cell_targets.get(cell, dict(self.targets.values))

    @property
    def analysis(self) -> Analysis:
        if self._analysis is None:
            self._analysis = analyse(self.results.values(), self.targets_for)
        return self._analysis


class CellBenchmark:
    """Measure a cell (its group interleaved) and hand the rounds to pytest-benchmark, figures in ``extra_info``."""

    def __init__(self, benchmark: Any, recorder: Recorder, workload: Workload, nodeid: str) -> None:
        self.benchmark = benchmark
        self.recorder = recorder
        self.workload = workload
        self.nodeid = nodeid

    def __call__(self, cell: Cell) -> CellResult:
        result = self.recorder.measure(cell, self.workload)
        self.recorder.fullnames[self.nodeid] = cell
        self.benchmark.extra_info.update(cell.as_info())
        self.benchmark.extra_info["zerosite_cell"] = cell.id
        clock = self.recorder.clocks.get(self.nodeid)
        if clock is None:
            raise RuntimeError(f"{self.nodeid}: zerosite_bench needs a test parametrized with zerosite_cell")
        rounds = clock.load(result.wall_s)
        self.benchmark.pedantic(clock.advance, rounds=rounds, iterations=1, warmup_rounds=0)
        failed = sum(r.failed for r in result.rounds)
        if failed:
            pytest.fail(f"{cell.subject}: {failed} report(s) failed while benchmarking", pytrace=False)
        return result


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    marker = metafunc.definition.get_closest_marker("zerosite_matrix")
    if marker is None or "zerosite_cell" not in metafunc.fixturenames:
        return
    from zerosite.plugins import get_modules, get_strategies

    level = marker.args[0] if marker.args else marker.kwargs["level"]
    settings = metafunc.config.stash[RECORDER].settings
    strategies = [(name, s.unavailable_reason()) for name, s in get_strategies().items()]
    wanted = marker.kwargs.get("strategies")
    if wanted is not None:
        strategies = [(n, why) for n, why in strategies if n in wanted]
    modules = marker.kwargs.get("modules") or (list(get_modules()) if level == "single" else [None])
    planned = build_matrix(
        level,
        strategies,
        workers=marker.kwargs.get("workers") or settings.workers,
        scenarios=marker.kwargs.get("scenarios") or tuple(SCENARIO_LATENCY_SHARE),
        modules=modules,
    )
    metafunc.parametrize(
        "zerosite_cell",
        [
            pytest.param(p.cell, id=p.cell.id, marks=[pytest.mark.skip(reason=p.unavailable)] if p.unavailable else [])
            for p in planned
        ],
    )


@pytest.hookimpl(trylast=True)  # after -k/-m deselection: only the cells that will run are measured
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    recorder = config.stash[RECORDER]
    for item in items:
        callspec = getattr(item, "callspec", None)
        cell = callspec and callspec.params.get("zerosite_cell")
        if not isinstance(cell, Cell) or item.get_closest_marker("skip"):
            continue
        overrides: dict[str, float] = {}
        for mark in reversed(list(item.iter_markers("zerosite_target"))):
            overrides.update(mark.kwargs)
        try:
            recorder.select(cell, overrides)
        except ValueError as error:
            raise pytest.UsageError(f"{item.nodeid}: {error}") from None
        existing = item.get_closest_marker("benchmark")
        clock = recorder.clocks[item.nodeid] = ReplayClock()
        kwargs = {**(existing.kwargs if existing else {}), "timer": clock, "group": cell.group}
        item.add_marker(pytest.mark.benchmark(**kwargs), append=False)


@pytest.fixture(scope="session")
def zerosite_recorder(pytestconfig: pytest.Config) -> Recorder:
    """The session's :class:`Recorder` of benchmark cells."""
    return pytestconfig.stash[RECORDER]


@pytest.fixture(scope="session")
def zerosite_targets(zerosite_recorder: Recorder) -> Targets:
    """The run's targets: defaults, ``[tool.zerosite.targets]``, then ``--zerosite-target`` overrides."""
    return zerosite_recorder.targets


@pytest.fixture(scope="session")
def zerosite_projects() -> list[Any]:
    """The deterministic sample projects that every cell cycles through."""
    return scenario_projects(SAMPLE_PROJECTS)


def _serve(projects: list[Any], latency_s: float) -> Any:
    from zerosite.project import project_to_dict
    from zerosite.testing import ProjectServer

    return ProjectServer({p.id: project_to_dict(p) for p in projects}, latency_s=latency_s)


@pytest.fixture(scope="session")
def zerosite_http_server(pytestconfig: pytest.Config, zerosite_projects: list[Any]) -> Iterator[Any]:
    """A real loopback HTTP server of the sample projects, ``--zerosite-latency-ms`` per request."""
    with _serve(zerosite_projects, pytestconfig.getoption("zerosite_latency_ms") / 1000) as server:
        yield server


@pytest.fixture(scope="session")
def zerosite_workload(
    pytestconfig: pytest.Config,
    zerosite_recorder: Recorder,
    zerosite_projects: list[Any],
    zerosite_http_server: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Workload]:
    """Projects, a data-source URL per scenario (see ``SCENARIO_LATENCY_SHARE``) and the batch size."""
    latency_s = pytestconfig.getoption("zerosite_latency_ms") / 1000
    urls: dict[str, str | None] = {}
    servers = []
    for scenario, share in SCENARIO_LATENCY_SHARE.items():
        if share is None:
            urls[scenario] = None
        elif share == 1.0:
            urls[scenario] = zerosite_http_server.url
        else:
            servers.append(_serve(zerosite_projects, latency_s * share).start())
            urls[scenario] = servers[-1].url
    try:
        yield Workload(
            projects=zerosite_projects,
            urls=urls,
            batch_projects=zerosite_recorder.settings.batch_projects,
            scratch=tmp_path_factory.mktemp("zerosite-bench"),
        )
    finally:
        for server in servers:
            server.close()


@pytest.fixture
def zerosite_bench(
    benchmark: Any, zerosite_recorder: Recorder, zerosite_workload: Workload, request: pytest.FixtureRequest
) -> CellBenchmark:
    """Call it with a cell: ``zerosite_bench(zerosite_cell)`` measures it against its group's baseline."""
    return CellBenchmark(benchmark, zerosite_recorder, zerosite_workload, request.node.nodeid)


@pytest.hookimpl(optionalhook=True)
def pytest_benchmark_update_json(config: pytest.Config, benchmarks: list[Any], output_json: dict[str, Any]) -> None:
    """Our figures into each benchmark's ``extra_info`` and a top-level ``zerosite`` comparison block."""
    recorder = config.stash[RECORDER]
    if not recorder.results:
        return
    analysis = recorder.analysis
    by_cell = {f.cell: f for f in analysis.cells}
    for entry in output_json.get("benchmarks", []):
        cell = recorder.fullnames.get(entry.get("fullname", ""))
        if cell is not None and cell in by_cell:
            entry.setdefault("extra_info", {}).update(by_cell[cell].as_dict())
    from zerosite.benchmarking.machine import describe_machine

    output_json["zerosite"] = {
        **analysis.as_dict(),
        "targets": dict(recorder.targets.values),
        "quick": config.getoption("zerosite_quick"),
        "machine": describe_machine().as_dict(),
    }


def _write_json(config: pytest.Config, path: Path) -> None:
    """The same JSON as ``--benchmark-json`` (pytest-benchmark's own hooks make it), written to ``path``."""
    session = config.pluginmanager.get_plugin("pytest-benchmark")
    if session is None or not session.benchmarks:
        return
    machine_info = session.get_machine_info()
    commit_info = config.hook.pytest_benchmark_generate_commit_info(config=config)
    config.hook.pytest_benchmark_update_commit_info(config=config, commit_info=commit_info)
    output = config.hook.pytest_benchmark_generate_json(
        config=config,
        benchmarks=session.benchmarks,
        include_data=True,
        machine_info=machine_info,
        commit_info=commit_info,
    )
    config.hook.pytest_benchmark_update_json(config=config, benchmarks=session.benchmarks, output_json=output)
    path.write_text(json.dumps(output, indent=2, ensure_ascii=False, default=str), encoding="utf-8")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    recorder = session.config.stash.get(RECORDER, None)
    if recorder is None or not recorder.results or hasattr(session.config, "workerinput"):
        return
    from zerosite.benchmarking.charts import write_charts
    from zerosite.benchmarking.machine import describe_machine
    from zerosite.benchmarking.page import ProfileLink, write_page

    out = recorder.reports_dir
    out.mkdir(parents=True, exist_ok=True)
    _write_json(session.config, out / JSON_NAME)
    analysis = recorder.analysis
    charts = write_charts(analysis, dict(recorder.targets.values), out / "charts")
    if session.config.getoption("zerosite_profile"):
        recorder.profiles = _record_profiles(session.config, recorder, out / "profiles")
    write_page(
        out / "index.html",
        analysis=analysis,
        targets=recorder.targets,
        machine=describe_machine(),
        charts=charts,
        profiles=[ProfileLink(p.label, os.path.relpath(p.path, out)) for p in recorder.profiles],
        json_name=JSON_NAME,
        quick=session.config.getoption("zerosite_quick"),
    )
    if analysis.failures and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _record_profiles(config: pytest.Config, recorder: Recorder, folder: Path) -> list[ProfileFile]:
    from zerosite.benchmarking.profiling import profile_strategies

    strategies = sorted({(c.strategy, c.workers) for c in recorder.results if c.strategy != BARE})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        profiles = profile_strategies(
            strategies,
            folder,
            projects=min(recorder.settings.batch_projects, 20),
        )
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    for warning in caught:
        if reporter is not None:
            reporter.write_line(f"zerosite: {warning.message}", yellow=True)
    return profiles


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    recorder = config.stash.get(RECORDER, None)
    if recorder is None or not recorder.results:
        return
    analysis = recorder.analysis
    tr = terminalreporter
    tr.section("ZeroSite targets")
    counts: dict[str, int] = analysis.as_dict()["verdict_counts"]  # type: ignore[assignment]
    tr.write_line(f"{counts['PASS']} PASS, {counts['FAIL']} FAIL, {counts['INCONCLUSIVE']} INCONCLUSIVE")
    for sentence in analysis.sentences.values():
        tr.write_line(sentence)
    for judgement in analysis.judgements:
        if judgement.verdict != "PASS":
            tr.write_line(judgement.message(), red=judgement.verdict == "FAIL", yellow=judgement.verdict != "FAIL")
    tr.write_line(f"report: {recorder.reports_dir / 'index.html'}")
    if analysis.failures:
        tr.write_line(
            f"ZeroSite performance gate failed: {len(analysis.failures)} target(s) missed", red=True, bold=True
        )
