"""The endpoints: reports, batches and their events, search, metrics and stats, health, and the page."""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import dataclasses
import json
import logging
import os
import re
import secrets
import sqlite3
import time
from collections.abc import AsyncIterator, Sequence
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from zerosite.engine import EngineError, ReportOutcome
from zerosite.project import Project
from zerosite.service.batches import FINAL_STATES, BatchView
from zerosite.service.config import LIMITS
from zerosite.service.errors import ApiError, internal_error, without_paths
from zerosite.service.inputs import parse_many, parse_one, read_body
from zerosite.service.jobs import GivenUp, Selection, Unavailable
from zerosite.service.metrics import CONTENT_TYPE
from zerosite.service.page import PageRow, render_page, report_url
from zerosite.service.response_bodies import answer_from_memory, choose_encoding
from zerosite.service.schemas import (
    BATCH_BODY,
    PROJECT_BODY,
    BatchAnswer,
    ReportsAnswer,
    SearchAnswer,
    StatsAnswer,
    error_responses,
)
from zerosite.service.search import BadQuery, search
from zerosite.service.state import Service, service_of
from zerosite.store import StoreError, recent_reports

__all__ = ["router"]

router = APIRouter()

log = logging.getLogger("zerosite.service")

EVENTS_POLL_S = 0.2
EVENTS_KEEPALIVE_S = 15.0
_WORD = re.compile(r"[^\W_]")

ModulesQuery = Annotated[
    list[str] | None,
    Query(
        description="Only these modules, comma-separated (`M2,M5`) or repeated (`modules=M2&modules=M5`); what they "
        "require is computed too."
    ),
]


def _unavailable(error: Unavailable) -> ApiError:
    return ApiError(503, str(error), headers={"Retry-After": str(error.retry_after_s)})


def _selection(service: Service, modules: list[str] | None) -> Selection:
    names = [name.strip() for value in modules or () for name in value.split(",") if name.strip()] or None
    if modules is not None and not names:
        raise ApiError(422, "invalid input: 1 problem; nothing was made", ["query.modules: no module named"])
    try:
        return service.queue.selection(names)
    except EngineError as error:
        raise ApiError(422, "invalid input: 1 problem; nothing was made", [f"query.modules: {error}"]) from None


# -- reports --------------------------------------------------------------------------------------------------


@router.post(
    "/v1/reports",
    summary="Make one project's reports",
    description="One project (the CLI's input format) → its reports made, written and indexed. A report whose "
    "inputs are unchanged since it was made is not made again (`cached: true`): found in the store, or in the report "
    "cache that `--cache` names (`from_cache: true`: written here from it). Bodies over 1 MB: 413.",
    response_model=ReportsAnswer,
    responses=error_responses(401, 408, 413, 422, 500, 503, 504),
    openapi_extra=PROJECT_BODY,
    tags=["reports"],
)
async def make_reports(request: Request, modules: ModulesQuery = None) -> JSONResponse:
    started = time.monotonic()
    service = service_of(request)
    service.authorize(request)
    deadline = started + service.config.request_timeout_s
    body = await _read_body(service, request, LIMITS.max_report_body_bytes, deadline)
    project = await run_in_threadpool(parse_one, body)  # validation is CPU work: never on the event loop
    selection = _selection(service, modules)
    try:
        future = service.queue.submit(project, selection, deadline)
    except Unavailable as error:
        raise _unavailable(error) from None
    outcomes = await _answer_within(future, deadline, service, project)
    reports = await run_in_threadpool(_describe, service, outcomes)
    failed = [r for r in reports if r["status"] == "failed"]
    answer: dict[str, object] = {
        "project_id": project.id,
        "reports": reports,
        "elapsed_ms": round((time.monotonic() - started) * 1000, 3),
    }
    if failed:
        for outcome in outcomes:
            if outcome.status == "failed":  # the whole error here; the answer names no server path
                log.error("project %s: report %s failed: %s", project.id, outcome.module, outcome.error)
        answer["error"] = f"{len(failed)} of {len(reports)} reports failed; each says why"
    return JSONResponse(answer, status_code=500 if failed else 200)


