"""ZeroSite as an HTTP service: ``zerosite serve``, or ``uvicorn --factory zerosite.service:create_app``."""

from zerosite.service.app import create_app
from zerosite.service.config import LIMITS, ConfigError, ServiceConfig, ServiceLimits, read_token_file

__all__ = [
    "LIMITS",
    "ConfigError",
    "ServiceConfig",
    "ServiceLimits",
    "create_app",
    "read_token_file",
]
