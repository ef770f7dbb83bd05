"""Request bodies: read up to a limit, parsed as JSON or JSON Lines, validated as the CLI validates its input."""

from __future__ import annotations

from fastapi import Request

from zerosite.project import InvalidInput, Project, load_json, parse_batch, parse_project, records_from_text
from zerosite.service.errors import ApiError

__all__ = ["MAX_PROBLEMS_SHOWN", "parse_many", "parse_one", "read_body"]

MAX_PROBLEMS_SHOWN = 100
"""A 422 lists at most this many problems, then says how many more there were."""


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, or 413 as soon as it is known to be longer than ``limit`` bytes (by its
    ``Content-Length`` before reading anything, else while reading)."""
    declared = request.headers.get("content-length", "")
    too_large = ApiError(413, f"the body is larger than {limit:,} bytes", limit_bytes=limit)
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
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
