"""The plugin manager: one load order, typed accessors, and validation errors that name the plugins."""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import importlib.util
import os
import sys
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pluggy

from zerosite import hookspecs
from zerosite.types import ReportModule

if TYPE_CHECKING:
    from zerosite.sources import DataSource
    from zerosite.strategies import Strategy

__all__ = [
    "BUILTIN_PLUGINS",
    "ENTRY_POINT_GROUP",
    "LOCAL_PLUGIN_PACKAGE",
    "PluginError",
    "PluginSettings",
    "get_data_sources",
    "get_modules",
    "get_plugin_manager",
    "get_strategies",
    "plugin_settings",
    "set_plugin_settings",
]

ENTRY_POINT_GROUP = "zerosite"
LOCAL_PLUGIN_PACKAGE = "zerosite_local_plugins"
BUILTIN_PLUGINS: tuple[str, ...] = (
    "zerosite.strategies",
    "zerosite.sources",
    "zerosite.modules.m2_appraisal",
    "zerosite.modules.m3_supply_type",
    "zerosite.modules.m4_building_scale",
    "zerosite.modules.m5_feasibility",
    "zerosite.modules.m6_decision",
)
"""Registered first, in this order, under their dotted module names."""


class PluginError(Exception):
    """Plugins that cannot work together; the message names the plugins involved."""


@dataclass(frozen=True)
class PluginSettings:
    """Where plugins and templates come from; hashable, so each distinct setting builds one manager."""

    plugins_dir: Path | None = None
    disabled: frozenset[str] = frozenset()
    templates_dir: Path | None = None
    trace: bool = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> PluginSettings:
        """Settings from ``ZEROSITE_PLUGINS_DIR``, ``ZEROSITE_DISABLE_PLUGINS`` (comma-separated),
        ``ZEROSITE_TEMPLATES_DIR`` and ``ZEROSITE_TRACE_PLUGINS``; the plugins folder defaults to
        ``./plugins`` when it exists."""
        plugins_dir = environ.get("ZEROSITE_PLUGINS_DIR")
        templates_dir = environ.get("ZEROSITE_TEMPLATES_DIR")
        disabled = frozenset(n.strip() for n in environ.get("ZEROSITE_DISABLE_PLUGINS", "").split(",") if n.strip())
        return cls(
            plugins_dir=Path(plugins_dir) if plugins_dir else (Path("plugins") if Path("plugins").is_dir() else None),
            disabled=disabled,
            templates_dir=Path(templates_dir) if templates_dir else None,
            trace=environ.get("ZEROSITE_TRACE_PLUGINS", "") not in {"", "0"},
        )

    def resolved(self) -> PluginSettings:
        """The same settings with absolute paths, safe to send to worker processes."""
        return replace(
            self,
            plugins_dir=self.plugins_dir.resolve() if self.plugins_dir else None,
            templates_dir=self.templates_dir.resolve() if self.templates_dir else None,
        )


_settings: PluginSettings | None = None


def set_plugin_settings(settings: PluginSettings) -> None:
    """Choose the settings that the accessors below use by default in this process."""
    global _settings
    _settings = settings.resolved()


def plugin_settings() -> PluginSettings:
    """This process's settings: those set last, else those from the environment."""
    return _settings if _settings is not None else PluginSettings.from_env().resolved()


def get_plugin_manager(settings: PluginSettings | None = None) -> pluggy.PluginManager:
    """The plugin manager for ``settings``, built on first use and cached."""
    return _build_manager(settings or plugin_settings())


@functools.cache
def _build_manager(settings: PluginSettings) -> pluggy.PluginManager:
    pm = pluggy.PluginManager("zerosite")
    pm.add_hookspecs(hookspecs)
    for name in settings.disabled:
        pm.set_blocked(name)
    for dotted in BUILTIN_PLUGINS:
        if not pm.is_blocked(dotted):
            pm.register(importlib.import_module(dotted), name=dotted)
    _load_entry_points(pm)
    if settings.plugins_dir is not None:
        _load_plugins_dir(pm, settings.plugins_dir)
    if settings.trace:
        pm.trace.root.setwriter(lambda message: print(message, end="", file=sys.stderr))
        pm.enable_tracing()
    return pm


