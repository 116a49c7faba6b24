"""Write-behind group commit: many concurrent requests, one transaction.

A :class:`GroupCommitter` takes items from any number of threads or coroutines
(:meth:`~GroupCommitter.submit`, :meth:`~GroupCommitter.run`) and hands them, in arrival
order, to one ``flush(items)`` function called by its own flusher thread: ``flush`` writes
them all in one transaction and returns one result (or exception) per item. Each submitter
gets a future that resolves only once ``flush`` returned, that is once its item is committed:
an acknowledged item is never lost, and an item whose write failed gets its own error.

:meth:`~GroupCommitter.submit_many` queues several items behind ONE future, which resolves
to their results in order (an exception instance in place of an item that failed), once the
last of them is flushed: a bulk request pays one future, not one per item.

Batching: the flusher takes everything queued, up to ``max_batch`` items. Items that queued
up while a flush ran go in the next flush at once (classic group commit: the busier the
database, the bigger the batches, without a fixed delay). An item that finds the flusher idle
waits at most ``linger`` seconds for company, but only while traffic is concurrent, that is
when the previous flush carried more than one item: a lone client whose items come one after
another (a pilot's status reports, each sent once the previous one is answered) is never
delayed, since nobody would join it (with a 2 ms linger, that cost a job of nine reports
20-50 ms from submission to Done).

Stopping (:meth:`~GroupCommitter.close`): no new items are accepted
(:class:`CommitterClosedError`), everything queued is flushed, then the thread ends.

Example::

    >>> seen = []
    >>> def flush(items):
    ...     seen.append(list(items))
    ...     return [x * 2 for x in items]
    >>> committer = GroupCommitter(flush, max_batch=100, linger=0.001)
    >>> committer.submit(21).result(timeout=5)
    42
    >>> committer.submit_many([1, 2, 3]).result(timeout=5)
    [2, 4, 6]
    >>> committer.close()
    >>> committer.stats.items, committer.stats.batches
    (4, 2)

Caveat: ``flush`` runs in the committer's thread: it must open its own connection and may
block; it must return exactly one result per item (else every item of the batch gets an
error).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Generic, TypeVar

log = logging.getLogger("pilotwms.group_commit")

T = TypeVar("T")
R = TypeVar("R")

__all__ = ["CommitterClosedError", "CommitterStats", "GroupCommitter"]


class CommitterClosedError(RuntimeError):
    """The committer is stopping or stopped: the item was not taken."""


@dataclass
class CommitterStats:
    """Counts since the committer started (read them for benchmarks and tests)."""

    items: int = 0
    batches: int = 0
    largest: int = 0
    #: flushes that raised (every item of the batch got the error)
    failed_batches: int = 0
    #: flushes whose first item waited (up to ``linger``) for company
    lingered: int = 0


class _Group(Generic[R]):
    """Where the results of one :meth:`GroupCommitter.submit_many` gather: only the flusher
    thread fills it, and resolves ``future`` with the last result."""

    __slots__ = ("future", "left", "results")

    def __init__(self, count: int) -> None:
        self.future: Future[list[R | BaseException]] = Future()
        self.results: list[R | BaseException | None] = [None] * count
        self.left = count

    def put(self, index: int, result: R | BaseException) -> None:
        self.results[index] = result
        self.left -= 1
        if not self.left and not self.future.done():  # done: cancelled by its waiter
            self.future.set_result(self.results)  # type: ignore[arg-type]


#: where an item's result goes: its own future, or (group, index) of a submit_many
_Sink = Future | tuple[_Group, int]


class GroupCommitter(Generic[T, R]):
    """Queue items; one thread flushes them in batches (see the module docstring).

    ``flush(items) -> results`` (one per item, an exception instance for an item that
    failed); ``max_batch`` items at most per flush; ``linger`` seconds an early item waits for
    more while traffic is concurrent; ``name`` names the thread.
    """

    def __init__(self, flush: Callable[[Sequence[T]], Sequence[R | BaseException]], *,
                 max_batch: int = 1000, linger: float = 0.002,
                 name: str = "group-commit") -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        if linger < 0:
            raise ValueError("linger must not be negative")
        self._flush = flush
        self.max_batch = max_batch
        self.linger = linger
        self.name = name
        self.stats = CommitterStats()
        self._queue: deque[tuple[T, _Sink, float]] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None
        #: the previous flush carried more than one item: traffic is concurrent, linger
        self._company = False

    @property
    def closed(self) -> bool:
        return self._closed

    def pending(self) -> int:
        """Items queued and not yet taken by a flush."""
        with self._cond:
            return len(self._queue)

    def submit(self, item: T) -> Future[R]:
        """Queue ``item``; the future resolves once it is committed (or failed)."""
        future: Future[R] = Future()
        with self._cond:
            if self._closed:
                raise CommitterClosedError(f"{self.name} is stopping: item not taken")
            self._queue.append((item, future, time.monotonic()))
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name=self.name,
                                                daemon=True)
                self._thread.start()
            if len(self._queue) == 1 or len(self._queue) >= self.max_batch:
                self._cond.notify()
        return future

    def submit_many(self, items: Sequence[T]) -> Future[list[R | BaseException]]:
        """Queue ``items`` (in order, possibly flushed in more than one batch) behind one
        future: it resolves once every item is committed or failed, to their results in
        order, an exception instance for an item that failed (never raised)."""
        group: _Group[R] = _Group(len(items))
        if not items:
            group.future.set_result([])
            return group.future
        now = time.monotonic()
        with self._cond:
            if self._closed:
                raise CommitterClosedError(f"{self.name} is stopping: items not taken")
            was_empty = not self._queue
            self._queue.extend((item, (group, index), now) for index, item in enumerate(items))
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name=self.name,
                                                daemon=True)
                self._thread.start()
            if was_empty or len(self._queue) >= self.max_batch:
                self._cond.notify()
        return group.future

    async def run(self, item: T) -> R:
        """Queue ``item`` and wait for its result without blocking the event loop."""
        return await asyncio.wrap_future(self.submit(item))

    def close(self, timeout: float | None = 60.0) -> None:
        """Refuse new items, flush what is queued, stop the thread (idempotent)."""
        with self._cond:
            self._closed = True
            thread = self._thread
            self._cond.notify()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                log.error("%s: %d item(s) still queued after %.0f s", self.name,
                          self.pending(), timeout or 0)

    # -- the flusher ------------------------------------------------------------------------

    def _take(self) -> list[tuple[T, _Sink, float]] | None:
        """The next batch, waiting for it; None once closed and empty."""
        with self._cond:
            while not self._queue:
                if self._closed:
                    return None
                self._cond.wait()
            # the oldest item waits at most ``linger`` for company, if any is to be expected
            if self._company and len(self._queue) < self.max_batch and self.linger > 0:
                self.stats.lingered += 1
                deadline = self._queue[0][2] + self.linger
                while len(self._queue) < self.max_batch and not self._closed:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
            count = min(len(self._queue), self.max_batch)
            self._company = count > 1
            return [self._queue.popleft() for _ in range(count)]

    def _loop(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            self._run(batch)

    def _run(self, batch: list[tuple[T, _Sink, float]]) -> None:
        items = [item for item, _, _ in batch]
        stats = self.stats
        stats.batches += 1
        stats.items += len(items)
        stats.largest = max(stats.largest, len(items))
        try:
            results = list(self._flush(items))
            if len(results) != len(items):
                raise RuntimeError(f"{self.name}: flush gave {len(results)} results for "
                                   f"{len(items)} items")
        except BaseException as exc:  # noqa: BLE001 - every waiting request gets the error
            stats.failed_batches += 1
            log.warning("%s: a flush of %d item(s) failed: %s", self.name, len(items), exc)
            for _, sink, _ in batch:
                if isinstance(sink, tuple):
                    sink[0].put(sink[1], exc)
                elif not sink.done():
                    sink.set_exception(exc)
            return
        for (_, sink, _), result in zip(batch, results, strict=True):
            if isinstance(sink, tuple):
                sink[0].put(sink[1], result)
            elif sink.done():
                continue  # cancelled by its waiter: the item was written all the same
            elif isinstance(result, BaseException):
                sink.set_exception(result)
            else:
                sink.set_result(result)
