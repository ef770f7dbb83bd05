"""The redis report cache against a real redis-server: hit, miss, Redis gone at the start and mid-run, TTL, the
size bound, hostile keys and values."""

from __future__ import annotations

import json
import os
import zlib
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import RedisServer

import zerosite.caches
from zerosite.caches import RedisCache, open_cache
from zerosite.cli import main
from zerosite.engine import BatchOptions, ReportOutcome, generate
from zerosite.plugins import PluginSettings, get_cache_backends
from zerosite.project import parse_project
from zerosite.sample import sample_projects
from zerosite.store import search_reports
from zerosite.types import CacheContext, ReportCache

redis = pytest.importorskip("redis", reason="redis-py is not installed (pip install -e '.[redis]')")


def open_redis(url: str, tmp_path: Path, warnings: list[str] | None = None) -> ReportCache:
    sink = warnings if warnings is not None else []
    context = CacheContext(tmp_path / "out", tmp_path / "out" / "index.sqlite", sink.append)
    return open_cache(url, get_cache_backends(PluginSettings()), context)


def files_of(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.glob("*/*.html"))}


def test_two_generates_sharing_redis_the_second_from_cache(redis_server: RedisServer, tmp_path: Path) -> None:
    runner = CliRunner()
    url = f"{redis_server.url}?ttl=600"
    common = ["generate", "--sample", "3", "--cache", url, "-q"]
    first = runner.invoke(main, [*common, "--out", str(tmp_path / "a")])
    assert first.exit_code == 0, first.output
    assert "15 written (0 from cache), 0 skipped, 0 failed" in first.output

    second = runner.invoke(main, [*common, "--out", str(tmp_path / "b"), "--json"])
    assert second.exit_code == 0, second.output
    summary = json.loads(second.stdout)
    assert (summary["written"], summary["from_cache"], summary["failed"]) == (15, 15, 0)
    assert summary["cache"] == {"url": url, "hits": 15, "misses": 0, "puts": 0, "too_big": 0, "errors": 0}
    assert files_of(tmp_path / "b") == files_of(tmp_path / "a")
    assert len(search_reports(tmp_path / "b" / "index.sqlite", "M2", limit=100)) == 3

    client = redis.Redis.from_url(redis_server.url)
    entries = client.keys(b"zerosite:e:*")
    assert len(entries) == 15
    value = client.get(entries[0])
    assert value.startswith(b"z") and zlib.decompress(value[1:]).startswith(b"<!DOCTYPE html>")
    assert len(value) < len(zlib.decompress(value[1:])) / 2  # compressed


def test_redis_down_at_the_start_is_one_warning(redis_server: RedisServer, tmp_path: Path) -> None:
    redis_server.stop()
    result = CliRunner().invoke(
        main, ["generate", "--sample", "2", "--out", str(tmp_path / "a"), "--cache", f"{redis_server.url}?timeout=0.5"]
    )
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1
    assert f"warning: report cache {redis_server.url}?timeout=0.5 is unavailable (" in warnings[0]
    assert "going on without it" in warnings[0]
    assert "10 written (0 from cache), 0 skipped, 0 failed" in result.output


def test_redis_stopped_mid_run_the_batch_goes_on_uncached(redis_server: RedisServer, tmp_path: Path) -> None:
    projects = [parse_project(raw) for raw in sample_projects(6)]
    warnings: list[str] = []
    with open_redis(redis_server.url, tmp_path, warnings) as cache:
        generate(projects[:2], BatchOptions(out=tmp_path / "warm"), cache=cache)  # two projects cached

        def stop_after_the_cached_ones(outcome: ReportOutcome) -> None:
            if outcome.from_cache and outcome.module == "M6" and outcome.project_id == projects[1].id:
                redis_server.stop()

        summary = generate(projects, BatchOptions(out=tmp_path / "b"), stop_after_the_cached_ones, cache=cache)
        stats = cache.stats
    assert (summary.written, summary.from_cache, summary.failed) == (30, 10, 0)
    assert len(warnings) == 1 and "is unavailable" in warnings[0]
    assert stats.errors == 1 and stats.hits == 10
    assert len(files_of(tmp_path / "b")) == 30


