"""The service level of a benchmark run, read for a comparison: each server's p95 latency and error rate per users."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

from zerosite.benchmarking.cells import BUSY_MACHINE, TIMES

# The same test of a server at its capacity as the run's own verdicts (``service_level._unjudged``) use.
from zerosite.benchmarking.service_level import AT_CAPACITY, _capacity_percent
from zerosite.benchmarking.stats import Interval

__all__ = ["CAPACITY", "RUN_TO_RUN_SPREAD", "ServiceFigures", "p95_ratio_interval", "service_figures"]

LEVEL = "service"

RUN_TO_RUN_SPREAD = 0.17
"""How far a point's p95 moves between runs of the same code beyond what each run's own interval holds: a standard
deviation on the log scale, added to each side of a comparison. Process x2 at 200 users, eight runs of the same
code on the 2-core development machine (2026-11-29: five full benchmarks, three of the service level alone) gave
p95 11.9, 11.9, 12.9, 13.3, 14.5, 17.2, 17.3 and 18.4 ms, a standard deviation of 0.18 in logs, where a run's own
interval (its requests resampled) holds about 0.06: the rest, 0.17, comes with the run. The server's CPU for the
same requests moved with the p95 (51.6 % of a core at 11.9 ms, 65.1 % at 18.4), the machine's canary before and
after did not; the slow requests were not bunched in time (a block bootstrap gave the same intervals). Without
it, two of ten pairs of those runs had ``zerosite compare`` exit 1 on a p95 "slower" by 30-46 %."""
_Z95 = NormalDist().inv_cdf(0.975)
"""The half-width of a 95 % interval in standard deviations, to add :data:`RUN_TO_RUN_SPREAD` to the runs' own."""

CAPACITY = "the server ran at its CPU capacity"
"""Why a point's latency is not reproducible, besides a busy machine (see ``_unsteady``)."""


@dataclass(frozen=True)
class ServiceFigures:
    """One server strategy at one number of virtual users, as a run's JSON records it (``zerosite.service.points``).

    ``p95_ci_ms`` is the run's own bootstrap interval of its p95 (None in a JSON without one); ``unsteady``
    says why its latency says more about the machine than about the server, or is None.
    """

    strategy: str
    workers: int
    users: int
    requests: int
    errors: int
    p95_ms: float
    p95_ci_ms: Interval | None
    unsteady: str | None = None
    canary: tuple[float, ...] = ()
    """The machine's own speed around its server's points (seconds per canary render); empty in older runs."""

    @property
    def key(self) -> str:
        """``service/strategy=process-workers=2-users=50``, like a cell's ``level/cell``."""
        return f"{LEVEL}/strategy={self.strategy}-workers={self.workers}-users={self.users}"

    @property
    def label(self) -> str:
        """Short name for the table: ``service process\N{MULTIPLICATION SIGN}2 50 users``."""
        return f"{LEVEL} {self.strategy}{TIMES}{self.workers} {self.users} users"

    @property
    def subject(self) -> str:
        """Name in words for the summary: ``service process\N{MULTIPLICATION SIGN}2, 50 users``."""
        return f"{LEVEL} {self.strategy}{TIMES}{self.workers}, {self.users} users"

    @property
    def error_percent(self) -> float:
        """The share of requests that failed, counted (the run's ``error_percent``, unrounded)."""
        return 100 * self.errors / self.requests


def service_figures(block: Mapping[str, Any], side: str) -> dict[str, ServiceFigures]:
    """The run's service points by key; none when the run has no service level. A point without requests
    measured nothing and is left out, as a cell the run lacks. Raises ``ValueError`` naming a malformed point."""
    service = block.get(LEVEL)
    if service is None:
        return {}
    points = service.get("points") if isinstance(service, Mapping) else None
    if not isinstance(points, list):
        raise ValueError(f"{side}: the service level has no list of points")
    cores = _usable_cpus(block)
    found: dict[str, ServiceFigures] = {}
    for index, raw in enumerate(points):
        where = f"{side} service point {index}"
        try:
            figures = _figures(raw, cores)
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{where}: {_why(error)}") from None
        if figures is None:
            continue
        if figures.key in found:
            raise ValueError(f"{side}: service point {figures.key} appears twice")
        found[figures.key] = figures
    return found


