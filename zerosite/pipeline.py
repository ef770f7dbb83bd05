"""One project's modules: which to compute for a selection, and the one loop that computes and renders them."""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # see _getsignal
import contextlib
import signal
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from jinja2 import Environment

from zerosite.project import Project
from zerosite.rendering import render_report
from zerosite.types import ReportModule, dependency_order, describe_error, raised_at, show_traceback

__all__ = [
    "GivenUp",
    "InterruptWatch",
    "ModuleOutcome",
    "PeakMemory",
    "compute_and_render",
    "compute_project",
    "plan",
    "plugin_raised",
    "report_names",
    "watch_interrupts",
]


def plan(modules: Mapping[str, ReportModule], selected: Iterable[str] | None = None) -> list[ReportModule]:
    """The modules to compute for ``selected`` (default: all), their requirements included, in order."""
    wanted = set(modules) if selected is None else set(selected)
    unknown = sorted(wanted - set(modules))
    if unknown:
        raise KeyError(f"unknown module(s) {', '.join(unknown)}; known: {', '.join(modules)}")
    needed: set[str] = set()
    stack = list(wanted)
    while stack:
        name = stack.pop()
        if name not in needed:
            needed.add(name)
            stack.extend(modules[name].requires)
    return [m for m in dependency_order(modules) if m.name in needed]


def report_names(modules: Mapping[str, ReportModule], selected: Iterable[str] | None = None) -> list[str]:
    """The modules that get a report for ``selected`` (default: all), in dependency order; what they
    require is computed but not reported."""
    chosen = None if selected is None else set(selected)
    return [m.name for m in plan(modules, chosen) if chosen is None or m.name in chosen]


@dataclass
class PeakMemory:
    """Peak bytes allocated while one module was made; filled in by a ``measure`` context."""

    bytes: int = 0


@dataclass(frozen=True, slots=True)
class GivenUp:
    """A module stopped from outside for running past its time limit (its thread abandoned, its worker process
    killed): why, and how long it ran until then (its report's time, where it would otherwise show none)."""

    why: str
    spent_ns: int


@dataclass(frozen=True, slots=True)
class ModuleOutcome:
    """One module made for one project: its result and, if reported, its HTML; or why it failed."""

    module: ReportModule
    reported: bool
    result: Any = None
    html: str | None = None
    error: str | None = None
    compute_ns: int = 0
    render_ns: int = 0
    peak_memory_bytes: int = 0
    exception: BaseException | None = None


# Entered for a module that is not measured, not limited: one object each, reused (a ``nullcontext`` may be
# entered again and again; nothing writes to the unmeasured module's PeakMemory, which stays at 0).
_UNMEASURED: AbstractContextManager[PeakMemory] = contextlib.nullcontext(PeakMemory())
_UNLIMITED: AbstractContextManager[None] = contextlib.nullcontext()


# The C functions under ``signal.getsignal`` and ``signal.signal``, which convert every handler to an enum (a
# ValueError raised and caught for each Python handler): 2.7 us a call instead of 0.03, and a project's reports
# are watched six times, four calls each.
_getsignal: Callable[[int], Any] = _signal.getsignal
_setsignal: Callable[[int, Any], Any] = _signal.signal


@dataclass
class InterruptWatch:
    """Whether a Ctrl-C or SIGTERM reached this process while plugin code ran (see :func:`watch_interrupts`)."""

    arrived: bool = False
    raised: BaseException | None = None
    """What the signal's handler raised (a KeyboardInterrupt, the command's ``Stopped``), in case plugin code
    caught it: the watch raises it again once the plugin code is done."""

    def raise_if_swallowed(self) -> None:
        """Raise again what a signal's handler raised under this watch, if nothing did since."""
        if self.raised is not None:
            raised, self.raised = self.raised, None
            raise raised


_WATCHED_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def watch_interrupts() -> Iterator[InterruptWatch]:
    """Note a Ctrl-C or SIGTERM that reaches this process inside the block, so that the KeyboardInterrupt it
    raises is told apart from one that plugin code raised itself, and so that plugin code that catches it (a bare
    ``except:``) does not keep the batch from stopping: what the handler raised is raised again when the block
    ends. Signals run in the main thread only: elsewhere (and where they are ignored or left to the system, as
    in pool workers) no exception comes from a signal."""
    watch = InterruptWatch()
    handlers: dict[int, Callable[[int, Any], Any]] = {}
    if threading.current_thread() is threading.main_thread():
        handlers = {signum: handler for signum in _WATCHED_SIGNALS if callable(handler := _getsignal(signum))}
    if not handlers:
        yield watch
        return

    def noted(signum: int, frame: Any) -> Any:
        watch.arrived = True
        try:
            return handlers[signum](signum, frame)
        except BaseException as error:
            watch.raised = error
            raise

    try:
        for signum in handlers:
            _setsignal(signum, noted)
    except ValueError:  # not the main interpreter
        yield watch
        return
    try:
        yield watch
    except BaseException as error:
        if error is watch.raised:
            watch.raised = None  # on its way out, not swallowed
        raise
    finally:
        for signum, handler in handlers.items():
            if _getsignal(signum) is noted:  # not if a handler meanwhile put another in its place
                _setsignal(signum, handler)
        watch.raise_if_swallowed()


