"""A plugin that fails is named with where it failed (audit finding 7), and a data source's wrong answer fails
its project only (audit finding 2)."""

from __future__ import annotations

import dataclasses
import linecache
import os
import re
import statistics
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import projects

import zerosite.modules.m2_appraisal as m2_appraisal
from zerosite import ReportModule
from zerosite.engine import BatchOptions, BatchSummary, generate
from zerosite.pipeline import compute_and_render, plan
from zerosite.plugins import PluginSettings, get_modules
from zerosite.types import raised_at

LOCATED_PLUGIN = """
    from pathlib import Path

    from zerosite import ReportModule, hookimpl

    RATES = {"seoul": 0.1}


    def rate(project):
        return RATES[project.sido]


    def estimate(project, deps):
        return rate(project) if project.id.startswith("p0002") else 1.0


    def zero_for_p0002(project, deps):
        return 0 if project.id.startswith("p0002") else 1


    @hookimpl
    def zerosite_register_modules(register):
        register(ReportModule(name="XC", title="계산", compute=estimate, template="x_plain.html.j2"))
        register(ReportModule(name="XR", title="나눗셈", compute=zero_for_p0002, template="x_divide.html.j2"))
        register(ReportModule(name="XF", title="숫자", compute=zero_for_p0002, template="x_num.html.j2"))
        register(ReportModule(name="XJ", title="형식", compute=zero_for_p0002, template="x_format.html.j2"))


    @hookimpl
    def zerosite_template_dirs():
        return [Path(__file__).parent / "templates"]
"""

TEMPLATES = {
    "x_plain.html.j2": "<p>{{ result }}</p>\n",
    "x_divide.html.j2": "<h1>{{ module.title }}</h1>\n<p>{{ result }}</p>\n<p>{{ 1 / result }}</p>\n",
    # The error is raised inside zerosite's own `num` filter, and inside Jinja2's `format`: the template's line.
    "x_num.html.j2": "<h1>{{ module.title }}</h1>\n<p>{{ (project.id if result == 0 else result)|num(1) }}</p>\n",
    "x_format.html.j2": "<h1>{{ module.title }}</h1>\n\n<p>{{ '%d'|format(project.id if result == 0 else 1) }}</p>\n",
}


def located_plugin(folder: Path) -> PluginSettings:
    """A plugins folder with ``located.py`` and its templates."""
    (folder / "templates").mkdir(parents=True, exist_ok=True)
    (folder / "located.py").write_text(textwrap.dedent(LOCATED_PLUGIN), encoding="utf-8")
    for name, text in TEMPLATES.items():
        (folder / "templates" / name).write_text(text, encoding="utf-8")
    return PluginSettings(plugins_dir=folder).resolved()


def failures(summary: BatchSummary) -> dict[tuple[str, str], str]:
    return {(f.project_id, f.module): f.error or "" for f in summary.failures}


def line_of(path: Path, text: str) -> int:
    """The number of the first line of ``path`` that holds ``text``."""
    return next(n for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if text in line)


@pytest.mark.parametrize("strategy", ["sequential", "process"])
def test_a_failing_compute_or_template_is_named_with_its_file_and_line(
    fresh_plugins: None, tmp_path: Path, strategy: str
) -> None:
    plugin = tmp_path / "plugins"
    settings = located_plugin(plugin)
    options = BatchOptions(
        out=tmp_path / "out", plugins=settings, strategy=strategy, workers=2, modules=("XC", "XR", "XF", "XJ")
    )
    summary = generate(projects(3), options)
    assert (summary.written, summary.failed) == (3 * 4 - 4, 4)
    failed = failures(summary)
    assert set(failed) == {("p0002-gongdeok", name) for name in ("XC", "XR", "XF", "XJ")}
    compute_line = line_of(plugin / "located.py", "return RATES[project.sido]")
    assert failed["p0002-gongdeok", "XC"].startswith("XC compute failed for project 'p0002-gongdeok': KeyError: ")
    assert failed["p0002-gongdeok", "XC"].endswith(f" (at located.py:{compute_line} in rate)")
    assert failed["p0002-gongdeok", "XR"] == (
        "XR render failed for project 'p0002-gongdeok': ZeroDivisionError: division by zero"
        " (at x_divide.html.j2 line 3)"
    )
    assert failed["p0002-gongdeok", "XF"].startswith("XF render failed for project 'p0002-gongdeok': ValueError: ")
    assert failed["p0002-gongdeok", "XF"].endswith(" (at x_num.html.j2 line 2)")
    assert failed["p0002-gongdeok", "XJ"].startswith("XJ render failed for project 'p0002-gongdeok': TypeError: ")
    assert failed["p0002-gongdeok", "XJ"].endswith(" (at x_format.html.j2 line 3)")


