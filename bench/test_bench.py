"""The benchmark matrix: every available strategy x workers x scenario x level, against sequential.

Each test id names its cell (``test_batch[strategy=process-workers=2-scenario=io]``). The cells of a
group (level x scenario, and module for single reports) are measured together, interleaved round by
round on warm workers, then each test hands its rounds to pytest-benchmark. Targets, verdicts,
charts and ``reports/index.html`` are produced at the end of the session by ``zerosite.benchmarking.plugin``.
"""

from __future__ import annotations

import pytest

from zerosite.benchmarking.cells import Cell
from zerosite.benchmarking.fixture import CellBenchmark


@pytest.mark.zerosite_matrix("single")
def test_single_report(zerosite_cell: Cell, zerosite_bench: CellBenchmark) -> None:
    """One warm report of one module (its requirements computed too), one project per round."""
    zerosite_bench(zerosite_cell)


@pytest.mark.zerosite_matrix("pipeline")
def test_pipeline(zerosite_cell: Cell, zerosite_bench: CellBenchmark) -> None:
    """The five modules of one project, one project per round."""
    zerosite_bench(zerosite_cell)


@pytest.mark.zerosite_matrix("batch")
def test_batch(zerosite_cell: Cell, zerosite_bench: CellBenchmark) -> None:
    """A batch of projects (40 by default: 200 reports; 16 in quick mode) written to disk and indexed."""
    zerosite_bench(zerosite_cell)
