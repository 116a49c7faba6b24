"""Database engines and schema management for every system.

One decision for the whole project: **synchronous SQLAlchemy Core on a thread pool**. Service
methods that touch the database are plain functions run in the server's executor (never on the
IOLoop). Both backends use their standard synchronous drivers (``sqlite3``, ``pymysql``), the
same code runs in agents and CLIs without an event loop, and a blocking call can never stall
other requests. See docs/architecture.md for the reasons.

* ``sqlite:///path`` (the embedded default): WAL journal, ``synchronous=NORMAL``, foreign keys
  on, a 30 s busy timeout; several processes may share the file.
* ``mysql+pymysql://user:pw@host:port/db``: utf8mb4, READ COMMITTED, pre-ping, recycling.

Schemas: each system declares a :class:`Schema` (its ``MetaData`` and ordered migrations).
``pilotwms db init`` creates missing tables and stamps the newest version; ``pilotwms db upgrade``
runs the migrations newer than the stamped version, each in its own transaction.

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

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import StaticPool

from core.exceptions import ConfigError, DatabaseError


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


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for ``url`` with the settings pilotwms relies on."""
    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError as exc:
        raise ConfigError(f"bad database URL {url!r}: {exc}") from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        memory = parsed.database in (None, "", ":memory:")
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
        if parsed.get_driver_name() not in ("pymysql",):
            raise ConfigError(f"{url!r}: use the pymysql driver (mysql+pymysql://...)")
        options = {
            "pool_pre_ping": True,
            "pool_recycle": 3600,
            "pool_size": 10,
            "max_overflow": 20,
            "isolation_level": "READ COMMITTED",
        }
        options.update(kwargs)
        if "charset" not in parsed.query:
            parsed = parsed.update_query_dict({"charset": "utf8mb4"})
        return sa.create_engine(parsed, **options)
    raise ConfigError(f"unsupported database {backend!r} in {url!r} (sqlite or mysql+pymysql)")


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
        try:
            with conn.begin():
                yield conn
        finally:
            conn.info.pop("immediate", None)


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


@dataclass
class Schema:
    """A system's tables and its migrations; version N is reached by running migration N-1."""

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
    """The stamped version of ``system``'s schema, None when never initialised."""
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table(SCHEMA_TABLE):
            return None
        return _version(conn, system)


def _version(conn: Connection, system: str) -> int | None:
    row = conn.execute(
        sa.select(schema_versions.c.version).where(schema_versions.c.system == system)
    ).first()
    return None if row is None else int(row[0])


def _stamp(conn: Connection, system: str, version: int, exists: bool) -> None:
    values = {"version": version, "updated": utcnow()}
    if exists:
        conn.execute(
            sa.update(schema_versions).where(schema_versions.c.system == system).values(**values)
        )
    else:
        conn.execute(sa.insert(schema_versions).values(system=system, **values))


def init_schema(engine: Engine, schema: Schema) -> int:
    """Create what is missing; a new schema is stamped at its latest version. Returns it.

    Safe when several processes start at once: on SQLite the check and the creation are one
    ``BEGIN IMMEDIATE`` transaction (a second creator waits for the first instead of failing
    with "database is locked" when its read snapshot went stale); elsewhere a creator that
    loses the race to stamp the version upgrades instead.
    """
    try:
        with write_transaction(engine) as conn:
            _schema_md.create_all(conn)
            current = _version(conn, schema.system)
            if current is None:
                schema.metadata.create_all(conn)
                _stamp(conn, schema.system, schema.latest, exists=False)
                return schema.latest
    except sa.exc.IntegrityError:
        pass  # another process stamped it first (MariaDB: DDL commits on its own)
    except sa.exc.SQLAlchemyError as exc:
        raise DatabaseError(f"cannot create the {schema.system} schema: {exc}") from exc
    return upgrade_schema(engine, schema)


def upgrade_schema(engine: Engine, schema: Schema) -> int:
    """Run pending migrations in order; each one commits with its new version stamp."""
    current = schema_version(engine, schema.system)
    if current is None:
        return init_schema(engine, schema)
    if current > schema.latest:
        raise DatabaseError(
            f"{schema.system} schema is at version {current}, newer than this pilotwms "
            f"({schema.latest}): upgrade the software first"
        )
    for version in range(current, schema.latest):
        try:
            with write_transaction(engine) as conn:
                reached = _version(conn, schema.system)
                if reached is not None and reached > version:
                    continue  # another process ran it meanwhile
                schema.migrations[version](conn)
                _stamp(conn, schema.system, version + 1, exists=True)
        except sa.exc.SQLAlchemyError as exc:
            raise DatabaseError(
                f"{schema.system} migration {version} -> {version + 1} failed: {exc}"
            ) from exc
    # tables added to the metadata without a migration (new tables) are created too
    with write_transaction(engine) as conn:
        schema.metadata.create_all(conn)
    return schema.latest
