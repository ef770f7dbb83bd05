"""The Jinja2 environment (one per process, built once) and the call that renders a report."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib
import inspect
import os
import re
import sys
import weakref
from collections.abc import Callable, Iterable, Mapping, MutableMapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jinja2
import pluggy
from jinja2 import (
    ChoiceLoader,
    Environment,
    FileSystemBytecodeCache,
    FileSystemLoader,
    PrefixLoader,
    StrictUndefined,
    TemplateNotFound,
    TemplateSyntaxError,
    nodes,
)
from jinja2.bccache import Bucket
from jinja2.compiler import CodeGenerator, Frame
from markupsafe import escape

from zerosite.plugins import each_plugin, forget_loaded, get_modules, get_plugin_manager, plugin_settings
from zerosite.project import SQM_PER_PYEONG, Project
from zerosite.svg import SVG
from zerosite.types import PluginError, PluginSettings, ReportModule

__all__ = [
    "NUMBER_FILTERS",
    "REPORT_POLICY",
    "ReportEnvironment",
    "builtin_templates_dir",
    "escaped_text",
    "forget_loaded_code",
    "get_environment",
    "is_template_name",
    "render_report",
    "template_problems",
    "templates_fingerprint",
]

REPORT_POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"
"""The Content-Security-Policy a report is served with (by the service, and by a published site's ``_headers``):
what a report needs, its inline styles and ``data:`` images, and nothing else, no script: a second line of defence
behind the escaping of every text from input."""


def builtin_templates_dir() -> Path:
    """The folder of the built-in templates, in a source checkout and in an installed wheel alike."""
    return Path(importlib.import_module("zerosite.templates").__file__ or "").parent


def get_environment(settings: PluginSettings | None = None) -> Environment:
    """This process's Jinja2 environment for ``settings``: built on first use, then reused.

    :raises PluginError: a registered module's template is missing or does not compile (naming
        the module, its plugin and the template).
    """
    return _build_environment(settings or plugin_settings())


def forget_loaded_code() -> None:
    """Drop this process's cached plugin managers, module tables and template environments: the next use builds them
    from the files as they are now (plugin files are imported again; installed packages stay as imported)."""
    forget_loaded()
    _build_environment.cache_clear()


@functools.cache
def _build_environment(settings: PluginSettings) -> Environment:
    env = _new_environment(settings)
    problems = template_problems(env, get_modules(settings).values())
    if problems:
        raise PluginError("; ".join(problems))
    return env


def _new_environment(settings: PluginSettings) -> Environment:
    """The environment's loaders (in lookup order: the user's ``--templates-dir``, each plugin's folders, the
    built-in templates), its filters, and what plugins add to it.

    :raises PluginError: a plugin's template hook failed or returned what is not a list of folders, or two
        plugins (or a plugin and the built-in templates) have a template of the same name, which would serve both.
    """
    pm = get_plugin_manager(settings)
    builtin = FileSystemLoader(builtin_templates_dir())
    user = [FileSystemLoader(settings.templates_dir)] if settings.templates_dir else []
    folders = _plugin_template_folders(pm)
    problems = _shadowed_templates(folders, builtin, get_modules(settings).values())
    if problems:
        raise PluginError("; ".join(problems))
    env = ReportEnvironment(
        loader=ChoiceLoader(
            [
                PrefixLoader({"default": builtin}, delimiter=":"),
                *user,
                *(FileSystemLoader(folder) for folder in dict.fromkeys(folder for _, folder in folders)),
                builtin,
            ]
        ),
        autoescape=True,
        auto_reload=False,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(NUMBER_FILTERS)
    env.globals["svg"] = SVG  # the charts' arithmetic, for the macros
    for _, prepare in reversed(list(each_plugin(pm, "zerosite_prepare_jinja2_environment"))):  # pluggy's order
        prepare(env=env)
    env.bytecode_cache = _CompiledTemplates.open(compiler_fingerprint(env))
    return env


def _plugin_template_folders(pm: pluggy.PluginManager) -> list[tuple[str, Path]]:
    """Each plugin's template folders, ``(plugin, folder)`` in load order, checked: a list (or tuple) of
    existing folders, given as ``str`` or ``Path`` (a bare ``str`` would be taken as one folder per character).

    :raises PluginError: the hook failed, or returned anything else, named with the plugin and what it returned.
    """
    folders: list[tuple[str, Path]] = []
    for plugin, call in each_plugin(pm, "zerosite_template_dirs"):
        for returned in call():
            where = f"plugin {plugin}: zerosite_template_dirs"
            if not isinstance(returned, list | tuple):
                got = f"{type(returned).__name__} {str(returned)!r}"
                raise PluginError(f"{where} must return a list of folders, got {got}")
            for folder in returned:
                if not isinstance(folder, str | os.PathLike):
                    raise PluginError(f"{where} returned {folder!r}, not a folder's path")
                if not Path(folder).is_dir():
                    raise PluginError(f"{where} returned {str(folder)!r}, which is not a folder")
                folders.append((plugin, Path(folder).resolve()))
    return folders


def _shadowed_templates(
    folders: Sequence[tuple[str, Path]], builtin: FileSystemLoader, modules: Iterable[ReportModule]
) -> list[str]:
    """Template names the first folder that has them would serve for another plugin without a word: a name in
    the folders of two plugins, or a plugin's template named as a built-in module's. (The built-in layout,
    ``base.html.j2`` and ``macros.html.j2``, a plugin may replace for the templates that ask for it by that name:
    the built-in reports ask for ``default:...``.) A user's override goes in ``--templates-dir``, searched first on
    purpose."""
    owners: dict[str, tuple[str, Path]] = {}
    problems = []
    for plugin, folder in folders:
        for name in filter(is_template_name, FileSystemLoader(folder).list_templates()):
            first = owners.setdefault(name, (plugin, folder))
            if first[0] != plugin and first[1] != folder:  # one folder that two plugins share serves each its own
                problems.append(
                    f"template {name!r} is in the folders of plugins {first[0]} ({first[1]}) and {plugin} ({folder}): "
                    f"the first would serve both; rename one"
                )
    built_in = set(builtin.list_templates())
    for module in modules:
        if module.template in owners and module.template in built_in:
            plugin, folder = owners[module.template]
            problems.append(
                f"plugin {plugin}'s template folder {folder} has {module.template!r}, the template of module "
                f"{module.name} (from plugin {module.provider}), which it would replace; rename it (to restyle a "
                "report, use --templates-dir)"
            )
    return problems


def is_template_name(name: str) -> bool:
    """Whether a file in a template folder can be a template (and counts in :func:`templates_fingerprint`): any
    name, whatever its extension, except Python files and hidden or cache files (a package's ``__init__.py``,
    ``__pycache__``, an editor's ``.swp``)."""
    parts = name.split("/")
    return not name.endswith((".py", ".pyc")) and not any(
        part.startswith(".") or part == "__pycache__" for part in parts
    )


class _CompiledTemplates(FileSystemBytecodeCache):
    """Jinja2's on-disk cache of compiled templates (in its private per-user folder under the temporary
    directory, files written atomically), which never stops a report: a folder that cannot be used or a
    file that cannot be read or written (a full disk) only means compiling as if there were no cache."""

    @classmethod
    def open(cls, fingerprint: str) -> _CompiledTemplates | None:
        try:
            return cls(pattern=f"zerosite-{fingerprint}-%s.cache")
        except (OSError, RuntimeError):  # no safe folder of this user's
            return None

    def load_bytecode(self, bucket: Bucket) -> None:
        with contextlib.suppress(OSError):
            super().load_bytecode(bucket)

    def dump_bytecode(self, bucket: Bucket) -> None:
        with contextlib.suppress(OSError):
            super().dump_bytecode(bucket)


def compiler_fingerprint(env: Environment) -> str:
    """What decides the code ``env`` compiles a template's source into, besides the source: Jinja2 and Python,
    the environment's syntax settings, extensions, filter and test names, and the source of the classes that
    generate the code. Compiled templates are cached on disk under it (Jinja2's bytecode cache, which also
    checks each template's source), so a new worker process loads its templates instead of compiling them
    (about half a second of CPU for the five built-in ones) and nothing compiled by other settings is reused."""
    classes = (type(env), env.code_generator_class, *(type(ext) for ext in env.extensions.values()))
    parts = [
        jinja2.__version__,
        sys.version,
        *(_describe(getattr(env, name)) for name in _COMPILE_SETTINGS),
        *sorted(env.extensions),
        *sorted(env.filters),
        *sorted(env.tests),
        *(f"{cls.__module__}.{cls.__qualname__}" for cls in classes),
        *(_source_digest(cls) for cls in classes),
    ]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]


