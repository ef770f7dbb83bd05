"""Data sources against a real loopback ProjectServer: merging, async fan-out, retries, errors."""

from __future__ import annotations

import asyncio
import dataclasses
import http.server as http_server
import pickle
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

import zerosite.sources
from zerosite.project import InvalidInput, Project, Zone, parse_project
from zerosite.sources import (
    CheckedSource,
    DataSource,
    EmbeddedSource,
    FetchError,
    HttpSource,
    SourceError,
    SourceSettings,
    select_source,
    zerosite_register_data_sources,
)
from zerosite.testing import ProjectServer

FAST = SourceSettings(url=None, timeout_s=2.0, retries=3, backoff_s=0.001)


def raw_project(project_id: str = "p-001", **overrides: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "id": project_id,
        "road_address": "서울특별시 마포구 월드컵북로 100",
        "jibun_address": "서울특별시 마포구 성산동 123-4",
        "sido": "서울특별시",
        "sigungu": "마포구",
        "dong": "성산동",
        "land_area_sqm": 660.0,
        "zone_type": "제2종일반주거지역",
        "official_price_per_sqm": 5_200_000,
        "road_width_m": 8.0,
        "corner_lot": False,
        "subway_distance_m": 450.0,
        "transactions": [
            {
                "date": "2025-06-01",
                "area_sqm": 500.0,
                "price_krw": 3_000_000_000,
                "distance_m": 300.0,
                "zone_type": "제2종일반주거지역",
            }
        ],
        "demographics": {"youth": 0.4, "newlywed": 0.2, "multichild": 0.1, "senior": 0.3},
    }
    raw.update(overrides)
    return raw


def project(project_id: str = "p-001") -> Project:
    return parse_project(raw_project(project_id))


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def settings_for(url: str, **changes: Any) -> SourceSettings:
    values = {"url": url, "timeout_s": FAST.timeout_s, "retries": FAST.retries, "backoff_s": FAST.backoff_s}
    values.update(changes)
    return SourceSettings(**values)


@pytest.fixture
def http() -> Iterator[HttpSource]:
    source = HttpSource()
    try:
        yield source
    finally:
        source.close()


# -- registration and selection ---------------------------------------------------------------


def test_hook_registers_embedded_and_http() -> None:
    registered: list[DataSource] = []
    zerosite_register_data_sources(registered.append)
    assert {s.name: type(s) for s in registered} == {"embedded": EmbeddedSource, "http": HttpSource}
    assert all(s.description for s in registered)


def test_select_source_by_url() -> None:
    sources: dict[str, DataSource] = {"embedded": EmbeddedSource(), "http": HttpSource()}
    assert select_source(sources, None).name == "embedded"
    assert select_source(sources, "").name == "embedded"
    assert select_source(sources, "http://example.invalid").name == "http"
    with pytest.raises(LookupError, match=r"'http'.*available: embedded"):
        select_source({"embedded": EmbeddedSource()}, "http://example.invalid")


def test_embedded_returns_project_as_given() -> None:
    p = project()
    source = EmbeddedSource()
    assert source.fetch(p) is p
    assert asyncio.run(source.afetch(p)) is p


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="timeout_s"):
        SourceSettings(timeout_s=0)
    with pytest.raises(ValueError, match="retries"):
        SourceSettings(retries=-1)
    assert [SourceSettings(backoff_s=0.05).backoff_before(n) for n in (1, 2, 3)] == [0.05, 0.1, 0.2]


def test_http_needs_a_url() -> None:
    source = HttpSource()
    with pytest.raises(ValueError, match="url"):
        source.open(SourceSettings(url=None))
    with pytest.raises(RuntimeError, match="not open"):
        source.fetch(project())


# -- fetching ---------------------------------------------------------------------------------


