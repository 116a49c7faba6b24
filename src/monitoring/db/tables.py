"""Tables of the Monitoring system (``pilotwms.schemas`` entry ``Monitoring``).

* One table per record type for the SQL backend, made from :mod:`monitoring.types`:
  ``mon_job``, ``mon_jobbuckets``, ``mon_wmshistory``, ... Columns: ``id`` (the record's
  idempotent id), ``ts`` (the type's time field as epoch seconds: reports filter and group on
  it with integer arithmetic that SQLite and MariaDB share), the key fields as text, the
  values as doubles, the extra fields. Buckets and snapshots are stored in ``(ts, id)``
  order (what reports read is contiguous); records have an ``id`` key and a ``ts`` index.
* State the monitoring logic keeps whatever the record backend is: hours whose buckets must be
  recomputed (``mon_dirty_buckets``), the history cycles done (``mon_history_cycles``) and
  how far incremental readers got (``mon_watermarks``).

Example::

    >>> from core.db import init_schema, make_engine
    >>> init_schema(make_engine("sqlite://"), MONITORING_SCHEMA)
    0
    >>> sorted(c.name for c in record_table("PilotsHistory").columns)[:4]
    ['GridCE', 'GridSite', 'GridType', 'NumOfPilots']
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from core.db import Schema, UTCDateTime
from monitoring.types import TYPES, RecordType

metadata = sa.MetaData()

_EXTRA: dict[str, Any] = {"int": sa.BigInteger, "date": sa.BigInteger, "float": sa.Float,
                          "text": sa.String(255)}


def _make(rtype: RecordType) -> sa.Table:
    # buckets and snapshots never move in time (their id includes it): their rows are stored
    # in (ts, id) order, so a report's time range is one sequential read (SQLite WITHOUT
    # ROWID, InnoDB's clustered primary key); records keep an id key (a rescheduled job's
    # record moves in time)
    clustered = rtype.snapshot or rtype.name.endswith("Buckets")
    columns: list[Any] = [
        sa.Column("id", sa.String(64), primary_key=not clustered, nullable=False),
        sa.Column("ts", sa.BigInteger, nullable=False, autoincrement=False),
    ]
    columns += [sa.Column(k, sa.String(255), nullable=False, server_default="")
                for k in rtype.keys]
    columns += [sa.Column(v, sa.Float(precision=53), nullable=False, server_default="0")
                for v in rtype.values]
    columns += [sa.Column(name, _EXTRA[kind], nullable=True)
                for name, kind in rtype.extra.items()]
    table_name = f"mon_{rtype.name.lower()}"
    if clustered:
        extra: list[Any] = [sa.PrimaryKeyConstraint("ts", "id"),
                            sa.Index(f"ux_{table_name}_id", "id", unique=True)]
    else:
        extra = [sa.Index(f"ix_{table_name}_ts", "ts")]
    return sa.Table(table_name, metadata, *columns, *extra, mysql_engine="InnoDB",
                    mysql_charset="utf8mb4", sqlite_with_rowid=not clustered)


RECORD_TABLES: dict[str, sa.Table] = {name: _make(rtype) for name, rtype in TYPES.items()}


def record_table(name: str) -> sa.Table:
    return RECORD_TABLES[name]


dirty_buckets = sa.Table(
    "mon_dirty_buckets", metadata,
    sa.Column("type", sa.String(64), primary_key=True),
    sa.Column("bucket", sa.BigInteger, primary_key=True, autoincrement=False),
    mysql_engine="InnoDB",
)

history_cycles = sa.Table(
    "mon_history_cycles", metadata,
    sa.Column("type", sa.String(64), primary_key=True),
    sa.Column("ts", sa.BigInteger, primary_key=True, autoincrement=False),
    #: "started" while being written, "done" once every record of the snapshot is stored
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("records", sa.Integer, nullable=False, server_default="0"),
    sa.Column("source", sa.String(16), nullable=False, server_default="live"),
    sa.Column("updated", UTCDateTime, nullable=False),
    mysql_engine="InnoDB",
)

watermarks = sa.Table(
    "mon_watermarks", metadata,
    #: what is read incrementally (e.g. "rms": finished data-management requests)
    sa.Column("name", sa.String(64), primary_key=True),
    #: the last (time, id) read
    sa.Column("ts", sa.BigInteger, nullable=False),
    sa.Column("ref", sa.BigInteger, nullable=False),
    mysql_engine="InnoDB",
)

MONITORING_SCHEMA = Schema("Monitoring", metadata, migrations=[])
