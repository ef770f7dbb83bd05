"""Plugins' template folders: what the hook returns is checked, a template name in two plugins' folders (or a
plugin's and the built-ins') is refused instead of one serving both, a failing hook is named, and every template
counts in the resume hash whatever its extension."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from zerosite import hookimpl
from zerosite.engine import BatchOptions, generate
from zerosite.plugins import get_plugin_manager
from zerosite.project import Project, parse_project
from zerosite.rendering import get_environment, templates_fingerprint
from zerosite.sample import sample_projects
from zerosite.types import PluginError, PluginSettings, ReportModule


def _echo(project: Project, deps: object) -> str:
    return project.id


class _Folders:
    """A plugin whose modules (``prefix`` and a number: X1, X2, ...) use ``templates``, and whose template hook
    returns ``returned``."""

    def __init__(self, returned: Any, *templates: str, prefix: str = "X") -> None:
        self.returned = returned
        self.templates = templates
        self.prefix = prefix

    @hookimpl
    def zerosite_register_modules(self, register: Callable[[ReportModule], None]) -> None:
        for i, template in enumerate(self.templates, 1):
            register(ReportModule(name=f"{self.prefix}{i}", title=f"시험 {i}", compute=_echo, template=template))

    @hookimpl
    def zerosite_template_dirs(self) -> Any:
        return self.returned


@pytest.fixture
def settings(plugin_settings: Callable[..., PluginSettings]) -> PluginSettings:
    return plugin_settings()


@pytest.fixture
def environment_with(settings: PluginSettings, registered: Callable[..., Any]) -> Iterator[Callable[..., object]]:
    """``environment_with(name=plugin, ...)``: the environment of the built-ins and these plugins."""
    stack: list[Any] = []

    def build(**plugins: object) -> object:
        context = registered(get_plugin_manager(settings), **plugins)
        context.__enter__()
        stack.append(context)
        return get_environment(settings)

    yield build
    for context in reversed(stack):
        context.__exit__(None, None, None)


def _folder(tmp_path: Path, name: str, files: dict[str, str]) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    for file, text in files.items():
        (folder / file).write_text(text, encoding="utf-8")
    return folder


def test_two_plugins_with_a_template_of_one_name_are_refused_naming_both(
    tmp_path: Path, environment_with: Callable[..., object]
) -> None:
    a = _folder(tmp_path, "a", {"report.html.j2": "A {{ result }}"})
    b = _folder(tmp_path, "b", {"report.html.j2": "B {{ result }}"})
    with pytest.raises(PluginError) as raised:  # before: B's module rendered with A's template, exit 0
        environment_with(plug_a=_Folders([a], "report.html.j2"), plug_b=_Folders([b]))
    message = str(raised.value)
    assert "template 'report.html.j2' is in the folders of plugins plug_a" in message
    assert str(a) in message and str(b) in message and "rename one" in message


def test_plugins_that_share_one_template_folder_each_find_their_own(
    tmp_path: Path, environment_with: Callable[..., object]
) -> None:
    """Two plugin files of one plugins folder, each returning its ``templates`` folder (the layout of docs/plugins.md
    and ``new-module``): every template in it was refused as "in the folders of plugins m7 and m8", one folder named
    twice (user audit)."""
    shared = _folder(tmp_path, "templates", {"a.html.j2": "A {{ result }}", "b.html.j2": "B {{ result }}"})
    (tmp_path / "x").mkdir()  # the same folder, spelt another way
    env = environment_with(
        plug_a=_Folders([shared], "a.html.j2"),
        plug_b=_Folders([tmp_path / "x" / ".." / "templates"], "b.html.j2", prefix="Y"),
    )
    assert env.get_template("b.html.j2").render(result=1) == "B 1"  # type: ignore[attr-defined]


def test_a_plugin_template_named_as_a_built_in_one_is_refused(
    tmp_path: Path, environment_with: Callable[..., object]
) -> None:
    a = _folder(tmp_path, "a", {"m4_building_scale.html.j2": "M4 REPLACED"})
    with pytest.raises(
        PluginError,
        match=r"plugin plug_a's template folder .* has 'm4_building_scale\.html\.j2', the template of module M4",
    ):
        environment_with(plug_a=_Folders([a]))


def test_a_users_override_of_a_built_in_template_is_still_taken(
    tmp_path: Path, plugin_settings: Callable[..., PluginSettings]
) -> None:
    overrides = _folder(tmp_path, "mine", {"m4_building_scale.html.j2": "M4 RESTYLED {{ result.units }}"})
    env = get_environment(plugin_settings(templates_dir=overrides))
    assert env.get_template("m4_building_scale.html.j2").filename == str(overrides / "m4_building_scale.html.j2")


def test_python_files_and_caches_in_template_folders_are_not_templates(
    tmp_path: Path, environment_with: Callable[..., object]
) -> None:
    # Both folders are packages, like the built-in templates folder: their __init__.py is no clash.
    a = _folder(tmp_path, "a", {"__init__.py": "", "a.html.j2": "A", ".a.html.j2.swp": "x"})
    b = _folder(tmp_path, "b", {"__init__.py": "", "b.html.j2": "B", ".a.html.j2.swp": "y"})
    environment_with(plug_a=_Folders([a], "a.html.j2"), plug_b=_Folders([b], "b.html.j2", prefix="Y"))


@pytest.mark.parametrize(
    ("returned", "message"),
    [
        ("{folder}", "must return a list of folders, got str '{folder}'"),  # would be a folder per character
        (Path("{folder}"), "must return a list of folders, got PosixPath '{folder}'"),
        (["{folder}", 3], "returned 3, not a folder's path"),
        (["{folder}/missing"], "returned '{folder}/missing', which is not a folder"),
    ],
)
def test_what_the_template_hook_returns_is_checked(
    tmp_path: Path, environment_with: Callable[..., object], returned: Any, message: str
) -> None:
    folder = _folder(tmp_path, "t", {"t.html.j2": "T"})

    def filled(value: Any) -> Any:
        if isinstance(value, list):
            return [filled(v) for v in value]
        return type(value)(str(value).format(folder=folder)) if isinstance(value, str | Path) else value

    expected = f"plugin plug: zerosite_template_dirs {message.format(folder=folder)}"
    with pytest.raises(PluginError) as raised:
        environment_with(plug=_Folders(filled(returned)))
    assert str(raised.value) == expected


class _Raises:
    @hookimpl
    def zerosite_prepare_jinja2_environment(self, env: object) -> None:
        raise RuntimeError("filter setup failed")


def test_a_template_hook_that_raises_is_a_plugin_error_naming_the_plugin(
    environment_with: Callable[..., object],
) -> None:
    # before: a traceback, exit 1 (the register hooks were already named, exit 2)
    with pytest.raises(PluginError, match=r"^plugin filters: zerosite_prepare_jinja2_environment failed: "):
        environment_with(filters=_Raises())


def test_a_missing_template_names_the_folders_searched(tmp_path: Path, environment_with: Callable[..., object]) -> None:
    folder = _folder(tmp_path, "t", {"other.html.j2": "T"})
    with pytest.raises(PluginError, match=rf"template 'gone\.html\.j2' not found in {folder}, .*templates"):
        environment_with(plug=_Folders([folder], "gone.html.j2"))


def test_an_edited_template_of_any_extension_remakes_its_reports(
    tmp_path: Path, settings: PluginSettings, registered: Callable[..., Any]
) -> None:
    folder = _folder(tmp_path, "t", {"x_report.html": "EDITION A {{ result }}", "part.inc": "PART 1"})
    (folder / "x_report.html").write_text("EDITION A {{ result }} {% include 'part.inc' %}", encoding="utf-8")
    project = parse_project(sample_projects(1)[0], "sample[0]")
    options = BatchOptions(out=tmp_path / "out", strategy="sequential", modules=("X1",), plugins=settings)
    with registered(get_plugin_manager(settings), plug=_Folders([folder], "x_report.html")):
        assert generate([project], options).written == 1
        before = templates_fingerprint(get_environment(settings))
        for edited in ("x_report.html", "part.inc"):  # the module's own template, then one it only includes
            (folder / edited).write_text((folder / edited).read_text(encoding="utf-8") + " B", encoding="utf-8")
            _forget_environment()
            assert templates_fingerprint(get_environment(settings)) != before
            before = templates_fingerprint(get_environment(settings))
            again = generate([project], options)
            assert (again.written, again.skipped) == (1, 0), edited
    assert (tmp_path / "out" / project.id / "X1.html").read_text(
        encoding="utf-8"
    ) == f"EDITION A {project.id} PART 1 B B"


def test_the_fingerprint_of_a_kept_environment_follows_its_templates_without_reading_them_again(
    tmp_path: Path, environment_with: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A program that plans batch after batch (the benchmark, a service) keeps its environment: the templates are
    # read again only once Jinja2's loaders say one changed, or one was added or removed.
    folder = _folder(tmp_path, "t", {"x_report.html": "A {{ result }}", "part.inc": "PART"})
    env = environment_with(plug=_Folders([folder], "x_report.html"))
    first = templates_fingerprint(env)
    reads: list[str] = []
    read = env.loader.get_source
    monkeypatch.setattr(env.loader, "get_source", lambda e, name: reads.append(name) or read(e, name))
    assert templates_fingerprint(env) == first and reads == []

    def edit(name: str, text: str) -> None:
        (folder / name).write_text(text, encoding="utf-8")
        later = os.stat(folder / name).st_mtime_ns + 1_000_000_000  # past the file system's timestamp granularity
        os.utime(folder / name, ns=(later, later))

    edit("part.inc", "PART 2")  # one only included
    second = templates_fingerprint(env)
    assert second != first and "part.inc" in reads
    reads.clear()
    assert templates_fingerprint(env) == second and reads == []
    edit("new.inc", "NEW")  # one added
    assert templates_fingerprint(env) not in (first, second)
    (folder / "new.inc").unlink()  # and removed again
    assert templates_fingerprint(env) == second


def _forget_environment() -> None:
    import zerosite.rendering

    zerosite.rendering._build_environment.cache_clear()
