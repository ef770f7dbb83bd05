"""Report caches, registered as plugins: ``local`` (the report store itself) and ``redis``; ``open_cache`` picks one."""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING
from urllib.parse import SplitResult, parse_qsl, urlsplit, urlunsplit

from zerosite import hookimpl
from zerosite.store import StoreError, WrittenReports
from zerosite.types import DEFAULT_CACHE, CacheBackend, CacheContext, CacheError, CacheUnavailable, ReportCache

if TYPE_CHECKING:
    import redis

__all__ = [
    "DEFAULT_CACHE",
    "LocalCache",
    "RedisCache",
    "RedisOptions",
    "open_cache",
    "zerosite_register_caches",
]

MAX_HTML_BYTES = 64 << 20
"""The most a cached value may expand to; a larger (or corrupt) value is a miss, never a memory bomb."""

_ZLIB = b"z"
"""The first byte of a value stored by :class:`RedisCache`: the rest is zlib-compressed UTF-8 HTML."""


def open_cache(url: str | None, backends: Mapping[str, CacheBackend], context: CacheContext) -> ReportCache:
    """The cache ``url`` names, opened: its scheme picks the backend (``local``, ``redis://host:6379/0``).

    :raises CacheError: no backend serves that scheme, or the backend cannot use the URL.
    """
    text = (url or DEFAULT_CACHE).strip()
    scheme = text.partition(":")[0].lower()  # read before any parsing: a backend parses its own URLs
    backend = backends.get(scheme)
    if backend is None:
        known = ", ".join(sorted(backends)) or "none"
        raise CacheError(f"unknown report cache {shown_url(text)!r}: no backend for {scheme!r} (known: {known})")
    return backend.open(text, context)


def shown_url(url: str) -> str:
    """``url`` fit to print, its password ``***``: the one way every message and counter shows a cache URL.

    The user information is found without a URL parser: it is everything between ``//`` and the URL's last ``@``
    (a password may hold ``@``). A parser ends it at the first ``/``, ``?`` or ``#``, so a password holding one
    of them came out as host, port, path or query, in clear. The user name (up to the first ``:``) is kept;
    where the user information holds ``/``, ``?`` or ``#`` (it cannot be told from a path or query then), all
    of it is hidden.
    """
    found = _userinfo(url)
    if found is None:
        return url
    head, userinfo, tail = found
    if _UNSAFE_IN_USERINFO.search(userinfo):
        return f"{head}***{tail}"
    user, colon, _ = userinfo.partition(":")
    return f"{head}{user}:***{tail}" if colon else url


_UNSAFE_IN_USERINFO = re.compile(r"[/?#]")
"""Characters a user name or password must percent-encode: a URL parser ends the user information at them."""


def _userinfo(url: str) -> tuple[str, str, str] | None:
    """``url`` cut into what precedes its user information (``scheme://``), the user information, and the rest
    from its last ``@`` on; None without ``scheme:`` and an ``@`` after it."""
    scheme, colon, after = url.partition(":")
    if not colon or "@" not in after:
        return None
    start = len(scheme) + 1 + (2 if after.startswith("//") else 0)
    end = url.rindex("@")
    return url[:start], url[start:end], url[end:]


def _split_url(url: str) -> SplitResult:
    """``url`` split into its parts, its port read; else a :class:`CacheError` naming what cannot be read."""
    found = _userinfo(url)
    if found is not None and _UNSAFE_IN_USERINFO.search(found[1]):
        raise CacheError(
            f"cannot read the cache URL {shown_url(url)!r}: the part before its last '@' holds '/', '?' or '#': "
            "percent-encode them in a user name or password (%2F, %3F, %23), or an '@' in the path or options (%40)"
        )
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises for a port that is not a number from 0 to 65535
    except ValueError as error:
        raise CacheError(f"cannot read the cache URL {shown_url(url)!r}: {_scrubbed(str(error), url)}") from None
    return parts


def _scrubbed(message: str, url: str) -> str:
    """A library's ``message`` about ``url`` with the URL's user information ``***``: parsers quote what they
    refuse (urllib a whole host and user information that NFKC normalization changes)."""
    found = _userinfo(url)
    return message.replace(found[1], "***") if found is not None and found[1] else message


# -- local: the report store is the cache ----------------------------------------------------------------------


class LocalCache(ReportCache):
    """The report store itself: a key is found when the index holds a written report of that input hash
    whose file is still there. Nothing is copied (``keeps_copies`` is False): every report the engine makes
    is in the store already."""

    keeps_copies = False

    def __init__(self, context: CacheContext) -> None:
        super().__init__(DEFAULT_CACHE, context.warn)
        self.reports = WrittenReports(context.out_dir, context.db_path)

    def load(self, keys: Sequence[str]) -> list[bytes | None]:
        try:
            return [self.reports.html_of(key) for key in keys]
        except StoreError as error:
            raise CacheUnavailable(str(error)) from error

    def save(self, items: Sequence[tuple[str, bytes]]) -> int:
        return 0

    def release(self) -> None:
        self.reports.close()


