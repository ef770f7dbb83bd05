"""The ``zerosite`` command line: list plugins, make sample input, generate, search and profile reports."""

from __future__ import annotations

import contextlib
import errno
import faulthandler
import json
import math
import os
import re
import sys
import traceback
import unicodedata
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from zerosite.cores import MAX_WORKERS_PER_CPU, capped_workers, usable_cores
from zerosite.dask_strategy import scheduler_address
from zerosite.files import OutputBusy
from zerosite.plugins import (
    PluginWarning,
    get_cache_backends,
    get_modules,
    get_plugin_file,
    get_strategies,
    plugin_output,
    plugin_settings,
    set_plugin_settings,
)
from zerosite.project import (
    InvalidInput,
    Project,
    iter_raw_projects,
    parse_batch,
    parse_project,
    printable,
    printable_json,
)
from zerosite.stopping import (
    end_children,
    exit_without_waiting,
    lingering_threads,
    stop_code,
    stop_word,
    stopping_cleanly,
)
from zerosite.types import (
    DEFAULT_CACHE,
    CacheBackend,
    CacheContext,
    CacheError,
    PluginError,
    PluginSettings,
    ReportCache,
    ReportModule,
    Runner,
    SourceSettings,
    StartError,
    StoreError,
    StoreUnusable,
    Strategy,
    StrategyOptions,
    WorkerConfig,
    WorkersLost,
)

if TYPE_CHECKING:  # the engine, and with it Jinja2 and SQLite, loads in the commands that use it: a fast start for
    # the others (`--version`, `--help`, `sample`, `search`; bench/startup.py)
    from zerosite.engine import BatchOptions, BatchPlan
    from zerosite.strategies_auto import AutoChoice

__all__ = ["main", "run"]

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
FAILURES_SHOWN = 20
MAX_ROWS_SHOWN = 1_000_000
"""The most rows ``search --limit`` and ``reports --recent`` ask for."""
MAX_CHUNKSIZE = 100_000
MAX_TIMEOUT_S = 7 * 24 * 3600.0
"""The longest time limit any ``--*timeout`` accepts: a week."""
MAX_BODY_LIMIT_BYTES = 1 << 30
"""``--workers`` is capped at this many per usable CPU: more only adds memory and switching."""
DEFAULT_WORKERS = 2
"""``--workers`` of a named strategy; ``auto`` uses the usable cores instead."""


def _fail(message: str, code: int = EXIT_BAD_INPUT) -> NoReturn:
    click.echo(f"error: {printable(message)}", err=True)
    sys.exit(code)


class _Finite(click.FloatRange):
    """A finite number of ``unit`` in a range: ``nan`` passes a plain ``FloatRange``, and ``inf`` means nothing
    a timer can be set to."""

    def __init__(self, unit: str, **limits: Any) -> None:
        super().__init__(**limits)
        self.unit = unit
        self.name = f"number of {unit}"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number of {self.unit}.", param, ctx)
        return number


_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgG]i?)?[bB]?\s*")
_SIZE_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "ki": 1 << 10, "mi": 1 << 20, "gi": 1 << 30}


class _ByteSize(click.types.IntParamType):
    """A size in bytes: ``5000000``, ``5MB``, ``500kB``, ``2MiB``; between 1 byte and 1 GiB."""

    name = "size"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, int):
            size = value
        else:
            match = _SIZE.fullmatch(str(value))
            if match is None:
                self.fail(f"{value!r} is not a size such as 5000000, 5MB or 2MiB.", param, ctx)
            size = int(float(match[1]) * _SIZE_UNITS[(match[2] or "").lower()])
        if not 1 <= size <= MAX_BODY_LIMIT_BYTES:
            self.fail(f"{value!r} is not between 1 byte and {MAX_BODY_LIMIT_BYTES:,} bytes.", param, ctx)
        return size


def run() -> None:
    """The ``zerosite`` program (and ``python -m zerosite``): :func:`main`, then an exit that never hangs.

    Python waits at exit for every non-daemon thread and every pool worker process still alive. A plugin's
    thread that never ends, or the workers of a pool that could not start, would hold the process forever
    after its work was done and its index committed: they are named (threads) or ended (processes) instead.

    A crash in native code (a module's C extension) prints where it happened, Python's stack of each thread, before
    the process dies (:mod:`faulthandler`); so does a pool worker's, which the workers inherit by ``fork``.
    """
    with contextlib.suppress(ValueError, OSError, AttributeError, RuntimeError):  # no file (closed, none): no stacks
        faulthandler.enable()
    try:
        main()
    except SystemExit as done:
        exit_without_waiting(done.code)
        raise
    except BaseException:
        if lingering_threads():
            traceback.print_exc()
            exit_without_waiting(EXIT_FAILED)
        end_children()
        raise


def _capped_workers(workers: int) -> int:
    """``workers``, or the cap (:func:`zerosite.cores.capped_workers`), with a warning when capped."""
    workers, why = capped_workers(workers)
    if why is not None:
        click.echo(f"warning: --workers {why}", err=True)
    return workers


def _refused(error: BaseException) -> str:
    """Why a batch could not go on when the system refused it a worker (fork or thread) or another resource."""
    if isinstance(error, RuntimeError) or getattr(error, "errno", None) in (
        errno.EAGAIN,
        errno.ENOMEM,
        errno.EMFILE,
        errno.ENFILE,
    ):
        return f"the system refused to start a worker ({error}); try fewer --workers"
    return f"the batch stopped: {error}"


