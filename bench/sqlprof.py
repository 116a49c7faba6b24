"""Per-statement profile of the database work of a benchmark step: round trips and time.

Usage (inside a benchmark)::

    from bench.sqlprof import SqlProfile

    with SqlProfile(server_pid=mariadbd_pid) as prof:
        run_the_step()
    prof.report("attach and group")

Every statement SQLAlchemy sends (``before_cursor_execute``/``after_cursor_execute`` on all
engines) is grouped under its text with the parameters and the repeated ``VALUES`` tuples /
``IN`` lists folded, and counted with its rows of parameters and its time in the driver. On
pymysql and mysqlclient the real round trips are counted too: ``Connection.query`` (one per
statement sent: both drivers rewrite an INSERT executemany into multi-row INSERTs, but run
any other executemany row by row), ``commit``, ``rollback`` and ``ping`` (the pool's pre-ping), each
with the time spent waiting for the server (send + server work + reading the reply).

The report prints wall time, this process's CPU, the MariaDB server's CPU (from
``/proc/<pid>/stat`` of a private server) and the statements sorted by time. Time "in the
driver" on SQLite is the database's own work (in this process); on MariaDB it is mostly the
round trip (waiting for mariadbd), plus pymysql's escaping and reading of rows.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import sqlalchemy as sa

_PARAM = re.compile(r"%\(\w+\)s|%s|\?|:\w+")
_TUPLES = re.compile(r"\((?:\s*\?\s*,)*\s*\?\s*\)(?:\s*,\s*\((?:\s*\?\s*,)*\s*\?\s*\))+")
_LIST = re.compile(r"\((?:\s*\?\s*,)+\s*\?\s*\)")
_NUMBERS = re.compile(r"(?<![\w.])\d+(?![\w.])")
_SPACES = re.compile(r"\s+")


def normalise(statement: str) -> str:
    """The statement's shape: parameters as ``?``, tuple lists and IN lists folded; a
    multi-row INSERT written out with its values (``core.bulk``) is cut at its VALUES
    (regular expressions over a megabyte statement would cost more than the statement)."""
    head, sep, _values = statement[:4000].partition(" VALUES ")
    if sep and head.lstrip().upper().startswith("INSERT") and "%" not in _values[:200] \
            and "?" not in _values[:200]:
        return _SPACES.sub(" ", head).strip() + " VALUES (..),.. [written out]"
    text = _SPACES.sub(" ", _PARAM.sub("?", statement)).strip()
    text = _TUPLES.sub("(..),..", text)
    text = _LIST.sub("(..)", text)
    return _NUMBERS.sub("N", text)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (0 if it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rfind(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class _Stat:
    __slots__ = ("calls", "rows", "seconds", "trips", "wait")

    def __init__(self) -> None:
        self.calls = 0
        self.rows = 0
        self.seconds = 0.0
        self.trips = 0
        self.wait = 0.0


class SqlProfile:
    """Collects statements while active (a context manager); :meth:`report` prints them."""

    def __init__(self, server_pid: int | None = None, width: int = 110) -> None:
        self.server_pid = server_pid
        self.width = width
        self.stats: dict[str, _Stat] = defaultdict(_Stat)
        self._local = threading.local()
        self._patched: list[tuple[Any, str, Any]] = []
        self.wall = self.cpu = self.server_cpu = 0.0

    # SQLAlchemy events -------------------------------------------------------------------
    def _before(self, conn: Any, cursor: Any, statement: str, parameters: Any, context: Any,
                executemany: bool) -> None:
        key = normalise(statement)
        self._local.key = key
        self._local.started = time.perf_counter()
        stat = self.stats[key]
        stat.calls += 1
        stat.rows += len(parameters) if executemany else 1

    def _after(self, conn: Any, cursor: Any, statement: str, parameters: Any, context: Any,
               executemany: bool) -> None:
        self.stats[self._local.key].seconds += time.perf_counter() - self._local.started
        self._local.key = None

    # pymysql round trips -----------------------------------------------------------------
    def _wrap(self, owner: Any, name: str, label: str | None) -> None:
        original = getattr(owner, name)
        profile = self

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                key = label or getattr(profile._local, "key", None) or "(outside SQLAlchemy)"
                stat = profile.stats[key]
                stat.trips += 1
                stat.wait += time.perf_counter() - started
                if label is not None:
                    stat.calls += 1
                    stat.seconds += time.perf_counter() - started

        setattr(owner, name, timed)
        self._patched.append((owner, name, original))

    def __enter__(self) -> SqlProfile:
        sa.event.listen(sa.engine.Engine, "before_cursor_execute", self._before)
        sa.event.listen(sa.engine.Engine, "after_cursor_execute", self._after)
        try:
            import pymysql.connections as pc
        except ImportError:  # pragma: no cover - SQLite only
            pass
        else:
            self._wrap(pc.Connection, "query", None)
            self._wrap(pc.Connection, "commit", "COMMIT")
            self._wrap(pc.Connection, "rollback", "ROLLBACK")
            self._wrap(pc.Connection, "ping", "PING (pool pre-ping)")
        try:  # mysqlclient: the same methods on its Python subclass of _mysql.connection
            import MySQLdb.connections as mc
        except ImportError:  # pragma: no cover - not installed
            pass
        else:
            self._wrap(mc.Connection, "query", None)
            self._wrap(mc.Connection, "commit", "COMMIT")
            self._wrap(mc.Connection, "rollback", "ROLLBACK")
            self._wrap(mc.Connection, "ping", "PING (pool pre-ping)")
        self._wall0, self._cpu0 = time.perf_counter(), time.process_time()
        self._server0 = cpu_seconds(self.server_pid) if self.server_pid else 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self._wall0
        self.cpu = time.process_time() - self._cpu0
        if self.server_pid:
            self.server_cpu = cpu_seconds(self.server_pid) - self._server0
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", self._before)
        sa.event.remove(sa.engine.Engine, "after_cursor_execute", self._after)
        for owner, name, original in reversed(self._patched):
            setattr(owner, name, original)
        self._patched.clear()

    def report(self, title: str, top: int = 25) -> None:
        calls = sum(s.calls for s in self.stats.values())
        trips = sum(s.trips for s in self.stats.values())
        driver = sum(s.seconds for s in self.stats.values())
        wait = sum(s.wait for s in self.stats.values())
        server = f", mariadbd CPU {self.server_cpu:.1f} s" if self.server_pid else ""
        print(f"  SQL profile of {title}: wall {self.wall:.2f} s, this process CPU "
              f"{self.cpu:.2f} s{server}; {calls:,} statements, {trips:,} round trips to "
              f"the server, {driver:.2f} s in the driver ({wait:.2f} s waiting for replies)")
        print(f"    {'calls':>7} {'rows':>8} {'trips':>7} {'driver s':>8} {'wait s':>7}  "
              "statement")
        ranked = sorted(self.stats.items(), key=lambda kv: -max(kv[1].seconds, kv[1].wait))
        for key, s in ranked[:top]:
            text = key if len(key) <= self.width else key[:self.width - 3] + "..."
            print(f"    {s.calls:>7,} {s.rows:>8,} {s.trips:>7,} {s.seconds:>8.2f} "
                  f"{s.wait:>7.2f}  {text}")
