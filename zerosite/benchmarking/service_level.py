"""The service level's figures and verdicts: per strategy and number of users, p50 / p95 / p99, throughput, error
rate, server CPU and memory, judged against ``service_p95_ms`` and ``service_error_rate``; the open-loop sweep's
highest rate held."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from zerosite.benchmarking.cells import BUSY_MACHINE
from zerosite.benchmarking.machine import describe_machine
from zerosite.benchmarking.service_load import (
    LoadPoint,
    ServiceRun,
    SweepStep,
    error_percent,
    error_reasons,
    held,
    quantile_ms,
)
from zerosite.benchmarking.stats import Interval, bootstrap_ci
from zerosite.benchmarking.targets import TARGET_SPECS
from zerosite.benchmarking.verdicts import Judgement, Verdict, judge

__all__ = [
    "ERROR_TARGET",
    "P95_TARGET",
    "ServiceAnalysis",
    "ServicePoint",
    "SweepFigures",
    "SweepStepFigures",
    "analyse_service",
]

LEVEL = "service"
P95_TARGET = "service_p95_ms"
ERROR_TARGET = "service_error_rate"


@dataclass(frozen=True)
class ServicePoint:
    """One server strategy at one number of virtual users (the closed loop), with its verdicts."""

    strategy: str
    workers: int
    users: int
    requests: int
    posts: int
    window_s: float
    throughput_per_s: float
    p50_ms: float
    p95_ms: float
    p95_ci: Interval
    p99_ms: float
    post_p95_ms: float
    get_p95_ms: float
    errors: int
    error_percent: float
    server_cpu_percent: float
    server_rss_mb: float
    server_processes: int
    generator_cpu_percent: float
    busy: bool
    other_cpu_s: float
    error_reasons: tuple[tuple[str, int], ...] = ()
    """Why the failed requests failed, and how many each (:func:`service_load.error_reasons`)."""
    canary_s: tuple[float, ...] = ()
    """The machine's own speed around its server's points (``ServiceRun.canary_s``), for ``zerosite compare``."""
    judgements: tuple[Judgement, ...] = ()

    @property
    def label(self) -> str:
        return f"{self.strategy}\N{MULTIPLICATION SIGN}{self.workers}"

    @property
    def subject(self) -> str:
        return f"service, strategy {self.label}, {self.users} users"

    @property
    def split(self) -> str:
        """The POST and GET p95, ms: ``15 / 6``; ``-`` for a kind of request the point had none of."""
        return f"{_whole_ms(self.post_p95_ms)} / {_whole_ms(self.get_p95_ms)}"

    @property
    def processes(self) -> str:
        """``1 process``, ``5 processes``: the server's process tree."""
        return f"{self.server_processes} process{'es' if self.server_processes != 1 else ''}"

    def as_dict(self) -> dict[str, object]:
        return {
            "level": LEVEL,
            "strategy": self.strategy,
            "workers": self.workers,
            "users": self.users,
            "requests": self.requests,
            "posts": self.posts,
            "window_s": round(self.window_s, 3),
            "throughput_per_s": round(self.throughput_per_s, 2),
            "p50_ms": round(self.p50_ms, 3),
            "p95_ms": round(self.p95_ms, 3),
            "p95_ci_ms": [round(self.p95_ci.low, 3), round(self.p95_ci.high, 3)],
            "p99_ms": round(self.p99_ms, 3),
            "post_p95_ms": None if math.isnan(self.post_p95_ms) else round(self.post_p95_ms, 3),
            "get_p95_ms": None if math.isnan(self.get_p95_ms) else round(self.get_p95_ms, 3),
            "errors": self.errors,
            "error_percent": round(self.error_percent, 4),
            "errors_by_reason": dict(self.error_reasons),
            "canary_s": list(self.canary_s),
            "server_cpu_percent": round(self.server_cpu_percent, 1),
            "server_rss_mb": round(self.server_rss_mb, 1),
            "server_processes": self.server_processes,
            "generator_cpu_percent": round(self.generator_cpu_percent, 1),
            "busy": self.busy,
            "other_cpu_s": round(self.other_cpu_s, 3),
            "verdicts": {j.target_name: str(j.verdict) for j in self.judgements},
        }

    def line(self) -> str:
        """What the terminal prints: ``service process x 2, 200 users: 190 req/s, p50 ..., p95 ... [CI] ...``."""
        busy = f" (machine busy: other processes used {self.other_cpu_s:.1f} CPU s)" if self.busy else ""
        reasons = described(self.error_reasons, " ({})")
        return (
            f"service {self.label}, {self.users} users: {self.throughput_per_s:.0f} req/s, p50 {self.p50_ms:.1f} ms, "
            f"p95 {self.p95_ms:.1f} ms [{self.p95_ci.low:.1f}, {self.p95_ci.high:.1f}], p99 {self.p99_ms:.1f} ms "
            f"(POST p95 {_whole_ms(self.post_p95_ms)}, GET p95 {_whole_ms(self.get_p95_ms)}), "
            f"{_errors(self.errors)} of "
            f"{self.requests}{reasons}; server CPU {self.server_cpu_percent:.0f}%, {self.server_rss_mb:.0f} MB in "
            f"{self.processes}; load generator CPU {self.generator_cpu_percent:.0f}%{busy}"
        )


