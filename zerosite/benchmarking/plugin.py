"""pytest plugin (entry point ``pytest11``): the ZeroSite benchmark harness's options, markers, hooks and
fixtures. The session's state lives in :mod:`zerosite.benchmarking.session`, the ``zerosite_bench``
object in :mod:`zerosite.benchmarking.fixture`."""

from __future__ import annotations

import math
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from zerosite.benchmarking.cells import LEVELS, Cell
from zerosite.benchmarking.harness import ReplayClock
from zerosite.benchmarking.instructions import valgrind_unavailable
from zerosite.benchmarking.load import LoadMonitor
from zerosite.benchmarking.matrix import MatrixSettings, build_matrix
from zerosite.benchmarking.targets import Targets, load_targets

if TYPE_CHECKING:
    from zerosite.benchmarking.analysis import Analysis
    from zerosite.benchmarking.fixture import CellBenchmark, ServiceBenchmark
    from zerosite.benchmarking.service_load import LoadSettings
    from zerosite.benchmarking.session import Recorder
    from zerosite.benchmarking.workloads import Workload
    from zerosite.project import Project
    from zerosite.testing import ProjectServer

__all__ = ["RECORDER"]

SETUP = pytest.StashKey["Setup"]()
RECORDER = pytest.StashKey["Recorder"]()
COMPARISON = pytest.StashKey[Any]()
INTERRUPTED = pytest.StashKey[bool]()
"""Set when the session was interrupted: it wrote nothing, and the reports folder keeps the last whole run's."""
SAMPLE_PROJECTS = 100


FULL, QUICK = MatrixSettings(), MatrixSettings.quick()
"""The settings of a run and of a quick run, which the options' help describes."""


def _counts(workers: tuple[int, ...]) -> str:
    return ",".join(str(n) for n in workers)


def _quick_help() -> str:
    """What ``--zerosite-quick`` changes, from the settings themselves."""
    workers = (
        f"one worker count ({QUICK.workers[0]})" if len(QUICK.workers) == 1 else f"workers {_counts(QUICK.workers)}"
    )
    narrower = [
        f"the {level} level ({', '.join(QUICK.scenarios_for(level))} only)"
        for level in LEVELS
        if QUICK.scenarios_for(level) != FULL.scenarios_for(level)
    ]
    # The service level's settings (LoadSettings.quick) live beside its HTTP client, too heavy to import here.
    return (
        f"smaller time budgets, a batch of {QUICK.batch_projects} projects, {workers}; every strategy and level runs, "
        f"in every scenario{' but ' + ' and '.join(narrower) if narrower else ''}; the service level with fewer "
        "servers and shorter windows"
    )


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("zerosite", "ZeroSite benchmark harness")
    add = group.addoption
    add("--zerosite-reports-dir", default="reports", help="where JSON, charts, index.html and profiles go")
    add("--zerosite-quick", action="store_true", help=_quick_help())
    add(
        "--zerosite-target",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a target of [tool.zerosite.targets] for this run (repeatable)",
    )
    add(
        "--zerosite-precision",
        default="5%",
        metavar="P",
        help="measure each cell until the 95%% intervals of its median and speedup are within +/-P (default 5%%)",
    )
    add(
        "--zerosite-budget",
        type=float,
        default=None,
        metavar="SECONDS",
        help="time budget per cell, every level (default: per level; a cell stops earlier once precise)",
    )
    add(
        "--zerosite-scratch",
        default=None,
        metavar="DIR",
        help="where the batch level writes (e.g. /dev/shm: RAM-backed, no disk noise); default: a temporary folder",
    )
    add(
        "--zerosite-measure",
        choices=("time", "instructions"),
        default="time",
        help="time (wall time, default) or instructions (CPU instructions under valgrind: single and pipeline "
        "cells of the sequential and bare strategies, deterministic)",
    )
    add("--zerosite-compare", default=None, metavar="BASE.json", help="compare this run with a saved benchmark.json")
    add(
        "--zerosite-compare-fail",
        default="10%",
        metavar="P",
        help="with --zerosite-compare: fail when a cell is significantly slower by more than P (default 10%%)",
    )
    add("--zerosite-profile", action="store_true", help="also record py-spy profiles per strategy and scenario")
    add(
        "--zerosite-latency-ms",
        type=float,
        default=20.0,
        help="per-request latency of the loopback HTTP data source (default 20)",
    )
    add(
        "--zerosite-workers",
        default=None,
        metavar="N,N,...",
        help=f"worker counts to compare (default {_counts(FULL.workers)}; quick {_counts(QUICK.workers)}), "
        "e.g. 1,2,4,8,16 for a scaling run",
    )
    add("--zerosite-rounds", type=int, default=None, help="exactly this many rounds per cell (no adaptive stopping)")
    add(
        "--zerosite-batch-projects",
        type=int,
        default=None,
        help=f"projects per batch round (default {FULL.batch_projects}, quick {QUICK.batch_projects})",
    )


