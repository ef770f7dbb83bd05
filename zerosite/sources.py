"""Data sources: the plugin-provided fetch stage that fills in a project's inputs before it is computed."""

from __future__ import annotations

import functools
import json
import os
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from zerosite import hookimpl
from zerosite.project import (
    InvalidInput,
    Project,
    RepeatedKeys,
    json_object,
    parse_project,
    project_to_dict,
    validate_project,
)
from zerosite.types import DataSource, SourceSettings, describe_error, raised_at, show_traceback

# httpx and asyncio are imported by the code that uses them, not here: the default (embedded) source uses
# neither, and with httpx's command-line extras installed (rich, pygments) they were the largest imports of
# `zerosite generate` (bench/startup.py).
if TYPE_CHECKING:
    import asyncio

    import httpx

__all__ = [
    "CheckedSource",
    "DataSource",
    "EmbeddedSource",
    "FetchError",
    "HttpSource",
    "SourceError",
    "SourceSettings",
    "select_source",
    "zerosite_register_data_sources",
]


class SourceError(Exception):
    """A project's data could not be fetched; names the project, the URL and the cause.

    Picklable, so it crosses process-pool boundaries intact.
    """

    def __init__(self, project_id: str, url: str, cause: str, attempts: int = 1) -> None:
        self.project_id = project_id
        self.url = url
        self.cause = cause
        self.attempts = attempts
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        super().__init__(f"project {project_id!r}: cannot fetch {url}{tries}: {cause}")

    def __reduce__(self) -> tuple[Callable[..., SourceError], tuple[str, str, str, int]]:
        return (type(self), (self.project_id, self.url, self.cause, self.attempts))


class FetchError(Exception):
    """A data source's ``fetch`` raised, or returned what is not that project: the message names the source and
    what was wrong; ``fetch failed: <message>`` fails that project's reports."""


class CheckedSource(DataSource):
    """A plugin's data source whose every answer is checked before it is computed, as an input file's record is.

    ``fetch`` and ``afetch`` must return a :class:`Project` with the asked-for id that passes the checks and
    limits of :func:`~zerosite.project.parse_project`; anything else, or an exception other than a
    :class:`SourceError` (already worded, with its URL), becomes a :class:`FetchError` naming the source. The
    project returned unchanged (the ``embedded`` source) was checked when it was read and is not checked again,
    nor the fields of a source that ``validates_answers`` (the ``http`` source: its answers are parsed).
    """

    def __init__(self, source: DataSource) -> None:
        self.source = source
        self.name = source.name
        self.description = source.description
        self.settings = source.settings

    def open(self, settings: SourceSettings) -> None:
        self.settings = settings
        self.source.open(settings)

    def close(self) -> None:
        self.source.close()

    async def aclose(self) -> None:
        await self.source.aclose()

    def fetch(self, project: Project) -> Project:
        try:
            fetched = self.source.fetch(project)
        except Exception as error:
            raise self._failure(error) from error
        return self._checked(project, fetched)

    async def afetch(self, project: Project) -> Project:
        try:
            fetched = await self.source.afetch(project)
        except Exception as error:
            raise self._failure(error) from error
        return self._checked(project, fetched)

    def _failure(self, error: Exception) -> Exception:
        if isinstance(error, SourceError):
            return error
        if isinstance(error, InvalidInput):
            return self._invalid(error)
        failure = FetchError(f"data source {self.name!r} raised {describe_error(error)}{raised_at(error, self.source)}")
        show_traceback(error, str(failure))
        return failure

    def _invalid(self, error: InvalidInput) -> FetchError:
        return FetchError(f"data source {self.name!r} returned an invalid project: {'; '.join(error.errors)}")

    def _checked(self, project: Project, fetched: object) -> Project:
        """``fetched`` as a file's record would give it, or a :class:`FetchError` saying how it is not."""
        if fetched is project:
            return project
        if not isinstance(fetched, Project):
            raise FetchError(f"data source {self.name!r} returned {type(fetched).__name__}, not a Project")
        if fetched.id != project.id:
            raise FetchError(f"data source {self.name!r} returned project {fetched.id!r} for {project.id!r}")
        if self.source.validates_answers:
            return fetched
        try:
            return validate_project(fetched)
        except InvalidInput as invalid:
            raise self._invalid(invalid) from None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} of {self.source!r}>"


