"""The machine's own speed, measured beside every cell: a fixed piece of report-like work that no change to
ZeroSite touches, timed once per pass of the interleaved rounds, so that ``zerosite compare`` can tell a
cell that got slower from a machine that did.

Why: on a shared VM the machine's speed moves by tens of per cent within minutes (up to 38 % between 30 s
windows, ``bench/machine_drift.py``; 35 % between groups of cells in one full benchmark run): the same code
measured twice can come out further apart than any threshold worth gating on.
Timed in the same passes as a cell's rounds, the canary moves with the machine, and a cell's change is
judged against it (``compare.MACHINE_SHARE``).
"""

from __future__ import annotations

import time

import jinja2

__all__ = ["CANARY_SAMPLE_S", "Canary"]

CANARY_SAMPLE_S = 0.005
"""One canary sample lasts about this long: 1-3 % of a pass of interleaved rounds."""

_TEMPLATE = """\
<table>{% for row in rows %}<tr class="{{ loop.cycle('odd', 'even') }}"><td>{{ row.name }}</td>\
<td>{{ '{:,.0f}'.format(row.value) }}</td><td>{{ (row.value / total * 100) | round(1) }}%</td>\
{% if row.value > 500 %}<td>high</td>{% endif %}</tr>{% endfor %}</table>"""
_VALUES = tuple((i * 7919) % 1000 + 0.5 for i in range(40))
_ROWS = tuple({"name": f"<parcel {i}>", "value": value} for i, value in enumerate(_VALUES))
_TOTAL = sum(_VALUES)


class Canary:
    """Renders a fixed table with Jinja2 (escaping, filters, formatting, as a report does), calibrated
    once so that a sample lasts about :data:`CANARY_SAMPLE_S`; calling it returns seconds per render."""

    def __init__(self, sample_s: float = CANARY_SAMPLE_S) -> None:
        self._template = jinja2.Environment(autoescape=True).from_string(_TEMPLATE)
        self._render()  # compiled and warm before calibrating
        started = time.perf_counter()
        self._render()
        once = max(time.perf_counter() - started, 1e-7)
        self.loops = max(1, round(sample_s / once))

    def _render(self) -> str:
        return self._template.render(rows=_ROWS, total=_TOTAL)

    def __call__(self) -> float:
        started = time.perf_counter()
        for _ in range(self.loops):
            self._render()
        return (time.perf_counter() - started) / self.loops
