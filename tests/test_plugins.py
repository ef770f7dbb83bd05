"""The plugin system: entry points, the local plugins folder, validation errors, template lookup, hooks."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

import zerosite
from zerosite import ReportModule, hookimpl
from zerosite.cli import main
from zerosite.engine import BatchOptions, generate
from zerosite.plugins import PluginError, PluginSettings, get_modules, get_plugin_manager
from zerosite.project import Project, parse_project
from zerosite.rendering import builtin_templates_dir, get_environment, render_report
from zerosite.sample import sample_projects

M7_PLUGIN = '''
    """M7 parking review (주차 검토): parking spaces provided against those required, from M4."""

    from __future__ import annotations

    from dataclasses import dataclass
    from pathlib import Path

    from zerosite import ReportModule, hookimpl


    @dataclass(frozen=True)
    class ParkingReview:
        units: int
        required: int
        provided: int

        @property
        def surplus(self) -> int:
            return self.provided - self.required


    def review_parking(project, deps):
        scale = deps["M4"]
        return ParkingReview(scale.units, scale.parking_required, scale.parking_provided)


    MODULE = ReportModule(name="M7", title="주차 검토", compute=review_parking,
                          template="m7_parking.html.j2", requires=("M4",))


    @hookimpl
    def zerosite_register_modules(register):
        register(MODULE)


    @hookimpl
    def zerosite_template_dirs():
        return [Path(__file__).parent / "templates"]
'''

M7_TEMPLATE = """
    {% extends "default:base.html.j2" %}
    {% import "default:macros.html.j2" as m %}
    {% block summary %}
    <p class="m7-marker">주차 검토 결과: 여유 {{ result.surplus }}대</p>
    {{ m.kv_table([("세대수", result.units), ("법정 주차대수", result.required), ("계획 주차대수", result.provided)]) }}
    {% endblock %}
"""


@pytest.fixture
def m7_plugins_dir(plugins_dir: Path, write_file: Callable[[Path, str], Path]) -> Path:
    """A plugins folder holding the M7 file and its template, and nothing else."""
    write_file(plugins_dir / "m7_parking.py", M7_PLUGIN)
    write_file(plugins_dir / "templates" / "m7_parking.html.j2", M7_TEMPLATE)
    return plugins_dir


@pytest.fixture
def project() -> Project:
    return parse_project(sample_projects(1)[0], "sample[0]")


@dataclass(frozen=True)
class Echo:
    project_id: str


def echo(project: Project, deps: object) -> Echo:
    return Echo(project.id)


class ModulePlugin:
    """A throwaway plugin that registers the given modules."""

    def __init__(self, *modules: ReportModule) -> None:
        self.modules = modules

    @hookimpl
    def zerosite_register_modules(self, register: Callable[[ReportModule], None]) -> None:
        for module in self.modules:
            register(module)


def module(name: str, requires: tuple[str, ...] = (), template: str = "default:base.html.j2") -> ReportModule:
    return ReportModule(name=name, title=f"시험 {name}", compute=echo, template=template, requires=requires)


# --- Entry points ----------------------------------------------------------------------------

ENTRY_POINT_PLUGIN = """
    from dataclasses import dataclass
    from pathlib import Path

    from zerosite import ReportModule, hookimpl


    @dataclass(frozen=True)
    class Greeting:
        project_id: str


    MODULE = ReportModule(name="EP1", title="설치형 모듈", template="ep1.html.j2",
                          compute=lambda project, deps: Greeting(project.id))


    @hookimpl
    def zerosite_register_modules(register):
        register(MODULE)


    @hookimpl
    def zerosite_template_dirs():
        return [Path(__file__).parent / "templates"]
"""

BLOCKED_PLUGIN = """
    from zerosite import ReportModule, hookimpl

    raise AssertionError("a blocked plugin must not even be imported")
