"""Payload process trees from /proc: CPU, memory, kill; and the per-job watchdog thread.

The payload runs in its own session (process group); the watchdog samples its tree every
``check`` seconds, sends ``sendHeartBeat`` every ``heartbeat`` seconds, obeys ``Kill`` from the
reply and enforces the job's CPU limit and the queue's wall-clock limit. With ``peek``, each
heartbeat also carries the last lines of the payload's standard output as the static
parameter ``StandardOutput`` (DIRAC's watchdog does the same; ``Dirac().peekJob`` and the
portal show it).

Example::

    >>> import os
    >>> cpu, rss, vsize = tree_usage(os.getpid())
    >>> cpu >= 0 and rss > 0
    True
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

#: reasons a watchdog stops a payload (DIRAC's minor statuses)
CPU_LIMIT = "Job has reached the CPU limit of the queue"
WALL_LIMIT = "Job has exceeded maximum wall clock time"
KILL_SIGNAL = "Received Kill signal"
KILLED = "Killed"  # a Kill command from the server
NOT_OURS = "Job no longer assigned to this pilot"  # a heartbeat refused: stalled, rescheduled
#: the errno of the server's refusal of a report (JobNotActiveError, DIRAC's EWMSSTATUS)
JOB_NOT_ACTIVE = 1505
#: lines of output sent with each heartbeat (DIRAC's MaxJobPeekLines), and bytes read for them
PEEK_LINES = 20
PEEK_BYTES = 16 * 1024


def tail(path: str, lines: int = PEEK_LINES, limit: int = PEEK_BYTES) -> str | None:
    """The last ``lines`` lines of a file (None when it cannot be read).

    >>> import tempfile
    >>> with tempfile.NamedTemporaryFile("w", delete=False) as f:
    ...     _ = f.write("".join(f"line {i}\\n" for i in range(30)))
    >>> tail(f.name, 2)
    'line 28\\nline 29\\n'
    """
    try:
        with open(path, "rb") as stream:
            stream.seek(0, os.SEEK_END)
            size = stream.tell()
            stream.seek(max(0, size - limit))
            data = stream.read(limit)
    except OSError:
        return None
    text = data.decode("utf-8", errors="replace")
    if size > limit:
        text = text.split("\n", 1)[-1]  # the first line read may be cut
    kept = text.splitlines(keepends=True)[-lines:]
    return "".join(kept)


def _stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stream:
            text = stream.read()
    except OSError:
        return None
    # fields after the command name (which may hold spaces and parentheses)
    return text[text.rfind(")") + 2:].split()


def children_map() -> dict[int, list[int]]:
    """ppid -> pids of every process visible in /proc."""
    tree: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            fields = _stat(int(name))
            if fields:
                tree.setdefault(int(fields[1]), []).append(int(name))
    return tree


def process_tree(root: int) -> list[int]:
    """``root`` and its live descendants."""
    tree = children_map()
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        if _stat(pid) is None:
            continue
        found.append(pid)
        todo.extend(tree.get(pid, []))
    return found


def tree_usage(root: int) -> tuple[float, int, int]:
    """(CPU seconds, RSS bytes, VSize bytes) of the tree; CPU includes reaped children."""
    cpu_ticks, rss, vsize = 0, 0, 0
    for pid in process_tree(root):
        fields = _stat(pid)
        if fields is None or len(fields) < 22:
            continue
        # utime stime cutime cstime are fields 14-17 (index 11-14 here), vsize 23, rss 24
        cpu_ticks += sum(int(v) for v in fields[11:15])
        vsize += int(fields[20])
        rss += int(fields[21]) * PAGE
    return cpu_ticks / TICKS, rss, vsize


def kill_tree(root: int, pgid: int | None, grace: float = 2.0) -> None:
    """SIGTERM the payload's process group (and tree), then SIGKILL what survives."""
    pids = set(process_tree(root))
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if pgid is not None:
            try:
                os.killpg(pgid, sig)
            except OSError:
                pass
        for pid in pids:
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        deadline = time.monotonic() + (grace if sig == signal.SIGTERM else 0)
        while time.monotonic() < deadline:
            pids = {p for p in pids if _alive(p)} | set(process_tree(root))
            if not pids:
                return
            time.sleep(0.05)
        pids |= set(process_tree(root))


