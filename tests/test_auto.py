"""The auto strategy: its choice from measured figures (deterministic), its probe, its delegation, its say."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import files_of, projects
from hypothesis import given
from hypothesis import strategies as st

import zerosite.strategies_auto as auto
from zerosite.cli import main
from zerosite.engine import BatchOptions, generate, plan_batch
from zerosite.project import project_to_dict
from zerosite.strategies_auto import AutoChoice, AutoCosts, AutoFigures, AutoRunner, choose, usable_cores
from zerosite.testing import ProjectServer

CPU = AutoFigures(
    cpu_ms=8.5,
    fetch_ms=0.05,
    wait_ms=0.0,
    blocked_ms=0.0,
    queued_ms=0.0,
    write_ms=1.2,
    parent_ms=0.6,
    projects=500,
    more=True,
    cores=2,
    workers=2,
)
"""A batch like the sample's on a quiet machine: about 8.5 ms of CPU per project (five reports, 1.2 ms of it
writing), embedded data, 2 cores."""
IO = replace(CPU, fetch_ms=20.5, wait_ms=20.0)
"""The same behind a data source that answers in 20 ms."""
QUIET = replace(
    CPU, cpu_ms=3.8, write_ms=0.48, parent_ms=0.07, projects=20, more=False, start_method="forkserver", served=8
)
"""The benchmark's batch (20 projects, a warm runner) on a quiet 2-core machine: the figures of auto's probe in
``bench/auto_vs_fixed.py`` (cpu scenario), where process x 2 was the fastest fixed strategy and thread x 2 took
1.13 x sequential's time."""
QUIET_MIXED = replace(QUIET, cpu_ms=5.1, fetch_ms=6.9, wait_ms=5.6)
"""The same, mixed scenario (5 ms a fetch): async x 2 the fastest, process x 2 1.14 x its time, thread x 2 1.40 x."""
BUSY = replace(QUIET, cpu_ms=4.0, queued_ms=4.2)
"""The same with four CPU-bound processes keeping the two cores busy (load average 3.1 to 3.9): process x 2 the
fastest, async x 2 1.08 x its time, thread x 2 1.17 x, sequential 1.30 x."""


# --- The choice, from figures alone -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("figures", "chosen"),
    [
        (CPU, ("process", 2)),
        (IO, ("async", 2)),
        (replace(CPU, projects=5, more=False), ("sequential", 1)),  # no pool to start; threads slow CPU work down
        (replace(IO, projects=5, more=False), ("thread", 2)),  # waits overlap; no pool to start
        (replace(IO, projects=10, more=False, start_method="forkserver"), ("thread", 2)),
        (replace(IO, projects=40, more=False), ("async", 2)),  # fork starts a pool fast enough
        (replace(CPU, projects=20, more=False, warm=frozenset({"process\N{MULTIPLICATION SIGN}2"})), ("process", 2)),
        (replace(IO, projects=20, more=False, start_method="forkserver"), ("thread", 2)),  # a slow start
        (replace(IO, projects=20, more=False, start_method="forkserver", served=8), ("async", 2)),  # long-lived
        (replace(CPU, projects=20, more=False, start_method="forkserver", served=8), ("process", 2)),
        (replace(CPU, cores=1), ("sequential", 1)),  # one core: nothing to run in parallel
        (replace(CPU, workers=1), ("sequential", 1)),  # --workers 1: no pool of one beats this process
        (replace(CPU, cores=16, workers=8), ("process", 8)),  # the cores, up to --workers
        (replace(CPU, cores=16, workers=64), ("process", 16)),
        (replace(CPU, blocked_ms=20.0), ("process", 2)),  # a module that waits: both pools overlap it, threads queue
        (replace(CPU, blocked_ms=20.0, projects=5, more=False), ("thread", 2)),  # for the GIL; few: no pool to start
        (replace(CPU, projects=0, more=False), ("sequential", 1)),  # the probe was the whole batch
        (QUIET, ("process", 2)),
        (QUIET_MIXED, ("async", 2)),
        (BUSY, ("process", 2)),  # a thread waiting for a core holds the GIL: the others wait too
        (replace(BUSY, cpu_ms=9.5, queued_ms=31.7, fetch_ms=27.9, wait_ms=20.2), ("async", 2)),
        (replace(BUSY, cpu_ms=5.2, queued_ms=4.8, fetch_ms=6.7, wait_ms=5.1), ("async", 2)),  # 1.06 x process's speed
    ],
    ids=[
        "cpu",
        "io",
        "cpu-5",
        "io-5",
        "io-10-forkserver",
        "io-40-fork",
        "cpu-20-warm",
        "io-20-forkserver",
        "io-20-forkserver-reused",
        "cpu-20-forkserver-reused",
        "one-core",
        "one-worker",
        "16-cores-8-workers",
        "16-cores",
        "blocked-module",
        "blocked-module-5",
        "nothing-left",
        "quiet-cpu",
        "quiet-mixed",
        "busy-cpu",
        "busy-io",
        "busy-mixed",
    ],
)
def test_the_choice_follows_the_figures(figures: AutoFigures, chosen: tuple[str, int]) -> None:
    choice = choose(figures)
    assert (choice.strategy, choice.workers) == chosen, choice.estimates_ms
    assert choose(figures) == choice  # deterministic: the same figures, the same choice


