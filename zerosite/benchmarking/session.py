"""A benchmark session's state and outputs: which cells are selected, their measurements, the analysis,
the JSON, charts, page and profiles, and the comparison with a baseline run."""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from zerosite.benchmarking.analysis import Analysis, analyse
from zerosite.benchmarking.canary import Canary
from zerosite.benchmarking.cells import Cell, CellResult
from zerosite.benchmarking.fingerprint import machine_fingerprint, workload_fingerprint
from zerosite.benchmarking.harness import LoadProbe, ReplayClock, measure_interleaved
from zerosite.benchmarking.instructions import count_instructions, uncountable_reason
from zerosite.benchmarking.machine import describe_machine
from zerosite.benchmarking.matrix import MatrixSettings
from zerosite.benchmarking.phases import Stopwatch
from zerosite.benchmarking.profiling import profile_strategies
from zerosite.benchmarking.service_level import ERROR_TARGET, P95_TARGET, analyse_service
from zerosite.benchmarking.service_load import LoadSettings, ServiceRun, drive_server, launch_server
from zerosite.benchmarking.targets import Targets
from zerosite.benchmarking.workloads import ROUND_PERIOD, MemoryProbe, Workload, cell_round
from zerosite.plugins import get_modules, get_strategies
from zerosite.rendering import get_environment, templates_fingerprint
from zerosite.service.process import ServerProcess

__all__ = ["JSON_NAME", "MODES", "Recorder"]

JSON_NAME = "benchmark.json"
MODES = ("time", "instructions")
INSTRUCTION_ITERATIONS = 10
"""Rounds counted per cell in instruction mode (after two uncounted warm-up rounds)."""