@pytest.mark.parametrize("strategy", ["sequential", "process"])
def test_zerosite_tracebacks_prints_each_failures_traceback_from_the_process_it_happened_in(
    fresh_plugins: None, tmp_path: Path, strategy: str
) -> None:
    plugin = tmp_path / "plugins"
    located_plugin(plugin)
    command = [sys.executable, "-m", "zerosite", "--plugins-dir", str(plugin), "generate", "--sample", "3"]
    command += ["--module", "XC", "--strategy", strategy, "--workers", "2", "--out", str(tmp_path / "out"), "-q"]
    quiet = subprocess.run(command, capture_output=True, text=True, timeout=120)
    loud = subprocess.run(
        [*command[:-2], str(tmp_path / "again"), "-q"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "ZEROSITE_TRACEBACKS": "1"},
    )
    assert quiet.returncode == loud.returncode == 1
    assert "Traceback" not in quiet.stderr  # by default, a failure is its one line
    compute_line = line_of(plugin / "located.py", "return RATES[project.sido]")
    assert "zerosite: traceback of: XC compute failed for project 'p0002-gongdeok': KeyError: " in loud.stderr
    assert f'located.py", line {compute_line}, in rate' in loud.stderr and "Traceback" in loud.stderr


def _mean_of_nothing() -> float:
    return statistics.mean([])


def _compute_calling_the_standard_library(project: Any, deps: Any) -> float:
    return _mean_of_nothing()


def _error_of(module: ReportModule, project: Any = None) -> str:
    """The error ``module`` fails with when computed alone for ``project`` (the first sample by default)."""
    (outcome,) = compute_and_render(project or projects(1)[0], [module], reports=())
    assert outcome.error is not None
    return outcome.error


def _located_line(error: str) -> tuple[str, int, str]:
    """``(file, line, function)`` of the ``(at FILE:LINE in FUNCTION)`` that ends ``error``."""
    found = re.search(r" \(at ([^:()]+):(\d+) in (\w+)\)$", error)
    assert found is not None, error
    return found[1], int(found[2]), found[3]


def test_the_innermost_plugin_frame_is_named_not_the_standard_librarys() -> None:
    module = ReportModule(name="XS", title="통계", compute=_compute_calling_the_standard_library, template="x.html.j2")
    error = _error_of(module)
    assert error.startswith("XS compute failed for project 'p0001-yeoksam': StatisticsError: ")
    file, line, function = _located_line(error)
    assert (file, function) == (Path(__file__).name, "_mean_of_nothing")
    assert "statistics.mean([])" in linecache.getline(__file__, line)


def test_a_built_in_modules_own_code_counts_as_plugin_code() -> None:
    broken = dataclasses.replace(projects(1)[0], land_area_sqm=None)  # type: ignore[arg-type]
    outcomes = compute_and_render(broken, plan(get_modules(), ["M2"]), reports=())
    error = next(outcome.error for outcome in outcomes if outcome.module.name == "M2")
    assert error is not None
    file, line, _ = _located_line(error)
    assert (file, Path(m2_appraisal.__file__).name) == ("m2_appraisal.py", "m2_appraisal.py")
    assert "/" in linecache.getline(m2_appraisal.__file__, line)  # the division by the missing land area


def test_raised_at_is_empty_without_a_traceback_or_outside_plugin_code() -> None:
    assert raised_at(ValueError("never raised")) == ""
    try:
        textwrap.dedent(None)  # type: ignore[arg-type]
    except TypeError as error:
        caught: BaseException = error
    assert raised_at(caught, owner=textwrap.dedent) == raised_at(caught)  # a library's own code is no plugin's home
    assert raised_at(caught).startswith(f" (at {Path(__file__).name}:")

    class Hostile:
        def __getattribute__(self, name: str) -> Any:
            raise RuntimeError(name)

    assert raised_at(caught, owner=Hostile()) == ""  # saying where never fails


def test_the_location_is_only_worked_out_for_a_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[BaseException] = []
    real: Callable[..., str] = raised_at

    def counted(error: BaseException, owner: object = None) -> str:
        calls.append(error)
        return real(error, owner)

    monkeypatch.setattr("zerosite.pipeline.raised_at", counted)
    ok = ReportModule(name="XO", title="정상", compute=lambda project, deps: 1, template="x.html.j2")
    (outcome,) = compute_and_render(projects(1)[0], [ok], reports=())
    assert outcome.error is None and calls == []


# --- A data source's answer is checked: a wrong one fails its project, not the batch (audit finding 2) -------

BAD_SOURCE = """
    from dataclasses import replace

    from zerosite import hookimpl
    from zerosite.types import DataSource


    class BadSource(DataSource):
        name = "bad"
        description = "Answers wrongly for the first five projects."

        def fetch(self, project):
            number = project.id[:5]
            if number == "p0001":
                return None
            if number == "p0002":
                return {"id": project.id}
            if number == "p0003":
                return replace(project, id="p9999-other")
            if number == "p0004":
                return replace(project, land_area_sqm=-5.0)
            if number == "p0005":
                raise KeyError("boom")
            return replace(project, road_width_m=project.road_width_m + 1.0)


    @hookimpl
    def zerosite_register_data_sources(register):
        register(BadSource())
"""

