"""PASS, FAIL or INCONCLUSIVE: a confidence interval judged against a target (lower is better)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from zerosite.benchmarking.stats import Interval
from zerosite.benchmarking.targets import quantity

__all__ = ["Judgement", "Verdict", "judge"]


class Verdict(StrEnum):
    """The outcome of one target for one cell."""

    PASS = "PASS"
    FAIL = "FAIL"
    INCONCLUSIVE = "INCONCLUSIVE"


def judge(interval: Interval, target: float) -> Verdict:
    """PASS when the whole interval is at or below the target, FAIL when it is wholly above it,
    INCONCLUSIVE when it straddles the target."""
    if interval.high <= target:
        return Verdict.PASS
    if interval.low > target:
        return Verdict.FAIL
    return Verdict.INCONCLUSIVE


@dataclass(frozen=True)
class Judgement:
    """One target judged for one subject (a cell, naming its module or strategy)."""

    subject: str
    target_name: str
    figure: str
    value: float
    interval: Interval
    target: float
    unit: str
    verdict: Verdict

    def message(self) -> str:
        """One line a person can act on: who, which figure, measured value and interval, the target."""
        return (
            f"{self.verdict}: {self.subject}: {self.figure} = {quantity(f'{self.value:.4g}', self.unit)} "
            f"(95% CI {self.interval.low:.4g}-{quantity(f'{self.interval.high:.4g}', self.unit)}), "
            f"target {self.target_name} = {self.bound()}"
        )

    def bound(self) -> str:
        """The target with its unit: ``300 ms``, ``1.1x``."""
        return quantity(f"{self.target:g}", self.unit)

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready form."""
        return {
            "subject": self.subject,
            "target": self.target_name,
            "figure": self.figure,
            "value": self.value,
            "ci": [self.interval.low, self.interval.high],
            "limit": self.target,
            "unit": self.unit,
            "verdict": str(self.verdict),
        }