def _settings(config: pytest.Config) -> MatrixSettings:
    from zerosite.benchmarking.compare import CompareError, parse_threshold

    settings = QUICK if config.getoption("zerosite_quick") else FULL
    try:
        settings = settings.with_rules(precision=parse_threshold(config.getoption("zerosite_precision")))
    except (CompareError, ValueError) as error:  # a threshold it cannot read; a precision the rules refuse
        raise pytest.UsageError(f"--zerosite-precision: {error}") from None
    if (budget := config.getoption("zerosite_budget")) is not None:
        if not budget > 0 or math.isinf(budget):  # NaN too
            raise pytest.UsageError(f"--zerosite-budget must be > 0 seconds, got {budget!r}")
        settings = settings.with_rules(budget_s=budget)
    if (rounds := config.getoption("zerosite_rounds")) is not None:
        if rounds < 1:
            raise pytest.UsageError(f"--zerosite-rounds must be >= 1, got {rounds!r}")
        settings = settings.fixed_rounds(rounds)
    if (batch := config.getoption("zerosite_batch_projects")) is not None:
        if batch < 1:  # a batch of no project measured nothing, and passed its target
            raise pytest.UsageError(f"--zerosite-batch-projects must be >= 1, got {batch!r}")
        settings = replace(settings, batch_projects=batch)
    if workers := config.getoption("zerosite_workers"):
        try:
            counts = tuple(sorted({int(n) for n in workers.split(",")}))
            if counts[0] < 1:
                raise ValueError(counts[0])
            settings = replace(settings, workers=counts)
        except ValueError:
            raise pytest.UsageError(
                f"--zerosite-workers takes counts of at least 1 such as 2,4,8; got {workers!r}"
            ) from None
    latency = config.getoption("zerosite_latency_ms")
    if not (math.isfinite(latency) and latency >= 0):
        raise pytest.UsageError(f"--zerosite-latency-ms must be a number of milliseconds >= 0, got {latency!r}")
    return settings


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "zerosite_target(**targets): override targets (e.g. single_report_ms=50) for the cells of this test"
    )
    config.addinivalue_line(
        "markers",
        "zerosite_matrix(level, modules=None, scenarios=None, strategies=None, workers=None): "
        "parametrize `zerosite_cell` with the benchmark matrix of a level",
    )
    config.addinivalue_line(
        "markers", "zerosite_service: parametrize `zerosite_service_point` with the service level's strategies x users"
    )
    try:
        targets: Targets = load_targets(Path(config.rootpath), config.getoption("zerosite_target"))
    except ValueError as error:
        raise pytest.UsageError(str(error)) from None
    mode = config.getoption("zerosite_measure")
    if mode == "instructions" and (why := valgrind_unavailable()) is not None:
        raise pytest.UsageError(f"--zerosite-measure instructions: {why}")
    if (base := config.getoption("zerosite_compare")) is not None:
        from zerosite.benchmarking.compare import CompareError, load_run, parse_threshold

        try:
            parse_threshold(config.getoption("zerosite_compare_fail"))
            load_run(Path(base))
        except (CompareError, ValueError) as error:
            raise pytest.UsageError(f"--zerosite-compare: {error}") from None
    config.stash[SETUP] = Setup(
        targets=targets,
        settings=_settings(config),
        reports_dir=Path(config.getoption("zerosite_reports_dir")),
        mode=mode,
    )


@dataclass(frozen=True)
class Setup:
    """The session's options, read and checked at configure time (cheap: nothing measured yet)."""

    targets: Targets
    settings: MatrixSettings
    reports_dir: Path
    mode: str


