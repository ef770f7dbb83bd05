"""Report caches: the interface a cache backend implements, how a backend registers, and its counters."""

from __future__ import annotations

import abc
import logging
import re
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Self

__all__ = [
    "DEFAULT_CACHE",
    "MAX_KEY_CHARS",
    "CacheBackend",
    "CacheContext",
    "CacheError",
    "CacheStats",
    "CacheUnavailable",
    "ReportCache",
]

DEFAULT_CACHE = "local"
"""The cache a batch uses when none is named: the report store's own files and index (``zerosite.caches``)."""

MAX_KEY_CHARS = 512
"""The longest key a cache accepts; the engine's keys are 64 hex digits (SHA-256)."""

_SCHEME = re.compile(r"[a-z][a-z0-9+.-]*")


class CacheError(Exception):
    """A cache that cannot be used as asked: unknown scheme, a bad option in its URL, a missing client library."""


class CacheUnavailable(Exception):
    """Raised by a backend's :meth:`ReportCache.load` or :meth:`ReportCache.save` when its service cannot be
    reached (connection refused, timeout, server gone); the cache then goes on without it for a while."""


def _warn(message: str) -> None:
    warnings.warn(f"zerosite: {message}", stacklevel=3)


@dataclass(frozen=True)
class CacheContext:
    """Where a cache is opened: the report store of the batch or service using it, and how to warn.

    :param out_dir: the output folder of the report store (``local`` reads its files).
    :param db_path: that store's SQLite index (``local`` looks keys up there).
    :param warn: called with one line when the cache becomes unavailable (once per outage).
    """

    out_dir: Path
    db_path: Path
    warn: Callable[[str], None] = _warn


@dataclass(frozen=True, slots=True)
class CacheStats:
    """What a cache did since it was opened. ``hits`` + ``misses`` counts every key looked up; while the
    backend is unavailable each lookup is a miss and nothing is stored. ``errors`` counts failed calls to the
    backend (each outage starts with one), ``puts`` the reports stored, ``too_big`` those refused for size."""

    hits: int = 0
    misses: int = 0
    puts: int = 0
    too_big: int = 0
    errors: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "hits": self.hits,
            "misses": self.misses,
            "puts": self.puts,
            "too_big": self.too_big,
            "errors": self.errors,
        }


