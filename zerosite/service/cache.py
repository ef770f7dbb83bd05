"""Where a report cache plugs into the service (``--cache``); the default is the store itself."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from zerosite.service.config import ConfigError

__all__ = ["KNOWN_CACHES", "ReportCache", "StoreCache", "open_cache"]


@runtime_checkable
class ReportCache(Protocol):
    """A cache of made reports, keyed by the content hash the engine computes for resume.

    The service opens one per process (:func:`open_cache`) and closes it when it stops; it counts a
    report it did not make again (unchanged input) as a hit, and one it made as a miss.
    """

    name: str

    def describe(self) -> str:
        """One line for the log and ``/readyz``: the backend and where it keeps reports."""
        ...

    def close(self) -> None:
        """Release connections; the service calls it once, when it stops."""
        ...


class StoreCache:
    """No cache of its own: a report whose inputs are unchanged is found in the store's index and files
    (the engine's resume), so a repeated request is answered without making it again."""

    name = "local"

    def describe(self) -> str:
        return "local: the store's own files and index"

    def close(self) -> None:
        pass


KNOWN_CACHES = ("local",)


def open_cache(spec: str | None) -> ReportCache:
    """The cache ``--cache`` names: ``None`` or ``local`` is :class:`StoreCache`.

    :raises ConfigError: a backend this installation does not have.
    """
    if spec is None or spec == "local":
        return StoreCache()
    scheme = spec.partition(":")[0] or spec
    raise ConfigError(f"--cache {spec!r}: no cache backend {scheme!r} here; known: {', '.join(KNOWN_CACHES)}")
