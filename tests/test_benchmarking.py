"""Tests of the benchmark harness: statistics, verdicts, targets, charts, page, and the pytest plugin."""

from __future__ import annotations

import json
import math
import re
import textwrap
from dataclasses import replace
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zerosite.benchmarking import plugin
from zerosite.benchmarking.analysis import analyse
from zerosite.benchmarking.cells import BUSY_MACHINE, TIMES, Cell, CellResult, RoundOutcome
from zerosite.benchmarking.harness import (
    ReplayClock,
    StoppingRule,
    calibrate,
    measure_interleaved,
    precision_of,
    rotation,
)
from zerosite.benchmarking.leads import Lead
from zerosite.benchmarking.machine import describe_machine
from zerosite.benchmarking.matrix import MatrixSettings, build_matrix
from zerosite.benchmarking.page import render_page
from zerosite.benchmarking.phases import Stopwatch
from zerosite.benchmarking.service_load import LoadSettings
from zerosite.benchmarking.stats import (
    Interval,
    bootstrap_ci,
    efficiency,
    karp_flatt,
    median_interval,
    median_interval_samples,
    percentile,
    ratio_ci,
    speedup,
    spread,
)
from zerosite.benchmarking.targets import load_targets, parse_override
from zerosite.benchmarking.verdicts import Verdict, judge
from zerosite.benchmarking.winners import call, end_to_end
from zerosite.cores import cgroup_cpu_quota

pytest_plugins = ["pytester"]

TARGETS = {"single_report_ms": 300.0, "pipeline_ms": 500.0, "batch_100_s": 30.0, "memory_per_report_mb": 10.0}


# -- statistics ------------------------------------------------------------------------------


def test_karp_flatt_known_value() -> None:
    assert karp_flatt(1.6, 2) == pytest.approx(0.25)
    assert karp_flatt(2.0, 2) == pytest.approx(0.0)
    assert karp_flatt(1.0, 4) == pytest.approx(1.0)
    assert karp_flatt(1.3, 1) is None


def test_speedup_and_efficiency() -> None:
    assert speedup(10.0, 5.0) == 2.0
    assert speedup(10.0, 12.5) == pytest.approx(0.8)  # slower shows as < 1
    assert efficiency(1.6, 2) == pytest.approx(0.8)
    with pytest.raises(ValueError):
        speedup(1.0, 0.0)


def test_spread_of_known_sample() -> None:
    s = spread([1.0, 2.0, 3.0, 4.0, 5.0])
    assert (s.median, s.q1, s.q3, s.iqr, s.mean, s.min, s.max) == (3.0, 2.0, 4.0, 2.0, 3.0, 1.0, 5.0)
    assert s.p95 == pytest.approx(4.8)
    assert percentile([10.0], 95) == 10.0


def test_bootstrap_ci_is_deterministic_and_brackets_the_median() -> None:
    samples = [10.0, 11.0, 9.5, 10.2, 10.8, 9.9, 10.1, 30.0]
    first, second = bootstrap_ci(samples), bootstrap_ci(samples)
    assert first == second
    assert first.low <= 10.15 <= first.high
    assert bootstrap_ci([4.2]) == Interval(4.2, 4.2)


def test_ratio_ci_brackets_the_speedup() -> None:
    interval = ratio_ci([2.0, 2.1, 1.9, 2.05], [1.0, 1.05, 0.95, 1.02])
    assert interval.low <= 2.0 <= interval.high
    assert interval.low > 1.5


# -- verdicts and targets --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("interval", "verdict"),
    [
        (Interval(100, 200), Verdict.PASS),
        (Interval(100, 300), Verdict.PASS),
        (Interval(310, 400), Verdict.FAIL),
        (Interval(250, 350), Verdict.INCONCLUSIVE),
    ],
    ids=["below", "touching", "above", "straddling"],
)
def test_judge(interval: Interval, verdict: Verdict) -> None:
    assert judge(interval, 300) is verdict


def test_targets_defaults_without_pyproject(tmp_path: Path) -> None:
    targets = load_targets(tmp_path)
    if targets.origins["single_report_ms"] == "default":  # no pyproject.toml above tmp_path
        assert dict(targets.values) == {
            **TARGETS,
            "auto_vs_best_fixed": 1.10,
            "service_p95_ms": 300.0,
            "service_error_rate": 0.0,
        }


def test_an_error_rate_target_may_be_zero_a_time_may_not(tmp_path: Path) -> None:
    assert parse_override("service_error_rate=0") == ("service_error_rate", 0.0)
    with pytest.raises(ValueError, match="must be a positive number"):
        parse_override("service_p95_ms=0")
    with pytest.raises(ValueError, match=r"must be a number >= 0"):
        parse_override("service_error_rate=-1")
    (tmp_path / "pyproject.toml").write_text("[tool.zerosite.targets]\nservice_error_rate = 0\nservice_p95_ms = 100\n")
    assert dict(load_targets(tmp_path).values)["service_error_rate"] == 0
    (tmp_path / "pyproject.toml").write_text("[tool.zerosite.targets]\nservice_p95_ms = 0\n")
    with pytest.raises(ValueError, match="service_p95_ms must be a positive number"):
        load_targets(tmp_path)


def test_targets_from_pyproject_found_upward_and_overridden(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.zerosite.targets]\nsingle_report_ms = 120\nbatch_100_s = 12.5\n")
    nested = tmp_path / "a" / "b"
    nested.mkdir(parents=True)
    targets = load_targets(nested, ["batch_100_s=9"])
    assert targets["single_report_ms"] == 120
    assert targets["batch_100_s"] == 9
    assert targets["pipeline_ms"] == 500
    assert targets.origins["batch_100_s"] == "--zerosite-target"
    assert targets.origins["single_report_ms"].endswith("pyproject.toml")


@pytest.mark.parametrize("text", ["nonsense=3", "single_report_ms", "single_report_ms=fast", "pipeline_ms=-1"])
def test_bad_override_is_refused_with_a_reason(text: str) -> None:
    with pytest.raises(ValueError, match=r"single_report_ms|pipeline_ms|name=value|number"):
        parse_override(text)


def test_unknown_target_in_pyproject_names_known_ones(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.zerosite.targets]\nsingle_reprot_ms = 1\n")
    with pytest.raises(ValueError, match=r"single_reprot_ms.*known targets: single_report_ms"):
        load_targets(tmp_path)


# -- cells, matrix, interleaving -------------------------------------------------------------


