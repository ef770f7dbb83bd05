"""Profiles: py-spy found beside the interpreter before PATH, the cProfile fallback, and the io/mixed scenarios."""

from __future__ import annotations

import functools
import json
import sys
import urllib.request
import warnings
from pathlib import Path

import pytest
from click.testing import CliRunner

from zerosite.benchmarking import profiling
from zerosite.cli import main
from zerosite.cores import capped_workers


def _fake_program(path: Path, body: str = "exit 0") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return path


@pytest.fixture
def fake_venv(tmp_path: Path) -> Path:
    """``venv/bin/python``: a symlink to the real interpreter, whose own folder has no py-spy."""
    python = tmp_path / "venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.symlink_to(sys.executable)
    return python


def test_py_spy_beside_the_interpreter_wins_over_path(fake_venv: Path, tmp_path: Path) -> None:
    beside = _fake_program(fake_venv.parent / "py-spy")
    on_path = _fake_program(tmp_path / "elsewhere" / "py-spy")
    found, looked = profiling.find_py_spy(str(fake_venv), path=str(on_path.parent))
    assert found == str(beside)  # the venv's folder, not the folder the symlink points into
    assert looked == [str(fake_venv.parent)]


def test_py_spy_on_path_when_not_beside(fake_venv: Path, tmp_path: Path) -> None:
    on_path = _fake_program(tmp_path / "elsewhere" / "py-spy")
    found, looked = profiling.find_py_spy(str(fake_venv), path=str(on_path.parent))
    assert found == str(on_path)
    assert looked == [str(fake_venv.parent), "PATH"]


def test_the_running_interpreter_finds_the_py_spy_pip_put_beside_it() -> None:
    if not (Path(sys.executable).parent / "py-spy").exists():
        pytest.skip("py-spy is not installed beside this interpreter")
    found, _ = profiling.find_py_spy(path="")
    assert found == str(Path(sys.executable).parent / "py-spy")