def recorder_of(config: pytest.Config) -> Recorder:
    """The session's :class:`~zerosite.benchmarking.session.Recorder`, made on first use: a pytest run
    without ZeroSite benchmarks never imports the engine or the harness's session machinery."""
    if RECORDER not in config.stash:
        from zerosite.benchmarking.session import Recorder

        setup = config.stash[SETUP]
        config.stash[RECORDER] = Recorder(
            targets=setup.targets,
            settings=setup.settings,
            reports_dir=setup.reports_dir,
            mode=setup.mode,
            load=LoadMonitor() if setup.mode == "time" else None,
            service_settings=_service_settings(config),
        )
    return config.stash[RECORDER]


def _service_settings(config: pytest.Config) -> LoadSettings:
    from zerosite.benchmarking.service_load import LoadSettings

    return LoadSettings.quick() if config.getoption("zerosite_quick") else LoadSettings()


def _parametrize_service(metafunc: pytest.Metafunc) -> None:
    """``zerosite_service_point``: every server strategy x number of users of the service level."""
    from zerosite.benchmarking.service_load import ServicePointId
    from zerosite.plugins import get_strategies

    settings = _service_settings(metafunc.config)
    strategies = get_strategies()
    points = []
    for name in settings.strategies:
        why = strategies[name].unavailable_reason() if name in strategies else f"no strategy {name!r} here"
        for users in settings.users:
            point = ServicePointId(name, settings.workers, users)
            points.append(pytest.param(point, id=point.id, marks=[pytest.mark.skip(reason=why)] if why else []))
    metafunc.parametrize("zerosite_service_point", points)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if metafunc.definition.get_closest_marker("zerosite_service") and "zerosite_service_point" in metafunc.fixturenames:
        _parametrize_service(metafunc)
        return
    marker = metafunc.definition.get_closest_marker("zerosite_matrix")
    if marker is None or "zerosite_cell" not in metafunc.fixturenames:
        return
    from zerosite.plugins import get_modules, get_strategies

    level = marker.args[0] if marker.args else marker.kwargs["level"]
    settings = metafunc.config.stash[SETUP].settings
    strategies = [
        (name, s.unavailable_reason()) for name, s in get_strategies().items() if level == "batch" or not s.batches_only
    ]
    wanted = marker.kwargs.get("strategies")
    if wanted is not None:
        strategies = [(n, why) for n, why in strategies if n in wanted]
    modules = marker.kwargs.get("modules") or (list(get_modules()) if level == "single" else [None])
    planned = build_matrix(
        level,
        strategies,
        workers=marker.kwargs.get("workers") or settings.workers_for(level),
        scenarios=marker.kwargs.get("scenarios") or settings.scenarios_for(level),
        modules=modules,
        references=_references() if level == "batch" else (),
    )
    metafunc.parametrize(
        "zerosite_cell",
        [
            pytest.param(p.cell, id=p.cell.id, marks=[pytest.mark.skip(reason=p.unavailable)] if p.unavailable else [])
            for p in planned
        ],
    )


def _references() -> list[tuple[str, str | None]]:
    """The batch level's reference code, ``(name, unavailable_reason)``."""
    from zerosite.benchmarking.references import REFERENCES

    return [(name, reference.unavailable_reason()) for name, reference in REFERENCES.items()]


@pytest.hookimpl(trylast=True)  # after -k/-m deselection: only the cells that will run are measured
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        callspec = getattr(item, "callspec", None)
        cell = callspec.params.get("zerosite_cell") if callspec is not None else None
        point = callspec.params.get("zerosite_service_point") if callspec is not None else None
        if point is not None and not item.get_closest_marker("skip"):
            recorder_of(config).service_selected.add(point.strategy)
            existing = item.get_closest_marker("benchmark")
            clock = recorder_of(config).clocks[item.nodeid] = ReplayClock()
            kwargs = {
                **(existing.kwargs if existing else {}),
                "timer": clock,
                "group": f"level=service-{point.strategy}",
            }
            item.add_marker(pytest.mark.benchmark(**kwargs), append=False)
            continue
        if not isinstance(cell, Cell) or item.get_closest_marker("skip"):
            continue
        overrides: dict[str, float] = {}
        for mark in reversed(list(item.iter_markers("zerosite_target"))):
            overrides.update(mark.kwargs)
        recorder = recorder_of(config)
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
    """The session's :class:`~zerosite.benchmarking.session.Recorder` of benchmark cells."""
    return recorder_of(pytestconfig)


