"""The arithmetic of the reports' SVG charts, for the macros that draw them (``templates/macros.html.j2``).

The macros keep the markup, the colours and the labels (autoescaped, as all template output); these functions work
out where each bar, point and grid line goes, which the template language did slowly (a namespace grown point by
point, Jinja2's ``min`` and ``max`` filters with a key function per value: the line chart took 1.8 times its time now,
docs/performance.md). Each takes the chart's layout (its left edge, width, row height...) from the macro and gives
back what the macro prints: its coordinates as the text the macro printed before (``'%.1f' % x``), so that the
reports keep their bytes. Templates see them as ``svg.bars``, ``svg.line_plot`` and ``svg.score_rows``
(:data:`SVG`). Field lookups are Jinja2's (``item[name]``: the item, else the attribute; ``row.name``: the
attribute, else the item), as in the macros.
"""

from __future__ import annotations

from collections.abc import Iterable
from types import SimpleNamespace
from typing import Any, NamedTuple

from jinja2 import Environment, pass_environment

__all__ = ["SVG", "Bar", "GridLine", "LinePlot", "ScoreRow", "bars", "line_plot", "score_rows"]


def _fixed(value: float) -> str:
    """A coordinate as the macros printed it, ``'%.1f' % value``: any number converted to a float first, as a
    format spec would not (a ``Decimal`` formats itself)."""
    return "%.1f" % value  # noqa: UP031


class Bar(NamedTuple):
    """One bar of a horizontal bar chart."""

    label: Any
    value: float
    y: int
    """The top of its row."""
    width: str
    """The bar's length, as printed."""
    text_x: str
    """Where its value is printed, just past its end."""
    odd: bool
    """Every other bar (the second, the fourth...), drawn in the lighter colour."""


@pass_environment
def bars(
    environment: Environment, items: Iterable[Any], value_attr: str, label_attr: str, row_h: int, left: int, plot_w: int
) -> list[Bar]:
    """The bars of ``items``, ``row_h`` apart from a top of 34, scaled so that the largest value spans ``plot_w``
    from ``left`` (none where no value is above 0)."""
    rows = [(environment.getitem(item, value_attr), environment.getitem(item, label_attr)) for item in items]
    largest = 0.0
    for value, _ in rows:
        if value > largest:
            largest = value * 1.0
    scale = (plot_w / largest) if largest > 0 else 0.0
    drawn = []
    for index, (raw, label) in enumerate(rows):
        value = raw * 1.0
        width = value * scale if value > 0 else 0.0
        drawn.append(Bar(label, value, 34 + row_h * index, _fixed(width), _fixed(left + width + 5), index % 2 == 1))
    return drawn


class GridLine(NamedTuple):
    """A horizontal line of a line plot's grid, with the value it marks."""

    y: str
    label_y: str
    value: float


class LinePlot(NamedTuple):
    """Where a line plot of points goes in its box."""

    x_min: float
    x_max: float
    y_min: float
    y_max: float
    zero_y: str
    """Where the value 0 is, as printed (drawn only where the values change sign)."""
    path: str
    """The points of its polyline, ``x,y x,y ...`` (empty for no points)."""
    grid: tuple[GridLine, ...]
    """Five lines, top to bottom, a quarter of the range apart."""


@pass_environment
def line_plot(
    environment: Environment, points: Iterable[Any], left: int, top: int, plot_w: int, plot_h: int
) -> LinePlot:
    """``(x, y)`` points placed in the box ``plot_w`` by ``plot_h`` at ``(left, top)``: x from its least to its
    greatest value, y from 0 or the least value to 0 or the greatest (upwards), either span 1 where it is none."""
    pairs = [(environment.getitem(point, 0), environment.getitem(point, 1)) for point in points]
    xs, ys = [x for x, _ in pairs], [y for _, y in pairs]
    x_min, x_max = (min(xs) if xs else 0) * 1.0, (max(xs) if xs else 1) * 1.0
    y_lo, y_hi = (min(ys) if ys else 0) * 1.0, (max(ys) if ys else 1) * 1.0
    y_min = y_lo if y_lo < 0 else 0.0
    y_max = y_hi if y_hi > 0 else 0.0
    x_span = (x_max - x_min) if x_max > x_min else 1.0
    y_span = (y_max - y_min) if y_max > y_min else 1.0
    path = " ".join(
        [
            f"{_fixed(left + (x - x_min) / x_span * plot_w)},{_fixed(top + (y_max - y) / y_span * plot_h)}"
            for x, y in pairs
        ]
    )
    grid = []
    for i in range(5):
        gy = top + plot_h * i / 4
        grid.append(GridLine(_fixed(gy), _fixed(gy + 4), y_max - y_span * i / 4))
    zero_y = _fixed(top + y_max / y_span * plot_h)
    return LinePlot(x_min, x_max, y_min, y_max, zero_y, path, tuple(grid))


class ScoreRow(NamedTuple):
    """One row of score bars: a score out of its maximum."""

    label: Any
    y: int
    """The top of its row."""
    ratio: float
    """The score over its maximum, within 0 and 1 (0 for no maximum)."""
    width: str
    """The filled part's length, as printed."""
    score: str
    max_score: str


@pass_environment
def score_rows(environment: Environment, rows: Iterable[Any], row_h: int, plot_w: int) -> list[ScoreRow]:
    """The rows' scores, ``row_h`` apart from a top of 7, each filling its share of ``plot_w``."""
    drawn = []
    for index, row in enumerate(rows):
        score, max_score = environment.getattr(row, "score"), environment.getattr(row, "max_score") * 1.0
        ratio = (score / max_score) if max_score > 0 else 0.0
        ratio = 0.0 if ratio < 0.0 else (1.0 if ratio > 1.0 else ratio)
        label = environment.getattr(row, "label")
        drawn.append(
            ScoreRow(label, 7 + row_h * index, ratio, _fixed(plot_w * ratio), _fixed(score), _fixed(max_score))
        )
    return drawn


SVG = SimpleNamespace(bars=bars, line_plot=line_plot, score_rows=score_rows)
"""The functions as templates see them: the environment's global ``svg``."""
