"""The benchmark's reference contenders do the same work as zerosite: every report, the same bytes."""

from __future__ import annotations

from pathlib import Path

import pytest

from zerosite.benchmarking.contenders import CONTENDERS, contender
from zerosite.benchmarking.workloads import scenario_projects


def _files(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.glob("*/*.html"))}


@pytest.mark.parametrize("name", CONTENDERS)
def test_each_contender_writes_every_report_with_zerosite_bytes(tmp_path: Path, name: str) -> None:
    projects = scenario_projects(4)
    reference = tmp_path / "reference"
    assert contender("bare").run(projects, reference, 1) == 4 * 5
    chosen = contender(name, workers=2)
    out = tmp_path / name
    assert chosen.run(projects, out, chosen.workers) == 4 * 5
    assert _files(out) == _files(reference)
    assert chosen.writes_index == (out / "index.sqlite").exists()