BAD_ANSWERS = {
    "p0001-yeoksam": "fetch failed: data source 'bad' returned NoneType, not a Project",
    "p0002-gongdeok": "fetch failed: data source 'bad' returned dict, not a Project",
    "p0003-jamsil": "fetch failed: data source 'bad' returned project 'p9999-other' for 'p0003-jamsil'",
    "p0004-seocho": "fetch failed: data source 'bad' returned an invalid project: land_area_sqm: must be > 0, got -5",
    "p0005-hangangno": "fetch failed: data source 'bad' raised KeyError: 'boom' (at bad_source.py:{line} in fetch)",
}


def bad_source(folder: Path) -> tuple[PluginSettings, dict[str, str]]:
    """A plugins folder holding ``bad_source.py``, and the error each of the first five projects fails with."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "bad_source.py").write_text(textwrap.dedent(BAD_SOURCE), encoding="utf-8")
    line = line_of(folder / "bad_source.py", 'raise KeyError("boom")')
    return PluginSettings(plugins_dir=folder).resolved(), {k: v.format(line=line) for k, v in BAD_ANSWERS.items()}


@pytest.mark.parametrize("strategy", ["sequential", "thread", "process", "async", "auto"])
def test_a_wrong_answer_from_a_data_source_fails_that_project_only(
    fresh_plugins: None, tmp_path: Path, strategy: str
) -> None:
    settings, expected = bad_source(tmp_path / "plugins")
    out = tmp_path / "out"
    options = BatchOptions(out=out, plugins=settings, source="bad", strategy=strategy, workers=2, modules=("M3",))
    batch = projects(7)
    assert [p.id for p in batch[:5]] == list(expected)
    summary = generate(batch, options)
    assert (summary.written, summary.failed) == (2, 5)
    assert failures(summary) == {(project_id, "M3"): why for project_id, why in expected.items()}
    assert sorted(path.parent.name for path in out.glob("*/*.html")) == [p.id for p in batch[5:]]


def test_a_wrong_answer_from_a_data_source_exits_1_listing_the_failures(tmp_path: Path) -> None:
    """The command line, with its default strategy (auto): the batch completes, the failures are listed."""
    _, expected = bad_source(tmp_path / "plugins")
    out = tmp_path / "out"
    command = [sys.executable, "-m", "zerosite", "--plugins-dir", str(tmp_path / "plugins"), "generate"]
    command += ["--sample", "7", "--source", "bad", "--module", "M3", "--out", str(out), "--quiet"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    for project_id, why in expected.items():
        assert f"failed: {project_id}/M3: {why}\n" in done.stderr
    assert sorted(path.parent.name for path in out.glob("*/*.html")) == ["p0006-seongsu", "p0007-yeouido"]


PARENT_ONLY_PLUGIN = """
    import multiprocessing
    from pathlib import Path

    if multiprocessing.parent_process() is not None:  # stands for an import that needs the parent's state
        raise RuntimeError("config file not found: ./picky.toml")

    from zerosite import ReportModule, hookimpl


    @hookimpl
    def zerosite_register_modules(register):
        register(ReportModule(name="XB", title="시험", compute=lambda project, deps: 1, template="x_plain.html.j2"))


    @hookimpl
    def zerosite_template_dirs():
        return [Path(__file__).parent / "templates"]
"""


@pytest.mark.parametrize(
    "strategy",
    [
        ["process", "--start-method", "spawn"],
        ["process", "--start-method", "forkserver"],
        ["async", "--start-method", "spawn"],
    ],
    ids=" ".join,
)
def test_a_plugin_that_loads_here_and_not_in_a_worker_ends_the_batch_saying_why(
    tmp_path: Path, strategy: list[str]
) -> None:
    """User audit: seven raw "Exception in initializer" tracebacks, then every report, the built-ins' too, failed as
    "worker died ... exit code 0"; the plugin's own error was nowhere."""
    plugins = tmp_path / "plugins"
    (plugins / "templates").mkdir(parents=True)
    (plugins / "picky.py").write_text(textwrap.dedent(PARENT_ONLY_PLUGIN), encoding="utf-8")
    (plugins / "templates" / "x_plain.html.j2").write_text("<p>{{ result }}</p>\n", encoding="utf-8")
    command = [sys.executable, "-m", "zerosite", "--plugins-dir", str(plugins), "generate", "--sample", "5"]
    command += ["--strategy", *strategy, "--workers", "2", "--out", str(tmp_path / "out"), "-q"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr == (
        "error: a worker process could not start: no module named 'XB' is registered here (known: M2, M3, M4, M5, M6): "
        f"here it skipped plugin 'picky' ({plugins / 'picky.py'}): RuntimeError: config file not found: ./picky.toml"
        " (at picky.py:6 in <module>)\n"
    )
    assert not list((tmp_path / "out").glob("*/*.html"))