@dataclass(frozen=True)
class SweepFigures:
    """The open-loop sweep of one server: each rate offered, and the highest held with p95 under the target."""

    strategy: str
    workers: int
    target_p95_ms: float
    max_error_percent: float
    steps: tuple[SweepStepFigures, ...]
    highest_held_per_s: float | None
    """None: not even the first rate was held."""
    limited_by: str
    """Why the sweep stopped: the first rate not held and what gave, or that every rate was held."""

    def as_dict(self) -> dict[str, object]:
        return {
            "strategy": self.strategy,
            "workers": self.workers,
            "target_p95_ms": self.target_p95_ms,
            "max_error_percent": self.max_error_percent,
            "highest_held_per_s": self.highest_held_per_s,
            "limited_by": self.limited_by,
            "steps": [step.as_dict() for step in self.steps],
        }

    def line(self) -> str:
        held = f"{self.highest_held_per_s:.0f} req/s" if self.highest_held_per_s is not None else "no rate"
        return (
            f"service sweep {self.strategy}\N{MULTIPLICATION SIGN}{self.workers}: highest rate held with p95 <= "
            f"{self.target_p95_ms:g} ms (timed from each request's scheduled send): {held}; {self.limited_by}"
        )


@dataclass(frozen=True)
class ServiceAnalysis:
    points: tuple[ServicePoint, ...]
    sweeps: tuple[SweepFigures, ...]

    @property
    def judgements(self) -> list[Judgement]:
        return [j for point in self.points for j in point.judgements]

    def as_dict(self) -> dict[str, object]:
        return {"points": [p.as_dict() for p in self.points], "sweeps": [s.as_dict() for s in self.sweeps]}


def _errors(count: int) -> str:
    return f"{count} error" if count == 1 else f"{count} errors"


def described(reasons: tuple[tuple[str, int], ...], form: str = "{}") -> str:
    """``reasons`` in a few words (``2 HTTP 503, 1 no answer: ...``) put in ``form``; empty when there are none."""
    return form.format(", ".join(f"{count} {why}" for why, count in reasons)) if reasons else ""


AT_CAPACITY = 0.9
"""A server whose CPU reaches this share of what it can use is at capacity (see :func:`_capacity_percent`)."""


def _whole_ms(ms: float) -> str:
    """A p95 in whole ms; ``-`` where there was none (NaN: no request of that kind)."""
    return "-" if math.isnan(ms) else f"{ms:.0f}"


def _capacity_percent(server_processes: int, generator_cpu_percent: float, cores: int) -> float:
    """The most CPU a server can use here, in percent of a core: one core per process (a process runs Python
    on one core at a time), and no more than the cores the load generator leaves it."""
    return max(0.0, min(100.0 * max(server_processes, 1), 100.0 * cores - generator_cpu_percent))


