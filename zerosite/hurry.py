"""Whether a stopping command no longer waits for the work under way: set by :mod:`zerosite.stopping` (the command
line's signal handling), read by the runners (:mod:`zerosite.strategies`), which sit below it."""

from __future__ import annotations

import threading

__all__ = ["calm", "hurried", "hurry"]

_hurry = threading.Event()


def hurried() -> bool:
    """Whether the command is stopping and will no longer wait for the work under way: a second Ctrl-C or SIGTERM
    came, or ``stopping.STOP_GRACE_S`` passed since the first. The pool workers were killed then; a runner stops
    waiting for its threads (and abandons them, refusing their writes) and for its futures, so that the batch's
    clean-up runs at once. Never true outside ``stopping.stopping_cleanly`` (a server, a library caller)."""
    return _hurry.is_set()


def hurry() -> None:
    """From now on, :func:`hurried`."""
    _hurry.set()


def calm() -> None:
    """No longer :func:`hurried` (a stop is over, or a new one begins)."""
    _hurry.clear()
