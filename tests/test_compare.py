"""The regression check: fingerprints, Mann-Whitney, cell-by-cell comparison, refusals, and ``zerosite compare``."""

from __future__ import annotations

import copy
import json
import math
import random
import re
import statistics
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from zerosite.benchmarking.cells import Cell
from zerosite.benchmarking.compare import (
    EXIT_INCOMPARABLE,
    EXIT_OK,
    EXIT_REGRESSED,
    CompareError,
    compare_runs,
    load_run,
    parse_threshold,
)
from zerosite.benchmarking.compare_service import RUN_TO_RUN_SPREAD, ServiceFigures, p95_ratio_interval
from zerosite.benchmarking.fingerprint import (
    cpu_model,
    differences,
    machine_fingerprint,
    notes,
    refusals,
    workload_fingerprint,
)
from zerosite.benchmarking.stats import Interval, grouped_ratio_ci, mann_whitney_u, ratio_ci, speedup_change_ci
from zerosite.cli import main

MODULES = ("M2", "M3")
STRATEGIES = (("sequential", 1), ("thread", 2), ("process", 2))
M2_CPU = "single/module=M2-strategy=sequential-workers=1-scenario=cpu"
M2_PROCESS = "single/module=M2-strategy=process-workers=2-scenario=cpu"
M2_SEQUENTIAL_IO = "single/module=M2-strategy=sequential-workers=1-scenario=io"


# -- synthetic runs --------------------------------------------------------------------------


def matrix() -> list[Cell]:
    """A small matrix like the real one: single (per module), pipeline and batch cells, two scenarios."""
    cells = []
    for scenario in ("cpu", "io"):
        for strategy, workers in STRATEGIES:
            cells += [Cell("single", scenario, strategy, workers, module) for module in MODULES]
            cells += [Cell("pipeline", scenario, strategy, workers), Cell("batch", scenario, strategy, workers)]
    return cells


def true_time(cell: Cell) -> float:
    """The cell's typical time in its unit (ms; batch: s per 100 projects); parallel strategies are faster."""
    base = {"single": 4.0 + MODULES.index(cell.module or "M2"), "pipeline": 25.0, "batch": 3.0}[cell.level]
    return base / (1.6 if cell.workers > 1 else 1.0)


