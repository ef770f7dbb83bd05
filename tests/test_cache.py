"""The report cache: the interface and its failure rules, the hook, the local backend, and the engine's one seam."""

from __future__ import annotations

import contextlib
import gzip
import logging
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path

import pluggy
import pytest
from click.testing import CliRunner
from helpers import projects

from zerosite import hookimpl
from zerosite.caches import LocalCache, RedisOptions, open_cache, shown_url
from zerosite.cli import main
from zerosite.engine import BatchOptions, generate
from zerosite.plugins import PluginSettings, get_cache_backends, get_plugin_manager
from zerosite.store import search_reports
from zerosite.types import (
    CacheBackend,
    CacheContext,
    CacheError,
    CacheStats,
    CacheUnavailable,
    PluginError,
    ReportCache,
)

Registered = Callable[..., contextlib.AbstractContextManager[pluggy.PluginManager]]


class MemoryCache(ReportCache):
    """A dict; ``down`` makes it act like a service that cannot be reached."""

    def __init__(self, warn: Callable[[str], None] | None = None) -> None:
        super().__init__("memory://", warn or (lambda message: None))
        self.entries: dict[str, bytes] = {}
        self.down = False
        self.calls = 0

    def load(self, keys: Sequence[str]) -> list[bytes | None]:
        self.calls += 1
        if self.down:
            raise CacheUnavailable("connection refused")
        return [self.entries.get(key) for key in keys]

    def save(self, items: Sequence[tuple[str, bytes]]) -> int:
        self.calls += 1
        if self.down:
            raise CacheUnavailable("connection refused")
        self.entries.update(items)
        return len(items)


def files_of(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.glob("*/*.html*"))}


# --- The interface ----------------------------------------------------------------------------------------------


def test_get_put_and_stats() -> None:
    cache = MemoryCache()
    assert cache.get("a" * 64) is None
    cache.put("a" * 64, b"<p>a</p>")
    cache.put_many([("b", b"<p>b</p>"), ("c", b"")])
    assert cache.get_many(["a" * 64, "b", "c", "d"]) == [b"<p>a</p>", b"<p>b</p>", b"", None]
    assert cache.stats == CacheStats(hits=3, misses=2, puts=3)
    assert cache.get_many([]) == [] and cache.stats.misses == 2


def test_an_unavailable_backend_warns_once_and_is_left_alone_then_tried_again() -> None:
    warnings: list[str] = []
    cache = MemoryCache(warnings.append)
    cache.put("k", b"html")
    cache.down = True
    assert [cache.get("k") for _ in range(5)] == [None] * 5
    cache.put("k2", b"more")
    assert warnings == ["report cache memory:// is unavailable (connection refused); going on without it"]
    assert cache.calls == 2 and not cache.available  # one failed call, then left alone
    assert cache.stats == CacheStats(hits=0, misses=5, puts=1, errors=1)

    cache.retry_after_s = 0.0
    cache.down = False
    assert cache.get("k") == b"html" and cache.available
    cache.down = True
    cache.get("k")
    assert len(warnings) == 2  # a new outage, a new warning


def test_a_probe_finds_a_backend_back_without_waiting_for_a_report(caplog: pytest.LogCaptureFixture) -> None:
    """Service audit F3: ``/readyz`` said unavailable for as long as no request used the cache, long after Redis was
    back, and nothing said it was back."""
    cache = MemoryCache()
    cache.down = True
    cache.get("k")
    assert not cache.probe() and cache.calls == 1  # left alone: not tried before its time
    cache.retry_after_s = 0.0
    assert not cache.probe() and cache.calls == 2  # tried, still down
    cache.down = False
    with caplog.at_level(logging.INFO, logger="zerosite"):
        assert cache.probe() and cache.available and cache.calls == 3
        assert cache.probe() and cache.calls == 3  # up: nothing to try
    assert [r.getMessage() for r in caplog.records] == ["report cache memory:// is available again"]