@dataclass
class Recorder:
    """The session's measurements: which cells are selected, their rounds, targets per cell, the analysis."""

    targets: Targets
    settings: MatrixSettings
    reports_dir: Path
    mode: str = "time"
    load: LoadProbe | None = None
    selected: set[Cell] = field(default_factory=set)
    cell_targets: dict[Cell, dict[str, float]] = field(default_factory=dict)
    results: dict[Cell, CellResult] = field(default_factory=dict)
    fullnames: dict[str, Cell] = field(default_factory=dict)
    clocks: dict[str, ReplayClock] = field(default_factory=dict)
    workload: Workload | None = None
    stopwatch: Stopwatch = field(default_factory=Stopwatch)
    service_runs: dict[str, ServiceRun] = field(default_factory=dict)
    """The service level's servers measured, by strategy."""
    service_settings: LoadSettings = field(default_factory=LoadSettings)
    service_selected: set[str] = field(default_factory=set)
    """The server strategies whose service tests were collected and not deselected."""
    _servers: dict[str, ServerProcess] = field(default_factory=dict)
    _analysis: Analysis | None = None
    _probe: MemoryProbe | None = None
    _canary: Canary | None = None

    @property
    def canary(self) -> Canary:
        """The machine-speed probe timed beside every cell (made, and calibrated, once per session)."""
        if self._canary is None:
            self._canary = Canary()
        return self._canary

    @property
    def measured(self) -> bool:
        """Whether anything was measured: cells, or the service level."""
        return bool(self.results or self.service_runs)

    def measure_service(self, strategy: str, folder: Callable[[str], Path], say: Callable[[str], None]) -> ServiceRun:
        """The service level of ``strategy``: its server driven at every number of users (and swept where the
        settings say), then stopped; measured the first time one of its tests asks. The first call launches the
        servers of every strategy selected at once (``folder(strategy)`` gives each its output folder), so that
        they warm up together, and waits until all are ready; each then waits idle until its turn."""
        if strategy not in self.service_runs:
            with self.stopwatch.within("service"), self.stopwatch("service"):
                if not self._servers:
                    for name in sorted(self.service_selected | {strategy}):
                        self._servers[name] = launch_server(name, self.service_settings, folder(name))
                    for server in self._servers.values():  # every one warm, so none warms while another is driven
                        server.wait_ready()
                if strategy in self._servers:
                    server = self._servers.pop(strategy)
                else:
                    server = launch_server(strategy, self.service_settings, folder(strategy))
                self.service_runs[strategy] = drive_server(
                    server,
                    strategy,
                    self.service_settings,
                    target_p95_ms=self.targets.values.get(P95_TARGET, 300.0),
                    max_error_percent=self.targets.values.get(ERROR_TARGET, 0.0),
                    log=say,
                    canary=self.canary,
                )
            self._analysis = None
        return self.service_runs[strategy]

    def stop_servers(self) -> None:
        """Stop the service level's servers that were launched and not driven (a test deselected or failed)."""
        while self._servers:
            _, server = self._servers.popitem()
            server.__exit__(None, None, None)

    def select(self, cell: Cell, overrides: Mapping[str, float]) -> None:
        self.selected.add(cell)
        if overrides:
            self.cell_targets[cell] = dict(self.targets.with_overrides(overrides, "zerosite_target marker").values)

    def group_cells(self, cell: Cell) -> list[Cell]:
        """The cells measured together with ``cell``: the selected ones of its group, baseline and bare loop."""
        members = {c for c in self.selected if c.group == cell.group} | {cell, cell.baseline, cell.bare}
        return sorted(members, key=lambda c: c.sort_key)

    def unmeasurable(self, cell: Cell) -> str | None:
        """Why ``cell`` cannot be measured in this session's mode, or None."""
        if self.mode == "instructions":
            return uncountable_reason(cell)
        return None

    def measure(self, cell: Cell, workload: Workload) -> CellResult:
        """The samples of ``cell``; its whole group is measured, interleaved, the first time one is asked for.
        Counting instructions, every selected countable cell is counted at once (one valgrind start-up)."""
        self.workload = workload
        if cell not in self.results and self.mode == "instructions":
            self._count_instructions()
        elif cell not in self.results:
            rule = self.settings.rule_for(cell.level)
            with self.stopwatch.within(cell.level):
                measured = measure_interleaved(
                    self.group_cells(cell),
                    lambda c: cell_round(c, workload),
                    rule,
                    warmup_rounds=1,  # batch too: auto starts the pool it chooses in its first real batch
                    memory=self._memory_probe(workload),
                    calibrated=cell.level != "batch",
                    load=self.load,
                    period=1 if cell.level == "batch" else ROUND_PERIOD,
                    stopwatch=self.stopwatch,
                    canary=self.canary,
                )
            self.results.update(measured)
            self._analysis = None
        return self.results[cell]

    def _count_instructions(self) -> None:
        wanted = {c for c in self.selected if uncountable_reason(c) is None}
        wanted |= {c.bare for c in wanted}
        with self.stopwatch("count instructions"):
            counts = count_instructions(sorted(wanted, key=lambda c: c.sort_key), iterations=INSTRUCTION_ITERATIONS)
        for counted, count in counts.items():
            self.results[counted] = CellResult(counted, instructions=count.total, iterations=count.iterations)
        self._analysis = None

    def _memory_probe(self, workload: Workload) -> MemoryProbe:
        if self._probe is None or self._probe.workload is not workload:
            self._probe = MemoryProbe(workload)
        return self._probe

    def targets_for(self, cell: Cell) -> dict[str, float]:
        return self.cell_targets.get(cell, dict(self.targets.values))

    @property
    def analysis(self) -> Analysis:
        if self._analysis is None:
            analysis = analyse(self.results.values(), self.targets_for, cores=describe_machine().usable_cpus)
            if self.service_runs:
                analysis = replace(analysis, service=analyse_service(self.service_runs.values(), self.targets.values))
            self._analysis = analysis
        return self._analysis

    def modules(self) -> list[str]:
        """The modules measured (all registered ones unless the workload names some)."""
        named = self.workload.modules if self.workload is not None else None
        return list(named) if named else list(get_modules())

    def zerosite_block(self, quick: bool, latency_ms: float) -> dict[str, Any]:
        """The top-level ``zerosite`` block of the JSON: what was measured (fingerprint), figures, verdicts."""
        modules = get_modules()
        measured = self.modules()
        workload = workload_fingerprint(
            modules={name: modules[name].version for name in measured if name in modules},
            templates=templates_fingerprint(get_environment()),
            strategies=sorted(get_strategies()),
            mode=self.mode,
            batch_projects=self.settings.batch_projects,
            latency_ms=latency_ms,
            sample_projects=len(self.workload.projects) if self.workload else 0,
            scratch=self.scratch_kind != "disk",
            quick=quick,
        )
        return {
            **self.analysis.as_dict(),
            "mode": self.mode,
            "fingerprint": {"workload": workload, "machine": machine_fingerprint()},
            "precision_goal": self.settings.rule_for("single").precision,
            "scratch": self.scratch_kind,
            "targets": dict(self.targets.values),
            "quick": quick,
            "machine": describe_machine().as_dict(),
            "phases_s": self.stopwatch.as_dict(),
            "levels_s": {level: round(seconds, 3) for level, seconds in self.stopwatch.levels.items()},
            "service_load": asdict(self.service_settings) if self.service_runs else None,
        }

    @property
    def scratch_kind(self) -> str:
        """Where the batch level wrote its files: ``disk`` or the RAM-backed folder's path."""
        if self.workload is None or not _ram_backed(self.workload.scratch):
            return "disk"
        return str(self.workload.scratch)