"""


@pytest.fixture
def distribution(install_distribution: Callable[..., Path]) -> Path:
    return install_distribution(
        "zerosite-fake-plugins",
        {
            "fake-ok": "zs_test_ok",
            "fake-broken": "zs_test_missing_dependency",
            "fake-blocked": "zs_test_blocked",
        },
        {
            "zs_test_ok/__init__.py": ENTRY_POINT_PLUGIN,
            "zs_test_ok/templates/ep1.html.j2": "<p>EP1 for {{ project.id }}: {{ result.project_id }}</p>\n",
            "zs_test_missing_dependency.py": "import zs_test_no_such_library\n",
            "zs_test_blocked.py": BLOCKED_PLUGIN,
        },
    )


def test_entry_point_module_is_listed_and_rendered(distribution: Path, plugin_settings, project: Project) -> None:
    settings = plugin_settings(builtin_modules=False, disabled={"fake-broken", "fake-blocked"})

    modules = get_modules(settings)

    assert list(modules) == ["EP1"]
    assert modules["EP1"].provider == "fake-ok"
    result = modules["EP1"].compute(project, {})
    html = render_report(modules["EP1"], project, result, {}, env=get_environment(settings))
    assert html == f"<p>EP1 for {project.id}: {project.id}</p>"


def test_entry_point_that_fails_to_import_is_skipped_with_a_warning(distribution: Path, plugin_settings) -> None:
    settings = plugin_settings(builtin_modules=False, disabled={"fake-blocked"})

    with pytest.warns(UserWarning, match=r"skipped plugin 'fake-broken'.*ModuleNotFoundError.*zs_test_no_such_library"):
        pm = get_plugin_manager(settings)

    assert pm.get_plugin("fake-broken") is None
    assert pm.get_plugin("fake-ok") is not None
    assert "zerosite.strategies" in dict(pm.list_name_plugin())


def test_entry_point_blocked_by_zerosite_disable_plugins(distribution: Path, plugins_dir: Path) -> None:
    environ = {
        "ZEROSITE_DISABLE_PLUGINS": " fake-blocked, fake-broken ,zerosite.modules.m6_decision",
        "ZEROSITE_PLUGINS_DIR": str(plugins_dir),
    }
    settings = PluginSettings.from_env(environ).resolved()

    pm = get_plugin_manager(settings)

    assert settings.disabled == {"fake-blocked", "fake-broken", "zerosite.modules.m6_decision"}
    assert pm.is_blocked("fake-blocked") and pm.get_plugin("fake-blocked") is None
    assert "zs_test_blocked" not in sys.modules
    assert pm.get_plugin("zerosite.modules.m6_decision") is None
    assert pm.get_plugin("fake-ok") is not None


# --- The local plugins folder ------------------------------------------------------------------


def _tree_snapshot(folder: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in sorted(folder.rglob("*")) if "__pycache__" not in p.parts}


def test_plugins_folder_module_is_listed_and_rendered_by_the_cli(
    fresh_plugins: None, m7_plugins_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    package = Path(zerosite.__file__).parent
    before = _tree_snapshot(package), _tree_snapshot(builtin_templates_dir())
    runner = CliRunner()

    listed = runner.invoke(main, ["--plugins-dir", str(m7_plugins_dir), "modules"])

    assert listed.exit_code == 0, listed.output
    (row,) = [line.split() for line in listed.output.splitlines() if line.startswith("M7 ")]
    assert row[:4] == ["M7", "주차", "검토", "M4"]
    assert "m7_parking" in row and "m7_parking.html.j2" in row

    out = tmp_path / "out"
    rendered = runner.invoke(
        main, ["--plugins-dir", str(m7_plugins_dir), "render", "--sample", "2", "--out", str(out), "--module", "M7"]
    )

    assert rendered.exit_code == 0, rendered.output
    pages = sorted(out.glob("*/M7.html"))
    assert len(pages) == 2
    for page in pages:
        html = page.read_text(encoding="utf-8")
        assert "주차 검토 결과" in html
        assert "법적 고지" in html  # the built-in base layout, reached through "default:"
    assert (_tree_snapshot(package), _tree_snapshot(builtin_templates_dir())) == before


def test_plugins_folder_file_that_fails_to_import_is_skipped_with_a_warning(
    plugin_settings, m7_plugins_dir: Path, write_file: Callable[[Path, str], Path]
) -> None:
    write_file(m7_plugins_dir / "broken_plugin.py", "raise RuntimeError('half-written plugin')\n")

    with pytest.warns(UserWarning, match=r"skipped plugin 'broken_plugin'.*RuntimeError: half-written plugin"):
        pm = get_plugin_manager(plugin_settings())

    assert pm.get_plugin("broken_plugin") is None
    assert "zerosite_local_plugins.broken_plugin" not in sys.modules
    assert pm.get_plugin("m7_parking") is not None


def test_a_plugin_with_a_syntax_error_is_named_with_its_whole_path(
    plugin_settings, m7_plugins_dir: Path, write_file: Callable[[Path, str], Path]
) -> None:
    """An installed package's error named ``__init__.py, line 62``, which every package has (plugin audit)."""
    broken = write_file(m7_plugins_dir / "half.py", "def compute(project, deps)\n    return 1\n")
    with pytest.warns(UserWarning) as warned:
        get_plugin_manager(plugin_settings())
    (message,) = [str(w.message) for w in warned if "half" in str(w.message)]
    assert message.endswith(f"SyntaxError: expected ':' ({broken}, line 1)"), message


