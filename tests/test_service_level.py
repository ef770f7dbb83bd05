"""The benchmark's service level: its figures and verdicts, the open-loop sweep, its lean HTTP client, the page and
chart, and one short real run against ``zerosite serve``."""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

import pytest

from zerosite.benchmarking import service_load
from zerosite.benchmarking.analysis import Analysis
from zerosite.benchmarking.cells import BUSY_MACHINE
from zerosite.benchmarking.charts import write_charts
from zerosite.benchmarking.load import RoundLoad
from zerosite.benchmarking.machine import describe_machine
from zerosite.benchmarking.page import render_page
from zerosite.benchmarking.service_level import analyse_service
from zerosite.benchmarking.service_load import (
    HttpError,
    LoadPoint,
    LoadSettings,
    Request,
    ResourceUse,
    ServiceRun,
    SweepStep,
    quantile_ms,
    run_service_load,
    serve_unavailable_reason,
)
from zerosite.benchmarking.targets import load_targets

USE = ResourceUse(server_cpu_percent=80, server_rss_mb=200, server_processes=3, generator_cpu_percent=10)
TARGETS = {"service_p95_ms": 300.0, "service_error_rate": 0.0}


def requests(latencies_ms: list[float], failed: int = 0) -> tuple[Request, ...]:
    made = [Request("get", i * 0.01, ms / 1000, 200) for i, ms in enumerate(latencies_ms)]
    made += [Request("post", 9.0 + i, 0.05, 503) for i in range(failed)]
    return tuple(made)


def point(strategy: str, users: int, latencies_ms: list[float], failed: int = 0) -> LoadPoint:
    return LoadPoint(strategy, users, 2.0, requests(latencies_ms, failed), USE)


def test_each_point_is_judged_on_its_p95_interval_and_its_exact_error_count() -> None:
    fast = point("thread", 50, [10.0] * 95 + [20.0] * 5)
    slow = point("thread", 200, [900.0] * 100)
    erring = point("thread", 100, [10.0] * 99, failed=1)
    analysis = analyse_service([ServiceRun("thread", 2, [fast, erring, slow])], TARGETS)
    by_users = {p.users: p for p in analysis.points}
    assert by_users[50].p95_ms == 10.0 and by_users[50].p99_ms == 20.0
    assert by_users[50].throughput_per_s == 50.0
    assert {j.target_name: str(j.verdict) for j in by_users[50].judgements} == {
        "service_p95_ms": "PASS",
        "service_error_rate": "PASS",
    }
    assert by_users[200].judgements[0].verdict == "FAIL"
    assert by_users[100].errors == 1 and by_users[100].error_percent == 1.0
    assert str(by_users[100].judgements[1].verdict) == "FAIL"  # one error in a hundred is not zero
    assert by_users[100].post_p95_ms == 50.0
    assert "service thread\N{MULTIPLICATION SIGN}2, 100 users:" in by_users[100].line()
    assert "1 error of 100 (1 HTTP 503);" in by_users[100].line()
    # Into the run's analysis: its judgements count with the cells' (a FAIL fails the session).
    assert len(Analysis(cells=(), service=analysis).failures) == 2
    assert Analysis(cells=(), service=analysis).as_dict()["service"]["points"][0]["users"] == 50  # type: ignore[index]


def test_a_point_measured_on_a_busy_machine_cannot_fail() -> None:
    busy = RoundLoad(load1=9.0, other_cpu_s=4.0, steal_s=0.0, wall_s=2.0, busy=True)
    slow = LoadPoint("async", 200, 2.0, requests([900.0] * 100, failed=2), USE, busy)
    (figures,) = analyse_service([ServiceRun("async", 2, [slow])], TARGETS).points
    assert [str(j.verdict) for j in figures.judgements] == ["INCONCLUSIVE", "INCONCLUSIVE"]
    assert f"would FAIL, but measured while {BUSY_MACHINE}" in figures.judgements[0].message()
    assert figures.busy and "machine busy" in figures.line()


