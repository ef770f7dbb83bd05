"""The plugin guide documents every hook, and its worked example works."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from zerosite import hookspecs
from zerosite.engine import BatchOptions, generate
from zerosite.pipeline import compute_and_render, plan
from zerosite.plugins import PluginSettings, get_modules, get_strategies
from zerosite.project import parse_project
from zerosite.rendering import get_environment
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


M7_EXAMPLE = ("m7_parking.py", "templates/m7_parking.html.j2")
STRATEGY_EXAMPLE = "ordered_threads.py"


def write_examples(guide: str, folder: Path, *names: str) -> None:
    files = example_files(guide)
    for relative in names:
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        (folder / relative).write_text(files[relative], encoding="utf-8")


def test_the_guide_marks_exactly_its_example_files(guide: str) -> None:
    assert set(example_files(guide)) == {*M7_EXAMPLE, STRATEGY_EXAMPLE}


def test_worked_example_loads_and_renders_deterministically(guide: str, fresh_plugins: None, tmp_path: Path) -> None:
    write_examples(guide, tmp_path, *M7_EXAMPLE)
    settings = PluginSettings(plugins_dir=tmp_path).resolved()

    modules = get_modules(settings)
    m7 = modules["M7"]
    assert (m7.title, m7.requires, m7.provider) == ("주차 검토", ("M4",), "m7_parking")

    project = parse_project(sample_projects(1)[0], "sample[0]")
    env = get_environment(settings)
    steps = plan(modules, ["M7"])
    (made,) = [o for o in compute_and_render(project, steps, {"M7"}, env) if o.reported]
    assert made.error is None and made.html is not None
    assert "주차대수 비교" in made.html and made.result.verdict in made.html
    (again,) = [o for o in compute_and_render(project, steps, {"M7"}, env) if o.reported]
    assert again.html == made.html


def test_third_party_strategy_example_runs_a_batch(guide: str, fresh_plugins: None, tmp_path: Path) -> None:
    """The guide's strategy, loaded from a plugins folder, makes the same reports as the sequential one."""
    folder = tmp_path / "plugins"
    write_examples(guide, folder, STRATEGY_EXAMPLE)
    settings = PluginSettings(plugins_dir=folder).resolved()
    assert "ordered-thread" in get_strategies(settings)
    projects = [parse_project(raw, f"sample[{i}]") for i, raw in enumerate(sample_projects(6))]

    def run(strategy: str, workers: int) -> dict[str, bytes]:
        out = tmp_path / strategy
        summary = generate(projects, BatchOptions(out=out, strategy=strategy, workers=workers, plugins=settings))
        assert (summary.written, summary.failed) == (len(projects) * 5, 0)
        return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.glob("*/*.html"))}

    assert run("ordered-thread", 2) == run("sequential", 1)