_COMPILE_SETTINGS = (
    "block_start_string",
    "block_end_string",
    "variable_start_string",
    "variable_end_string",
    "comment_start_string",
    "comment_end_string",
    "line_statement_prefix",
    "line_comment_prefix",
    "trim_blocks",
    "lstrip_blocks",
    "newline_sequence",
    "keep_trailing_newline",
    "optimized",
    "autoescape",
    "finalize",
    "is_async",
)
"""The environment's settings that change the code a template compiles to."""


def _describe(value: object) -> str:
    """A setting as text that is the same in every process (a function by its name, not its address)."""
    if callable(value):
        return f"{getattr(value, '__module__', '')}.{getattr(value, '__qualname__', type(value).__qualname__)}"
    return repr(value)


def _source_digest(cls: type) -> str:
    """A hash of the file that defines ``cls`` ("" where it has none, e.g. a class made at run time)."""
    try:
        return hashlib.sha256(Path(inspect.getfile(cls)).read_bytes()).hexdigest()
    except (OSError, TypeError):
        return ""


def render_report(
    module: ReportModule,
    project: Project,
    result: Any,
    deps: Mapping[str, Any],
    env: Environment | None = None,
) -> str:
    """Render one module's report for one project."""
    template = (env or get_environment()).get_template(module.template)
    return template.render(project=project, result=result, deps=deps, module=module)


