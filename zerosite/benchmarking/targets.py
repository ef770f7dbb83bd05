"""Performance targets: defaults, ``[tool.zerosite.targets]`` in pyproject.toml, per-run overrides."""

from __future__ import annotations

import math
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

__all__ = [
    "JOINED_UNITS",
    "TARGET_SPECS",
    "TargetSpec",
    "Targets",
    "find_pyproject",
    "load_targets",
    "parse_override",
    "quantity",
]

JOINED_UNITS = frozenset({"%", "\N{MULTIPLICATION SIGN}"})
"""Units written against their number (``2.5%``; ``1.10x``, with the multiplication sign), as the page's sentences
write a ratio; the rest after a space (``300 ms``)."""


def quantity(number: str, unit: str) -> str:
    """``number`` (already formatted) with ``unit``: ``300 ms``, ``1.1x``, ``0%``."""
    return f"{number}{unit}" if unit in JOINED_UNITS else f"{number} {unit}"


@dataclass(frozen=True)
class TargetSpec:
    """One target: its name, default, unit, and which figure of which level it bounds (from above)."""

    name: str
    default: float
    unit: str
    level: str | None
    figure: str
    zero_allowed: bool = False
    """Whether 0 is a meaningful bound (an error rate of none); times and sizes must be > 0."""


TARGET_SPECS: Mapping[str, TargetSpec] = MappingProxyType(
    {
        spec.name: spec
        for spec in (
            TargetSpec(
                "single_report_ms",
                300,
                "ms",
                "single",
                "median time of one warm report (one module, and those it requires)",
            ),
            TargetSpec("pipeline_ms", 500, "ms", "pipeline", "median time of every module of one project"),
            TargetSpec("batch_100_s", 30, "s", "batch", "median wall time per 100 projects, written and indexed"),
            TargetSpec("memory_per_report_mb", 10, "MB", None, "p95 of the peak traced memory of one report"),
            TargetSpec(
                "auto_vs_best_fixed",
                1.10,
                "\N{MULTIPLICATION SIGN}",
                "batch",
                "auto's median time over the fastest fixed strategy's of as many workers or fewer (same scenario)",
            ),
            TargetSpec("service_p95_ms", 300, "ms", "service", "p95 latency of the service's requests, per users"),
            TargetSpec("service_error_rate", 0, "%", "service", "share of the service's requests that failed", True),
        )
    }
)
"""Every target the harness knows; ``level`` None means it applies to every level."""


@dataclass(frozen=True)
class Targets:
    """The targets of one run and where each value came from (default, a file, an override)."""

    values: Mapping[str, float]
    origins: Mapping[str, str] = field(default_factory=dict)

    def __getitem__(self, name: str) -> float:
        return self.values[name]

    def with_overrides(self, overrides: Mapping[str, float], origin: str) -> Targets:
        """A copy with ``overrides`` applied (names checked), each recorded as coming from ``origin``."""
        for name in overrides:
            _check_name(name, origin)
        return Targets(
            values={**self.values, **{k: float(v) for k, v in overrides.items()}},
            origins={**self.origins, **dict.fromkeys(overrides, origin)},
        )


def _check_name(name: str, origin: str) -> None:
    if name not in TARGET_SPECS:
        raise ValueError(f"{origin}: unknown target {name!r}; known targets: {', '.join(TARGET_SPECS)}")


def _bound(name: str) -> str:
    spec = TARGET_SPECS.get(name)
    return "a number >= 0" if spec is not None and spec.zero_allowed else "a positive number"


def find_pyproject(start: Path) -> Path | None:
    """The nearest ``pyproject.toml`` in ``start`` or a folder above it."""
    start = start.resolve()
    for folder in (start, *start.parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def parse_override(text: str) -> tuple[str, float]:
    """``"single_report_ms=250"`` -> ``("single_report_ms", 250.0)``; errors name the known targets."""
    name, sep, value = text.partition("=")
    name = name.strip()
    if not sep:
        raise ValueError(f"target override {text!r} must look like name=value, e.g. single_report_ms=250")
    _check_name(name, "--zerosite-target")
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"--zerosite-target {name}: {value.strip()!r} is not a number") from None
    if not math.isfinite(number) or number < 0 or (number == 0 and not TARGET_SPECS[name].zero_allowed):
        raise ValueError(f"--zerosite-target {name}: must be {_bound(name)}, got {number!r}")
    return name, number


def load_targets(start: Path, overrides: Iterable[str] = ()) -> Targets:
    """Defaults, then ``[tool.zerosite.targets]`` of the nearest pyproject.toml, then ``overrides``."""
    targets = Targets(
        values={name: float(spec.default) for name, spec in TARGET_SPECS.items()},
        origins=dict.fromkeys(TARGET_SPECS, "default"),
    )
    pyproject = find_pyproject(start)
    if pyproject is not None:
        with pyproject.open("rb") as fh:
            table = tomllib.load(fh).get("tool", {}).get("zerosite", {}).get("targets", {})
        for name, value in table.items():
            spec = TARGET_SPECS.get(name)
            zero = spec is not None and spec.zero_allowed
            if not isinstance(value, int | float) or isinstance(value, bool) or value < 0 or (value == 0 and not zero):
                raise ValueError(f"{pyproject}: [tool.zerosite.targets] {name} must be {_bound(name)}")
        targets = targets.with_overrides(table, str(pyproject))
    parsed = dict(parse_override(text) for text in overrides)
    return targets.with_overrides(parsed, "--zerosite-target") if parsed else targets