class EmbeddedSource(DataSource):
    """The projects file is the data: every project is returned exactly as given."""

    name = "embedded"
    description = "Use the projects file as it is; no network access."

    def fetch(self, project: Project) -> Project:
        return project


_INHERITED_CLIENTS: list[object] = []
"""Clients a forked child inherited: kept alive, never used, so their sockets are not finalized here."""


@functools.cache
def _httpx_errors() -> tuple[tuple[type[Exception], ...], type[Exception]]:
    """httpx's errors worth another attempt, and its base error (a failure, not retried); imports httpx."""
    import httpx

    return (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError), httpx.HTTPError


class HttpSource(DataSource):
    """GET ``{url}/projects/{id}``: the JSON object's fields override the project's, then are re-validated.

    Uses one ``httpx.Client`` per process (shared by all threads; a forked child makes its own)
    and one ``httpx.AsyncClient`` per event loop.
    """

    name = "http"
    description = "Fetch project fields from {url}/projects/{id} over HTTP, with timeouts and retries."
    validates_answers = True  # each answer goes through parse_project

    def __init__(self) -> None:
        self.settings = SourceSettings()
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._client: httpx.Client | None = None
        self._async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
            weakref.WeakKeyDictionary()
        )

    # -- lifecycle -------------------------------------------------------------------------

    def open(self, settings: SourceSettings) -> None:
        if not settings.url:
            raise ValueError("the http source needs SourceSettings(url=...)")
        _httpx_errors()  # httpx imported here, as the source is opened, not in the first fetch it would slow
        self._forget_if_forked()
        with self._lock:
            if settings != self.settings:
                self._close_sync_client()
            self.settings = settings

    def close(self) -> None:
        self._forget_if_forked()
        with self._lock:
            self._close_sync_client()

    async def aclose(self) -> None:
        import asyncio

        loop = asyncio.get_running_loop()
        with self._lock:
            client = self._async_clients.pop(loop, None)
        if client is not None:
            await client.aclose()

    def _close_sync_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

    def _forget_if_forked(self) -> None:
        # A forked child inherits the parent's clients, sockets and (maybe held) lock. It must not
        # use or close those connections (the parent still does), so it parks them and starts afresh.
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._lock = threading.Lock()
            _INHERITED_CLIENTS.extend([self._client, *self._async_clients.values()])
            self._client = None
            self._async_clients = weakref.WeakKeyDictionary()

    def __getstate__(self) -> dict[str, Any]:
        return {"settings": self.settings}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__()  # type: ignore[misc]
        self.settings = state["settings"]

    def _base_url(self) -> str:
        if not self.settings.url:
            raise RuntimeError("HttpSource is not open: call open(SourceSettings(url=...)) first")
        return self.settings.url.rstrip("/")

    def _sync_client(self) -> httpx.Client:
        import httpx

        self._forget_if_forked()
        client = self._client
        if client is None:
            with self._lock:
                if self._client is None:
                    self._client = httpx.Client(timeout=self.settings.timeout_s, headers=_PLAIN)
                client = self._client
        return client

    def _async_client(self) -> httpx.AsyncClient:
        import asyncio

        import httpx

        self._forget_if_forked()
        loop = asyncio.get_running_loop()
        with self._lock:
            client = self._async_clients.get(loop)
            if client is None:
                client = httpx.AsyncClient(timeout=self.settings.timeout_s, headers=_PLAIN)
                self._async_clients[loop] = client
        return client

    # -- fetching --------------------------------------------------------------------------

    def _url_for(self, project: Project) -> str:
        return f"{self._base_url()}/projects/{quote(project.id, safe='')}"

    def fetch(self, project: Project) -> Project:
        url = self._url_for(project)
        client = self._sync_client()
        retryable, failure = _httpx_errors()
        settings = self.settings
        deadline = time.monotonic() + settings.deadline_s
        for attempt in range(1, settings.retries + 2):
            if attempt > 1:
                time.sleep(self._pause(project, url, attempt, deadline))
            try:
                outcome: _Answer | str = self._get(client, project, url, attempt, deadline)
            except _BodyTooLarge as error:
                raise SourceError(project.id, url, str(error), attempt) from None
            except retryable as error:
                outcome = _describe(error)
            except failure as error:
                raise SourceError(project.id, url, _describe(error), attempt) from error
            done = self._settle(project, url, outcome, attempt)
            if done is not None:
                return done
        raise AssertionError("unreachable: the last attempt always settles")

    async def afetch(self, project: Project) -> Project:
        import asyncio

        url = self._url_for(project)
        client = self._async_client()
        retryable, failure = _httpx_errors()
        settings = self.settings
        deadline = time.monotonic() + settings.deadline_s
        for attempt in range(1, settings.retries + 2):
            if attempt > 1:
                await asyncio.sleep(self._pause(project, url, attempt, deadline))
            try:
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                    outcome: _Answer | str = await self._aget(client, project, url, attempt)
            except TimeoutError as error:
                if time.monotonic() < deadline:  # an httpx timeout of one read, not the deadline
                    outcome = _describe(error)
                else:
                    raise self._overdue(project, url, attempt) from None
            except _BodyTooLarge as error:
                raise SourceError(project.id, url, str(error), attempt) from None
            except retryable as error:
                outcome = _describe(error)
            except failure as error:
                raise SourceError(project.id, url, _describe(error), attempt) from error
            done = self._settle(project, url, outcome, attempt)
            if done is not None:
                return done
        raise AssertionError("unreachable: the last attempt always settles")

    def _pause(self, project: Project, url: str, attempt: int, deadline: float) -> float:
        """Seconds to wait before ``attempt``; raise when no time would be left for it."""
        pause = self.settings.backoff_before(attempt - 1)
        if time.monotonic() + pause >= deadline:
            raise self._overdue(project, url, attempt - 1)
        return pause

    def _overdue(self, project: Project, url: str, attempt: int) -> SourceError:
        deadline = self.settings.deadline_s
        return SourceError(project.id, url, f"no complete answer within {deadline:g} s (the fetch deadline)", attempt)

    def _get(self, client: httpx.Client, project: Project, url: str, attempt: int, deadline: float) -> _Answer:
        """One GET, its body streamed: stopped at ``max_body_bytes`` or at the deadline, between reads.

        Each read waits at most ``timeout_s``, and never longer than the time left when the attempt
        began; the deadline is checked after every chunk, so a fetch ends at most one read after it
        (``afetch`` cancels at the deadline exactly).
        """
        left = deadline - time.monotonic()
        if left <= 0:
            raise self._overdue(project, url, attempt)
        with client.stream("GET", url, timeout=min(self.settings.timeout_s, left)) as response:
            if response.status_code != 200:
                return _Answer.refused(response)
            body = _Body(self.settings.max_body_bytes, response.headers.get("content-length"))
            for chunk in response.iter_bytes():
                if time.monotonic() >= deadline:
                    raise self._overdue(project, url, attempt)
                body.add(chunk)
            return _Answer(response.status_code, response.reason_phrase, body.value())

    async def _aget(self, client: httpx.AsyncClient, project: Project, url: str, attempt: int) -> _Answer:
        """One GET, its body streamed and stopped at ``max_body_bytes`` (the caller holds the deadline)."""
        async with client.stream("GET", url) as response:
            if response.status_code != 200:
                return _Answer.refused(response)
            body = _Body(self.settings.max_body_bytes, response.headers.get("content-length"))
            async for chunk in response.aiter_bytes():
                body.add(chunk)
            return _Answer(response.status_code, response.reason_phrase, body.value())

    def _settle(self, project: Project, url: str, outcome: _Answer | str, attempt: int) -> Project | None:
        """The merged project, ``None`` to retry, or raise: shared by ``fetch`` and ``afetch``."""
        last = attempt > self.settings.retries
        if isinstance(outcome, str):
            if last:
                raise SourceError(project.id, url, outcome, attempt)
            return None
        status = outcome.status
        if status >= 500:
            if last:
                raise SourceError(project.id, url, f"HTTP {status} {outcome.reason}", attempt)
            return None
        if status != 200:
            raise SourceError(project.id, url, f"HTTP {status} {outcome.reason}", attempt)
        return _merge(project, url, outcome.body, attempt)


