"""Errors as the service answers them: always JSON, never a traceback."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

__all__ = ["ApiError", "install_error_handlers", "internal_error", "public_cause", "without_paths"]

log = logging.getLogger("zerosite.service")


class ApiError(Exception):
    """An answer other than success: HTTP status, a one-line message, the problems one by one (422)."""

    def __init__(
        self,
        status: int,
        message: str,
        problems: Sequence[str] = (),
        headers: Mapping[str, str] | None = None,
        **extra: object,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.problems = list(problems)
        self.headers = dict(headers or {})
        self.extra = extra

    def response(self) -> JSONResponse:
        body: dict[str, object] = {"error": self.message, **self.extra}
        if self.problems:
            body["problems"] = self.problems
        return JSONResponse(body, status_code=self.status, headers=self.headers)


def internal_error(what: str, error: BaseException) -> ApiError:
    """A 500 saying what failed and why, in the system's words without paths (:func:`public_cause`: ``Read-only file
    system``, what an operator acts on); the whole error, paths and all, goes to the server log only."""
    log.error("%s: %s", what, error)
    return ApiError(500, f"{what} ({public_cause(error)}); the server log has the details")


_ABSOLUTE_PATH = re.compile(r"""(?<![\w.~/-])/(?:[^\s'"/:]+/)*[^\s'"/:,;)]+""")


def without_paths(text: str, folders: Sequence[Path] = ()) -> str:
    """``text`` without the server's paths, for a client (the log keeps the whole text): a path in one of
    ``folders`` (the output folder) relative to it (``p1/M2.html``), any other absolute path shortened to its last
    part (``/srv/data/index.sqlite`` → ``index.sqlite``)."""
    for folder in folders:
        for form in {str(folder), str(folder.resolve())}:
            text = text.replace(form.rstrip("/") + "/", "")
    return _ABSOLUTE_PATH.sub(lambda found: found[0].rsplit("/", 1)[-1], text)


def public_cause(error: BaseException, folders: Sequence[Path] = ()) -> str:
    """Why ``error`` happened, for a client: the system's or SQLite's own words at the root of its causes (``database
    or disk is full``, ``Read-only file system``), without paths."""
    root = error
    while root.__cause__ is not None:
        root = root.__cause__
    if isinstance(root, OSError) and root.strerror:
        return root.strerror
    return without_paths(str(root), folders)


def install_error_handlers(app: FastAPI) -> None:
    """Every error the app can give, as ``{"error": ..., "problems": [...]}`` JSON."""

    async def api_error(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, ApiError)
        return error.response()

    async def http_error(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, StarletteHTTPException)
        return JSONResponse({"error": str(error.detail)}, status_code=error.status_code, headers=error.headers)

    async def invalid_request(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, RequestValidationError)
        problems = [
            f"{'.'.join(str(part) for part in e.get('loc', ()))}: {e.get('msg', 'invalid')}" for e in error.errors()
        ]
        return JSONResponse({"error": "invalid request", "problems": problems}, status_code=422)

    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        log.error("unexpected error answering %s %s", request.method, request.url.path, exc_info=error)
        return JSONResponse({"error": "internal error; the server log has the details"}, status_code=500)

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(Exception, unexpected)
