"""Bulk INSERTs straight to the driver's ``executemany``, for paths that write thousands of
rows at a time (job submission, transformation files and tasks).

SQLAlchemy processes the parameters of every row of an ``executemany`` (type processors,
parameter dictionaries, tens of microseconds a row): in a bulk submission that costs more
than the database's own work. :func:`insert_rows` compiles the SQLAlchemy statement once for
the connection's dialect, converts the values common to every row (``constants``:
timestamps...) once through their columns' types, and hands the rows to the driver: one
``executemany`` per 1,000 rows, which pymysql and mysqlclient (``MySQLdb``) send as multi-row
INSERTs (MariaDB) and sqlite3 runs in process.

On MariaDB (either driver) the statement is written out here rather than by the driver's
executemany: the constants are escaped once and written into the row template as literals, so
each row costs the escaping of its own values only (pymysql's rewrite would escape every
constant again for every row: 9.5 us against 1.3 us per row of ``ts_files``, 8 values of which
6 constant), and the rows are joined into multi-row INSERTs of at most
:data:`MAX_STATEMENT` bytes, one round trip each. Both drivers' cursors have the ``mogrify``
this needs (the text the driver would send for a template and its values; mysqlclient since
2.2).

Caveat: the rows' own values go to the driver as they are, so they must be plain ``int``,
``str`` (a ``StrEnum`` member is a ``str``), ``float`` or None, for columns whose type needs no
conversion (strings, integers, texts); give datetimes and other typed values as
``constants``. Python-side column defaults are not applied (server defaults are).

Example::

    >>> import sqlalchemy as sa
    >>> from datetime import datetime, timezone
    >>> from core.db import UTCDateTime, make_engine
    >>> md = sa.MetaData()
    >>> t = sa.Table("t", md, sa.Column("id", sa.Integer, primary_key=True),
    ...              sa.Column("name", sa.String(10)), sa.Column("at", UTCDateTime))
    >>> engine = make_engine("sqlite://"); md.create_all(engine)
    >>> at = datetime(2026, 1, 1, tzinfo=timezone.utc)
    >>> with engine.begin() as conn:
    ...     insert_rows(conn, t, [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
    ...                 constants={"at": at})
    ...     conn.execute(sa.select(t.c.name, t.c.at).order_by(t.c.id)).all()[-1]
    2
    ('b', datetime.datetime(2026, 1, 1, 0, 0, tzinfo=datetime.timezone.utc))
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

__all__ = ["CHUNK", "insert_rows"]

#: rows per ``executemany`` (keeps MariaDB's multi-row INSERTs under max_allowed_packet)
CHUNK = 1000
#: from this many rows on, MariaDB's drivers get the constants as literals (the statement is
#: then compiled for each call, ~0.5 ms: worth it only when the rows save more escaping)
LITERAL_ROWS = 100
#: the drivers whose cursors escape like MariaDB's client library (``mogrify``)
LITERAL_DRIVERS = frozenset({"pymysql", "mysqldb"})
#: bytes per written-out multi-row INSERT: pymysql's own ``max_stmt_length`` (mysqlclient's
#: is 64 KB, 16 round trips where one does), far below MariaDB's max_allowed_packet (16 MB)
MAX_STATEMENT = 1024000


def insert_rows(conn: Connection, table: sa.Table, rows: Sequence[Mapping[str, Any]], *,
                constants: Mapping[str, Any] | None = None, statement: Any = None,
                chunk: int = CHUNK) -> int:
    """Insert ``rows`` (all with the same keys) plus ``constants`` into ``table``; returns
    the driver's count of inserted rows.

    ``statement``: the INSERT to run instead of ``table.insert()`` (e.g. an insert-ignore
    variant for the dialect); its values come from the rows as for a plain INSERT.
    """
    if not rows:
        return 0
    dialect = conn.dialect
    fixed: dict[str, Any] = {}
    for key, value in (constants or {}).items():
        processor = table.c[key].type.dialect_impl(dialect).bind_processor(dialect)
        fixed[key] = processor(value) if processor is not None else value
    keys = (*rows[0], *fixed)
    if fixed and len(rows) >= LITERAL_ROWS and dialect.driver in LITERAL_DRIVERS:
        stmt = statement if statement is not None else table.insert()
        written = _literal_rows(conn, stmt, rows, fixed, chunk)
        if written is not None:
            return written
    if statement is None:  # compiled once per engine, table and keys: single jobs are hot too
        compiled = _compiled_insert(dialect, table, keys)
    else:
        compiled = statement.compile(dialect=dialect, column_keys=list(keys))
    positions = compiled.positiontup if compiled.positional else None
    total = 0
    for start in range(0, len(rows), chunk):
        batch = rows[start:start + chunk]
        if positions is not None:
            if fixed:
                params: Any = [tuple(row[n] if n in row else fixed[n] for n in positions)
                               for row in batch]
            else:
                params = [tuple(row[n] for n in positions) for row in batch]
        else:
            params = [{**row, **fixed} for row in batch] if fixed else list(batch)
        total += conn.exec_driver_sql(compiled.string, params).rowcount or 0
    return total


def _literal_rows(conn: Connection, stmt: Any, rows: Sequence[Mapping[str, Any]],
                  fixed: Mapping[str, Any], chunk: int) -> int | None:
    """Multi-row INSERTs with the constants written once as literals; None when the
    statement's shape is not a plain ``INSERT ... VALUES (...)`` (the caller then uses the
    driver's executemany)."""
    if getattr(stmt, "_post_values_clause", None) is not None:
        return None  # e.g. ON DUPLICATE KEY UPDATE after the values
    raw = conn.connection.dbapi_connection
    assert raw is not None  # noqa: S101 - an open connection
    cursor = raw.cursor()
    mogrify = cursor.mogrify  # the text the driver would send for (template, values)
    # the constants as the driver escapes them (literal_column keeps a '%' doubled for the
    # format paramstyle, which the row formatting undoes)
    values: dict[str, Any] = {k: sa.literal_column(str(mogrify("%s", (v,))))
                              for k, v in fixed.items()}
    names = list(rows[0])
    compiled = stmt.values(values).compile(dialect=conn.dialect, column_keys=names)
    head, sep, template = compiled.string.partition(" VALUES ")
    if not sep or not template.startswith("(") or not template.endswith(")"):
        return None
    marks = template.replace("%%", "")
    if compiled.positional:  # format paramstyle (MySQLdb's): values by position
        order = list(compiled.positiontup or [])
        if sorted(order) != sorted(names) or marks.count("%s") != len(names):
            return None

        def values_of(row: Mapping[str, Any]) -> Any:
            return tuple(row[n] for n in order)
    else:  # pyformat (pymysql's default): the rows are the parameters as they are
        if marks.count("%(") != len(names) or \
                any(f"%({n})s" not in marks for n in names):
            return None

        def values_of(row: Mapping[str, Any]) -> Any:
            return row
    limit = MAX_STATEMENT
    total = 0
    for start in range(0, len(rows), chunk):
        parts: list[str] = []
        size = len(head)
        for row in rows[start:start + chunk]:
            text = mogrify(template, values_of(row))
            if parts and size + len(text) + 8 > limit:
                total += _send(conn, head, parts)
                parts, size = [], len(head)
            parts.append(text)
            size += len(text) + 1
        total += _send(conn, head, parts)
    return total


def _send(conn: Connection, head: str, rows: list[str]) -> int:
    """One multi-row INSERT, already written out: ``no_parameters`` makes SQLAlchemy call
    ``cursor.execute(sql)`` without parameters, so the driver does not %-format it again."""
    result = conn.exec_driver_sql(f"{head} VALUES {','.join(rows)}",
                                  execution_options={"no_parameters": True})
    return int(result.rowcount or 0)


@functools.lru_cache(maxsize=512)
def _compiled_insert(dialect: sa.engine.Dialect, table: sa.Table, keys: tuple[str, ...]) -> Any:
    """``table.insert()`` compiled for ``dialect`` (an engine's own: its server version may
    change the SQL) and these column keys; compiling costs ~0.5 ms, more than a row's insert."""
    return table.insert().compile(dialect=dialect, column_keys=list(keys))