def test_cell_ids_are_readable() -> None:
    assert Cell("batch", "io", "process", 2).id == "strategy=process-workers=2-scenario=io"
    assert Cell("single", "cpu", "thread", 4, "M2").id == "module=M2-strategy=thread-workers=4-scenario=cpu"
    with pytest.raises(ValueError):
        Cell("single", "cpu", "thread", 4)


def test_matrix_always_has_the_baseline_and_marks_unavailable_strategies() -> None:
    planned = build_matrix(
        "pipeline", [("process", None), ("dask", "needs zerosite[dask]")], workers=(2, 4), scenarios=("cpu",)
    )
    assert [p.cell.label for p in planned] == [
        "sequential",
        f"dask{TIMES}2",
        f"dask{TIMES}4",
        f"process{TIMES}2",
        f"process{TIMES}4",
    ]
    assert [p.unavailable for p in planned][1:3] == ["needs zerosite[dask]", "needs zerosite[dask]"]


def test_one_project_at_a_time_levels_take_the_smallest_worker_count_only() -> None:
    from zerosite.benchmarking.matrix import MatrixSettings

    settings = MatrixSettings(workers=(2, 4, 8))
    assert settings.workers_for("single") == settings.workers_for("pipeline") == (2,)
    assert settings.workers_for("batch") == (2, 4, 8)


def test_rotation_puts_each_cell_in_each_position() -> None:
    cells = [Cell("pipeline", "cpu", s, 1) for s in ("a", "b", "c")]
    firsts = {rotation(cells, r)[0].strategy for r in range(3)}
    assert firsts == {"a", "b", "c"}


def _constant_start(calls: list[str], seconds: dict[str, list[float]] | None = None):  # type: ignore[no-untyped-def]
    """Round functions that log their cell and return the next of its ``seconds`` (cycled), or 10 ms."""
    import contextlib
    import itertools

    def start(cell: Cell):  # type: ignore[no-untyped-def]
        durations = itertools.cycle((seconds or {}).get(cell.strategy, [0.01]))

        @contextlib.contextmanager
        def ctx():  # type: ignore[no-untyped-def]
            yield lambda: calls.append(cell.strategy) or RoundOutcome(next(durations), 1, 1)

        return ctx()

    return start


FIXED_4 = StoppingRule(min_rounds=4, max_rounds=4, budget_s=math.inf, min_sample_s=0)


def test_measure_interleaved_alternates_cells_and_measures_memory_apart() -> None:
    calls: list[str] = []
    cells = [Cell("batch", "cpu", s, 1) for s in ("sequential", "process")]
    results = measure_interleaved(cells, _constant_start(calls), FIXED_4, warmup_rounds=1, memory=lambda c: (1024,))
    assert calls[2:] == [
        "sequential", "process", "process", "sequential", "sequential", "process", "process", "sequential"
    ]  # fmt: skip
    assert all(len(r.rounds) == 4 and r.memory_bytes == (1024,) for r in results.values())
    assert all(r.starts == [0, 0, 0, 0] for r in results.values())