def test_a_backend_answering_nonsense_counts_as_unavailable() -> None:
    warnings: list[str] = []
    cache = MemoryCache(warnings.append)
    cache.load = lambda keys: [b"one"]  # type: ignore[method-assign]
    assert cache.get_many(["a", "b"]) == [None, None]
    cache.retry_after_s = 0.0
    cache.load = lambda keys: ["text"] * len(keys)  # type: ignore[method-assign]
    assert cache.get("a") is None
    assert len(warnings) == 1 and "answered 1 values for 2 keys" in warnings[0]
    assert cache.stats.errors == 2


@pytest.mark.parametrize(
    "key",
    ["", "x" * 513, "\udc80", 42, None, b"bytes"],
    ids=["empty", "too-long", "lone-surrogate", "int", "none", "bytes"],
)
def test_keys_that_are_not_text_of_sane_length_are_refused(key: object) -> None:
    cache = MemoryCache()
    with pytest.raises(ValueError, match="cache key"):
        cache.get(key)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cache key"):
        cache.put(key, b"x")  # type: ignore[arg-type]
    assert cache.calls == 0


def test_values_are_bytes() -> None:
    with pytest.raises(TypeError, match="bytes"):
        MemoryCache().put("k", "<p>text</p>")  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["", "Redis", "re dis", "9p", "redis://"])
def test_a_backend_is_named_by_a_url_scheme(name: str) -> None:
    with pytest.raises(ValueError, match="URL scheme"):
        CacheBackend(name, "x", lambda url, context: MemoryCache())


# --- Choosing a backend: the hook and open_cache ---------------------------------------------------------------


def context(tmp_path: Path, warn: Callable[[str], None] | None = None) -> CacheContext:
    out = tmp_path / "out"
    return CacheContext(out, out / "index.sqlite", warn or (lambda message: None))


def test_built_in_backends_register_through_the_hook(fresh_plugins: None, tmp_path: Path) -> None:
    backends = get_cache_backends(PluginSettings())
    assert list(backends) == ["local", "redis", "rediss"]
    assert isinstance(open_cache(None, backends, context(tmp_path)), LocalCache)
    assert isinstance(open_cache(" LOCAL ", backends, context(tmp_path)), LocalCache)
    with pytest.raises(CacheError, match=r"unknown report cache 'memcached://h:1'.*known: local, redis, rediss"):
        open_cache("memcached://h:1", backends, context(tmp_path))
    with pytest.raises(CacheError, match="takes no address"):
        open_cache("local:///elsewhere", backends, context(tmp_path))


def test_a_plugin_adds_a_backend_and_a_clash_names_both(
    registered: Registered, tmp_path: Path, fresh_plugins: None
) -> None:
    shared = MemoryCache()

    class Memo:
        @hookimpl
        def zerosite_register_caches(self, register: Callable[[CacheBackend], None]) -> None:
            register(CacheBackend("memo", "In memory.", lambda url, context: shared))

    class Other:
        @hookimpl
        def zerosite_register_caches(self, register: Callable[[CacheBackend], None]) -> None:
            register(CacheBackend("memo", "Also in memory.", lambda url, context: shared))

    settings = PluginSettings()
    with registered(get_plugin_manager(settings), memo_plugin=Memo()):
        backends = get_cache_backends(settings)
        assert open_cache("memo://anything", backends, context(tmp_path)) is shared
        clash = "cache backend 'memo' is registered by more than one plugin: memo_plugin, other_plugin"
        with registered(get_plugin_manager(settings), other_plugin=Other()), pytest.raises(PluginError, match=clash):
            get_cache_backends(settings)


def test_a_backend_that_registers_something_else_is_named(registered: Registered, tmp_path: Path) -> None:
    class Wrong:
        @hookimpl
        def zerosite_register_caches(self, register: Callable[[object], None]) -> None:
            register({"name": "dict"})

    settings = PluginSettings()
    refused = r"plugin wrong registered \{'name': 'dict'\}, which is not a CacheBackend"
    with registered(get_plugin_manager(settings), wrong=Wrong()), pytest.raises(PluginError, match=refused):
        get_cache_backends(settings)


# --- The engine's seam ------------------------------------------------------------------------------------------


