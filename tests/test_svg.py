"""The charts' arithmetic in Python (``zerosite.svg``) draws what the template language drew, byte for byte."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zerosite.rendering import get_environment

BEFORE = (Path(__file__).parent / "data" / "chart_macros_before.html.j2").read_text(encoding="utf-8")

numbers = st.one_of(
    st.integers(-(10**12), 10**12),
    st.floats(-1e12, 1e12, allow_nan=False, allow_infinity=False),
)
labels = st.text(st.sampled_from("가나 <>&'\"ab1"), max_size=6)


@dataclass(frozen=True)
class _Row:
    label: str
    score: float
    max_score: float


@functools.cache
def _macros() -> tuple[Any, Any]:
    """The macros now and as they were, each compiled once for every example."""
    env = get_environment()
    return env.get_template("default:macros.html.j2").module, env.from_string(BEFORE).module


def _same(draw: Callable[[Any], Any]) -> None:
    now, before = _macros()
    assert str(draw(now)) == str(draw(before))


@settings(max_examples=60, deadline=None)
@given(values=st.lists(st.tuples(numbers, labels), max_size=8), as_dicts=st.booleans(), unit=labels)
def test_bar_chart(values: list[tuple[float, str]], as_dicts: bool, unit: str) -> None:
    items = [{"v": v, "name": n} if as_dicts else _Row(n, v, 0) for v, n in values]
    value, label = ("v", "name") if as_dicts else ("score", "label")
    _same(lambda m: m.bar_chart(iter(items), value, label, "제목 <t>", unit))


@settings(max_examples=60, deadline=None)
@given(points=st.lists(st.tuples(numbers, numbers), max_size=30))
def test_line_chart(points: list[tuple[float, float]]) -> None:
    _same(lambda m: m.line_chart(iter(points), "누적 <t>", "개월", "억원"))


@settings(max_examples=60, deadline=None)
@given(rows=st.lists(st.tuples(labels, numbers, numbers), max_size=8), as_dicts=st.booleans())
def test_score_bars(rows: list[tuple[str, float, float]], as_dicts: bool) -> None:
    items = [{"label": n, "score": s, "max_score": x} if as_dicts else _Row(n, s, x) for n, s, x in rows]
    _same(lambda m: m.score_bars(iter(items)))


@pytest.mark.parametrize("points", [[], [(0, 5)], [(3, -2.5), (3, -2.5)], [(1, 0), (2, 0)]])
def test_line_chart_edges(points: list[tuple[float, float]]) -> None:
    """No points, one, the same point twice, a flat line at zero: spans of none become 1."""
    _same(lambda m: m.line_chart(points, "t", "x", "y"))
