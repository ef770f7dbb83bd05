"""`zerosite new-module`: a plugins-folder file that loads and renders, a package that installs and passes its tests."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from zerosite.cli import main
from zerosite.contracts import render_contracts
from zerosite.plugins import PluginSettings, get_modules
from zerosite.scaffold import ModuleSpec, ScaffoldError, scaffold_package, scaffold_plugin_file

CHECKOUT = Path(__file__).resolve().parents[1]
M7 = ("new-module", "M7", "--title", "주차 검토", "--requires", "M4")


def zerosite(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the CLI in a fresh process, as a user would, without the shell's ZEROSITE_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZEROSITE_")}
    command = [sys.executable, "-m", "zerosite", *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, env=env, check=False)


def test_a_plugin_file_loads_and_renders(tmp_path: Path) -> None:
    plugins = tmp_path / "plugins"
    made = zerosite("--plugins-dir", str(plugins), *M7)
    assert made.returncode == 0, made.stderr
    assert sorted(p.relative_to(plugins).as_posix() for p in plugins.rglob("*.*")) == ["m7.py", "templates/m7.html.j2"]

    listed = zerosite("--plugins-dir", str(plugins), "modules").stdout
    assert any(line.split()[:5] == ["M7", "주차", "검토", "M4", "1"] and "m7" in line for line in listed.splitlines())

    out = tmp_path / "out"
    rendered = zerosite("--plugins-dir", str(plugins), "render", "--sample", "2", "--out", str(out), "--module", "M7")
    assert rendered.returncode == 0, rendered.stderr
    reports = sorted(out.glob("*/*.html"))
    assert [r.name for r in reports] == ["M7.html", "M7.html"]
    assert all("주차 검토" in r.read_text(encoding="utf-8") for r in reports)


def test_two_modules_in_one_plugins_folder_share_its_templates_folder(tmp_path: Path) -> None:
    """User audit: the second ``new-module`` wrote a layout every command then refused (each template "in the
    folders of plugins m7 and m8", one folder); and it named its files by absolute path, the first by relative."""
    first = zerosite(*M7, cwd=tmp_path)
    second = zerosite("new-module", "M8", "--title", "일조 검토", cwd=tmp_path)
    assert first.stdout.split() == ["wrote", "plugins/m7.py", "wrote", "plugins/templates/m7.html.j2"], first.stderr
    assert second.stdout.split() == ["wrote", "plugins/m8.py", "wrote", "plugins/templates/m8.html.j2"], second.stderr
    out = tmp_path / "out"
    rendered = zerosite("render", "--sample", "1", "--out", str(out), "--module", "M7", "--module", "M8", cwd=tmp_path)
    assert rendered.returncode == 0, rendered.stderr
    assert sorted(p.name for p in out.glob("*/*.html")) == ["M7.html", "M8.html"]


def test_a_new_plugins_folder_is_made_without_a_warning(tmp_path: Path) -> None:
    """It used to warn that the folder it was about to make did not exist."""
    made = zerosite("--plugins-dir", str(tmp_path / "new"), *M7)

    assert (made.returncode, made.stderr) == (0, "")
    assert (tmp_path / "new" / "m7.py").is_file()


def test_the_title_is_text_in_the_report_whatever_it_holds(tmp_path: Path) -> None:
    """Jinja delimiters and HTML in a title are shown, escaped, never run: it used to be pasted into the template."""
    title = "주차 {{ 7*7 }} {% if %} {# <i>검토</i> & $name'"
    plugins, out = str(tmp_path / "plugins"), str(tmp_path / "out")
    made = zerosite("--plugins-dir", plugins, "new-module", "M7", "--title", title)
    assert made.returncode == 0, made.stderr

    rendered = zerosite("--plugins-dir", plugins, "render", "--sample", "1", "--out", out, "--module", "M7", "-q")

    assert rendered.returncode == 0, rendered.stderr
    (report,) = (tmp_path / "out").glob("*/M7.html")
    html = report.read_text(encoding="utf-8")
    shown = "주차 {{ 7*7 }} {% if %} {# &lt;i&gt;검토&lt;/i&gt; &amp; $name&#39;"
    for place in (f'<div class="figure">{shown}</div>', f"<caption>M7 {shown}</caption>", f"<h2>1. {shown}</h2>"):
        assert place in html


def test_a_name_another_plugin_registers_is_refused_even_with_force(tmp_path: Path, fresh_plugins: None) -> None:
    """Two plugins registering one module name stop every command: --force must not lead there."""
    forced = ("new-module", "M2", "--title", "감정", "--force")
    result = CliRunner().invoke(main, ["--plugins-dir", str(tmp_path), *forced])

    assert (result.exit_code, list(tmp_path.iterdir())) == (2, [])
    taken = "module 'M2' exists already (plugin zerosite.modules.m2_appraisal); choose another name"
    assert result.stderr == f"error: {taken}\n"


def test_a_module_the_scaffold_wrote_is_overwritten_with_force(tmp_path: Path) -> None:
    """The name is taken by the very file the scaffold would write: that is overwriting, which --force allows."""
    assert zerosite("--plugins-dir", str(tmp_path), *M7).returncode == 0

    again = zerosite("--plugins-dir", str(tmp_path), *M7)
    assert again.returncode == 2 and again.stderr.startswith("error: would overwrite ")
    forced = zerosite("--plugins-dir", str(tmp_path), *M7, "--force")
    assert forced.returncode == 0, forced.stderr


def test_the_generated_code_is_linted_and_its_result_documented(tmp_path: Path, fresh_plugins: None) -> None:
    scaffold_plugin_file(ModuleSpec("M7", "주차 검토", ("M4",)), tmp_path)
    linted = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", str(tmp_path)], capture_output=True)
    assert linted.returncode == 0, linted.stdout
    m7 = get_modules(PluginSettings(plugins_dir=tmp_path).resolved())["M7"]
    assert "| `land_area_sqm` | `float` | ㎡ | Land area of the site |" in render_contracts([m7])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("new-module", "m7", "--title", "x"), "must be like M7"),
        (("new-module", "M7", "--title", " "), "one non-empty line"),
        (("new-module", "M7", "--title", "x", "--requires", "M9"), "unknown required module(s): 'M9'"),
        (("new-module", "M4", "--title", "x"), "module 'M4' exists already"),
    ],
    ids=["lowercase", "blank-title", "unknown-requires", "taken"],
)
def test_bad_names_exit_2_and_write_nothing(
    args: tuple[str, ...], message: str, tmp_path: Path, fresh_plugins: None
) -> None:
    result = CliRunner().invoke(main, ["--plugins-dir", str(tmp_path), *args])
    assert (result.exit_code, list(tmp_path.iterdir())) == (2, [])
    assert message in result.output


