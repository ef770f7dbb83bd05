"""Request bodies: read up to a limit, parsed as JSON or JSON Lines, validated as the CLI validates its input."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Any

from fastapi import Request

from zerosite.project import InvalidInput, Project, parse_batch, parse_project, printable
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


def _json(where: str, text: str, *, one_line: bool = False) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        at = "" if one_line else f":{error.lineno}:{error.colno}"
        raise _invalid([f"{where}{at}: not valid JSON: {error.msg}"]) from None
    except RecursionError:
        raise _invalid([f"{where}: not valid JSON: nested too deeply"]) from None
    except ValueError as error:  # an integer longer than sys.get_int_max_str_digits()
        limit = sys.get_int_max_str_digits()
        reason = f"a number has more than {limit} digits" if "digits" in str(error) else printable(str(error))
        raise _invalid([f"{where}: not valid JSON: {reason}"]) from None


def parse_one(body: bytes) -> Project:
    """One project (a JSON object in the CLI's input format); problems named ``project.FIELD``.

    :raises ApiError: 422 listing every problem.
    """
    if not body.strip():
        raise _invalid(["body: empty; expected one project as a JSON object"])
    raw = _json("body", _text(body))
    try:
        return parse_project(raw, "project")
    except InvalidInput as invalid:
        raise _invalid(invalid.errors) from None


def _records(text: str) -> Iterator[tuple[str, Any]]:
    """``(location, raw project)``: a JSON list (``projects[i]``), ``{"projects": [...]}``, else JSON Lines
    (``body:LINE``), told apart as ``zerosite generate --projects -`` tells them apart."""
    start = text.lstrip()[:1]
    document: Any = None
    if start in ("[", "{"):
        try:
            document = json.loads(text)
        except (ValueError, RecursionError):
            if start == "[":
                _json("body", text)  # raises with the reason
    if start == "{" and isinstance(document, dict) and "projects" in document:
        document = document["projects"]
        if not isinstance(document, list):
            raise _invalid(['body: "projects" must be a JSON list of projects'])
    if isinstance(document, list):
        for index, raw in enumerate(document):
            yield f"projects[{index}]", raw
        return
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            yield f"body:{number}", _json(f"body:{number}", line, one_line=True)


def parse_many(body: bytes) -> list[Project]:
    """A batch: every project valid and each id once, or 422 listing every problem.

    :raises ApiError: 422.
    """
    try:
        projects, problems = parse_batch(_records(_text(body)))
    except InvalidInput as invalid:
        raise _invalid(invalid.errors) from None
    if problems:
        raise _invalid(problems)
    if not projects:
        raise _invalid(["body: no projects; expected a JSON list of projects or JSON Lines, one per line"])
    return projects
