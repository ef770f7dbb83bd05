"""What every route of one app shares: its configuration, work queue, metrics, response bodies and report cache."""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from fastapi import Request

from zerosite.service.config import ServiceConfig
from zerosite.service.errors import ApiError
from zerosite.service.jobs import ReportQueue
from zerosite.service.metrics import ServiceMetrics
from zerosite.service.response_bodies import ResponseBodyCache
from zerosite.types import ReportCache

__all__ = ["Service", "service_of"]


@dataclass(frozen=True)
class Service:
    config: ServiceConfig
    queue: ReportQueue
    metrics: ServiceMetrics
    bodies: ResponseBodyCache
    cache: ReportCache

    def authorize(self, request: Request) -> None:
        """Let a write through with the right bearer token, or when the server has none; else 401.

        The token is compared in constant time (``hmac.compare_digest``).
        """
        if self.config.token is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        challenge = {"WWW-Authenticate": 'Bearer realm="zerosite"'}
        if scheme.lower() != "bearer" or not given.strip():
            raise ApiError(401, "this endpoint needs a bearer token: Authorization: Bearer TOKEN", headers=challenge)
        if not hmac.compare_digest(given.strip().encode(), self.config.token.encode()):
            raise ApiError(401, "the bearer token is not the right one", headers=challenge)


def service_of(request: Request) -> Service:
    service: Service = request.app.state.service
    return service