HELPER = """
    from dataclasses import dataclass
    from pathlib import Path

    HERE = Path(__file__).parent


    @dataclass(frozen=True)
    class Helped:
        project_id: str
"""

HELPED_PLUGIN = """
    from zerosite import ReportModule, hookimpl
    from zerosite_local_plugins._shared import HERE, Helped

    from ._shared import Helped as HelpedRelatively

    assert HelpedRelatively is Helped


    @hookimpl
    def zerosite_register_modules(register):
        register(ReportModule(name="X1", title="도우미", compute=lambda p, d: Helped(p.id), template="x1.html.j2"))


    @hookimpl
    def zerosite_template_dirs():
        return [HERE / "templates"]
"""


def test_plugins_folder_files_import_the_folders_private_helpers(
    plugin_settings, plugins_dir: Path, write_file: Callable[[Path, str], Path], tmp_path: Path
) -> None:
    """``_*.py`` files are helpers: not loaded as plugins, importable by the plugins, in the workers too."""
    write_file(plugins_dir / "_shared.py", HELPER)
    write_file(plugins_dir / "x1_helped.py", HELPED_PLUGIN)
    write_file(plugins_dir / "templates" / "x1.html.j2", "<p>X1 of {{ result.project_id }}</p>\n")
    settings = plugin_settings(builtin_modules=False)

    assert list(get_modules(settings)) == ["X1"]
    assert get_plugin_manager(settings).get_plugin("_shared") is None

    batch = [parse_project(raw, f"sample[{i}]") for i, raw in enumerate(sample_projects(2))]
    options = BatchOptions(out=tmp_path / "out", strategy="process", start_method="spawn", plugins=settings)
    summary = generate(batch, options)  # a spawned worker inherits nothing: it imports the helper itself

    assert (summary.written, summary.failed) == (2, 0)
    for project_ in batch:
        assert (tmp_path / "out" / project_.id / "X1.html").read_text(encoding="utf-8") == f"<p>X1 of {project_.id}</p>"


def test_plugins_folder_files_are_blocked_by_their_file_name(plugin_settings, m7_plugins_dir: Path) -> None:
    pm = get_plugin_manager(plugin_settings(disabled={"m7_parking"}))

    assert pm.get_plugin("m7_parking") is None
    assert "zerosite_local_plugins.m7_parking" not in sys.modules


def test_a_blocked_name_that_is_no_plugins_is_a_warning(plugin_settings, m7_plugins_dir: Path) -> None:
    """A typo in ZEROSITE_DISABLE_PLUGINS blocks nothing: say so, rather than make reports that look normal."""
    with pytest.warns(UserWarning, match="ZEROSITE_DISABLE_PLUGINS") as caught:
        pm = get_plugin_manager(plugin_settings(disabled={"zerosite.modules.m6_decisoin", "m7_parking"}))

    (message,) = [str(warning.message) for warning in caught]
    assert message.startswith(
        "zerosite: ZEROSITE_DISABLE_PLUGINS names no plugin: 'zerosite.modules.m6_decisoin' "
        "(did you mean zerosite.modules.m6_decision?); the plugins are: zerosite.strategies, "
    )
    assert message.endswith(", zerosite.modules.m6_decision, m7_parking")
    assert pm.get_plugin("zerosite.modules.m6_decision") is not None


