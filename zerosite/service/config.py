"""What a server process is told: ``zerosite serve``'s options, or ``ZEROSITE_*`` variables (``uvicorn --factory``)."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from zerosite.cores import capped_workers

__all__ = ["LIMITS", "ConfigError", "ServiceConfig", "ServiceLimits", "read_token_file"]

N = TypeVar("N", int, float)

log = logging.getLogger("zerosite.service")


class ConfigError(ValueError):
    """A setting the service cannot start with; the message names the option or variable."""


@dataclass(frozen=True)
class ServiceLimits:
    """Fixed bounds of the service."""

    max_report_body_bytes: int = 1_000_000
    """``POST /v1/reports``: one project; a larger body is refused with 413."""
    max_batch_body_bytes: int = 16_000_000
    """``POST /v1/batches``: about 12,000 projects."""
    max_search_text_chars: int = 500
    max_search_results: int = 100
    search_deadline_s: float = 1.0
    """A full-text query running longer is stopped (400)."""
    max_micro_batch_projects: int = 32
    """Waiting single-report requests made together in one pass of the engine."""
    batch_chunk_projects: int = 16
    """Projects of a batch handed to the engine at a time; between two, other work and a cancel get their turn."""
    response_body_cache_bytes: int = 64 << 20
    """``GET /v1/reports``'s response bodies (each report file and its compressed forms) kept in memory."""
    cache_control: str = "public, max-age=60"
    recent_reports_shown: int = 20
    store_idle_s: float = 0.2
    """A server process keeps the output folder's store open between passes, and closes it once idle this long
    (so that a ``zerosite generate`` into the folder can run), or after a pass when another server process on the
    folder waits for it (it touches ``OUT/.zerosite.waiting``)."""
    busy_retry_s: float = 0.02
    """How often a process waits and tries again for the output folder another process is writing to."""


LIMITS = ServiceLimits()


@dataclass(frozen=True)
class ServiceConfig:
    """Everything a server process needs; :meth:`from_env` and :meth:`to_env` carry it to ``uvicorn --workers``."""

    out: Path
    db: Path | None = None
    strategy: str = "process"
    workers: int = 2
    chunksize: int = 1
    cache: str | None = None
    """The report cache's URL (``--cache``: a ``zerosite_register_caches`` backend, e.g. ``redis://host:6379/0``);
    ``None`` or ``local``: the store's own files and index."""
    token: str | None = None
    """A bearer token that write endpoints require; ``None``: no token asked for."""
    queue_size: int = 64
    """Single-report requests waiting at once; beyond, 503 with ``Retry-After``."""
    batch_queue_size: int = 8
    """Batches queued or running at once in a process; beyond, 503."""
    request_timeout_s: float = 30.0
    """A ``POST /v1/reports`` not answered within this many seconds gets a 504."""
    report_timeout_s: float | None = None
    """Per-report time limit in the workers (``generate --timeout``)."""
    retry_after_s: int = 1

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ConfigError(f"workers must be >= 1, got {self.workers}")
        if self.strategy != "sequential":  # capped here, so that ``serve`` and ``uvicorn --factory`` both are
            object.__setattr__(self, "workers", _capped_workers(self.workers))
        if self.chunksize < 1:
            raise ConfigError(f"chunksize must be >= 1, got {self.chunksize}")
        if self.queue_size < 1:
            raise ConfigError(f"queue size must be >= 1, got {self.queue_size}")
        if self.batch_queue_size < 1:
            raise ConfigError(f"batch queue size must be >= 1, got {self.batch_queue_size}")
        for name in ("request_timeout_s", "report_timeout_s"):
            value = getattr(self, name)
            if value is not None and (not math.isfinite(value) or value <= 0):
                raise ConfigError(f"{name} must be a finite number of seconds > 0, got {value!r}")
        if self.token is not None and not self.token:
            raise ConfigError("the token is empty")
        if self.token is not None and not _is_visible_ascii(self.token):
            raise ConfigError(TOKEN_CHARACTERS)

    @property
    def db_path(self) -> Path:
        return self.db if self.db is not None else self.out / "index.sqlite"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> ServiceConfig:
        """The configuration from ``ZEROSITE_OUT`` (required), ``ZEROSITE_DB``, ``ZEROSITE_STRATEGY``,
        ``ZEROSITE_WORKERS``, ``ZEROSITE_CHUNKSIZE``, ``ZEROSITE_CACHE``, ``ZEROSITE_TOKEN`` or
        ``ZEROSITE_TOKEN_FILE``, ``ZEROSITE_QUEUE_SIZE``, ``ZEROSITE_BATCH_QUEUE_SIZE``,
        ``ZEROSITE_REQUEST_TIMEOUT`` and ``ZEROSITE_REPORT_TIMEOUT`` (seconds).

        :raises ConfigError: naming the variable.
        """
        out = environ.get("ZEROSITE_OUT")
        if not out:
            raise ConfigError("ZEROSITE_OUT is not set: the output folder the service writes reports to")
        token = token_from_env(environ)
        db = environ.get("ZEROSITE_DB")
        report_timeout = environ.get("ZEROSITE_REPORT_TIMEOUT")
        return cls(
            out=Path(out),
            db=Path(db) if db else None,
            strategy=environ.get("ZEROSITE_STRATEGY", cls.strategy),
            workers=_number(environ, "ZEROSITE_WORKERS", int, cls.workers),
            chunksize=_number(environ, "ZEROSITE_CHUNKSIZE", int, cls.chunksize),
            cache=environ.get("ZEROSITE_CACHE") or None,
            token=token,
            queue_size=_number(environ, "ZEROSITE_QUEUE_SIZE", int, cls.queue_size),
            batch_queue_size=_number(environ, "ZEROSITE_BATCH_QUEUE_SIZE", int, cls.batch_queue_size),
            request_timeout_s=_number(environ, "ZEROSITE_REQUEST_TIMEOUT", float, cls.request_timeout_s),
            report_timeout_s=_number(environ, "ZEROSITE_REPORT_TIMEOUT", float, 0.0) if report_timeout else None,
        )

    def to_env(self) -> dict[str, str]:
        """The ``ZEROSITE_*`` variables that :meth:`from_env` reads back into this configuration."""
        env = {
            "ZEROSITE_OUT": str(self.out),
            "ZEROSITE_STRATEGY": self.strategy,
            "ZEROSITE_WORKERS": str(self.workers),
            "ZEROSITE_CHUNKSIZE": str(self.chunksize),
            "ZEROSITE_QUEUE_SIZE": str(self.queue_size),
            "ZEROSITE_BATCH_QUEUE_SIZE": str(self.batch_queue_size),
            "ZEROSITE_REQUEST_TIMEOUT": repr(self.request_timeout_s),
        }
        if self.db is not None:
            env["ZEROSITE_DB"] = str(self.db)
        if self.cache is not None:
            env["ZEROSITE_CACHE"] = self.cache
        if self.token is not None:
            env["ZEROSITE_TOKEN"] = self.token
        if self.report_timeout_s is not None:
            env["ZEROSITE_REPORT_TIMEOUT"] = repr(self.report_timeout_s)
        return env