async def _read_body(service: Service, request: Request, limit: int, deadline: float) -> bytes:
    return await read_body(request, limit, deadline, service.config.request_timeout_s, service.queue.stopping)


async def _answer_within(
    future: cf.Future[tuple[ReportOutcome, ...]], deadline: float, service: Service, project: Project
) -> tuple[ReportOutcome, ...]:
    waiting = asyncio.wrap_future(future)
    waiting.add_done_callback(lambda f: f.cancelled() or f.exception())  # read, so never "never retrieved"
    limit = service.config.request_timeout_s
    try:
        return await asyncio.wait_for(asyncio.shield(waiting), timeout=max(0.0, deadline - time.monotonic()))
    except GivenUp as given_up:
        raise ApiError(504, f"not made within the time limit ({limit:g} s): {given_up}; nothing was made") from None
    except TimeoutError:
        if future.done() and not future.cancelled() and isinstance(future.exception(), GivenUp):
            message = f"not made within the time limit ({limit:g} s): {future.exception()}; nothing was made"
        elif future.cancel():
            message = f"not started within the time limit ({limit:g} s); withdrawn, nothing was made"
        else:
            message = (
                f"not finished within the time limit ({limit:g} s); it goes on, and its reports will be at "
                f"{report_url(project.id, 'MODULE')} once made"
            )
        raise ApiError(504, message) from None
    except Unavailable as error:
        raise _unavailable(error) from None
    except (StoreError, OSError, RuntimeError) as error:
        raise internal_error("the reports could not be made", error) from None


def _describe(service: Service, outcomes: Sequence[ReportOutcome]) -> list[dict[str, object]]:
    """Each report as the answer shows it, with the SHA-256 (its ETag) and size of the file this request's pass
    wrote or found: a later pass may have replaced the file since."""
    answer: list[dict[str, object]] = []
    for outcome in outcomes:
        sha256, size_bytes = _made(service, outcome)
        timings = outcome.timings
        total_ns = timings.fetch_ns + timings.compute_ns + timings.render_ns + timings.write_ns
        status = "cached" if outcome.status == "skipped" or outcome.from_cache else outcome.status
        answer.append(
            {
                "module": outcome.module,
                "status": status,
                "cached": status == "cached",
                "from_cache": outcome.from_cache,
                "sha256": sha256,
                "url": report_url(outcome.project_id, outcome.module) if sha256 else None,
                "size_bytes": size_bytes,
                "ms": round(total_ns / 1e6, 3),
                "error": outcome.error and without_paths(outcome.error, (service.config.out,)),
            }
        )
    return answer


def _made(service: Service, outcome: ReportOutcome) -> tuple[str | None, int]:
    """The SHA-256 and size of the report file ``outcome`` stands for; ``(None, 0)`` when there is none."""
    if outcome.status == "failed":
        return None, 0
    if outcome.sha256 is not None:  # written or skipped: the file this request's batch wrote or found
        return outcome.sha256, outcome.size_bytes
    entry = service.bodies.get(outcome.project_id, outcome.module)  # an engine that does not say: the file now
    return (entry.sha256, len(entry.data)) if entry else (None, 0)


@router.get(
    "/v1/reports/{project_id}/{module}",
    summary="One report's HTML",
    description="With an ETag (the file's SHA-256; weak when compressed) and 304 on If-None-Match, gzip or "
    "brotli when accepted, and Cache-Control.",
    response_class=HTMLResponse,
    responses={200: {"content": {"text/html": {}}}, 304: {"description": "Not modified."}, **error_responses(404)},
    tags=["reports"],
)
async def get_report(project_id: str, module: str, request: Request) -> Response:
    # Answered from memory by app._ReportsFromMemory before it reaches here when the body is there already.
    service = service_of(request)
    entry = service.bodies.fresh(project_id, module) or await run_in_threadpool(service.bodies.get, project_id, module)
    if entry is None:
        raise ApiError(404, f"no report {module!r} for project {project_id!r}")
    accept, tags = request.headers.get("accept-encoding", ""), request.headers.get("if-none-match", "")
    answer = answer_from_memory(entry, accept, tags)
    if answer is None:  # compressed once, off the event loop; kept with the entry from then on
        await run_in_threadpool(service.bodies.encoded, entry, choose_encoding(accept))
        answer = answer_from_memory(entry, accept, tags)
        assert answer is not None
    return Response(answer.body, status_code=answer.status, headers=answer.headers)


