"""The plugin manager: one load order, typed accessors, and validation errors that name the plugins."""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.metadata
import importlib.util
import os
import sys
import warnings
from collections.abc import Mapping
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
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as error:
        raise PluginError(f"plugin {error.plugin!r}: {error}") from None
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
                f"zerosite: skipped plugin {entry_point.name!r} ({entry_point.value}): {type(error).__name__}: {error}",
                stacklevel=2,
            )
            continue
        _register(pm, plugin, entry_point.name, entry_point.value)


def _load_plugins_dir(pm: pluggy.PluginManager, folder: Path) -> None:
    builtin = Path(importlib.import_module("zerosite.modules").__file__ or "").parent.resolve()
    if not folder.is_dir() or folder.resolve() == builtin:
        return
    # A checkout's plugins/ beside an installed copy of ZeroSite holds the built-ins again: same bytes, same plugin.
    loaded = {_digest(Path(p.__file__)) for p in pm.get_plugins() if isinstance(getattr(p, "__file__", None), str)}
    for path in sorted(folder.glob("*.py")):
        name = path.stem
        if name.startswith("_") or pm.is_blocked(name) or _digest(path) in loaded:
            continue
        if pm.get_plugin(name) is not None:
            warnings.warn(f"zerosite: skipped plugin file {path}: a plugin named {name!r} is loaded", stacklevel=2)
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
        _register(pm, module, name, str(path))


def _digest(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return ""


def _register(pm: pluggy.PluginManager, plugin: object, name: str, origin: str) -> None:
    """Register a third-party plugin, skipping it with a warning if pluggy refuses it (bad hook signature)."""
    try:
        pm.register(plugin, name=name)
    except (pluggy.PluginValidationError, ValueError) as error:
        warnings.warn(f"zerosite: skipped plugin {name!r} ({origin}): {error}", stacklevel=3)


T = TypeVar("T")


def _collect(settings: PluginSettings, hook_name: str, kind: type[T], what: str) -> dict[str, T]:
    """Call a ``register`` hook plugin by plugin, so each item's provider is known; refuse two of one name."""
    pm = get_plugin_manager(settings)
    found: dict[str, list[tuple[str, T]]] = {}
    for impl in getattr(pm.hook, hook_name).get_hookimpls():
        items: list[T] = []

        def register(item: T, plugin: str = impl.plugin_name, items: list[T] = items) -> None:
            if not isinstance(item, kind):
                raise PluginError(f"plugin {plugin} registered {item!r}, which is not a {kind.__name__}")
            items.append(item)

        if settings.trace:
            pm.trace.root.get("hook")(f"{hook_name} [{impl.plugin_name}]")
        try:
            impl.function(**{name: register for name in impl.argnames})
        except PluginError:
            raise
        except Exception as error:
            why = f"{type(error).__name__}: {error}"
            raise PluginError(f"plugin {impl.plugin_name}: {hook_name} failed: {why}") from error
        for item in items:
            found.setdefault(getattr(item, "name"), []).append((impl.plugin_name, item))  # noqa: B009
    clashes = {name: [p for p, _ in providers] for name, providers in found.items() if len(providers) > 1}
    if clashes:
        raise PluginError(
            "; ".join(
                f"{what} {name!r} is registered by more than one plugin: {', '.join(who)}"
                for name, who in clashes.items()
            )
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
    from zerosite.rendering import get_environment, template_problems

    modules = _collect(settings, "zerosite_register_modules", ReportModule, "module")
    problems = [
        f"module {m.name} (from plugin {m.provider}) requires unknown module {r!r}"
        for m in modules.values()
        for r in m.requires
        if r not in modules
    ]
    if problems:
        raise PluginError("; ".join(problems))
    ordered = dependency_order(modules)
    problems = template_problems(get_environment(settings), ordered)
    if problems:
        raise PluginError("; ".join(problems))
    return {m.name: m for m in ordered}


def get_strategies(settings: PluginSettings | None = None) -> dict[str, Strategy]:
    """Every registered concurrency strategy by name."""
    from zerosite.strategies import Strategy

    return _collect(settings or plugin_settings(), "zerosite_register_strategies", Strategy, "strategy")


def get_data_sources(settings: PluginSettings | None = None) -> dict[str, DataSource]:
    """Every registered data source by name."""
    from zerosite.sources import DataSource

    return _collect(settings or plugin_settings(), "zerosite_register_data_sources", DataSource, "data source")