def _judgement(
    subject: str, name: str, value: float, interval: Interval, target: float, unjudged: str | None
) -> Judgement:
    """A verdict as every level gives it, except that a point that cannot be judged fairly (``unjudged``
    says why) cannot FAIL: INCONCLUSIVE, saying so."""
    spec = TARGET_SPECS[name]
    verdict = judge(interval, target)
    if unjudged and verdict is Verdict.FAIL:
        verdict = Verdict.INCONCLUSIVE
        subject = f"{subject} (would FAIL, but {unjudged})"
    return Judgement(subject, name, spec.figure, value, interval, target, spec.unit, verdict)


def _unjudged(figures: ServicePoint, cores: int) -> str | None:
    """Why a point's latencies say more about the machine than about the server, or None.

    The machine busy with other work; or the server at its CPU capacity, where a queue's latency is
    bistable: the thread server (one process) at 200 users measured p95 of 90, 857, 656 and 25 ms in four
    full runs of the same code, at 101, 113, 120 and 74 % CPU. What it can hold is the sweep's to say.
    """
    if figures.busy:
        return f"measured while {BUSY_MACHINE}"
    capacity = _capacity_percent(figures.server_processes, figures.generator_cpu_percent, cores)
    if capacity and figures.server_cpu_percent >= AT_CAPACITY * capacity:
        return (
            f"the server ran at its CPU capacity ({figures.server_cpu_percent:.0f}% of {capacity:.0f}%), where "
            "its latency is not reproducible"
        )
    return None


def _point(
    run: ServiceRun, point: LoadPoint, targets: Mapping[str, float], confidence: float, cores: int
) -> ServicePoint:
    requests = point.requests
    latencies_ms = [r.latency_s * 1000 for r in requests]
    p95 = quantile_ms(requests, 0.95)
    interval = bootstrap_ci(latencies_ms, quantile=95, confidence=confidence) if latencies_ms else Interval(p95, p95)
    errors = sum(not r.ok for r in requests)
    rate = error_percent(requests)
    figures = ServicePoint(
        strategy=point.strategy,
        workers=run.workers,
        users=point.users,
        requests=len(requests),
        posts=sum(r.kind == "post" for r in requests),
        window_s=point.window_s,
        throughput_per_s=len(requests) / point.window_s if point.window_s > 0 else math.nan,
        p50_ms=quantile_ms(requests, 0.5),
        p95_ms=p95,
        p95_ci=interval,
        p99_ms=quantile_ms(requests, 0.99),
        post_p95_ms=quantile_ms([r for r in requests if r.kind == "post"], 0.95),
        get_p95_ms=quantile_ms([r for r in requests if r.kind == "get"], 0.95),
        errors=errors,
        error_percent=rate,
        error_reasons=error_reasons(requests),
        canary_s=tuple(run.canary_s),
        server_cpu_percent=point.resources.server_cpu_percent,
        server_rss_mb=point.resources.server_rss_mb,
        server_processes=point.resources.server_processes,
        generator_cpu_percent=point.resources.generator_cpu_percent,
        busy=bool(point.load and point.load.busy),
        other_cpu_s=point.load.other_cpu_s if point.load else 0.0,
    )
    judgements = []
    unjudged = _unjudged(figures, cores)
    if P95_TARGET in targets and requests:
        judgements.append(_judgement(figures.subject, P95_TARGET, p95, interval, targets[P95_TARGET], unjudged))
    if ERROR_TARGET in targets and requests:
        # Errors are counted, not estimated: the rate observed is judged as it is.
        exact = Interval(rate, rate)
        judgements.append(_judgement(figures.subject, ERROR_TARGET, rate, exact, targets[ERROR_TARGET], unjudged))
    return ServicePoint(**{**figures.__dict__, "judgements": tuple(judgements)})