def p95_ratio_interval(base: ServiceFigures, new: ServiceFigures) -> Interval | None:
    """The interval of ``new p95 / base p95``, or None where a run recorded no interval of its p95.

    The JSON keeps no latencies to resample, only each run's interval of its p95 (at the run's confidence,
    95 % by default), so the two are combined by MOVER (Zou and Donner, 2008) on the log scale: each end
    of the ratio's interval recovers its spread from the two ends that bound it, asymmetric as a p95's
    interval is. Far narrower than dividing the outer ends. Each side also gets :data:`RUN_TO_RUN_SPREAD`, what a
    p95 moves between runs beyond its run's own interval: a p95 has to about double for a single run to say so.
    """
    if base.p95_ci_ms is None or new.p95_ci_ms is None:
        return None
    base_log, new_log = math.log(base.p95_ms), math.log(new.p95_ms)
    base_low, base_high = math.log(base.p95_ci_ms.low), math.log(base.p95_ci_ms.high)
    new_low, new_high = math.log(new.p95_ci_ms.low), math.log(new.p95_ci_ms.high)
    change = new_log - base_log
    between = _Z95 * RUN_TO_RUN_SPREAD
    low = change - math.hypot(new_log - new_low, base_high - base_log, between, between)
    high = change + math.hypot(new_high - new_log, base_log - base_low, between, between)
    return Interval(math.exp(low), math.exp(high))


def _figures(raw: object, cores: int | None) -> ServiceFigures | None:
    if not isinstance(raw, Mapping):
        raise TypeError("not an object")
    requests, errors = _count(raw, "requests"), _count(raw, "errors")
    if not requests:
        return None
    if errors > requests:
        raise ValueError(f"{errors} errors of {requests} requests")
    p95 = float(raw["p95_ms"])
    interval = _interval(raw.get("p95_ci_ms"), p95)
    if not p95 > 0 or (interval is not None and not interval.low > 0):
        raise ValueError("latencies must be positive")
    return ServiceFigures(
        strategy=str(raw["strategy"]),
        workers=_count(raw, "workers"),
        users=_count(raw, "users"),
        requests=requests,
        errors=errors,
        p95_ms=p95,
        p95_ci_ms=interval,
        unsteady=_unsteady(raw, cores),
        canary=_canary(raw.get("canary_s")),
    )


def _canary(raw: object) -> tuple[float, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise TypeError("canary_s is not a list")
    samples = tuple(float(s) for s in raw)
    if not all(math.isfinite(s) and s > 0 for s in samples):
        raise ValueError("canary times must be positive numbers")
    return samples


def _count(raw: Mapping[str, Any], name: str) -> int:
    value = raw[name]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a count, got {value!r}")
    return value


def _interval(raw: object, p95: float) -> Interval | None:
    """``[low, high]`` widened to hold the p95 itself (a percentile bootstrap's ends need not)."""
    if raw is None:
        return None
    if not isinstance(raw, list) or len(raw) != 2:
        raise ValueError(f"p95_ci_ms must be [low, high], got {raw!r}")
    low, high = float(raw[0]), float(raw[1])
    return Interval(min(low, p95), max(high, p95))


def _unsteady(raw: Mapping[str, Any], cores: int | None) -> str | None:
    """Why the point's latency is not reproducible, as the run's own verdicts judge it: the machine busy with
    other work, or the server at its CPU capacity, where a queue's latency is bistable (the thread server's
    p95 at 200 users was 90, 857, 656 and 25 ms in four runs of the same code)."""
    if raw.get("busy"):
        return f"measured while {BUSY_MACHINE}"
    if cores is None or raw.get("server_cpu_percent") is None:
        return None
    server = float(raw["server_cpu_percent"])
    capacity = _capacity_percent(
        int(raw.get("server_processes") or 1), float(raw.get("generator_cpu_percent") or 0), cores
    )
    if capacity and server >= AT_CAPACITY * capacity:
        return f"{CAPACITY} ({server:.0f}% of {capacity:.0f}%)"
    return None


def _usable_cpus(block: Mapping[str, Any]) -> int | None:
    """The cores the run's service verdicts were judged with (``zerosite.machine``, else the fingerprint's)."""
    fingerprint = block.get("fingerprint")
    for section in (block.get("machine"), fingerprint.get("machine") if isinstance(fingerprint, Mapping) else None):
        if isinstance(section, Mapping) and isinstance(section.get("usable_cpus"), int):
            return int(section["usable_cpus"])
    return None


def _why(error: Exception) -> str:
    return f"no {error.args[0]}" if isinstance(error, KeyError) else str(error)