def test_redis_back_after_an_outage_is_used_again(redis_server: RedisServer, tmp_path: Path) -> None:
    warnings: list[str] = []
    with open_redis(redis_server.url, tmp_path, warnings) as cache:
        cache.retry_after_s = 0.0
        cache.put("k", b"<p>1</p>")
        redis_server.stop()
        assert cache.get("k") is None and not cache.available
        redis_server.start()  # same port, empty
        cache.put("k", b"<p>2</p>")
        assert cache.get("k") == b"<p>2</p>" and cache.available
    assert len(warnings) == 1


def test_ttl_from_the_url(redis_server: RedisServer, tmp_path: Path) -> None:
    client = redis.Redis.from_url(redis_server.url)
    with open_redis(f"{redis_server.url}?ttl=120", tmp_path) as cache:
        cache.put("a", b"<p>a</p>")
    assert 110_000 < client.pttl(b"zerosite:e:a") <= 120_000
    with open_redis(f"{redis_server.url}?ttl=0", tmp_path) as cache:
        cache.put("b", b"<p>b</p>")
    assert client.ttl(b"zerosite:e:b") == -1  # no expiry: only the size bound removes it


def test_the_size_bound_evicts_the_oldest(redis_server: RedisServer, tmp_path: Path) -> None:
    client = redis.Redis.from_url(redis_server.url)
    incompressible = [os.urandom(300) for _ in range(10)]
    with open_redis(f"{redis_server.url}?max_bytes=1KiB", tmp_path) as cache:
        for i, value in enumerate(incompressible):
            cache.put(f"k{i}", value)
        cache.put("huge", os.urandom(2000))
        assert cache.get_many([f"k{i}" for i in range(10)]) == [None] * 7 + incompressible[7:]
        assert cache.get("huge") is None
        assert (cache.stats.puts, cache.stats.too_big) == (10, 1)
    assert int(client.get(b"zerosite:bytes")) <= 1024
    assert client.zcard(b"zerosite:order") == client.hlen(b"zerosite:sizes") == 3
    assert sorted(client.keys(b"zerosite:e:*")) == [b"zerosite:e:k7", b"zerosite:e:k8", b"zerosite:e:k9"]


def test_writing_one_key_again_does_not_count_it_twice(redis_server: RedisServer, tmp_path: Path) -> None:
    client = redis.Redis.from_url(redis_server.url)
    with open_redis(redis_server.url, tmp_path) as cache:
        for _ in range(5):
            cache.put("same", os.urandom(500))
    assert client.zcard(b"zerosite:order") == 1
    assert int(client.get(b"zerosite:bytes")) == int(client.hget(b"zerosite:sizes", b"same"))


HOSTILE_KEYS = [
    "*",
    "?",
    "[a-z]*",
    "a\r\nFLUSHALL\r\n",
    "*3\r\n$8\r\nFLUSHALL\r\n",
    "bytes",
    "order",
    "../../etc/passwd",
    "역삼 \u202e\x1b[31m",
    "\x00nul",
    "' OR 1=1 --",
    "x" * 512,
]


def test_hostile_keys_are_plain_data(redis_server: RedisServer, tmp_path: Path) -> None:
    client = redis.Redis.from_url(redis_server.url)
    client.set(b"unrelated", b"kept")
    with open_redis(redis_server.url, tmp_path) as cache:
        for i, key in enumerate(HOSTILE_KEYS):
            cache.put(key, f"<p>{i}</p>".encode())
        assert cache.get_many(HOSTILE_KEYS) == [f"<p>{i}</p>".encode() for i in range(len(HOSTILE_KEYS))]
        assert cache.get("a") is None and cache.get("x" * 511) is None
        assert cache.stats.errors == 0
    assert client.get(b"unrelated") == b"kept"
    assert client.zcard(b"zerosite:order") == len(HOSTILE_KEYS)
    assert client.type(b"zerosite:bytes") == b"string" and client.type(b"zerosite:order") == b"zset"


