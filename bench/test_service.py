"""The service level: ``zerosite serve`` under load, per server strategy, on loopback.

Each server (thread, process, async runner) is started once as a real subprocess and driven by virtual users
(closed loop: 20 % POST a new project, 80 % GET a report made before, exponential think time of 1 s on average)
at 50, 100 and 200 users, each level ramped up then measured; the default (process) server also takes an
open-loop arrival-rate sweep, each request timed from its scheduled send time. Targets: ``service_p95_ms`` and
``service_error_rate``. Skipped where the serve extra is missing; ``-k "not service"`` leaves it out.
"""

from __future__ import annotations

import pytest

from zerosite.benchmarking.fixture import ServiceBenchmark
from zerosite.benchmarking.service_load import ServicePointId


@pytest.mark.zerosite_service
def test_service(zerosite_service_point: ServicePointId, zerosite_service: ServiceBenchmark) -> None:
    """One server strategy at one number of virtual users: p50 / p95 / p99, throughput, errors, CPU, memory."""
    zerosite_service(zerosite_service_point)