def _alive(pid: int) -> bool:
    fields = _stat(pid)
    return fields is not None and fields[0] != "Z"


class Watchdog(threading.Thread):
    """Watch one payload. ``heartbeat(dynamic, static)`` returns the server's commands."""

    def __init__(self, pid: int, *, heartbeat: Callable[[dict[str, Any], dict[str, Any]],
                                                         dict[str, Any]],
                 workdir: str, period: float = 60.0, check: float = 5.0,
                 cpu_limit: float | None = None, wall_limit: float | None = None,
                 log: Callable[[str], None] = print,
                 peek: Callable[[], str | None] | None = None, align: bool = False) -> None:
        super().__init__(daemon=True, name=f"watchdog-{pid}")
        self.pid = pid
        self.pgid = pid  # started with start_new_session
        self.send = heartbeat
        self.workdir = workdir
        self.period = period
        self.check = min(check, period)
        self.cpu_limit = cpu_limit
        self.wall_limit = wall_limit
        self.log = log
        self.peek = peek
        #: beat at multiples of the period, as the other watchdogs of the pilot do (their
        #: heartbeats then leave together: pilot.heartbeats)
        self.align = align
        self.started = time.monotonic()
        self.reason: str | None = None
        self.cpu = 0.0
        self.max_rss = 0
        self.max_vsize = 0
        self._halt = threading.Event()

    def stop(self) -> None:
        self._halt.set()

    def terminate(self, reason: str) -> None:
        """Kill the payload tree (first reason wins)."""
        if self.reason is None:
            self.reason = reason
            self.log(f"killing payload {self.pid}: {reason}")
        kill_tree(self.pid, self.pgid)

    def sample(self) -> dict[str, Any]:
        cpu, rss, vsize = tree_usage(self.pid)
        self.cpu = max(self.cpu, cpu)
        self.max_rss = max(self.max_rss, rss)
        self.max_vsize = max(self.max_vsize, vsize)
        wall = time.monotonic() - self.started
        return {"CPUConsumed": round(self.cpu, 2), "RSS": rss // 1024, "Vsize": vsize // 1024,
                "MemoryUsed": rss // 1024, "WallClockTime": round(wall, 1),
                "AvailableDiskSpace": shutil.disk_usage(self.workdir).free // 2 ** 20,
                "LoadAverage": round(os.getloadavg()[0], 2)}

    def _next_beat(self, now: float) -> float:
        if self.align and self.period > 0:
            return (now // self.period + 1) * self.period
        return now + self.period

    def run(self) -> None:
        next_beat = self._next_beat(time.monotonic())
        while not self._halt.wait(self.check):
            try:
                dynamic = self.sample()
            except OSError as exc:  # pragma: no cover - /proc vanished under us
                self.log(f"watchdog sample failed: {exc}")
                continue
            if self.cpu_limit is not None and self.cpu > self.cpu_limit:
                self.terminate(CPU_LIMIT)
            elif self.wall_limit is not None and dynamic["WallClockTime"] > self.wall_limit:
                self.terminate(WALL_LIMIT)
            if time.monotonic() < next_beat or self._halt.is_set():
                continue
            next_beat = self._next_beat(time.monotonic())
            try:
                recent = self.peek() if self.peek is not None else None
                static = {"StandardOutput": recent} if recent else {}
                commands = self.send(dynamic, static) or {}
            except Exception as exc:  # noqa: BLE001 - a lost heartbeat is not fatal
                if getattr(exc, "errno", None) == JOB_NOT_ACTIVE:
                    self.log(f"heartbeat refused: {exc}")
                    self.terminate(NOT_OURS)  # the job runs elsewhere now, or is over
                    return
                self.log(f"heartbeat failed: {exc}")
                continue
            if "Kill" in commands:
                self.terminate(KILLED)
