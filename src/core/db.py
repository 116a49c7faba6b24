"""Database engines and schema management for every system.

One decision for the whole project: **synchronous SQLAlchemy Core on a thread pool**. Service
methods that touch the database are plain functions run in the server's executor (never on the
IOLoop). Both backends use their standard synchronous drivers (``sqlite3``; ``pymysql`` or
mysqlclient's ``MySQLdb``), the same code runs in agents and CLIs without an event loop, and a
blocking call can never stall other requests. See docs/architecture.md for the reasons.

* ``sqlite:///path`` (the embedded default): WAL journal, ``synchronous=NORMAL``, foreign keys
  on, a 30 s busy timeout; several processes may share the file.
* ``mysql+pymysql://user:pw@host:port/db``: utf8mb4, READ COMMITTED, pre-ping, recycling.
  ``mysql+mysqldb://...`` (the same settings) uses mysqlclient, the C driver: 1.5-3x less
  client CPU per statement and per fetched row (``pip install pilotwms[mysqldb]``, which builds
  against libmariadb-dev).
  ``?failover=host2:port2,host3:port3`` adds hosts that new connections try in order when the
  first cannot be reached or is not ready (a Galera node outside the primary component); a
  pooled connection whose node leaves is dropped and replaced (see :func:`make_engine`).

Galera and InnoDB conflicts: a transaction that loses a certification conflict (or an InnoDB
deadlock) fails with error 1213, at COMMIT or at its next statement, and is rolled back whole.
:func:`retry_conflicts` re-runs a function that opens its own write transaction(s) when that
happens; use it on functions whose only effect is their transaction (they re-read what they
decide on), not on ones that also write files or call out.

Schemas: each system declares a :class:`Schema` (its ``MetaData`` and ordered migrations).
``pilotwms db init`` creates missing tables and stamps the newest version; ``pilotwms db upgrade``
runs the migrations newer than the stamped version, each in its own transaction, through
Alembic (one revision chain and version table per system, :mod:`core.migrations`).

Example::

    >>> import sqlalchemy as sa
    >>> md = sa.MetaData()
    >>> _ = sa.Table("t", md, sa.Column("id", sa.Integer, primary_key=True))
    >>> engine = make_engine("sqlite://")
    >>> schema = Schema("Demo", md, migrations=[])
    >>> init_schema(engine, schema)
    0
    >>> schema_version(engine, "Demo")
    0
"""

from __future__ import annotations

import contextvars
import functools
import logging
import random
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, ParamSpec, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.pool import StaticPool

from core.exceptions import ConfigError

log = logging.getLogger("pilotwms.db")

class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """A DATETIME stored as naive UTC and read back timezone-aware (UTC).

    MariaDB and SQLite have no time zone in DATETIME; storing naive UTC and tagging on read keeps
    every datetime in the code aware, as the project requires.
    """

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc)


def utcnow() -> datetime:
    """The current time, timezone-aware UTC, to the second (DIRAC's resolution on the wire)."""
    return datetime.now(timezone.utc).replace(microsecond=0)


#: seconds a new SQLite connection keeps trying to switch the file to WAL
WAL_SWITCH_SECONDS = 30.0


#: bound parameters one SQLite statement may hold: stock SQLite's default
#: (SQLITE_MAX_VARIABLE_NUMBER since 3.32), set on every connection so that a build raising it
#: (Debian's 250,000) behaves like any other; longer IN lists go as one JSON parameter
#: (:func:`in_values`)
SQLITE_MAX_VARIABLES = 32766


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    limit = sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER
    dbapi_conn.setlimit(limit, min(dbapi_conn.getlimit(limit), SQLITE_MAX_VARIABLES))
    cur = dbapi_conn.cursor()
    try:
        cur.execute("PRAGMA busy_timeout=30000")
        _sqlite_wal(cur)
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
    finally:
        cur.close()


def _sqlite_wal(cur: Any) -> None:
    """Switch the file to WAL (persistent: later connections find it so). Switching needs
    the file to itself and SQLite answers "database is locked" at once, without its busy
    handler, while another new connection is switching or recovering the same file: copies
    starting together on a fresh database try again, within :data:`WAL_SWITCH_SECONDS`."""
    deadline = time.monotonic() + WAL_SWITCH_SECONDS
    delay = 0.005
    while True:
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            if time.monotonic() + delay > deadline:
                raise
        time.sleep(delay * (0.5 + random.random()))  # noqa: S311 - jitter, not secrets
        delay = min(delay * 2, 0.5)