@pytest.mark.parametrize(
    ("processes", "server_cpu", "generator_cpu", "at_capacity"),
    [(1, 112.0, 16.0, True), (1, 74.0, 12.0, False), (3, 102.0, 14.0, False), (3, 170.0, 14.0, True)],
)
def test_a_server_at_its_cpu_capacity_cannot_fail(
    processes: int, server_cpu: float, generator_cpu: float, at_capacity: bool
) -> None:
    """The thread server (one process) at 200 users: p95 of 90, 857, 656 and 25 ms in four full runs of the
    same code, at 101-120 % CPU when it failed. A verdict must not flip between runs: at capacity, no FAIL."""
    use = ResourceUse(server_cpu, 200, processes, generator_cpu)
    slow = LoadPoint("thread", 200, 2.0, requests([900.0] * 100), use)
    (figures,) = analyse_service([ServiceRun("thread", 2, [slow])], TARGETS, cores=2).points
    verdict = figures.judgements[0]
    assert str(verdict.verdict) == ("INCONCLUSIVE" if at_capacity else "FAIL")
    assert ("would FAIL, but the server ran at its CPU capacity" in verdict.message()) == at_capacity


def test_the_sweep_names_the_highest_rate_held_and_what_gave_way() -> None:
    steps = [
        SweepStep(40, 2.0, requests([20.0] * 80), USE),
        SweepStep(60, 2.0, requests([150.0] * 120), USE),
        SweepStep(90, 2.0, requests([400.0] * 170, failed=10), USE),
    ]
    run = ServiceRun("process", 2, [point("process", 50, [10.0] * 20)], steps)
    (sweep,) = analyse_service([run], TARGETS).sweeps
    assert [s.held for s in sweep.steps] == [True, True, False]
    # what the Poisson arrivals came to, beside the rate asked (answered read as more than offered: audit F10)
    assert [s.sent_per_s for s in sweep.steps] == [40, 60, 90]
    assert sweep.highest_held_per_s == 60
    assert sweep.limited_by.startswith("not held at 90 req/s offered: p95 400 ms and 10 errors (10 HTTP 503)")
    assert "60 req/s" in sweep.line()


def test_a_failed_request_says_why_in_the_line_the_json_and_the_page(tmp_path: Path) -> None:
    """A point that FAILs on errors names them, so that the next run is not the only way to find out."""
    failed = (
        Request("get", 1.0, 0.01, 0, "no answer: [Errno 104] Connection reset by peer"),
        Request("post", 1.1, 10.0, 0, "no answer within 10 s"),
        Request("get", 1.2, 0.02, 0, "no answer: [Errno 104] Connection reset by peer"),
    )
    erring = LoadPoint("process", 200, 2.0, requests([10.0] * 97) + failed, USE)
    steps = [SweepStep(40, 2.0, requests([20.0] * 80) + failed[1:2], USE)]
    analysis = analyse_service([ServiceRun("process", 2, [erring], steps)], TARGETS)
    (figures,) = analysis.points
    reasons = "2 no answer: [Errno 104] Connection reset by peer, 1 no answer within 10 s"
    assert f"3 errors of 100 ({reasons});" in figures.line()
    assert figures.as_dict()["errors_by_reason"] == {
        "no answer: [Errno 104] Connection reset by peer": 2,
        "no answer within 10 s": 1,
    }
    assert "1 error (1 no answer within 10 s)" in analysis.sweeps[0].limited_by
    assert analysis.sweeps[0].as_dict()["steps"][0]["errors_by_reason"] == {"no answer within 10 s": 1}  # type: ignore[index]
    html = render_page(Analysis(cells=(), service=analysis), load_targets(tmp_path), describe_machine(), [])
    assert f"Why requests failed: process\N{MULTIPLICATION SIGN}2 at 200 users: {reasons}." in html
    assert "Why requests failed: at 40 req/s offered: 1 no answer within 10 s." in html


def test_held_and_quantiles() -> None:
    assert quantile_ms(requests([1.0, 2.0, 3.0, 4.0]), 0.5) == 2.0
    assert service_load.held(requests([100.0] * 19 + [1000.0]), 300, 0)  # p95 of 20: the 19th
    assert not service_load.held(requests([100.0] * 18 + [1000.0] * 2), 300, 0)
    assert not service_load.held(requests([100.0] * 20, failed=1), 300, 0)
    assert not service_load.held((), 300, 0)