def test_sync_fetch_merges_server_fields(http: HttpSource) -> None:
    served = {"p-001": {"official_price_per_sqm": 6_100_000, "road_width_m": 12.0, "corner_lot": True}}
    with ProjectServer(served, latency_s=0.0) as server:
        http.open(settings_for(server.url))
        fetched = http.fetch(project())
    assert fetched.official_price_per_sqm == 6_100_000
    assert fetched.road_width_m == 12.0
    assert fetched.corner_lot is True
    assert fetched.road_address == project().road_address  # untouched fields survive the merge
    assert fetched.transactions == project().transactions


def test_sync_fetch_reuses_one_client_across_threads(http: HttpSource) -> None:
    ids = [f"p-{i:03d}" for i in range(16)]
    with ProjectServer([raw_project(i, land_area_sqm=700.0) for i in ids], latency_s=0.01) as server:
        http.open(settings_for(server.url))
        with ThreadPoolExecutor(4) as pool:
            fetched = list(pool.map(http.fetch, [project(i) for i in ids]))
        client = http._client
        http.fetch(project(ids[0]))
        assert http._client is client is not None
    assert [p.id for p in fetched] == ids
    assert all(p.land_area_sqm == 700.0 for p in fetched)


def test_async_fetches_run_concurrently(http: HttpSource) -> None:
    n, latency = 20, 0.2
    ids = [f"p-{i:03d}" for i in range(n)]

    async def fetch_all() -> list[Project]:
        async with http.asession(settings_for(server.url)):
            return list(await asyncio.gather(*(http.afetch(project(i)) for i in ids)))

    with ProjectServer([raw_project(i) for i in ids], latency_s=latency) as server:
        started = time.perf_counter()
        fetched = asyncio.run(fetch_all())
        elapsed = time.perf_counter() - started
        assert server.requests == n
    assert [p.id for p in fetched] == ids
    # Sequential would take n * latency = 4 s; concurrent takes about one latency plus overhead, even when busy.
    assert elapsed < 0.5 * n * latency, f"{n} concurrent fetches took {elapsed:.3f} s"


def test_async_client_is_per_event_loop(http: HttpSource) -> None:
    async def fetch_twice() -> tuple[int, int]:
        await http.afetch(project())
        first = id(http._async_clients[asyncio.get_running_loop()])
        await http.afetch(project())
        second = id(http._async_clients[asyncio.get_running_loop()])
        await http.aclose()
        return first, second

    with ProjectServer([raw_project()], latency_s=0.0) as server:
        http.open(settings_for(server.url))
        first, second = asyncio.run(fetch_twice())
        assert first == second
        assert len(http._async_clients) == 0


def test_retries_succeed_after_transient_503(http: HttpSource) -> None:
    with ProjectServer([raw_project()], latency_s=0.0, fail_first_n=2) as server:
        http.open(settings_for(server.url))
        assert http.fetch(project()).id == "p-001"
        assert server.requests == 3


def test_async_retries_succeed_after_transient_503(http: HttpSource) -> None:
    async def go() -> Project:
        async with http.asession(settings_for(server.url)):
            return await http.afetch(project())

    with ProjectServer([raw_project()], latency_s=0.0, fail_first_n=2) as server:
        assert asyncio.run(go()).id == "p-001"
        assert server.requests == 3


def test_persistent_5xx_exhausts_retries(http: HttpSource) -> None:
    with ProjectServer([raw_project()], latency_s=0.0, always_fail=500) as server:
        http.open(settings_for(server.url, retries=2))
        with pytest.raises(SourceError, match="after 3 attempts: HTTP 500") as caught:
            http.fetch(project())
        assert server.requests == 3
    assert caught.value.attempts == 3


def test_404_is_not_retried_and_names_the_id(http: HttpSource) -> None:
    with ProjectServer({}, latency_s=0.0) as server:
        http.open(settings_for(server.url))
        with pytest.raises(SourceError) as caught:
            http.fetch(project("missing-7"))
        assert server.requests == 1
        url = f"{server.url}/projects/missing-7"
    error = caught.value
    assert error.project_id == "missing-7"
    assert error.url == url
    assert "'missing-7'" in str(error) and "HTTP 404" in str(error) and error.url in str(error)