@given(
    holding=st.floats(0, 1000, allow_nan=False),
    elsewhere=st.floats(0, 1000, allow_nan=False),
    threads=st.integers(1, 64),
)
def test_threads_taking_turns_at_the_gil_are_never_faster_than_either_bound(
    holding: float, elsewhere: float, threads: int
) -> None:
    each = auto._turns_ms(holding, elsewhere, threads)
    assert each >= max(holding, (holding + elsewhere) / threads) * (1 - 1e-9)  # the GIL busy; no thread waiting
    assert each <= (holding + elsewhere) * (1 + 1e-9)  # and never slower than one thread alone
    assert auto._turns_ms(holding, elsewhere, threads + 1) <= each * (1 + 1e-9)  # nor for one thread more


def test_two_threads_that_hold_the_gil_half_the_time_wait_a_quarter_longer_than_the_bounds() -> None:
    assert auto._turns_ms(4.0, 4.0, 2) == pytest.approx(5.0)  # the bounds: 4.0, the GIL busy throughout
    assert auto._turns_ms(4.0, 4.0, 1) == pytest.approx(8.0)


def test_a_reused_runner_keeps_its_strategy_unless_another_is_clearly_faster() -> None:
    busy_mixed = replace(BUSY, cpu_ms=5.2, queued_ms=4.8, fetch_ms=6.7, wait_ms=5.1)  # async ~6 % ahead of process
    kept = choose(replace(busy_mixed, previous="process\N{MULTIPLICATION SIGN}2"))
    assert kept.label == "process\N{MULTIPLICATION SIGN}2" and "kept from the last batch: async" in kept.line
    kept = choose(replace(CPU, previous="async\N{MULTIPLICATION SIGN}2"))  # process ~5 % ahead of async
    assert kept.strategy == "async" and "kept from the last batch: process" in kept.line
    busy_io = replace(BUSY, cpu_ms=9.5, queued_ms=31.7, fetch_ms=27.9, wait_ms=20.2)  # process ~23 % behind async
    assert choose(replace(busy_io, previous="process\N{MULTIPLICATION SIGN}2")).strategy == "async"
    # Threads queue for the GIL on their way back from each fetch: about 1.5 x async's time, so auto leaves them.
    assert choose(replace(QUIET_MIXED, previous="thread\N{MULTIPLICATION SIGN}2")).strategy == "async"


def test_only_available_strategies_are_chosen() -> None:
    assert choose(IO, available=("sequential", "thread")).label == "thread\N{MULTIPLICATION SIGN}2"
    assert choose(CPU, available=("sequential",)).strategy == "sequential"


def test_a_tie_goes_to_the_simplest() -> None:
    free = AutoCosts(gil_speed=1.0, thread_start_ms=0.0)
    tie = replace(CPU, projects=1, more=False, parent_ms=0.0, write_ms=0.0)  # thread x2, one project: sequential
    choice = choose(tie, costs=free)
    estimates = list(choice.estimates_ms.values())
    assert estimates[0] == estimates[1] and choice.strategy == "sequential"