# -- batches --------------------------------------------------------------------------------------------------


def _batch_json(view: BatchView) -> dict[str, object]:
    return {**view.as_dict(), "url": f"/v1/batches/{view.id}", "events": f"/v1/batches/{view.id}/events"}


@router.post(
    "/v1/batches",
    status_code=202,
    summary="Start a batch",
    description='A JSON list of projects, `{"projects": [...]}`, or JSON Lines. Every project is validated '
    "first: one invalid project is a 422 and nothing is made. 202 with the batch's id; it runs in the "
    f"background, a chunk of projects at a time. Bodies over {LIMITS.max_batch_body_bytes // 1_000_000} MB: 413.",
    response_model=BatchAnswer,
    responses=error_responses(401, 408, 413, 422, 503),
    openapi_extra=BATCH_BODY,
    tags=["batches"],
)
async def start_batch(request: Request, modules: ModulesQuery = None) -> JSONResponse:
    service = service_of(request)
    service.authorize(request)
    deadline = time.monotonic() + service.config.request_timeout_s
    body = await _read_body(service, request, LIMITS.max_batch_body_bytes, deadline)
    projects = await run_in_threadpool(parse_many, body)
    selection = _selection(service, modules)
    try:
        view = await run_in_threadpool(service.queue.submit_batch, projects, selection)
    except Unavailable as error:
        raise _unavailable(error) from None
    return JSONResponse(_batch_json(view), status_code=202, headers={"Location": f"/v1/batches/{view.id}"})


def _view(service: Service, batch_id: str) -> BatchView | None:
    try:
        return service.queue.view(batch_id)
    except (sqlite3.Error, OSError) as error:
        raise internal_error("the batch book cannot be read", error) from None


async def _batch(service: Service, batch_id: str) -> BatchView:
    view = await run_in_threadpool(_view, service, batch_id)
    if view is None:
        raise ApiError(404, f"no batch {batch_id!r}")
    return view


@router.get(
    "/v1/batches/{batch_id}",
    summary="A batch's progress",
    response_model=BatchAnswer,
    responses=error_responses(404),
    tags=["batches"],
)
async def get_batch(batch_id: str, request: Request) -> JSONResponse:
    return JSONResponse(_batch_json(await _batch(service_of(request), batch_id)))


@router.get(
    "/v1/batches/{batch_id}/events",
    summary="A batch's progress as server-sent events",
    description="`progress` events (the batch as `GET /v1/batches/{id}` shows it) whenever it changes, then one "
    "`end` event when it has finished; a comment every 15 s keeps the connection open.",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}, **error_responses(404)},
    tags=["batches"],
)
async def batch_events(batch_id: str, request: Request) -> StreamingResponse:
    service = service_of(request)
    await _batch(service, batch_id)

    async def events() -> AsyncIterator[str]:
        last: tuple[object, ...] | None = None
        quiet_since = time.monotonic()
        number = 0
        while True:
            try:
                view = await run_in_threadpool(_view, service, batch_id)
            except ApiError:  # the batch book cannot be read now (logged): asked again at the next poll
                await asyncio.sleep(EVENTS_POLL_S)
                continue
            if view is None:
                return
            data = json.dumps(_batch_json(view))
            key = (view.state, view.done, view.failed, view.cached, view.cancel_requested)
            if key != last:
                last, quiet_since, number = key, time.monotonic(), number + 1
                yield f"id: {number}\nevent: progress\ndata: {data}\n\n"
            if view.state in FINAL_STATES:
                yield f"event: end\ndata: {data}\n\n"
                return
            if service.queue.stopping.is_set():
                yield f"event: end\ndata: {json.dumps({'error': 'the server is stopping', 'batch': batch_id})}\n\n"
                return
            if time.monotonic() - quiet_since > EVENTS_KEEPALIVE_S:
                quiet_since = time.monotonic()
                yield ": still running\n\n"
            await asyncio.sleep(EVENTS_POLL_S)

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(events(), media_type="text/event-stream", headers=headers)


