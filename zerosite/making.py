"""The projects this process is making itself, noted where the next run finds them should a module kill the process
(``os._exit()``, a crash in native code): set for a batch by :mod:`zerosite.engine` (the output folder's lock file,
``ReportStore.note_making``), told by :class:`zerosite.worker.Worker` of each project it makes, which sits below it.

Each project is noted as it starts, with the others still being made then (one write); the engine clears the note
when its batch ends. Only the process that set the note writes it: a pool worker forked during a batch forgets it
(a worker's death is its pool's to handle), and a process started otherwise never had it.
"""

from __future__ import annotations

import collections
import contextlib
import os
import threading
from collections.abc import Callable, Collection, Iterator
from contextlib import AbstractContextManager
from types import TracebackType

__all__ = ["Note", "making", "noting"]

Note = Callable[[Collection[str], Collection[str]], None]
"""Where to note the projects being made (their ids) and the modules they compute."""

_lock = threading.Lock()
_note: Note | None = None
_users = 0  # the batches noting now (a server runs several at once)
_making: collections.Counter[str] = collections.Counter()  # a project made twice at once (a retry) counts twice
_UNNOTED: AbstractContextManager[None] = contextlib.nullcontext()


@contextlib.contextmanager
def noting(note: Note) -> Iterator[None]:
    """Within this block, the projects this process makes are noted to ``note``, each as it starts."""
    global _note, _users
    with _lock:
        _note, _users = note, _users + 1
    try:
        yield
    finally:
        with _lock:
            _users -= 1
            if not _users:
                _note = None


def making(project_id: str, modules: Collection[str]) -> AbstractContextManager[None]:
    """``project_id`` is being made here, computing ``modules``, for the block's length: noted as it starts, if a
    batch notes."""
    note = _note
    return _UNNOTED if note is None else _Making(note, project_id, modules)


class _Making:
    __slots__ = ("modules", "note", "project_id")

    def __init__(self, note: Note, project_id: str, modules: Collection[str]) -> None:
        self.note, self.project_id, self.modules = note, project_id, modules

    def __enter__(self) -> None:
        with _lock:
            _making[self.project_id] += 1
            self.note(list(_making), self.modules)

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        with _lock:
            _making[self.project_id] -= 1
            if not _making[self.project_id]:
                del _making[self.project_id]


def _forget() -> None:
    """In a child just forked: this process notes nothing, whatever its parent did."""
    global _note, _users, _lock
    _note, _users, _lock = None, 0, threading.Lock()  # a lock another thread of the parent held stays held here
    _making.clear()


os.register_at_fork(after_in_child=_forget)
