"""The benchmark matrix's vocabulary: a cell (level x scenario x strategy x workers) and what a round measured."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from zerosite.types import STAGES

__all__ = [
    "BARE",
    "BASELINE",
    "LEVELS",
    "REFERENCE_NAMES",
    "REFERENCE_SCENARIO",
    "SCENARIOS",
    "STAGES",
    "TIMES",
    "Cell",
    "CellResult",
    "RoundOutcome",
]

LEVELS: tuple[str, ...] = ("single", "pipeline", "batch")
"""single: one warm report of one module; pipeline: one project's modules; batch: projects written and indexed."""

SCENARIOS: tuple[str, ...] = ("cpu", "io", "mixed")
TIMES = "\N{MULTIPLICATION SIGN}"
"""The sign in labels such as process x 2 and 1.6 x sequential (kept out of the source as a literal)."""
BUSY_MACHINE = "the machine was busy with other work (other processes, or CPU time the host took: steal)"
"""Why a sample, cell or point is called busy, in the words every output uses (see ``load.py`` for the rule)."""
BASELINE = "sequential"
BARE = "bare"
"""Pseudo-strategy: a plain loop over the same module functions, to measure the engine's own overhead."""
INSTRUCTIONS = "instructions"
"""The unit of a cell counted under valgrind (deterministic mode) instead of timed."""
REFERENCE_NAMES: tuple[str, ...] = ("joblib", "pool", "seed-threads", "seed-procs")
"""Pseudo-strategies of reference code measured beside ours at the batch level (``references.REFERENCES``)."""
REFERENCE_SCENARIO = "cpu"
"""The scenario reference code joins: it reads the embedded data, with no data source to wait on."""
WORKER_STARTS = 4
"""Over how many starts of its workers a cell that hands one project at a time to a pool spreads its rounds. Such
a cell's speed moves with the pool it got and with the machine's drift over the seconds it runs: a user audit
measured one pool a run, and two runs of the same code differed by 32 %, called significant. Five pools started one
after another (``python bench/worker_starts.py --module M3 --starts 5``, M3's report, the median of each pool's ten
samples) spread by +5 % to +26 % in eight runs (``thread`` x2 +5 % to +20 %, ``process`` x2 +6 % to +26 %), while
``sequential``, on one worker beside them, spread by +3 % to +21 % (in the four runs that printed it). Four starts
give a run both, and ``zerosite compare`` the starts to judge by (four a side: the fewest that a rank test of the
starts' medians can call significant at 95 %)."""


@dataclass(frozen=True, order=True)
class Cell:
    """One point of the matrix; ``module`` is set for the single-report level only."""

    level: str
    scenario: str
    strategy: str
    workers: int
    module: str | None = None

    def __post_init__(self) -> None:
        if self.level not in LEVELS:
            raise ValueError(f"level must be one of {', '.join(LEVELS)}, got {self.level!r}")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers!r}")
        if (self.module is None) == (self.level == "single"):
            raise ValueError(f"a module is named for the single level and only there: {self!r}")

    @property
    def id(self) -> str:
        """The readable test id, e.g. ``strategy=process-workers=2-scenario=io``."""
        head = [f"module={self.module}"] if self.module else []
        return "-".join([*head, f"strategy={self.strategy}", f"workers={self.workers}", f"scenario={self.scenario}"])

    @property
    def group(self) -> str:
        """The cells measured together (interleaved) and compared: same level, scenario and module."""
        tail = f"-module={self.module}" if self.module else ""
        return f"level={self.level}-scenario={self.scenario}{tail}"

    @property
    def label(self) -> str:
        """Short label for charts: ``process x 2``."""
        return self.strategy if self.strategy in (BASELINE, BARE) else f"{self.strategy}{TIMES}{self.workers}"

    @property
    def subject(self) -> str:
        """Who a verdict is about, in words: ``single report M2, strategy process x 2, scenario io``."""
        what = {"single": f"single report {self.module}", "pipeline": "pipeline", "batch": "batch"}[self.level]
        return f"{what}, strategy {self.label}, scenario {self.scenario}"

    @property
    def worker_starts(self) -> int:
        """Over how many starts of its workers this cell's rounds are spread: :data:`WORKER_STARTS` where one
        project at a time is handed to a pool (a strategy's cells at the single-report and pipeline levels), else
        one (a batch hands its pool many projects a round; sequential and the bare loop have no pool)."""
        pooled = self.strategy not in (BASELINE, BARE) and not self.is_reference
        return WORKER_STARTS if pooled and self.level != "batch" else 1

    @property
    def is_reference(self) -> bool:
        """Not one of ZeroSite's strategies: the bare loop or reference code (no verdicts, never a winner)."""
        return self.strategy == BARE or self.strategy in REFERENCE_NAMES

    @property
    def baseline(self) -> Cell:
        """The sequential cell of this cell's group."""
        return replace(self, strategy=BASELINE, workers=1)

    @property
    def bare(self) -> Cell:
        """The bare-loop cell of this cell's group."""
        return replace(self, strategy=BARE, workers=1)

    @property
    def sort_key(self) -> tuple[int, Cell]:
        """Orders a group as tables show it: the baseline first, the bare loop last."""
        return (0 if self.strategy == BASELINE else 2 if self.is_reference else 1, self)

    def as_info(self) -> dict[str, object]:
        """The cell's coordinates, for pytest-benchmark's ``extra_info``."""
        return {
            "level": self.level,
            "scenario": self.scenario,
            "strategy": self.strategy,
            "workers": self.workers,
            "module": self.module,
        }