def _ram_backed(path: Path) -> bool:
    """Whether ``path`` lies on a tmpfs/ramfs mount (``/proc/mounts``, longest matching mount point)."""
    try:
        mounts = [line.split()[1:3] for line in Path("/proc/mounts").read_text().splitlines()]
    except OSError:
        return False
    resolved = str(path.resolve())
    matching = (m for m in mounts if resolved == m[0] or resolved.startswith(m[0].rstrip("/") + "/"))
    best = max(matching, key=lambda m: len(m[0]), default=None)
    return best is not None and best[1] in ("tmpfs", "ramfs")


def write_json(config: Any, path: Path) -> dict[str, Any] | None:
    """The same JSON as ``--benchmark-json`` (pytest-benchmark's own hooks make it), written to ``path``."""
    session = config.pluginmanager.get_plugin("pytest-benchmark")
    if session is None:
        return None
    output: dict[str, Any]
    if not session.benchmarks:  # instruction counts: nothing timed, only our block
        output = {"zerosite": {}}
        config.hook.pytest_benchmark_update_json(config=config, benchmarks=[], output_json=output)
        path.write_text(json.dumps(output, indent=2, ensure_ascii=False, default=str), encoding="utf-8")
        return output
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
    return output


def write_outputs(recorder: Recorder, config: Any, record_profiles: Callable[[Path], list[Any]] | None) -> Any:
    """JSON, charts, profiles and ``index.html`` into the reports folder; returns the JSON written.

    Made in a folder of their own beside it, then moved in together: a run stopped or failing while they are made
    (profiling takes minutes) leaves the last run's page, JSON and charts as they were, never a new JSON beside an
    old page; and ``charts/`` (``profiles/`` too, when this run profiles) holds this run's files alone, none left
    from an earlier run to be taken for this one's.
    """
    # matplotlib takes a while to import: only a session with results to chart pays for it.
    from zerosite.benchmarking.charts import write_charts
    from zerosite.benchmarking.page import ProfileLink, render_page

    out = recorder.reports_dir
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".staging-", dir=out) as folder:
        staging = Path(folder)
        output = write_json(config, staging / JSON_NAME)
        analysis = recorder.analysis
        machine = describe_machine()
        # Charts plot times and their spread; instruction counts are exact and read best in the table.
        charts = (
            write_charts(analysis, dict(recorder.targets.values), staging / "charts", cores=machine.usable_cpus)
            if recorder.mode == "time"
            else []
        )
        profiles = record_profiles(staging / "profiles") if record_profiles is not None else []
        html = render_page(
            analysis=analysis,
            targets=recorder.targets,
            machine=machine,
            charts=charts,
            profiles=[ProfileLink(p.label, os.path.relpath(p.path, staging)) for p in profiles],
            json_name=JSON_NAME,
            quick=bool(config.getoption("zerosite_quick")),
            modules=recorder.modules(),
            scratch=recorder.scratch_kind,
            mode=recorder.mode,
            precision_goal=recorder.settings.rule_for("single").precision,
            batch_projects=recorder.settings.batch_projects,
        )
        (staging / "index.html").write_text(html, encoding="utf-8")
        folders = ("charts", "profiles") if record_profiles is not None else ("charts",)
        _move_in(staging, out, folders, (JSON_NAME, "index.html"))
    return output


def _move_in(staging: Path, out: Path, folders: Sequence[str], files: Sequence[str]) -> None:
    """Replace ``out``'s ``folders`` (whole: what this run did not make goes) and ``files`` with ``staging``'s."""
    for name in folders:
        if (out / name).exists():
            (out / name).rename(staging / f"{name}.old")  # removed with the staging folder
        if (staging / name).exists():
            (staging / name).rename(out / name)
    for name in files:
        if (staging / name).exists():
            os.replace(staging / name, out / name)


def profile_strategies_of(recorder: Recorder, folder: Path, latency_ms: float, warn: Callable[[str], None]) -> Any:
    """py-spy profiles of each measured (strategy, workers), per scenario measured; warnings passed to ``warn``."""
    strategies = sorted({(c.strategy, c.workers) for c in recorder.results if not c.is_reference})
    scenarios = sorted({c.scenario for c in recorder.results})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        profiles = profile_strategies(
            strategies,
            folder,
            projects=min(recorder.settings.batch_projects, 20),
            scenarios=scenarios,
            latency_ms=latency_ms,
        )
    for warning in caught:
        warn(str(warning.message))
    return profiles
