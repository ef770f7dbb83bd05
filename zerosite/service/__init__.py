"""ZeroSite as an HTTP service: ``zerosite serve``, or ``uvicorn --factory zerosite.service:create_app``."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from zerosite.service.config import LIMITS, ConfigError, ServiceConfig, ServiceLimits, read_token_file, token_from_env

if TYPE_CHECKING:
    from zerosite.service.app import create_app

__all__ = [
    "LIMITS",
    "ConfigError",
    "ServiceConfig",
    "ServiceLimits",
    "create_app",
    "read_token_file",
    "token_from_env",
]


def __getattr__(name: str) -> Any:
    """``create_app`` is imported on first use: the package (``zerosite.service.process`` included, which the
    benchmark harness uses) imports without the serve extra (FastAPI, uvicorn) installed."""
    if name == "create_app":
        return importlib.import_module("zerosite.service.app").create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