def test_existing_files_are_kept_unless_forced(tmp_path: Path, fresh_plugins: None) -> None:
    mine = tmp_path / "m7.py"
    mine.write_text("# mine\n", encoding="utf-8")
    refused = CliRunner().invoke(main, ["--plugins-dir", str(tmp_path), *M7])
    assert refused.exit_code == 2 and "would overwrite" in refused.output and "--force" in refused.output
    assert mine.read_text(encoding="utf-8") == "# mine\n" and not (tmp_path / "templates").exists()
    forced = CliRunner().invoke(main, ["--plugins-dir", str(tmp_path), *M7, "--force"])
    assert forced.exit_code == 0 and "MODULE = ReportModule(" in mine.read_text(encoding="utf-8")


def test_the_package_declares_what_pip_can_resolve(tmp_path: Path) -> None:
    scaffold_package(ModuleSpec("M7", "주차 검토", ("M4",)), tmp_path / "zerosite-parking")
    (tmp_path / "zerosite-parking" / "reports").mkdir()  # what the benchmark leaves: must not be taken for a package
    project = tomllib.loads((tmp_path / "zerosite-parking" / "pyproject.toml").read_text(encoding="utf-8"))
    assert project["project"]["dependencies"] == []
    assert project["project"]["entry-points"]["zerosite"] == {"zerosite_parking": "zerosite_parking"}
    assert project["tool"]["setuptools"]["packages"] == ["zerosite_parking"]
    assert project["tool"]["setuptools"]["package-data"]["zerosite_parking"] == ["py.typed", "templates/*.j2"]


def test_a_package_folder_needs_a_usable_name(tmp_path: Path) -> None:
    with pytest.raises(ScaffoldError, match="package folder name"):
        scaffold_package(ModuleSpec("M7", "주차 검토"), tmp_path / "7 parking")


@pytest.mark.slow
def test_the_package_installs_beside_zerosite_and_passes_its_tests(tmp_path: Path) -> None:
    """Fresh venv: ZeroSite from this checkout, then the package; its tests pass, its benchmark collects."""
    package = tmp_path / "zerosite-m7"
    title = "주차 & <검토>"  # its own tests find it in the report, escaped as the report shows text
    assert zerosite(*M7[:3], title, *M7[4:], "--package", str(package), cwd=tmp_path).returncode == 0
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    # ZeroSite's dependencies come from this environment (a .pth file), so pip installs the two packages
    # themselves without resolving and fetching the dependencies again: that is what this test is about.
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    Path(site, "zerosite-test-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n", encoding="utf-8")

    def run(*args: str) -> str:
        done = subprocess.run([python, *args], cwd=package, capture_output=True, text=True, check=False)
        assert done.returncode == 0, f"{' '.join(args)}:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    run("-m", "pip", "install", "--quiet", "--no-deps", "-e", str(CHECKOUT))
    run("-m", "pip", "install", "--quiet", "--no-deps", "-e", ".")
    assert "2 passed" in run("-m", "pytest", "-p", "no:cacheprovider")
    collected = run("-m", "pytest", "-p", "no:cacheprovider", "--collect-only", "-q", "bench")
    assert "test_m7[module=M7-strategy=sequential-workers=1-scenario=cpu]" in collected


def test_the_guide_shows_the_pyproject_the_scaffold_writes(tmp_path: Path) -> None:
    guide = (CHECKOUT / "docs" / "plugins.md").read_text(encoding="utf-8")
    shown = tomllib.loads(guide.split('# pyproject.toml of the package "zerosite-parking"\n')[1].split("```")[0])
    scaffold_package(ModuleSpec("M7", "주차 검토", ("M4",)), tmp_path / "zerosite-parking")
    written = tomllib.loads((tmp_path / "zerosite-parking" / "pyproject.toml").read_text(encoding="utf-8"))
    assert shown["build-system"] == written["build-system"]
    assert shown["project"].items() <= written["project"].items()
    assert shown["tool"]["setuptools"] == written["tool"]["setuptools"]