class _Program(click.Group):
    """The ``zerosite`` command group: a Ctrl-C that no command handles itself (``sample``, ``search``, while the
    command line is parsed) ends it as ``generate``'s does, ``error: interrupted`` and exit 130, not click's
    ``Aborted!`` and 1."""

    def make_context(
        self, info_name: str | None, args: list[str], parent: click.Context | None = None, **extra: Any
    ) -> click.Context:
        with _interrupted_is_130():
            return super().make_context(info_name, args, parent, **extra)

    def invoke(self, ctx: click.Context) -> Any:
        with _interrupted_is_130():
            return super().invoke(ctx)


@contextlib.contextmanager
def _interrupted_is_130() -> Iterator[None]:
    try:
        yield
    except KeyboardInterrupt as stop:
        _fail(stop_word(stop), stop_code(stop))


@click.group(cls=_Program, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--plugins-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="ZEROSITE_PLUGINS_DIR",
    help="Folder of local plugin files (*.py). Default: ./plugins when it exists.",
)
@click.option(
    "--templates-dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    envvar="ZEROSITE_TEMPLATES_DIR",
    help="Folder of templates that override plugin and built-in templates.",
)
@click.version_option(package_name="zerosite")
def main(plugins_dir: Path | None, templates_dir: Path | None) -> None:
    """ZeroSite: LH purchase-rental screening reports (M2-M6), generated in batches and measured."""
    warnings.showwarning = _show_warning
    settings = PluginSettings.from_env()
    set_plugin_settings(
        PluginSettings(
            plugins_dir=plugins_dir if plugins_dir is not None else settings.plugins_dir,
            disabled=settings.disabled,
            templates_dir=templates_dir,
            trace=settings.trace,
        )
    )


_show_other_warning = warnings.showwarning


def _show_warning(
    message: Warning | str, category: type[Warning], filename: str, lineno: int, file: Any = None, line: Any = None
) -> None:
    """A plugin warning as one ``warning:`` line, like the command's own; any other warning as Python shows it."""
    if issubclass(category, PluginWarning):
        click.echo(f"warning: {printable(str(message))}", err=True)
    else:
        _show_other_warning(message, category, filename, lineno, file, line)


def _modules() -> dict[str, ReportModule]:
    """Every module, checked with its template; a plugin problem is exit 2."""
    from zerosite.rendering import get_environment

    try:
        get_environment()  # loading it checks every module's template
        return get_modules()
    except PluginError as error:
        _fail(f"plugins: {error}")


def _strategies() -> dict[str, Strategy]:
    """Every strategy; a plugin problem (two strategies of one name) is exit 2."""
    try:
        return get_strategies()
    except PluginError as error:
        _fail(f"plugins: {error}")


@main.command()
def modules() -> None:
    """List the report modules: name, title, requires, provider, template."""
    rows = [
        (m.name, m.title, ",".join(m.requires) or "-", m.version, m.provider, m.template) for m in _modules().values()
    ]
    _table(("module", "title", "requires", "version", "provider", "template"), rows)


@main.command()
def caches() -> None:
    """List the report cache backends (chosen by the scheme of --cache URL)."""
    _table(("cache", "description"), [(b.name, b.description) for b in _cache_backends().values()])


def _cache_backends() -> dict[str, CacheBackend]:
    try:
        return get_cache_backends()
    except PluginError as error:
        _fail(f"plugins: {error}")


def _open_cache(url: str, out: Path, db: Path | None) -> ReportCache:
    """The report cache ``--cache`` names; an unknown scheme or a bad option is exit 2, an unreachable
    service one warning (the batch goes on without it)."""
    from zerosite.caches import open_cache

    context = CacheContext(
        out, db or out / "index.sqlite", warn=lambda m: click.echo(f"warning: {printable(m)}", err=True)
    )
    try:
        return open_cache(url, _cache_backends(), context)
    except CacheError as error:
        _fail(f"--cache: {error}")


@main.command()
def strategies() -> None:
    """List the concurrency strategies and whether each is available here."""
    rows = []
    for strategy in _strategies().values():
        reason = strategy.unavailable_reason()
        rows.append((strategy.name, "yes" if reason is None else f"no: {reason}", strategy.description))
    _table(("strategy", "available", "description"), rows)


def _table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> None:
    """Print aligned columns; Korean (wide) characters count as two columns, as a terminal shows them."""
    shown = [tuple(printable(str(cell)) for cell in row) for row in (header, *rows)]  # no terminal escapes
    widths = [max(_width(cell) for cell in column) for column in zip(*shown, strict=False)]
    for row in shown:
        cells = (cell + " " * (width - _width(cell)) for cell, width in zip(row, widths, strict=False))
        click.echo("  ".join(cells).rstrip())


_SHOWN_FORMAT = frozenset(
    "\u00ad\u0600\u0601\u0602\u0603\u0604\u0605\u06dd\u070f\u0890\u0891\u08e2\U000110bd\U000110cd"
)
"""Format characters a terminal shows in a column of their own: the soft hyphen and the prepended concatenation
marks (Arabic number signs and the like)."""


def _width(text: str) -> int:
    """The columns ``text`` takes on a terminal (what ``len`` is not, for Korean text); see :func:`_char_width`."""
    return sum(_char_width(char) for char in text)