@dataclass(frozen=True)
class SweepStepFigures:
    """One rate of the open-loop sweep: latencies timed from each request's scheduled send time."""

    offered_per_s: float
    """The rate asked of the Poisson arrivals; :attr:`sent_per_s` is what they came to in the step's window."""
    requests: int
    sent_per_s: float
    answered_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    errors: int
    error_percent: float
    held: bool
    server_cpu_percent: float
    generator_cpu_percent: float
    busy: bool
    error_reasons: tuple[tuple[str, int], ...] = ()

    def as_dict(self) -> dict[str, object]:
        figures = {name: round(v, 3) if isinstance(v, float) else v for name, v in self.__dict__.items()}
        del figures["error_reasons"]
        return {**figures, "errors_by_reason": dict(self.error_reasons)}


def _step(step: SweepStep, target_p95_ms: float, max_error_percent: float) -> SweepStepFigures:
    requests = step.requests
    p95 = quantile_ms(requests, 0.95)
    rate = error_percent(requests)
    return SweepStepFigures(
        offered_per_s=step.rate_per_s,
        requests=len(requests),
        sent_per_s=len(requests) / step.window_s if step.window_s > 0 else math.nan,
        answered_per_s=sum(r.status != 0 for r in requests) / step.window_s if step.window_s > 0 else math.nan,
        p50_ms=quantile_ms(requests, 0.5),
        p95_ms=p95,
        p99_ms=quantile_ms(requests, 0.99),
        errors=sum(not r.ok for r in requests),
        error_percent=rate,
        held=held(requests, target_p95_ms, max_error_percent),
        server_cpu_percent=step.resources.server_cpu_percent,
        generator_cpu_percent=step.resources.generator_cpu_percent,
        busy=bool(step.load and step.load.busy),
        error_reasons=error_reasons(requests),
    )


def _sweep(run: ServiceRun, target_p95_ms: float, max_error_percent: float) -> SweepFigures:
    steps = tuple(_step(step, target_p95_ms, max_error_percent) for step in run.sweep)
    held = [s.offered_per_s for s in steps if s.held]
    failed = next((s for s in steps if not s.held), None)
    if failed is None:
        limited = "every rate offered was held (the sweep's highest step)"
    else:
        why = []
        if failed.p95_ms > target_p95_ms:
            why.append(f"p95 {failed.p95_ms:.0f} ms")
        if failed.error_percent > max_error_percent:
            why.append(f"{_errors(failed.errors)} ({described(failed.error_reasons)})")
        limited = (
            f"not held at {failed.offered_per_s:.0f} req/s offered: {' and '.join(why) or 'no requests'}, "
            f"{failed.answered_per_s:.0f} answered/s (server CPU {failed.server_cpu_percent:.0f}%, "
            f"load generator {failed.generator_cpu_percent:.0f}% of a core)"
        )
    return SweepFigures(
        strategy=run.strategy,
        workers=run.workers,
        target_p95_ms=target_p95_ms,
        max_error_percent=max_error_percent,
        steps=steps,
        highest_held_per_s=max(held) if held else None,
        limited_by=limited,
    )


def analyse_service(
    runs: Iterable[ServiceRun], targets: Mapping[str, float], confidence: float = 0.95, cores: int | None = None
) -> ServiceAnalysis:
    """Figures and verdicts of every server measured, in the order of the strategies' names, users ascending;
    ``cores``: usable by the server and the load generator together (default: this machine's)."""
    ordered = sorted(runs, key=lambda r: r.strategy)
    usable = cores or describe_machine().usable_cpus or 1
    points = tuple(_point(run, p, targets, confidence, usable) for run in ordered for p in run.points)
    target = targets.get(P95_TARGET, TARGET_SPECS[P95_TARGET].default)
    errors = targets.get(ERROR_TARGET, TARGET_SPECS[ERROR_TARGET].default)
    sweeps = tuple(_sweep(run, target, errors) for run in ordered if run.sweep)
    return ServiceAnalysis(points, sweeps)