def test_a_second_batch_into_another_folder_is_filled_from_a_shared_cache(tmp_path: Path) -> None:
    cache = MemoryCache()
    batch = projects(3)
    first = generate(batch, BatchOptions(out=tmp_path / "a"), cache=cache)
    assert (first.written, first.from_cache, cache.stats.puts) == (15, 0, 15)

    made: list[bool] = []
    second = generate(
        batch, BatchOptions(out=tmp_path / "b"), on_report=lambda o: made.append(o.from_cache), cache=cache
    )
    assert (second.written, second.from_cache, second.failed) == (15, 15, 0)
    assert made == [True] * 15 and second.as_dict()["from_cache"] == 15
    assert second.stage_ns.compute_ns == second.stage_ns.render_ns == 0
    assert files_of(tmp_path / "b") == files_of(tmp_path / "a")
    # Indexed like any report: searchable, and the next run into the same folder resumes (skips) them.
    address = batch[0].road_address.split()[1]
    assert search_reports(tmp_path / "b" / "index.sqlite", address)
    again = generate(batch, BatchOptions(out=tmp_path / "b"), cache=cache)
    assert (again.skipped, again.written) == (15, 0)


def test_gzip_and_plain_batches_share_entries(tmp_path: Path) -> None:
    cache = MemoryCache()
    batch = projects(2)
    generate(batch, BatchOptions(out=tmp_path / "plain"), cache=cache)
    zipped = generate(batch, BatchOptions(out=tmp_path / "gz", gzip=True), cache=cache)
    assert zipped.from_cache == 10
    for path in (tmp_path / "gz").glob("*/*.html.gz"):
        assert (
            gzip.decompress(path.read_bytes())
            == (tmp_path / "plain" / path.relative_to(tmp_path / "gz")).with_suffix("").read_bytes()
        )
    # ...and the other way round: a gzip batch fills the cache with plain HTML.
    other = MemoryCache()
    generate(batch, BatchOptions(out=tmp_path / "gz2", gzip=True), cache=other)
    assert set(other.entries.values()) == set(cache.entries.values())


def test_a_project_is_filled_only_when_every_report_is_cached(tmp_path: Path) -> None:
    cache = MemoryCache()
    batch = projects(2)
    generate(batch, BatchOptions(out=tmp_path / "a"), cache=cache)
    missing = next(iter(cache.entries))
    del cache.entries[missing]
    summary = generate(batch, BatchOptions(out=tmp_path / "b"), cache=cache)
    assert (summary.written, summary.from_cache) == (10, 5)
    assert missing in cache.entries  # made again, and put back


def test_force_makes_everything_and_refreshes_the_cache(tmp_path: Path) -> None:
    cache = MemoryCache()
    batch = projects(1)
    generate(batch, BatchOptions(out=tmp_path / "a"), cache=cache)
    cache.entries = dict.fromkeys(cache.entries, b"stale")
    summary = generate(batch, BatchOptions(out=tmp_path / "b", force=True), cache=cache)
    assert summary.from_cache == 0
    assert b"stale" not in cache.entries.values()


def test_an_entry_that_is_not_utf8_is_a_miss(tmp_path: Path) -> None:
    cache = MemoryCache()
    batch = projects(1)
    generate(batch, BatchOptions(out=tmp_path / "a"), cache=cache)
    cache.entries = dict.fromkeys(cache.entries, b"\xff\xfe not text")
    summary = generate(batch, BatchOptions(out=tmp_path / "b"), cache=cache)
    assert (summary.written, summary.from_cache) == (5, 0)


def test_a_cache_that_goes_down_leaves_the_batch_uncached(tmp_path: Path) -> None:
    warnings: list[str] = []
    cache = MemoryCache(warnings.append)
    cache.down = True
    summary = generate(projects(3), BatchOptions(out=tmp_path / "a"), cache=cache)
    assert (summary.written, summary.failed, summary.from_cache) == (15, 0, 0)
    assert len(warnings) == 1 and cache.calls == 1


def test_an_unwritable_report_from_the_cache_fails_alone(tmp_path: Path) -> None:
    cache = MemoryCache()
    batch = projects(2)
    generate(batch, BatchOptions(out=tmp_path / "a"), cache=cache)
    out = tmp_path / "b"
    out.mkdir()
    (out / batch[0].id).write_text("a file where the project's folder should be")
    summary = generate(batch, BatchOptions(out=out), cache=cache)
    assert (summary.written, summary.failed, summary.from_cache) == (5, 5, 5)
    assert all(batch[0].id in (f.error or "") for f in summary.failures)


