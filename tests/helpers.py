"""Builders shared by the module tests: a raw project, a parsed one, a stand-in M3 result, the real chain;
``communicate``, which waits for a command under test and shows where it hung when it does; and hostile plugins,
a plugins folder of one file whose module does what the test writes (``hostile_plugin``).

Import with ``from helpers import ...``: pytest's default ``prepend`` import mode puts ``tests/`` on
``sys.path`` (there is no ``tests/__init__.py``), whether it runs the whole suite or one file.
"""

from __future__ import annotations

import contextlib
import copy
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from zerosite.engine import BatchSummary
from zerosite.pipeline import compute_and_render, plan
from zerosite.plugins import PluginSettings, get_modules
from zerosite.project import Project, parse_project
from zerosite.sample import sample_projects

DEFAULT_PROJECT: dict[str, Any] = {
    "id": "test-project",
    "road_address": "서울특별시 마포구 월드컵로 1",
    "jibun_address": "서울특별시 마포구 공덕동 1-1",
    "sido": "서울특별시",
    "sigungu": "마포구",
    "dong": "공덕동",
    "land_area_sqm": 1000.0,
    "zone_type": "제2종일반주거지역",
    "official_price_per_sqm": 7_000_000,
    "road_width_m": 8.0,
    "corner_lot": False,
    "subway_distance_m": 400.0,
    "transactions": [],
    "demographics": {"youth": 0.3, "newlywed": 0.2, "multichild": 0.1, "senior": 0.1},
}
"""A valid raw project; tests whose hand-computed numbers need other inputs pass them as overrides."""


def project_dict(**overrides: Any) -> dict[str, Any]:
    """A fresh copy of ``DEFAULT_PROJECT`` with ``overrides`` (top-level keys) replacing its values."""
    return copy.deepcopy({**DEFAULT_PROJECT, **overrides})


def make_project(**overrides: Any) -> Project:
    """``project_dict(**overrides)``, parsed."""
    return parse_project(project_dict(**overrides))


@dataclass(frozen=True)
class StubSupply:
    """Stands in for an M3 result: the attributes M4 and M6 read."""

    selected: str = "youth"
    selected_label: str = "청년"
    unit_area_sqm: float = 30.0
    score: float = 80.0
    tie: bool = False


REPORT_MODULES = ("M2", "M3", "M4", "M5", "M6")


def render_chain(project: Project, names: tuple[str, ...] = REPORT_MODULES) -> dict[str, str]:
    """Compute ``names`` and what they require with the real modules; each one's report by module name."""
    made = list(compute_and_render(project, plan(get_modules(), names), set(names)))
    failed = [outcome.exception for outcome in made if outcome.exception is not None]
    if failed:
        raise failed[0]
    return {outcome.module.name: outcome.html for outcome in made if outcome.html is not None}


def projects(n: int) -> list[Project]:
    """The first ``n`` sample projects, parsed."""
    return [parse_project(raw) for raw in sample_projects(n)]


def files_of(folder: Path) -> dict[str, bytes]:
    """Every file a batch wrote under ``folder`` (its index aside), by relative path, with its bytes."""
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and not path.name.startswith("index.sqlite")
    }


def communicate(child: subprocess.Popen[str], timeout: float) -> tuple[str, str]:
    """``child.communicate(timeout=...)``; where it times out, a failure that shows what each process of the child's
    tree was doing (``py-spy dump``), the tree then killed: a hang seen once on CI says where it hung."""
    try:
        return child.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        tree = [child.pid]
        with contextlib.suppress(psutil.NoSuchProcess):
            tree += [p.pid for p in psutil.Process(child.pid).children(recursive=True)]
        spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
        dumps = [_stacks(spy, pid) for pid in tree]
        for pid in reversed(tree):
            with contextlib.suppress(psutil.NoSuchProcess):
                psutil.Process(pid).kill()
        _, stderr = child.communicate()
        raise AssertionError(
            f"still running {timeout:g} s on; its processes' stacks:\n" + "\n".join(dumps) + f"\nstderr:\n{stderr}"
        ) from None


def _stacks(spy: str | None, pid: int) -> str:
    if spy is None:
        return f"pid {pid}: no py-spy to show its stack"
    dump = subprocess.run([spy, "dump", "--pid", str(pid)], capture_output=True, text=True, timeout=30)
    return f"pid {pid}:\n{dump.stdout}{dump.stderr}"


# -- hostile plugins ------------------------------------------------------------------------------------

PLUGIN_HEAD = """
    import os
    import sys
    import time
    from pathlib import Path

    from zerosite import ReportModule, hookimpl

    HERE = Path(__file__).parent


    @hookimpl
    def zerosite_template_dirs():
        return [HERE / "templates"]
"""


def hostile_plugin(folder: Path, body: str) -> PluginSettings:
    """A plugins folder with one plugin file: ``PLUGIN_HEAD`` and ``body``; its template prints the result."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "hostile.py").write_text(textwrap.dedent(PLUGIN_HEAD) + textwrap.dedent(body), encoding="utf-8")
    (folder / "templates").mkdir(exist_ok=True)
    (folder / "templates" / "hostile.html.j2").write_text("<p>{{ module.name }} {{ result }}</p>\n", encoding="utf-8")
    return PluginSettings(plugins_dir=folder).resolved()


def failures(summary: BatchSummary) -> dict[tuple[str, str], str]:
    """Each failed report's error, by ``(project, module)``."""
    return {(f.project_id, f.module): f.error or "" for f in summary.failures}