def _open_local(url: str, context: CacheContext) -> ReportCache:
    if url.lower() not in {"local", "local:", "local://"}:
        raise CacheError(f"the local cache takes no address or options: use 'local', not {shown_url(url)!r}")
    return LocalCache(context)


# -- redis --------------------------------------------------------------------------------------------------------

_SIZE = re.compile(r"([0-9]+)([kKmMgGtT]i?[bB]?|[bB])?")
_SIZE_UNITS = {
    **{"": 1, "b": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12},
    **{"ki": 1 << 10, "mi": 1 << 20, "gi": 1 << 30, "ti": 1 << 40},
}
_MAX_BYTES_RANGE = (1 << 10, 1 << 40)
"""``max_bytes`` from 1KiB to 1TiB."""


@dataclass(frozen=True)
class RedisOptions:
    """What a ``redis://`` URL's query may set: ``?ttl=86400&max_bytes=256MiB&timeout=1&prefix=zerosite:``."""

    ttl: int = 86_400
    """Seconds an entry lives (``ttl_s``); 0 keeps it until it is evicted for room."""
    max_bytes: int = 256 << 20
    """The most the cache's entries may take in Redis, compressed; the oldest are evicted to stay under it."""
    timeout: float = 1.0
    """Seconds to connect and for each reply (``timeout_s``); past it Redis counts as unavailable."""
    prefix: str = "zerosite:"
    """Every key the cache writes starts with it (several caches can share a Redis database)."""

    @classmethod
    def from_query(cls, query: str) -> RedisOptions:
        """The options a URL query sets; anything else in it is a :class:`CacheError` that names it."""
        given: dict[str, str] = {}
        for name, value in parse_qsl(query, keep_blank_values=True):
            if name not in {f.name for f in fields(cls)}:
                raise CacheError(f"unknown redis cache option {name!r}; known: ttl, max_bytes, timeout, prefix")
            if name in given:
                raise CacheError(f"redis cache option {name!r} is given twice")
            given[name] = value
        options = cls()
        ttl = given.get("ttl", str(options.ttl))
        if not _is_whole(ttl) or int(ttl) > 10 * 365 * 86_400:
            raise CacheError(f"ttl must be whole seconds from 0 (no expiry) to ten years, got {ttl!r}")
        max_bytes = _size(given.get("max_bytes", str(options.max_bytes)))
        timeout = given.get("timeout", str(options.timeout))
        try:
            timeout_s = float(timeout)
        except ValueError:
            timeout_s = -1.0
        if not 0 < timeout_s <= 60:  # also refuses nan and inf
            raise CacheError(f"timeout must be seconds above 0 and at most 60, got {timeout!r}")
        prefix = given.get("prefix", options.prefix)
        if not 0 < len(prefix) <= 100:
            raise CacheError(f"prefix must be 1 to 100 characters, got {prefix!r}")
        return cls(ttl=int(ttl), max_bytes=max_bytes, timeout=timeout_s, prefix=prefix)


def _size(text: str) -> int:
    match = _SIZE.fullmatch(text.strip())
    unit = (match[2] or "").lower().removesuffix("b") if match else ""
    if match is None or unit not in _SIZE_UNITS:
        raise CacheError(f"max_bytes must be a size such as 268435456, 256MiB, 500MB or 1TiB, got {text!r}")
    size = int(match[1]) * _SIZE_UNITS[unit]
    if not _MAX_BYTES_RANGE[0] <= size <= _MAX_BYTES_RANGE[1]:
        raise CacheError(f"max_bytes must be from 1KiB to 1TiB, got {text!r}")
    return size


def _is_whole(text: str) -> bool:
    """``text`` is a whole number in ASCII digits (``str.isdigit`` also takes ``²``, which ``int`` refuses)."""
    return text.isascii() and text.isdigit()


# Store one entry and evict the oldest entries while the cache holds more than max_bytes; atomic (one script).
# KEYS: the entry, the age order (zset), the sizes (hash), the total (int), the insertion counter.
# ARGV: the member (the caller's key), the value, ttl seconds (0: none), max_bytes, the entries' key prefix.
_PUT_SCRIPT = """
local size = string.len(ARGV[2])
local limit = tonumber(ARGV[4])
if size > limit then return 0 end
local old = redis.call('HGET', KEYS[3], ARGV[1])
if old then redis.call('DECRBY', KEYS[4], old) end
if tonumber(ARGV[3]) > 0 then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
else
  redis.call('SET', KEYS[1], ARGV[2])
end
redis.call('HSET', KEYS[3], ARGV[1], size)
redis.call('ZADD', KEYS[2], redis.call('INCR', KEYS[5]), ARGV[1])
local total = redis.call('INCRBY', KEYS[4], size)
while total > limit do
  local oldest = redis.call('ZPOPMIN', KEYS[2])
  if #oldest == 0 then break end
  local gone = redis.call('HGET', KEYS[3], oldest[1])
  redis.call('HDEL', KEYS[3], oldest[1])
  redis.call('DEL', ARGV[5] .. oldest[1])
  if gone then total = redis.call('DECRBY', KEYS[4], gone) end
end
return 1
"""


