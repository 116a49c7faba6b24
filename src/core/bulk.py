"""Bulk INSERTs straight to the driver's ``executemany``, for paths that write thousands of
rows at a time (job submission, transformation files and tasks).

SQLAlchemy processes the parameters of every row of an ``executemany`` (type processors,
parameter dictionaries, tens of microseconds a row): in a bulk submission that costs more
than the database's own work. :func:`insert_rows` compiles the SQLAlchemy statement once for
the connection's dialect, converts the values common to every row (``constants``:
timestamps...) once through their columns' types, and hands the rows to the driver: one
``executemany`` per 1,000 rows, which pymysql sends as one multi-row INSERT (MariaDB) and
sqlite3 runs in process.

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


@functools.lru_cache(maxsize=512)
def _compiled_insert(dialect: sa.engine.Dialect, table: sa.Table, keys: tuple[str, ...]) -> Any:
    """``table.insert()`` compiled for ``dialect`` (an engine's own: its server version may
    change the SQL) and these column keys; compiling costs ~0.5 ms, more than a row's insert."""
    return table.insert().compile(dialect=dialect, column_keys=list(keys))
