"""The errors that cross layers: plugins that cannot work together, a report that cannot be stored."""

from __future__ import annotations

__all__ = ["PluginError", "StoreError"]


class PluginError(Exception):
    """Plugins that cannot work together; the message names the plugins involved."""


class StoreError(Exception):
    """A report file or index row could not be written; the message says what and where."""