def plugin_raised(error: BaseException, watch: InterruptWatch) -> bool:
    """Whether ``error``, raised while plugin code ran under ``watch``, is the plugin's failure to contain.

    Every ``Exception`` is; so are ``SystemExit``, ``KeyboardInterrupt`` and other ``BaseException``\\ s
    that the plugin raised itself (``sys.exit()`` in a module). Not a ``GeneratorExit``, nor what a
    signal raised: a Ctrl-C that arrived under ``watch``, or an exception raised by a signal handler.
    """
    if isinstance(error, Exception):
        return True
    if isinstance(error, GeneratorExit) or watch.arrived:
        return False
    return not _raised_by_signal_handler(error)


def _raised_by_signal_handler(error: BaseException) -> bool:
    handlers = set()
    for signum in signal.valid_signals():
        try:
            handler = signal.getsignal(signum)
        except (OSError, ValueError):
            continue
        code = getattr(getattr(handler, "__func__", handler), "__code__", None)
        if code is not None:
            handlers.add(code)
    trace = error.__traceback__
    while trace is not None:
        if trace.tb_frame.f_code in handlers:
            return True
        trace = trace.tb_next
    return False


def compute_and_render(
    project: Project,
    steps: Sequence[ReportModule],
    reports: Collection[str],
    env: Environment | None = None,
    measure: Callable[[], AbstractContextManager[PeakMemory]] | None = None,
    limit: Callable[[ReportModule], AbstractContextManager[object]] | None = None,
    failed: Mapping[str, GivenUp] | None = None,
    interrupts: InterruptWatch | None = None,
) -> Iterator[ModuleOutcome]:
    """Compute ``steps`` in their (dependency) order and render those named in ``reports``, one at a time.

    A module that raises (any exception, ``sys.exit()`` included) yields its error, with where in the plugin
    (:func:`~zerosite.types.raised_at`), and every module that requires it fails too; the others still complete.
    ``measure`` wraps each module (peak memory), ``limit(module)`` its compute and render (a time limit may
    raise inside). ``failed`` names modules known to fail already, with why and how long they ran (given up at
    their time limit elsewhere): they are not run, and their reports keep that time.
    ``interrupts``: a :func:`watch_interrupts` the caller holds over the whole call (a worker, over its
    project); without one, each module is watched on its own. The worker, the tests and the benchmark's
    workloads use this.
    """
    held = None if interrupts is None else contextlib.nullcontext(interrupts)
    results: dict[str, Any] = {}
    given_up = failed or {}
    failures: dict[str, str] = {name: given.why for name, given in given_up.items()}  # module -> why it failed
    for module in steps:
        wanted = module.name in reports
        if module.name in given_up:
            given = given_up[module.name]
            yield ModuleOutcome(module, wanted, error=given.why, compute_ns=given.spent_ns)
            continue
        missing = [name for name in module.requires if name in failures]
        if missing:
            failures[module.name] = f"not made: requires {', '.join(missing)}, which failed ({failures[missing[0]]})"
            yield ModuleOutcome(module, wanted, error=failures[module.name])
            continue
        html, error_text, cause = None, None, None
        compute_ns = render_ns = 0
        measured = _UNMEASURED if measure is None else measure()
        watch = held or watch_interrupts()
        with measured as peak, watch as watched:
            started = time.monotonic_ns()
            try:
                with _UNLIMITED if limit is None else limit(module):
                    deps = {name: results[name] for name in module.requires}
                    results[module.name] = module.compute(project, deps)
                    compute_ns = time.monotonic_ns() - started
                    if wanted:
                        html = render_report(module, project, results[module.name], deps, env)
                        render_ns = time.monotonic_ns() - started - compute_ns
            except BaseException as error:
                if not plugin_raised(error, watched):
                    raise
                stage = "render" if module.name in results else "compute"
                spent = time.monotonic_ns() - started  # until it failed, or its time limit gave it up
                compute_ns, render_ns = (spent, 0) if stage == "compute" else (compute_ns, spent - compute_ns)
                error_text = (
                    f"{module.name} {stage} failed for project {project.id!r}: {describe_error(error)}"
                    f"{raised_at(error, module.compute)}"
                )
                show_traceback(error, error_text)
                cause = error
                if stage == "compute":
                    failures[module.name] = error_text
            watched.raise_if_swallowed()  # a stop that the module caught (or turned into its own error)
        yield ModuleOutcome(
            module, wanted, results.get(module.name), html, error_text, compute_ns, render_ns, peak.bytes, cause
        )


def compute_project(project: Project, modules: Sequence[ReportModule]) -> dict[str, Any]:
    """Compute every module for one project, in the given (dependency) order; no rendering.

    :raises Exception: the first module's own error.
    """
    results: dict[str, Any] = {}
    for outcome in compute_and_render(project, modules, reports=()):
        if outcome.exception is not None:
            raise outcome.exception
        results[outcome.module.name] = outcome.result
    return results
