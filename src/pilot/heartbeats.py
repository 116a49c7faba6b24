"""One ``sendHeartBeats`` call for the heartbeats of all the jobs a pilot runs at once.

A pilot filling a many-core node runs one payload per slot, each with its watchdog. With a
:class:`HeartbeatBatcher` the watchdogs beat on a common schedule (multiples of the period,
:class:`pilot.watchdog.Watchdog` ``align``) and hand their heartbeats to the batcher, which
sends them together as soon as every running job has beaten, or ``window`` seconds after the
first: one HTTPS call per period for the whole node instead of one per job. Each heartbeat
carries its job's own token (``JobToken`` of the match) when there is one, so the server checks
each exactly as a ``sendHeartBeat`` with that token; each watchdog gets its own job's answer
(commands such as ``Kill``, or its job's refusal as an :class:`~pilot.rpc.RpcError` with the
server's errno). With a single job running, or against a server without ``sendHeartBeats``
(HTTP 501, remembered), each heartbeat is sent on its own as before.

Example::

    beats = HeartbeatBatcher(rpc, window=5.0)
    with beats.running():                  # around each job the pilot runs
        commands = beats.send(job_id, dynamic, static, token=job_token,
                              single=lambda: rpc.call(STATE, "sendHeartBeat", job_id,
                                                      dynamic, static))
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Optional

from pilot.rpc import RpcClient, RpcError

STATE = "WorkloadManagement/JobStateUpdate"
log = logging.getLogger("pilot")


class _Beat:
    def __init__(self, job_id: int, dynamic: dict[str, Any], static: dict[str, Any],
                 token: Optional[str]) -> None:
        self.job_id = job_id
        self.item: dict[str, Any] = {"JobID": job_id, "Dynamic": dynamic, "Static": static}
        if token:
            self.item["Token"] = token
        self.done = threading.Event()
        self.reply: dict[str, Any] = {}
        self.error: Optional[RpcError] = None
        self.unsupported = False


class HeartbeatBatcher:
    """Gathers the heartbeats of a pilot's concurrent jobs into ``sendHeartBeats`` calls.

    ``rpc``: the pilot's own client (its credential carries the call; each heartbeat may
    carry its job's token); ``window``: seconds the first heartbeat waits for the others.
    """

    def __init__(self, rpc: RpcClient, window: float = 5.0) -> None:
        self._rpc = rpc
        self._beat_rpc: Optional[RpcClient] = None
        self.window = window
        self.supported = True
        #: calls sent and heartbeats they carried (for logs and tests)
        self.calls = 0
        self.sent = 0
        self._cond = threading.Condition()
        self._pending: list[_Beat] = []
        self._active = 0
        self._sender: Optional[threading.Thread] = None

    @property
    def active(self) -> int:
        return self._active

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        """Count a running job (so the batcher knows how many heartbeats to expect)."""
        with self._cond:
            self._active += 1
        try:
            yield
        finally:
            with self._cond:
                self._active -= 1
                self._cond.notify_all()

    def send(self, job_id: int, dynamic: dict[str, Any], static: dict[str, Any], *,
             single: Callable[[], Any], token: Optional[str] = None) -> dict[str, Any]:
        """The job's commands from the server; ``single()`` sends this heartbeat on its own
        (used when batching does not apply). Raises :class:`RpcError`."""
        if not self.supported or self._active < 2:
            return _commands(single())
        beat = _Beat(job_id, dynamic, static, token)
        with self._cond:
            self._pending.append(beat)
            if self._sender is None or not self._sender.is_alive():
                self._sender = threading.Thread(target=self._run, name="heartbeats",
                                                 daemon=True)
                self._sender.start()
            self._cond.notify_all()
        if not beat.done.wait(self.window + self._rpc.timeout + 30):
            raise RpcError(f"heartbeat of job {job_id} not sent in time")
        if beat.unsupported:
            return _commands(single())
        if beat.error is not None:
            raise beat.error
        return beat.reply

    def _take(self) -> list[_Beat]:
        """The next batch: every running job has beaten, or the window is over."""
        with self._cond:
            while not self._pending:
                if not self._cond.wait(60):
                    return []
            deadline = time.monotonic() + self.window
            while len(self._pending) < self._active:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            batch, self._pending = self._pending, []
            return batch

    def _run(self) -> None:
        while True:
            batch = self._take()
            if not batch:
                with self._cond:
                    if not self._pending:
                        self._sender = None
                        return
                continue
            self._deliver(batch)

    def _deliver(self, batch: list[_Beat]) -> None:
        try:
            self.calls += 1
            self.sent += len(batch)
            if self._beat_rpc is None:  # a lost beat is not retried: the next one comes
                self._beat_rpc = self._rpc.with_options(retries=0, retry_for=0.0)
            value = self._beat_rpc.call(STATE, "sendHeartBeats", [b.item for b in batch])
            successful = value.get("Successful") or {}
            failed = value.get("Failed") or {}
            for beat in batch:
                key = str(beat.job_id)
                if key in successful:
                    beat.reply = _commands(successful[key])
                else:
                    why = failed.get(key) or {"Message": "no answer for this job"}
                    beat.error = RpcError(str(why.get("Message", "")),
                                          int(why.get("Errno") or 0))
        except RpcError as exc:
            if exc.status == 501 or exc.errno == 38:  # ENOSYS: an older server
                log.info("the server has no sendHeartBeats: one call per heartbeat")
                self.supported = False
                for beat in batch:
                    beat.unsupported = True
            else:
                for beat in batch:
                    beat.error = exc
        except (AttributeError, TypeError, ValueError) as exc:
            for beat in batch:
                beat.error = RpcError(f"unexpected sendHeartBeats reply: {exc}")
        finally:
            for beat in batch:
                beat.done.set()


def _commands(reply: Any) -> dict[str, Any]:
    return reply if isinstance(reply, dict) else {}
