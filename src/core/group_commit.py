"""Write-behind group commit: many concurrent requests, one transaction.

A :class:`GroupCommitter` takes items from any number of threads or coroutines
(:meth:`~GroupCommitter.submit`, :meth:`~GroupCommitter.run`) and hands them, in arrival
order, to one ``flush(items)`` function called by its own flusher thread: ``flush`` writes
them all in one transaction and returns one result (or exception) per item. Each submitter
gets a future that resolves only once ``flush`` returned, that is once its item is committed:
an acknowledged item is never lost, and an item whose write failed gets its own error.

Batching: the flusher takes everything queued, up to ``max_batch`` items. An item that finds
the flusher idle waits at most ``linger`` seconds for company; items that queued up while a
flush ran go in the next flush at once (classic group commit: the busier the database, the
bigger the batches, without a fixed delay).

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
    >>> committer.close()
    >>> committer.stats.items, committer.stats.batches
    (1, 1)

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


class GroupCommitter(Generic[T, R]):
    """Queue items; one thread flushes them in batches (see the module docstring).

    ``flush(items) -> results`` (one per item, an exception instance for an item that
    failed); ``max_batch`` items at most per flush; ``linger`` seconds an early item waits for
    more; ``name`` names the thread.
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
        self._queue: deque[tuple[T, Future[R], float]] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None

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

    def _take(self) -> list[tuple[T, Future[R], float]] | None:
        """The next batch, waiting for it; None once closed and empty."""
        with self._cond:
            while not self._queue:
                if self._closed:
                    return None
                self._cond.wait()
            # the oldest item waits at most ``linger`` for company
            deadline = self._queue[0][2] + self.linger
            while len(self._queue) < self.max_batch and not self._closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            count = min(len(self._queue), self.max_batch)
            return [self._queue.popleft() for _ in range(count)]

    def _loop(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            self._run(batch)

    def _run(self, batch: list[tuple[T, Future[R], float]]) -> None:
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
            for _, future, _ in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future, _), result in zip(batch, results, strict=True):
            if future.done():  # cancelled by its waiter: the item was written all the same
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)
