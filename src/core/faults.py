"""Faults of the machine a server runs on, turned into the clear errors clients get.

A full disk or a database that went away are not bugs of a request: the client must be told
what happened (and that it may retry) rather than receive an anonymous HTTP 500. The RPC server
and the streaming upload routes pass every unexpected exception through :func:`service_error`:

* ``OSError`` ENOSPC / EDQUOT, and SQLite's "database or disk is full" ->
  :class:`~core.exceptions.StorageFullError` (nothing of the request was kept);
* a database that cannot be reached (MariaDB down or restarting, a connection lost in the
  middle of a request, SQLite locked past its busy timeout, the connection pool exhausted) ->
  :class:`~core.exceptions.DatabaseUnavailableError`, HTTP 503 with ``Retry-After``: the
  request's transaction did not commit, so the client may send it again.

Example::

    >>> import errno
    >>> type(service_error(OSError(errno.ENOSPC, "No space left on device"))).__name__
    'StorageFullError'
    >>> service_error(ValueError("a bug")) is None
    True
"""

from __future__ import annotations

import errno as _errno
import logging
import time
from collections.abc import Callable, Iterable
from typing import TypeVar

import sqlalchemy as sa

from core.exceptions import DatabaseUnavailableError, PilotWMSError, StorageFullError

log = logging.getLogger("pilotwms.faults")
T = TypeVar("T")

#: MySQL/MariaDB client and server codes meaning "the server is not there (any more)"
MYSQL_GONE = frozenset({
    1040,  # too many connections
    1053,  # server shutdown in progress
    1927,  # connection was killed
    2002, 2003,  # cannot connect (socket, TCP)
    2006,  # server has gone away
    2013,  # lost connection during query
    2014, 2045, 2055,  # commands out of sync / lost connection variants
    4031,  # disconnected by the server for inactivity (MariaDB's client library says so)
})
# pymysql and mysqlclient (MySQLdb) both raise OperationalError(code, message) with these
# codes; a closed connection is pymysql's InterfaceError(0, '') and mysqlclient's
# OperationalError(2006, '').
_SQLITE_FULL = ("database or disk is full", "disk i/o error")
_SQLITE_BUSY = ("database is locked", "unable to open database file")


def _mysql_code(exc: sa.exc.DBAPIError) -> int | None:
    args = getattr(exc.orig, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def is_disconnect(exc: BaseException) -> bool:
    """Whether a database error means the database could not be reached (not a bad query)."""
    if isinstance(exc, sa.exc.TimeoutError | sa.exc.DisconnectionError):
        return True  # pool exhausted / connection refused by a pool event
    if not isinstance(exc, sa.exc.DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    if isinstance(exc, sa.exc.InterfaceError):
        return True  # pymysql: operation on a closed connection (MySQLdb: 2006)
    if isinstance(exc, sa.exc.OperationalError):
        code = _mysql_code(exc)
        if code is not None:
            return code in MYSQL_GONE
        text = str(exc.orig).lower()
        return any(s in text for s in _SQLITE_BUSY)
    return False


def service_error(exc: BaseException) -> PilotWMSError | None:
    """The error a client should get for ``exc``; None when ``exc`` is a bug (HTTP 500)."""
    if isinstance(exc, PilotWMSError):
        return exc
    if isinstance(exc, OSError) and exc.errno in (_errno.ENOSPC, _errno.EDQUOT):
        where = f": {exc.filename}" if exc.filename else ""
        return StorageFullError(f"the server's storage is full{where}; nothing was kept")
    if isinstance(exc, sa.exc.OperationalError) and any(
            s in str(exc.orig).lower() for s in _SQLITE_FULL):
        return StorageFullError("the database's disk is full; nothing was kept")
    if is_disconnect(exc):
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0][:200]
        return DatabaseUnavailableError(f"the database cannot be reached ({reason}); "
                                        "nothing was changed, try again")
    return None


def wait_for_databases(urls: Iterable[str], *, timeout: float,
                       connect: Callable[[str], None] | None = None,
                       sleep: Callable[[float], None] = time.sleep) -> None:
    """Block until every database in ``urls`` answers, logging a clear message while one
    does not; after ``timeout`` seconds raise :class:`DatabaseUnavailableError`.

    >>> wait_for_databases(["sqlite://"], timeout=1)
    """
    from core.db import make_engine  # core.db imports nothing of this module

    def probe(url: str) -> None:
        engine = make_engine(url)
        try:
            with engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
        finally:
            engine.dispose()

    check = connect or probe
    for url in dict.fromkeys(urls):
        shown = sa.engine.make_url(url).render_as_string(hide_password=True)
        deadline = time.monotonic() + timeout
        pause = 0.5
        while True:
            try:
                check(url)
                break
            except sa.exc.SQLAlchemyError as exc:
                if not is_disconnect(exc):
                    raise
                left = deadline - time.monotonic()
                reason = str(getattr(exc, "orig", None) or exc).splitlines()[0][:200]
                if left <= 0:
                    raise DatabaseUnavailableError(
                        f"database {shown} unreachable for {timeout:.0f} s: {reason}") from None
                log.warning("database %s unreachable (%s); retrying in %.1f s (giving up in "
                            "%.0f s)", shown, reason, pause, left)
                sleep(min(pause, left))
                pause = min(pause * 2, 10.0)
        log.info("database %s answers", shown)