def template_problems(env: Environment, modules: Iterable[ReportModule]) -> list[str]:
    """What stops each module's template from loading: not found, or a syntax error (with its line)."""
    problems = []
    for module in modules:
        where = f"module {module.name} (from plugin {module.provider})"
        try:
            env.get_template(module.template)
        except TemplateNotFound as error:
            problems.append(f"{where}: template {error.name!r} not found in {', '.join(_searched(env)) or 'no folder'}")
        except TemplateSyntaxError as error:
            name = error.filename or module.template
            problems.append(f"{where}: template {name} line {error.lineno}: {error.message}")
    return problems


def _searched(env: Environment) -> list[str]:
    """The folders ``env`` looks templates up in, in order (the built-in ones once)."""
    loaders = env.loader.loaders if isinstance(env.loader, ChoiceLoader) else [env.loader]
    folders = [str(path) for loader in loaders if isinstance(loader, FileSystemLoader) for path in loader.searchpath]
    return list(dict.fromkeys(folders))


def templates_fingerprint(env: Environment) -> str:
    """A hash of every template the environment can load (:func:`is_template_name`: whatever its extension, so a
    template named ``x.html``, or one only included, counts); it changes when any template changes.

    Kept per environment until a template is added, removed or changed, as Jinja2's loaders tell (the ``uptodate``
    of each source, the check by which Jinja2 itself reloads a template it renders): a program that plans batch
    after batch reads its templates once (0.9 ms a batch here), not for every batch."""
    assert env.loader is not None
    names = sorted(env.list_templates(filter_func=is_template_name))
    known = _fingerprints.get(env)
    if known is not None and known.names == names and all(uptodate() for uptodate in known.checks):
        return known.digest
    digest = hashlib.sha256()
    checks: list[Callable[[], bool]] = []
    for name in names:
        source, _, uptodate = env.loader.get_source(env, name)
        digest.update(name.encode() + b"\0" + source.encode() + b"\0")
        if uptodate is not None:
            checks.append(uptodate)
    fingerprint = digest.hexdigest()
    if len(checks) == len(names):  # a source that cannot say whether it changed is read every time
        _fingerprints[env] = _Fingerprint(names, checks, fingerprint)
    return fingerprint


class _Fingerprint(NamedTuple):
    """The last :func:`templates_fingerprint` of an environment: its template names, their sources' ``uptodate``
    checks, and the hash."""

    names: list[str]
    checks: list[Callable[[], bool]]
    digest: str


_fingerprints: weakref.WeakKeyDictionary[Environment, _Fingerprint] = weakref.WeakKeyDictionary()


class _GroupedSpecs(dict[int, str]):
    """Format specs with thousands separators by number of decimals, made once (a spec built per call costs
    about a fifth of the formatting); a count not made in advance gets its spec made when asked."""

    def __missing__(self, digits: int) -> str:
        return f",.{digits}f"