def make_run(
    seed: int,
    *,
    scale: Mapping[str, float] | None = None,
    noise: float = 0.03,
    noise_of: Mapping[str, float] | None = None,
    rounds: int = 10,
    mode: str = "time",
    instructions_scale: Mapping[str, float] | None = None,
    workload: Mapping[str, Any] | None = None,
    machine: Mapping[str, Any] | None = None,
    slower_machine: float | None = None,
    share: float = 0.7,
) -> dict[str, Any]:
    """A benchmark JSON as pytest bench/ writes it; ``scale`` multiplies the times of the cells it names (keys).
    With ``slower_machine``, every cell has canary samples: the canary takes that many times as long as on a
    reference machine, and each cell ``slower_machine ** share`` times as long."""
    rng = random.Random(seed)
    scale, noise_of, instructions_scale = scale or {}, noise_of or {}, instructions_scale or {}
    cells = []
    for cell in matrix():
        key = f"{cell.level}/{cell.id}"
        centre = true_time(cell) * scale.get(key, 1.0) * (slower_machine or 1.0) ** share
        spread = noise_of.get(key, noise)
        n = rounds if cell.level != "batch" else max(3, rounds // 3)
        samples = [centre * max(0.05, 1 + rng.gauss(0, spread)) for _ in range(n)]
        entry: dict[str, Any] = {
            "level": cell.level,
            "cell": cell.id,
            "group": cell.group,
            "strategy": cell.strategy,
            "workers": cell.workers,
            "scenario": cell.scenario,
            "module": cell.module,
            "unit": "s" if cell.level == "batch" else "ms",
            "median": statistics.median(samples),
            "samples": samples,
            "speedup": None,
        }
        if slower_machine is not None:
            entry["canary_s"] = [0.0008 * slower_machine * (1 + rng.gauss(0, 0.02)) for _ in range(n)]
        if mode == "instructions":
            count = round(true_time(cell) * 6_400_000 * instructions_scale.get(key, 1.0))
            measured = cell.level != "batch"
            entry |= {
                "instructions": count if measured else None,
                "instruction_total": count * 20 if measured else None,
                "iterations": 20 if measured else None,
            }
        cells.append(entry)
    _add_speedups(cells)
    return {
        "benchmarks": [],
        "zerosite": {
            "mode": mode,
            "fingerprint": {
                "workload": {**default_workload(mode), **(workload or {})},
                "machine": {**MACHINE, **(machine or {})},
            },
            "cells": cells,
        },
    }


def _add_speedups(cells: list[dict[str, Any]]) -> None:
    baselines = {c["group"]: c["median"] for c in cells if c["strategy"] == "sequential"}
    for cell in cells:
        cell["speedup"] = baselines[cell["group"]] / cell["median"]


def default_workload(mode: str = "time") -> dict[str, object]:
    return workload_fingerprint(
        modules={m: "0.1.0" for m in MODULES},
        templates="3f2a9c",
        strategies=[s for s, _ in STRATEGIES],
        mode=mode,
        batch_projects=100,
        latency_ms=20.0,
        sample_projects=1000,
        scratch=False,
        quick=True,
    )


MACHINE: dict[str, object] = {
    "cpu_count": 2,
    "usable_cpus": 2,
    "cpu_model": "AMD EPYC 7B13",
    "python": "3.11.7",
    "implementation": "CPython",
    "system": "Linux",
    "arch": "x86_64",
}


USERS = (50, 100, 200)
SERVICE_50 = "service/strategy=process-workers=2-users=50"


def with_service(
    run: dict[str, Any],
    *,
    p95_scale: Mapping[int, float] | None = None,
    errors: Mapping[int, int] | None = None,
    busy: Sequence[int] = (),
    server_cpu_percent: float = 20.0,
    canary_s: float | None = None,
) -> dict[str, Any]:
    """``run`` with a service level as the harness records it: the process server with 2 workers at 50, 100
    and 200 users, each point's p95 with its bootstrap interval (-18 %, +12 %), 80 requests per 50 users;
    ``p95_scale`` multiplies the p95 and its interval at the users it names, ``errors`` sets failed requests,
    ``busy`` marks the machine busy; ``canary_s``, the machine's speed around the points (ten samples, 2 % noise)."""
    p95_scale, errors = p95_scale or {}, errors or {}
    points = []
    for users in USERS:
        p95 = (12.0 + users / 25) * p95_scale.get(users, 1.0)
        requests, failed = 80 * users // 50, errors.get(users, 0)
        points.append(
            {
                "level": "service",
                "strategy": "process",
                "workers": 2,
                "users": users,
                "requests": requests,
                "p95_ms": round(p95, 3),
                "p95_ci_ms": [round(p95 * 0.82, 3), round(p95 * 1.12, 3)],
                "errors": failed,
                "error_percent": round(100 * failed / requests, 4),
                "server_cpu_percent": server_cpu_percent,
                "server_processes": 5,
                "generator_cpu_percent": 4.0,
                "busy": users in busy,
            }
        )
        if canary_s is not None:
            rng = random.Random(users)
            points[-1]["canary_s"] = [canary_s * (1 + rng.gauss(0, 0.02)) for _ in range(10)]
    run["zerosite"]["service"] = {"points": points, "sweeps": []}
    run["zerosite"]["machine"] = {"usable_cpus": MACHINE["usable_cpus"]}
    return run


def verdicts(comparison: Any) -> dict[str, str]:
    return {row.key: row.verdict for row in comparison.rows}


# -- Mann-Whitney U --------------------------------------------------------------------------


def test_mann_whitney_textbook_values() -> None:
    # scipy.stats.mannwhitneyu's documented example (method="asymptotic"): U = 17, p = 0.11135.
    result = mann_whitney_u([19, 22, 16, 29, 24], [20, 11, 17, 12])
    assert result.u == 17
    assert result.p_value == pytest.approx(0.111347, abs=1e-6)
    # The other way round: U' = n1 n2 - U, same two-sided p.
    other = mann_whitney_u([20, 11, 17, 12], [19, 22, 16, 29, 24])
    assert other.u == 3
    assert other.p_value == pytest.approx(result.p_value)


def test_mann_whitney_with_ties() -> None:
    # Ranks of 1,2,2,2,3,3,4,5: 1, 3, 3, 3, 5.5, 5.5, 7, 8 -> R1 = 12.5, U = 2.5; ties 3 and 2:
    # var = 4*4/12 * (9 - (24 + 6)/56) = 11.2857; z = (|2.5 - 8| - 0.5)/sqrt(var) = 1.48835.
    result = mann_whitney_u([1, 2, 2, 3], [2, 3, 4, 5])
    assert result.u == 2.5
    assert result.z == pytest.approx(1.48835, abs=1e-5)
    assert result.p_value == pytest.approx(0.136658, abs=1e-6)


def test_mann_whitney_separated_and_identical_samples() -> None:
    # Complete separation of 10 and 10: U = 100, z = (50 - 0.5) / sqrt(175) -> p = 0.000183.
    separated = mann_whitney_u([float(x) for x in range(10, 20)], [float(x) for x in range(10)])
    assert separated.u == 100
    assert separated.p_value == pytest.approx(0.0001827, rel=1e-3)
    assert mann_whitney_u([3.0, 3.0, 3.0], [3.0, 3.0]).p_value == 1.0
    assert mann_whitney_u([1.0], [2.0]).p_value == 1.0
    with pytest.raises(ValueError):
        mann_whitney_u([], [1.0])


def test_speedup_change_interval_covers_the_change() -> None:
    rng = random.Random(1)
    sequential = [10 + rng.gauss(0, 0.1) for _ in range(20)]
    parallel = [5 + rng.gauss(0, 0.05) for _ in range(20)]
    slower_parallel = [x * 1.25 for x in parallel]
    same = speedup_change_ci(sequential, parallel, sequential, parallel)
    assert same.low <= 1 <= same.high
    worse = speedup_change_ci(sequential, parallel, sequential, slower_parallel)
    assert worse.low <= 0.8 <= worse.high
    assert worse.high < 1


# -- fingerprints ----------------------------------------------------------------------------


def test_a_grouped_ratio_interval_holds_the_spread_between_groups() -> None:
    rng = random.Random(5)
    pools = [[ms * (1 + rng.gauss(0, 0.02)) for _ in range(3)] for ms in (0.53, 0.70, 0.54, 0.60)]
    same = [[ms * (1 + rng.gauss(0, 0.02)) for _ in range(3)] for ms in (0.53, 0.70, 0.54, 0.60)]
    flat = ratio_ci([s for g in pools for s in g], [s for g in same for s in g])
    grouped = grouped_ratio_ci(pools, same)
    assert grouped.low < flat.low and grouped.high > flat.high and grouped.low < 1 < grouped.high
    steady = [[0.53 * (1 + rng.gauss(0, 0.02)) for _ in range(3)] for _ in range(4)]
    slower = [[1.3 * s for s in g] for g in steady]
    assert grouped_ratio_ci(steady, slower).high < 1 / 1.2  # baseline / candidate, as ratio_ci
    with pytest.raises(ValueError, match="none of them empty"):
        grouped_ratio_ci([[1.0], []], steady)


def test_workload_fingerprint_is_json_ready_and_sorted() -> None:
    workload = workload_fingerprint(
        modules={"M3": "1", "M2": "1"},
        templates="abc",
        strategies=["thread", "async"],
        mode="instructions",
        batch_projects=10,
        latency_ms=5,
        sample_projects=100,
        scratch=True,
        quick=False,
    )
    assert list(workload["modules"]) == ["M2", "M3"]  # type: ignore[call-overload]
    assert workload["strategies"] == ["async", "thread"]
    assert json.loads(json.dumps(workload)) == workload
    with pytest.raises(ValueError, match="mode"):
        workload_fingerprint(**{**_workload_args(), "mode": "cycles"})


def _workload_args() -> dict[str, Any]:
    return {
        "modules": {"M2": "1"},
        "templates": "abc",
        "strategies": ["sequential"],
        "mode": "time",
        "batch_projects": 10,
        "latency_ms": 5.0,
        "sample_projects": 100,
        "scratch": False,
        "quick": False,
    }


def test_machine_fingerprint_names_this_machine() -> None:
    machine = machine_fingerprint()
    assert set(machine) == {"cpu_count", "usable_cpus", "cpu_model", "python", "implementation", "system", "arch"}
    assert isinstance(machine["cpu_model"], str) and machine["cpu_model"]
    assert json.loads(json.dumps(machine)) == machine


def test_cpu_model_from_cpuinfo_and_fallback(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\n")
    assert cpu_model(cpuinfo) == "AMD EPYC 7B13"
    assert cpu_model(tmp_path / "absent")  # platform.processor() or "unknown", never empty


def test_differences_refusals_and_notes() -> None:
    base = make_run(1)["zerosite"]["fingerprint"]
    new = copy.deepcopy(base)
    new["machine"]["cpu_count"] = 16
    new["workload"]["modules"]["M2"] = "0.2.0"
    new["workload"]["templates"] = "ffff"
    assert differences(base, new) == [
        "machine.cpu_count: 2 -> 16",
        "workload.modules.M2: 0.1.0 -> 0.2.0",
        "workload.templates: 3f2a9c -> ffff",
    ]
    assert refusals(base, new) == ["machine.cpu_count: 2 -> 16"]
    assert notes(base, new) == ["workload.modules.M2: 0.1.0 -> 0.2.0", "workload.templates: 3f2a9c -> ffff"]
    del new["workload"]["modules"]["M3"]
    assert "workload.modules: {M2, M3} -> {M2}" in refusals(base, new)


# -- comparing times -------------------------------------------------------------------------


def test_equal_samples_exit_0() -> None:
    run = make_run(1)
    comparison = compare_runs(run, copy.deepcopy(run))
    assert comparison.exit_code == EXIT_OK
    assert set(verdicts(comparison).values()) == {"unchanged"}


@pytest.mark.parametrize("seed", range(5))
def test_same_code_twice_never_cries_wolf(seed: int) -> None:
    """Two runs of the same code (independent noise): no regression, five times in a row."""
    comparison = compare_runs(make_run(100 + seed), make_run(200 + seed))
    assert comparison.exit_code == EXIT_OK, comparison.render()
    assert not comparison.regressions


@pytest.mark.parametrize("seed", range(5))
def test_30_percent_slower_is_named_every_time(seed: int) -> None:
    comparison = compare_runs(make_run(100 + seed), make_run(200 + seed, scale={M2_CPU: 1.3}))
    assert comparison.exit_code == EXIT_REGRESSED
    assert [row.key for row in comparison.regressions] == [M2_CPU]
    summary = comparison.summary()
    assert "slower" in summary and "regressed: single report M2 sequential cpu +" in summary
    row = comparison.regressions[0]
    assert row.interval is not None and row.interval.low > 1.1 and row.p_value is not None and row.p_value < 0.05


M3_THREAD = "single/module=M3-strategy=thread-workers=2-scenario=cpu"


def with_pools(run: dict[str, Any], seed: int, pools_ms: Sequence[float], rounds: int = 3) -> dict[str, Any]:
    """``run`` whose M3 thread cell was measured on one pool after another (``pools_ms``: each pool's own speed),
    ``rounds`` samples each with 3 % noise; its ``starts`` say which pool took each sample where there are several."""
    rng = random.Random(seed)
    (entry,) = (c for c in run["zerosite"]["cells"] if f"{c['level']}/{c['cell']}" == M3_THREAD)
    entry["samples"] = [ms * (1 + rng.gauss(0, 0.03)) for ms in pools_ms for _ in range(rounds)]
    entry["median"] = statistics.median(entry["samples"])
    if len(pools_ms) > 1:
        entry["starts"] = [start for start in range(len(pools_ms)) for _ in range(rounds)]
    return run


def test_a_thread_pools_cell_judged_by_its_starts_does_not_cry_wolf_at_the_pool_it_got() -> None:
    """A user audit: M3 under thread x2, same code, 0.525 then 0.720 ms in two quick runs (the pool each got),
    called slower (+32 %, p = 0.001). Pools of one run of this machine: 0.709, 0.536, 0.528, 0.534, 0.583 ms.
    Over four starts a side, the same code can still get three slow pools of four in one run: its samples taken
    as independent call that slower (+29 % [+11 %, +35 %]); its starts, one unit each, do not."""
    one_pool = compare_runs(with_pools(make_run(1), 1, [0.53], 12), with_pools(make_run(2), 2, [0.70], 12))
    assert verdicts(one_pool)[M3_THREAD] == "slower"  # what a run measured on one pool cannot tell apart
    starts = compare_runs(
        with_pools(make_run(1), 1, [0.536, 0.528, 0.534, 0.583]),
        with_pools(make_run(2), 2, [0.709, 0.709, 0.709, 0.536]),
    )
    assert verdicts(starts)[M3_THREAD] == "unchanged", starts.render()
    assert starts.exit_code == EXIT_OK


@pytest.mark.parametrize("seed", range(3))
def test_a_thread_pools_cell_slower_at_every_start_is_named(seed: int) -> None:
    pools = [0.709, 0.536, 0.528, 0.583]
    comparison = compare_runs(
        with_pools(make_run(1), 10 + seed, pools), with_pools(make_run(2), 20 + seed, [1.5 * ms for ms in pools])
    )
    assert [row.key for row in comparison.regressions] == [M3_THREAD], comparison.render()
    row = comparison.regressions[0]
    assert row.interval is not None and row.interval.low > 1.1 and row.p_value is not None and row.p_value < 0.05


def test_starts_that_do_not_match_the_samples_are_ignored() -> None:
    base = with_pools(make_run(1), 1, [0.53] * 4)
    new = with_pools(make_run(2), 2, [0.53] * 4)
    new["zerosite"]["cells"][0]["starts"] = [0, 1]  # a cell whose starts are not one a sample: judged by its samples
    assert compare_runs(base, new).exit_code == EXIT_OK


@pytest.mark.parametrize(("seed", "machine", "share"), [(0, 1.4, 0.45), (1, 1.6, 1.0), (2, 0.7, 0.7), (3, 1.2, 0.4)])
def test_a_machine_slower_or_faster_between_runs_is_no_verdict(seed: int, machine: float, share: float) -> None:
    """This VM's speed moves 20-60 % within minutes: the canary timed beside each cell takes it out."""
    base = make_run(100 + seed, slower_machine=1.0)
    comparison = compare_runs(base, make_run(200 + seed, slower_machine=machine, share=share))
    assert comparison.exit_code == EXIT_OK, comparison.render()
    assert set(verdicts(comparison).values()) == {"unchanged"}, comparison.render()
    assert "the machine itself (a fixed render timed beside every cell) ran" in comparison.render()
    assert comparison.render().split()[:4] == ["cell", "base", "new", "net"]  # base and new as measured (audit F9)
    unjudged = compare_runs(make_run(100 + seed), make_run(200 + seed, slower_machine=machine, share=share))
    if machine**share > 1.2:  # without the canary, the machine's change would have been the code's
        assert unjudged.exit_code == EXIT_REGRESSED


@pytest.mark.parametrize(("seed", "machine"), [(0, 1.25), (1, 0.8), (2, 1.0), (3, 1.2), (4, 0.85)])
def test_30_percent_slower_is_named_while_the_machine_moved_less_than_25_percent(seed: int, machine: float) -> None:
    base = make_run(100 + seed, slower_machine=1.0)
    comparison = compare_runs(base, make_run(200 + seed, slower_machine=machine, scale={M2_CPU: 1.3}))
    assert [row.key for row in comparison.regressions] == [M2_CPU], comparison.render()
    row = comparison.regressions[0]
    assert row.machine == pytest.approx(machine, rel=0.05)
    assert row.ratio == pytest.approx(1.3, rel=0.1)  # net of the machine's share


def test_a_machine_that_moved_more_than_the_change_leaves_it_open_and_says_so() -> None:
    """A machine 60 % slower may explain anything from +21 % to +60 % of a cell's time: +30 % is not proven."""
    base = make_run(100, slower_machine=1.0)
    comparison = compare_runs(base, make_run(200, slower_machine=1.6, scale={M2_CPU: 1.3}))
    assert comparison.exit_code == EXIT_OK
    row = next(r for r in comparison.rows if r.key == M2_CPU)
    assert (row.verdict, row.detail) == ("unchanged", "slower, perhaps beyond threshold")
    assert "slower, perhaps beyond threshold" in comparison.render()


def test_a_change_measured_on_a_busy_machine_is_inconclusive_not_a_regression() -> None:
    slower = make_run(2, scale={M2_CPU: 1.3})
    for cell in slower["zerosite"]["cells"]:
        if f"{cell['level']}/{cell['cell']}" == M2_CPU:
            cell["busy_rounds"] = len(cell["samples"])  # every sample taken while other processes were busy
    comparison = compare_runs(make_run(1), slower)
    assert verdicts(comparison)[M2_CPU] == "inconclusive"
    assert comparison.exit_code == EXIT_OK
    assert "1 inconclusive (changed, but measured while the machine was busy" in comparison.summary()
    # It said "no regression beyond 10%" of a cell it did not judge, however far that slowed (benchmark audit F5)
    summary = comparison.summary()
    assert "no regression beyond 10% in the 23 cells judged (1 not judged, the most slowed +" in summary, summary


@pytest.mark.parametrize("field", ["median", "samples"])
def test_a_time_that_is_no_number_is_refused_and_a_cell_without_samples_not_judged(field: str) -> None:
    """Benchmark audit F6: NaN times compared as 'unchanged', exit 0; a cell without samples passed whatever its
    median."""
    new = make_run(2)
    cell = new["zerosite"]["cells"][0]
    cell["median"] = float("nan") if field == "median" else cell["median"]
    cell["samples"] = [float("nan")] * 3 if field == "samples" else cell["samples"]
    with pytest.raises(CompareError, match="times must be finite numbers"):
        compare_runs(make_run(1), new)
    unsampled = make_run(2, scale={M2_CPU: 10.0})
    for cell in unsampled["zerosite"]["cells"]:
        if f"{cell['level']}/{cell['cell']}" == M2_CPU:
            cell["samples"] = []
    comparison = compare_runs(make_run(1), unsampled)
    assert verdicts(comparison)[M2_CPU] == "inconclusive"
    assert "or without samples to test" in comparison.summary()


def test_a_cell_only_noisier_is_unchanged() -> None:
    comparison = compare_runs(make_run(1), make_run(2, noise_of={M2_CPU: 0.25, M2_PROCESS: 0.25}))
    assert verdicts(comparison)[M2_CPU] == "unchanged"
    assert verdicts(comparison)[M2_PROCESS] == "unchanged"
    assert comparison.exit_code == EXIT_OK


def test_small_drift_below_threshold_is_unchanged() -> None:
    """5 % slower with little noise: real (significant) but within the 10 % threshold."""
    comparison = compare_runs(make_run(1, noise=0.005), make_run(2, noise=0.005, scale={M2_CPU: 1.05}))
    row = next(r for r in comparison.rows if r.key == M2_CPU)
    assert row.verdict == "unchanged"
    assert row.detail == "slower within threshold"
    assert row.p_value is not None and row.p_value < 0.05
    assert "slower within threshold" in comparison.render()
    assert comparison.exit_code == EXIT_OK
    strict = compare_runs(make_run(1, noise=0.005), make_run(2, noise=0.005, scale={M2_CPU: 1.05}), threshold=0.0)
    assert M2_CPU in [r.key for r in strict.regressions]


def test_faster_is_named_and_passes() -> None:
    comparison = compare_runs(make_run(1), make_run(2, scale={M2_CPU: 0.7}))
    assert verdicts(comparison)[M2_CPU] == "faster"
    assert comparison.exit_code == EXIT_OK
    assert comparison.summary().startswith("1 faster, 0 slower")


def test_a_higher_threshold_lets_a_regression_pass() -> None:
    base, new = make_run(1), make_run(2, scale={M2_CPU: 1.3})
    assert compare_runs(base, new, threshold=0.5).exit_code == EXIT_OK


def test_cells_only_in_the_new_run_are_listed_and_pass() -> None:
    base, new = make_run(1), make_run(2)
    extra = copy.deepcopy(new["zerosite"]["cells"][0]) | {
        "cell": "module=M9-strategy=sequential-workers=1-scenario=cpu",
        "module": "M9",
    }
    new["zerosite"]["cells"].append(extra)
    comparison = compare_runs(base, new)
    assert verdicts(comparison)[f"single/{extra['cell']}"] == "only in new"
    assert comparison.exit_code == EXIT_OK
    # a cell only the new run has was not checked (a base run cut short would otherwise pass for a whole one)
    assert comparison.summary().endswith(
        ", 1 only in new; no regression beyond 10% in the 24 cells judged (1 not checked)"
    )


def _without(run: dict[str, Any], drop: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    run["zerosite"]["cells"] = [cell for cell in run["zerosite"]["cells"] if not drop(cell)]
    return run


@pytest.mark.parametrize(
    ("drop", "lacking", "named"),
    [
        (lambda cell: cell["level"] == "batch", 6, "batch sequential cpu, batch thread\N{MULTIPLICATION SIGN}2 cpu"),
        (lambda cell: cell["strategy"] == "process", 8, "single M2 process\N{MULTIPLICATION SIGN}2 cpu"),
        (lambda cell: f"{cell['level']}/{cell['cell']}" == M2_CPU, 1, "(single M2 sequential cpu)"),
    ],
    ids=["a level left out", "a strategy that crashed", "one cell"],
)
def test_a_new_run_that_lacks_cells_is_refused_naming_them_unless_forced(
    drop: Callable[[dict[str, Any]], bool], lacking: int, named: str
) -> None:
    """Cells not measured were not checked: exit 0 and 'no regression' let a crashed or -k-filtered run pass
    the gate (audit 1)."""
    base, new = make_run(1), _without(make_run(2), drop)
    refused = compare_runs(base, new)
    assert refused.exit_code == EXIT_INCOMPARABLE
    assert not refused.rows
    summary = refused.summary()
    assert summary.startswith(f"cannot compare: the new run lacks {lacking} of the base run's 24 cells ("), summary
    assert named in summary
    assert "measure the same selection" in summary and "--force" in summary
    assert "no regression" not in refused.render()
    forced = compare_runs(base, new, force=True)
    assert forced.exit_code == EXIT_OK
    assert sum(row.verdict == "only in base" for row in forced.rows) == lacking
    assert forced.summary().endswith(
        f"no regression beyond 10% in the {24 - lacking} cells judged ({lacking} not checked)"
    )
    assert any(note.startswith(f"compared although the new run lacks {lacking} ") for note in forced.notes)


def test_a_regression_among_the_cells_compared_still_fails_when_forced() -> None:
    base, new = make_run(1), _without(make_run(2, scale={M2_CPU: 1.3}), lambda cell: cell["level"] == "batch")
    assert compare_runs(base, new).exit_code == EXIT_INCOMPARABLE
    forced = compare_runs(base, new, force=True)
    assert forced.exit_code == EXIT_REGRESSED
    assert [row.key for row in forced.regressions] == [M2_CPU]


@pytest.mark.parametrize(
    ("base_cells", "new_cells", "reason"),
    [
        (True, False, "the new run has no cells (a run that crashed or measured nothing): nothing to compare"),
        (False, True, "the base run has no cells: nothing to compare"),
        (False, False, "the new run has no cells"),
    ],
)
@pytest.mark.parametrize("force", [False, True])
def test_runs_with_no_cell_in_common_are_refused_even_when_forced(
    base_cells: bool, new_cells: bool, reason: str, force: bool
) -> None:
    """A run that measured nothing passed with '0 unchanged, 65 only in base; no regression' (audit 1)."""
    base = make_run(1) if base_cells else _without(make_run(1), lambda cell: True)
    new = make_run(2) if new_cells else _without(make_run(2), lambda cell: True)
    comparison = compare_runs(base, new, force=force)
    assert comparison.exit_code == EXIT_INCOMPARABLE
    assert comparison.summary().startswith(f"cannot compare: {reason}")
    assert "--force" not in comparison.summary()


def test_runs_of_different_cells_only_are_refused_even_when_forced() -> None:
    base = _without(make_run(1), lambda cell: cell["scenario"] == "io")
    new = _without(make_run(2), lambda cell: cell["scenario"] == "cpu")
    comparison = compare_runs(base, new, force=True)
    assert comparison.exit_code == EXIT_INCOMPARABLE
    assert (
        comparison.summary()
        == "cannot compare: the runs have no cell in common (12 in base, 12 in new): nothing to compare"
    )


def test_speedups_compared_but_never_fail_the_gate() -> None:
    """A faster sequential baseline lowers every speedup of its group: reported, not a regression."""
    comparison = compare_runs(make_run(1), make_run(2, scale={M2_CPU: 0.6}))
    assert comparison.exit_code == EXIT_OK
    lowered = {change.key: change for change in comparison.speedups if change.verdict == "lower"}
    assert M2_PROCESS in lowered
    change = lowered[M2_PROCESS]
    assert change.interval is not None and change.interval.high < 1
    assert change.ratio == pytest.approx(0.6, rel=0.05)
    assert "speedup over sequential" in comparison.render()


def test_render_fits_100_columns_and_ends_with_the_summary() -> None:
    comparison = compare_runs(make_run(1), make_run(2, scale={M2_CPU: 1.3}))
    text = comparison.render()
    assert max(len(line) for line in text.splitlines()) <= 100, text
    assert "single M2 sequential cpu" in text
    assert text.splitlines()[-1] == comparison.summary()
    assert comparison.summary().startswith("0 faster, 1 slower, ")


def test_long_cell_names_are_never_cut() -> None:
    base, new = make_run(1, noise=0.005), make_run(2, noise=0.005, scale={M2_CPU: 1.05})
    for cell in [*base["zerosite"]["cells"], *new["zerosite"]["cells"]]:
        if cell["module"] == "M2":
            cell["module"] = "third_party_module_with_a_long_name"
    text = compare_runs(base, new).render()
    assert "slower within threshold" in text
    assert "single third_party_module_with_a_long_name sequential cpu  " in text
    assert "\N{HORIZONTAL ELLIPSIS}" not in text


def test_a_long_verdict_leaves_every_row_its_whole_name() -> None:
    """One 'slower, perhaps beyond threshold' cut every name to 16 characters: 'pipeline sequen…' stood for the
    cpu, io and mixed rows alike (audit 9)."""
    base = make_run(100, slower_machine=1.0)
    comparison = compare_runs(base, make_run(200, slower_machine=1.6, scale={M2_CPU: 1.3}))
    table = comparison.render().split("\n\n")[0].splitlines()[1:]
    assert any(line.endswith("slower, perhaps beyond threshold") for line in table)
    assert len(table) == len(comparison.rows)
    for line, row in zip(table, comparison.rows, strict=True):
        assert line.startswith(f"{row.label}  "), line
    assert len({line.split("  ")[0] for line in table}) == len(table)
    assert {"pipeline sequential cpu", "pipeline sequential io", "batch process\N{MULTIPLICATION SIGN}2 io"} <= {
        line.split("  ")[0].strip() for line in table
    }


# -- refusals --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("workload", "reason"),
    [
        ({"strategies": ["sequential", "thread"]}, "workload.strategies"),
        ({"batch_projects": 1000}, "workload.batch_projects: 100 -> 1000"),
        ({"latency_ms": 50.0}, "workload.latency_ms"),
        ({"sample_projects": 10}, "workload.sample_projects"),
        ({"scratch": True}, "workload.scratch: False -> True"),
        ({"quick": False}, "workload.quick"),
        ({"modules": {m: "0.1.0" for m in MODULES[:1]}}, "workload.modules"),
    ],
)
def test_different_workloads_are_refused_unless_forced(workload: dict[str, Any], reason: str) -> None:
    base, new = make_run(1), make_run(2, workload=workload)
    refused = compare_runs(base, new)
    assert refused.exit_code == EXIT_INCOMPARABLE
    assert not refused.rows
    assert reason in refused.render()
    forced = compare_runs(base, new, force=True)
    assert forced.exit_code == EXIT_OK
    assert any(note.startswith(f"compared although {reason}") for note in forced.notes)


@pytest.mark.parametrize(
    "machine",
    [
        {"cpu_count": 16, "usable_cpus": 16},
        {"cpu_model": "Intel Xeon"},
        {"python": "3.12.1"},
        {"implementation": "PyPy"},
    ],
)
def test_different_machines_are_refused_unless_forced(machine: dict[str, Any]) -> None:
    base, new = make_run(1), make_run(2, machine=machine)
    refused = compare_runs(base, new)
    assert refused.exit_code == EXIT_INCOMPARABLE
    assert refused.summary().startswith("cannot compare: machine.")
    assert compare_runs(base, new, force=True).exit_code == EXIT_OK


def test_code_changes_are_notes_not_refusals() -> None:
    workload = {"modules": {**{m: "0.1.0" for m in MODULES}, "M2": "0.2.0"}, "templates": "beef"}
    comparison = compare_runs(make_run(1), make_run(2, workload=workload))
    assert comparison.exit_code == EXIT_OK
    assert comparison.notes == ("workload.modules.M2: 0.1.0 -> 0.2.0", "workload.templates: 3f2a9c -> beef")
    assert "notes:" in comparison.render()


def test_old_json_without_fingerprint_is_refused_unless_forced() -> None:
    old = make_run(1)
    del old["zerosite"]["fingerprint"], old["zerosite"]["mode"]
    for cell in old["zerosite"]["cells"]:
        del cell["samples"]
    refused = compare_runs(old, make_run(2))
    assert refused.exit_code == EXIT_INCOMPARABLE
    assert "base run records no fingerprint" in refused.render()
    forced = compare_runs(old, make_run(2), force=True)
    assert forced.exit_code == EXIT_OK
    assert {row.detail for row in forced.rows} == {"no samples to test"}


def test_different_modes_are_refused() -> None:
    comparison = compare_runs(make_run(1), make_run(1, mode="instructions"))
    assert comparison.exit_code == EXIT_INCOMPARABLE
    assert "workload.mode: time -> instructions" in comparison.refusals


# -- the service level -----------------------------------------------------------------------


def test_the_service_level_compared_with_itself_is_unchanged() -> None:
    comparison = compare_runs(with_service(make_run(1)), with_service(make_run(2)))
    assert comparison.exit_code == EXIT_OK
    service = {row.key: row for row in comparison.rows if row.key.startswith("service/")}
    assert set(service) == {
        f"service/strategy=process-workers=2-users={u}/{m}" for u in USERS for m in ("p95", "errors")
    }
    assert {row.verdict for row in service.values()} == {"unchanged"}
    assert "service process\N{MULTIPLICATION SIGN}2 200 users p95" in comparison.render()


def test_a_slower_service_with_every_request_failing_regresses() -> None:
    """The audit's repro: p95 20 times as long and 100 % errors passed as '65 unchanged; no regression' (audit 2)."""
    slow = with_service(make_run(2), p95_scale=dict.fromkeys(USERS, 20.0), errors={u: 80 * u // 50 for u in USERS})
    comparison = compare_runs(with_service(make_run(1)), slow)
    assert comparison.exit_code == EXIT_REGRESSED
    assert [row.key for row in comparison.regressions] == [
        f"service/strategy=process-workers=2-users={u}/{m}" for u in USERS for m in ("p95", "errors")
    ]
    p95 = comparison.regressions[0]
    assert p95.ratio == pytest.approx(20)
    assert p95.interval is not None and 1.1 < p95.interval.low < 20 < p95.interval.high
    summary = comparison.summary()
    assert "service process\N{MULTIPLICATION SIGN}2, 50 users, p95 latency +1900% [" in summary
    assert "service process\N{MULTIPLICATION SIGN}2, 50 users, error rate +100 pts (0% -> 100%)" in summary


@pytest.mark.parametrize(
    ("scale", "verdict", "detail"),
    [
        (1.05, "unchanged", ""),  # well within either run's interval
        (1.5, "unchanged", ""),  # within what the p95 moves between runs of the same code
        (2.5, "slower", ""),
        (0.4, "faster", ""),
    ],
)
def test_the_p95_is_judged_by_its_intervals_and_the_threshold(scale: float, verdict: str, detail: str) -> None:
    comparison = compare_runs(with_service(make_run(1)), with_service(make_run(2), p95_scale={100: scale}))
    row = next(r for r in comparison.rows if r.key == "service/strategy=process-workers=2-users=100/p95")
    assert (row.verdict, row.detail) == (verdict, detail)
    assert comparison.exit_code == (EXIT_REGRESSED if verdict == "slower" else EXIT_OK)


def test_a_p95_significantly_slower_within_the_threshold_is_unchanged() -> None:
    base, new = with_service(make_run(1)), with_service(make_run(2), p95_scale={100: 2.5})
    row = next(r for r in compare_runs(base, new, threshold=4.0).rows if r.key.endswith("users=100/p95"))
    assert (row.verdict, row.detail) == ("unchanged", "slower within threshold")


@pytest.mark.parametrize(
    ("why", "settings"),
    [
        ("measured while the machine was busy", {"busy": (100,)}),
        ("the server ran at its CPU capacity", {"server_cpu_percent": 185.0}),  # 2 cores, 4 % for the generator
    ],
)
def test_a_slower_p95_of_an_unsteady_server_is_inconclusive(why: str, settings: dict[str, Any]) -> None:
    """As the run's own verdicts: a busy machine, or a server at its CPU capacity, whose latency is bistable."""
    slower = with_service(make_run(2), p95_scale={100: 2.5}, **settings)
    comparison = compare_runs(with_service(make_run(1)), slower)
    row = next(r for r in comparison.rows if r.key.endswith("users=100/p95"))
    assert row.verdict == "inconclusive"
    assert row.detail.startswith(f"slower, but {why}")
    assert comparison.exit_code == EXIT_OK
    servers = ", or a server at its CPU capacity" if "capacity" in why else ""
    assert f"1 inconclusive (changed, but measured while the machine was busy{servers}: rerun" in comparison.summary()


def test_a_slower_p95_on_a_machine_that_itself_ran_slower_is_inconclusive() -> None:
    """Two full runs of the same code: p95 +40 % to +82 %, 5 points called slower, exit 1; the server's CPU for the
    same load had risen 21-37 %, the machine slower. A p95 that moved as the machine did is no verdict."""
    base = with_service(make_run(1), canary_s=0.00050)
    slower_machine = with_service(make_run(2), p95_scale={50: 2.5, 100: 2.5, 200: 2.5}, canary_s=0.00062)
    comparison = compare_runs(base, slower_machine)
    rows = {row.key: row for row in comparison.rows if row.key.endswith("/p95")}
    assert {row.verdict for row in rows.values()} == {"inconclusive"}, comparison.render()
    assert "the machine itself ran 24% slower around these points" in rows[f"{SERVICE_50}/p95"].detail
    assert comparison.exit_code == EXIT_OK
    # the same machine: the same +150 % is a regression; and a machine that got faster excuses no slower p95
    for canary in (0.00050, 0.00040):
        same = compare_runs(base, with_service(make_run(2), p95_scale={50: 2.5}, canary_s=canary))
        assert [row.key for row in same.regressions] == [f"{SERVICE_50}/p95"], same.render()


def test_any_rise_of_the_error_rate_regresses_whatever_the_threshold() -> None:
    """Errors are counted, and the run's target allows none: one failed request of 160 more is a regression."""
    base = with_service(make_run(1), errors={200: 2})
    comparison = compare_runs(base, with_service(make_run(2), errors={100: 1, 200: 1}), threshold=10.0)
    found = {row.key: row for row in comparison.rows if row.measure == "error rate"}
    assert found[f"{SERVICE_50}/errors"].verdict == "unchanged"
    rose = found["service/strategy=process-workers=2-users=100/errors"]
    assert (rose.verdict, rose.base, rose.new) == ("slower", 0.0, pytest.approx(100 / 160))
    assert found["service/strategy=process-workers=2-users=200/errors"].verdict == "faster"
    assert comparison.exit_code == EXIT_REGRESSED
    assert comparison.summary().endswith("error rate +0.625 pts (0% -> 0.625%)")


def test_a_new_run_without_the_service_level_is_refused_unless_forced() -> None:
    """A run with -k 'not service' must not pass the gate unchecked (audits 1 and 2)."""
    base, new = with_service(make_run(1)), make_run(2)
    refused = compare_runs(base, new)
    assert refused.exit_code == EXIT_INCOMPARABLE
    assert "the new run lacks 3 of the base run's 27 cells (service process\N{MULTIPLICATION SIGN}2 50 users," in (
        refused.summary()
    )
    forced = compare_runs(base, new, force=True)
    assert forced.exit_code == EXIT_OK
    assert verdicts(forced)[SERVICE_50] == "only in base"


def test_a_service_level_only_in_the_new_run_is_listed() -> None:
    comparison = compare_runs(make_run(1), with_service(make_run(2)))
    assert comparison.exit_code == EXIT_OK
    assert verdicts(comparison)[SERVICE_50] == "only in new"
    assert "3 only in new" in comparison.summary()


def test_a_service_point_without_requests_measured_nothing() -> None:
    new = with_service(make_run(2))
    new["zerosite"]["service"]["points"][0] |= {"requests": 0, "errors": 0, "p95_ms": float("nan")}
    refused = compare_runs(with_service(make_run(1)), new)
    assert refused.exit_code == EXIT_INCOMPARABLE
    assert "lacks 1 of the base run's 27 cells (service process\N{MULTIPLICATION SIGN}2 50 users)" in refused.summary()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"p95_ms": -1.0}, "service point 0: latencies must be positive"),
        ({"errors": 90}, "service point 0: 90 errors of 80 requests"),
        ({"users": "many"}, "service point 0: users must be a count"),
        ({"p95_ci_ms": [1.0]}, "service point 0: p95_ci_ms must be [low, high]"),
    ],
)
def test_malformed_service_points_raise_compare_error(change: dict[str, Any], message: str) -> None:
    new = with_service(make_run(2))
    new["zerosite"]["service"]["points"][0] |= change
    with pytest.raises(CompareError, match=re.escape(f"new {message}")):
        compare_runs(with_service(make_run(1)), new)


