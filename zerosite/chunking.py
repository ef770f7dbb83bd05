"""Cutting a batch's projects into chunks for workers: whole chunks while plenty are left, then smaller and smaller
ones, so that the workers finish together."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from typing import Generic, TypeVar

__all__ = ["Taper", "tapered"]

T = TypeVar("T")


class Taper(Generic[T]):
    """Chunks read lazily from ``items``: ``size`` items each while at least ``workers * size`` more are read
    beyond them; once the input runs out, a ``2 * workers``-th of what is left, rounded up, down to one item (guided
    self-scheduling). With chunks all of one size, the workers left without work at the end wait for whoever took
    the last whole chunk: on average half a chunk's time each, at 16 workers most of the pool idle.

    The last ``workers * size`` items are read ahead, held back until the input runs out."""

    def __init__(self, items: Iterable[T]) -> None:
        self._items = iter(items)
        self._held: deque[T] = deque()
        self._used_up = False

    def take(self, size: int, workers: int) -> list[T]:
        """The next chunk, for ``workers`` workers and whole chunks of ``size`` (either may change from one call to
        the next, as a cluster grows or the cost per item is measured); empty once every item was taken."""
        size, workers, held = max(1, size), max(1, workers), self._held
        while not self._used_up and len(held) < (workers + 1) * size:
            try:
                held.append(next(self._items))
            except StopIteration:
                self._used_up = True
        take = min(size, -(-len(held) // (2 * workers))) if self._used_up else size
        return [held.popleft() for _ in range(take)]


def tapered(items: Iterable[T], size: int, workers: int) -> Iterator[list[T]]:
    """The chunks of a :class:`Taper` for ``workers`` workers and whole chunks of ``size``, in order."""
    taper = Taper(items)
    while chunk := taper.take(size, workers):
        yield chunk