def _char_width(char: str) -> int:
    """Two for a wide or fullwidth character (Hangul syllables, CJK: East Asian Width W or F); none for one a
    terminal draws on the character before it: a combining mark, an invisible format character (a zero-width
    joiner, not those in :data:`_SHOWN_FORMAT`), the vowel or final of a Hangul syllable written decomposed (NFD,
    as macOS names files); one for the rest. tmux lays such text out alike."""
    category = unicodedata.category(char)
    if category in {"Mn", "Me"} or (category == "Cf" and char not in _SHOWN_FORMAT):
        return 0
    if "\u1160" <= char <= "\u11ff" or "\ud7b0" <= char <= "\ud7ff":  # Hangul Jamo medial and final letters
        return 0
    return 2 if unicodedata.east_asian_width(char) in "WF" else 1


@main.command()
@click.argument("n", type=click.IntRange(min=1))
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same projects.")
@click.option("--jsonl", is_flag=True, help="One project per line (JSON Lines) instead of a JSON list.")
def sample(n: int, seed: int, jsonl: bool) -> None:
    """Print N realistic, deterministic sample projects as JSON."""
    from zerosite.sample import iter_sample_projects

    projects = iter_sample_projects(n, seed)
    if jsonl:
        for project in projects:
            click.echo(json.dumps(project, ensure_ascii=False))
    else:
        click.echo(json.dumps(list(projects), ensure_ascii=False, indent=2))


def _load_projects(
    projects_file: Path | None, sample_n: int | None, seed: int, skip_invalid: bool
) -> tuple[Iterable[Project], int]:
    """The valid projects, parsed once and checked whole before anything is made, and their count."""
    if (projects_file is None) == (sample_n is None):
        _fail("give exactly one of --projects FILE or --sample N")
    if sample_n is not None:
        from zerosite.sample import iter_sample_projects

        samples = enumerate(iter_sample_projects(sample_n, seed))
        return (parse_project(raw, f"sample[{i}]") for i, raw in samples), sample_n
    assert projects_file is not None
    try:
        valid, errors = parse_batch(iter_raw_projects(projects_file))
    except InvalidInput as invalid:
        valid, errors = [], invalid.errors
        skip_invalid = False
    if errors:
        for line in errors:
            click.echo(f"  {line}", err=True)
        if not skip_invalid:
            _fail(f"{projects_file}: {len(errors)} problem(s) in the input; nothing was written", EXIT_BAD_INPUT)
        click.echo(f"warning: skipping the invalid projects above; {len(valid)} valid project(s) remain", err=True)
    return valid, len(valid)


