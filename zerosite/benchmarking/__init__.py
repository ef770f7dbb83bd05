"""The benchmark harness: matrix cells, interleaved measurement, statistics, targets, verdicts, charts, page."""

from zerosite.benchmarking.analysis import Analysis, CellFigures, analyse
from zerosite.benchmarking.cells import LEVELS, SCENARIOS, Cell, CellResult, RoundOutcome
from zerosite.benchmarking.harness import ReplayClock, measure_interleaved
from zerosite.benchmarking.matrix import MatrixSettings, build_matrix
from zerosite.benchmarking.stats import Interval, Spread, bootstrap_ci, efficiency, karp_flatt, speedup, spread
from zerosite.benchmarking.targets import TARGET_SPECS, Targets, load_targets
from zerosite.benchmarking.verdicts import Judgement, Verdict, judge

__all__ = [
    "LEVELS",
    "SCENARIOS",
    "TARGET_SPECS",
    "Analysis",
    "Cell",
    "CellFigures",
    "CellResult",
    "Interval",
    "Judgement",
    "MatrixSettings",
    "ReplayClock",
    "RoundOutcome",
    "Spread",
    "Targets",
    "Verdict",
    "analyse",
    "bootstrap_ci",
    "build_matrix",
    "efficiency",
    "judge",
    "karp_flatt",
    "load_targets",
    "measure_interleaved",
    "speedup",
    "spread",
]
