"""The plugin manager: one load order, typed accessors, and validation errors that name the plugins."""

from __future__ import annotations

import contextlib
import difflib
import functools
import hashlib
import importlib
import importlib.machinery
import importlib.metadata
import importlib.util
import inspect
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import pluggy

from zerosite import hookspecs
from zerosite.types import (
    CacheBackend,
    DataSource,
    PluginError,
    PluginSettings,
    ReportModule,
    Strategy,
    dependency_order,
    describe_error,
    raised_at,
)

__all__ = [
    "BUILTIN_PLUGINS",
    "ENTRY_POINT_GROUP",
    "LOCAL_PLUGIN_PACKAGE",
    "PluginError",
    "PluginSettings",
    "PluginWarning",
    "each_plugin",
    "forget_loaded",
    "get_cache_backends",
    "get_data_sources",
    "get_modules",
    "get_plugin_file",
    "get_plugin_manager",
    "get_strategies",
    "plugin_settings",
    "set_plugin_settings",
]

ENTRY_POINT_GROUP = "zerosite"
LOCAL_PLUGIN_PACKAGE = "zerosite_local_plugins"
BUILTIN_PLUGINS: tuple[str, ...] = (
    "zerosite.strategies",
    "zerosite.dask_strategy",
    "zerosite.strategies_auto",
    "zerosite.sources",
    "zerosite.caches",
    "zerosite.modules.m2_appraisal",
    "zerosite.modules.m3_supply_type",
    "zerosite.modules.m4_building_scale",
    "zerosite.modules.m5_feasibility",
    "zerosite.modules.m6_decision",
)
"""Registered first, in this order, under their dotted module names (imported by name: they sit above this layer)."""


class PluginWarning(UserWarning):
    """A plugin was skipped, or a plugin setting matched nothing; the command goes on without it. The CLI prints
    these as one ``warning:`` line each: where in ZeroSite they were raised is no use to the reader."""


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


def get_plugin_file(name: str, settings: PluginSettings | None = None) -> Path | None:
    """The file the loaded plugin ``name`` was imported from; ``None`` for a plugin that is not a module's file."""
    file = getattr(get_plugin_manager(settings).get_plugin(name), "__file__", None)
    return Path(file) if isinstance(file, str) else None


def forget_loaded() -> None:
    """Drop this process's cached plugin managers and module tables: the next use builds them from the plugin files
    as they are now (see :func:`zerosite.rendering.forget_loaded_code`)."""
    _build_manager.cache_clear()
    _modules.cache_clear()


@functools.cache
def _build_manager(settings: PluginSettings) -> pluggy.PluginManager:
    pm = pluggy.PluginManager("zerosite")
    pm.add_hookspecs(hookspecs)
    for name in settings.disabled:
        pm.set_blocked(name)
    with plugin_output():  # what a plugin prints as it is imported
        for dotted in BUILTIN_PLUGINS:
            if not pm.is_blocked(dotted):
                pm.register(importlib.import_module(dotted), name=dotted)
        names = [*BUILTIN_PLUGINS, *_load_entry_points(pm)]
        if settings.plugins_dir is not None:
            names += _load_plugins_dir(pm, settings.plugins_dir)
    _warn_unmatched_blocks(settings.disabled, names)
    _check_hook_names(pm)
    if settings.trace:
        pm.trace.root.setwriter(lambda message: print(message, end="", file=sys.stderr))
        pm.enable_tracing()
    return pm


def _load_entry_points(pm: pluggy.PluginManager) -> list[str]:
    """Load the entry points of group ``zerosite``; return the names of all of them, loaded or not."""
    names = []
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        names.append(entry_point.name)
        if pm.is_blocked(entry_point.name) or pm.get_plugin(entry_point.name) is not None:
            continue
        try:
            plugin = entry_point.load()
        except (Exception, SystemExit) as error:  # a broken third-party plugin must not stop the others
            _warn(f"skipped plugin {entry_point.name!r} ({entry_point.value}): {_failure(error)}")
            continue
        _register(pm, plugin, entry_point.name, entry_point.value)
    return names