# --- local: the store itself -------------------------------------------------------------------------------------


@pytest.mark.parametrize("zipped", [False, True], ids=["html", "gzip"])
def test_local_finds_a_written_report_by_its_input_hash(tmp_path: Path, zipped: bool) -> None:
    out = tmp_path / "out"
    generate(projects(1), BatchOptions(out=out, gzip=zipped))
    with sqlite3.connect(out / "index.sqlite") as conn:
        rows = conn.execute("SELECT input_hash, path FROM reports ORDER BY module").fetchall()
    with LocalCache(CacheContext(out, out / "index.sqlite")) as cache:
        for input_hash, path in rows:
            data = (out / path).read_bytes()
            assert cache.get(input_hash) == (gzip.decompress(data) if zipped else data)
        assert cache.get("0" * 64) is None
        assert cache.get(rows[0][0][:8] + "0" * 56) is None  # the same first digits (the index's key), another hash
        assert cache.get("' OR 1=1 --") is None
        assert cache.stats == CacheStats(hits=5, misses=3)
        cache.put(rows[0][0], b"ignored")  # the store is the cache: nothing is copied
        assert cache.stats.puts == 0


def test_local_looks_a_report_up_through_the_index_on_its_input_hash(tmp_path: Path) -> None:
    from zerosite.store import _BY_INPUT_HASH

    out = tmp_path / "out"
    generate(projects(1), BatchOptions(out=out))
    with sqlite3.connect(out / "index.sqlite") as conn:
        plan = " ".join(row[-1] for row in conn.execute(f"EXPLAIN QUERY PLAN {_BY_INPUT_HASH}", ("abcd0123", "x")))
    assert "USING INDEX reports_input_key" in plan, plan


def test_local_never_reads_outside_the_output_folder(tmp_path: Path) -> None:
    out = tmp_path / "out"
    generate(projects(1), BatchOptions(out=out))
    (tmp_path / "secret.html").write_text("secret")
    with sqlite3.connect(out / "index.sqlite") as conn:
        (input_hash,) = conn.execute("SELECT input_hash FROM reports LIMIT 1").fetchone()
        conn.execute("UPDATE reports SET path = ? WHERE input_hash = ?", ("../secret.html", input_hash))
        (other,) = conn.execute(
            "SELECT input_hash FROM reports WHERE input_hash != ? LIMIT 1", (input_hash,)
        ).fetchone()
        conn.execute("UPDATE reports SET path = ? WHERE input_hash = ?", (str(tmp_path / "secret.html"), other))
    with LocalCache(CacheContext(out, out / "index.sqlite")) as cache:
        assert cache.get(input_hash) is None and cache.get(other) is None


def test_local_without_an_index_finds_nothing_and_a_broken_one_is_unavailable(tmp_path: Path) -> None:
    warnings: list[str] = []
    out = tmp_path / "out"
    with LocalCache(CacheContext(out, out / "index.sqlite", warnings.append)) as cache:
        assert cache.get("a" * 64) is None and warnings == []
    out.mkdir()
    (out / "index.sqlite").write_bytes(b"not a database at all" * 100)
    with LocalCache(CacheContext(out, out / "index.sqlite", warnings.append)) as cache:
        assert cache.get("a" * 64) is None
    assert len(warnings) == 1 and "cannot read the report index" in warnings[0]


def test_a_batch_with_the_local_cache_is_an_ordinary_batch(tmp_path: Path) -> None:
    """local is the store that resume reads already: it neither fills nor stores anything in a batch."""
    out = tmp_path / "out"
    with LocalCache(CacheContext(out, out / "index.sqlite")) as cache:
        first = generate(projects(2), BatchOptions(out=out), cache=cache)
        second = generate(projects(2), BatchOptions(out=out), cache=cache)
        assert (first.written, second.skipped, second.from_cache) == (10, 10, 0)
        assert cache.stats == CacheStats()


# --- Options of the redis URL and the command line ---------------------------------------------------------------


