"""``zerosite serve --cache redis://...`` against a real redis-server: a second server on another folder answers
from the cache, /metrics counts the cache's own hits and misses, and Redis stopped mid-run changes nothing but speed."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import RedisServer

from zerosite.sample import sample_projects
from zerosite.service.process import ServerProcess

pytest.importorskip("redis", reason="redis-py is not installed (pip install -e '.[redis]')")

MODULES = ("M2", "M3", "M4", "M5", "M6")


def named(prefix: str, n: int, seed: int) -> list[dict[str, Any]]:
    return [{**project, "id": f"{prefix}-{i:04d}"} for i, project in enumerate(sample_projects(n, seed=seed), 1)]


def post(url: str, project: dict[str, Any]) -> dict[str, Any]:
    response = httpx.post(f"{url}/v1/reports", json=project, timeout=60)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def metric(text: str, line_start: str) -> float:
    """The value of the one sample line that starts with ``line_start`` (0 when there is none)."""
    values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(line_start + " ")]
    assert len(values) <= 1, line_start
    return values[0] if values else 0.0


def test_a_second_server_on_another_folder_answers_from_redis_and_goes_on_without_it(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    url = f"{redis_server.url}?ttl=600"
    projects = named("shared", 2, seed=81)
    common = ["--strategy", "thread", "--workers", "1"]

    with ServerProcess(["--out", str(tmp_path / "a"), "--cache", url, *common]) as first:
        ready = httpx.get(f"{first.url}/readyz").json()
        assert ready["cache"] == {"url": url, "available": True}
        for project in projects:
            answer = post(first.url, project)
            assert [(r["status"], r["from_cache"]) for r in answer["reports"]] == [("written", False)] * 5
        metrics = httpx.get(f"{first.url}/metrics").text
        assert metric(metrics, f'zerosite_cache_misses_total{{cache="{url}"}}') == 10
        assert metric(metrics, f'zerosite_cache_puts_total{{cache="{url}"}}') == 10
        assert metric(metrics, f'zerosite_cache_hits_total{{cache="{url}"}}') == 0
        made = {r["module"]: r["sha256"] for r in post(first.url, projects[0])["reports"]}  # the store's own hit
        assert metric(httpx.get(f"{first.url}/metrics").text, 'zerosite_cache_hits_total{cache="local"}') == 5

    # The second server is the factory under uvicorn, configured by ZEROSITE_CACHE.
    command = [sys.executable, "-m", "uvicorn", "--factory", "zerosite.service:create_app", "--port", "0"]
    env = {"ZEROSITE_OUT": str(tmp_path / "b"), "ZEROSITE_CACHE": url, "ZEROSITE_STRATEGY": "thread"}
    env["ZEROSITE_WORKERS"] = "1"
    with ServerProcess(command=command, env=env) as second:
        answer = post(second.url, projects[0])
        assert [(r["status"], r["cached"], r["from_cache"]) for r in answer["reports"]] == [("cached", True, True)] * 5
        assert {r["module"]: r["sha256"] for r in answer["reports"]} == made
        for module in MODULES:
            path = f"{projects[0]['id']}/{module}"
            got = httpx.get(f"{second.url}/v1/reports/{path}", headers={"Accept-Encoding": "identity"})
            assert got.status_code == 200 and got.content == (tmp_path / "a" / f"{path}.html").read_bytes()
        metrics = httpx.get(f"{second.url}/metrics").text
        assert metric(metrics, f'zerosite_cache_hits_total{{cache="{url}"}}') == 5
        assert metric(metrics, 'zerosite_cache_misses_total{cache="local"}') == 5  # not in this folder's store yet
        assert metric(metrics, 'zerosite_reports_total{module="M2",status="cached"}') == 1
        assert httpx.get(f"{second.url}/v1/stats").json()["reports_cached"] == 5

        redis_server.stop()  # mid-run: lookups fail, the reports are made, one warning
        for project in (projects[1], *named("after", 2, seed=82)):
            answer = post(second.url, project)
            assert [(r["status"], r["from_cache"]) for r in answer["reports"]] == [("written", False)] * 5
        assert httpx.get(f"{second.url}/readyz").json()["cache"] == {"url": url, "available": False}
        metrics = httpx.get(f"{second.url}/metrics").text
        assert metric(metrics, f'zerosite_cache_errors_total{{cache="{url}"}}') >= 1
        assert metric(metrics, f'zerosite_cache_misses_total{{cache="{url}"}}') == 15
        assert second.log.count("is unavailable") == 1, second.log
        assert f"report cache {url} is unavailable" in second.log