def _load_plugins_dir(pm: pluggy.PluginManager, folder: Path) -> list[str]:
    """Import every ``*.py`` file of ``folder`` (but ``_*.py``) under ``zerosite_local_plugins.<stem>``; return
    the names (stems) of all of them, loaded or not.

    Each file loads, or is skipped with a warning that names it; a file that *is* a loaded plugin's own
    file (a source checkout's ``plugins/`` is the built-in package) is that plugin, already loaded.
    """
    if not folder.is_dir():
        _warn(f"the plugins folder {folder} does not exist; no plugin files loaded")
        return []
    _add_to_local_package(folder)
    loaded = {Path(f).resolve(): name for name, f in _plugin_files(pm)}
    loaded_digests = {_digest(path): name for path, name in loaded.items()}
    files = [path for path in sorted(folder.glob("*.py")) if not path.stem.startswith("_")]
    for path in files:
        name = path.stem
        if pm.is_blocked(name) or path.resolve() in loaded:
            continue
        twin = loaded_digests.get(_digest(path))
        if twin is not None:
            _warn(f"skipped plugin file {path}: it is a copy of the loaded plugin {twin!r}")
        elif pm.get_plugin(name) is not None:
            _warn(f"skipped plugin file {path}: a plugin named {name!r} is loaded")
        else:
            module = _import_file(name, path)
            if module is not None:
                _register(pm, module, name, str(path))
    return [path.stem for path in files]


def _add_to_local_package(folder: Path) -> None:
    """Make ``zerosite_local_plugins`` a package whose ``__path__`` holds ``folder``, so that a plugin file can
    import the folder's private helpers (``from ._helpers import X``). A worker process builds its manager from the
    same settings, so it gets the same package, whatever its start method."""
    package = sys.modules.get(LOCAL_PLUGIN_PACKAGE)
    path = getattr(package, "__path__", None)
    if package is None or not isinstance(path, list):
        spec = importlib.machinery.ModuleSpec(LOCAL_PLUGIN_PACKAGE, None, is_package=True)
        package = importlib.util.module_from_spec(spec)
        sys.modules[LOCAL_PLUGIN_PACKAGE] = package
        path = package.__path__
    if str(folder) not in path:
        path.insert(0, str(folder))


def _plugin_files(pm: pluggy.PluginManager) -> list[tuple[str, str]]:
    """``(name, file)`` of every registered plugin that is a module loaded from a file."""
    named = ((pm.get_name(plugin) or "?", getattr(plugin, "__file__", None)) for plugin in pm.get_plugins())
    return [(name, file) for name, file in named if isinstance(file, str)]


def _import_file(name: str, path: Path) -> object | None:
    module_name = f"{LOCAL_PLUGIN_PACKAGE}.{name}"
    try:
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load {path} as a Python module")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as error:
        sys.modules.pop(module_name, None)
        _warn(f"skipped plugin {name!r} ({path}): {_failure(error)}")
        return None
    return module


def _failure(error: BaseException) -> str:
    """What went wrong loading a plugin; ``sys.exit()`` at import time is a failure like any other, not an exit."""
    if isinstance(error, SystemExit):
        return f"it called sys.exit({error.code!r}) while being imported"
    if isinstance(error, SyntaxError) and error.filename:  # its own text names the file by its last part alone
        return f"{type(error).__name__}: {error.msg} ({error.filename}, line {error.lineno})"
    return f"{type(error).__name__}: {error}{raised_at(error)}"


def _warn(message: str) -> None:
    warnings.warn(f"zerosite: {message}", PluginWarning, stacklevel=2)