def test_p95_ratio_interval_combines_both_runs_intervals_and_the_spread_between_runs() -> None:
    """MOVER on the log scale: two equal intervals of ±h (in logs) give a ratio's interval of ±√(2h² + 2b²) around 1,
    b the 95 % half-width of what a p95 moves between runs beyond its own interval."""
    half, between = math.log(1.2), 1.959964 * RUN_TO_RUN_SPREAD
    point = ServiceFigures("process", 2, 50, 80, 0, 10.0, Interval(10 / 1.2, 12.0))
    interval = p95_ratio_interval(point, point)
    assert interval is not None
    assert math.log(interval.high) == pytest.approx(math.sqrt(2 * half**2 + 2 * between**2))
    assert math.log(interval.low) == pytest.approx(-math.sqrt(2 * half**2 + 2 * between**2))
    assert p95_ratio_interval(point, ServiceFigures("process", 2, 50, 80, 0, 10.0, None)) is None


def test_a_p95_that_moved_as_much_as_same_code_runs_do_is_unchanged() -> None:
    """Two full runs of the same code: process x2 at 200 users, p95 11.9 ms [10.5, 13.9] then 17.3 ms [15.2, 20.9]
    ("slower", +46 % [+19 %, +82 %], exit 1, before the spread between runs counted); twice that is a regression."""
    base = ServiceFigures("process", 2, 200, 481, 0, 11.9, Interval(10.5, 13.9))
    same_code = ServiceFigures("process", 2, 200, 484, 0, 17.3, Interval(15.2, 20.9))
    interval = p95_ratio_interval(base, same_code)
    assert interval is not None and interval.low < 1 < interval.high
    doubled = ServiceFigures("process", 2, 200, 484, 0, 2 * 17.3, Interval(2 * 15.2, 2 * 20.9))
    slower = p95_ratio_interval(base, doubled)
    assert slower is not None and slower.low > 1.10