TOKEN_CHARACTERS = "the token must be visible ASCII characters only (no spaces, no accents)"
"""Why a token is refused: HTTP headers reach the app decoded as Latin-1, so a token with other characters could
never match the one a client sends."""


def _is_visible_ascii(text: str) -> bool:
    return all("!" <= character <= "~" for character in text)


def _capped_workers(workers: int) -> int:
    """``workers``, or the cap (:func:`zerosite.cores.capped_workers`), with a warning in the log when capped."""
    workers, why = capped_workers(workers)
    if why is not None:
        log.warning("workers: %s", why)
    return workers


def token_from_env(environ: Mapping[str, str] = os.environ) -> str | None:
    """The token in ``ZEROSITE_TOKEN``, else the one in the file ``ZEROSITE_TOKEN_FILE`` names, else none.

    :raises ConfigError: naming the variable: set but empty (``ZEROSITE_TOKEN=$(cat missing)`` in a unit file would
        otherwise serve every write endpoint open), or holding characters a token cannot have.
    """
    token = environ.get("ZEROSITE_TOKEN")
    if token is not None:
        if not token.strip():
            raise ConfigError("ZEROSITE_TOKEN is set but empty: give the token, or unset it to serve without one")
        if not _is_visible_ascii(token.strip()):
            raise ConfigError(f"ZEROSITE_TOKEN: {TOKEN_CHARACTERS}")
        return token.strip()
    token_file = environ.get("ZEROSITE_TOKEN_FILE")
    return read_token_file(Path(token_file)) if token_file else None


def read_token_file(path: Path) -> str:
    """The token in ``path`` (surrounding whitespace dropped).

    :raises ConfigError: the file cannot be read, holds no token, or holds characters a token cannot have.
    """
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read the token file {path}: {error}") from None
    if not token:
        raise ConfigError(f"the token file {path} is empty")
    if not _is_visible_ascii(token):
        raise ConfigError(f"the token file {path}: {TOKEN_CHARACTERS}")
    return token


def _number(environ: Mapping[str, str], name: str, kind: type[N], default: N) -> N:
    text = environ.get(name)
    if text is None or not text.strip():
        return default
    try:
        return kind(text)
    except ValueError:
        raise ConfigError(f"{name} must be {'an integer' if kind is int else 'a number'}, got {text!r}") from None