def test_missing_py_spy_warns_where_it_looked_and_falls_back_to_cprofile(
    fake_venv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setattr(profiling, "find_py_spy", functools.partial(profiling.find_py_spy, str(fake_venv), str(empty)))
    with pytest.warns(RuntimeWarning, match=f"looked beside the interpreter in {fake_venv.parent}") as caught:
        files = profiling.profile_strategy("sequential", 1, tmp_path / "profiles", projects=2)
    assert "falling back to cProfile" in str(caught[0].message)
    assert [f.tool for f in files] == ["cProfile"]
    assert files[0].path.name == "sequential-workers=1-scenario=cpu.prof" and files[0].path.stat().st_size > 0


def test_py_spy_that_cannot_attach_falls_back_to_cprofile(
    fake_venv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    _fake_program(fake_venv.parent / "py-spy", "echo 'Permission denied (ptrace)' >&2; exit 1")
    monkeypatch.setattr(profiling, "find_py_spy", functools.partial(profiling.find_py_spy, str(fake_venv), ""))
    with pytest.warns(RuntimeWarning, match=r"py-spy failed \(exit 1\): Permission denied"):
        files = profiling.profile_strategy("sequential", 1, tmp_path / "profiles", projects=2, scenario="mixed")
    assert [f.path.name for f in files] == ["sequential-workers=1-scenario=mixed.prof"]


def test_io_and_mixed_profile_against_a_loopback_server_with_the_benchmark_latency() -> None:
    with profiling._data_url("cpu", 2, 20.0) as url:
        assert url is None
    for scenario in ("io", "mixed"):
        with profiling._data_url(scenario, 3, 4.0) as url:
            assert url is not None and url.startswith("http://127.0.0.1:")
            with urllib.request.urlopen(f"{url}/projects/{_first_sample_id()}", timeout=5) as response:
                assert response.status == 200
    with pytest.raises(ValueError, match="unknown scenario 'disk'"), profiling._data_url("disk", 2, 1.0):
        pass


def _first_sample_id() -> str:
    from zerosite.sample import sample_projects

    return str(sample_projects(1)[0]["id"])


def test_the_driver_passes_the_data_url() -> None:
    command = profiling._driver("process", 2, 4, Path("/tmp/x"), "http://127.0.0.1:1")
    assert command[-2:] == ["--data-url", "http://127.0.0.1:1"]
    assert "--data-url" not in profiling._driver("process", 2, 4, Path("/tmp/x"))


def _py_spy_can_attach() -> bool:
    found, _ = profiling.find_py_spy()
    return found is not None


@pytest.mark.skipif(not _py_spy_can_attach(), reason="py-spy is not installed")
def test_py_spy_follows_the_workers_in_the_io_scenario(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # as a user who never activated the venv
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # Enough work that each worker is sampled while busy: workers load their templates compiled, so their
        # start-up no longer shows, and 8 projects gave each worker about 20 ms of CPU (missed once in CI).
        files = profiling.profile_strategies([("process", 2)], tmp_path, projects=60, scenarios=["io"], latency_ms=5)
    if caught:
        pytest.skip(f"py-spy cannot attach here: {caught[0].message}")
    assert sorted(f.path.name for f in files) == [
        "process-workers=2-scenario=io.speedscope.json",
        "process-workers=2-scenario=io.svg",
    ]
    svg = (tmp_path / "process-workers=2-scenario=io.svg").read_text()
    processes = {line.split(":", 1)[0] for line in svg.split("<title>process ")[1:]}
    assert len(processes) >= 3, processes  # the main process and both workers


def test_profile_command_takes_scenarios_and_latency(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[object, ...]] = []

    def record(strategies: object, folder: object, projects: object, **kwargs: object) -> list[profiling.ProfileFile]:
        calls.append((strategies, projects, {k: v for k, v in kwargs.items() if k in ("scenarios", "latency_ms")}))
        return [profiling.ProfileFile("label", tmp_path / "x.svg", "py-spy")]

    monkeypatch.setattr(profiling, "profile_strategies", record)
    args = ["profile", "--strategy", "process:2", "--sample", "2", "--out", str(tmp_path)]
    result = CliRunner().invoke(main, [*args, "--scenario", "mixed,io", "--scenario", "io", "--latency-ms", "2"])
    assert result.exit_code == 0, result.output
    assert calls[-1] == ([("process", 2)], 2, {"scenarios": ("mixed", "io"), "latency_ms": 2.0})
    assert "label: " in result.output
    assert CliRunner().invoke(main, args).exit_code == 0
    assert calls[-1][2] == {"scenarios": ("cpu", "io", "mixed"), "latency_ms": 20.0}
    bad = CliRunner().invoke(main, [*args, "--scenario", "disk"])
    assert bad.exit_code == 2 and "unknown scenario(s): disk" in bad.output
    # More workers than this machine takes: capped once, here, not by each profiled run, scenario after scenario
    many = CliRunner().invoke(main, ["profile", "--strategy", "process:1000", "--out", str(tmp_path)])
    capped = capped_workers(1000)[0]
    assert calls[-1][0] == [("process", capped)]
    assert many.stderr.count(f"using {capped}") == 1, many.stderr


@pytest.fixture(params=["py-spy", "cProfile"])
def profiler(request: pytest.FixtureRequest, fake_venv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each way a profile is made: py-spy where it can attach, and the cProfile fallback (py-spy not found)."""
    monkeypatch.chdir(tmp_path)
    if request.param == "cProfile":
        nowhere = functools.partial(profiling.find_py_spy, str(fake_venv), str(tmp_path / "empty"))
        monkeypatch.setattr(profiling, "find_py_spy", nowhere)
    elif not _py_spy_can_attach():
        pytest.skip("py-spy is not installed")
    return str(request.param)


def test_a_profiled_run_that_fails_keeps_no_profile_and_says_why(
    profiler: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """py-spy exits 0 after a program that failed, and cProfile swallows its SystemExit: a profile of a usage
    error (here the user's own ZEROSITE_CACHE, which the profiled generate reads) was kept as if of a batch."""
    monkeypatch.setenv("ZEROSITE_CACHE", "ftp://x")
    folder = tmp_path / "profiles"
    with warnings.catch_warnings(record=True) as caught, pytest.raises(profiling.ProfileError) as failed:
        warnings.simplefilter("always")
        profiling.profile_strategy("sequential", 1, folder, projects=2)
    if profiler == "py-spy" and caught:
        pytest.skip(f"py-spy cannot attach here: {caught[0].message}")
    assert str(failed.value) == "profiling sequential-workers=1-scenario=cpu: the profiled `zerosite generate` failed"
    assert failed.value.output == [
        "error: --cache: unknown report cache 'ftp://x': no backend for 'ftp' (known: local, redis, rediss)"
    ]
    assert list(folder.iterdir()) == []


def test_profiles_are_named_after_the_workers_used_and_the_runs_warnings_relayed(profiler: str, tmp_path: Path) -> None:
    said: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        files = profiling.profile_strategy("thread", 999, tmp_path / "profiles", projects=2, relay=said.append)
    if profiler == "py-spy" and caught:
        pytest.skip(f"py-spy cannot attach here: {caught[0].message}")
    used = capped_workers(999)[0]
    assert {f.path.name.split(".")[0] for f in files} == {f"thread-workers={used}-scenario=cpu"}
    assert sorted(p.name for p in (tmp_path / "profiles").iterdir()) == sorted(f.path.name for f in files)
    if used < 999:  # said once, though each py-spy format is a run of its own
        assert [line for line in said if "--workers 999" in line] == [
            f"thread-workers={used}-scenario=cpu: warning: --workers {capped_workers(999)[1]}"
        ]


def test_a_run_is_read_from_its_summary_among_py_spy_lines() -> None:
    summary = {"workers": 8, "failed": 0, "failures": []}
    stdout = f"py-spy> Sampling process 200 times a second.\n\n{json.dumps(summary, indent=2)}\n\npy-spy> Wrote x\n"
    run = profiling._Run.of(stdout, "warning: one\n\nwarning: two\n")
    assert (run.summary, run.stderr, run.workers("s")) == (summary, ["warning: one", "warning: two"], 8)
    with pytest.raises(profiling.ProfileError, match="the profiled `zerosite generate` failed"):
        profiling._Run.of("py-spy> Sampling\n", "Error: bad").workers("s")
    failures = [{"project_id": "p1", "module": "M2", "error": "boom"}]
    failed = profiling._Run.of(json.dumps({"workers": 2, "failed": 1, "failures": failures}), "")
    with pytest.raises(profiling.ProfileError, match="1 report\\(s\\) of the profiled batch failed") as error:
        failed.workers("s")
    assert error.value.output == ["failed: p1/M2: boom"]


def test_a_failed_profile_among_several_is_passed_on_and_the_others_still_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fake(strategy: str, workers: int, folder: Path, *args: object, **kwargs: object) -> list[profiling.ProfileFile]:
        if strategy == "thread":
            raise profiling.ProfileError(f"profiling {strategy}: failed", ["Error: bad"])
        return [profiling.ProfileFile(strategy, folder / f"{strategy}.svg", "py-spy")]

    monkeypatch.setattr(profiling, "profile_strategy", fake)
    failures: list[profiling.ProfileError] = []
    strategies = [("thread", 2), ("process", 2)]
    files = profiling.profile_strategies(strategies, tmp_path, scenarios=["cpu"], failed=failures.append)
    assert [f.label for f in files] == ["process"] and [str(f) for f in failures] == ["profiling thread: failed"]
    with pytest.warns(RuntimeWarning, match="profiling thread: failed; Error: bad"):  # the benchmark's report goes on
        assert len(profiling.profile_strategies(strategies, tmp_path, scenarios=["cpu"])) == 1