@router.delete(
    "/v1/batches/{batch_id}",
    status_code=202,
    summary="Cancel a batch",
    description="No project of it starts after this; those in flight finish and are then discarded whole "
    "(files and index rows), as Ctrl-C discards them; those made before stay. The batch ends `cancelled`.",
    response_model=BatchAnswer,
    responses=error_responses(401, 404, 409),
    tags=["batches"],
)
async def cancel_batch(batch_id: str, request: Request) -> JSONResponse:
    service = service_of(request)
    service.authorize(request)
    try:
        view, finished = await run_in_threadpool(service.queue.cancel_batch, batch_id)
    except (sqlite3.Error, OSError) as error:
        raise internal_error("the batch book cannot be read", error) from None
    if view is None:
        raise ApiError(404, f"no batch {batch_id!r}")
    if finished:
        raise ApiError(409, f"batch {batch_id!r} has finished already ({view.state})", batch=_batch_json(view))
    return JSONResponse(_batch_json(view), status_code=202)


# -- search ---------------------------------------------------------------------------------------------------


@router.get(
    "/v1/search",
    summary="Full-text search of the report index",
    description="`q`: words matched as prefixes of the address or module, whatever characters they hold "
    "(quotes, `*`, `OR`, brackets are plain text). With `fts=true`, `q` is an FTS5 expression "
    '(`jamsil OR gongdeok`, `"마포구 공덕동"`, `seo*`, `module:M2`); a malformed one is a 400 saying why.',
    response_model=SearchAnswer,
    responses=error_responses(400, 422),
    tags=["search"],
)
async def search_reports(
    request: Request,
    q: Annotated[str, Query(description="What to look for.")] = "",
    module: Annotated[str | None, Query(description="Only reports of this module.")] = None,
    limit: Annotated[int, Query(ge=1, le=LIMITS.max_search_results)] = 20,
    fts: Annotated[bool, Query(description="Read `q` as an FTS5 expression.")] = False,
) -> JSONResponse:
    service = service_of(request)
    hits = await run_in_threadpool(_search, service, q, module, limit, fts)
    results = [{**dataclasses.asdict(hit), "url": report_url(hit.project_id, hit.module)} for hit in hits]
    return JSONResponse({"query": q, "fts": fts, "results": results})


def _search(service: Service, q: str, module: str | None, limit: int, fts: bool) -> list[PageRow]:
    if not q.strip():
        raise ApiError(400, "q is empty: give words to search for")
    if len(q) > LIMITS.max_search_text_chars:
        raise ApiError(400, f"q is longer than {LIMITS.max_search_text_chars} characters")
    if not fts and not _WORD.search(q):
        raise ApiError(400, "q holds no word to search for (letters or digits)")
    try:
        hits = search(
            service.config.db_path, q, fts=fts, module=module, limit=limit, deadline_s=LIMITS.search_deadline_s
        )
    except BadQuery as error:
        raise ApiError(400, str(error)) from None
    except StoreError as error:
        raise internal_error("the report index cannot be read", error) from None
    if not hits and module is not None:
        try:  # nothing found of a module this service does not know: a typo, not an empty result (service audit)
            service.queue.selection([module])
        except EngineError as error:
            raise ApiError(422, "invalid input: 1 problem", [f"query.module: {error}"]) from None
    return [PageRow(h.project_id, h.module, h.address, h.status, h.generated_at) for h in hits]


