"""``zerosite serve`` endpoint by endpoint, against one real server (thread runner, a bearer token) on loopback."""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import gzip
import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import brotli
import httpx
import pytest
from click.testing import CliRunner

from zerosite.cli import main
from zerosite.cores import most_workers
from zerosite.engine import ReportOutcome, StageTimings
from zerosite.rendering import REPORT_POLICY
from zerosite.sample import sample_projects
from zerosite.service import ConfigError, ServiceConfig, create_app, read_token_file
from zerosite.service.app import open_report_cache
from zerosite.service.errors import ApiError, internal_error
from zerosite.service.jobs import ReportQueue
from zerosite.service.metrics import ProcessTree, ServiceMetrics
from zerosite.service.process import ServerProcess
from zerosite.service.response_bodies import ResponseBodyCache, choose_encoding, etag_matches
from zerosite.service.routes import _describe, _search
from zerosite.store import ReportRow, ReportStore, StoreError
from zerosite.types import CacheStats

TOKEN = "s3cret-token-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MODULES = ("M2", "M3", "M4", "M5", "M6")


def named(prefix: str, n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` sample projects with ids of their own (``PREFIX-0001``...), so that no two tests share a project."""
    return [{**project, "id": f"{prefix}-{i:04d}"} for i, project in enumerate(sample_projects(n, seed=seed), 1)]


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("served")


@pytest.fixture(scope="module")
def server(out: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    token_file = tmp_path_factory.mktemp("secrets") / "token"
    token_file.write_text(TOKEN + "\n")
    args = ["--out", str(out), "--strategy", "thread", "--workers", "2", "--token-file", str(token_file)]
    with ServerProcess(args) as running:
        yield running


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as http:
        yield http


@pytest.fixture(scope="module")
def projects() -> list[dict[str, Any]]:
    return named("s81", 8, seed=81)


@pytest.fixture(scope="module")
def made(client: httpx.Client, projects: list[dict[str, Any]]) -> dict[str, Any]:
    """The first project's reports, made once for the module."""
    response = client.post("/v1/reports", json=projects[0], headers=AUTH)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def index_rows(out: Path) -> list[tuple[str, str, str]]:
    with sqlite3.connect(out / "index.sqlite") as conn:
        return conn.execute("SELECT project_id, module, status FROM reports").fetchall()


# -- POST /v1/reports --------------------------------------------------------------------------------------------


def test_post_makes_writes_and_indexes_every_report(made: dict[str, Any], out: Path, projects: list[Any]) -> None:
    project_id = projects[0]["id"]
    assert made["project_id"] == project_id
    assert [r["module"] for r in made["reports"]] == list(MODULES)
    for report in made["reports"]:
        assert report["status"] == "written" and report["cached"] is False and report["error"] is None
        assert report["url"] == f"/v1/reports/{project_id}/{report['module']}"
        path = out / project_id / f"{report['module']}.html"
        assert path.stat().st_size == report["size_bytes"]
        assert len(report["sha256"]) == 64
    assert {(p, m) for p, m, s in index_rows(out) if s == "written"} >= {(project_id, m) for m in MODULES}


def test_post_again_comes_from_the_cache_unchanged(
    client: httpx.Client, made: dict[str, Any], projects: list[Any]
) -> None:
    again = client.post("/v1/reports", json=projects[0], headers=AUTH).json()
    assert [r["status"] for r in again["reports"]] == ["cached"] * 5
    assert all(r["cached"] and not r["from_cache"] for r in again["reports"])
    assert [r["sha256"] for r in again["reports"]] == [r["sha256"] for r in made["reports"]]


@pytest.mark.parametrize("modules", ["M5,M2", ["M5", "M2"]], ids=["comma-separated", "repeated"])
def test_post_a_subset_of_modules(client: httpx.Client, projects: list[Any], out: Path, modules: Any) -> None:
    response = client.post("/v1/reports", params={"modules": modules}, json=projects[1], headers=AUTH)
    assert response.status_code == 200, response.text
    assert [r["module"] for r in response.json()["reports"]] == ["M2", "M5"]
    assert sorted(p.name for p in (out / projects[1]["id"]).iterdir()) == ["M2.html", "M5.html"]


def test_invalid_project_is_422_with_the_clis_field_paths(client: httpx.Client, projects: list[Any], out: Path) -> None:
    bad = {**projects[2], "id": "bad-one", "land_area_sqm": -5, "zone_type": "nowhere"}
    del bad["demographics"]
    response = client.post("/v1/reports", json=bad, headers=AUTH)
    assert response.status_code == 422
    body = response.json()
    assert "traceback" not in response.text.lower()
    assert "project.land_area_sqm: must be > 0, got -5" in body["problems"]
    assert any(p.startswith("project.zone_type: ") for p in body["problems"])
    assert "project.demographics: missing" in body["problems"]
    assert not (out / "bad-one").exists()


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"{", "body:1:2: not valid JSON"),
        (b"", "body: empty"),
        (b"[1, 2]", "project: must be an object"),
        (b"\xff\xfe", "body: not valid UTF-8"),
        (b"[" * 100_000, "nested too deeply"),
    ],
    ids=["truncated", "empty", "a-list", "not-utf8", "deep"],
)
def test_unreadable_body_is_422_saying_why(client: httpx.Client, body: bytes, problem: str) -> None:
    response = client.post("/v1/reports", content=body, headers=AUTH)
    assert response.status_code == 422
    assert problem in response.json()["problems"][0]


def test_unknown_module_is_422(client: httpx.Client, projects: list[Any]) -> None:
    response = client.post("/v1/reports", params={"modules": "M2,M9"}, json=projects[2], headers=AUTH)
    assert response.status_code == 422
    assert response.json()["problems"][0].startswith("query.modules: unknown module")


def test_body_over_1_mb_is_413_declared_or_streamed(client: httpx.Client) -> None:
    declared = client.post("/v1/reports", content=b" " * 1_000_001, headers=AUTH)
    assert declared.status_code == 413
    assert declared.json()["error"] == "the body is larger than 1,000,000 bytes"

    def chunks() -> Iterator[bytes]:  # no Content-Length: refused while reading
        for _ in range(20):
            yield b" " * 100_000

    streamed = client.post("/v1/reports", content=chunks(), headers=AUTH)
    assert streamed.status_code == 413


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}, {"Authorization": "Bearer"}],
    ids=["none", "wrong", "not-bearer", "empty"],
)
def test_write_endpoints_need_the_bearer_token(
    client: httpx.Client, projects: list[Any], headers: dict[str, str]
) -> None:
    for method, url, body in (
        ("POST", "/v1/reports", json.dumps(projects[3])),
        ("POST", "/v1/batches", json.dumps([projects[3]])),
        ("DELETE", "/v1/batches/anything", ""),
    ):
        response = client.request(method, url, content=body, headers=headers)
        assert response.status_code == 401, (method, url)
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert "error" in response.json()


# -- GET /v1/reports/{project_id}/{module} -----------------------------------------------------------------------


def test_get_report_with_etag_cache_control_and_304(
    client: httpx.Client, made: dict[str, Any], out: Path, projects: list[Any]
) -> None:
    report = made["reports"][0]
    response = client.get(report["url"], headers={"Accept-Encoding": "identity"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["etag"] == f'"{report["sha256"]}"'
    assert response.headers["cache-control"] == "public, max-age=60"
    assert response.headers["content-security-policy"] == REPORT_POLICY  # as a published site serves it (audit)
    assert response.content == (out / projects[0]["id"] / "M2.html").read_bytes()
    again = client.get(report["url"], headers={"If-None-Match": response.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    other = client.get(report["url"], headers={"If-None-Match": '"0000"', "Accept-Encoding": "identity"})
    assert other.status_code == 200


@pytest.mark.parametrize(("accept", "encoding"), [("gzip", "gzip"), ("gzip, br", "br"), ("br;q=0, gzip", "gzip")])
def test_get_report_compressed_when_accepted(
    client: httpx.Client, made: dict[str, Any], out: Path, projects: list[Any], accept: str, encoding: str
) -> None:
    report = made["reports"][1]
    with client.stream("GET", report["url"], headers={"Accept-Encoding": accept}) as response:
        raw = b"".join(response.iter_raw())
    assert response.headers["content-encoding"] == encoding
    assert response.headers["vary"] == "Accept-Encoding"
    assert response.headers["etag"] == f'W/"{report["sha256"]}"'
    plain = gzip.decompress(raw) if encoding == "gzip" else brotli.decompress(raw)
    assert plain == (out / projects[0]["id"] / "M3.html").read_bytes()
    assert len(raw) < len(plain) / 3


def test_head_is_answered_wherever_get_is(client: httpx.Client, made: dict[str, Any]) -> None:
    report = made["reports"][2]["url"]
    # The report twice: first through the app's routes, then from memory (after a GET has read it).
    for path in ("/", "/healthz", "/readyz", "/v1/search?q=x", "/v1/stats", report, report):
        head = client.head(path, headers={"Accept-Encoding": "identity"})
        get = client.get(path, headers={"Accept-Encoding": "identity"})
        assert (head.status_code, head.content) == (200, b""), path
        assert head.headers["content-type"] == get.headers["content-type"], path
        if path == report:
            assert head.headers["etag"] == get.headers["etag"] == f'"{made["reports"][2]["sha256"]}"'
            assert head.headers["content-length"] == get.headers["content-length"] == str(len(get.content))
    assert client.head("/v1/reports/no-such-project/M2").status_code == 404
    assert 'method="HEAD",route="/healthz",status="200"' in client.get("/metrics").text


@pytest.mark.parametrize(
    "path",
    [
        "/v1/reports/no-such-project/M2",
        "/v1/reports/{made}/M9",
        "/v1/reports/../index.sqlite",
        "/v1/reports/%2E%2E/index",
        "/v1/reports/..%2F..%2Fetc/passwd",
        "/v1/reports/.hidden/M2",
        "/v1/reports/{made}/M2.html",
    ],
)
def test_unknown_or_escaping_report_is_404(client: httpx.Client, made: dict[str, Any], path: str) -> None:
    response = client.get(path.replace("{made}", made["project_id"]))
    assert response.status_code == 404
    assert set(response.json()) == {"error"}


# -- batches ------------------------------------------------------------------------------------------------------


def wait_final(client: httpx.Client, batch_id: str, timeout_s: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        view: dict[str, Any] = client.get(f"/v1/batches/{batch_id}").json()
        if view["final"]:
            return view
        time.sleep(0.05)
    raise AssertionError(f"batch {batch_id} did not finish: {view}")


def test_batch_as_json_lines_runs_to_done(client: httpx.Client, projects: list[Any], out: Path) -> None:
    body = "\n".join(json.dumps(p, ensure_ascii=False) for p in projects[4:7]) + "\n"
    response = client.post(
        "/v1/batches", content=body.encode(), headers={**AUTH, "Content-Type": "application/x-ndjson"}
    )
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert response.headers["location"] == accepted["url"] == f"/v1/batches/{accepted['id']}"
    assert accepted["total"] == 3
    view = wait_final(client, accepted["id"])
    assert (view["state"], view["done"], view["failed"], view["reports_written"]) == ("done", 3, 0, 15)
    assert view["rate_per_s"] > 0
    assert all((out / p["id"] / "M6.html").is_file() for p in projects[4:7])


def test_batch_events_stream_progress_then_end(client: httpx.Client) -> None:
    batch = named("s82", 40, seed=82)
    accepted = client.post("/v1/batches", json=batch, headers=AUTH).json()
    events: list[tuple[str, dict[str, Any]]] = []
    with client.stream("GET", accepted["events"]) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        name = ""
        for line in response.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                events.append((name, json.loads(line[6:])))
    assert events[-1][0] == "end" and events[-1][1]["state"] == "done"
    progress = [data["done"] for name, data in events if name == "progress"]
    assert progress == sorted(progress) and progress[-1] == 40


def test_batch_with_an_invalid_project_is_422_and_nothing_runs(client: httpx.Client, projects: list[Any]) -> None:
    batch = [projects[0], {**projects[1], "land_area_sqm": 0}, {**projects[2], "id": projects[0]["id"]}]
    response = client.post("/v1/batches", json=batch, headers=AUTH)
    assert response.status_code == 422
    problems = response.json()["problems"]
    assert problems[0].startswith("projects[1].land_area_sqm: must be > 0")
    assert problems[1].startswith("projects[2].id: duplicate id")
    assert client.post("/v1/batches", json=[], headers=AUTH).status_code == 422


def test_cancel_a_batch_discards_the_projects_in_flight_whole(client: httpx.Client, out: Path) -> None:
    batch = named("s83", 400, seed=83)
    accepted = client.post("/v1/batches", json=batch, headers=AUTH).json()
    deadline = time.monotonic() + 60
    while client.get(accepted["url"]).json()["done"] == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    cancelled = client.delete(accepted["url"], headers=AUTH)
    assert cancelled.status_code == 202
    assert cancelled.json()["cancel_requested"] is True
    view = wait_final(client, accepted["id"])
    assert view["state"] == "cancelled"
    assert 0 < view["done"] < 400
    indexed: dict[str, set[str]] = {}
    for project_id, module, status in index_rows(out):
        if status == "written":
            indexed.setdefault(project_id, set()).add(module)
    whole = 0
    for project in batch:
        folder = out / project["id"]
        on_disk = {p.stem for p in folder.glob("*.html")} if folder.exists() else set()
        assert on_disk == indexed.get(project["id"], set()), project["id"]  # never half a project
        assert on_disk in (set(), set(MODULES)), project["id"]
        whole += on_disk == set(MODULES)
    assert whole == view["done"]
    assert not list(out.glob("*/.*.tmp"))
    again = client.delete(accepted["url"], headers=AUTH)
    assert again.status_code == 409 and again.json()["batch"]["state"] == "cancelled"


def test_unknown_batch_is_404(client: httpx.Client) -> None:
    assert client.get("/v1/batches/nope").status_code == 404
    assert client.get("/v1/batches/nope/events").status_code == 404
    assert client.delete("/v1/batches/nope", headers=AUTH).status_code == 404


# -- search -------------------------------------------------------------------------------------------------------


def test_search_finds_by_address_and_module(client: httpx.Client, made: dict[str, Any], projects: list[Any]) -> None:
    dong = projects[0]["dong"]
    found = client.get("/v1/search", params={"q": dong, "module": "M4"}).json()
    assert {(r["project_id"], r["module"]) for r in found["results"]} >= {(made["project_id"], "M4")}
    assert all(r["module"] == "M4" and dong in r["address"] for r in found["results"])
    assert found["results"][0]["url"] == f"/v1/reports/{found['results'][0]['project_id']}/M4"
    fts = client.get("/v1/search", params={"q": f"{dong} AND module:M2", "fts": "true"}).json()
    assert {r["module"] for r in fts["results"]} == {"M2"}


@pytest.mark.parametrize(
    "q",
    [
        "' OR 1=1; DROP TABLE reports; --",
        '"unbalanced',
        "NEAR(",
        "<script>alert(1)</script>",
        "module:M2 OR *",
        "\u202e\x1b[31m",
        "a" * 500,
    ],
)
def test_hostile_search_text_is_inert(client: httpx.Client, made: dict[str, Any], out: Path, q: str) -> None:
    response = client.get("/v1/search", params={"q": q})
    assert response.status_code in (200, 400)
    assert "traceback" not in response.text.lower()
    if response.status_code == 400:
        assert response.json()["error"] == "q holds no word to search for (letters or digits)"
    assert any(m == "M2" for _, m, _ in index_rows(out))


@pytest.mark.parametrize(
    ("params", "why"),
    [
        ({"q": '"unbalanced', "fts": "true"}, "malformed full-text query: unterminated string"),
        ({"q": "AND", "fts": "true"}, "malformed full-text query: fts5: syntax error near"),
        ({"q": "nosuchcolumn:x", "fts": "true"}, "malformed full-text query: no such column: nosuchcolumn"),
        ({"q": "*", "fts": "true"}, "malformed full-text query: "),
        ({"q": "**", "fts": "true"}, "malformed full-text query: "),
        ({"q": "* OR a", "fts": "true"}, "malformed full-text query: "),
        ({"q": "   "}, "q is empty"),
        ({"q": "x" * 501}, "q is longer than 500 characters"),
    ],
)
def test_malformed_search_is_400_saying_why(client: httpx.Client, made: dict[str, Any], params: Any, why: str) -> None:
    response = client.get("/v1/search", params=params)
    assert response.status_code == 400
    assert response.json()["error"].startswith(why)


def test_an_unreadable_index_is_a_500_that_names_no_server_path(tmp_path: Path) -> None:
    broken = tmp_path / "index.sqlite"
    broken.write_bytes(b"not a database" * 100)
    service: Any = SimpleNamespace(config=SimpleNamespace(db_path=broken))
    with pytest.raises(ApiError) as raised:
        _search(service, "jamsil", None, 5, True)
    assert raised.value.status == 500
    assert raised.value.message == (
        "the report index cannot be read (file is not a database); the server log has the details"
    )


def test_a_500_says_why_in_the_systems_words_without_the_servers_paths() -> None:
    """Service audit F9: an output folder turned read-only gave a 500 with no cause a client could act on."""
    try:
        try:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), "/srv/zerosite/out/.zerosite.lock")
        except OSError as error:
            raise StoreError("cannot open the report store at /srv/zerosite/out") from error
    except StoreError as error:
        answer = internal_error("the reports could not be made", error)
    assert answer.message == "the reports could not be made (Read-only file system); the server log has the details"


def test_search_limit_out_of_range_is_422(client: httpx.Client) -> None:
    response = client.get("/v1/search", params={"q": "x", "limit": 0})
    assert response.status_code == 422
    assert response.json()["problems"][0].startswith("query.limit:")


def test_search_for_a_module_this_service_does_not_know_is_422(client: httpx.Client, made: dict[str, Any]) -> None:
    """A typo in the module looked like nothing found (service audit); a known module with no hit is still 200."""
    response = client.get("/v1/search", params={"q": "강남", "module": "M9"})
    assert response.status_code == 422
    assert response.json()["problems"] == ["query.module: unknown module(s) M9; known: M2, M3, M4, M5, M6"]
    assert client.get("/v1/search", params={"q": "nowhere", "module": "M2"}).json()["results"] == []


# -- metrics, stats, health, schema, errors ----------------------------------------------------------------------


def test_metrics_in_prometheus_text(client: httpx.Client, made: dict[str, Any], projects: list[Any]) -> None:
    client.post("/v1/reports", json=projects[0], headers=AUTH)  # cached this time
    client.get("/healthz")
    response = client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = response.text
    for expected in (
        'zerosite_reports_total{module="M2",status="written"}',
        'zerosite_reports_total{module="M2",status="cached"}',
        'zerosite_report_duration_seconds_bucket{le="0.01",module="M3",stage="render"}',
        'zerosite_report_duration_seconds_count{module="M6",stage="total"}',
        'zerosite_http_request_duration_seconds_count{method="POST",route="/v1/reports",status="200"}',
        'zerosite_http_request_duration_seconds_count{method="GET",route="/healthz",status="200"}',
        # GETs of a report answered from memory, before FastAPI's routing, are counted under the same route
        'zerosite_http_request_duration_seconds_count{method="GET",route="/v1/reports/{project_id}/{module}",status="200"}',
        'zerosite_http_request_duration_seconds_count{method="GET",route="/v1/reports/{project_id}/{module}",status="304"}',
        "zerosite_http_requests_in_flight 1.0",
        "zerosite_queue_depth ",
        'zerosite_cache_hits_total{cache="local"} ',
        'zerosite_cache_misses_total{cache="local"}',
        "zerosite_uptime_seconds ",
        'zerosite_process_cpu_seconds_total{process="server"}',
        'zerosite_process_resident_memory_bytes{process="workers"}',
        "zerosite_ready 1.0",
        'zerosite_reports_total{module="M4",status="failed"} 0.0',  # there from the start, at 0
    ):
        assert expected in text, expected


def test_every_cache_series_is_there_from_the_start() -> None:
    cache: Any = SimpleNamespace(keeps_copies=True, url="redis://cache:6379/0", stats=CacheStats())
    metrics = ServiceMetrics(depth=lambda: 0, ready=lambda: True, cache=cache)
    text = metrics.exposition().decode()
    metrics.close()
    for name in ("hits", "misses", "puts", "errors"):
        assert f'zerosite_cache_{name}_total{{cache="redis://cache:6379/0"}} 0.0' in text
    assert 'zerosite_cache_hits_total{cache="local"} 0.0' in text


def test_the_page_says_a_query_is_too_long(client: httpx.Client) -> None:
    response = client.get("/", params={"q": "x" * 501})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    assert "q is longer than 500 characters" in response.text


def test_stats_like_the_old_service(client: httpx.Client, made: dict[str, Any]) -> None:
    stats = client.get("/v1/stats").json()
    assert stats["reports_generated"] >= 5
    assert stats["avg_ms_per_report"] > 0 and stats["reports_per_minute"] > 0
    assert stats["memory_mb"] > 10 and stats["cpu_percent"] >= 0 and stats["uptime_s"] > 0
    assert (stats["ready"], stats["strategy"], stats["workers"]) == (True, "thread", 2)


def test_the_services_own_lines_are_logged_like_uvicorns(server: ServerProcess, made: dict[str, Any]) -> None:
    assert "INFO:     serving " in server.log
    assert "INFO:     workers ready: thread x2" in server.log


def test_health_and_readiness(client: httpx.Client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["ready"] is True


def test_openapi_documents_every_endpoint(client: httpx.Client) -> None:
    schema = client.get("/openapi.json").json()
    paths = schema["paths"]
    assert set(paths["/v1/reports"]) == {"post"}
    assert "422" in paths["/v1/reports"]["post"]["responses"] and "413" in paths["/v1/reports"]["post"]["responses"]
    assert "requestBody" in paths["/v1/reports"]["post"]
    assert set(paths["/v1/batches/{batch_id}"]) == {"get", "delete"}
    for path in (
        "/v1/reports/{project_id}/{module}",
        "/v1/batches",
        "/v1/batches/{batch_id}/events",
        "/v1/search",
        "/metrics",
        "/v1/stats",
        "/healthz",
        "/readyz",
        "/",
    ):
        assert path in paths


def test_the_docs_pages_and_their_files_come_from_this_server(client: httpx.Client) -> None:
    """No CDN (a closed network); the files counted under their mount in the metrics, not as unmatched."""
    for page, asset in (("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")):
        html = client.get(page).text
        assert f'"/static-offline-docs/{asset}"' in html and "cdn." not in html
        assert client.get(f"/static-offline-docs/{asset}").status_code == 200
    assert 'method="GET",route="/static-offline-docs",status="200"' in client.get("/metrics").text


def test_every_error_is_json_without_a_traceback(client: httpx.Client) -> None:
    for response in (client.get("/no/such/route"), client.put("/v1/reports"), client.get("/v1/search")):
        assert response.headers["content-type"] == "application/json"
        assert set(response.json()) <= {"error", "problems"}
        assert "Traceback" not in response.text


# -- small parts ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "chosen"),
    [
        ("", "identity"),
        ("gzip", "gzip"),
        ("br, gzip", "br"),
        ("*", "br"),
        ("br;q=0,gzip;q=0", "identity"),
        ("br;q=0.1, gzip;q=1", "gzip"),  # the client's preference, not the server's
        ("gzip;q=0.5, identity;q=0.9", "identity"),
        ("br;q=0.5", "br"),
        ("*;q=0.2, gzip;q=0.8", "gzip"),
    ],
)
def test_choose_encoding(header: str, chosen: str) -> None:
    assert choose_encoding(header) == chosen


def test_etag_matching() -> None:
    assert etag_matches('"abc"', "abc") and etag_matches('W/"abc"', "abc") and etag_matches('"x", "abc"', "abc")
    assert etag_matches("*", "abc") and not etag_matches('"abd"', "abc") and not etag_matches("", "abc")


def test_config_round_trips_through_the_environment(tmp_path: Path) -> None:
    config = ServiceConfig(
        out=tmp_path, strategy="thread", workers=3, token="t", queue_size=5, request_timeout_s=2.5, report_timeout_s=1
    )
    assert ServiceConfig.from_env(config.to_env()) == config
    with pytest.raises(ConfigError, match="ZEROSITE_OUT is not set"):
        ServiceConfig.from_env({})
    with pytest.raises(ConfigError, match="ZEROSITE_WORKERS must be an integer"):
        ServiceConfig.from_env({"ZEROSITE_OUT": str(tmp_path), "ZEROSITE_WORKERS": "two"})
    token_file = tmp_path / "token"
    token_file.write_text("  from-file \n")
    assert ServiceConfig.from_env({"ZEROSITE_OUT": "o", "ZEROSITE_TOKEN_FILE": str(token_file)}).token == "from-file"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--strategy", "nope"], "error: unknown strategy 'nope'"),
        (["--cache", "memcached://127.0.0.1:1"], "--cache: unknown report cache 'memcached://127.0.0.1:1'"),
        (["--cache", "redis://127.0.0.1:6379/0?colour=red"], "--cache: unknown redis cache option 'colour'"),
        (["--request-timeout", "nan"], "'nan' is not a finite number of seconds"),
    ],
)
def test_serve_refuses_bad_settings_before_listening(tmp_path: Path, args: list[str], message: str) -> None:
    result = CliRunner().invoke(main, ["serve", "--out", str(tmp_path / "out"), *args])
    assert result.exit_code == 2
    assert message in result.output


@pytest.mark.parametrize("content", [b"not an index", b"SQLite format 3\x00" + b"\xff" * 4000])
def test_serve_refuses_an_index_it_cannot_read_before_listening(tmp_path: Path, content: bytes) -> None:
    # Otherwise /readyz says ready and every request that makes or finds a report is a 500.
    out = tmp_path / "out"
    out.mkdir()
    (out / "index.sqlite").write_bytes(content)
    with pytest.raises(ConfigError, match=r"cannot read the report index .*index\.sqlite.*move it aside"):
        create_app(ServiceConfig(out=out, strategy="thread", workers=1))
    result = CliRunner().invoke(main, ["serve", "--out", str(out)])
    assert result.exit_code == 2
    assert f"cannot read the report index {out / 'index.sqlite'}" in result.output


def test_serve_starts_on_an_index_a_batch_made(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert (
        CliRunner().invoke(main, ["generate", "--sample", "1", "--strategy", "sequential", "--out", str(out)]).exit_code
        == 0
    )
    create_app(ServiceConfig(out=out, strategy="thread", workers=1))  # no ConfigError


def test_serve_reads_the_cache_from_zerosite_cache(tmp_path: Path) -> None:
    # A bad strategy too, so that serve stops either way: on the cache when it reads the variable (it is checked
    # first), on the strategy when it does not.
    result = CliRunner().invoke(
        main,
        ["serve", "--out", str(tmp_path / "out"), "--strategy", "nope"],
        env={"ZEROSITE_CACHE": "memcached://127.0.0.1:1"},
    )
    assert result.exit_code == 2
    assert "--cache: unknown report cache 'memcached://127.0.0.1:1'" in result.output


@pytest.mark.parametrize("empty", ["", "  "])
def test_a_token_variable_set_but_empty_is_refused_not_read_as_no_token(tmp_path: Path, empty: str) -> None:
    """Service audit: ``ZEROSITE_TOKEN=$(cat missing-file)`` served every write endpoint open, without a word."""
    with pytest.raises(ConfigError, match=r"^ZEROSITE_TOKEN is set but empty"):
        ServiceConfig.from_env({"ZEROSITE_OUT": str(tmp_path), "ZEROSITE_TOKEN": empty})
    result = CliRunner().invoke(main, ["serve", "--out", str(tmp_path / "out")], env={"ZEROSITE_TOKEN": empty})
    assert result.exit_code == 2
    assert "ZEROSITE_TOKEN is set but empty: give the token, or unset it to serve without one" in result.output


@pytest.mark.parametrize("token", ["s3cr\u00e9t-token", "two words", "tab\there"])
def test_a_token_that_no_header_can_carry_is_refused_at_start(tmp_path: Path, token: str) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=f"the token file {token_file}: the token must be visible ASCII"):
        read_token_file(token_file)
    with pytest.raises(ConfigError, match=r"^ZEROSITE_TOKEN: the token must be visible ASCII"):
        ServiceConfig.from_env({"ZEROSITE_OUT": str(tmp_path), "ZEROSITE_TOKEN": token})
    result = CliRunner().invoke(  # a bad strategy too: without the check, serve stops there instead of listening
        main, ["serve", "--out", str(tmp_path / "out"), "--token-file", str(token_file), "--strategy", "nope"]
    )
    assert result.exit_code == 2
    assert f"the token file {token_file}: the token must be visible ASCII" in result.output


def test_workers_are_capped_however_the_server_is_configured(tmp_path: Path) -> None:
    most = most_workers()
    from_env = ServiceConfig.from_env({"ZEROSITE_OUT": str(tmp_path), "ZEROSITE_WORKERS": str(most + 100)})
    assert from_env.workers == most
    assert ServiceConfig(out=tmp_path, workers=most + 1).workers == most
    assert ServiceConfig(out=tmp_path, workers=1).workers == 1
    assert ServiceConfig(out=tmp_path, strategy="sequential", workers=most + 1).workers == most + 1  # unused there


def test_the_warm_up_stops_when_the_server_does(tmp_path: Path) -> None:
    config = ServiceConfig(out=tmp_path / "out", strategy="sequential", workers=1)
    config.out.mkdir()
    queue = ReportQueue(config, open_report_cache(config), lambda outcome: None)  # not started: no dispatcher
    warmed: list[str] = []

    class Counting:
        def run(self, projects: Iterator[Any], _: object) -> Iterator[None]:
            for project in projects:
                warmed.append(project.id)
                yield None

    queue._warm(cast(Any, Counting()))
    assert len(warmed) >= 2
    warmed.clear()
    queue.stopping.set()
    queue._warm(cast(Any, Counting()))
    assert warmed == []
    queue.cache.close()


def test_the_answer_describes_the_file_this_request_made_not_the_one_there_now(tmp_path: Path) -> None:
    """A later pass may replace a report before its request is answered: the answer's SHA-256 and size are those of
    the file its own pass wrote (or found), as the engine's outcome says, not the file's as it is by then."""
    (tmp_path / "p1").mkdir()
    (tmp_path / "p1" / "M2.html").write_bytes(b"made later, by another request")
    mine = b"made by this request"
    service: Any = SimpleNamespace(
        bodies=ResponseBodyCache(tmp_path, max_bytes=1 << 20), config=SimpleNamespace(out=tmp_path)
    )
    timings = StageTimings()
    written = ReportOutcome(
        "p1", "M2", "written", str(tmp_path / "p1" / "M2.html"), len(mine), timings, 0, None,
        sha256=hashlib.sha256(mine).hexdigest(),
    )  # fmt: skip
    skipped = dataclasses.replace(written, status="skipped", location=None)  # the indexed file's, as found
    failed = dataclasses.replace(written, status="failed", sha256=None, size_bytes=0, error="boom")
    answer = _describe(service, [written, skipped, failed])
    mine_described = (hashlib.sha256(mine).hexdigest(), len(mine))
    assert (answer[0]["sha256"], answer[0]["size_bytes"]) == mine_described
    assert (answer[1]["sha256"], answer[1]["size_bytes"]) == mine_described
    assert answer[2]["sha256"] is None and answer[2]["url"] is None


def test_the_workers_cpu_counter_keeps_the_time_of_workers_that_ended() -> None:
    """A Prometheus counter never goes down: a closed runner's workers used to take their CPU time with them."""
    tree = ProcessTree()
    before = tree.cpu_seconds()[1]
    burn = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass\ntime.sleep(60)"
    worker = subprocess.Popen([sys.executable, "-c", burn])
    try:
        deadline = time.monotonic() + 30
        while (alive := tree.cpu_seconds()[1]) - before < 0.3:
            assert time.monotonic() < deadline, "the child never used its CPU"
            time.sleep(0.05)
    finally:
        worker.kill()
        worker.wait()  # reaped: its time moves to this process's children fields
    assert tree.cpu_seconds()[1] >= alive


def test_report_file_cache_notices_a_remade_file_and_stays_within_its_bound(tmp_path: Path) -> None:
    files = ResponseBodyCache(tmp_path, max_bytes=30_000)
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "M2.html").write_text(name * 20_000)
    first = files.get("a", "M2")
    assert first is not None and first.sha256 == hashlib.sha256(b"a" * 20_000).hexdigest()
    assert files.get("a", "M2") is first  # unchanged: not read again
    assert files.fresh("a", "M2") is first and files.fresh("b", "M2") is None  # b not read yet
    assert len(files.encoded(first, "gzip")) < 1000
    (tmp_path / "a" / "M2.html").write_text("remade")  # another process made it again
    assert files.fresh("a", "M2") is None  # changed on disk: read again by get
    again = files.get("a", "M2")
    assert again is not None and again.data == b"remade"
    files.get("b", "M2")
    assert files._bytes <= 30_000
    assert files.get("../a", "M2") is None and files.get("a", "../M2") is None and files.get("c", "M2") is None


def test_a_report_whose_last_making_failed_is_not_served_from_its_old_file(tmp_path: Path) -> None:
    """Service audit F1: where the store could not remove the file of a report that failed when made again (a
    read-only project folder), GET served that file, of the earlier input, with a 200; the index, search, the page
    and publish all said failed."""
    with ReportStore(tmp_path) as store:
        for project_id in ("a", "b"):
            written = store.write(project_id, "M2", f"<p>{project_id}, earlier input</p>")
            store.record(ReportRow(project_id, "M2", path=str(written.path), sha256=written.sha256))
    files = ResponseBodyCache(tmp_path, max_bytes=1 << 20)
    try:
        assert files.get("b", "M2") is not None
        files.forget("b", "M2")  # what the service does with each report of its own that fails
        assert files.fresh("b", "M2") is None  # no longer kept: the next GET reads the file and asks the index
        with ReportStore(tmp_path) as store:  # made again, failed
            store.record(ReportRow("a", "M2", status="failed", error="x"))
        (tmp_path / "a").mkdir(exist_ok=True)
        (tmp_path / "a" / "M2.html").write_text("<p>a, earlier input</p>")  # a file the store could not remove
        assert files.get("a", "M2") is None
        assert files.get("b", "M2") is not None
    finally:
        files.close()


def test_before_the_workers_are_warm_writes_are_503_and_readyz_says_why(tmp_path: Path) -> None:
    app = create_app(ServiceConfig(out=tmp_path / "out", strategy="thread", workers=1))

    async def ask() -> tuple[httpx.Response, ...]:
        # No lifespan here: the dispatcher has not started, the workers are not warm.
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            return (
                await client.get("/healthz"),
                await client.get("/readyz"),
                await client.post("/v1/reports", json=named("cold", 1, seed=1)[0]),
            )

    health, ready, refused = asyncio.run(ask())
    assert health.status_code == 200
    assert ready.status_code == 503 and ready.headers["retry-after"] == "1"
    assert ready.json()["reason"] == "the workers are warming up"
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
    assert refused.json() == {"error": "the workers are warming up"}