class ReportCache(abc.ABC):
    """A cache of rendered reports: HTML as UTF-8 bytes, keyed by the report's content hash.

    The key is the hash the engine computes for resume (project input, module versions, templates, data
    source), so a key names exactly one report's HTML and an entry never goes stale: a changed input is a
    new key. Callers use :meth:`get`, :meth:`get_many`, :meth:`put`, :meth:`put_many`, :attr:`stats` and
    :meth:`close` (or ``with``); every method is thread-safe and none raises because the backend is down.

    A backend implements :meth:`load` and :meth:`save` and raises :class:`CacheUnavailable` from them when
    its service cannot be reached: the cache then warns once (``CacheContext.warn``), counts every lookup as
    a miss and stores nothing for ``retry_after_s`` seconds, then tries the service again.

    Keys are checked here (a ``str`` of 1 to :data:`MAX_KEY_CHARS` characters that UTF-8 can encode;
    ``ValueError`` otherwise); a backend must treat them as opaque data, never as patterns or commands.
    """

    keeps_copies: ClassVar[bool] = True
    """False when the cache is the report store itself (``local``): :meth:`put` stores nothing, and a batch
    neither looks reports up in it nor puts them (resume reads the same store already)."""
    retry_after_s: float = 30.0
    """How long an unavailable backend is left alone before it is tried again."""

    def __init__(self, url: str, warn: Callable[[str], None] = _warn) -> None:
        self.url = url
        """The cache's URL as it may be shown: no password."""
        self._warn = warn
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(CacheStats.__slots__, 0)
        self._failed_at: float | None = None

    # -- what a backend implements ----------------------------------------------------------------------------

    @abc.abstractmethod
    def load(self, keys: Sequence[str]) -> list[bytes | None]:
        """The stored HTML of each key, ``None`` where there is none; raise :class:`CacheUnavailable`
        when the service cannot be reached."""

    @abc.abstractmethod
    def save(self, items: Sequence[tuple[str, bytes]]) -> int:
        """Store each ``(key, html)``; return how many were stored (a backend may refuse a value for its
        size); raise :class:`CacheUnavailable` when the service cannot be reached."""

    def release(self) -> None:  # noqa: B027 - a backend without connections has nothing to release
        """Close the backend's connections (called once by :meth:`close`)."""

    # -- what callers use -------------------------------------------------------------------------------------

    def get(self, key: str) -> bytes | None:
        """The cached HTML of ``key``, or ``None``."""
        return self.get_many((key,))[0]

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """The cached HTML of each key (``None`` where missing), in one round trip where the backend can."""
        keys = [_checked_key(key) for key in keys]
        if not keys:
            return []
        found: list[bytes | None] = [None] * len(keys)
        if self._available():
            try:
                found = self._loaded(keys)
            except CacheUnavailable as error:
                found = [None] * len(keys)
                self.went_down(error)
            else:
                self._recovered()
        hits = sum(value is not None for value in found)
        self._count(hits=hits, misses=len(keys) - hits)
        return found

    def put(self, key: str, html: bytes) -> None:
        """Store the HTML of ``key``; nothing happens while the backend is unavailable."""
        self.put_many(((key, html),))

    def put_many(self, items: Iterable[tuple[str, bytes]]) -> None:
        """Store several reports, in one round trip where the backend can."""
        checked = [(_checked_key(key), _checked_value(html)) for key, html in items]
        if not checked or not self.keeps_copies or not self._available():
            return
        try:
            stored = self.save(checked)
        except CacheUnavailable as error:
            self.went_down(error)
            return
        self._recovered()
        self._count(puts=stored, too_big=len(checked) - stored)

    @property
    def stats(self) -> CacheStats:
        """The counters so far (a snapshot)."""
        with self._lock:
            return CacheStats(**self._counts)

    @property
    def available(self) -> bool:
        """False while the backend is left alone after failing."""
        with self._lock:
            return self._failed_at is None

    def probe(self) -> bool:
        """Whether the backend answers: :attr:`available`, but one left alone after failing whose time to be tried
        again has come is tried now (one lookup), so a backend that came back says so without waiting for a
        report to need it (``/readyz``)."""
        if self.available or not self._available():
            return self.available
        try:
            self._loaded([_PROBE_KEY])
        except CacheUnavailable as error:
            self.went_down(error)
            return False
        self._recovered()
        return True

    def close(self) -> None:
        """Release the backend's connections; the cache is not used afterwards."""
        self.release()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url}>"

    # -- internals ----------------------------------------------------------------------------------------------

    def _loaded(self, keys: list[str]) -> list[bytes | None]:
        found = list(self.load(keys))
        if len(found) != len(keys) or not all(value is None or isinstance(value, bytes) for value in found):
            raise CacheUnavailable(f"its load() answered {len(found)} values for {len(keys)} keys, not bytes or None")
        return found

    def _count(self, **deltas: int) -> None:
        with self._lock:
            for name, delta in deltas.items():
                self._counts[name] += delta

    def _available(self) -> bool:
        with self._lock:
            return self._failed_at is None or time.monotonic() >= self._failed_at + self.retry_after_s

    def went_down(self, error: CacheUnavailable) -> None:
        """The backend failed (in :meth:`load`, :meth:`save`, or a check when it was opened): warn once per
        outage, and leave it alone for ``retry_after_s`` seconds."""
        with self._lock:
            first = self._failed_at is None
            self._failed_at = time.monotonic()
            self._counts["errors"] += 1
        if first:
            self._warn(f"report cache {self.url} is unavailable ({error}); going on without it")

    def _recovered(self) -> None:
        with self._lock:
            was_down, self._failed_at = self._failed_at is not None, None
        if was_down:
            _log.info("report cache %s is available again", self.url)


_PROBE_KEY = "zerosite:probe"
"""A key no report has (theirs are input hashes): what :meth:`ReportCache.probe` looks up."""
_log = logging.getLogger(__name__)


def _checked_key(key: object) -> str:
    if not isinstance(key, str) or not 0 < len(key) <= MAX_KEY_CHARS:
        raise ValueError(f"a cache key is a str of 1 to {MAX_KEY_CHARS} characters, got {_short(key)}")
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"a cache key must be valid text, got {_short(key)}") from None
    return key


def _checked_value(html: object) -> bytes:
    if not isinstance(html, bytes):
        raise TypeError(f"a cached report is bytes (UTF-8 HTML), got {type(html).__name__}")
    return html


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:77]}..."


@dataclass(frozen=True)
class CacheBackend:
    """A kind of report cache, registered through ``zerosite_register_caches`` and chosen by URL scheme.

    :param name: the URL scheme that selects it (``redis`` for ``redis://host:6379/0``); ``local`` is the
        default. Lower-case letters, digits, ``+``, ``.``, ``-``.
    :param description: one line for ``zerosite caches``.
    :param open: ``open(url, context)`` returns a ready :class:`ReportCache`; it raises :class:`CacheError`
        for a URL it cannot use, and should not fail because the service is down (warn, go on uncached).
    """

    name: str
    description: str
    open: Callable[[str, CacheContext], ReportCache]

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _SCHEME.fullmatch(self.name):
            raise ValueError(f"a cache backend's name is a URL scheme (a-z, 0-9, +, ., -), got {self.name!r}")
        if not callable(self.open):
            raise TypeError(f"cache backend {self.name!r}: open must be callable")