@pytest.fixture(scope="session")
def zerosite_targets(zerosite_recorder: Recorder) -> Targets:
    """The run's targets: defaults, ``[tool.zerosite.targets]``, then ``--zerosite-target`` overrides."""
    return zerosite_recorder.targets


@pytest.fixture(scope="session")
def zerosite_projects() -> list[Project]:
    """The deterministic sample projects that every cell cycles through."""
    from zerosite.benchmarking.workloads import scenario_projects

    return scenario_projects(SAMPLE_PROJECTS)


def _serve(projects: list[Project], latency_s: float) -> ProjectServer:
    from zerosite.project import project_to_dict
    from zerosite.testing import ProjectServer

    return ProjectServer({p.id: project_to_dict(p) for p in projects}, latency_s=latency_s)


@pytest.fixture(scope="session")
def zerosite_http_server(pytestconfig: pytest.Config, zerosite_projects: list[Project]) -> Iterator[ProjectServer]:
    """A real loopback HTTP server of the sample projects, ``--zerosite-latency-ms`` per request."""
    with _serve(zerosite_projects, pytestconfig.getoption("zerosite_latency_ms") / 1000) as server:
        yield server


@pytest.fixture(scope="session")
def zerosite_workload(
    pytestconfig: pytest.Config,
    zerosite_recorder: Recorder,
    zerosite_projects: list[Project],
    zerosite_http_server: ProjectServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Workload]:
    """Projects, a data-source URL per scenario (see ``SCENARIO_LATENCY_SHARE``), the batch size, and where
    the batch level writes (``--zerosite-scratch`` or a temporary folder)."""
    from zerosite.benchmarking.workloads import SCENARIO_LATENCY_SHARE, Workload

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
    scratch_root = pytestconfig.getoption("zerosite_scratch")
    try:
        if scratch_root is not None:
            Path(scratch_root).mkdir(parents=True, exist_ok=True)
            scratch = Path(tempfile.mkdtemp(prefix="zerosite-bench-", dir=scratch_root))
        else:
            scratch = tmp_path_factory.mktemp("zerosite-bench")
        yield Workload(
            projects=zerosite_projects,
            urls=urls,
            batch_projects=zerosite_recorder.settings.batch_projects,
            scratch=scratch,
        )
    finally:
        for server in servers:
            server.close()
        if scratch_root is not None:
            shutil.rmtree(scratch, ignore_errors=True)


@pytest.fixture
def zerosite_bench(
    benchmark: Any, zerosite_recorder: Recorder, zerosite_workload: Workload, request: pytest.FixtureRequest
) -> CellBenchmark:
    """Call it with a cell: ``zerosite_bench(zerosite_cell)`` measures it against its group's baseline."""
    from zerosite.benchmarking.fixture import CellBenchmark

    return CellBenchmark(benchmark, zerosite_recorder, zerosite_workload, request.node.nodeid)


@pytest.fixture
def zerosite_service(
    benchmark: Any,
    zerosite_recorder: Recorder,
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
) -> ServiceBenchmark:
    """Call it with a point: ``zerosite_service(zerosite_service_point)`` measures the point's server (every
    number of users, once per strategy) and hands that point's request latencies to pytest-benchmark."""
    from zerosite.benchmarking.fixture import ServiceBenchmark

    reporter = request.config.pluginmanager.get_plugin("terminalreporter")

    def say(line: str) -> None:
        if reporter is not None:
            reporter.write_line(line)

    return ServiceBenchmark(benchmark, zerosite_recorder, request.node.nodeid, tmp_path_factory, say)


