"""ZeroSite as an HTTP service: ``zerosite serve``, or ``uvicorn --factory zerosite.service:create_app``."""

from zerosite.service.app import create_app
from zerosite.service.cache import ReportCache, StoreCache, open_cache
from zerosite.service.config import LIMITS, ConfigError, ServiceConfig, ServiceLimits, read_token_file

__all__ = [
    "LIMITS",
    "ConfigError",
    "ReportCache",
    "ServiceConfig",
    "ServiceLimits",
    "StoreCache",
    "create_app",
    "open_cache",
    "read_token_file",
]