def _batch_options(func: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option(
            "--projects",
            "projects_file",
            type=click.Path(dir_okay=False, exists=True, allow_dash=True, path_type=Path),
            help="Projects as a JSON list or JSON Lines (.jsonl); - reads standard input (a pipe works too).",
        ),
        click.option("--sample", "sample_n", type=click.IntRange(min=1), help="Use N generated sample projects."),
        click.option("--seed", type=int, default=0, show_default=True, help="Seed for --sample."),
        click.option(
            "--out",
            type=click.Path(file_okay=False, path_type=Path),
            required=True,
            help="Output folder: OUT/<project-id>/<module>.html.",
        ),
        click.option("--module", "modules", multiple=True, help="Only these modules (repeatable); default all."),
        click.option("--skip-invalid", is_flag=True, help="Render the valid projects and list the invalid ones."),
        click.option(
            "--db",
            type=click.Path(dir_okay=False, path_type=Path),
            help="SQLite index of the reports. Default: OUT/index.sqlite.",
        ),
        click.option("--gzip", is_flag=True, help="Write .html.gz files."),
        click.option(
            "--cache",
            "cache_url",
            default=DEFAULT_CACHE,
            show_default=True,
            envvar="ZEROSITE_CACHE",
            metavar="URL",
            help="Report cache: local (the store itself), or redis://HOST:PORT/DB?ttl=SECONDS&max_bytes=SIZE, "
            "shared by runs into other --out folders. See `zerosite caches`.",
        ),
        click.option("--data-url", help="Fetch each project's land facts from this HTTP source (GET URL/projects/ID)."),
        click.option("--source", help="Data source plugin by name. Default: http with --data-url, else embedded."),
        click.option("--force", is_flag=True, help="Remake reports even when their inputs are unchanged."),
        click.option(
            "--verify",
            is_flag=True,
            help="Re-hash each unchanged report's file; remake the project when it differs from the index.",
        ),
        click.option(
            "--timeout",
            "timeout_s",
            type=_Finite("seconds", min=0, min_open=True, max=MAX_TIMEOUT_S),
            help="Per-report time limit in seconds (compute and render; the fetch has --fetch-timeout).",
        ),
        click.option(
            "--fetch-timeout",
            "fetch_timeout_s",
            type=_Finite("seconds", min=0, min_open=True, max=MAX_TIMEOUT_S),
            default=SourceSettings.deadline_s,
            show_default=True,
            help="Total seconds for one project's fetch from the data source: connect, retries and the whole body.",
        ),
        click.option(
            "--max-body",
            "max_body_bytes",
            type=_ByteSize(),
            default=SourceSettings.max_body_bytes,
            show_default=True,
            help="Largest data-source answer read per project, in bytes (5MB, 2MiB); a longer one fails the project.",
        ),
        click.option(
            "--trace-memory",
            is_flag=True,
            help="Record each report's peak allocated memory (tracemalloc; makes rendering several times slower).",
        ),
        click.option("--quiet", "-q", is_flag=True, help="No progress bar."),
        click.option("--json", "as_json", is_flag=True, help="Print a machine-readable summary."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@main.command()
@_batch_options
@click.option(
    "--strategy",
    "-s",
    default="auto",
    show_default=True,
    help="See `zerosite strategies`; auto measures the first projects and picks one, saying which and why.",
)
@click.option(
    "--workers",
    "-w",
    type=click.IntRange(min=1),
    help=f"Workers (threads or processes); default {DEFAULT_WORKERS}; for auto the most it may use, default the "
    f"usable cores. At most {MAX_WORKERS_PER_CPU} per usable CPU.",
)
@click.option(
    "--chunksize",
    type=click.IntRange(min=1, max=MAX_CHUNKSIZE),
    default=StrategyOptions.chunksize,  # the library's: what the benchmark measures
    show_default=True,
    help="Projects per task sent to a process pool (the last tasks of a batch get fewer).",
)
@click.option(
    "--start-method",
    type=click.Choice(["fork", "forkserver", "spawn"]),
    help="Process start method. Default: fork while no threads run, else forkserver.",
)
@click.option(
    "--scheduler",
    metavar="tcp://HOST:PORT",
    help="With --strategy dask: the scheduler of a running Dask cluster. Default: $ZEROSITE_DASK_SCHEDULER, "
    "else a local cluster of --workers processes.",
)
@click.option(
    "--hand-back",
    is_flag=True,
    help="Workers hand each report back and this process writes it (for workers that do not see --out).",
)
def generate(**kwargs: Any) -> None:
    """Generate reports for a batch of projects under a concurrency strategy."""
    if kwargs["scheduler"] and kwargs["strategy"] != "dask":
        _fail("--scheduler is for --strategy dask")
    if kwargs["strategy"] == "dask" and (address := scheduler_address(kwargs["scheduler"])) is not None:
        if kwargs["workers"] is not None:  # neither capped by this machine's cores nor used
            why = f"the Dask scheduler at {address} gives the batch its own workers"
            click.echo(f"warning: --workers is not used: {why}", err=True)
        kwargs["workers"] = DEFAULT_WORKERS
    if kwargs["workers"] is None:
        kwargs["workers"] = usable_cores() if kwargs["strategy"] == "auto" else DEFAULT_WORKERS
    if kwargs["strategy"] != "sequential":
        kwargs["workers"] = _capped_workers(kwargs["workers"])
    with stopping_cleanly():
        _run_batch(**kwargs)


@main.command()
@_batch_options
def render(**kwargs: Any) -> None:
    """Generate reports one project after another (the sequential strategy)."""
    with stopping_cleanly():
        _run_batch(strategy="sequential", workers=1, chunksize=1, start_method=None, **kwargs)


def _run_batch(
    *,
    projects_file: Path | None,
    sample_n: int | None,
    seed: int,
    out: Path,
    modules: tuple[str, ...],
    skip_invalid: bool,
    db: Path | None,
    gzip: bool,
    cache_url: str,
    data_url: str | None,
    source: str | None,
    force: bool,
    verify: bool,
    timeout_s: float | None,
    fetch_timeout_s: float,
    max_body_bytes: int,
    trace_memory: bool,
    quiet: bool,
    as_json: bool,
    strategy: str,
    workers: int,
    chunksize: int,
    start_method: str | None,
    scheduler: str | None = None,
    hand_back: bool = False,
) -> None:
    from zerosite.engine import BatchOptions, EngineError
    from zerosite.engine import generate as generate_reports
    from zerosite.strategies_auto import AutoStrategy

    if strategy == "sequential":
        workers = 1  # whatever --workers says: the baseline runs in this process alone
    options = BatchOptions(
        out=out,
        db=db,
        modules=tuple(modules) or None,
        strategy=strategy,
        workers=workers,
        chunksize=chunksize,
        start_method=start_method,
        gzip=gzip,
        data_url=data_url,
        source=source,
        force=force,
        verify=verify,
        timeout_s=timeout_s,
        fetch_timeout_s=fetch_timeout_s,
        max_body_bytes=max_body_bytes,
        trace_memory=trace_memory,
        scheduler=scheduler,
        hand_back=hand_back,
    )
    batch_plan = _plan(options)
    projects, count = _load_projects(projects_file, sample_n, seed, skip_invalid)
    total = count * len(batch_plan.config.reports)
    with _open_cache(cache_url, out, db) as cache, _ProgressBar(total, disable=quiet or as_json) as progress:
        noted = _NoteChoice(batch_plan.strategy, (lambda line: None) if as_json else progress.say)  # JSON: in it
        batch_plan = replace(batch_plan, strategy=noted)
        try:
            with plugin_output():  # the modules' prints: standard output is the summary's
                summary = generate_reports(
                    projects, options, on_report=progress.on_report, batch_plan=batch_plan, cache=cache
                )
        except (EngineError, StartError) as error:
            _fail(str(error))
        except OutputBusy as error:
            _fail(f"{error}; wait for it to finish or choose another --out")
        except StoreUnusable as error:  # nothing made: a usage error, as a bad --out is to click
            _fail(str(error))
        except (StoreError, WorkersLost) as error:
            _fail(str(error), EXIT_FAILED)
        except (OSError, RuntimeError) as error:  # a fork or a thread refused: not a traceback, and no hang
            if isinstance(error, RuntimeError) and "can't start new thread" not in str(error):
                raise
            _fail(f"{_refused(error)}; run the same command again to resume", EXIT_FAILED)
        except KeyboardInterrupt as stop:
            index = db or out / "index.sqlite"
            kept = f"the reports written so far are indexed in {index}" if index.exists() else "nothing was written"
            _fail(f"{stop_word(stop)}; {kept}; run the same command again to resume", stop_code(stop))
    if as_json:
        cache_facts = {"url": cache.url, **cache.stats.as_dict()}
        auto = (  # auto's choice, None where it made nothing (its runner not even started then)
            {"auto": noted.choice.as_dict() if noted.choice else None}
            if isinstance(noted.strategy, AutoStrategy)
            else {}
        )
        _summary(
            printable_json(
                json.dumps({**summary.as_dict(), **auto, "cache": cache_facts}, ensure_ascii=False, indent=2)
            )
        )
    else:
        for failure in summary.failures[:FAILURES_SHOWN]:
            click.echo(printable(f"failed: {failure.project_id}/{failure.module}: {failure.error}"), err=True)
        if summary.failed > FAILURES_SHOWN:
            index = db or out / "index.sqlite"
            click.echo(f"... and {summary.failed - FAILURES_SHOWN} more failures, all recorded in {index}", err=True)
        stages = ", ".join(f"{stage} {ns / 1e9:.2f} s" for stage, ns in summary.stage_ns.by_stage().items())
        cached = f" ({summary.from_cache} from cache)" if cache.keeps_copies else ""
        ran = f"{summary.strategy}\N{RIGHTWARDS ARROW}{noted.choice.strategy}" if noted.choice else summary.strategy
        apart = len(summary.made_apart)
        apart_text = f", {apart} project{'s' * (apart != 1)} apart in a worker process" if apart else ""
        _summary(
            f"{summary.written} written{cached}, {summary.skipped} skipped, {summary.failed} failed "
            f"in {summary.wall_s:.2f} s "
            f"({summary.reports_per_s:,.0f} reports/s, {ran} x{summary.workers}{apart_text}); "
            f"time by stage, summed over reports: {stages}"
        )
    if summary.failed:
        sys.exit(EXIT_FAILED)


def _summary(text: str) -> None:
    """The batch's summary on standard output; a reader gone (``| head -0``, ``| true``) is no failure of the batch:
    its exit code stays what the reports say (click's own handling exits 1, silently, after every report was made)."""
    try:
        click.echo(text)
        sys.stdout.flush()
    except BrokenPipeError:
        with contextlib.suppress(OSError):  # the interpreter's last flush at exit would fail again
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


class _NoteChoice(Strategy):
    """The batch's strategy, started as usual by the engine; an ``auto`` runner's choice is said as it is
    made (``say``) and kept for the summary."""

    name = "noted"
    description = "the batch's strategy, its runner kept"

    def __init__(self, strategy: Strategy, say: Callable[[str], None]) -> None:
        self.strategy = strategy
        self.say = say
        self.runner: Runner | None = None
        self.choice: AutoChoice | None = None

    def start(self, config: WorkerConfig, options: StrategyOptions) -> Runner:
        from zerosite.strategies_auto import AutoRunner

        self.runner = self.strategy.start(config, options)
        if isinstance(self.runner, AutoRunner):
            self.runner.on_choice = self._chosen
        return self.runner

    def _chosen(self, choice: AutoChoice) -> None:
        self.choice = choice
        self.say(printable(choice.line))


def _plan(options: BatchOptions) -> BatchPlan:
    """The batch's plan; an unknown module, source or strategy, or a plugin problem, is exit 2."""
    from zerosite.engine import EngineError, plan_batch

    try:
        return plan_batch(options)
    except PluginError as error:
        _fail(f"plugins: {error}")
    except EngineError as error:
        _fail(str(error))


class _ProgressBar:
    """A tqdm bar counting reports (with reports/s), or nothing when quiet or not on a terminal."""

    def __init__(self, total: int, disable: bool) -> None:
        self.total = total
        self.disable = disable or not sys.stderr.isatty()
        self.bar: Any = None

    def __enter__(self) -> _ProgressBar:
        if not self.disable:
            from tqdm import tqdm

            # tqdm's monitor is a thread, and a process that runs threads starts its pools by forkserver, not fork:
            # on a terminal, pools then started unlike anywhere else (the benchmark's, a script's), and `auto`
            # reckoned with a fork server's start-up (1.3 s against 70 ms, AutoCosts). The bar is updated at every
            # report and needs no monitor (tqdm's own switch: https://github.com/tqdm/tqdm/issues/1564).
            tqdm.monitor_interval = 0
            self.bar = tqdm(total=self.total, unit="report", file=sys.stderr, dynamic_ncols=True)
        return self

    @property
    def on_report(self) -> Callable[[Any], None] | None:
        """What the engine tells of each report: the bar's count, or nothing (the engine then makes no outcome
        object for a report nobody looks at)."""
        return None if self.bar is None else self._count

    def _count(self, outcome: Any) -> None:
        self.bar.update(1)

    def say(self, line: str) -> None:
        """One line on standard error, above the bar while there is one."""
        if self.bar is not None:
            self.bar.write(line, file=sys.stderr)
        else:
            click.echo(line, err=True)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()


class _StrategySpec(click.types.StringParamType):
    """``NAME[:WORKERS]`` for ``profile``: a strategy's name and, optionally, its workers, a whole number of at
    least 1 (``abc``, ``-1`` and ``0`` were taken for the default, or handed to a run that failed on them)."""

    name = "NAME[:WORKERS]"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, tuple):
            return value
        name, colon, workers = str(value).partition(":")
        if not name:
            self.fail(f"{value!r} names no strategy.", param, ctx)
        if colon and not (workers.isascii() and workers.isdigit() and int(workers) >= 1):
            self.fail(f"{value!r}: WORKERS must be a whole number of at least 1.", param, ctx)
        return name, int(workers) if colon else None


@main.command()
@click.option(
    "--strategy",
    "-s",
    "strategies",
    multiple=True,
    type=_StrategySpec(),
    help=f"Repeatable. Default: every available strategy, {DEFAULT_WORKERS} workers (sequential 1).",
)
@click.option(
    "--sample",
    "projects",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="Sample projects in the profiled batch.",
)
@click.option(
    "--out", type=click.Path(file_okay=False, path_type=Path), default=Path("reports/profiles"), show_default=True
)
@click.option(
    "--scenario",
    "scenarios",
    multiple=True,
    metavar="NAME[,NAME]",
    help="cpu, io or mixed; repeatable or a comma list. Default: all three.",
)
@click.option(
    "--latency-ms",
    type=_Finite("milliseconds", min=0, max=MAX_TIMEOUT_S * 1000),
    default=20.0,
    show_default=True,
    metavar="MS",
    help="Loopback data-source latency for io (mixed gets a quarter).",
)
def profile(
    strategies: tuple[tuple[str, int | None], ...],
    projects: int,
    out: Path,
    scenarios: tuple[str, ...],
    latency_ms: float,
) -> None:
    """Profile `zerosite generate` per strategy and scenario with py-spy, worker processes included.

    Writes a flamegraph SVG and a speedscope JSON per strategy and scenario (py-spy is looked for beside
    this Python first, then on PATH); where py-spy is missing or may not attach (no ptrace permission) a
    cProfile file of the main process instead, with a warning. io and mixed fetch from a loopback server.
    Files are named after the workers each batch ran with; a profiled run that fails keeps no file, and
    is shown with what it wrote to standard error (exit 1).
    """
    from zerosite.benchmarking.profiling import ProfileError, profile_strategies
    from zerosite.benchmarking.workloads import SCENARIO_LATENCY_SHARE

    chosen_scenarios = [name.strip() for spec in scenarios for name in spec.split(",") if name.strip()]
    unknown = [name for name in chosen_scenarios if name not in SCENARIO_LATENCY_SHARE]
    if unknown:
        _fail(f"unknown scenario(s): {', '.join(unknown)}; known: {', '.join(SCENARIO_LATENCY_SHARE)}")

    available = [name for name, s in _strategies().items() if s.unavailable_reason() is None]
    chosen = []
    for name, workers in strategies or [(name, None) for name in available]:
        if name not in available:
            _fail(f"strategy {name!r} is not available here; available: {', '.join(available)}")
        # Capped here, once: each profiled run would say so again, scenario after scenario.
        chosen.append((name, _capped_workers(workers) if workers else (1 if name == "sequential" else DEFAULT_WORKERS)))
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        _fail(f"--out {out}: cannot create it ({error.strerror or error})")
    picked = tuple(dict.fromkeys(chosen_scenarios)) or tuple(SCENARIO_LATENCY_SHARE)
    failures: list[ProfileError] = []
    written = profile_strategies(
        chosen,
        out,
        projects,
        scenarios=picked,
        latency_ms=latency_ms,
        relay=lambda line: click.echo(printable(line), err=True),
        failed=failures.append,
    )
    for file in written:
        click.echo(f"{file.label}: {file.path}")
    for failure in failures:
        click.echo(f"error: {printable(str(failure))}; its standard error:", err=True)
        for line in failure.output or ["(nothing)"]:
            click.echo(f"  {printable(line)}", err=True)
    if failures:
        sys.exit(EXIT_FAILED)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the checks as JSON.")
def system(as_json: bool) -> None:
    """Show what makes this machine noisy for benchmarking (CPU governor, turbo, busy processes, quota...)."""
    from zerosite.benchmarking.system import check_system, format_report

    report = check_system()
    click.echo(json.dumps(report.as_dict(), indent=2) if as_json else format_report(report))


@main.command()
@click.argument("base", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("new", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--fail-threshold",
    "threshold",
    default="10%",
    show_default=True,
    metavar="PERCENT",
    help="A cell regresses when significantly slower by more than this (10% or 0.1).",
)
@click.option("--force", is_flag=True, help="Compare even runs of different workloads or machines.")
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
def compare(base: Path, new: Path, threshold: str, force: bool, as_json: bool) -> None:
    """Compare two benchmark JSONs cell by cell: times, speedups, instruction counts.

    Exit 0 when no cell is significantly slower beyond the threshold, 1 naming each regressed cell,
    2 when the files cannot be compared (different workloads or machines, unless --force).
    """
    from zerosite.benchmarking.compare import CompareError, compare_runs, load_run, parse_threshold

    try:
        comparison = compare_runs(load_run(base), load_run(new), threshold=parse_threshold(threshold), force=force)
    except CompareError as error:
        _fail(str(error))
    click.echo(
        printable_json(json.dumps(comparison.as_dict(), indent=2, ensure_ascii=False))
        if as_json
        else comparison.render()
    )
    sys.exit(comparison.exit_code)


@main.command()
@click.argument("text")
@click.option("--module", help="Only reports of this module.")
@click.option("--limit", type=click.IntRange(min=1, max=MAX_ROWS_SHOWN), default=20, show_default=True)
@click.option("--db", type=click.Path(dir_okay=False, exists=True, path_type=Path), required=True)
def search(text: str, module: str | None, limit: int, db: Path) -> None:
    """Full-text search of the report index by address (and module)."""
    from zerosite.store import search_reports

    try:
        rows = search_reports(db, text, module=module, limit=limit)
    except StoreError as error:
        _fail(str(error))
    _print_rows(rows)


@main.command()
@click.option(
    "--recent",
    type=click.IntRange(min=1, max=MAX_ROWS_SHOWN),
    default=20,
    show_default=True,
    help="How many, newest first.",
)
@click.option("--db", type=click.Path(dir_okay=False, exists=True, path_type=Path), required=True)
def reports(recent: int, db: Path) -> None:
    """List the most recently generated reports in the index."""
    from zerosite.store import recent_reports

    try:
        rows = recent_reports(db, recent)
    except StoreError as error:
        _fail(str(error))
    _print_rows(rows)


def _print_rows(rows: list[Any]) -> None:
    _table(
        ("project", "module", "status", "size", "address", "path"),
        [(r.project_id, r.module, r.status, str(r.size_bytes), r.address, r.path or (r.error or "")) for r in rows],
    )


@main.command()
@click.option("--db", type=click.Path(dir_okay=False, exists=True, path_type=Path), required=True)
@click.option(
    "--to",
    "folder",
    type=click.Path(path_type=Path),
    required=True,
    help="The site folder: new, empty, or one publish wrote before (updated in place, file by file).",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="The folder the index's report paths are relative to. Default: the index's folder.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable summary.")
def publish(db: Path, folder: Path, out: Path | None, as_json: bool) -> None:
    """Write the indexed reports as a static site for a CDN: search page, hashed assets, .gz/.br, _headers."""
    from zerosite.publish import PublishError, publish_site

    try:
        titles = {m.name: m.title for m in get_modules().values()}
    except PluginError as error:  # titles are a nicety: the site is made without them
        click.echo(f"warning: module titles left out: plugins: {printable(str(error))}", err=True)
        titles = {}
    with stopping_cleanly():
        try:
            summary = publish_site(db, folder, out_dir=out, titles=titles)
        except PublishError as error:
            _fail(str(error))
        except KeyboardInterrupt as stop:  # each file is replaced whole; the next publish removes what was left
            _fail(f"{stop_word(stop)}; the site holds whole files only: publish again to finish", stop_code(stop))
    if as_json:
        click.echo(printable_json(json.dumps(summary.as_dict(), ensure_ascii=False, indent=2)))
    else:
        for why in summary.skipped[:FAILURES_SHOWN]:
            click.echo(printable(f"skipped: {why}"), err=True)
        if len(summary.skipped) > FAILURES_SHOWN:
            click.echo(f"... and {len(summary.skipped) - FAILURES_SHOWN} more skipped", err=True)
        click.echo(
            f"published {summary.reports} reports of {summary.projects} projects to {summary.folder} "
            f"in {summary.wall_s:.2f} s: {summary.written} files written, {summary.unchanged} unchanged, "
            f"{summary.removed} removed; open {summary.folder / 'index.html'}"
        )
    sys.exit(summary.exit_code)  # 1 when a report was skipped: a deploy script must not take the site as whole


@main.command("new-module")
@click.argument("name")
@click.option("--title", required=True, help='The Korean title, e.g. "주차 검토".')
@click.option("--requires", multiple=True, metavar="MODULE", help="A module whose result it needs (repeatable).")
@click.option(
    "--package",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write an installable package into this folder instead of a file into the plugins folder.",
)
@click.option("--force", is_flag=True, help="Overwrite files that exist.")
def new_module(name: str, title: str, requires: tuple[str, ...], package: Path | None, force: bool) -> None:
    """Write a new report module NAME: a plugins-folder file and its template, or a package (--package)."""
    from zerosite.scaffold import ExistingModule, ModuleSpec, ScaffoldError, scaffold_package, scaffold_plugin_file

    plugins_dir = plugin_settings().plugins_dir or Path("plugins")
    if package is None and not plugins_dir.exists():  # the folder this command makes: no plugins to load from it yet
        set_plugin_settings(replace(plugin_settings(), plugins_dir=None))
    known = _modules()
    unknown = [r for r in requires if r not in known]
    if unknown:
        _fail(f"unknown required module(s): {', '.join(map(repr, unknown))}; known: {', '.join(known)}")
    existing = ExistingModule(known[name].provider, get_plugin_file(known[name].provider)) if name in known else None
    try:
        spec = ModuleSpec(name, title, requires)
        if package is not None:
            written = scaffold_package(spec, package, force=force, existing=existing)
        else:
            written = scaffold_plugin_file(spec, plugins_dir, force=force, existing=existing)
    except ScaffoldError as error:
        _fail(str(error))
    here = Path.cwd()
    for path in written:
        click.echo(f"wrote {path.relative_to(here) if path.is_relative_to(here) else path}")  # as the first one was


def _serve_log_config(uvicorn_config: dict[str, Any], log_level: str) -> dict[str, Any]:
    """Uvicorn's logging configuration, with zerosite's own loggers on its stderr handler at ``log_level``: the
    service's lines look like uvicorn's (``INFO:     workers ready``), in every server process."""
    import copy

    config = copy.deepcopy(uvicorn_config)
    config["loggers"]["zerosite"] = {"handlers": ["default"], "level": log_level.upper(), "propagate": False}
    return config


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="Port to listen on.")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Output folder: OUT/<project-id>/<module>.html (shared by every server process on it).",
)
@click.option(
    "--db",
    type=click.Path(dir_okay=False, path_type=Path),
    help="SQLite index of the reports. Default: OUT/index.sqlite.",
)
@click.option(
    "--strategy", "-s", default="process", show_default=True, help="The warm runner: see `zerosite strategies`."
)
@click.option(
    "--workers",
    "-w",
    type=click.IntRange(min=1),
    default=2,
    show_default=True,
    help=f"Workers of the runner (threads or processes); at most {MAX_WORKERS_PER_CPU} per usable CPU.",
)
@click.option(
    "--chunksize",
    type=click.IntRange(min=1, max=MAX_CHUNKSIZE),
    default=1,
    show_default=True,
    help="Projects per task sent to a process pool (the last tasks of a batch get fewer).",
)
@click.option(
    "--cache",
    envvar="ZEROSITE_CACHE",
    metavar="URL",
    help="Report cache backend (else ZEROSITE_CACHE). Default: local (the store's own files and index).",
)
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="A file holding the bearer token that write endpoints require (else ZEROSITE_TOKEN, else the file "
    "ZEROSITE_TOKEN_FILE names, else none).",
)
@click.option(
    "--queue-size",
    type=click.IntRange(min=1, max=100_000),
    default=64,
    show_default=True,
    help="Report requests waiting at once per server process; beyond, 503 with Retry-After.",
)
@click.option(
    "--batch-queue-size",
    type=click.IntRange(min=1, max=10_000),
    default=8,
    show_default=True,
    help="Batches queued or running at once per server process; beyond, 503.",
)
@click.option(
    "--request-timeout",
    "request_timeout_s",
    type=_Finite("seconds", min=0, min_open=True, max=MAX_TIMEOUT_S),
    default=30.0,
    show_default=True,
    help="A report request not answered within this many seconds gets a 504.",
)
@click.option(
    "--report-timeout",
    "report_timeout_s",
    type=_Finite("seconds", min=0, min_open=True, max=MAX_TIMEOUT_S),
    help="Per-report time limit in the workers (as generate --timeout).",
)
@click.option(
    "--processes",
    type=click.IntRange(min=1, max=64),
    default=1,
    show_default=True,
    help="Server processes sharing the port, the store and the index (uvicorn --workers).",
)
@click.option("--access-log", is_flag=True, help="Log every request.")
@click.option(
    "--log-level",
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
    default="info",
    show_default=True,
)
def serve(
    host: str,
    port: int,
    token_file: Path | None,
    processes: int,
    access_log: bool,
    log_level: str,
    **settings: Any,
) -> None:
    """Serve reports over HTTP: make them on request, run batches, search, /metrics (needs the serve extra).

    The same app is `uvicorn --factory zerosite.service:create_app`, configured by ZEROSITE_* variables.
    SIGTERM or Ctrl-C: no new work is taken, the requests in flight are finished, then the server exits.
    """
    import logging.config
    import shutil
    import tempfile

    try:
        import uvicorn

        from zerosite.service import ConfigError, ServiceConfig, create_app, read_token_file, token_from_env
        from zerosite.service.running import PortUnavailable, ServerFailed, check_port, serve_until_stopped
    except ImportError as error:
        _fail(f"zerosite serve needs the serve extra (pip install 'zerosite[serve]'): {error}")
    log_config = _serve_log_config(uvicorn.config.LOGGING_CONFIG, log_level)
    logging.config.dictConfig(log_config)  # now, so that a warning about the settings shows as the rest will
    try:
        token = read_token_file(token_file) if token_file is not None else token_from_env()
        config = ServiceConfig(token=token, **settings)
        check_port(host, port)  # before the workers start: a port in use is said first, and alone
        app = create_app(config)  # checks the plan (modules, strategy, plugins) before anything listens
    except (ConfigError, PortUnavailable) as error:
        _fail(str(error))
    grace = config.request_timeout_s + 5
    common: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_level": log_level,
        "log_config": log_config,
        "access_log": access_log,
        "timeout_graceful_shutdown": grace,
    }
    metrics_dir = None
    if processes == 1:
        server = uvicorn.Config(app, **common)
    else:
        app.state.service.cache.close()  # each server process opens its own: this app only checked the settings
        os.environ.update(config.to_env())
        if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # /metrics sums what every server process counted
            metrics_dir = tempfile.mkdtemp(prefix="zerosite-metrics-")
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        server = uvicorn.Config("zerosite.service:create_app", factory=True, workers=processes, **common)
    try:
        stopped_by = serve_until_stopped(server)
    except ServerFailed as error:
        _fail(str(error), EXIT_FAILED)
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    if stopped_by is not None:  # stopped cleanly, as asked: the exit status says by what, as generate's does
        sys.exit(128 + stopped_by)