def test_cli_fails_a_slower_service(tmp_path: Path) -> None:
    base = _write(tmp_path, "base.json", with_service(make_run(1)))
    slow = _write(tmp_path, "slow.json", with_service(make_run(2), p95_scale={50: 20.0}))
    result = CliRunner().invoke(main, ["compare", base, slow])
    assert result.exit_code == 1, result.output
    assert "regressed: service process\N{MULTIPLICATION SIGN}2, 50 users, p95 latency +1900%" in result.output


# -- instruction counts ----------------------------------------------------------------------


def test_instruction_counts_equal_exit_0() -> None:
    comparison = compare_runs(make_run(1, mode="instructions"), make_run(2, mode="instructions"))
    assert comparison.exit_code == EXIT_OK
    counted = [row for row in comparison.rows if row.measure == "instructions"]
    assert counted and all(row.ratio == 1 and row.verdict == "unchanged" for row in counted)
    assert "exact" in comparison.render()


def test_instruction_counts_larger_exit_1() -> None:
    base = make_run(1, mode="instructions")
    comparison = compare_runs(base, make_run(2, mode="instructions", instructions_scale={M2_CPU: 1.3}))
    assert comparison.exit_code == EXIT_REGRESSED
    assert [row.key for row in comparison.regressions] == [M2_CPU]
    assert "+30% (instructions" not in comparison.summary()
    assert "single report M2 sequential cpu +30%" in comparison.summary()