def _did_you_mean(word: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(word, candidates, n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def _warn_unmatched_blocks(blocked: frozenset[str], names: list[str]) -> None:
    """Warn about each blocked name that is no plugin's: a typo in ``ZEROSITE_DISABLE_PLUGINS`` blocks nothing, and
    the reports would look normal."""
    for name in sorted(blocked - set(names)):
        _warn(
            f"ZEROSITE_DISABLE_PLUGINS names no plugin: {name!r}{_did_you_mean(name, names)}; "
            f"the plugins are: {', '.join(names)}"
        )


def _check_hook_names(pm: pluggy.PluginManager) -> None:
    """Refuse an implementation of a hook that has no specification (a misspelt hook is never called), naming its
    plugin and file once, with the hook it probably meant (pluggy's own message shows the plugin's repr twice)."""
    hooks = vars(pm.hook)
    specified = sorted(name for name, caller in hooks.items() if caller.has_spec())
    problems = [
        f"plugin {impl.plugin_name}{_origin(impl.plugin)}: unknown hook {name!r}{_did_you_mean(name, specified)}"
        for name, caller in sorted(hooks.items())
        if not caller.has_spec()
        for impl in caller.get_hookimpls()
        if not impl.optionalhook
    ]
    if problems:
        raise PluginError("; ".join(problems))


def _origin(plugin: object) -> str:
    """`` (FILE)`` for a plugin that is a module loaded from a file, else nothing."""
    file = getattr(plugin, "__file__", None)
    return f" ({file})" if isinstance(file, str) else ""


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
        why = "; ".join(line.strip() for line in str(error).splitlines() if line.strip())  # pluggy's: several lines
        _warn(f"skipped plugin {name!r} ({origin}): {why}")
        return
    unmarked = [attr for attr in dir(plugin) if attr in vars(pm.hook) and pm.parse_hookimpl_opts(plugin, attr) is None]
    for attr in unmarked:  # pluggy calls only what @hookimpl marks: the function would be left out without a word
        _warn(f"plugin {name!r} ({origin}): {attr} is not marked @hookimpl, so it is never called")


T = TypeVar("T")


def plugin_output() -> contextlib.AbstractContextManager[object]:
    """Where plugin code's prints go while zerosite runs it: standard error. Standard output is the command's own
    (its tables, the ``--json`` that programs read), here and in pool workers (``worker.warm_process``). On the main
    thread only: ``sys.stdout`` is the process's, and two threads that swapped it in turn could leave it swapped."""
    if sys.stdout is sys.stderr or threading.current_thread() is not threading.main_thread():
        return contextlib.nullcontext()
    return contextlib.redirect_stdout(sys.stderr)


def each_plugin(pm: pluggy.PluginManager, hook_name: str) -> Iterator[tuple[str, Callable[..., list[Any]]]]:
    """The plugins that implement a hook, in load order, each with a call of the hook for that plugin alone (with
    every wrapper around it): ``(plugin name, call)``. So what a plugin returns or registers is known to be its
    own, and a plugin's failure is named: ``call`` raises :class:`PluginError` ("plugin NAME: HOOK failed: ...")
    for whatever the plugin's hook raised."""
    providers = [impl for impl in getattr(pm.hook, hook_name).get_hookimpls() if not (impl.wrapper or impl.hookwrapper)]
    if not providers:
        pm.trace.root.get("hook")(f"{hook_name} [no plugin]")
    for impl in providers:
        others = [other.plugin for other in providers if other is not impl]
        yield impl.plugin_name, functools.partial(_call_alone, pm, hook_name, impl.plugin_name, others)


def _call_alone(
    pm: pluggy.PluginManager, hook_name: str, plugin: str, others: list[object], **kwargs: Any
) -> list[Any]:
    """``hook_name`` called with ``kwargs`` for ``plugin`` alone (``others``: every other plugin implementing it)."""
    pm.trace.root.get("hook")(f"{hook_name} [{plugin}]")
    try:
        with plugin_output():
            results: list[Any] = pm.subset_hook_caller(hook_name, others)(**kwargs)
    except PluginError:
        raise
    except (Exception, SystemExit) as error:
        raise PluginError(f"plugin {plugin}: {hook_name} failed: {describe_error(error)}") from error
    return results


def _collect(settings: PluginSettings, hook_name: str, kind: type[T], what: str) -> dict[str, T]:
    """Call a ``register`` hook through pluggy, one providing plugin at a time (with every wrapper around
    it), so each item's provider is known; refuse two items of one name (or of names that differ only in case: a
    module's name names its files), naming every provider, and a hook that returns its items instead."""
    found: dict[str, list[tuple[str, T]]] = {}
    for plugin, call in each_plugin(get_plugin_manager(settings), hook_name):
        items: list[T] = []
        returned = [value for value in call(register=_registrar(plugin, kind, items)) if value is not None]
        if returned:
            raise PluginError(
                f"plugin {plugin}: {hook_name} returned {_returned(returned[0], kind, what)}, which registers nothing: "
                f"call register() with each {what} instead"
            )
        for item in items:
            name: str = getattr(item, "name")  # noqa: B009
            found.setdefault(name.casefold(), []).append((plugin, item))
    clashes = [_clash(what, providers) for providers in found.values() if len(providers) > 1]
    if clashes:
        raise PluginError("; ".join(clashes))
    by_name = {getattr(item, "name"): (plugin, item) for ((plugin, item),) in found.values()}  # noqa: B009
    return {name: _with_provider(item, plugin) for name, (plugin, item) in sorted(by_name.items())}


def _clash(what: str, providers: list[tuple[str, Any]]) -> str:
    names = list(dict.fromkeys(item.name for _, item in providers))
    who = list(dict.fromkeys(plugin for plugin, _ in providers))
    if len(names) > 1:
        shown = " and ".join(f"{item.name!r} (plugin {plugin})" for plugin, item in providers)
        return f"{what}s {shown} differ only in case, and would name the same files where case is not told apart"
    if len(who) == 1:
        return f"plugin {who[0]} registers {what} {names[0]!r} more than once"
    return f"{what} {names[0]!r} is registered by more than one plugin: {', '.join(who)}"


def _returned(value: object, kind: type, what: str) -> str:
    """What a ``register`` hook returned, said briefly: the names of the items it should have registered."""
    items = value if isinstance(value, list | tuple) else [value]
    names = [repr(getattr(item, "name", "?")) for item in items if isinstance(item, kind)]
    if names:
        return f"{what}(s) {', '.join(names)}"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _registrar(plugin: str, kind: type[T], items: list[T]) -> Callable[[T], None]:
    """The ``register`` callback handed to one plugin: checks the type, records the item."""

    def register(item: T) -> None:
        if not isinstance(item, kind):
            raise PluginError(f"plugin {plugin} registered {item!r}, which is not a {kind.__name__}")
        if isinstance(item, ReportModule):
            _check_compute(plugin, item)
        items.append(item)

    return register


def _check_compute(plugin: str, module: ReportModule) -> None:
    """Refuse a module whose ``compute`` cannot be called as ``compute(project, deps)``: else every report of it
    fails, each with a ``TypeError`` raised where zerosite calls it, which names no line of the plugin."""
    try:
        signature = inspect.signature(module.compute)
    except (TypeError, ValueError):  # a callable that does not say (a C function): called as it is
        return
    try:
        signature.bind(None, None)
    except TypeError as error:
        code = getattr(module.compute, "__code__", None)
        where = f" ({Path(code.co_filename).name}:{code.co_firstlineno})" if code is not None else ""
        name = getattr(module.compute, "__qualname__", repr(module.compute))
        raise PluginError(
            f"plugin {plugin}: module {module.name}'s compute {name}{where} cannot be called as compute(project, "
            f"deps): {error}"
        ) from None


def _with_provider(item: T, provider: str) -> T:
    if isinstance(item, ReportModule):
        return replace(item, provider=provider)
    return item


def get_modules(settings: PluginSettings | None = None) -> dict[str, ReportModule]:
    """Every registered report module by name, in dependency order, its requirements checked.

    Their templates are checked where templates are loaded: ``zerosite.rendering.get_environment``.
    """
    return _modules(settings or plugin_settings())


@functools.cache
def _modules(settings: PluginSettings) -> dict[str, ReportModule]:
    modules = _collect(settings, "zerosite_register_modules", ReportModule, "module")
    problems = [
        f"module {m.name} (from plugin {m.provider}) requires unknown module {r!r}"
        for m in modules.values()
        for r in m.requires
        if r not in modules
    ]
    if problems:
        raise PluginError("; ".join(problems))
    return {m.name: m for m in dependency_order(modules)}


def get_strategies(settings: PluginSettings | None = None) -> dict[str, Strategy]:
    """Every registered concurrency strategy by name."""
    chosen = settings or plugin_settings()
    return _collect(chosen, "zerosite_register_strategies", Strategy, "strategy")  # type: ignore[type-abstract]


def get_data_sources(settings: PluginSettings | None = None) -> dict[str, DataSource]:
    """Every registered data source by name."""
    chosen = settings or plugin_settings()
    return _collect(chosen, "zerosite_register_data_sources", DataSource, "data source")  # type: ignore[type-abstract]


def get_cache_backends(settings: PluginSettings | None = None) -> dict[str, CacheBackend]:
    """Every registered report cache backend by name (the URL scheme that selects it)."""
    return _collect(settings or plugin_settings(), "zerosite_register_caches", CacheBackend, "cache backend")
