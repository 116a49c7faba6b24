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


def make_concurrent(committer: GroupCommitter, flush: Recorder) -> None:
    """Concurrent traffic: two items queue behind a held flush and go out together, so the
    committer lingers for company from then on."""
    flush.gate.clear()
    first = committer.submit(100)
    assert flush.entered.wait(10)
    rest = [committer.submit(101), committer.submit(102)]
    wait_for(lambda: committer.pending() == 2)
    flush.gate.set()
    assert [f.result(10) for f in [first, *rest]] == [1000, 1010, 1020]
    assert flush.batches[-2:] == [[100], [101, 102]]
    flush.batches.clear()
    flush.committed.clear()


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


def test_a_lone_client_is_never_kept_waiting_for_company() -> None:
    flush = Recorder()
    committer = GroupCommitter(flush, max_batch=1000, linger=30.0)
    # one item after another, each once the previous one is answered (a pilot's reports):
    # a 30 s linger would make this take minutes and time the results out
    assert [committer.submit(i).result(10) for i in range(5)] == [0, 10, 20, 30, 40]
    committer.close()
    assert flush.batches == [[i] for i in range(5)]
    assert committer.stats.lingered == 0


def test_linger_gathers_items_of_concurrent_threads() -> None:
    flush = Recorder()
    committer = GroupCommitter(flush, max_batch=1000, linger=0.5)
    make_concurrent(committer, flush)
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
    assert committer.stats.lingered >= 1  # the previous flush had company: it waited for more
    assert committer.stats.batches < 2 + 20  # grouped (one batch unless the machine stalls)


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
    make_concurrent(committer, flush)
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


def test_submit_many_one_future_for_items_spread_over_batches() -> None:
    """``submit_many``: the items keep their place among single items, may be flushed in
    several batches (``max_batch``), and their one future resolves only after the last of
    them, to every result in order, a refused item's exception as a value (not raised)."""
    flush = Recorder()
    committer = GroupCommitter(flush, max_batch=4, linger=0)
    flush.gate.clear()
    first = committer.submit(1)
    assert flush.entered.wait(10)  # the flusher holds item 1: the rest queue up
    group = committer.submit_many([2, -3, 4, 5, 6, 7])
    last = committer.submit(8)
    wait_for(lambda: committer.pending() == 7)
    assert not group.done()
    flush.gate.set()
    results = group.result(10)
    assert results[:1] + results[2:] == [20, 40, 50, 60, 70]
    assert isinstance(results[1], ValueError) and str(results[1]) == "bad -3"
    assert (first.result(10), last.result(10)) == (10, 80)
    assert flush.batches == [[1], [2, -3, 4, 5], [6, 7, 8]]  # the group spans two flushes
    assert committer.submit_many([]).result(0) == []
    committer.close()
    assert committer.stats.items == 8
    with pytest.raises(CommitterClosedError):
        committer.submit_many([9])


def test_submit_many_held_across_two_flushes_resolves_after_the_second() -> None:
    flush = Recorder()
    committer = GroupCommitter(flush, max_batch=2, linger=0)
    flush.gate.clear()
    group = committer.submit_many([1, 2, 3])
    assert flush.entered.wait(10)  # the first flush ([1, 2]) is held
    assert not group.done()
    flush.entered.clear()
    flush.gate.set()
    assert group.result(10) == [10, 20, 30]
    assert flush.batches == [[1, 2], [3]]
    committer.close()


def test_submit_many_of_a_failing_flush_gives_the_error_per_item() -> None:
    def broken(items: Sequence[int]) -> list[int]:
        raise RuntimeError("database gone")

    failing = GroupCommitter(broken, linger=0)
    results = failing.submit_many([1, 2]).result(10)
    assert [type(r) for r in results] == [RuntimeError, RuntimeError]
    assert str(results[0]) == "database gone"
    failing.close()


def test_submit_many_cancelled_waiter_leaves_the_batch_whole() -> None:
    flush = Recorder()
    committer = GroupCommitter(flush, max_batch=100, linger=0)
    flush.gate.clear()
    held = committer.submit(1)
    assert flush.entered.wait(10)
    group = committer.submit_many([2, 3])
    other = committer.submit(4)
    wait_for(lambda: committer.pending() == 3)
    assert group.cancel()
    flush.gate.set()
    assert (held.result(10), other.result(10)) == (10, 40)
    committer.close()
    assert flush.committed == {1, 2, 3, 4}  # written all the same
