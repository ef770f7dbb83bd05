"""``zerosite serve`` when things go wrong underneath it: a full disk, a batch book that cannot be written, paths in
errors, tiny time limits, and the runners of module selections; the queue driven directly, without a server."""

from __future__ import annotations

import concurrent.futures as cf
import threading
from typing import Any

from zerosite.strategies import bounded


def test_closing_bounded_early_waits_for_the_work_already_running() -> None:
    """The engine cleans up after a pass the index refused as soon as it closes the runner's results: work still
    running then wrote its files afterwards, which the index lacked (a warm runner is not closed, and not joined)."""
    started, release = threading.Event(), threading.Event()
    finished: list[int] = []

    def work(item: int) -> int:
        if item == 1:
            started.set()
            release.wait(30)
        finished.append(item)
        return item

    with cf.ThreadPoolExecutor(2) as pool:
        results = bounded(lambda item: pool.submit(work, item), [0, 1, 2], 2)
        first: Any = next(results)
        assert first[0] == 0
        started.wait(30)  # item 1 runs; item 2 is queued behind it
        threading.Timer(0.2, release.set).start()
        results.close()
        assert 1 in finished  # waited for, not left running
        assert 2 not in finished  # cancelled before it started
