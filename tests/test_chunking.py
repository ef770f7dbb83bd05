"""Chunks for pool and cluster workers: whole ones while plenty are left, then smaller and smaller."""

from __future__ import annotations

from collections.abc import Iterator

from zerosite.chunking import Taper, tapered


def test_the_last_chunks_shrink_so_that_the_workers_finish_together() -> None:
    read: list[int] = []

    def source(n: int) -> Iterator[int]:
        for i in range(n):
            read.append(i)
            yield i

    chunks = []
    for chunk in tapered(source(100), 10, 2):
        chunks.append(chunk)
        assert len(read) - sum(map(len, chunks)) <= 2 * 10  # read lazily: 2 workers' chunks held back, no more
    assert [x for chunk in chunks for x in chunk] == list(range(100))
    assert [len(chunk) for chunk in chunks] == [10] * 8 + [5, 4, 3, 2, 2, 1, 1, 1, 1]
    assert [len(chunk) for chunk in tapered(range(7), 10, 2)] == [2, 2, 1, 1, 1]
    assert [len(chunk) for chunk in tapered(range(5), 1, 4)] == [1] * 5
    assert list(tapered([], 10, 2)) == []


def test_a_taper_follows_the_size_and_the_workers_it_is_given_each_time() -> None:
    taper = Taper(range(60))
    assert len(taper.take(10, 2)) == 10  # read ahead: 30
    assert len(taper.take(5, 8)) == 5  # the cluster grew: 45 read ahead, 40 held
    assert len(taper.take(20, 1)) == 20  # the cost per item fell: 40 held, none read
    assert [len(taper.take(20, 1)) for _ in range(5)] == [13, 6, 3, 2, 1]  # 25 left: a half each time
    assert taper.take(20, 1) == []