def test_instruction_counts_any_difference_is_real_but_gated_by_threshold() -> None:
    base = make_run(1, mode="instructions")
    comparison = compare_runs(base, make_run(2, mode="instructions", instructions_scale={M2_CPU: 1.03}))
    row = next(r for r in comparison.rows if r.key == M2_CPU)
    assert (row.verdict, row.detail) == ("unchanged", "slower within threshold")
    assert comparison.exit_code == EXIT_OK


def test_instructions_from_total_and_iterations() -> None:
    base, new = make_run(1, mode="instructions"), make_run(2, mode="instructions", instructions_scale={M2_CPU: 1.3})
    for cell in new["zerosite"]["cells"]:
        cell["instructions"] = None
    assert [row.key for row in compare_runs(base, new).regressions] == [M2_CPU]


# -- the property: a run compared with itself passes -----------------------------------------


@pytest.mark.parametrize("seed", range(30))
def test_any_run_compared_with_itself_exits_0(seed: int) -> None:
    rng = random.Random(seed)
    run = make_run(
        seed,
        noise=rng.choice([0.0, 0.001, 0.05, 0.5]),
        rounds=rng.randint(1, 25),
        mode=rng.choice(["time", "instructions"]),
        scale={M2_CPU: rng.uniform(0.1, 10)},
    )
    cells = run["zerosite"]["cells"]
    rng.shuffle(cells)
    del cells[rng.randint(1, len(cells) - 1) :]  # an empty run is refused: nothing to compare
    for cell in cells:
        if rng.random() < 0.2:
            cell["samples"] = [round(s, 1) or 0.1 for s in cell["samples"]]  # heavy ties
    comparison = compare_runs(run, copy.deepcopy(run))
    assert comparison.exit_code == EXIT_OK
    assert all(row.verdict == "unchanged" for row in comparison.rows)


