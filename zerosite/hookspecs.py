"""Hook specifications: the extension points a ZeroSite plugin implements."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pluggy

from zerosite.types import CacheBackend, DataSource, ReportModule, Strategy

if TYPE_CHECKING:
    from jinja2 import Environment

__all__ = ["hookimpl", "hookspec"]

hookspec = pluggy.HookspecMarker("zerosite")
hookimpl = pluggy.HookimplMarker("zerosite")


@hookspec
def zerosite_register_modules(register: Callable[[ReportModule], None]) -> None:
    """Register report modules by calling ``register`` once per module.

    :param register: call it with a :class:`~zerosite.types.ReportModule`; the manager
        records which plugin provided it.
    :returns: nothing; every plugin is called.

    Two plugins registering the same module name is an error that names both providers.
    Example::

        @hookimpl
        def zerosite_register_modules(register):
            register(ReportModule(name="M7", title="주차 검토", compute=compute,
                                  template="m7_parking.html.j2", requires=("M4",)))
    """


@hookspec
def zerosite_template_dirs() -> list[Path]:
    """Folders of Jinja2 templates that this plugin's modules use.

    :returns: a list of folders, searched after the user's ``--templates-dir`` and before
        the built-in templates; every plugin is called, results in load order.

    Example::

        @hookimpl
        def zerosite_template_dirs():
            return [Path(__file__).parent / "templates"]
    """
    raise NotImplementedError  # a specification: pluggy calls the implementations, never this


@hookspec
def zerosite_prepare_jinja2_environment(env: Environment) -> None:
    """Adjust the Jinja2 environment once, after it is built and before any template renders.

    :param env: the process's one :class:`jinja2.Environment` (autoescape on).
    :returns: nothing; every plugin is called.

    Example::

        @hookimpl
        def zerosite_prepare_jinja2_environment(env):
            env.filters["pyeong"] = lambda sqm: sqm / 3.305785
    """


@hookspec
def zerosite_register_strategies(register: Callable[[Strategy], None]) -> None:
    """Register concurrency strategies (how a batch of projects is spread over workers).

    :param register: call it with a :class:`~zerosite.types.Strategy` instance.
    :returns: nothing; every plugin is called. The built-in ``sequential``, ``thread``,
        ``process`` and ``async`` strategies register through this hook.

    Example::

        @hookimpl
        def zerosite_register_strategies(register):
            register(DaskStrategy())
    """


@hookspec
def zerosite_register_data_sources(register: Callable[[DataSource], None]) -> None:
    """Register data sources (the fetch stage that gets a project's land facts).

    :param register: call it with a :class:`~zerosite.types.DataSource` instance.
    :returns: nothing; every plugin is called. The built-in ``embedded`` and ``http``
        sources register through this hook.

    Example::

        @hookimpl
        def zerosite_register_data_sources(register):
            register(VWorldSource())
    """


@hookspec
def zerosite_register_caches(register: Callable[[CacheBackend], None]) -> None:
    """Register report cache backends, each chosen by the scheme of a ``--cache`` URL.

    :param register: call it with a :class:`~zerosite.types.CacheBackend`: its ``name`` is the URL
        scheme it serves, its ``open(url, context)`` returns a :class:`~zerosite.types.ReportCache`.
    :returns: nothing; every plugin is called. The built-in ``local`` (the default: the report
        store's own files and index) and ``redis`` backends register through this hook.

    Two plugins registering the same scheme is an error that names both providers.
    Example::

        @hookimpl
        def zerosite_register_caches(register):
            register(CacheBackend(name="memcached", description="Reports in memcached.",
                                  open=lambda url, context: MemcachedCache(url, context.warn)))
    """
