"""``zerosite new-module``: write a new report module as a plugins-folder file or as an installable package."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from string import Template

__all__ = ["ExistingModule", "ModuleSpec", "ScaffoldError", "scaffold_package", "scaffold_plugin_file"]

_MODULE_NAME = re.compile(r"^[A-Z][A-Za-z0-9_]*$")
_DISTRIBUTION = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")


class ScaffoldError(Exception):
    """A name that cannot be used, or files that exist already; nothing was written."""


@dataclass(frozen=True)
class ExistingModule:
    """A module of the new module's name that a loaded plugin registers already: that plugin's name and the file it
    was imported from (``None``: not a file, e.g. a plugin object)."""

    plugin: str
    file: Path | None = None


@dataclass(frozen=True)
class ModuleSpec:
    """What the new module is called, its title and the modules it requires."""

    name: str
    title: str
    requires: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        problems = (
            []
            if _MODULE_NAME.match(self.name)
            else [f"module name {self.name!r} must be like M7: a capital letter, then letters, digits or _"]
        )
        problems += [f"required module {r!r} is not a module name" for r in self.requires if not r.isidentifier()]
        if not self.title.strip() or any(c in self.title for c in '"\\\n'):
            problems.append(f"title {self.title!r} must be one non-empty line without quotes or backslashes")
        if self.name in self.requires:
            problems.append(f"module {self.name} cannot require itself")
        if problems:
            raise ScaffoldError("; ".join(problems))

    @property
    def stem(self) -> str:
        """The plugin file's stem and the template's, e.g. ``m7``."""
        return self.name.lower()

    def substitutions(self) -> dict[str, str]:
        requires = ", ".join(f'"{r}"' for r in self.requires)
        return {
            "name": self.name,
            "title": self.title,
            "stem": self.stem,
            "template": f"{self.stem}.html.j2",
            "params_class": f"{self.name}Params",
            "result_class": f"{self.name}Result",
            "compute_function": f"compute_{self.stem}",
            "requires_tuple": f"({requires},)" if self.requires else "()",
            "requires_text": ", ".join(self.requires) or "no other module",
            "requires_sentence": f" (requires {', '.join(self.requires)})" if self.requires else "",
        }


def scaffold_plugin_file(
    spec: ModuleSpec, plugins_dir: Path, *, force: bool = False, existing: ExistingModule | None = None
) -> list[Path]:
    """Write ``plugins_dir/<stem>.py`` and ``plugins_dir/templates/<stem>.html.j2``; return their paths.

    ``existing``: the module of this name that is loaded already, if any (see :func:`_refuse_a_taken_name`).
    """
    files: dict[Path, str | None] = {
        plugins_dir / f"{spec.stem}.py": "plugin.py.tmpl",
        plugins_dir / "templates" / f"{spec.stem}.html.j2": "template.html.j2.tmpl",
    }
    _refuse_a_taken_name(spec, existing, files)
    return _write(files, spec.substitutions(), force)


def scaffold_package(
    spec: ModuleSpec, folder: Path, *, force: bool = False, existing: ExistingModule | None = None
) -> list[Path]:
    """Write an installable package into ``folder``, named after it (``zerosite-m7`` → ``zerosite_m7``)."""
    distribution = folder.resolve().name
    if not _DISTRIBUTION.match(distribution):
        raise ScaffoldError(
            f"package folder name {distribution!r} must be letters, digits, - or _, starting with a letter"
        )
    package = distribution.replace("-", "_").lower()
    source = folder / "src" / package
    files = {
        folder / "pyproject.toml": "pyproject.toml.tmpl",
        folder / "README.md": "README.md.tmpl",
        source / "__init__.py": "plugin.py.tmpl",
        source / "py.typed": None,
        source / "templates" / f"{spec.stem}.html.j2": "template.html.j2.tmpl",
        folder / "tests" / f"test_{spec.stem}.py": "test_module.py.tmpl",
        folder / "bench" / f"test_{spec.stem}_bench.py": "test_bench.py.tmpl",
    }
    _refuse_a_taken_name(spec, existing, files)
    return _write(files, {**spec.substitutions(), "distribution": distribution, "package": package}, force)


def _refuse_a_taken_name(spec: ModuleSpec, existing: ExistingModule | None, files: Iterable[Path]) -> None:
    """Refuse a name another plugin registers, even with ``force``: two plugins registering one module name stop
    every command. A module this scaffold wrote before (its file is one about to be written) is only overwritten,
    which ``force`` allows."""
    if existing is None:
        return
    if existing.file is not None and existing.file.resolve() in {path.resolve() for path in files}:
        return
    raise ScaffoldError(f"module {spec.name!r} exists already (plugin {existing.plugin}); choose another name")


def _write(files: dict[Path, str | None], substitutions: dict[str, str], force: bool) -> list[Path]:
    """Fill each skeleton (None: an empty file) and write it; refuse, writing nothing, if any file exists."""
    existing = [path for path in files if path.exists()]
    if existing and not force:
        raise ScaffoldError(f"would overwrite {', '.join(map(str, existing))}; pass --force to replace")
    texts = {path: _fill(skeleton, substitutions) for path, skeleton in files.items()}
    for path, text in texts.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return list(texts)


def _fill(skeleton: str | None, substitutions: dict[str, str]) -> str:
    if skeleton is None:
        return ""
    text = (resources.files("zerosite") / "skeleton" / skeleton).read_text(encoding="utf-8")
    return Template(text).substitute(substitutions)