@dataclass(frozen=True)
class RoundOutcome:
    """One timed sample of one cell: ``iterations`` consecutive rounds (calibrated loops), summed."""

    wall_s: float
    projects: int
    reports: int
    stage_ns: Mapping[str, int] = field(default_factory=dict)
    peak_memory_bytes: tuple[int, ...] = ()
    """Per report, measured in whichever process (worker included) made it."""
    failed: int = 0
    iterations: int = 1
    load: Any = None
    """The machine's load during the sample (``zerosite.benchmarking.load.RoundLoad``), when recorded."""
    ran_as: tuple[str, ...] = ()
    """Per batch of a strategy that chooses another for each (``auto``), the label of the one it ran on."""

    @property
    def per_iteration_s(self) -> float:
        return self.wall_s / self.iterations

    @property
    def busy(self) -> bool:
        """Whether other processes were busy on this machine during the sample."""
        return bool(getattr(self.load, "busy", False))

    def plus(self, other: RoundOutcome) -> RoundOutcome:
        """Two consecutive rounds as one sample."""
        return RoundOutcome(
            wall_s=self.wall_s + other.wall_s,
            projects=self.projects + other.projects,
            reports=self.reports + other.reports,
            stage_ns={s: self.stage_ns.get(s, 0) + other.stage_ns.get(s, 0) for s in {*self.stage_ns, *other.stage_ns}},
            peak_memory_bytes=self.peak_memory_bytes + other.peak_memory_bytes,
            failed=self.failed + other.failed,
            iterations=self.iterations + other.iterations,
            ran_as=self.ran_as + other.ran_as,
        )

    def with_load(self, load: object) -> RoundOutcome:
        return replace(self, load=load)


@dataclass
class CellResult:
    """Every round of one cell, in the order measured."""

    cell: Cell
    rounds: list[RoundOutcome] = field(default_factory=list)
    memory_bytes: tuple[int, ...] = ()
    """Peak traced bytes per report from the cell's separate memory pass (empty: use the rounds' own)."""
    loops: int = 1
    """Rounds per sample, from calibration."""
    stopped: str = ""
    """Why measuring stopped: ``precision`` reached, time ``budget`` spent, ``max-rounds``, or each of its ``starts``
    measured (:attr:`Cell.worker_starts`)."""
    instructions: int | None = None
    """Instruction-count mode: CPU instructions of ``iterations`` rounds (no timed rounds then)."""
    iterations: int = 0
    canary_s: list[float] = field(default_factory=list)
    """The machine's own speed (``canary.Canary``: seconds per render) once per pass this cell had a round in."""
    starts: list[int] = field(default_factory=list)
    """Per sample, which start of the cell's workers took it (0, 1, ...: :attr:`Cell.worker_starts`)."""

    @property
    def peaks(self) -> tuple[int, ...]:
        return self.memory_bytes or tuple(p for r in self.rounds for p in r.peak_memory_bytes)

    @property
    def wall_s(self) -> list[float]:
        """Each sample's wall time (all its iterations)."""
        return [r.wall_s for r in self.rounds]

    @property
    def per_iteration_s(self) -> list[float]:
        """Each sample's wall time per iteration: the figure compared across strategies."""
        return [r.per_iteration_s for r in self.rounds]

    @property
    def busy_rounds(self) -> int:
        return sum(r.busy for r in self.rounds)