# -- metrics, stats, health -----------------------------------------------------------------------------------


@router.get(
    "/metrics",
    summary="Prometheus metrics of this server process",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE: {}}}},
    tags=["operations"],
)
async def metrics(request: Request) -> Response:
    service = service_of(request)
    return Response(await run_in_threadpool(service.metrics.exposition), media_type=CONTENT_TYPE)


def _stats(service: Service) -> dict[str, object]:
    stats = service.metrics.stats()
    return {
        **dataclasses.asdict(stats),
        "ready": service.queue.ready.is_set(),
        **_runner_fields(service),
    }


def _runner_fields(service: Service) -> dict[str, object]:
    """What the workers of this server process are: one warm runner at a time, for one module selection."""
    queue = service.queue
    warm = queue.warm_modules
    return {
        "strategy": service.config.strategy,
        "workers": queue.default.options.workers,
        "warm_modules": list(warm) if warm is not None else None,
        "runner_starts": queue.runner_starts,
    }


@router.get(
    "/v1/stats",
    summary="The old service's figures, for this server process",
    response_model=StatsAnswer,
    tags=["operations"],
)
async def stats(request: Request) -> JSONResponse:
    return JSONResponse(await run_in_threadpool(_stats, service_of(request)))


@router.get("/healthz", summary="The process answers", tags=["operations"])
async def healthz() -> JSONResponse:
    return JSONResponse({"status": "ok"})


@router.get(
    "/readyz",
    summary="Ready once the workers are warm",
    responses={503: {"model": None, "description": "Not ready: warming up, failed or stopping."}},
    tags=["operations"],
)
async def readyz(request: Request) -> JSONResponse:
    service = service_of(request)
    queue = service.queue
    reason = None
    if queue.failure is not None:
        reason = queue.failure
    elif queue.stopping.is_set():
        reason = "stopping"
    elif not queue.ready.is_set():
        reason = "the workers are warming up"
    body = {
        "ready": reason is None,
        "pid": os.getpid(),
        **_runner_fields(service),
        "cache": {"url": service.cache.url, "available": await run_in_threadpool(service.cache.probe)},
    }
    if reason is not None:
        return JSONResponse({**body, "reason": reason}, status_code=503, headers={"Retry-After": "1"})
    return JSONResponse(body)


# -- the page -------------------------------------------------------------------------------------------------


def _page(service: Service, q: str, nonce: str) -> str:
    db = service.config.db_path
    recent: list[PageRow] = []
    if db.is_file():
        try:
            rows = recent_reports(db, LIMITS.recent_reports_shown)
        except StoreError:
            rows = []
        recent = [PageRow(r.project_id, r.module, r.address, r.status, r.generated_at) for r in rows]
    results: list[PageRow] = []
    problem = None
    if q.strip():
        try:
            results = _search(service, q, None, LIMITS.max_search_results, False)
        except ApiError as error:
            problem = error.message
    return render_page(service.metrics.stats(), recent, q, results, problem, nonce)


@router.get("/", summary="The page: live stats, search, recent reports", response_class=HTMLResponse, tags=["page"])
async def page(request: Request, q: str = "") -> HTMLResponse:
    # No length bound on q here: one too long is the page saying so (as _search does), not a JSON 422 to a browser.
    nonce = secrets.token_urlsafe(16)
    html = await run_in_threadpool(_page, service_of(request), q, nonce)
    policy = (
        f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'unsafe-inline'; connect-src 'self'; "
        "img-src 'self' data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    )
    return HTMLResponse(html, headers={"Content-Security-Policy": policy, "Cache-Control": "no-store"})


@router.get("/favicon.ico", include_in_schema=False)
async def favicon() -> Response:
    """No icon: an empty answer browsers cache, rather than a 404 logged on every report they open."""
    return Response(status_code=204, headers={"Cache-Control": "public, max-age=86400"})