# -- text from the JSON on a terminal --------------------------------------------------------

EVIL = "\x1b[2J\x1b[31mEVIL\x1b]0;pwned\x07"
"""Clears the screen, turns it red and sets the window title (audit 7)."""


def assert_escaped(text: str) -> None:
    assert not any(char in text for char in "\x1b\x07"), text
    assert "\\x1b[2J\\x1b[31mEVIL\\x1b]0;pwned\\x07" in text, text


def test_cell_names_from_the_json_are_escaped_in_the_table_and_summary() -> None:
    base, new = make_run(1), make_run(2, scale={M2_CPU: 1.3})
    for run in (base, new):
        for cell in run["zerosite"]["cells"]:
            if f"{cell['level']}/{cell['cell']}" == M2_CPU:
                cell["module"] = EVIL
    extra = copy.deepcopy(new["zerosite"]["cells"][1]) | {"cell": f"{EVIL}-only-here", "strategy": EVIL}
    new["zerosite"]["cells"].append(extra)
    comparison = compare_runs(base, new)
    assert [row.key for row in comparison.regressions] == [M2_CPU]
    assert_escaped(comparison.render())
    assert_escaped(comparison.summary())
    header, *rows = comparison.render().split("\n\n")[0].splitlines()
    end = header.index("base") + len("base")  # the base column is right-aligned: every value ends here
    assert all(line[end - 1] != " " and line[end] == " " for line in rows), "\n".join([header, *rows])


