"""The self-contained ``index.html`` of a benchmark run: verdicts, machine, winners, charts, profiles."""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from zerosite.benchmarking.analysis import Analysis
from zerosite.benchmarking.charts import Chart
from zerosite.benchmarking.machine import Machine
from zerosite.benchmarking.targets import TARGET_SPECS, Targets

__all__ = ["ProfileLink", "render_page", "write_page"]


@dataclass(frozen=True)
class ProfileLink:
    """A profile file to link from the page (path relative to the page)."""

    label: str
    href: str


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def render_page(
    analysis: Analysis,
    targets: Targets,
    machine: Machine,
    charts: Sequence[Chart] = (),
    profiles: Sequence[ProfileLink] = (),
    json_name: str = "benchmark.json",
    quick: bool = False,
    generated: str | None = None,
) -> str:
    """The page as HTML; charts are embedded as base64 PNG data URIs, so the file stands alone."""
    env = Environment(
        loader=FileSystemLoader(Path(__file__).parent), autoescape=True, undefined=StrictUndefined, trim_blocks=True
    )
    env.filters["g"] = lambda value: f"{value:.4g}"
    counts = analysis.as_dict()["verdict_counts"]
    return env.get_template("index.html.j2").render(
        generated=generated or dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        quick=quick,
        json_name=json_name,
        counts=counts,
        sentences=analysis.sentences,
        machine=machine,
        targets=[
            {
                "name": n,
                "value": v,
                "unit": TARGET_SPECS[n].unit,
                "figure": TARGET_SPECS[n].figure,
                "origin": targets.origins.get(n, ""),
            }
            for n, v in targets.values.items()
        ],
        cells=[f for f in analysis.cells],
        failures=analysis.failures,
        charts=[{"title": c.title, "src": _data_uri(c.path)} for c in charts],
        profiles=profiles,
    )


def write_page(path: Path, **kwargs: object) -> Path:
    """Render the page (see :func:`render_page`) into ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_page(**kwargs), encoding="utf-8")  # type: ignore[arg-type]
    return path
