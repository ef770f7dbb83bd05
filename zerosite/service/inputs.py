"""Request bodies: read up to a limit, parsed as JSON or JSON Lines, validated as the CLI validates its input."""

from __future__ import annotations

import asyncio
import time
from threading import Event

from fastapi import Request
from starlette.requests import ClientDisconnect

from zerosite.project import InvalidInput, Project, load_json, parse_batch, parse_project, records_from_text
from zerosite.service.errors import ApiError

__all__ = ["MAX_PROBLEMS_SHOWN", "parse_many", "parse_one", "read_body"]

MAX_PROBLEMS_SHOWN = 100
"""A 422 lists at most this many problems, then says how many more there were."""
BODY_POLL_S = 0.2
"""How often a body read that waits for the client looks whether the server is stopping."""
_CLOSE = {"Connection": "close"}
"""The rest of a body not read: the connection cannot carry another request."""


async def read_body(request: Request, limit: int, deadline: float, time_limit_s: float, stopping: Event) -> bytes:
    """The whole body, or 413 as soon as it is known to be longer than ``limit`` bytes (by its
    ``Content-Length`` before reading anything, else while reading); 408 when it has not all come by ``deadline``
    (``time.monotonic()``; the request's time limit is ``time_limit_s``), 503 once the server is ``stopping``: a
    client that stalls holds neither a request slot nor the server's shutdown."""
    declared = request.headers.get("content-length", "")
    too_large = ApiError(413, f"the body is larger than {limit:,} bytes", limit_bytes=limit)
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        left_s = deadline - time.monotonic()
        if left_s <= 0:
            raise ApiError(
                408, f"the request body did not all arrive within the time limit ({time_limit_s:g} s)", headers=_CLOSE
            )
        if stopping.is_set():
            raise ApiError(503, "the server is stopping; send it again", headers={"Retry-After": "5", **_CLOSE})
        try:
            # Only the wait is given up, not the message: the server keeps what arrives until the next receive.
            message = await asyncio.wait_for(request.receive(), min(left_s, BODY_POLL_S))
        except TimeoutError:
            continue
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
        more = message.get("more_body", False)
    return b"".join(chunks)


def _invalid(problems: list[str]) -> ApiError:
    shown = problems[:MAX_PROBLEMS_SHOWN]
    if len(problems) > MAX_PROBLEMS_SHOWN:
        shown.append(f"... and {len(problems) - MAX_PROBLEMS_SHOWN} more")
    count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
    return ApiError(422, f"invalid input: {count}; nothing was made", shown)


def _text(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise _invalid([f"body: not valid UTF-8 at byte {error.start}"]) from None


def parse_one(body: bytes) -> Project:
    """One project (a JSON object in the CLI's input format); problems named ``project.FIELD``.

    :raises ApiError: 422 listing every problem.
    """
    if not body.strip():
        raise _invalid(["body: empty; expected one project as a JSON object"])
    try:
        return parse_project(load_json("body", _text(body)), "project")
    except InvalidInput as invalid:
        raise _invalid(invalid.errors) from None


def parse_many(body: bytes) -> list[Project]:
    """A batch: every project valid and each id once, or 422 listing every problem.

    :raises ApiError: 422.
    """
    try:
        projects, problems = parse_batch(records_from_text("body", _text(body)))
    except InvalidInput as invalid:
        raise _invalid(invalid.errors) from None
    if problems:
        raise _invalid(problems)
    if not projects:
        raise _invalid(["body: no projects; expected a JSON list of projects or JSON Lines, one per line"])
    return projects