@compiles(sa.Table, "sqlite")
def _sqlite_table_hint(element: sa.Table, compiler: Any, **kw: Any) -> str:
    """SQLite's ``INDEXED BY``: ``select(...).with_hint(table, "INDEXED BY ix", "sqlite")``
    (SQLAlchemy renders table hints for MySQL/MariaDB, not for SQLite by itself)."""
    text: str = compiler.visit_table(element, **kw)
    hints = kw.get("fromhints")
    if kw.get("asfrom") and hints and element in hints:
        text += " " + hints[element]
    return text


def memory_sqlite(url: str | sa.engine.URL) -> bool:
    """Whether ``url`` is an in-memory SQLite database (one connection, one process).

    >>> memory_sqlite("sqlite://"), memory_sqlite("sqlite:///x.db"), memory_sqlite("mysql://h/d")
    (True, False, False)
    """
    parsed = sa.engine.make_url(url)
    return parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:")


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for ``url`` with the settings pilotwms relies on."""
    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError as exc:
        raise ConfigError(f"bad database URL {url!r}: {exc}") from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        memory = memory_sqlite(parsed)
        options: dict[str, Any] = {"connect_args": {"timeout": 30, "check_same_thread": False}}
        if memory:
            options["poolclass"] = StaticPool
        options.update(kwargs)
        engine = sa.create_engine(parsed, **options)
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        # let SQLAlchemy, not pysqlite, open transactions, so BEGIN IMMEDIATE works
        sa.event.listen(engine, "connect", _no_pysqlite_begin)
        sa.event.listen(engine, "begin", _sqlite_begin)
        return engine
    if backend in ("mysql", "mariadb"):
        if parsed.get_driver_name() not in MYSQL_DRIVERS:
            raise ConfigError(f"{url!r}: use the pymysql or the mysqldb driver "
                              "(mysql+pymysql://... or mysql+mysqldb://...)")
        options = {
            "pool_pre_ping": True,
            "pool_recycle": 3600,
            "pool_size": 10,
            "max_overflow": 20,
            "isolation_level": "READ COMMITTED",
        }
        options.update(kwargs)
        if parsed.get_driver_name() == "mysqldb":
            options["connect_args"] = {"cursorclass": _mysqldb_cursor(),
                                       **options.get("connect_args", {})}
        if "charset" not in parsed.query:
            parsed = parsed.update_query_dict({"charset": "utf8mb4"})
        failover = _failover_hosts(parsed)
        if failover:
            parsed = parsed.difference_update_query(["failover"])
        engine = sa.create_engine(parsed, **options)
        # a node that left the Galera primary component answers 1047/1927: drop that
        # connection from the pool instead of handing it out again
        sa.event.listen(engine, "handle_error", _mark_node_errors)
        if failover:
            sa.event.listen(engine, "do_connect", _failover_connect(failover))
        return engine
    raise ConfigError(f"unsupported database {backend!r} in {url!r} "
                      "(sqlite, mysql+pymysql or mysql+mysqldb)")


#: the MariaDB/MySQL drivers pilotwms runs on: pymysql (pure Python, the default install) and
#: mysqldb (mysqlclient, C; the ``mysqldb`` extra). Both get utf8mb4, READ COMMITTED, pre-ping
#: and recycling from :func:`make_engine`, and SQLAlchemy sets CLIENT.FOUND_ROWS for both, so
#: an UPDATE's rowcount is the rows matched on either.
MYSQL_DRIVERS = ("pymysql", "mysqldb")


@functools.cache
def _mysqldb_cursor() -> type:
    """mysqlclient's cursor with pymysql's statement size for a rewritten INSERT executemany
    (1 MB instead of 64 KB: a bulk submission's 10,000 JDL rows went in 190 round trips,
    now ~10; MariaDB's max_allowed_packet is 16 MB)."""
    from MySQLdb.cursors import Cursor

    return type("PilotWMSCursor", (Cursor,), {"max_stmt_length": 1024000})


def _failover_hosts(url: sa.engine.URL) -> list[tuple[str, int]]:
    raw = url.query.get("failover")
    if raw is None:
        return []
    text = ",".join(raw) if isinstance(raw, tuple) else raw
    hosts: list[tuple[str, int]] = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        host, sep, port = item.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ConfigError(f"database URL: failover host {item!r} is not host:port")
        hosts.append((host.strip("[]"), int(port)))
    return hosts


#: MariaDB errors meaning "this node cannot serve": 1047 (WSREP not ready: the node is outside
#: the primary component or still joining), 1927 (connection killed by a shutdown)
NODE_ERRORS = frozenset({1047, 1927})


def _error_code(exc: BaseException | None) -> int | None:
    args = getattr(exc, "args", None)
    if args and isinstance(args[0], int):
        return args[0]
    return None


def _mark_node_errors(context: Any) -> None:
    if _error_code(context.original_exception) in NODE_ERRORS:
        context.is_disconnect = True


def _node_ready(dbapi_conn: Any) -> bool:
    """Whether the server of ``dbapi_conn`` can serve: not a Galera node (``wsrep_on`` OFF or
    absent: a plain MariaDB reports ``wsrep_ready`` OFF too), or one in the primary component
    (``wsrep_ready`` ON)."""
    with dbapi_conn.cursor() as cur:
        cur.execute("SHOW VARIABLES LIKE 'wsrep_on'")
        row = cur.fetchone()
        if row is None or str(row[1]).upper() != "ON":
            return True
        cur.execute("SHOW STATUS LIKE 'wsrep_ready'")
        row = cur.fetchone()
    return row is None or str(row[1]).upper() == "ON"


def _failover_connect(alternates: list[tuple[str, int]]) -> Callable[..., Any]:
    """A ``do_connect`` hook: the URL's host first, then ``alternates``; a host that refuses
    or whose Galera node is not ready (``wsrep_ready`` OFF) is skipped."""

    def connect(dialect: Any, _record: Any, cargs: Any, cparams: dict[str, Any]) -> Any:
        first = (cparams.get("host", "localhost"), int(cparams.get("port", 3306)))
        failure: BaseException | None = None
        for host, port in [first, *(a for a in alternates if a != first)]:
            try:
                dbapi_conn = dialect.loaded_dbapi.connect(
                    *cargs, **{**cparams, "host": host, "port": port})
            except dialect.loaded_dbapi.OperationalError as exc:
                failure = exc
                continue
            if _node_ready(dbapi_conn):
                if (host, port) != first:
                    log.warning("database %s:%s unreachable or not ready; connected to %s:%s",
                                first[0], first[1], host, port)
                return dbapi_conn
            dbapi_conn.close()
            failure = dialect.loaded_dbapi.OperationalError(
                1047, f"{host}:{port} is not ready (wsrep_ready OFF)")
        assert failure is not None  # noqa: S101 - at least one host was tried
        raise failure

    return connect


# -- conflicts ---------------------------------------------------------------------------------

#: errors after which the failed transaction was rolled back whole and may simply be re-run:
#: 1213, InnoDB's deadlock and Galera's certification failure / brute-force abort
CONFLICT_ERRORS = frozenset({1213})
#: Galera errors of a node outside the primary component (while a dead node is being evicted,
#: or a partitioned one): 1047 refused statement, 1180 commit not replicated; the transaction
#: did not commit, and a new connection reaches a ready node (see ``?failover=``)
UNAVAILABLE_ERRORS = frozenset({1047, 1180})

P = ParamSpec("P")
R = TypeVar("R")

# set while a retry runs: its write transactions read causally on Galera (see below)
_retrying: contextvars.ContextVar[bool] = contextvars.ContextVar("pilotwms_retrying",
                                                                  default=False)


def is_conflict(exc: BaseException) -> bool:
    """True for a deadlock or Galera certification conflict (MariaDB error 1213)."""
    return (isinstance(exc, sa.exc.DBAPIError)
            and _error_code(exc.orig) in CONFLICT_ERRORS)


def rolled_back(exc: BaseException) -> bool:
    """True when ``exc`` is a database error after which the failing transaction was rolled
    back by the server (a conflict, or a Galera node outside the primary component)."""
    return isinstance(exc, sa.exc.DBAPIError) and _retryable(exc) is not None


def _retryable(exc: sa.exc.DBAPIError) -> str | None:
    code = _error_code(exc.orig)
    if code in CONFLICT_ERRORS:
        return "conflict"
    if code in UNAVAILABLE_ERRORS:
        return "unavailable"
    return None


def retry_conflicts(attempts: int = 5, base_delay: float = 0.005
                    ) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Re-run the decorated function when its transaction was rolled back by a conflict
    (:func:`is_conflict`) or by a Galera node outside the primary component (1047, 1180).

    For functions that open their own transaction(s) and have no other effect, so that a
    re-run decides again from fresh reads. Between attempts it sleeps a random 0.5-1.5 x
    ``base_delay`` x 2^n after a conflict, 0.25-2 s after an unavailable node (a dead node is
    evicted within seconds). During a re-run, :func:`write_transaction` reads causally on
    Galera (``wsrep_sync_wait``), so the claim that won is seen instead of being fought for
    again. Costs nothing when there is no conflict; SQLite never raises one.

        >>> calls = []
        >>> @retry_conflicts(attempts=3)
        ... def once() -> int:
        ...     calls.append(1)
        ...     return len(calls)
        >>> once()
        1
    """

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            try:  # the first attempt costs a call and a try (hot paths)
                return fn(*args, **kwargs)
            except sa.exc.DBAPIError as exc:
                if attempts < 2 or _retryable(exc) is None:
                    raise
                first = exc
            return _rerun(fn, args, kwargs, first, attempts, base_delay)

        return wrapper

    return decorate


def _rerun(fn: Callable[..., R], args: Any, kwargs: Any, error: sa.exc.DBAPIError,
           attempts: int, base_delay: float) -> R:
    token = _retrying.set(True)
    try:
        for attempt in range(1, attempts):
            kind = _retryable(error)
            jitter = 0.5 + random.random()  # noqa: S311 - back-off only
            delay = (base_delay * 2 ** (attempt - 1) if kind == "conflict"
                     else min(2.0, 0.25 * 2 ** (attempt - 1))) * jitter
            log.info("%s: %s (%s), attempt %d of %d", fn.__qualname__, kind, error.orig,
                     attempt, attempts)
            time.sleep(delay)
            try:
                return fn(*args, **kwargs)
            except sa.exc.DBAPIError as exc:
                if attempt + 1 >= attempts or _retryable(exc) is None:
                    raise
                error = exc
        raise AssertionError("unreachable")  # pragma: no cover
    finally:
        _retrying.reset(token)


def _sync_wait(conn: Connection, value: int) -> None:
    """``SET SESSION wsrep_sync_wait`` outside any transaction; ignored by servers without
    the variable (not built with Galera)."""
    try:
        conn.exec_driver_sql(f"SET SESSION wsrep_sync_wait={int(value)}")
        conn.commit()
    except sa.exc.DBAPIError:
        conn.rollback()


def _no_pysqlite_begin(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None


def _sqlite_begin(conn: Connection) -> None:
    # BEGIN IMMEDIATE takes the write lock at once: concurrent writers queue on busy_timeout
    # instead of failing with "database is locked" when a read transaction upgrades.
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.info.get("immediate") else "BEGIN")


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction that writes: on SQLite it takes the write lock up front (BEGIN IMMEDIATE),
    so read-then-write sequences (claims, counters) serialise instead of failing; on MariaDB it
    is an ordinary transaction (use ``SELECT ... FOR UPDATE`` where rows must be locked).
    """
    with engine.connect() as conn:
        conn.info["immediate"] = True
        causal = _retrying.get() and conn.dialect.name in ("mysql", "mariadb")
        if causal:
            _sync_wait(conn, 1)  # a re-run after a conflict sees the winner's write set
        try:
            with conn.begin():
                yield conn
        finally:
            conn.info.pop("immediate", None)
            if causal and not conn.invalidated:
                _sync_wait(conn, 0)


# -- schema management ------------------------------------------------------------------------

SCHEMA_TABLE = "pilotwms_schema"
_schema_md = sa.MetaData()
schema_versions = sa.Table(
    SCHEMA_TABLE,
    _schema_md,
    sa.Column("system", sa.String(64), primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("updated", UTCDateTime, nullable=False),
)

Migration = Callable[[Connection], None]


@dataclass(frozen=True)
class Reversible:
    """A migration step that can be undone: ``pilotwms db downgrade`` runs ``downgrade``.

    Used in ``Schema.migrations`` like a plain function (calling it upgrades).
    """

    upgrade: Migration
    downgrade: Migration

    def __call__(self, conn: Connection) -> None:
        self.upgrade(conn)


@dataclass
class Schema:
    """A system's tables and its migrations; version N is reached by running migration N-1
    (Alembic revision ``<system>_000N``, see :mod:`core.migrations`)."""

    system: str
    metadata: sa.MetaData
    migrations: Sequence[Migration] = field(default_factory=list)
    #: named repairs an administrator may run (``pilotwms db repair NAME``): each takes the
    #: system's engine and returns a one-line report
    repairs: Mapping[str, Callable[[Engine], str]] = field(default_factory=dict)

    @property
    def latest(self) -> int:
        return len(self.migrations)


def schema_version(engine: Engine, system: str) -> int | None:
    """The version of ``system``'s schema, None when never initialised."""
    from core import migrations

    return migrations.schema_version(engine, system)


def init_schema(engine: Engine, schema: Schema) -> int:
    """Create what is missing, a new schema stamped at its head; returns the version reached.
    Safe when several processes start together (see :func:`core.migrations.init_schema`)."""
    from core import migrations

    return migrations.init_schema(engine, schema)


def upgrade_schema(engine: Engine, schema: Schema) -> int:
    """Run the pending migrations through Alembic, each step in its own transaction."""
    from core import migrations

    return migrations.upgrade_schema(engine, schema)