class RedisCache(ReportCache):
    """Reports in Redis, zlib-compressed, shared by every run and server that names the same database.

    Each entry is a string key ``PREFIX e:KEY`` with a TTL; beside them, ``PREFIX order`` (entries by age),
    ``PREFIX sizes`` and ``PREFIX bytes`` keep the total under ``max_bytes`` by evicting the oldest entries,
    inside one script so that concurrent writers agree. An entry that expired by TTL still counts until it is
    evicted, so the total is never under-counted. Keys are sent as data (never as patterns or commands).
    """

    def __init__(self, url: str, options: RedisOptions, client: redis.Redis, warn: Callable[[str], None]) -> None:
        super().__init__(shown_url(url), warn)
        self.options = options
        self.client = client
        prefix = options.prefix.encode("utf-8")
        self._entry_prefix = prefix + b"e:"
        self._order, self._sizes, self._total, self._counter = (
            prefix + name for name in (b"order", b"sizes", b"bytes", b"counter")
        )
        self._put = client.register_script(_PUT_SCRIPT)
        self._failure: type[Exception] = _redis_error()

    def _entry(self, key: str) -> bytes:
        return self._entry_prefix + key.encode("utf-8")

    def load(self, keys: Sequence[str]) -> list[bytes | None]:
        try:
            values = self.client.mget([self._entry(key) for key in keys])
        except self._failure as error:
            raise CacheUnavailable(_why(error)) from error
        return [_decompress(value) if isinstance(value, bytes) else None for value in values]

    def save(self, items: Sequence[tuple[str, bytes]]) -> int:
        ttl, limit = self.options.ttl, self.options.max_bytes
        packed = [(key, _ZLIB + zlib.compress(html, 6)) for key, html in items]
        fitting = [(key, value) for key, value in packed if len(value) <= limit]
        if not fitting:
            return 0
        keys = [self._order, self._sizes, self._total, self._counter]
        try:
            with self.client.pipeline(transaction=False) as pipe:
                for key, value in fitting:
                    member = key.encode("utf-8")
                    args: list[bytes | int] = [member, value, ttl, limit, self._entry_prefix]
                    self._put(keys=[self._entry(key), *keys], args=args, client=pipe)
                results = pipe.execute()
        except self._failure as error:
            raise CacheUnavailable(_why(error)) from error
        return sum(1 for result in results if result == 1)

    def release(self) -> None:
        self.client.close()


def _redis_error() -> type[Exception]:
    from redis import RedisError  # redis-py is optional (the redis extra): imported once a redis cache is opened

    return RedisError


def _why(error: Exception) -> str:
    text = str(error).strip() or type(error).__name__
    return text if len(text) <= 200 else f"{text[:197]}..."


def _decompress(value: bytes) -> bytes | None:
    """A stored value's HTML, or ``None`` for a value that is not one of ours, is corrupt or expands too far."""
    if not value.startswith(_ZLIB):
        return None
    inflater = zlib.decompressobj()
    try:
        html = inflater.decompress(memoryview(value)[1:], MAX_HTML_BYTES)
    except zlib.error:
        return None
    return html if inflater.eof and not inflater.unconsumed_tail else None


def _open_redis(url: str, context: CacheContext) -> ReportCache:
    try:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry
    except ImportError:
        raise CacheError("the redis cache needs redis-py: pip install 'zerosite[redis]'") from None
    parts = _split_url(url)
    database = parts.path.removeprefix("/")
    if database and not _is_whole(database):  # redis-py would quietly use database 0
        raise CacheError(
            f"the database in the cache URL {shown_url(url)!r} must be a number such as 0, got {database!r}"
        )
    options = RedisOptions.from_query(parts.query)
    try:
        client = redis.Redis.from_url(
            urlunsplit(parts._replace(query="")),
            socket_timeout=options.timeout,
            socket_connect_timeout=options.timeout,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
        )
    except (ValueError, TypeError) as error:
        raise CacheError(f"cannot use the cache URL {shown_url(url)!r}: {_scrubbed(str(error), url)}") from None
    cache = RedisCache(url, options, client, context.warn)
    try:
        client.ping()
    except redis.RedisError as error:  # Redis down at the start: one warning now, tried again later
        cache.went_down(CacheUnavailable(_why(error)))
    return cache


@hookimpl
def zerosite_register_caches(register: Callable[[CacheBackend], None]) -> None:
    """Register the built-in ``local`` and ``redis`` (and ``rediss``, over TLS) report caches."""
    register(
        CacheBackend(DEFAULT_CACHE, "The report store's own files and index (default); nothing copied.", _open_local)
    )
    register(
        CacheBackend(
            "redis",
            "Redis (redis-py): compressed reports shared by runs and servers; ?ttl=SECONDS&max_bytes=SIZE.",
            _open_redis,
        )
    )
    register(CacheBackend("rediss", "Redis over TLS (rediss://); the same options as redis.", _open_redis))