def test_the_cli_prints_a_plugin_warning_as_one_line(
    fresh_plugins: None, m7_plugins_dir: Path, write_file, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not a Python ``UserWarning`` pointing at the line of ZeroSite that raised it, followed by that line."""
    monkeypatch.chdir(tmp_path)
    broken = write_file(m7_plugins_dir / "broken_plugin.py", "raise RuntimeError('half-written plugin')\n")

    result = CliRunner().invoke(main, ["--plugins-dir", str(m7_plugins_dir), "modules"])

    assert result.exit_code == 0, result.output
    assert result.stderr == (
        f"warning: zerosite: skipped plugin 'broken_plugin' ({broken.resolve()}): RuntimeError: half-written plugin"
        " (at broken_plugin.py:1 in <module>)\n"
    )


def test_a_plugin_warning_is_given_once_by_the_parent_not_again_by_each_worker(
    fresh_plugins: None, m7_plugins_dir: Path, write_file, tmp_path: Path
) -> None:
    """Spawned workers load the plugins again: they used to repeat each warning, in Python's own format."""
    write_file(m7_plugins_dir / "broken_plugin.py", "raise RuntimeError('half-written plugin')\n")
    command = [sys.executable, "-m", "zerosite", "--plugins-dir", str(m7_plugins_dir), "generate", "--sample", "4"]
    options = ["--strategy", "process", "--workers", "2", "--start-method", "spawn", "--out", str(tmp_path / "out")]
    done = subprocess.run([*command, *options, "-q"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("skipped plugin 'broken_plugin'") == 1, done.stderr
    assert "PluginWarning" not in done.stderr


def test_a_hook_with_a_wrong_argument_skips_its_plugin_with_a_one_line_warning(
    fresh_plugins: None, plugins_dir: Path, write_file, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    write_file(
        plugins_dir / "x_arg.py",
        """
        from zerosite import hookimpl

        @hookimpl
        def zerosite_register_modules(registry):
            pass
        """,
    )
    result = CliRunner().invoke(main, ["--plugins-dir", str(plugins_dir), "modules"])
    assert result.exit_code == 0, result.output
    (line,) = result.stderr.splitlines()  # pluggy's message spans lines: one here, not "\\n" escapes
    assert line.startswith("warning: zerosite: skipped plugin 'x_arg'") and "\\n" not in line
    assert "Argument(s) {'registry'} are declared in the hookimpl but can not be found in the hookspec" in line


def test_a_hook_function_without_hookimpl_is_named_in_a_warning(
    fresh_plugins: None, plugins_dir: Path, write_file, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pluggy calls only what @hookimpl marks: the plugin's modules were missing, and nothing said why."""
    monkeypatch.chdir(tmp_path)
    write_file(
        plugins_dir / "x_nomark.py",
        """
        from zerosite import hookimpl

        def zerosite_register_modules(register):
            pass

        @hookimpl
        def zerosite_template_dirs():
            return []

        def zerosite_helper():  # no hook of that name: not a forgotten marker
            pass
        """,
    )
    result = CliRunner().invoke(main, ["--plugins-dir", str(plugins_dir), "modules"])
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [
        f"warning: zerosite: plugin 'x_nomark' ({(plugins_dir / 'x_nomark.py').resolve()}): zerosite_register_modules "
        "is not marked @hookimpl, so it is never called"
    ]


def test_a_templates_dir_that_does_not_exist_is_refused(fresh_plugins: None, tmp_path: Path) -> None:
    """A mistyped override folder would give reports that look normal but are not what was asked for."""
    result = CliRunner().invoke(main, ["--templates-dir", str(tmp_path / "no-such-dir"), "modules"])

    assert result.exit_code == 2
    assert "'--templates-dir'" in result.stderr and "does not exist" in result.stderr


# --- Validation errors name the plugins --------------------------------------------------------


def test_two_plugins_registering_one_module_name_are_both_named(plugin_settings, registered) -> None:
    settings = plugin_settings(builtin_modules=False)

    plugins = {"alpha": ModulePlugin(module("M9")), "beta": ModulePlugin(module("M9"))}

    with (
        registered(get_plugin_manager(settings), **plugins),
        pytest.raises(PluginError, match=r"module 'M9' is registered by more than one plugin") as error,
    ):
        get_modules(settings)

    assert "alpha" in str(error.value) and "beta" in str(error.value)


def test_a_plugin_replacing_a_built_in_module_name_is_an_error(plugin_settings, registered) -> None:
    settings = plugin_settings()

    with (
        registered(get_plugin_manager(settings), impostor=ModulePlugin(module("M4"))),
        pytest.raises(PluginError, match=r"module 'M4' is registered by more than one plugin") as error,
    ):
        get_modules(settings)

    assert "zerosite.modules.m4_building_scale" in str(error.value) and "impostor" in str(error.value)


def one_argument(project: Project) -> str:
    return project.id


class ReturningPlugin:
    """A plugin that returns its modules, as ``zerosite_template_dirs`` returns its folders, instead of registering."""

    @hookimpl
    def zerosite_register_modules(self, register: Callable[[ReportModule], None]) -> list[ReportModule]:
        return [module("M9")]


@pytest.mark.parametrize(
    ("plugins", "said"),
    [
        (
            {"returns": ReturningPlugin()},
            "plugin returns: zerosite_register_modules returned module(s) 'M9', which registers nothing: call "
            "register() with each module instead",
        ),
        ({"twice": ModulePlugin(module("M9"), module("M9"))}, "plugin twice registers module 'M9' more than once"),
        (
            {"onearg": ModulePlugin(dataclasses.replace(module("M9"), compute=one_argument))},
            "plugin onearg: module M9's compute one_argument (test_plugins.py:"
            f"{one_argument.__code__.co_firstlineno}) cannot be called as compute(project, deps): too many positional "
            "arguments",
        ),
        (
            {"lower": ModulePlugin(module("m2"))},
            "modules 'M2' (plugin zerosite.modules.m2_appraisal) and 'm2' (plugin lower) differ only in case, and "
            "would name the same files where case is not told apart",
        ),
    ],
    ids=["returned", "twice", "one-argument", "case"],
)
def test_a_register_hook_used_wrongly_is_refused_saying_how(
    plugin_settings, registered, plugins: dict[str, object], said: str
) -> None:
    """Plugin audit: a hook that returned its modules was ignored without a word (the module was then "unknown"); a
    module registered twice by one plugin was "registered by more than one plugin: p, p"; ``m2`` beside ``M2`` was
    taken, and their files would be one on macOS and Windows."""
    settings = plugin_settings()
    with registered(get_plugin_manager(settings), **plugins), pytest.raises(PluginError) as error:
        get_modules(settings)
    assert str(error.value) == said


def test_unknown_requirement_names_the_module_and_its_plugin(plugin_settings, registered) -> None:
    settings = plugin_settings(builtin_modules=False)

    with (
        registered(get_plugin_manager(settings), needy=ModulePlugin(module("M9", requires=("M99",)))),
        pytest.raises(PluginError, match=r"module M9 \(from plugin needy\) requires unknown module 'M99'"),
    ):
        get_modules(settings)


def test_dependency_cycle_names_the_modules_and_plugins(plugin_settings, registered) -> None:
    settings = plugin_settings(builtin_modules=False)
    first, second = ModulePlugin(module("X1", requires=("X2",))), ModulePlugin(module("X2", requires=("X1",)))

    with (
        registered(get_plugin_manager(settings), first=first, second=second),
        pytest.raises(PluginError, match=r"dependency cycle") as error,
    ):
        get_modules(settings)

    message = str(error.value)
    assert all(name in message for name in ("X1", "X2", "first", "second"))


def test_missing_template_names_the_module_its_plugin_and_the_template(plugin_settings, registered) -> None:
    settings = plugin_settings(builtin_modules=False)

    careless = ModulePlugin(module("M9", template="m9_nowhere.html.j2"))

    with (
        registered(get_plugin_manager(settings), careless=careless),
        pytest.raises(PluginError, match=r"M9 \(from plugin careless\): template 'm9_nowhere\.html\.j2' not found"),
    ):
        get_environment(settings)  # loading the templates checks every module's


def test_the_cli_reports_a_validation_error_and_exits_2(
    fresh_plugins: None,
    plugins_dir: Path,
    write_file: Callable[[Path, str], Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    write_file(
        plugins_dir / "lost.py",
        """
        from zerosite import ReportModule, hookimpl

        @hookimpl
        def zerosite_register_modules(register):
            register(ReportModule(name="M9", title="고아", compute=lambda p, d: None, template="x.html.j2",
                                  requires=("M42",)))
    """,
    )

    result = CliRunner().invoke(main, ["--plugins-dir", str(plugins_dir), "modules"])

    assert result.exit_code == 2
    assert "module M9 (from plugin lost) requires unknown module 'M42'" in result.output


def test_a_misspelt_hook_is_named_with_its_plugin_and_the_hook_meant(plugin_settings, plugins_dir, write_file) -> None:
    path = write_file(
        plugins_dir / "x_hook.py",
        """
        from zerosite import hookimpl

        @hookimpl
        def zerosite_template_dir():
            return []
    """,
    )

    with pytest.raises(PluginError) as error:
        get_plugin_manager(plugin_settings())

    assert str(error.value) == (
        f"plugin x_hook ({path.resolve()}): unknown hook 'zerosite_template_dir' (did you mean zerosite_template_dirs?)"
    )


# --- Template lookup ---------------------------------------------------------------------------


def test_default_prefix_reaches_the_built_in_templates(plugin_settings, tmp_path: Path, write_file) -> None:
    user = tmp_path / "user-templates"
    write_file(user / "base.html.j2", "USER BASE\n")
    env = get_environment(plugin_settings(templates_dir=user))

    assert env.get_template("base.html.j2").render() == "USER BASE"
    assert Path(env.get_template("default:base.html.j2").filename or "") == builtin_templates_dir() / "base.html.j2"
    assert Path(env.get_template("default:macros.html.j2").filename or "") == builtin_templates_dir() / "macros.html.j2"


def test_templates_dir_wins_over_a_plugin_template(
    fresh_plugins: None, m7_plugins_dir: Path, tmp_path: Path, write_file, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    user = tmp_path / "user-templates"
    write_file(
        user / "m7_parking.html.j2",
        """
        {% extends "default:base.html.j2" %}
        {% block summary %}<p>사용자 주차 양식 {{ result.provided }}</p>{% endblock %}
    """,
    )
    out = tmp_path / "out"

    result = CliRunner().invoke(
        main,
        [
            "--plugins-dir",
            str(m7_plugins_dir),
            "--templates-dir",
            str(user),
            "render",
            "--sample",
            "1",
            "--out",
            str(out),
            "--module",
            "M7",
        ],
    )

    assert result.exit_code == 0, result.output
    (page,) = out.glob("*/M7.html")
    html = page.read_text(encoding="utf-8")
    assert "사용자 주차 양식" in html
    assert "주차 검토 결과" not in html
    assert "법적 고지" in html


def test_plugin_templates_are_searched_before_the_built_ins(plugin_settings, m7_plugins_dir: Path, write_file) -> None:
    write_file(m7_plugins_dir / "templates" / "macros.html.j2", "PLUGIN MACROS\n")
    env = get_environment(plugin_settings())

    assert env.get_template("macros.html.j2").render() == "PLUGIN MACROS"
    assert env.get_template("default:macros.html.j2").render() != "PLUGIN MACROS"


# --- Order and hooks ---------------------------------------------------------------------------


def test_modules_come_in_dependency_order(plugin_settings, m7_plugins_dir: Path) -> None:
    modules = get_modules(plugin_settings())
    names = list(modules)

    assert {"M2", "M3", "M4", "M5", "M6", "M7"} <= set(names)
    for module_ in modules.values():
        assert all(names.index(required) < names.index(module_.name) for required in module_.requires)
    assert names.index("M3") < names.index("M4") < names.index("M5") < names.index("M6")
    assert names.index("M2") < names.index("M5")
    assert names.index("M4") < names.index("M7")


def test_built_in_plugins_load_before_entry_points_and_the_plugins_folder(
    distribution: Path, plugin_settings, m7_plugins_dir: Path
) -> None:
    pm = get_plugin_manager(plugin_settings(disabled={"fake-broken", "fake-blocked"}))
    names = [name for name, plugin in pm.list_name_plugin() if plugin is not None]  # blocked names map to None

    assert names[: len(zerosite.plugins.BUILTIN_PLUGINS)] == list(zerosite.plugins.BUILTIN_PLUGINS)
    assert names.index("fake-ok") < names.index("m7_parking")


def test_prepare_jinja2_environment_is_called_once(plugin_settings, registered, project: Project) -> None:
    calls = []

    class FilterPlugin:
        @hookimpl
        def zerosite_prepare_jinja2_environment(self, env):
            calls.append(env)
            env.filters["shout"] = lambda text: f"{text}!"

    settings = plugin_settings(builtin_modules=False)
    with registered(get_plugin_manager(settings), shouting=FilterPlugin()):
        env = get_environment(settings)
        template = env.from_string("{{ project.id|shout }}")
        first = template.render(project=project)
        assert get_environment(settings) is env
        template.render(project=project)
        get_modules(settings)

    assert calls == [env]
    assert first == f"{project.id}!"


def test_trace_plugins_writes_hook_calls_to_stderr(plugin_settings, capsys: pytest.CaptureFixture[str]) -> None:
    get_environment(plugin_settings(builtin_modules=False, trace=True))

    assert "zerosite_prepare_jinja2_environment" in capsys.readouterr().err


def test_a_copy_of_the_built_ins_in_the_plugins_folder_is_not_loaded_twice(
    plugin_settings: Callable[..., PluginSettings], plugins_dir: Path
) -> None:
    """A source checkout's plugins/ beside an installed ZeroSite holds the same files: no duplicate modules."""
    import shutil

    import zerosite.modules

    for source in Path(zerosite.modules.__file__).parent.glob("m*.py"):
        shutil.copy(source, plugins_dir / source.name)
    with pytest.warns(UserWarning, match="it is a copy of the loaded plugin") as caught:
        modules = get_modules(plugin_settings())
    skipped = sorted(str(warning.message).split(": it is a copy")[0].rsplit("/", 1)[1] for warning in caught)
    assert skipped == sorted(path.name for path in plugins_dir.glob("m*.py"))
    assert list(modules) == ["M2", "M3", "M4", "M5", "M6"]
    assert all(m.provider.startswith("zerosite.modules.") for m in modules.values())


def test_a_new_file_beside_the_built_in_files_loads(
    plugin_settings: Callable[..., PluginSettings], m7_plugins_dir: Path
) -> None:
    """A checkout's plugins/ is the built-in package: its own files are the built-ins, and a new file loads."""
    import zerosite.modules

    for source in Path(zerosite.modules.__file__).parent.glob("m*.py"):
        (m7_plugins_dir / source.name).symlink_to(source)  # the very files the built-ins were loaded from
    modules = get_modules(plugin_settings())

    assert sorted(modules) == ["M2", "M3", "M4", "M5", "M6", "M7"]
    assert modules["M7"].provider == "m7_parking"
    assert all(modules[name].provider.startswith("zerosite.modules.") for name in ("M2", "M3", "M4", "M5", "M6"))


def test_register_hooks_are_called_through_pluggy(plugin_settings, registered) -> None:
    """Hook wrappers and pluggy's call monitoring see the register hooks; providers are still named."""
    seen: list[str] = []

    class Wrapper:
        @hookimpl(wrapper=True)
        def zerosite_register_modules(self, register: Callable[[ReportModule], None]) -> object:
            seen.append("wrapper")
            return (yield)

    settings = plugin_settings(builtin_modules=False)
    pm = get_plugin_manager(settings)
    undo = pm.add_hookcall_monitoring(lambda name, impls, kwargs: seen.append(name), lambda *args: None)
    try:
        with registered(pm, wrapping=Wrapper(), mine=ModulePlugin(module("X1"))):
            modules = get_modules(settings)
    finally:
        undo()

    assert modules["X1"].provider == "mine"
    assert seen == ["zerosite_register_modules", "wrapper"]