def test_skipped_with_a_reason_without_the_serve_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "uvicorn" else real(name))
    assert serve_unavailable_reason() == (
        "the serve extra is not installed (uvicorn missing): pip install -e '.[serve]'"
    )


# -- the lean HTTP client ------------------------------------------------------------------------------------------


@asynccontextmanager
async def answering(answer: Callable[[bytes], bytes], close_after: bool = False) -> AsyncIterator[str]:
    """A loopback server that answers every request with ``answer(request head)``; with ``close_after``, it then
    closes the connection without saying so, as a server does with a connection idle past its keep-alive timeout."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(
                    next((h.split(b":")[1] for h in head.split(b"\r\n") if h.startswith(b"Content-Length")), 0)
                )
                await reader.readexactly(length)
                writer.write(answer(head))
                await writer.drain()
                if close_after:
                    writer.close()
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()


def test_the_client_reads_lengths_chunks_and_not_modified_on_one_connection() -> None:
    def answer(head: bytes) -> bytes:
        if head.startswith(b"GET /chunked"):
            return b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
        if head.startswith(b"GET /same"):
            return b"HTTP/1.1 304 Not Modified\r\nETag: x\r\n\r\n"
        return b"HTTP/1.1 201 Created\r\nContent-Length: 5\r\n\r\nhello"

    async def run() -> list[tuple[int, bytes]]:
        async with answering(answer) as url:
            client = service_load._Client(url, timeout_s=5)
            try:
                got = [
                    await client.request("POST", "/x", b'{"a": 1}', "Content-Type: application/json\r\n"),
                    await client.request("GET", "/chunked"),
                    await client.request("GET", "/same"),
                ]
                assert len(client._all) == 1  # kept alive: one connection for the three
                return got
            finally:
                client.close()

    assert asyncio.run(run()) == [(201, b"hello"), (200, b"abcde"), (304, b"")]


def test_the_client_does_not_send_on_a_connection_the_server_closed_while_it_was_idle() -> None:
    """uvicorn closes a keep-alive connection idle for 5 s; a request sent on it got no answer, and counted as
    an error of the server's (one in 308 requests at 200 users, in one run of the quick benchmark)."""

    async def run() -> list[tuple[int, bytes]]:
        async with answering(lambda head: b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", close_after=True) as url:
            client = service_load._Client(url, timeout_s=5)
            try:
                first = await client.request("GET", "/")
                await asyncio.sleep(0.1)  # idle: the server's close arrives
                return [first, await client.request("GET", "/")]
            finally:
                client.close()

    assert asyncio.run(run()) == [(200, b"ok"), (200, b"ok")]


def test_the_client_says_why_when_no_answer_comes() -> None:
    async def run() -> None:
        async with answering(lambda head: b"SMTP ready\r\n\r\n") as url:
            client = service_load._Client(url, timeout_s=5)
            with pytest.raises(HttpError, match=r"not an HTTP/1\.1 answer"):
                await client.request("GET", "/")
            client.close()
        async with answering(lambda head: b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nhal", close_after=True) as url:
            client = service_load._Client(url, timeout_s=5)
            with pytest.raises(HttpError, match="the server closed the connection after 3 bytes of an answer"):
                await client.request("GET", "/")
            client.close()
        client = service_load._Client(url, timeout_s=5)  # the server is gone
        with pytest.raises(HttpError):
            await client.request("GET", "/")

    asyncio.run(run())


# -- the page and the chart ------------------------------------------------------------------------------------------


def test_a_server_of_one_process_and_a_point_without_posts_read_plainly(tmp_path: Path) -> None:
    """The page and the line said "1 processes" for a thread server, and "nan" for the p95 of POSTs where a point
    had none (here: every request a GET)."""
    alone = LoadPoint("thread", 50, 2.0, requests([10.0] * 20), replace(USE, server_processes=1))
    analysis = analyse_service(
        [ServiceRun("thread", 2, [alone]), ServiceRun("process", 2, [point("process", 50, [10.0] * 20)])], TARGETS
    )
    one, three = (next(p for p in analysis.points if p.strategy == s) for s in ("thread", "process"))
    assert "200 MB in 1 process;" in one.line() and "200 MB in 3 processes;" in three.line()
    html = render_page(Analysis(cells=(), service=analysis), load_targets(tmp_path), describe_machine())
    assert '<span class="sub">1 process</span>' in html and '<span class="sub">3 processes</span>' in html
    assert "(POST p95 -, GET p95 10)" in one.line() and '<td class="n">- / 10</td>' in html and "nan" not in html
    assert one.as_dict()["post_p95_ms"] is None and one.as_dict()["get_p95_ms"] == 10.0


def test_page_and_chart_show_the_service_level(tmp_path: Path) -> None:
    steps = [SweepStep(40, 2.0, requests([20.0] * 80), USE), SweepStep(60, 2.0, requests([500.0] * 120), USE)]
    runs = [
        ServiceRun("process", 2, [point("process", u, [10.0 * u / 50] * 100) for u in (50, 100, 200)], steps),
        ServiceRun("thread", 2, [point("thread", u, [80.0 * u / 50] * 100) for u in (50, 100, 200)]),
    ]
    analysis = Analysis(cells=(), service=analyse_service(runs, TARGETS))
    charts = write_charts(analysis, TARGETS, tmp_path)
    assert [c.path.name for c in charts] == ["service.png"]
    assert charts[0].path.stat().st_size > 10_000
    html = render_page(analysis, load_targets(tmp_path), describe_machine(), charts)
    assert "Service level" in html and "Open-loop sweep: process" in html
    assert "<strong>40 requests/s</strong>" in html
    assert html.count("PASS p95 &le; 300 ms") == 5 and html.count("FAIL p95 &le; 300 ms") == 1  # thread, 200 users
    (tmp_path / "chart.png").write_bytes(charts[0].path.read_bytes())


# -- one short real run ------------------------------------------------------------------------------------------------


@pytest.mark.skipif(serve_unavailable_reason() is not None, reason=str(serve_unavailable_reason()))
def test_a_short_real_run_against_zerosite_serve(tmp_path: Path) -> None:
    settings = LoadSettings(
        strategies=("thread",),
        users=(3, 6),
        workers=1,
        ramp_s=0.2,
        window_s=1.0,
        think_mean_s=0.1,
        seed_projects=2,
        sweep_strategies=("thread",),
        sweep_start_per_s=10,
        sweep_steps=2,
        sweep_window_s=0.5,
    )
    lines: list[str] = []
    speeds = iter(range(1, 100))
    run = run_service_load(
        "thread", settings, tmp_path / "out", 5000, 0.0, log=lines.append, canary=lambda: float(next(speeds))
    )
    assert run.canary_s == [float(i) for i in range(1, 41)]  # twenty before the users, twenty after
    assert analyse_service([run], TARGETS).points[0].as_dict()["canary_s"] == run.canary_s
    assert lines[0].startswith("service: zerosite serve --strategy thread --workers 1 ready (waited ")
    assert [p.users for p in run.points] == [3, 6]
    for measured in run.points:
        assert measured.requests and all(r.ok for r in measured.requests), measured.requests
        assert {r.kind for r in run.points[-1].requests} <= {"get", "post"}
        assert measured.resources.server_rss_mb > 20 and measured.resources.server_processes >= 1
    assert 1 <= len(run.sweep) <= 2 and run.sweep[0].rate_per_s == 10
    assert any(r.kind == "post" for p in run.points for r in p.requests)
    posted = list((tmp_path / "out").glob("load-thread-*/M2.html"))
    assert len(posted) >= settings.seed_projects


# -- the level in a pytest session -------------------------------------------------------------------------------------

pytest_plugins = ["pytester"]


def test_the_level_is_skipped_saying_why_without_the_serve_extra(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        import zerosite.benchmarking.fixture as fixture

        fixture.serve_unavailable_reason = lambda: "the serve extra is not installed (fastapi missing)"
        """
    )
    pytester.makepyfile(
        test_service="""
        import pytest

        @pytest.mark.zerosite_service
        def test_service(zerosite_service_point, zerosite_service):
            zerosite_service(zerosite_service_point)
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--zerosite-quick", "-rs")
    result.assert_outcomes(skipped=3)
    result.stdout.fnmatch_lines(["*the serve extra is not installed (fastapi missing)*"])
    assert result.ret == 0