def test_the_choice_says_which_and_why_in_one_line() -> None:
    choice = choose(CPU, probed=3)
    assert "\n" not in choice.line
    assert choice.line.startswith("auto: process\N{MULTIPLICATION SIGN}2 \N{EM DASH} 8.5 ms CPU per project")
    assert "fetch 0.1 ms (not waiting), 2 cores; 500+ projects to go" in choice.line
    assert "(next: async\N{MULTIPLICATION SIGN}2 ~" in choice.line
    assert "20.0 ms waiting" in choose(IO).line
    data = json.loads(json.dumps(choice.as_dict()))
    assert (data["strategy"], data["workers"], data["probed_projects"]) == ("process", 2, 3)
    assert data["figures"]["cpu_ms"] == 8.5 and data["figures"]["cores"] == 2 and data["figures"]["more"] is True
    assert set(data["estimates_s"]) == {
        "sequential",
        *(f"{s}\N{MULTIPLICATION SIGN}2" for s in ("thread", "process", "async")),
    }
    done = choose(replace(CPU, projects=0, more=False), probed=3)
    assert done.line.endswith("the whole batch (3 projects) was measured")


# --- The cores ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("files", "cores"),
    [
        ({"cpu.max": "150000 100000\n"}, 2),  # 1.5 CPUs: two processes still use more than one
        ({"cpu.max": "100000 100000\n"}, 1),
        ({"cpu.max": "max 100000\n"}, None),
        ({"cpu/cpu.cfs_quota_us": "100000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 1),  # cgroup v1
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
        ({}, None),
    ],
)
def test_usable_cores_follow_affinity_and_the_cgroup_quota(
    tmp_path: Path, files: dict[str, str], cores: int | None
) -> None:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    affinity = usable_cores(tmp_path / "missing")
    assert usable_cores(tmp_path) == min(affinity, cores or affinity)


# --- The runner: probe, then delegate -----------------------------------------------------------------------------


def start_auto(options: BatchOptions) -> AutoRunner:
    plan = plan_batch(options)
    runner = plan.strategy.start(plan.config, plan.strategy_options)
    assert isinstance(runner, AutoRunner)
    return runner


def forced(strategy: str, workers: int, monkeypatch: pytest.MonkeyPatch) -> list[AutoChoice]:
    """Make ``auto`` choose ``strategy`` x ``workers`` whatever it measures; the choices made are listed."""
    made: list[AutoChoice] = []

    def choose_forced(figures: AutoFigures, available: object, costs: AutoCosts, probed: int = 0) -> AutoChoice:
        made.append(AutoChoice(strategy, workers, figures, {strategy: 0.0}, probed))
        return made[-1]

    monkeypatch.setattr(auto, "choose", choose_forced)
    return made


@pytest.mark.parametrize(("strategy", "workers"), [("sequential", 1), ("thread", 2), ("process", 2), ("async", 2)])
def test_auto_writes_the_same_bytes_as_sequential_whatever_it_delegates_to(
    tmp_path: Path, strategy: str, workers: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch = projects(12)
    generate(batch, BatchOptions(out=tmp_path / "sequential"))
    made = forced(strategy, workers, monkeypatch)
    options = BatchOptions(out=tmp_path / "auto", strategy="auto", workers=2)
    with start_auto(options) as runner:
        summary = generate(batch, options, runner=runner)
        assert set(runner.runners) == {("sequential", 1), (strategy, workers)}
    assert (summary.written, summary.failed, summary.skipped) == (60, 0, 0)
    assert files_of(tmp_path / "auto") == files_of(tmp_path / "sequential")
    assert len(made) == 1 and 2 <= made[0].probed <= AutoCosts().probe_projects  # fewer when slow (its budget)
    assert made[0].figures.projects == 12 - made[0].probed


def test_auto_as_it_chooses_writes_the_same_bytes(tmp_path: Path) -> None:
    batch = projects(30)
    generate(batch, BatchOptions(out=tmp_path / "sequential"))
    summary = generate(batch, BatchOptions(out=tmp_path / "auto", strategy="auto", workers=2))
    assert (summary.written, summary.failed) == (150, 0)
    assert files_of(tmp_path / "auto") == files_of(tmp_path / "sequential")


def test_the_probe_projects_are_real_work_made_once(tmp_path: Path) -> None:
    options = BatchOptions(out=tmp_path / "out", strategy="auto", workers=2)
    batch = projects(9)
    with start_auto(options) as runner:
        results = list(runner.run(batch))
    made = [r.project_id for r in results]
    assert runner.choice is not None
    probed = runner.choice.probed
    assert sorted(made) == sorted(p.id for p in batch) and made[:probed] == [p.id for p in batch[:probed]]
    assert all(report.html for result in results for report in result.reports)
    assert 2 <= probed <= AutoCosts().probe_projects and runner.cold is not None and len(runner.samples) == probed - 1


def test_a_small_batch_starts_no_pool(tmp_path: Path) -> None:
    options = BatchOptions(out=tmp_path / "out", strategy="auto", workers=2)
    with start_auto(options) as runner:
        summary = generate(projects(5), options, runner=runner)
        assert set(runner.runners) == {("sequential", 1)}
        assert runner.choice is not None and runner.choice.label == "sequential"
    assert summary.written == 25


def test_a_reused_runner_chooses_per_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    made = forced("thread", 2, monkeypatch)
    options = BatchOptions(out=tmp_path / "out", strategy="auto", workers=2)
    with start_auto(options) as runner:
        assert len(list(runner.run(projects(6)))) == 6
        assert len(list(runner.run(projects(3)))) == 3  # not measured again yet: the figures it has
        assert len(list(runner.run(projects(1)))) == 1  # one project: the sequential runner, no choice
        assert len(list(runner.run([]))) == 0
        runner.unmeasured_ns = 10**12  # as after a long while: one project is measured first
        assert len(list(runner.run(projects(20)))) == 20
        assert runner.unmeasured_ns < 10**12
    first = made[0].probed
    assert [(c.probed, c.figures.projects) for c in made] == [(first, 6 - first), (0, 3), (1, 19)]
    assert made[1].figures.warm == {"sequential", "thread\N{MULTIPLICATION SIGN}2"}
    assert [c.figures.served for c in made] == [0, 6, 10]  # after the first batch: start-ups left out
    assert [c.figures.previous for c in made] == [None, *["thread\N{MULTIPLICATION SIGN}2"] * 2]
    assert runner.runners == {}  # closed


def test_waiting_on_the_source_is_measured(tmp_path: Path) -> None:
    batch = projects(4)
    with ProjectServer({p.id: project_to_dict(p) for p in batch}, latency_s=0.03) as server:
        options = BatchOptions(out=tmp_path / "out", strategy="auto", workers=2, data_url=server.url)
        with start_auto(options) as runner:
            list(runner.run(batch))
    assert runner.choice is not None
    figures = runner.choice.figures
    assert figures.fetch_ms >= 30 and figures.wait_ms >= 25, figures
    assert figures.cpu_ms < figures.fetch_ms + 1000  # CPU time, not the wait


def test_the_embedded_source_does_not_wait(tmp_path: Path) -> None:
    options = BatchOptions(out=tmp_path / "out", strategy="auto", workers=2)
    with start_auto(options) as runner:
        list(runner.run(projects(4)))
    assert runner.choice is not None and runner.choice.figures.wait_ms < 1.0


# --- The command line ---------------------------------------------------------------------------------------------


def test_generate_defaults_to_auto_and_says_why(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["generate", "--sample", "5", "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    said = [line for line in result.stderr.splitlines() if line.startswith("auto: ")]
    assert len(said) == 1 and "ms CPU per project" in said[0] and "core" in said[0], result.stderr
    assert "25 written" in result.stdout and "auto x" in result.stdout


def test_generate_json_carries_the_choice_and_its_figures(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["generate", "--sample", "6", "--out", str(tmp_path / "out"), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["strategy"] == "auto" and data["workers"] == usable_cores()
    choice = data["auto"]
    assert choice["strategy"] in auto.CANDIDATES and choice["line"].startswith("auto: ")
    assert choice["probed_projects"] + choice["figures"]["projects"] == 6
    assert {"cpu_ms", "fetch_ms", "wait_ms", "blocked_ms", "parent_ms", "cores", "workers"} <= set(choice["figures"])
    again = CliRunner().invoke(main, ["generate", "--sample", "6", "--out", str(tmp_path / "out"), "--json"])
    assert json.loads(again.stdout)["auto"] is None  # every project skipped: nothing measured, nothing chosen


def test_workers_bound_auto(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["generate", "--sample", "6", "-w", "1", "--out", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["workers"] == 1 and data["auto"]["figures"]["workers"] == 1


def test_strategies_lists_auto() -> None:
    output = CliRunner().invoke(main, ["strategies"]).output
    assert any(line.split()[:2] == ["auto", "yes"] for line in output.splitlines())