@pytest.mark.parametrize("asynchronous", [False, True], ids=["fetch", "afetch"])
def test_a_redirect_is_not_followed_and_names_its_target(http: HttpSource, asynchronous: bool) -> None:
    # A user audit: a moved source failed as a bare `HTTP 302 Found`.
    class Moved(http_server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(302)
            self.send_header("Location", "https://new.example/projects/p-001")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http_server.ThreadingHTTPServer(("127.0.0.1", 0), Moved)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    settings = settings_for(f"http://127.0.0.1:{server.server_port}")
    try:
        with pytest.raises(SourceError) as caught:
            if asynchronous:

                async def go() -> Project:
                    async with http.asession(settings):
                        return await http.afetch(project())

                asyncio.run(go())
            else:
                http.open(settings)
                http.fetch(project())
    finally:
        server.shutdown()
        server.server_close()
    said = (
        "HTTP 302 Found (redirected to https://new.example/projects/p-001; not followed: give the source's new address)"
    )
    assert str(caught.value).endswith(said), caught.value


def test_server_down_gives_source_error_after_retries(http: HttpSource) -> None:
    url = closed_port_url()
    http.open(settings_for(url, retries=2))
    with pytest.raises(SourceError) as caught:
        http.fetch(project())
    assert caught.value.attempts == 3
    assert "ConnectError" in caught.value.cause
    assert f"{url}/projects/p-001" in str(caught.value)

    async def go() -> None:
        try:
            await http.afetch(project())
        finally:
            await http.aclose()

    with pytest.raises(SourceError, match="after 3 attempts: ConnectError"):
        asyncio.run(go())


def test_timeout_is_retried_then_reported(http: HttpSource) -> None:
    with ProjectServer([raw_project()], latency_s=0.3) as server:
        http.open(settings_for(server.url, timeout_s=0.05, retries=1))
        with pytest.raises(SourceError, match="after 2 attempts: ReadTimeout"):
            http.fetch(project())
        assert server.requests == 2


def test_source_error_pickles_round_trip() -> None:
    error = SourceError("p-9", "http://127.0.0.1:1/projects/p-9", "HTTP 503 Service Unavailable", 4)
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is SourceError
    assert (copy.project_id, copy.url, copy.cause, copy.attempts) == ("p-9", error.url, error.cause, 4)
    assert str(copy) == str(error)


def test_invalid_json_names_the_url(http: HttpSource) -> None:
    with ProjectServer({"p-001": b"{not json", "p-002": "[1, 2]"}, latency_s=0.0) as server:
        http.open(settings_for(server.url))
        with pytest.raises(SourceError, match="not valid JSON") as caught:
            http.fetch(project("p-001"))
        assert caught.value.url == f"{server.url}/projects/p-001"
        with pytest.raises(SourceError, match="must be a JSON object, got list"):
            http.fetch(project("p-002"))
        assert server.requests == 2  # malformed bodies are not retried


def test_an_answer_that_is_not_utf8_says_so(http: HttpSource) -> None:
    """Batch audit: JSON read from bytes guessed the encoding, and b"\\x00\\xff..." was "not valid JSON: 'utf-16-be'
    codec can't decode"; and answers are asked for uncompressed, so the body limit counts what is read (a gzip bomb was
    decompressed a read at a time, 200 MB, before it was refused)."""
    with ProjectServer({"p-001": b"\x00\xff<html>"}, latency_s=0.0) as server:
        http.open(settings_for(server.url))
        with pytest.raises(SourceError, match=r"response is not UTF-8 \(byte 0xff at position 1\)"):
            http.fetch(project("p-001"))
        assert http._client is not None and http._client.headers["accept-encoding"] == "identity"


def test_invalid_fields_raise_invalid_input_naming_the_url(http: HttpSource) -> None:
    served = {"p-001": {"land_area_sqm": -5, "zone_type": "상업지역"}, "p-002": {"id": "someone-else"}}
    with ProjectServer(served, latency_s=0.0) as server:
        http.open(settings_for(server.url))
        with pytest.raises(InvalidInput) as caught:
            http.fetch(project("p-001"))
        assert len(caught.value.errors) == 2
        assert all(e.startswith(f"{server.url}/projects/p-001.") for e in caught.value.errors)
        with pytest.raises(InvalidInput, match="expected 'p-002', got 'someone-else'"):
            http.fetch(project("p-002"))


def test_a_field_the_source_gives_twice_is_named(http: HttpSource) -> None:
    """As in the input: the last of two values was taken silently (an area 1,650 or 16,500 ㎡?)."""
    served = {"p-001": b'{"land_area_sqm": 1650, "land_area_sqm": 16500}'}
    with ProjectServer(served, latency_s=0.0) as server:
        http.open(settings_for(server.url))
        with pytest.raises(InvalidInput) as caught:
            http.fetch(project("p-001"))
        assert caught.value.errors == [f"{server.url}/projects/p-001.land_area_sqm: given twice"]


def test_http_source_pickles_without_its_clients(http: HttpSource) -> None:
    with ProjectServer([raw_project()], latency_s=0.0) as server:
        http.open(settings_for(server.url))
        http.fetch(project())
        copy = pickle.loads(pickle.dumps(http))
        assert copy.settings == http.settings
        assert copy._client is None
        assert copy.fetch(project()).id == "p-001"
        copy.close()


# -- what a plugin's source answers is checked (audit finding 2) ------------------------------


class Answering(DataSource):
    """A plugin's source that answers ``answer(project)``: whatever it returns, or raises."""

    name = "plugin"

    def __init__(self, answer: Any) -> None:
        self.answer = answer

    def fetch(self, project: Project) -> Project:
        return self.answer(project)  # type: ignore[no-any-return]


def checked_fetch(answer: Any, mode: str, asked: Project | None = None) -> Project:
    """``CheckedSource(Answering(answer))``'s answer for ``asked`` (``project()``), from fetch or afetch."""
    source = CheckedSource(Answering(answer))
    asked = asked or project()
    return source.fetch(asked) if mode == "sync" else asyncio.run(source.afetch(asked))


def raise_key_error(project: Project) -> Project:
    raise KeyError("boom")


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize(
    ("answer", "why"),
    [
        (lambda p: None, "data source 'plugin' returned NoneType, not a Project"),
        (lambda p: {"id": p.id}, "data source 'plugin' returned dict, not a Project"),
        (
            lambda p: dataclasses.replace(p, id="p9999-other"),
            "data source 'plugin' returned project 'p9999-other' for 'p-001'",
        ),
        (
            lambda p: dataclasses.replace(p, land_area_sqm=-5.0, road_width_m=float("nan")),
            "data source 'plugin' returned an invalid project: land_area_sqm: must be > 0, got -5; "
            "road_width_m: must be finite, got nan",
        ),
        (
            lambda p: dataclasses.replace(p, demographics={"youth": 0.5}),
            "data source 'plugin' returned an invalid project: demographics.newlywed: missing; "
            "demographics.multichild: missing; demographics.senior: missing",
        ),
        (
            lambda p: parse_project(raw_project(p.id, land_area_sqm=0), where="api"),
            "data source 'plugin' returned an invalid project: api.land_area_sqm: must be > 0, got 0",
        ),
    ],
    ids=["None", "dict", "other-id", "out-of-range", "demographics-dict", "raised-invalid-input"],
)
def test_a_wrong_answer_is_a_fetch_error_naming_the_source(answer: Any, why: str, mode: str) -> None:
    with pytest.raises(FetchError) as caught:
        checked_fetch(answer, mode)
    assert str(caught.value) == why


def test_the_fields_of_a_source_that_validates_its_answers_are_not_checked_again(
    http: HttpSource, monkeypatch: pytest.MonkeyPatch
) -> None:
    checks: list[Project] = []
    monkeypatch.setattr(zerosite.sources, "validate_project", lambda p: checks.append(p) or p)
    with ProjectServer({"p-001": {"road_width_m": 12.0}}, latency_s=0.0) as server:
        http.open(settings_for(server.url))
        assert CheckedSource(http).fetch(project()).road_width_m == 12.0  # parsed by the http source itself
    assert checks == []
    trusting = Answering(lambda p: dataclasses.replace(p, id="p9999-other"))
    trusting.validates_answers = True
    with pytest.raises(FetchError, match="returned project 'p9999-other' for 'p-001'"):
        CheckedSource(trusting).fetch(project())  # its type and id are still checked
    CheckedSource(Answering(lambda p: dataclasses.replace(p, land_area_sqm=2.0))).fetch(project())
    assert len(checks) == 1  # any other source's answer is


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_an_exception_from_fetch_is_named_with_its_type_its_source_and_where(mode: str) -> None:
    with pytest.raises(FetchError) as caught:
        checked_fetch(raise_key_error, mode)
    line = raise_key_error.__code__.co_firstlineno + 1
    assert (
        str(caught.value)
        == f"data source 'plugin' raised KeyError: 'boom' (at test_sources.py:{line} in raise_key_error)"
    )
    assert isinstance(caught.value.__cause__, KeyError)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_source_error_and_a_stop_pass_through_unchanged(mode: str) -> None:
    failure = SourceError("p-001", "http://example.invalid/projects/p-001", "HTTP 404 Not Found")

    def refuse(p: Project) -> Project:
        raise failure

    with pytest.raises(SourceError) as caught:
        checked_fetch(refuse, mode)
    assert caught.value is failure

    def interrupted(p: Project) -> Project:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        checked_fetch(interrupted, mode)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_right_answer_comes_back_as_a_file_would_give_it(mode: str) -> None:
    asked = project()
    assert checked_fetch(lambda p: p, mode, asked) is asked  # unchanged: checked when it was read
    loose = dataclasses.replace(asked, zone_type="제3종일반주거지역", land_area_sqm=700, road_width_m=-0.0)
    fetched = checked_fetch(lambda p: loose, mode, asked)
    assert fetched == parse_project(raw_project(zone_type="제3종일반주거지역", land_area_sqm=700.0, road_width_m=0.0))
    assert fetched.zone_type is Zone.RESIDENTIAL_3 and type(fetched.land_area_sqm) is float


def test_a_checked_source_opens_and_closes_the_plugins_source() -> None:
    calls: list[str] = []

    class Tracked(EmbeddedSource):
        name = "tracked"

        def open(self, settings: SourceSettings) -> None:
            calls.append("open")
            super().open(settings)

        def close(self) -> None:
            calls.append("close")

        async def aclose(self) -> None:
            calls.append("aclose")

    inner = Tracked()
    checked = CheckedSource(inner)
    settings = SourceSettings(url="http://example.invalid", retries=0)

    async def session() -> None:
        async with checked.asession(settings):
            assert (checked.settings, inner.settings) == (settings, settings)

    asyncio.run(session())
    assert calls == ["open", "aclose", "close"]
    assert (checked.name, repr(checked)) == ("tracked", "<CheckedSource of <Tracked 'tracked'>>")


# -- the test server itself -------------------------------------------------------------------


def test_project_server_counts_requests_thread_safely() -> None:
    with ProjectServer([raw_project()], latency_s=0.0) as server:
        http = HttpSource()
        http.open(settings_for(server.url))
        threads = [threading.Thread(target=lambda: [http.fetch(project()) for _ in range(10)]) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        http.close()
        assert server.requests == 40
    with pytest.raises(RuntimeError, match="not running"):
        _ = server.url
