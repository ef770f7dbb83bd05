"""The shapes of the service's answers, for the OpenAPI schema (the routes build the JSON themselves)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

__all__ = [
    "BATCH_BODY",
    "PROJECT_BODY",
    "BatchAnswer",
    "ErrorAnswer",
    "ReportAnswer",
    "ReportsAnswer",
    "SearchAnswer",
    "StatsAnswer",
    "error_responses",
]


class ErrorAnswer(BaseModel):
    """Every error: a one-line message, and for invalid input each problem with its field path."""

    error: str = Field(examples=["invalid input: 1 problem; nothing was made"])
    problems: list[str] | None = Field(None, examples=[["project.land_area_sqm: must be > 0, got -5"]])


class ReportAnswer(BaseModel):
    module: str
    status: Literal["written", "cached", "failed"]
    cached: bool = Field(
        description="Not made again: found in the store (inputs unchanged since it was made) or in the report cache."
    )
    from_cache: bool = Field(
        description="Found in the report cache that --cache names (e.g. Redis shared by servers on other folders) "
        "and written here from it."
    )
    sha256: str | None = Field(description="SHA-256 of the report file; its ETag.")
    url: str | None
    size_bytes: int
    ms: float = Field(description="Time to make it: fetch, compute, render, write (0 when cached).")
    error: str | None


class ReportsAnswer(BaseModel):
    project_id: str
    reports: list[ReportAnswer]
    elapsed_ms: float
    error: str | None = None


class BatchAnswer(BaseModel):
    id: str
    state: Literal["queued", "running", "done", "cancelled", "interrupted", "failed"]
    modules: list[str]
    total: int = Field(description="Projects in the batch.")
    done: int = Field(description="Projects finished.")
    failed: int = Field(description="Finished projects with a failed report.")
    cached: int = Field(description="Finished projects whose reports were all unchanged or from the report cache.")
    reports_written: int
    reports_cached: int
    reports_failed: int
    rate_per_s: float = Field(description="Projects finished per second since the batch started.")
    elapsed_s: float
    cancel_requested: bool
    final: bool
    error: str | None
    url: str
    events: str


class SearchHit(BaseModel):
    project_id: str
    module: str
    address: str
    status: str
    generated_at: str
    url: str


class SearchAnswer(BaseModel):
    query: str
    fts: bool
    results: list[SearchHit]


class StatsAnswer(BaseModel):
    uptime_s: float
    reports_generated: int
    reports_cached: int
    reports_failed: int
    avg_ms_per_report: float
    reports_per_minute: float
    cpu_percent: float = Field(description="Server and worker processes, since the last call; 100 = one core.")
    memory_mb: float = Field(description="Resident memory of the server and worker processes.")
    queue_depth: int
    in_flight: int
    processes: int
    pid: int
    ready: bool
    strategy: str
    workers: int = Field(
        description="Workers of the warm runner: all the workers this server process runs (one runner at a time)."
    )
    warm_modules: list[str] | None = Field(
        description="The module selection the warm runner makes; another one's request closes it and starts its own."
    )
    runner_starts: int = Field(description="Runners started so far: a new module selection starts one.")


_PROJECT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "One project in the CLI's input format (`zerosite sample 1` prints one).",
    "required": ["id", "road_address", "land_area_sqm", "zone_type", "official_price_per_sqm", "demographics"],
    "properties": {
        "id": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"},
        "road_address": {"type": "string"},
        "jibun_address": {"type": "string"},
        "sido": {"type": "string"},
        "sigungu": {"type": "string"},
        "dong": {"type": "string"},
        "land_area_sqm": {"type": "number", "minimum": 1, "maximum": 10_000_000},
        "zone_type": {"type": "string"},
        "official_price_per_sqm": {"type": "integer"},
        "road_width_m": {"type": "number"},
        "corner_lot": {"type": "boolean"},
        "subway_distance_m": {"type": "number"},
        "transactions": {"type": "array", "items": {"type": "object"}},
        "demographics": {"type": "object"},
    },
}

PROJECT_BODY: dict[str, Any] = {
    "requestBody": {"required": True, "content": {"application/json": {"schema": _PROJECT_SCHEMA}}},
}

BATCH_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"type": "array", "items": _PROJECT_SCHEMA}},
            "application/x-ndjson": {"schema": {"type": "string", "description": "JSON Lines: one project per line."}},
        },
    },
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for these error statuses, each an :class:`ErrorAnswer`."""
    why = {
        400: "The query is malformed (the reason is given).",
        401: "A bearer token is required (write endpoints, when the server has one).",
        404: "No such report or batch.",
        408: "The body did not all arrive within the request time limit.",
        409: "The batch has finished already.",
        413: "The body is over the limit.",
        422: "Invalid input: each problem with its field path, as the CLI lists them.",
        500: "Some reports failed (each with its error), or the store failed.",
        503: "The queue is full, the workers are warming up, or the server is stopping; see Retry-After.",
        504: "No answer within the request time limit.",
    }
    return {status: {"model": ErrorAnswer, "description": why[status]} for status in statuses}
