"""The report environment's output: escaped exactly as markupsafe escapes, number filters written as they are."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from jinja2 import DictLoader, Environment, StrictUndefined, Undefined
from markupsafe import Markup, escape

from zerosite.project import Zone
from zerosite.rendering import (
    NUMBER_FILTERS,
    ReportEnvironment,
    _CompiledTemplates,
    compiler_fingerprint,
    escaped_text,
    num,
)


class _Html:
    def __html__(self) -> str:
        return "<i>safe</i>"


class _Text(str):
    pass


@pytest.mark.parametrize(
    "value",
    [
        "plain 텍스트",
        "",
        "<script>alert(\"x\")</script> & 'y'",
        "a > b",
        "'",
        Markup("<b>kept</b>"),
        _Text("<sub>class</sub>"),
        _Html(),
        12,
        -3,
        1.5,
        -0.0,
        float("nan"),
        True,
        None,
        Zone.RESIDENTIAL_2,
        [1, "<"],
    ],
    ids=repr,
)
def test_escaped_text_is_what_markupsafe_escapes(value: Any) -> None:
    assert escaped_text(value) == str(escape(value))
    assert type(escaped_text(value)) in (str, Markup)
    assert ReportEnvironment(autoescape=True).from_string("{{ v }}|{{ v }}").render(v=value) == (
        f"{escape(value)}|{escape(value)}"
    )


def _environment(**filters: Any) -> ReportEnvironment:
    env = ReportEnvironment(autoescape=True)
    env.filters.update({**NUMBER_FILTERS, **filters})
    return env


def test_output_is_escaped_and_numbers_are_formatted() -> None:
    template = _environment().from_string("{{ text }}|{{ count }}|{{ 1234.5|num(1) }}|{{ 0.123|pct }}|{{ safe }}")
    assert template.render(text="<a href='x'>&", count=3, safe=Markup("<br>")) == (
        "&lt;a href=&#39;x&#39;&gt;&amp;|3|1,234.5|12.3%|<br>"
    )


def test_number_filters_are_written_without_escaping() -> None:
    source = _environment().compile("{{ x|num }}{{ x|krw }}{{ x|round }}", raw=True)
    assert source.count("escaped_text(") == 1  # round's output only


def test_a_number_filter_a_plugin_replaced_is_escaped() -> None:
    template = _environment(num=lambda value: "<b>").from_string("{{ 1|num }}")
    assert template.render() == "&lt;b&gt;"


def test_output_where_autoescape_is_off_is_not_escaped() -> None:
    template = _environment().from_string("{% autoescape false %}{{ x }}{% endautoescape %}|{{ x }}")
    assert template.render(x="<b>") == "<b>|&lt;b&gt;"


@pytest.mark.parametrize("digits", [0, 1, 2, 9, 12])
def test_num_formats_any_number_of_decimals(digits: int) -> None:
    assert num(-1234567.125, digits) == f"{-1234567.125:,.{digits}f}"
    assert num(-0.0, digits) == f"{0.0:.{digits}f}"


def test_num_refuses_a_negative_number_of_decimals() -> None:
    with pytest.raises(ValueError):
        num(1.0, -1)


@dataclass(frozen=True)
class _Row:
    label: str = "행"
    score: float = 1.5


class _Generic:
    def __class_getitem__(cls, key: Any) -> str:
        return f"class item {key}"


@pytest.mark.parametrize(
    ("obj", "argument"),
    [
        (_Row(), "label"),
        (_Row(), "missing"),
        ({"label": "dict"}, "label"),
        ({"items": 1}, "items"),
        ({}, "label"),
        ([10, 20], 1),
        ([10, 20], "append"),
        ("text", 0),
        (_Generic, "x"),
        (None, "label"),
        (3, "real"),
    ],
    ids=repr,
)
def test_getitem_finds_what_jinja2_finds(obj: Any, argument: Any) -> None:
    ours, jinja2s = ReportEnvironment(), Environment()
    found, expected = ours.getitem(obj, argument), jinja2s.getitem(obj, argument)
    if isinstance(expected, Undefined):
        assert isinstance(found, Undefined)
        assert found._undefined_obj is obj
        assert found._undefined_name == argument
    else:
        assert found == expected


def test_templates_read_fields_of_result_objects() -> None:
    template = _environment().from_string(
        "{{ rows|map(attribute='score')|sum }} {{ (rows|selectattr('score', 'gt', 1)|first).label }} "
        "{{ rows[0]['label'] }}"
    )
    assert template.render(rows=[_Row(), _Row("둘", 0.5)]) == "2.0 행 행"


class _Lookup:
    """Attributes that exist, one that raises AttributeError, and items."""

    label = "attribute"

    @property
    def broken(self) -> str:
        raise AttributeError("broken")

    def __getitem__(self, key: str) -> str:
        return f"item {key}"


@pytest.mark.parametrize(
    "source",
    [
        "{{ obj.label }}",
        "{{ obj.broken }}",
        "{{ obj.other }}",
        "{{ obj.label.upper() }}",
        "{% for o in [obj, obj] %}{{ o.label }}{% endfor %}",
        "{% macro show(o) %}{{ o.label }}{% endmacro %}{{ show(obj) }}",
        "{{ missing_name.label }}",
    ],
)
@pytest.mark.parametrize("obj", [_Lookup(), {"label": "key"}, _Row(), None], ids=repr)
def test_attributes_are_what_jinja2_finds(source: str, obj: Any) -> None:
    def render(env: Environment) -> str:
        try:
            return env.from_string(source).render(obj=obj)
        except Exception as error:
            return f"{type(error).__name__}: {error}"

    ours = render(ReportEnvironment(autoescape=True, undefined=StrictUndefined))
    assert ours == render(Environment(autoescape=True, undefined=StrictUndefined))


_PARTS = {
    "base.html": "<h1>{{ title }}</h1>{% block body %}<p>{{ text }} & more</p>{% endblock %}<i>{{ n }}</i>",
    "child.html": "{% extends 'base.html' %}ignored {{ text }}{% block body %}<b>{{ text }}</b>{{ super() }}"
    "{% for i in items %}<li>{{ i }}: {{ i * 2 }}</li>{% endfor %}{% endblock %}",
    "dynamic.html": "{% extends parent %}{% block body %}[{{ text }}|{{ n }}]{% endblock %}",
    "macro.html": "{% macro row(a, b) %}<tr>{{ a }}{{ b }}</tr>{% endmacro %}{{ row(text, n) }}-{{ row(n, text) }}",
    "volatile.html": "{% autoescape flag %}<p>{{ text }}/{{ n }}</p>{% endautoescape %}<q>{{ text }}{{ n }}</q>",
    "set.html": "{% set block_text %}<{{ text }}>{{ n }}{% endset %}{{ block_text }}|{{ block_text }}",
    "call.html": "{% macro box() %}<div>{{ caller() }}</div>{% endmacro %}"
    "{% call box() %}{{ text }}:{{ n }}{% endcall %}",
}


@pytest.mark.parametrize("name", sorted(_PARTS))
@pytest.mark.parametrize("flag", [True, False])
def test_an_output_of_several_parts_is_one_string_of_the_same_text(name: str, flag: bool) -> None:
    """Several parts yielded as one string (fewer values up a child template's generators): the text is
    Jinja2's, inside blocks and out, in macros, ``set`` and ``call`` blocks, and where autoescaping is decided at
    run time."""
    values = {"title": "T<1>", "text": "a<b>&'\"", "n": 2.5, "items": [1, "x<"], "parent": "base.html", "flag": flag}

    def render(env: Environment) -> str:
        return env.get_template(name).render(values)

    ours = ReportEnvironment(autoescape=True, loader=DictLoader(_PARTS), undefined=StrictUndefined)
    assert render(ours) == render(Environment(autoescape=True, loader=DictLoader(_PARTS), undefined=StrictUndefined))
    generated = ours.compile(_PARTS[name], name, raw=True)
    assert ("yield ''.join((" in generated) is (name != "call.html")  # there all output is in the call's buffer


@pytest.mark.parametrize(
    ("first", "then"),
    [(1, 1.0), (1.0, True), (0.0, -0.0), (-0.0, 0), (10**17, 1e17), (2.5, 2.5), (-0.0001, -0.0001)],
    ids=repr,
)
@pytest.mark.parametrize("name", sorted(NUMBER_FILTERS))
def test_number_filters_remember_only_what_formats_alike(first: float, then: float, name: str) -> None:
    """Numbers that compare equal share a remembered text: it must be the text of each."""
    remembered: Any = NUMBER_FILTERS[name]
    remembered.cache_clear()
    num.cache_clear()
    assert remembered(first) == remembered.__wrapped__(first)
    assert remembered(then) == remembered.__wrapped__(then)
    if name != "krw":
        assert remembered(first, 3) == remembered.__wrapped__(first, 3)
        assert remembered(then, 3) == remembered.__wrapped__(then, 3)


def test_templates_see_the_environments_globals_and_their_own() -> None:
    env = _environment()
    env.globals["site"] = "ZeroSite"  # as a plugin's zerosite_prepare_jinja2_environment does
    template = env.from_string("{{ site }} {{ own }} {{ range(2)|list }}", globals={"own": "mine"})
    assert template.render() == "ZeroSite mine [0, 1]"
    assert "own" not in env.globals
    env.loader = DictLoader({"macros.j2": "{% macro show() %}{{ site }}{% endmacro %}"})
    assert env.from_string('{% import "macros.j2" as m %}{{ m.show() }}').render() == "ZeroSite"


_COUNT_COMPILES = """
import jinja2
from zerosite.rendering import get_environment

compiled = []
original = jinja2.Environment.compile


def counting(self, *args, **kwargs):
    compiled.append(1)
    return original(self, *args, **kwargs)


jinja2.Environment.compile = counting
get_environment()
print(len(compiled))
"""


def test_a_new_process_loads_the_templates_compiled_before(tmp_path: Path) -> None:
    env = {**os.environ, "TMPDIR": str(tmp_path)}

    def compiles() -> int:
        run = subprocess.run([sys.executable, "-c", _COUNT_COMPILES], env=env, capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
        return int(run.stdout)

    assert compiles() >= 5  # the five built-in modules' templates, compiled and stored
    assert list(tmp_path.glob("_jinja2-cache-*/zerosite-*.cache"))
    assert compiles() == 0  # loaded: no template compiled again


def test_compiled_templates_are_kept_apart_by_what_changes_the_compiled_code() -> None:
    base = compiler_fingerprint(ReportEnvironment(autoescape=True))
    assert compiler_fingerprint(ReportEnvironment(autoescape=True)) == base
    assert compiler_fingerprint(ReportEnvironment(autoescape=False)) != base
    assert compiler_fingerprint(ReportEnvironment(autoescape=True, trim_blocks=True)) != base
    assert compiler_fingerprint(ReportEnvironment(autoescape=True, extensions=["jinja2.ext.loopcontrols"])) != base
    assert compiler_fingerprint(Environment(autoescape=True)) != base  # another code generator
    with_filter = ReportEnvironment(autoescape=True)
    with_filter.filters["pyeong"] = str
    assert compiler_fingerprint(with_filter) != base


def test_a_cache_that_cannot_be_used_never_stops_a_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    cache = _CompiledTemplates(directory=str(not_a_folder))  # every write and read fails
    env = ReportEnvironment(loader=DictLoader({"t.j2": "{{ x }}"}), autoescape=True, bytecode_cache=cache)
    assert env.get_template("t.j2").render(x="<b>") == "&lt;b&gt;"
    (tmp_path / f"_jinja2-cache-{os.getuid()}").write_text("")  # Jinja2's folder is not a folder: unsafe
    monkeypatch.setattr(tempfile, "gettempdir", lambda: str(tmp_path))
    assert _CompiledTemplates.open("fingerprint") is None