def test_fingerprint_values_from_the_json_are_escaped_in_refusals_and_notes() -> None:
    refused = compare_runs(make_run(1), make_run(2, machine={"cpu_model": EVIL}))
    assert refused.exit_code == EXIT_INCOMPARABLE
    assert_escaped(refused.render())
    assert_escaped(refused.summary())
    noted = compare_runs(make_run(1), make_run(2, workload={"templates": EVIL}))
    assert noted.exit_code == EXIT_OK
    assert_escaped(noted.render())


def test_cli_prints_no_escape_sequence_from_the_json(tmp_path: Path) -> None:
    base = make_run(1)
    base["zerosite"]["cells"][0]["strategy"] = EVIL
    evil = _write(tmp_path, "evil.json", base)
    result = CliRunner().invoke(main, ["compare", evil, evil])
    assert result.exit_code == 0, result.output
    assert_escaped(result.output)


def test_cli_json_keeps_text_from_the_json_but_escapes_what_acts_on_a_terminal(tmp_path: Path) -> None:
    """``--json`` wrote C1 controls (U+009B, a CSI on some terminals) and bidirectional controls raw: JSON escapes
    neither. They are JSON escapes now; the document reads back the same."""
    base = make_run(1)
    sneaky = "\x9b2J\u202eLIVE\u2028서울"
    base["zerosite"]["cells"][0]["strategy"] = sneaky
    evil = _write(tmp_path, "evil.json", base)
    result = CliRunner().invoke(main, ["compare", evil, evil, "--json"])
    assert result.exit_code == 0, result.output
    assert not any(char in result.output for char in "\x9b\u202e\u2028"), result.output
    assert "\\u009b2J\\u202eLIVE\\u2028서울" in result.output
    assert sneaky in json.dumps(json.loads(result.output), ensure_ascii=False)