_GROUPED = _GroupedSpecs((digits, f",.{digits}f") for digits in range(10))


_remembered = functools.lru_cache(maxsize=4096)
"""Each number filter remembers its last 4096 texts: two thirds of the figures a batch prints were printed
before (the modules' constants, a total shown in several places), and formatting one costs ten times
looking it up. Numbers that compare equal format alike (1 and 1.0, 0.0 and -0.0): they may share an entry."""


@_remembered
def num(value: float, digits: int = 0) -> str:
    """1234.5 -> '1,234.5' with ``digits`` decimals; a negative zero shows as 0. (A small negative that
    rounds to zero keeps its sign: "-0.0%" is a loss too small to show, not none.) The other number
    filters format with this one."""
    return f"{value + 0.0 if value == 0 else value:{_GROUPED[digits]}}"


@_remembered
def krw(value: float) -> str:
    """1234567 -> '1,234,567원'."""
    return f"{num(value)}원"


@_remembered
def eok(value: float, digits: int = 1) -> str:
    """1_230_000_000 -> '12.3억원' (1억 = 100,000,000 KRW)."""
    return f"{num(value / 1e8, digits)}억원"


@_remembered
def pct(value: float, digits: int = 1) -> str:
    """0.1234 -> '12.3%'."""
    return f"{num(value * 100, digits)}%"


@_remembered
def sqm(value: float, digits: int = 1) -> str:
    """1234.5 -> '1,234.5㎡'."""
    return f"{num(value, digits)}㎡"


@_remembered
def pyeong(value_sqm: float, digits: int = 1) -> str:
    """An area in ㎡ shown in pyeong: 3305.785 -> '1,000.0평'."""
    return f"{num(value_sqm / SQM_PER_PYEONG, digits)}평"


NUMBER_FILTERS: Mapping[str, Callable[..., str]] = {
    "krw": krw,
    "eok": eok,
    "pct": pct,
    "num": num,
    "sqm": sqm,
    "pyeong": pyeong,
}
"""The number filters. Their text is digits, separators, a sign and a unit: nothing HTML escapes."""

MARKUP_CHARACTERS = "&<>'\""
"""What ``markupsafe.escape`` replaces: a string with none of them is its own escaped text."""

_MARKUP_CHARACTER = re.compile(f"[{MARKUP_CHARACTERS}]")


def escaped_text(value: Any) -> str:
    """``str(markupsafe.escape(value))``, without making a ``Markup`` of a string that needs no escaping.

    Autoescaped output goes through this: a template's text is joined into one string, so the ``Markup``
    that ``escape`` returns would be thrown away at once (and making it costs more than the escaping).
    """
    kind = type(value)
    if kind is str:
        return str(escape(value)) if _MARKUP_CHARACTER.search(value) else value
    if kind is int or kind is float:
        return str(value)
    return str(escape(value))


_ESCAPED_PREFIX = "(_output if (_output_type := type(_output := "
_ESCAPED_SUFFIX = (
    ")) is str and "
    + " and ".join(f"{character!r} not in _output" for character in MARKUP_CHARACTERS)
    + " else str(_output) if _output_type is int or _output_type is float else environment.escaped_text(_output))"
)
"""Around an autoescaped output: :func:`escaped_text`, its two commonest cases (a string with no markup
character, a number) written out in place so that they cost no call."""


