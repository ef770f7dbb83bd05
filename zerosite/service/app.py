"""The ASGI app factory: ``create_app()`` (for ``uvicorn --factory``) and what it starts and stops."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers, MutableHeaders
from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from zerosite import __version__
from zerosite.caches import open_cache
from zerosite.engine import EngineError, ReportOutcome
from zerosite.plugins import get_cache_backends
from zerosite.service.config import LIMITS, ConfigError, ServiceConfig
from zerosite.service.errors import install_error_handlers
from zerosite.service.jobs import ReportQueue
from zerosite.service.metrics import ServiceMetrics
from zerosite.service.response_bodies import ResponseBodyCache, answer_from_memory
from zerosite.service.routes import router
from zerosite.service.state import Service
from zerosite.store import StoreError, recent_reports
from zerosite.types import CacheContext, CacheError, PluginError, ReportCache

__all__ = ["create_app", "open_report_cache"]

log = logging.getLogger("zerosite.service")

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

DESCRIPTION = """ZeroSite as a service: one project's reports made on request, batches in the background, full-text
search of the index, live metrics. The CPU work runs on a warm runner (thread, process or async strategy), never on
the event loop. Write endpoints ask for a bearer token when the server has one."""


def _log_beside_uvicorn() -> None:
    """Under ``uvicorn --factory``, which set up its own logging and not zerosite's, the service's lines (``workers
    ready``, batches ending) go to uvicorn's handler at its level, as ``zerosite serve`` logs them: they went
    nowhere (warnings alone reached standard error, bare). Logging set up otherwise is left as it is."""
    ours, uvicorns = logging.getLogger("zerosite"), logging.getLogger("uvicorn")
    if ours.handlers or not uvicorns.handlers or logging.getLogger().handlers:
        return
    for handler in uvicorns.handlers:
        ours.addHandler(handler)
    ours.setLevel(uvicorns.getEffectiveLevel())


def create_app(config: ServiceConfig | None = None) -> FastAPI:
    """The app for ``config``, or for the ``ZEROSITE_*`` environment variables (``ServiceConfig.from_env``).

    The plan (modules, strategy, plugins) is checked here, so a bad setting fails before the server listens;
    the workers start and warm up in the background once the server runs (``/readyz`` says when).

    :raises ConfigError: a setting the service cannot start with, named.
    """
    config = config or ServiceConfig.from_env()
    _log_beside_uvicorn()
    try:
        config.out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(f"cannot make the output folder {config.out}: {error}") from None
    _check_index(config)
    cache = open_report_cache(config)
    queue_box: list[ReportQueue] = []
    metrics = ServiceMetrics(
        depth=lambda: queue_box[0].depth() if queue_box else 0,
        ready=lambda: bool(queue_box) and queue_box[0].ready.is_set(),
        cache=cache,
    )
    bodies = ResponseBodyCache(config.out, LIMITS.response_body_cache_bytes, config.db_path)

    def on_report(outcome: ReportOutcome) -> None:
        metrics.record(outcome)
        if outcome.status == "failed":
            bodies.forget(outcome.project_id, outcome.module)  # its file, if one is left, is from another input

    try:
        queue = ReportQueue(config, cache, on_report)
    except (EngineError, PluginError) as error:
        cache.close()
        raise ConfigError(str(error)) from None
    except ConfigError:  # the batch book cannot be opened
        cache.close()
        raise
    queue_box.append(queue)
    metrics.expect_reports(queue.default.reports)
    service = Service(config, queue, metrics, bodies, cache)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        queue.start()
        restore = _chain_stop_signals(queue.stopping.set)
        log.info("serving %s (index %s); report cache: %s", config.out, config.db_path, cache.url)
        try:
            yield
        finally:
            await run_in_threadpool(queue.stop, config.request_timeout_s + 5)
            metrics.close()
            bodies.close()
            restore()

    # /docs and /redoc from the Swagger UI and ReDoc that fastapi-offline packages, not from a CDN: they work on a
    # closed network (its static files under /static-offline-docs).
    app = FastAPIOffline(title="ZeroSite", version=__version__, description=DESCRIPTION, lifespan=lifespan)
    for route in app.routes:
        if isinstance(route, Mount):  # the docs' static files: counted under the mount's path, not as unmatched
            route.app = _Labelled(route.app, route)
    app.state.service = service
    install_error_handlers(app)
    app.include_router(router)
    app.add_middleware(_ReportsFromMemory, bodies=bodies)
    app.add_middleware(_HeadAsGet)
    app.add_middleware(_Instrumented, metrics=metrics)
    return app


def _check_index(config: ServiceConfig) -> None:
    """An index already there must be one this server can read: otherwise it would answer ready and then fail every
    request that makes or finds a report (a 500 each time).

    :raises ConfigError: the index exists and is not one (corrupt, not SQLite, unreadable), named with the cause.
    """
    if not config.db_path.exists():
        return  # made with the first report
    try:
        recent_reports(config.db_path, 1)
    except StoreError as error:
        raise ConfigError(f"{error}; move it aside (the reports are remade) or serve another folder") from None


REPORT_ROUTE = "/v1/reports/{project_id}/{module}"
_REPORT_PREFIX = "/v1/reports/"


@dataclass(frozen=True)
class _Route:
    """What ``scope["route"]`` needs to be for :class:`_Instrumented`'s route label."""

    path: str