def test_redis_options_from_the_url_query() -> None:
    assert RedisOptions.from_query("") == RedisOptions()
    options = RedisOptions.from_query("ttl=0&max_bytes=64MiB&timeout=0.25&prefix=site1:")
    assert (options.ttl, options.max_bytes, options.timeout, options.prefix) == (0, 64 << 20, 0.25, "site1:")
    assert RedisOptions.from_query("max_bytes=500kB").max_bytes == 500_000
    for query, message in [
        ("ttl=-1", "ttl must be"),
        ("ttl=1e3", "ttl must be"),
        ("max_bytes=lots", "max_bytes must be"),
        ("max_bytes=10", "max_bytes must be from 1KiB"),
        ("timeout=nan", "timeout must be"),
        ("timeout=inf", "timeout must be"),
        ("prefix=", "prefix must be"),
        ("ttl=1&ttl=2", "given twice"),
        ("socket_timeout=3", "unknown redis cache option 'socket_timeout'"),
    ]:
        with pytest.raises(CacheError, match=message):
            RedisOptions.from_query(query)


def test_the_command_line_lists_caches_and_refuses_an_unknown_one(tmp_path: Path, fresh_plugins: None) -> None:
    runner = CliRunner()
    listed = runner.invoke(main, ["caches"])
    assert listed.exit_code == 0 and "redis" in listed.output and "local" in listed.output
    refused = runner.invoke(main, ["generate", "--sample", "1", "--out", str(tmp_path), "--cache", "ftp://x"])
    assert refused.exit_code == 2
    assert "error: --cache: unknown report cache 'ftp://x'" in refused.output
    assert not (tmp_path / "index.sqlite").exists()
    hidden = runner.invoke(main, ["generate", "--sample", "1", "--out", str(tmp_path), "--cache", "mc://:hunter2@h:1"])
    assert hidden.exit_code == 2 and "'mc://:***@h:1'" in hidden.output and "hunter2" not in hidden.output


SECRET = "s3cr#t?/@x"
"""A password holding what a URL parser splits at (``#``, ``?``, ``/``) and an ``@``."""


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:hunter2@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
        ("redis://user:hunter2@host:6379/0?ttl=5", "redis://user:***@host:6379/0?ttl=5"),
        ("redis://:p@ss@host/0", "redis://:***@host/0"),  # the last '@' ends the password
        ("redis://:p#w?d@127.0.0.1:6393/0", "redis://***@127.0.0.1:6393/0"),
        ("redis://:pa?ss3cret@127.0.0.1:6399/0", "redis://***@127.0.0.1:6399/0"),
        ("redis://:pa/ss@host/0", "redis://***@host/0"),
        (f"redis://:{SECRET}@[::1/0", "redis://***@[::1/0"),
        ("local://u:s3cret@x", "local://u:***@x"),
        ("mc:u:s3cret@h", "mc:u:***@h"),
        ("redis://user@host/0", "redis://user@host/0"),  # a user name alone is no secret
        ("redis://host:6379/0?prefix=a", "redis://host:6379/0?prefix=a"),
        ("local", "local"),
    ],
)
def test_a_cache_url_is_shown_without_its_password(url: str, shown: str) -> None:
    assert shown_url(url) == shown


def test_redis_options_from_the_url_query_take_what_their_messages_say() -> None:
    assert RedisOptions.from_query("max_bytes=1TiB").max_bytes == 1 << 40
    assert RedisOptions.from_query("max_bytes=1tb").max_bytes == 10**12
    with pytest.raises(CacheError, match="from 1KiB to 1TiB, got '2TiB'"):
        RedisOptions.from_query("max_bytes=2TiB")
    for query in ("ttl=²", "ttl=٣", "max_bytes=²KiB"):  # str.isdigit and \d take them; int() does not, or should not
        with pytest.raises(CacheError, match="must be"):
            RedisOptions.from_query(query)


def test_the_local_cache_refuses_an_address_without_showing_its_password(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["generate", "--sample", "1", "--out", str(tmp_path), "--cache", "local://u:s3cret@x"]
    )
    assert result.exit_code == 2
    assert "use 'local', not 'local://u:***@x'" in result.output and "s3cret" not in result.output