def test_a_pooled_cells_rounds_are_spread_over_four_starts_of_its_workers() -> None:
    """The speed of one project handed to a pool depends on the pool it got: its rounds come from four pools
    started one after another, three rounds each, each start warmed up before it is timed; then it stops."""
    import contextlib

    log: list[str] = []

    def start(cell: Cell):  # type: ignore[no-untyped-def]
        @contextlib.contextmanager
        def ctx():  # type: ignore[no-untyped-def]
            log.append(f"start {cell.strategy}")
            yield lambda: log.append(cell.strategy) or RoundOutcome(0.01, 1, 1)
            log.append(f"stop {cell.strategy}")

        return ctx()

    rule = StoppingRule(min_rounds=6, max_rounds=40, budget_s=math.inf, min_sample_s=0)
    cells = [Cell("single", "cpu", s, w, "M3") for s, w in (("sequential", 1), ("thread", 2), ("process", 2))]
    results = measure_interleaved(cells, start, rule, warmup_rounds=1)
    thread = results[cells[1]]
    assert thread.starts == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3] and thread.stopped == "starts"
    assert len(results[cells[0]].rounds) == 12  # the baseline runs while its group does
    assert log.count("start thread") == log.count("stop thread") == 4
    assert log.count("start process") == 4 and log.count("start sequential") == 1
    # each start stopped before the next, and its first round untimed (a warm-up)
    second = log.index("start thread", log.index("start thread") + 1)
    assert log[second - 1] == "stop thread" and log[second + 1] == "thread"
    assert log.count("thread") == 1 + 12 + 3
    assert [c.worker_starts for c in cells] == [1, 4, 4]
    assert Cell("batch", "cpu", "thread", 2).worker_starts == 1  # a batch's rounds hand it many projects
    assert Cell("pipeline", "cpu", "bare", 1).worker_starts == 1
    figures = analyse(results.values(), lambda cell: TARGETS).cells
    assert [f.as_dict()["starts"] for f in figures if f.cell.strategy == "thread"] == [
        [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    ]


def test_the_canary_is_timed_once_per_pass_and_noted_in_each_cell_of_it() -> None:
    calls: list[str] = []
    speeds = iter(range(1, 100))

    def canary() -> float:
        calls.append("canary")
        return float(next(speeds))

    cells = [Cell("pipeline", "cpu", s, 1) for s in ("sequential", "thread")]
    results = measure_interleaved(cells, _constant_start(calls), FIXED_4, warmup_rounds=0, canary=canary)
    assert calls[:3] == ["sequential", "thread", "canary"] and calls.count("canary") == 4
    assert all(r.canary_s == [1.0, 2.0, 3.0, 4.0] for r in results.values())
    figures = analyse(results.values(), lambda cell: TARGETS).cells
    assert all(f.as_dict()["canary_s"] == [1.0, 2.0, 3.0, 4.0] for f in figures)


def test_a_speedup_over_several_starts_holds_the_spread_between_them() -> None:
    """Within a run too: which strategy wins (or ties) must not hang on the pools one run got."""
    from zerosite.benchmarking.cells import CellResult
    from zerosite.benchmarking.stats import ratio_ci

    def result(cell: Cell, samples: list[float], starts: list[int]) -> CellResult:
        return CellResult(cell, rounds=[RoundOutcome(s, 1, 1) for s in samples], starts=starts)

    sequential = Cell("single", "cpu", "sequential", 1, "M3")
    thread = Cell("single", "cpu", "thread", 2, "M3")
    steady = [0.0004 * (1 + 0.01 * (i % 3)) for i in range(8)]
    pools = [ms / 1000 * (1 + 0.01 * i) for ms in (0.53, 0.71, 0.54, 0.60) for i in range(2)]
    figures = analyse(
        [result(sequential, steady, [0] * 8), result(thread, pools, [0, 0, 1, 1, 2, 2, 3, 3])], lambda cell: TARGETS
    )
    (pooled,) = (f for f in figures.cells if f.cell == thread)
    flat = ratio_ci(steady, pools)
    assert pooled.speedup_ci is not None
    assert pooled.speedup_ci.low < flat.low and pooled.speedup_ci.high > flat.high


def test_stopwatch_accounts_each_phase_of_a_group() -> None:
    import time

    def slow_start(cell: Cell):  # type: ignore[no-untyped-def]
        import contextlib

        @contextlib.contextmanager
        def ctx():  # type: ignore[no-untyped-def]
            time.sleep(0.05)  # starting workers
            yield lambda: RoundOutcome(0.01, 1, 1)
            time.sleep(0.05)  # stopping them

        return ctx()

    watch = Stopwatch()
    cells = [Cell("pipeline", "cpu", "sequential", 1)]
    with watch.within("pipeline"):
        measure_interleaved(
            cells, slow_start, FIXED_4, warmup_rounds=1, memory=lambda c: time.sleep(0.03) or (1,), stopwatch=watch
        )
    with watch("outputs"):  # outside any level
        pass
    phases = watch.as_dict()
    assert list(phases) == [
        "start and stop workers",
        "calibrate and warm up",
        "timed rounds",
        "memory probes",
        "outputs",
    ]
    assert watch.levels["pipeline"] == pytest.approx(sum(watch.seconds.values()) - watch.seconds["outputs"])
    assert watch.summary().endswith(f"; by level: pipeline {watch.levels['pipeline']:.1f} s")
    assert phases["start and stop workers"] >= 0.1
    assert phases["memory probes"] >= 0.03
    assert watch.summary().startswith(f"{sum(watch.seconds.values()):.1f} s: ")
    assert watch.summary().index("start and stop workers") < watch.summary().index("memory probes")  # largest first


def test_stopping_rule_stops_a_steady_cell_at_its_minimum_and_a_noisy_one_at_its_budget() -> None:
    calls: list[str] = []
    steady = [0.010, 0.0101, 0.0099]
    noisy = [0.010, 0.020, 0.005, 0.030, 0.008]
    cells = [Cell("batch", "cpu", s, 1) for s in ("sequential", "noisy")]
    rule = StoppingRule(precision=0.05, min_rounds=6, max_rounds=200, budget_s=0.5, min_sample_s=0)
    results = measure_interleaved(
        cells, _constant_start(calls, {"sequential": steady, "noisy": noisy}), rule, warmup_rounds=0
    )
    seq, other = results[cells[0]], results[cells[1]]
    assert other.stopped == "budget" and sum(other.wall_s) >= 0.5
    assert seq.stopped == "precision"
    assert len(seq.rounds) == len(other.rounds)  # the baseline runs as long as any cell of its group


def test_stopping_rule_ends_a_precise_group_early() -> None:
    calls: list[str] = []
    cells = [Cell("batch", "cpu", s, 1) for s in ("sequential", "process")]  # one start of its workers: see below
    rule = StoppingRule(precision=0.05, min_rounds=6, max_rounds=200, budget_s=100, min_sample_s=0)
    results = measure_interleaved(cells, _constant_start(calls), rule, warmup_rounds=0)
    assert [len(r.rounds) for r in results.values()] == [6, 6]
    assert {r.stopped for r in results.values()} == {"precision"}


def test_a_cell_is_not_precise_before_its_interval_has_the_asked_confidence() -> None:
    # Four identical rounds have a range of zero width, but a range of four samples holds the median only 87.5 % of
    # the time: at 95 % the group is precise from its sixth round, whatever the rule's minimum.
    calls: list[str] = []
    cells = [Cell("batch", "cpu", s, 1) for s in ("sequential", "process")]
    rule = StoppingRule(precision=0.05, min_rounds=4, max_rounds=200, budget_s=100, min_sample_s=0)
    results = measure_interleaved(cells, _constant_start(calls), rule, warmup_rounds=0)
    assert [len(r.rounds) for r in results.values()] == [6, 6]
    assert {r.stopped for r in results.values()} == {"precision"}
    loose = replace(rule, confidence=0.9)  # 1 - 2 / 2**5 = 0.9375: five rounds are enough at 90 %
    results = measure_interleaved(cells, _constant_start(calls), loose, warmup_rounds=0)
    assert [len(r.rounds) for r in results.values()] == [5, 5]
    assert [median_interval_samples(c) for c in (0.5, 0.9, 0.95, 0.99)] == [2, 5, 6, 8]
    assert precision_of([1.0] * 5) == math.inf and precision_of([1.0] * 6) == 0.0


def test_calibration_repeats_short_work_until_a_sample_lasts_long_enough(monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    from zerosite.benchmarking import harness

    now = [0.0]  # a clock the work advances by exactly 1 ms a call: the machine's load cannot change the answer
    monkeypatch.setattr(harness, "time", SimpleNamespace(perf_counter=lambda: now[0]))

    def work() -> RoundOutcome:
        now[0] += 0.001
        return RoundOutcome(0.001, 1, 1)

    assert calibrate(work, 0.02) == 20
    assert calibrate(work, 0) == 1
    assert calibrate(work, 0.02, period=3) == 21  # whole periods: every sample covers the same inputs
    assert calibrate(work, 10.0, max_loops=100) == 100


def test_calibrated_samples_are_reported_per_iteration() -> None:
    cell = Cell("pipeline", "cpu", "sequential", 1)
    outcome = RoundOutcome(0.01, 1, 5).plus(RoundOutcome(0.03, 1, 5))
    assert outcome.iterations == 2 and outcome.per_iteration_s == pytest.approx(0.02)
    result = CellResult(cell, [outcome])
    figures = analyse([result], lambda c: TARGETS).cells[0]
    assert figures.samples == pytest.approx((20.0,))  # ms per iteration


def test_median_interval_is_the_order_statistics_of_the_binomial_table() -> None:
    assert median_interval(list(range(5))) == Interval(0, 4)  # too few for 95 %: [min, max]
    assert median_interval(list(range(9))) == Interval(1, 7)
    assert median_interval(list(range(20))) == Interval(5, 14)
    assert median_interval(list(range(100))) == Interval(39, 60)


def test_replay_clock_gives_pytest_benchmark_the_measured_durations() -> None:
    clock = ReplayClock()
    assert clock.load([0.5, 0.25]) == 2
    durations = []
    for _ in range(2):
        start = clock()
        clock.advance()
        durations.append(clock() - start)
    assert durations == [0.5, 0.25]


# -- analysis, charts, page ------------------------------------------------------------------


def _result(cell: Cell, seconds: list[float], peak_bytes: int = 2_000_000) -> CellResult:
    stages = {"fetch": 1_000_000, "compute": 5_000_000, "render": 3_000_000, "write": 500_000}
    rounds = [RoundOutcome(s, 1 if cell.level != "batch" else 20, 5, stages, (peak_bytes,) * 5) for s in seconds]
    return CellResult(cell, rounds)


def _stub_results() -> list[CellResult]:
    results = []
    for level in ("single", "batch"):
        module = "M2" if level == "single" else None
        scale = 0.1 if level == "single" else 1.0
        for strategy, workers, factor in [
            ("sequential", 1, 1.0),
            ("thread", 2, 1.15),
            ("process", 2, 0.625),
            ("bare", 1, 0.95),
        ]:
            times = [scale * factor * (1 + 0.01 * i) for i in range(5)]
            results.append(_result(Cell(level, "cpu", strategy, workers, module), times))
    return results


def test_analysis_derives_speedup_efficiency_karp_flatt_and_overhead() -> None:
    analysis = analyse(_stub_results(), lambda cell: TARGETS)
    by_id = analysis.by_id()
    process = by_id["batch/strategy=process-workers=2-scenario=cpu"]
    assert process.speedup == pytest.approx(1.6)
    assert process.efficiency == pytest.approx(0.8)
    assert process.karp_flatt == pytest.approx(0.25)
    assert process.time.median == pytest.approx(0.625 * 1.02 * 100 / 20)  # seconds per 100 projects
    sequential = by_id["batch/strategy=sequential-workers=1-scenario=cpu"]
    assert sequential.overhead == pytest.approx(1 / 0.95 - 1)
    assert sequential.stage_ms_per_report == pytest.approx({"fetch": 0.2, "compute": 1.0, "render": 0.6, "write": 0.1})
    assert by_id["single/module=M2-strategy=thread-workers=2-scenario=cpu"].speedup < 1  # threads slower: shown so


def test_reports_a_second_is_the_median_rounds_as_the_median_column_is() -> None:
    """Benchmark audit F8: it was every round's reports over every round's time, a mean (slow rounds included),
    beside a median it did not match (0.513 ms shown beside 1,298 reports/s)."""
    cell = Cell("single", "cpu", "sequential", 1, "M2")
    (figures,) = analyse([_result(cell, [0.001, 0.001, 0.001, 0.001, 0.010])], lambda cell: TARGETS).by_id().values()
    assert figures.time.median == pytest.approx(0.001 * 1000)  # ms a report
    assert figures.reports_per_s == pytest.approx(5 / 0.001)  # 5 reports a round, in the median round's time


def test_single_report_over_target_fails_naming_module_and_strategy() -> None:
    analysis = analyse(_stub_results(), lambda cell: {**TARGETS, "single_report_ms": 50})
    failures = [j.message() for j in analysis.failures]
    assert any("single report M2, strategy sequential" in m and "single_report_ms = 50 ms" in m for m in failures)
    assert all("batch" not in m for m in failures)


def test_a_clear_winner_is_named_with_its_interval_in_plain_words() -> None:
    analysis = analyse(_stub_results(), lambda cell: TARGETS)
    batch = analysis.winners()["batch"]["cpu"]
    assert batch["winner"] == f"process{TIMES}2" and batch["tied"] == []
    assert batch["speedup"] == pytest.approx(1.6)
    low, high = batch["interval"]
    assert low <= 1.6 <= high
    expected = f"Batch — cpu: process {TIMES}2 was 1.60{TIMES} as fast as sequential ["
    assert analysis.sentences["batch"].startswith(expected)


def test_sequential_wins_when_every_alternative_is_slower_beyond_the_noise() -> None:
    results = [r for r in _stub_results() if r.cell.level == "batch" and r.cell.strategy in ("sequential", "thread")]
    standing = analyse(results, lambda cell: TARGETS).standings[0]
    assert standing.winner is not None and standing.winner.label == "sequential"
    assert "sequential was fastest" in standing.sentence() and f"thread {TIMES}2" in standing.sentence()


def test_cgroup_quota_of_this_process_cgroup_v2_or_v1(tmp_path: Path) -> None:
    root, own = tmp_path / "cgroup", tmp_path / "self-cgroup"
    own.write_text("0::/user.slice/run-1.scope\n")
    (root / "user.slice/run-1.scope").mkdir(parents=True)
    (root / "cpu.max").write_text("max 100000\n")  # the root: no quota; this process's own cgroup has one
    (root / "user.slice/run-1.scope/cpu.max").write_text("150000 100000\n")
    assert cgroup_cpu_quota(root, own) == 1.5
    (root / "user.slice/run-1.scope/cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_quota(root, own) is None
    # cgroup v1: the cpu controller's own folder (a root 'zerosite system' read as "no quota")
    v1, own_v1 = tmp_path / "v1", tmp_path / "self-cgroup-v1"
    own_v1.write_text("4:cpu,cpuacct:/zs_audit\n0::/\n")
    (v1 / "cpu/zs_audit").mkdir(parents=True)
    (v1 / "cpu/zs_audit/cpu.cfs_quota_us").write_text("100000\n")
    (v1 / "cpu/zs_audit/cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_cpu_quota(v1, own_v1) == 1.0
    (v1 / "cpu/zs_audit/cpu.cfs_quota_us").write_text("-1\n")
    assert cgroup_cpu_quota(v1, own_v1) is None
    assert cgroup_cpu_quota(tmp_path / "absent", tmp_path / "absent-too") is None
    assert not math.isnan(describe_machine().cpu_count or 0)


# -- the pytest plugin, end to end on the real engine ----------------------------------------

PLUGIN_ARGS = (
    []
    if any(ep.value == "zerosite.benchmarking.plugin" for ep in entry_points(group="pytest11"))
    else ["-p", "zerosite.benchmarking.plugin"]
)


def _run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    # no:hypothesispytest: hypothesis's plugin spends seconds importing itself at the end of each session
    return pytester.runpytest_subprocess(
        *PLUGIN_ARGS, "-p", "no:cacheprovider", "-p", "no:hypothesispytest", "--zerosite-rounds", "3", *args
    )


ONE_CELL = """
    import pytest

    @pytest.mark.zerosite_matrix("single", modules=["M2"], scenarios=["cpu"], strategies=["sequential"])
    def test_one(zerosite_cell, zerosite_bench):
        zerosite_bench(zerosite_cell)
"""


def test_an_interrupted_run_leaves_the_last_whole_runs_outputs_and_a_whole_run_only_its_own(
    pytester: pytest.Pytester,
) -> None:
    """Benchmark audit: a Ctrl-C wrote a page and JSON of the cells measured so far over the last whole run's,
    saying nothing of it (a CI job cancelled on main left a partial base JSON, which compare then took); the outputs
    were written one after another, so a stop while profiling left a new JSON beside the old page; and charts of
    earlier runs stayed in charts/ beside this run's."""
    pytester.makepyfile(test_bench=ONE_CELL)
    reports = pytester.path / "reports"
    (reports / "charts").mkdir(parents=True)
    (reports / "charts" / "from-an-earlier-run.png").write_bytes(b"old")
    assert _run(pytester).ret == 0
    whole = {name: (reports / name).read_bytes() for name in ("index.html", "benchmark.json")}
    assert not (reports / "charts" / "from-an-earlier-run.png").exists()
    assert (reports / "charts" / "single-strategies.png").exists()
    assert [p.name for p in reports.iterdir() if p.name.startswith(".staging")] == []

    pytester.makepyfile(test_stop="def test_stop():\n    raise KeyboardInterrupt\n")  # after the cell: a Ctrl-C
    result = _run(pytester, "test_bench.py", "test_stop.py")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(
        ["*interrupted: no verdict, nothing written; * keeps the last whole run's page and JSON"]
    )
    assert {name: (reports / name).read_bytes() for name in whole} == whole


def test_an_unreadable_precision_is_a_usage_error_not_an_internal_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_nothing="def test_nothing():\n    pass\n")
    result = _run(pytester, "--zerosite-precision", "abc")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--zerosite-precision: threshold 'abc' is not a number*"])
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()


@pytest.mark.parametrize(
    ("option", "said"),
    [
        (["--zerosite-batch-projects", "0"], "--zerosite-batch-projects must be >= 1, got 0"),
        (["--zerosite-workers", "0"], "--zerosite-workers takes counts of at least 1 such as 2,4,8; got '0'"),
        (["--zerosite-latency-ms=-5"], "--zerosite-latency-ms must be a number of milliseconds >= 0, got -5.0"),
        (["--zerosite-latency-ms", "nan"], "--zerosite-latency-ms must be a number of milliseconds >= 0, got nan"),
        (["--zerosite-budget", "nan"], "--zerosite-budget must be > 0 seconds, got nan"),
        (["--zerosite-target", "single_report_ms=nan"], "--zerosite-target single_report_ms: must be *, got nan"),
    ],
)
def test_an_option_that_makes_no_sense_is_a_usage_error(
    pytester: pytest.Pytester, option: list[str], said: str
) -> None:
    """Benchmark audit F7: a batch of no project measured nothing and passed; workers 0 was a 30-line traceback;
    a negative or NaN latency, budget or target were taken."""
    pytester.makepyfile(test_nothing="def test_nothing():\n    pass\n")
    result = _run(pytester, *option)
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str() + result.stderr.str()
    result.stderr.fnmatch_lines([f"*{said}*"])


def test_plugin_reports_and_fails_the_session_on_a_missed_target(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_bench="""
        import pytest

        @pytest.mark.zerosite_target(single_report_ms=100000, memory_per_report_mb=1000)
        @pytest.mark.zerosite_matrix(
            "single", modules=["M2"], scenarios=["cpu"], strategies=["sequential", "thread"], workers=[2]
        )
        def test_loose(zerosite_cell, zerosite_bench):
            zerosite_bench(zerosite_cell)

        @pytest.mark.zerosite_target(pipeline_ms=0.001)
        @pytest.mark.zerosite_matrix("pipeline", scenarios=["cpu"], strategies=["sequential"])
        def test_strict(zerosite_cell, zerosite_bench):
            zerosite_bench(zerosite_cell)
        """
    )
    result = _run(pytester)
    result.assert_outcomes(passed=3)
    assert result.ret == 1
    result.stdout.fnmatch_lines(
        [
            "*ZeroSite verdicts*",
            "5 PASS, 1 FAIL, 0 INCONCLUSIVE",
            "single / cpu: *",
            "FAIL: pipeline, strategy sequential, scenario cpu: median time of every module of one project*"
            " target pipeline_ms = 0.001 ms",
            "*ZeroSite performance gate failed: 1 target(s) missed*",
        ]
    )
    reports = pytester.path / "reports"
    data = json.loads((reports / "benchmark.json").read_text())
    names = {b["name"]: b for b in data["benchmarks"]}
    thread = names["test_loose[module=M2-strategy=thread-workers=2-scenario=cpu]"]
    assert thread["extra_info"]["strategy"] == "thread" and thread["extra_info"]["speedup"] > 0
    assert thread["extra_info"]["verdicts"] == {"single_report_ms": "PASS", "memory_per_report_mb": "PASS"}
    assert thread["options"]["timer"] == "zerosite.interleaved_rounds"
    assert len(thread["stats"]["data"]) == 3
    assert data["zerosite"]["verdict_counts"] == {"PASS": 5, "FAIL": 1, "INCONCLUSIVE": 0}
    page = (reports / "index.html").read_text()
    assert "target pipeline_ms = 0.001 ms" in page
    assert (reports / "charts" / "single-strategies.png").stat().st_size > 0


def test_a_slow_plugin_module_fails_the_single_report_gate_by_name(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    plugins = pytester.mkdir("slow_plugins")
    (plugins / "slow_module.py").write_text(
        textwrap.dedent(
            """
            import time
            from pathlib import Path
            from zerosite import ReportModule, hookimpl

            def compute(project, deps):
                time.sleep(0.08)  # over the 50 ms target set below: every report misses it
                return {"id": project.id}

            MODULE = ReportModule(name="SLOW", title="느린 모듈", compute=compute, template="slow.html.j2")

            @hookimpl
            def zerosite_register_modules(register):
                register(MODULE)

            @hookimpl
            def zerosite_template_dirs():
                return [Path(__file__).parent]
            """
        )
    )
    (plugins / "slow.html.j2").write_text("<p>{{ result.id }}</p>")
    monkeypatch.setenv("ZEROSITE_PLUGINS_DIR", str(plugins))
    pytester.makepyfile(
        test_bench="""
        import pytest

        @pytest.mark.zerosite_matrix("single", modules=["SLOW"], scenarios=["cpu"], strategies=["sequential"])
        def test_single(zerosite_cell, zerosite_bench):
            zerosite_bench(zerosite_cell)
        """
    )
    result = _run(pytester, "--zerosite-rounds", "2", "--zerosite-target", "single_report_ms=50")
    assert result.ret == 1
    result.stdout.fnmatch_lines(
        ["FAIL: single report SLOW, strategy sequential, scenario cpu: *target single_report_ms = 50 ms"]
    )


def test_overlapping_intervals_are_a_tie_not_a_winner() -> None:
    results = [
        _result(Cell("batch", "io", "sequential", 1, None), [1.00, 1.04, 0.97, 1.02, 0.99, 1.01]),
        _result(Cell("batch", "io", "thread", 2, None), [0.98, 1.03, 0.96, 1.01, 1.00, 0.99]),
        _result(Cell("batch", "io", "process", 2, None), [0.60, 0.61, 0.59, 0.60, 0.62, 0.60]),
        _result(Cell("batch", "io", "async", 2, None), [0.61, 0.60, 0.62, 0.59, 0.60, 0.61]),
    ]
    analysis = analyse(results, lambda cell: TARGETS)
    io = analysis.winners()["batch"]["io"]
    assert io["winner"] is None
    assert sorted(io["tied"]) == [f"async{TIMES}2", f"process{TIMES}2"]
    assert "a tie" in analysis.sentences["batch"]
    only_threads = analyse(results[:2], lambda cell: TARGETS).winners()["batch"]["io"]
    assert only_threads["winner"] is None and sorted(only_threads["tied"]) == ["sequential", f"thread{TIMES}2"]


def _two(first: list[float], second: list[float], scenario: str = "io") -> list[CellResult]:
    return [
        _result(Cell("batch", scenario, "sequential", 1, None), first),
        _result(Cell("batch", scenario, "thread", 2, None), second),
    ]


def test_a_sure_lead_within_the_margin_is_a_tie_not_a_winner() -> None:
    # Thread x2 at 0.98x sequential, beyond the noise: a full run called it a win for sequential, the next run of
    # the same code a tie. A lead this small is a tie in every run.
    results = _two([1.00, 1.001, 1.002, 0.999, 1.0, 1.001], [1.02, 1.021, 1.019, 1.02, 1.022, 1.018])
    standing = analyse(results, lambda cell: TARGETS).standings[0]
    assert standing.winner is None and [c.label for c in standing.tied] == ["sequential", f"thread{TIMES}2"]
    assert standing.close == () and standing.outcome == "a tie"
    assert standing.sentence().startswith("a tie, within 5% of each other beyond the noise: sequential (1.00")
    winners = analyse(results, lambda cell: TARGETS).winners()["batch"]["io"]
    assert winners["outcome"] == "a tie" and winners["margin"] == 0.05
    assert 1 < winners["ranked"][1]["lead"][0] < winners["ranked"][1]["lead"][1] < 1.05  # type: ignore[index]


def test_a_lead_whose_interval_reaches_past_the_margin_is_too_close_to_call() -> None:
    results = _two([1.00, 1.06, 0.98, 1.09, 1.02, 0.97, 1.05, 1.01], [1.07, 1.12, 1.03, 1.10, 1.06, 1.13, 1.04, 1.09])
    analysis = analyse(results, lambda cell: TARGETS)
    standing = analysis.standings[0]
    assert standing.winner is None and standing.tied == ()
    assert [c.label for c in standing.close] == ["sequential", f"thread{TIMES}2"]
    assert standing.outcome == "too close to call" and "the noise cannot tell" in standing.sentence()
    page = render_page(analysis, load_targets(Path("/nonexistent")), describe_machine())
    assert "too close to call" in page
    assert "by more than 5% beyond the noise" in page and "--zerosite-rounds" in page  # the rule, and its remedy


def test_a_winner_clears_the_margin_with_its_whole_lead_and_says_by_how_much() -> None:
    results = _two([1.00, 1.01, 0.99, 1.00, 1.02, 0.98], [1.30, 1.31, 1.29, 1.30, 1.32, 1.28])
    standing = analyse(results, lambda cell: TARGETS).standings[0]
    assert standing.winner is not None and standing.winner.label == "sequential"
    lead = standing.leads[0]
    assert 1.05 < lead.low <= 1.3 <= lead.high
    assert f"was slower by {lead.low:.2f}{TIMES} to {lead.high:.2f}{TIMES}, beyond the noise and the 5% margin." in (
        standing.sentence()
    )


def test_leads_come_from_the_samples_side_by_side_not_the_speedups_ends() -> None:
    # Each speedup's interval holds sequential's noise too; their ends against each other are wider than the two
    # contenders' own samples compared.
    results = [
        _result(Cell("batch", "cpu", "sequential", 1, None), [1.0, 1.2, 0.8, 1.1, 0.9, 1.05, 0.95]),
        _result(Cell("batch", "cpu", "thread", 2, None), [0.60, 0.61, 0.59, 0.60, 0.62, 0.58, 0.60]),
        _result(Cell("batch", "cpu", "process", 2, None), [0.50, 0.51, 0.49, 0.50, 0.52, 0.48, 0.50]),
    ]
    standing = analyse(results, lambda cell: TARGETS).standings[0]
    best, runner_up = standing.ranked[:2]
    assert best.label == f"process{TIMES}2" and runner_up.label == f"thread{TIMES}2"
    assert end_to_end(best, runner_up).low < 1.05 < standing.leads[0].low
    assert standing.winner == best


@pytest.mark.parametrize(
    ("low", "high", "verdict"),
    [
        (1.06, 1.20, "ahead"),
        (0.80, 0.94, "behind"),
        (0.96, 1.04, "a tie"),
        (1.0 / 1.05, 1.05, "a tie"),  # the margin's ends belong to the tie
        (1.02, 1.08, "too close to call"),
        (0.90, 1.10, "too close to call"),
    ],
)
def test_a_ratio_is_ahead_behind_a_tie_or_too_close_by_its_interval(low: float, high: float, verdict: str) -> None:
    assert call(Interval(low, high)) == verdict


@given(
    ends=st.lists(st.floats(0.5, 2.0, allow_nan=False), min_size=4, max_size=4),
)
def test_two_overlapping_intervals_of_one_lead_are_never_called_ahead_and_a_tie(ends: list[float]) -> None:
    """The point of the margin: two runs of the same code can call a lead ahead in one and a tie in the other only
    where their intervals of it do not overlap."""
    first, second = Interval(*sorted(ends[:2])), Interval(*sorted(ends[2:]))
    if first.overlaps(second):
        assert {call(first), call(second)} not in ({"ahead", "a tie"}, {"behind", "a tie"}, {"ahead", "behind"})


def _auto_batch(auto_times: list[float], workers: int = 4) -> list[CellResult]:
    """A mixed batch where process x 4 is the fastest fixed strategy (1.0), process x 2 next (1.3)."""
    jitter = [1.0, 1.01, 0.99, 1.02, 0.98, 1.0, 1.01, 0.99]
    return [
        _result(Cell("batch", "mixed", "sequential", 1, None), [2.4 * j for j in jitter]),
        _result(Cell("batch", "mixed", "process", 2, None), [1.3 * j for j in jitter]),
        _result(Cell("batch", "mixed", "process", 4, None), [1.0 * j for j in jitter]),
        _result(Cell("batch", "mixed", "async", 4, None), [1.4 * j for j in jitter]),
        _result(
            Cell("batch", "mixed", "auto", workers, None), [t * j for t, j in zip(auto_times, jitter, strict=True)]
        ),
    ]


@pytest.mark.parametrize(("auto_time", "verdict"), [(1.25, Verdict.FAIL), (1.03, Verdict.PASS), (0.97, Verdict.PASS)])
def test_auto_is_judged_against_the_fastest_fixed_strategy_of_as_many_workers(
    auto_time: float, verdict: Verdict
) -> None:
    analysis = analyse(_auto_batch([auto_time] * 8), lambda cell: TARGETS | {"auto_vs_best_fixed": 1.10})
    (check,) = analysis.auto
    assert (check.auto, check.best) == (f"auto{TIMES}4", f"process{TIMES}4")
    assert check.judgement.value == pytest.approx(auto_time, rel=0.02) and check.judgement.verdict is verdict
    assert check.sentence().startswith(f"auto {TIMES}4 took {auto_time:.2f}{TIMES} the time of process {TIMES}4")
    assert check.sentence().endswith(f": {verdict} (at most 1.10{TIMES})")
    auto_cell = analysis.by_id()["batch/strategy=auto-workers=4-scenario=mixed"]
    assert [j.target_name for j in auto_cell.judgements] == [
        "batch_100_s",
        "memory_per_report_mb",
        "auto_vs_best_fixed",
    ]
    assert (check.judgement in analysis.failures) is (verdict is Verdict.FAIL)
    assert analysis.as_dict()["auto_vs_best_fixed"][0]["best"] == f"process{TIMES}4"  # type: ignore[index]


def test_auto_says_what_it_ran_as_where_its_rounds_recorded_it() -> None:
    """A slow auto reads as a wrong choice or as its own cost only where the reader sees what it chose."""
    results = _auto_batch([1.03] * 8)
    auto_result = results[-1]
    auto_result.rounds = [replace(r, ran_as=(f"process{TIMES}4",)) for r in auto_result.rounds]
    auto_result.rounds[5] = replace(auto_result.rounds[5], ran_as=(f"async{TIMES}4",))
    analysis = analyse(results, lambda cell: TARGETS | {"auto_vs_best_fixed": 1.10})
    (check,) = analysis.auto
    assert check.sentence().endswith(
        f"(at most 1.10{TIMES}); it ran as process {TIMES}4 in 7 of 8 batches, as async {TIMES}4 in 1"
    )
    assert analysis.as_dict()["auto_vs_best_fixed"][0]["ran_as"] == {f"process{TIMES}4": 7, f"async{TIMES}4": 1}  # type: ignore[index]
    cell = analysis.by_id()["batch/strategy=auto-workers=4-scenario=mixed"]
    assert cell.as_dict()["ran_as"] == {f"process{TIMES}4": 7, f"async{TIMES}4": 1}
    page = render_page(analysis, load_targets(Path("/nonexistent")), describe_machine()).replace("&#215;", TIMES)
    assert f"; it ran as process {TIMES}4 in 7 of 8 batches, as async {TIMES}4 in 1</li>" in page
    auto_result.rounds = [replace(r, ran_as=(f"process{TIMES}4",)) for r in auto_result.rounds]
    (check,) = analyse(results, lambda cell: TARGETS | {"auto_vs_best_fixed": 1.10}).auto
    assert check.sentence().endswith(f"; it ran as process {TIMES}4 in all 8 batches")


def test_a_ratio_target_is_written_as_the_sentences_write_a_ratio() -> None:
    """The targets table and the badges said "1.1 x" (a space, then the sign) where every sentence says "1.10x"."""
    analysis = analyse(_auto_batch([1.03] * 8), lambda cell: TARGETS | {"auto_vs_best_fixed": 1.10})
    (check,) = analysis.auto
    assert check.judgement.bound() == f"1.1{TIMES}" and check.judgement.message().endswith(f"= 1.1{TIMES}")
    assert f"(95% CI {check.judgement.interval.low:.4g}-{check.judgement.interval.high:.4g}{TIMES})" in (
        check.judgement.message()
    )
    page = render_page(analysis, load_targets(Path("/nonexistent")), describe_machine()).replace("&#215;", TIMES)
    assert f'<td class="n">1.1{TIMES}</td>' in page and f"PASS vs best \u2264 1.1{TIMES}</span>" in page
    assert '<td class="n">300 ms</td>' in page and "1.1 " + TIMES not in page


def test_auto_with_fewer_workers_is_held_to_the_fixed_strategies_it_could_have_run() -> None:
    analysis = analyse(_auto_batch([1.25] * 8, workers=2), lambda cell: TARGETS | {"auto_vs_best_fixed": 1.10})
    (check,) = analysis.auto
    assert check.best == f"process{TIMES}2" and check.judgement.verdict is Verdict.PASS  # 1.25 / 1.3
    page = render_page(analysis, load_targets(Path("/nonexistent")), describe_machine())
    assert "auto against the fastest fixed strategy" in page.replace("<code>", "").replace("</code>", "")
    assert check.measured() in page.replace("&#215;", TIMES) and check.bound() in page.replace("&#215;", TIMES)


def test_the_page_says_how_many_projects_a_batch_held_where_our_lead_over_reference_code_is_read() -> None:
    # What each of our batches does once weighs more in a small batch than in the whole commands of 1,000 projects
    # that bench/contenders.py times: the page names the batch size beside the leads, and in its header.
    medians = {("sequential", 1): 2.0, ("process", 2): 1.0, ("pool", 2): 0.9}
    analysis = analyse(
        [_result(Cell("batch", "cpu", s, w, None), [t] * 8) for (s, w), t in medians.items()], lambda c: TARGETS
    )
    assert [lead.reference for lead in analysis.leads] == [f"pool{TIMES}2"]
    page = render_page(analysis, load_targets(Path("/nonexistent")), describe_machine(), batch_projects=40)
    text = re.sub(r"<[^>]+>", "", page)
    assert "no resume; batches of 40 projects, in which what each of our batches does once (its plan, opening" in text
    assert "bench/contenders.py times batches of 1,000 as whole commands" in text
    assert "; batches of 40 projects written to " in text
    unsized = re.sub(r"<[^>]+>", "", render_page(analysis, load_targets(Path("/nonexistent")), describe_machine()))
    assert "(the same reports, files only: no index, no atomic write, no resume):" in unsized
    assert "batches of" not in unsized


def test_auto_is_not_judged_where_its_target_does_not_apply() -> None:
    assert analyse(_auto_batch([1.25] * 8), lambda cell: TARGETS).auto == ()


def test_karp_flatt_is_shown_only_where_it_means_something() -> None:
    results = [
        _result(Cell("batch", "cpu", "sequential", 1, None), [1.0] * 6),
        _result(Cell("batch", "cpu", "thread", 4, None), [1.2] * 6),  # slower: no serial fraction
        _result(Cell("batch", "cpu", "process", 4, None), [0.55] * 6),  # 4 workers on 2 cores: p = 2
    ]
    by_id = analyse(results, lambda cell: TARGETS, cores=2).by_id()
    assert by_id["batch/strategy=thread-workers=4-scenario=cpu"].karp_flatt is None
    assert by_id["batch/strategy=process-workers=4-scenario=cpu"].karp_flatt == pytest.approx(karp_flatt(1 / 0.55, 2))


class _BusyLoad:
    busy = True

    def as_dict(self) -> dict[str, object]:
        return {"busy": True}


def test_a_level_measured_mostly_on_a_busy_machine_is_not_judged() -> None:
    results = [
        _result(Cell("batch", "cpu", "sequential", 1, None), [1.0, 1.01, 0.99, 1.0, 1.02, 0.98]),
        _result(Cell("batch", "cpu", "process", 2, None), [0.5, 0.51, 0.49, 0.5, 0.52, 0.48]),
    ]
    for result in results:
        result.rounds = [replace(r, load=_BusyLoad()) for r in result.rounds]
    analysis = analyse(results, lambda cell: TARGETS)
    standing = analysis.standings[0]
    assert standing.unjudged and standing.winner is None and standing.tied == ()
    page = render_page(analysis, load_targets(Path("/nonexistent")), describe_machine())
    assert "not judged (machine busy)" in page
    assert standing.sentence().startswith(f"not judged: 2 of 2 cells were measured while {BUSY_MACHINE}")
    assert standing.as_dict()["winner"] is None and standing.as_dict()["unjudged"] is True


@pytest.mark.parametrize(
    ("ratio", "low", "high", "unjudged", "ending"),
    [
        (1.01, 0.84, 1.21, False, f"[0.84{TIMES}, 1.21{TIMES}]: too close to call"),
        (0.99, 0.89, 1.15, False, f"[0.89{TIMES}, 1.15{TIMES}]: too close to call"),  # no loss either
        (1.01, 0.97, 1.04, False, f"[0.97{TIMES}, 1.04{TIMES}] within 5% either way: a tie"),
        (1.46, 1.18, 1.69, False, f"[1.18{TIMES}, 1.69{TIMES}] beyond the noise and the 5% margin"),
        (1.08, 1.03, 1.12, False, f"[1.03{TIMES}, 1.12{TIMES}]: too close to call"),  # sure, but maybe under 5 %
        (0.80, 0.70, 0.90, False, f"[0.70{TIMES}, 0.90{TIMES}] beyond the noise and the 5% margin"),
        (1.46, 1.18, 1.69, True, f"[1.18{TIMES}, 1.69{TIMES}]: not judged (machine busy)"),
    ],
)
def test_every_comparison_with_reference_code_ends_with_its_verdict(
    ratio: float, low: float, high: float, unjudged: bool, ending: str
) -> None:
    lead = Lead("batch", "cpu", f"auto{TIMES}2", f"joblib{TIMES}2", ratio, Interval(low, high), unjudged)
    assert lead.sentence() == f"auto {TIMES}2 was {ratio:.2f}{TIMES} as fast as joblib {TIMES}2 {ending}"


class _Options:
    """Records what ``pytest_addoption`` adds: each option's keyword arguments by its name."""

    def __init__(self) -> None:
        self.added: dict[str, dict[str, object]] = {}

    def getgroup(self, *args: object) -> _Options:
        return self

    def addoption(self, name: str, **kwargs: object) -> None:
        self.added[name] = kwargs


def test_the_options_help_gives_the_defaults_the_matrix_uses() -> None:
    options = _Options()
    plugin.pytest_addoption(options)  # type: ignore[arg-type]
    helps = {name: str(kwargs.get("help", "")) for name, kwargs in options.added.items()}
    full, quick = MatrixSettings(), MatrixSettings.quick()
    assert (full.batch_projects, quick.batch_projects) == (40, 16)  # README: "batch (40 projects, ..."
    assert helps["--zerosite-batch-projects"].endswith("(default 40, quick 16)")
    assert "(default 2,4; quick 2)" in helps["--zerosite-workers"] and (full.workers, quick.workers) == ((2, 4), (2,))
    assert quick.scenarios_for("single") == ("cpu",)  # the quick run measures single reports in cpu only, and says so
    assert "every strategy, scenario and level" not in helps["--zerosite-quick"]
    assert "a batch of 16 projects" in helps["--zerosite-quick"]
    assert "in every scenario but the single level (cpu only)" in helps["--zerosite-quick"]
    assert "the service level with fewer servers and shorter windows" in helps["--zerosite-quick"]
    full_service, quick_service = LoadSettings(), LoadSettings.quick()
    assert len(quick_service.strategies) < len(full_service.strategies)
    assert quick_service.window_s < full_service.window_s
