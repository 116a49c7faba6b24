"""Multi-row statements compiled once per process and dialect, for the report path.

:func:`core.bulk.insert_rows` compiles a given statement on every call (half a millisecond
for an upsert; only plain INSERTs are cached there): fine for a bulk submission of thousands
of rows, a tenth of the cost of a batch of 40 heartbeats. :func:`executemany` keeps the
compiled SQL text of each statement and hands the rows straight to the driver's
``executemany`` (multi-row INSERTs per 1,000 rows on MariaDB with pymysql or mysqlclient, whose
``executemany`` rewrites an ``INSERT ... VALUES`` alike), values common
to all rows (``constants``: a timestamp) converted once through their columns' types.

Caveat (as for :func:`core.bulk.insert_rows`): row values go to the driver as they are (plain
``int``/``str``/``float``/None); give datetimes as ``constants``.

Example::

    >>> import sqlalchemy as sa
    >>> from core.db import make_engine
    >>> md = sa.MetaData()
    >>> t = sa.Table("t", md, sa.Column("id", sa.Integer, primary_key=True),
    ...              sa.Column("name", sa.String(10)))
    >>> engine = make_engine("sqlite://"); md.create_all(engine)
    >>> with engine.begin() as conn:
    ...     executemany(conn, t, lambda dialect: t.insert(),
    ...                 [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}])
    ...     conn.execute(sa.select(sa.func.count()).select_from(t)).scalar()
    2
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Dialect

from core.bulk import CHUNK

__all__ = ["executemany"]


def executemany(conn: Connection, table: sa.Table, build: Callable[[Dialect], Any],
                rows: Sequence[Mapping[str, Any]], *,
                constants: Mapping[str, Any] | None = None) -> None:
    """Run the statement ``build(dialect)`` (an INSERT of ``table``; ``build`` must return
    the same statement for the same dialect) for ``rows`` (all with the same keys) plus
    ``constants``."""
    if not rows:
        return
    dialect = conn.dialect
    fixed: dict[str, Any] = {}
    for key, value in (constants or {}).items():
        processor = table.c[key].type.dialect_impl(dialect).bind_processor(dialect)
        fixed[key] = processor(value) if processor is not None else value
    sql, positions = _compiled(dialect, build, (*rows[0], *fixed))
    for start in range(0, len(rows), CHUNK):
        batch = rows[start:start + CHUNK]
        if positions is None:  # named parameters (pyformat, %(name)s)
            params: Any = [{**row, **fixed} for row in batch] if fixed else list(batch)
        else:
            params = [tuple(row[n] if n in row else fixed[n] for n in positions)
                      for row in batch]
        conn.exec_driver_sql(sql, params)


@functools.lru_cache(maxsize=256)
def _compiled(dialect: Dialect, build: Callable[[Dialect], Any], keys: tuple[str, ...]
              ) -> tuple[str, tuple[str, ...] | None]:
    """(SQL text, parameter order or None for named parameters) of ``build(dialect)`` for
    these keys; per dialect object (an engine's own: its server version may change the SQL,
    e.g. MySQL 8's ``AS new`` for an upsert)."""
    compiled = build(dialect).compile(dialect=dialect, column_keys=list(keys))
    return compiled.string, (tuple(compiled.positiontup or ()) if compiled.positional
                             else None)