class ReportCodeGenerator(CodeGenerator):
    """Jinja2's code generator, but autoescaped output is written as :func:`escaped_text` of the value (its
    commonest cases inline), or as the value itself where it is the text of one of :data:`NUMBER_FILTERS`
    (unless a plugin replaced that filter in the environment before the template was compiled). The text
    is the same either way."""

    def _output_child_pre(self, node: nodes.Expr, frame: Frame, finalize: CodeGenerator._FinalizeInfo) -> None:
        kind = self._output_kind(node, frame, finalize)
        if kind == "jinja2":
            super()._output_child_pre(node, frame, finalize)
        else:
            self.write("(" if kind == "number" else _ESCAPED_PREFIX)

    def _output_child_post(self, node: nodes.Expr, frame: Frame, finalize: CodeGenerator._FinalizeInfo) -> None:
        kind = self._output_kind(node, frame, finalize)
        if kind == "jinja2":
            super()._output_child_post(node, frame, finalize)
        else:
            self.write(")" if kind == "number" else _ESCAPED_SUFFIX)

    def _output_kind(self, node: nodes.Expr, frame: Frame, finalize: CodeGenerator._FinalizeInfo) -> str:
        """How an output is written: as Jinja2 writes it (autoescape off or decided at run time, a
        ``finalize``), as the text of a number filter, or escaped."""
        if frame.eval_ctx.volatile or not frame.eval_ctx.autoescape or finalize.src is not None:
            return "jinja2"
        return "number" if self._number_text(node) else "escaped"

    def visit_Output(self, node: nodes.Output, frame: Frame) -> None:
        """An output of several parts (text and values) yielded as one string, ``yield ''.join((...))``, not part
        by part: each part yielded goes up through every generator between its block and the render (a child
        template's root, then its base's), and a report has hundreds of them. Where Jinja2 buffers (a macro, a
        ``{% set %}`` block), outside any block of a child template, or where autoescaping is decided at run time,
        as Jinja2 writes it."""
        if frame.buffer is not None or frame.require_output_check or frame.eval_ctx.volatile or len(node.nodes) < 2:
            super().visit_Output(node, frame)
            return
        finalize = self._make_finalize()
        self.writeline("yield ''.join((")
        self.indent()
        for child in node.nodes:
            if isinstance(child, nodes.TemplateData):
                self.writeline(repr(self._output_child_to_const(child, frame, finalize)) + ",")
                continue
            self.newline(child)
            self._output_child_pre(child, frame, finalize)
            self.visit(child, frame)
            self._output_child_post(child, frame, finalize)
            self.write(",")
        self.outdent()
        self.writeline("))")

    def visit_Getattr(self, node: nodes.Getattr, frame: Frame) -> None:
        """``name.attr`` as Python's ``getattr(name, "attr", missing)``, falling back to the environment's
        ``getattr`` (the item, else undefined) only when the attribute is missing: the same value, without
        a call into the environment for every attribute of a result that a template prints."""
        if not isinstance(node.node, nodes.Name) or self.environment.is_async:
            super().visit_Getattr(node, frame)
            return
        self.write("(_getattr_value if (_getattr_value := getattr(")
        self.visit(node.node, frame)
        self.write(f", {node.attr!r}, missing)) is not missing else environment.getattr(")
        self.visit(node.node, frame)
        self.write(f", {node.attr!r}))")

    def _number_text(self, node: nodes.Expr) -> bool:
        if not isinstance(node, nodes.Filter) or node.name not in NUMBER_FILTERS:
            return False
        return self.environment.filters.get(node.name) is NUMBER_FILTERS[node.name]


_SUBSCRIPTABLE: dict[type, bool] = {}
"""By type: whether ``obj[key]`` may work for an ``obj`` of it (a class may have ``__class_getitem__``)."""


class ReportEnvironment(Environment):
    """The Jinja2 environment of reports: templates compiled by :class:`ReportCodeGenerator`."""

    code_generator_class = ReportCodeGenerator
    escaped_text = staticmethod(escaped_text)

    def make_globals(self, d: MutableMapping[str, Any] | None) -> MutableMapping[str, Any]:
        """A template's globals as one plain dict over the environment's, not Jinja2's ``ChainMap`` of the
        two, which every render copies and every import compares key by key in Python. Globals are final
        before a template loads (plugins add theirs in ``zerosite_prepare_jinja2_environment``)."""
        return {**self.globals, **(d or {})}

    def getitem(self, obj: object, argument: Any) -> Any:
        """Jinja2's ``obj[argument]`` (the item, else the attribute), straight to the attribute of an object
        that has no items: asking it for one would only raise a TypeError to catch (``item[name]`` in a
        macro, ``selectattr``, ``map(attribute=...)`` and ``sort(attribute=...)`` on result dataclasses)."""
        if type(argument) is str:
            kind = type(obj)
            subscriptable = _SUBSCRIPTABLE.get(kind)
            if subscriptable is None:
                subscriptable = _SUBSCRIPTABLE[kind] = hasattr(kind, "__getitem__") or issubclass(kind, type)
            if not subscriptable:
                try:
                    return getattr(obj, argument)
                except AttributeError:
                    return self.undefined(obj=obj, name=argument)
        return super().getitem(obj, argument)
