"""core.group_commit: batching of concurrent items, answers only after the flush, per-item
errors, a failing flush, order, and a graceful close that flushes what is queued."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future

import pytest

from core.group_commit import CommitterClosedError, GroupCommitter


def wait_for(check, timeout: float = 30.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


class Recorder:
    """A flush that records its batches and can be held (to let items queue up)."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.committed: set[int] = set()

    def __call__(self, items: Sequence[int]) -> list[int | BaseException]:
        self.entered.set()
        assert self.gate.wait(30)
        self.batches.append(list(items))
        self.committed.update(items)
        return [ValueError(f"bad {x}") if x < 0 else x * 10 for x in items]


def test_items_queued_during_a_flush_go_in_one_batch() -> None:
    flush = Recorder()
    committer = GroupCommitter(flush, max_batch=1000, linger=0)
    flush.gate.clear()
    first = committer.submit(1)
    assert flush.entered.wait(10)  # the flusher holds item 1
    rest = [committer.submit(i) for i in range(2, 52)]
    wait_for(lambda: committer.pending() == 50)
    assert not any(f.done() for f in [first, *rest])  # nothing answered before its flush
    flush.gate.set()
    assert [f.result(10) for f in [first, *rest]] == [i * 10 for i in range(1, 52)]
    assert flush.batches == [[1], list(range(2, 52))]
    committer.close()
    assert (committer.stats.batches, committer.stats.items, committer.stats.largest) == (
        2, 51, 50)


def test_max_batch_splits_and_keeps_order() -> None:
    flush = Recorder()
    committer = GroupCommitter(flush, max_batch=7, linger=0)
    flush.gate.clear()
    futures = [committer.submit(i) for i in range(30)]
    wait_for(lambda: flush.entered.is_set())
    flush.gate.set()
    assert [f.result(10) for f in futures] == [i * 10 for i in range(30)]
    committer.close()
    assert [x for batch in flush.batches for x in batch] == list(range(30))
    assert max(len(b) for b in flush.batches) <= 7


def test_linger_gathers_items_of_concurrent_threads() -> None:
    flush = Recorder()
    committer = GroupCommitter(flush, max_batch=1000, linger=0.5)
    start = threading.Barrier(20)
    results: dict[int, int] = {}

    def producer(i: int) -> None:
        start.wait()
        results[i] = committer.submit(i).result(30)

    threads = [threading.Thread(target=producer, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    committer.close()
    assert results == {i: i * 10 for i in range(20)}
    assert committer.stats.batches < 20  # grouped (one batch unless the machine stalls)


def test_a_refused_item_fails_alone_and_a_failing_flush_fails_its_batch() -> None:
    flush = Recorder()
    committer = GroupCommitter(flush, linger=0.05)
    good, bad = committer.submit(3), committer.submit(-1)
    assert good.result(10) == 30
    with pytest.raises(ValueError, match="bad -1"):
        bad.result(10)
    committer.close()

    def broken(items: Sequence[int]) -> list[int]:
        raise RuntimeError("database gone")

    failing = GroupCommitter(broken, linger=0.05)
    futures = [failing.submit(i) for i in range(5)]
    for future in futures:
        with pytest.raises(RuntimeError, match="database gone"):
            future.result(10)
    assert failing.stats.failed_batches >= 1
    failing.close()

    short = GroupCommitter(lambda items: [], linger=0)  # wrong number of results
    with pytest.raises(RuntimeError, match="0 results for 1 items"):
        short.submit(1).result(10)
    short.close()


def test_close_flushes_what_is_queued_then_refuses() -> None:
    flush = Recorder()
    committer = GroupCommitter(flush, max_batch=10_000, linger=600)  # would wait 10 min
    futures = [committer.submit(i) for i in range(100)]
    time.sleep(0.05)
    assert not any(f.done() for f in futures)
    started = time.monotonic()
    committer.close()
    assert time.monotonic() - started < 30
    assert [f.result(0) for f in futures] == [i * 10 for i in range(100)]
    assert flush.committed == set(range(100))
    with pytest.raises(CommitterClosedError):
        committer.submit(1)
    committer.close()  # idempotent


def test_asyncio_waiters_do_not_block_the_loop() -> None:
    flush = Recorder()
    committer = GroupCommitter(flush, linger=0.01)

    async def main() -> list[int]:
        return list(await asyncio.gather(*(committer.run(i) for i in range(200))))

    assert asyncio.run(main()) == [i * 10 for i in range(200)]
    committer.close()
    assert committer.stats.batches < 200


def test_a_cancelled_waiter_does_not_break_the_batch() -> None:
    flush = Recorder()
    committer = GroupCommitter(flush, linger=0)
    flush.gate.clear()
    held = committer.submit(1)
    assert flush.entered.wait(10)
    cancelled: Future[int] = committer.submit(2)
    other = committer.submit(3)
    assert cancelled.cancel()
    flush.gate.set()
    assert held.result(10) == 10 and other.result(10) == 30
    committer.close()
    assert flush.committed == {1, 2, 3}  # written all the same


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="max_batch"):
        GroupCommitter(lambda items: list(items), max_batch=0)
    with pytest.raises(ValueError, match="linger"):
        GroupCommitter(lambda items: list(items), linger=-1)