class _ReportsFromMemory:
    """``GET /v1/reports/{project_id}/{module}`` answered straight from memory when its body is there in the
    encoding asked for (or it is a 304): most of the service's requests under load, spared FastAPI's routing,
    dependency solving and exception layers (about half of a GET's CPU). Anything else goes on to the app, whose
    ``get_report`` answers the same way (``answer_from_memory``)."""

    route = _Route(REPORT_ROUTE)

    def __init__(self, app: ASGIApp, bodies: ResponseBodyCache) -> None:
        self.app = app
        self.bodies = bodies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" and scope["path"].startswith(_REPORT_PREFIX):
            project_id, _, module = scope["path"][len(_REPORT_PREFIX) :].partition("/")
            entry = self.bodies.fresh(project_id, module)  # only names a GET validated before are found
            if entry is not None:
                headers = Headers(scope=scope)
                answer = answer_from_memory(entry, headers.get("accept-encoding", ""), headers.get("if-none-match", ""))
                if answer is not None:
                    scope["route"] = self.route  # for the metrics' route label
                    raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in answer.headers.items()]
                    if answer.status == 200:
                        raw.append((b"content-length", str(len(answer.body)).encode("latin-1")))
                    await send({"type": "http.response.start", "status": answer.status, "headers": raw})
                    await send({"type": "http.response.body", "body": answer.body})
                    return
        await self.app(scope, receive, send)


class _HeadAsGet:
    """HEAD answered wherever GET is, with GET's status and headers and no body (FastAPI's routes answer only the
    methods they name). The answer ends with its headers, so that a stream (a batch's events) stops there."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return
        ended = False

        async def headers_only(message: Message) -> None:
            nonlocal ended
            if ended or message["type"] != "http.response.start":
                return
            ended = True
            await send(message)
            await send({"type": "http.response.body", "body": b"", "more_body": False})

        # A scope of its own: the server reads the request's (a HEAD's answer has no body, whatever its length says).
        as_get = {**scope, "method": "GET"}
        try:
            await self.app(as_get, receive, headers_only)
        finally:
            if "route" in as_get:  # for the metrics' route label, outside
                scope["route"] = as_get["route"]


def open_report_cache(config: ServiceConfig) -> ReportCache:
    """The report cache ``config.cache`` names (``local`` when none), a plugin of ``zerosite_register_caches``, as
    ``generate --cache`` opens it; one per server process. A backend that is down only warns (in the log).

    :raises ConfigError: an unknown backend, or a URL it cannot use.
    """
    context = CacheContext(config.out, config.db_path, warn=lambda message: log.warning("%s", message))
    try:
        return open_cache(config.cache, get_cache_backends(), context)
    except (CacheError, PluginError) as error:
        raise ConfigError(f"--cache: {error}") from None


def _chain_stop_signals(on_stop: Callable[[], None]) -> Callable[[], None]:
    """On SIGTERM or SIGINT, call ``on_stop`` (take no more work), then the handler the server installed
    (uvicorn's: stop accepting, finish the requests in flight). Returns what puts the handlers back."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous: dict[int, Any] = {}

    def handler(signum: int, frame: FrameType | None) -> None:
        on_stop()
        chained = previous.get(signum)
        if callable(chained):
            chained(signum, frame)
        elif chained == signal.SIG_DFL:  # no server of ours installed one: do what the signal would have done
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)

    for signum in STOP_SIGNALS:
        previous[signum] = signal.getsignal(signum)
        signal.signal(signum, handler)

    def restore() -> None:
        for signum, old in previous.items():
            if signal.getsignal(signum) is handler:
                signal.signal(signum, old)

    return restore


class _Labelled:
    """A mounted app whose requests :class:`_Instrumented` counts under the mount's path (``route`` label)."""

    def __init__(self, app: ASGIApp, mount: Mount) -> None:
        self.app = app
        self.mount = mount

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["route"] = self.mount
        await self.app(scope, receive, send)


class _Instrumented:
    """HTTP duration by route and status, requests in flight, and ``X-Content-Type-Options`` on every answer."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message).setdefault("X-Content-Type-Options", "nosniff")
            await send(message)

        self.metrics.request_started()
        try:
            await self.app(scope, receive, sending)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.request_ended(scope["method"], route, status, time.perf_counter() - started)
