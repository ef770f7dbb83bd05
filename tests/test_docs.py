"""The plugin guide documents every hook, and its worked example works."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from zerosite import hookspecs
from zerosite.pipeline import compute_project, plan
from zerosite.plugins import PluginSettings, get_modules
from zerosite.project import parse_project
from zerosite.rendering import get_environment, render_report
from zerosite.sample import sample_projects

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"

HOOKSPECS: list[Callable[..., Any]] = [
    function
    for name, function in inspect.getmembers(hookspecs, inspect.isfunction)
    if name.startswith("zerosite_") and hasattr(function, "zerosite_spec")
]


def signature_of(function: Callable[..., Any]) -> str:
    """``name(arg, ...)``, the form the guide uses in its headings."""
    return f"{function.__name__}({', '.join(inspect.signature(function).parameters)})"


@pytest.fixture(scope="module")
def guide() -> str:
    return GUIDE.read_text(encoding="utf-8")


def test_hookspecs_are_found() -> None:
    assert {f.__name__ for f in HOOKSPECS} >= {"zerosite_register_modules", "zerosite_template_dirs"}


@pytest.mark.parametrize("hookspec", HOOKSPECS, ids=lambda f: f.__name__)
def test_hook_is_in_the_guide_with_its_signature(hookspec: Callable[..., Any], guide: str) -> None:
    assert f"### `{signature_of(hookspec)}`" in guide


@pytest.mark.parametrize("hookspec", HOOKSPECS, ids=lambda f: f.__name__)
def test_hookspec_docstring_has_params_returns_and_an_example(hookspec: Callable[..., Any]) -> None:
    doc = inspect.getdoc(hookspec) or ""
    for parameter in inspect.signature(hookspec).parameters:
        assert f":param {parameter}:" in doc
    assert ":returns:" in doc
    assert "Example" in doc


def example_files(guide: str) -> dict[str, str]:
    """The fenced blocks the guide marks with ``<!-- file: PATH -->``, by path."""
    pattern = re.compile(r"<!-- file: (?P<path>\S+) -->\n```\w*\n(?P<body>.*?)\n```", re.DOTALL)
    return {match["path"]: match["body"] + "\n" for match in pattern.finditer(guide)}


def test_worked_example_loads_and_renders_deterministically(guide: str, fresh_plugins: None, tmp_path: Path) -> None:
    files = example_files(guide)
    assert set(files) == {"m7_parking.py", "templates/m7_parking.html.j2"}
    for relative, text in files.items():
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text(text, encoding="utf-8")
    settings = PluginSettings(plugins_dir=tmp_path).resolved()

    modules = get_modules(settings)
    m7 = modules["M7"]
    assert (m7.title, m7.requires, m7.provider) == ("주차 검토", ("M4",), "m7_parking")

    project = parse_project(sample_projects(1)[0], "sample[0]")
    results = compute_project(project, plan(modules, ["M7"]))
    deps = {name: results[name] for name in m7.requires}
    env = get_environment(settings)
    html = render_report(m7, project, results["M7"], deps, env)
    assert "주차대수 비교" in html and results["M7"].verdict in html
    assert render_report(m7, project, results["M7"], deps, env) == html