@dataclass(frozen=True, slots=True)
class _Answer:
    """What one attempt got: status, reason and (for 200) the whole body."""

    status: int
    reason: str
    body: bytes

    @classmethod
    def refused(cls, response: httpx.Response) -> _Answer:
        """An answer other than 200, without its body; a redirect says where to (it is not followed: a source's
        answers come from the URL it was given, and a redirect failed as a bare ``HTTP 302 Found``)."""
        reason = response.reason_phrase
        location = response.headers.get("location")
        if response.is_redirect and location:
            reason += f" (redirected to {location[:REDIRECT_SHOWN]}; not followed: give the source's new address)"
        return cls(response.status_code, reason, b"")


class _BodyTooLarge(Exception):
    """A response body over ``SourceSettings.max_body_bytes``: the fetch fails, it is not retried."""


class _Body:
    """A response body read chunk by chunk, refused as soon as it passes the limit (declared or actual)."""

    def __init__(self, limit: int, declared: str | None) -> None:
        self.limit = limit
        self.chunks: list[bytes] = []
        self.size = 0
        if declared is not None and declared.strip().isdigit() and int(declared) > limit:
            raise _BodyTooLarge(f"the response body of {int(declared):,} bytes is over the limit of {limit:,} bytes")

    def add(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.limit:
            raise _BodyTooLarge(f"the response body is over the limit of {self.limit:,} bytes")
        self.chunks.append(chunk)

    def value(self) -> bytes:
        return b"".join(self.chunks)


def _describe(error: Exception) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


REDIRECT_SHOWN = 200
"""The most characters of a redirect's target an error shows (it is the server's text)."""

_PLAIN = {"Accept-Encoding": "identity"}
"""A body as sent, never compressed: the ``max_body_bytes`` limit counts what is read (a 1 MB gzip answer of 1 GiB was
decompressed a read at a time, 200 MB of memory, before the limit refused it)."""


def _merge(project: Project, url: str, body: bytes, attempt: int) -> Project:
    try:
        text = body.decode("utf-8-sig")  # JSON is UTF-8; json.loads guesses otherwise (b"\x00\xff": "utf-16-be")
    except UnicodeDecodeError as error:
        why = f"response is not UTF-8 (byte 0x{body[error.start]:02x} at position {error.start})"
        raise SourceError(project.id, url, why, attempt) from None
    try:
        fields = json.loads(text, object_pairs_hook=json_object)  # a key given twice named, as in the input
    except RecursionError:
        raise SourceError(project.id, url, "response is not valid JSON: nested too deeply", attempt) from None
    except ValueError as error:  # syntax, encoding, an integer of more digits than Python converts
        raise SourceError(project.id, url, f"response is not valid JSON: {error}", attempt) from None
    if not isinstance(fields, dict):
        kind = type(fields).__name__
        raise SourceError(project.id, url, f"response must be a JSON object, got {kind}", attempt)
    merged = {**project_to_dict(project), **fields}
    if isinstance(fields, RepeatedKeys):
        merged = RepeatedKeys(merged)
        merged.repeated = fields.repeated
    fetched = parse_project(merged, where=url)
    if fetched.id != project.id:
        raise InvalidInput([f"{url}.id: expected {project.id!r}, got {fetched.id!r}"])
    return fetched


def select_source(sources: Mapping[str, DataSource], url: str | None, name: str | None = None) -> DataSource:
    """The source called ``name``; by default ``http`` when a URL is given, else ``embedded``.

    :raises LookupError: no source of that name is registered.
    """
    name = name or ("http" if url else "embedded")
    try:
        return sources[name]
    except KeyError:
        known = ", ".join(sorted(sources)) or "none"
        raise LookupError(f"no data source named {name!r} is registered (available: {known})") from None


@hookimpl
def zerosite_register_data_sources(register: Callable[[DataSource], None]) -> None:
    """Register the built-in ``embedded`` and ``http`` sources."""
    register(EmbeddedSource())
    register(HttpSource())