# -- reading files and thresholds ------------------------------------------------------------


def test_load_run_errors_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(CompareError, match="no such file"):
        load_run(tmp_path / "absent.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(CompareError, match="not JSON"):
        load_run(bad)
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"benchmarks": []}))
    with pytest.raises(CompareError, match="not a ZeroSite benchmark JSON") as caught:
        load_run(other)
    assert "\n" not in str(caught.value)


def test_malformed_cells_raise_compare_error() -> None:
    run = make_run(1)
    del run["zerosite"]["cells"][3]["unit"]
    with pytest.raises(CompareError, match="no unit"):
        compare_runs(run, make_run(2))


@pytest.mark.parametrize(("text", "value"), [("10%", 0.1), ("0.1", 0.1), (" 25 % ", 0.25), ("0", 0.0), ("1", 1.0)])
def test_parse_threshold(text: str, value: float) -> None:
    assert parse_threshold(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["ten", "10", "-5%", ""])
def test_parse_threshold_refuses(text: str) -> None:
    with pytest.raises(CompareError):
        parse_threshold(text)


def test_the_threshold_range_and_its_message_agree() -> None:
    """1000% was refused as not 'within 0% and 1000%' (audit 10): the ends the message names are accepted."""
    assert parse_threshold("1000%") == pytest.approx(10.0)
    assert parse_threshold("0%") == 0.0
    for text in ("1000.1%", "-0.1%", "nan%"):
        with pytest.raises(CompareError, match="must be from 0% to 1000%"):
            parse_threshold(text)


@pytest.mark.parametrize(("text", "shown"), [("0.4%", "0.4%"), ("0.004", "0.4%"), ("12.5%", "12.5%"), ("10%", "10%")])
def test_the_summary_shows_the_threshold_as_given(text: str, shown: str) -> None:
    """A 0.4 % threshold was shown as 'no regression beyond 0%' (audit 10)."""
    comparison = compare_runs(make_run(1), copy.deepcopy(make_run(1)), threshold=parse_threshold(text))
    assert comparison.summary().endswith(f"no regression beyond {shown}")


def test_a_refusal_names_the_force_option() -> None:
    """The hint said 'force to compare anyway'; the option is --force (audit 10)."""
    summary = compare_runs(make_run(1), make_run(2, machine={"cpu_count": 16})).summary()
    assert summary.endswith("(zerosite compare --force compares them anyway)"), summary


# -- the command line ------------------------------------------------------------------------


def _write(tmp_path: Path, name: str, run: Mapping[str, Any]) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(run))
    return str(path)


def test_cli_exit_codes(tmp_path: Path) -> None:
    cli = CliRunner()
    base = _write(tmp_path, "base.json", make_run(1))
    same = _write(tmp_path, "same.json", make_run(2))
    slower = _write(tmp_path, "slower.json", make_run(2, scale={M2_CPU: 1.3}))
    other = _write(tmp_path, "other.json", make_run(2, machine={"cpu_count": 16}))

    passed = cli.invoke(main, ["compare", base, same])
    assert passed.exit_code == 0, passed.output
    assert "no regression beyond 10%" in passed.output

    regressed = cli.invoke(main, ["compare", base, slower])
    assert regressed.exit_code == 1
    assert "regressed: single report M2 sequential cpu +" in regressed.output

    assert cli.invoke(main, ["compare", base, slower, "--fail-threshold", "50%"]).exit_code == 0
    assert cli.invoke(main, ["compare", base, slower, "--fail-threshold", "0.5"]).exit_code == 0

    refused = cli.invoke(main, ["compare", base, other])
    assert refused.exit_code == 2
    assert "machine.cpu_count: 2 -> 16" in refused.output
    assert cli.invoke(main, ["compare", base, other, "--force"]).exit_code == 0


def test_cli_refuses_a_new_run_without_cells(tmp_path: Path) -> None:
    """The audit's repro: a run that measured nothing, and one filtered to leave the batch level out."""
    base = _write(tmp_path, "base.json", make_run(1))
    empty = _write(tmp_path, "empty.json", _without(make_run(2), lambda cell: True))
    no_batch = _write(tmp_path, "nobatch.json", _without(make_run(2), lambda cell: cell["level"] == "batch"))
    for new, exit_code in ((empty, 2), (no_batch, 2)):
        result = CliRunner().invoke(main, ["compare", base, new])
        assert result.exit_code == exit_code, result.output
        assert "no regression" not in result.output
        assert result.output.splitlines()[-1].startswith("cannot compare: the new run ")
    forced = CliRunner().invoke(main, ["compare", base, no_batch, "--force"])
    assert forced.exit_code == 0, forced.output
    assert forced.output.splitlines()[-1].endswith("in the 18 cells judged (6 not checked)")
    assert CliRunner().invoke(main, ["compare", base, empty, "--force"]).exit_code == 2


def test_cli_json_output(tmp_path: Path) -> None:
    base = _write(tmp_path, "base.json", make_run(1))
    slower = _write(tmp_path, "slower.json", make_run(2, scale={M2_CPU: 1.3}))
    result = CliRunner().invoke(main, ["compare", base, slower, "--json"])
    assert result.exit_code == 1
    data = json.loads(result.output)
    assert data["exit_code"] == 1 and data["regressions"] == [M2_CPU]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["absent.json", "base.json"], "no such file"),
        (["bad.json", "base.json"], "not JSON"),
        (["base.json", "base.json", "--fail-threshold", "lots"], "not a number"),
        (["old.json", "base.json"], "no fingerprint"),
    ],
)
def test_cli_errors_are_one_line_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    _write(tmp_path, "base.json", make_run(1))
    (tmp_path / "bad.json").write_text("[1, 2")
    old = make_run(1)
    del old["zerosite"]["fingerprint"]
    _write(tmp_path, "old.json", old)
    result = CliRunner().invoke(main, ["compare", *(str(tmp_path / a) if a.endswith(".json") else a for a in args)])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
    if message != "no fingerprint":
        assert len(result.output.strip().splitlines()) == 1