@pytest.hookimpl(optionalhook=True)
def pytest_benchmark_update_json(config: pytest.Config, benchmarks: list[Any], output_json: dict[str, Any]) -> None:
    """Our figures into each benchmark's ``extra_info`` and a top-level ``zerosite`` block."""
    recorder = config.stash.get(RECORDER, None)
    if recorder is None or not recorder.measured:
        return
    by_cell = {f.cell: f for f in recorder.analysis.cells}
    for entry in output_json.get("benchmarks", []):
        cell = recorder.fullnames.get(entry.get("fullname", ""))
        if cell is not None and cell in by_cell:
            entry.setdefault("extra_info", {}).update(by_cell[cell].as_dict())
    output_json["zerosite"] = recorder.zerosite_block(
        quick=config.getoption("zerosite_quick"), latency_ms=config.getoption("zerosite_latency_ms")
    )


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    recorder = config.stash.get(RECORDER, None)
    if recorder is not None:
        recorder.stop_servers()
    if recorder is None or not recorder.measured or hasattr(config, "workerinput"):
        return
    if exitstatus == pytest.ExitCode.INTERRUPTED:  # a part of the matrix, which a page or a base JSON would pass off
        config.stash[INTERRUPTED] = True  # as a whole run (said "not measured in this run"): the last whole one stays
        return
    from zerosite.benchmarking.compare import compare_runs, load_run, parse_threshold
    from zerosite.benchmarking.session import profile_strategies_of, write_outputs

    reporter = config.pluginmanager.get_plugin("terminalreporter")

    def warn(message: str) -> None:
        if reporter is not None:
            reporter.write_line(f"zerosite: {message}", yellow=True)

    latency_ms = config.getoption("zerosite_latency_ms")
    profiles = (
        (lambda folder: profile_strategies_of(recorder, folder, latency_ms, warn))
        if config.getoption("zerosite_profile")
        else None
    )
    with recorder.stopwatch("outputs"):
        output = write_outputs(recorder, config, profiles)
    failed = bool(recorder.analysis.failures)
    if (base := config.getoption("zerosite_compare")) is not None and output is not None:
        comparison = compare_runs(
            load_run(Path(base)), output, threshold=parse_threshold(config.getoption("zerosite_compare_fail"))
        )
        config.stash[COMPARISON] = comparison
        failed = failed or comparison.exit_code != 0
    if failed and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


NOISY_SHOWN = 5
"""Noisy cells named on the terminal; the page lists them all."""


def noisy_lines(analysis: Analysis, page: Path) -> list[str]:
    """The terminal's account of :attr:`Analysis.noisy`: a count, then one cell a line (each cell's words hold
    commas), the first :data:`NOISY_SHOWN` of them."""
    noisy = analysis.noisy
    if not noisy:
        return []
    lines = [f"{len(noisy)} cell(s) measured while the machine was busy:"]
    lines += [f"  {f.cell.subject}" for f in noisy[:NOISY_SHOWN]]
    if len(noisy) > NOISY_SHOWN:
        lines.append(f"  and {len(noisy) - NOISY_SHOWN} more (all in {page})")
    return lines


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    recorder = config.stash.get(RECORDER, None)
    if recorder is None or not recorder.measured:
        return
    analysis = recorder.analysis
    tr = terminalreporter
    tr.section("ZeroSite verdicts")
    if config.stash.get(INTERRUPTED, False):
        tr.write_line(
            f"interrupted: no verdict, nothing written; {recorder.reports_dir} keeps the last whole run's page and "
            "JSON",
            yellow=True,
        )
        return
    counts = analysis.as_dict()["verdict_counts"]
    tr.write_line(f"{counts['PASS']} PASS, {counts['FAIL']} FAIL, {counts['INCONCLUSIVE']} INCONCLUSIVE")  # type: ignore[index]
    for standing in analysis.standings:
        tr.write_line(f"{standing.level} / {standing.scenario}: {standing.sentence()}")
    for lead in analysis.leads:
        tr.write_line(f"{lead.level} / {lead.scenario} against reference code: {lead.sentence()}")
    for check in analysis.auto:
        tr.write_line(f"batch / {check.scenario}: {check.sentence()}")
    if analysis.service is not None:
        for point in analysis.service.points:
            tr.write_line(point.line(), yellow=point.busy)
        for sweep in analysis.service.sweeps:
            tr.write_line(sweep.line())
    for line in noisy_lines(analysis, recorder.reports_dir / "index.html"):
        tr.write_line(line, yellow=True)
    for judgement in analysis.judgements:
        if judgement.verdict != "PASS":
            tr.write_line(judgement.message(), red=judgement.verdict == "FAIL", yellow=judgement.verdict != "FAIL")
    tr.write_line(f"time: {recorder.stopwatch.summary()}")
    tr.write_line(f"report: {recorder.reports_dir / 'index.html'} (data: {recorder.reports_dir / 'benchmark.json'})")
    if analysis.failures:
        tr.write_line(
            f"ZeroSite performance gate failed: {len(analysis.failures)} target(s) missed", red=True, bold=True
        )
    comparison = config.stash.get(COMPARISON, None)
    if comparison is not None:
        tr.section("ZeroSite comparison with " + str(config.getoption("zerosite_compare")))
        for line in comparison.render().splitlines():
            tr.write_line(line)