def test_values_not_written_by_the_cache_are_misses(
    redis_server: RedisServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(zerosite.caches, "MAX_HTML_BYTES", 10_000)  # 64 MiB in earnest
    client = redis.Redis.from_url(redis_server.url)
    bomb = b"z" + zlib.compress(b"\0" * 10_001, 9)  # expands past what a value may become
    client.set(b"zerosite:e:bomb", bomb)
    client.set(b"zerosite:e:plain", b"<p>not ours</p>")
    client.set(b"zerosite:e:corrupt", b"z\x78\x9cgarbage")
    client.rpush(b"zerosite:e:list", b"x")
    with open_redis(redis_server.url, tmp_path) as cache:
        assert cache.get_many(["bomb", "plain", "corrupt", "list"]) == [None] * 4
        assert cache.stats.errors == 0


def test_prefixes_keep_caches_apart_and_passwords_are_not_shown(redis_server: RedisServer, tmp_path: Path) -> None:
    with (
        open_redis(f"{redis_server.url}?prefix=site1:", tmp_path) as one,
        open_redis(f"{redis_server.url}?prefix=site2:", tmp_path) as two,
    ):
        one.put("k", b"<p>one</p>")
        assert two.get("k") is None and one.get("k") == b"<p>one</p>"
    redis_server.stop()
    warnings: list[str] = []
    url = f"redis://:hunter2@127.0.0.1:{redis_server.port}/0"
    with open_redis(url, tmp_path, warnings) as cache:
        assert isinstance(cache, RedisCache) and cache.url == f"redis://:***@127.0.0.1:{redis_server.port}/0"
    assert len(warnings) == 1 and "redis://:***@" in warnings[0] and "hunter2" not in warnings[0]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis://:p#w?d@127.0.0.1:6393/0", "the cache URL 'redis://***@127.0.0.1:6393/0': the part before"),
        ("redis://:pa?ss3cret@127.0.0.1:6399/0", "percent-encode them in a user name or password (%2F, %3F, %23)"),
        ("redis://:s3cret@[::1/0", "cannot read the cache URL 'redis://:***@[::1/0': Invalid IPv6 URL"),
        ("redis://:s3cret\u2100@127.0.0.1:1/0", "netloc '***@127.0.0.1:1' contains invalid characters"),
        ("redis://127.0.0.1:1/0?ttl=²", "ttl must be whole seconds"),
        ("redis://127.0.0.1:1/abc", "the database in the cache URL 'redis://127.0.0.1:1/abc' must be a number"),
        ("redis://127.0.0.1:1/0/1", "must be a number such as 0, got '0/1'"),
        ("redis://127.0.0.1:99999/0", "Port out of range"),
    ],
)
def test_a_cache_url_that_cannot_be_used_is_one_error_without_its_password(
    tmp_path: Path, url: str, message: str
) -> None:
    result = CliRunner().invoke(main, ["generate", "--sample", "1", "--out", str(tmp_path / "out"), "--cache", url])
    assert result.exit_code == 2, result.output
    assert len(result.output.splitlines()) == 1 and result.output.startswith("error: --cache: ")
    assert message in result.output
    assert "s3cret" not in result.output and "p#w?d" not in result.output and "ss3cret" not in result.output
    assert not (tmp_path / "out" / "index.sqlite").exists()


@pytest.mark.parametrize("url", ["redis://:p#w?d@127.0.0.1:6393/0", "redis://[::1/0", "redis://127.0.0.1:1/abc"])
def test_serve_refuses_such_a_cache_url_as_generate_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    uvicorn = pytest.importorskip("uvicorn", reason="zerosite serve needs the serve extra")
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: pytest.fail("served with a cache URL it cannot use"))
    monkeypatch.setenv("ZEROSITE_CACHE", url)
    result = CliRunner().invoke(main, ["serve", "--out", str(tmp_path / "out"), "--port", "0"])
    assert result.exit_code == 2, result.output
    assert "error: --cache: " in result.output and "p#w?d" not in result.output