def _load_entry_points(pm: pluggy.PluginManager) -> None:
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if pm.is_blocked(entry_point.name) or pm.get_plugin(entry_point.name) is not None:
            continue
        try:
            plugin = entry_point.load()
        except Exception as error:  # a broken third-party plugin must not stop the others
            warnings.warn(
                f"zerosite: skipped plugin {entry_point.name!r} ({entry_point.value}): "
                f"{type(error).__name__}: {error}",
                stacklevel=2,
            )
            continue
        pm.register(plugin, name=entry_point.name)


def _load_plugins_dir(pm: pluggy.PluginManager, folder: Path) -> None:
    builtin = Path(importlib.import_module("zerosite.modules").__file__ or "").parent.resolve()
    if not folder.is_dir() or folder.resolve() == builtin:
        return
    for path in sorted(folder.glob("*.py")):
        name = path.stem
        if name.startswith("_") or pm.is_blocked(name) or pm.get_plugin(name) is not None:
            continue
        module_name = f"{LOCAL_PLUGIN_PACKAGE}.{name}"
        try:
            spec = importlib.util.spec_from_file_location(module_name, path)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[module_name] = module
            spec.loader.exec_module(module)
        except Exception as error:
            sys.modules.pop(module_name, None)
            warnings.warn(f"zerosite: skipped plugin {name!r} ({path}): {type(error).__name__}: {error}", stacklevel=2)
            continue
        pm.register(module, name=name)


T = TypeVar("T")


def _collect(pm: pluggy.PluginManager, hook_name: str, key: Callable[[T], str], what: str) -> dict[str, T]:
    """Call a ``register`` hook, record each item's provider and refuse two items of one name."""
    found: dict[str, list[tuple[str, T]]] = {}
    hook = getattr(pm.hook, hook_name)
    for impl in hook.get_hookimpls():
        items: list[T] = []
        impl.function(items.append)
        for item in items:
            found.setdefault(key(item), []).append((impl.plugin_name, item))
    clashes = {name: [p for p, _ in providers] for name, providers in found.items() if len(providers) > 1}
    if clashes:
        raise PluginError(
            "; ".join(f"{what} {name!r} is registered by more than one plugin: {', '.join(who)}" for name, who in clashes.items())
        )
    return {name: _with_provider(providers[0][1], providers[0][0]) for name, providers in sorted(found.items())}


def _with_provider(item: Any, provider: str) -> Any:
    if isinstance(item, ReportModule):
        return replace(item, provider=provider)
    return item


def get_modules(settings: PluginSettings | None = None) -> dict[str, ReportModule]:
    """Every registered report module by name, in dependency order, validated."""
    return _modules(settings or plugin_settings())


@functools.cache
def _modules(settings: PluginSettings) -> dict[str, ReportModule]:
    from zerosite.pipeline import dependency_order
    from zerosite.rendering import get_environment, missing_templates

    modules = _collect(get_plugin_manager(settings), "zerosite_register_modules", lambda m: m.name, "module")
    problems = [
        f"module {m.name} (from plugin {m.provider}) requires unknown module {r!r}"
        for m in modules.values()
        for r in m.requires
        if r not in modules
    ]
    if problems:
        raise PluginError("; ".join(problems))
    ordered = dependency_order(modules)
    missing = missing_templates(get_environment(settings), ordered)
    if missing:
        raise PluginError(
            "; ".join(f"module {m.name} (from plugin {m.provider}): template {m.template!r} not found" for m in missing)
        )
    return {m.name: m for m in ordered}


def get_strategies(settings: PluginSettings | None = None) -> dict[str, Strategy]:
    """Every registered concurrency strategy by name."""
    return _collect(get_plugin_manager(settings), "zerosite_register_strategies", lambda s: s.name, "strategy")


def get_data_sources(settings: PluginSettings | None = None) -> dict[str, DataSource]:
    """Every registered data source by name."""
    return _collect(get_plugin_manager(settings), "zerosite_register_data_sources", lambda s: s.name, "data source")

