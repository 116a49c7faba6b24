"""Heartbeat data of running jobs: ONE row per heartbeat (``job_heartbeats``).

A heartbeat's dynamic data (what the watchdog samples: ``CPUConsumed``, ``RSS``, ``Vsize``,
``MemoryUsed``, ``WallClockTime``, ``AvailableDiskSpace``, ``LoadAverage``, or whatever a
client sends) is stored as one JSON object in one text column, each value as the text
``str(value)``, in the order sent. DIRAC keeps a row per value (``HeartBeatLoggingInfo``:
JobID, Name, Value, HeartBeatTime), which made a heartbeat seven rows and 35 values for the
driver to escape; one row per heartbeat is 3 (bench/heartbeats.py,
docs/performance/load-and-heartbeats.md).
Why text values in JSON and not typed columns: the answer of ``getJobHeartBeatData`` stays
exactly what the row-per-value layout gave (the text of each value as sent: ``"204800"``
and not ``204800.0``, any name, non-numeric values), for a cost within a few microseconds of
typed columns per heartbeat.

Readers expand the rows back into DIRAC's (name, value, time) triples, by time then by
arrival, names cut at 100 characters as the old ``VARCHAR(100)`` did: the wire answer does
not change with the layout. WMS migration "one row per heartbeat" (:func:`pivot`) converts
the rows of a database made before, and its downgrade (:func:`unpivot`) converts back.

Example::

    >>> from datetime import datetime, timezone
    >>> from core.db import init_schema, make_engine
    >>> from wms.db import jobs as jobs_db
    >>> from wms.db.schema import WMS_SCHEMA
    >>> engine = make_engine("sqlite://"); _ = init_schema(engine, WMS_SCHEMA)
    >>> t = datetime(2026, 1, 1, tzinfo=timezone.utc)
    >>> with engine.begin() as conn:
    ...     [job] = jobs_db.insert_jobs(conn, [jobs_db.NewJob(
    ...         owner="al", owner_group="g", vo="v", status="Running", minor_status="x",
    ...         original_jdl="[]")], now=t, source="doc")
    ...     add(conn, [(job, encode({"CPUConsumed": 1.5, "RSS": 2048}), t)])
    ...     [(name, value) for name, value, _ in history(conn, job)]
    ...     latest_values(conn, [job], ["RSS"])
    [('CPUConsumed', '1.5'), ('RSS', '2048')]
    {1: {'RSS': '2048'}}
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from core.bulk import insert_rows
from core.db import UTCDateTime
from wms.db.tables import JobIdType, job_heartbeats, jobs

__all__ = ["add", "decode", "encode", "history", "latest_values", "pivot", "unpivot"]

#: the longest name an answer carries (DIRAC's ``Name VARCHAR(100)``)
NAME_LENGTH = 100
#: job IDs per ``IN (...)`` of the multi-job readers
CHUNK = 1000
#: rows read per statement by the migrations
MIGRATION_BATCH = 5000

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def encode(dynamic: Mapping[Any, Any]) -> str:
    """The ``data`` text of a heartbeat: ``{name: str(value)}`` in the order given.

    >>> encode({"CPUConsumed": 12.5, "RSS": 204800, "Site": "é"})
    '{"CPUConsumed":"12.5","RSS":"204800","Site":"é"}'
    """
    return _dumps({str(k): str(v) for k, v in dynamic.items()})


def decode(data: str) -> list[tuple[str, str]]:
    """(name, value) pairs of a ``data`` text, names cut at :data:`NAME_LENGTH`.

    >>> decode('{"CPUConsumed":"12.5","RSS":"204800"}')
    [('CPUConsumed', '12.5'), ('RSS', '204800')]
    """
    return [(name[:NAME_LENGTH], value) for name, value in json.loads(data).items()]


def add(conn: Connection, rows: Sequence[tuple[int, str, datetime]]) -> None:
    """Append (job_id, data, time) heartbeats (``data`` from :func:`encode`), in the given
    order: one multi-row INSERT per time (a batch spans a second or two)."""
    by_time: dict[datetime, list[dict[str, Any]]] = {}
    for job_id, data, when in rows:
        by_time.setdefault(when, []).append({"job_id": job_id, "data": data})
    for when, group in by_time.items():
        insert_rows(conn, job_heartbeats, group, constants={"heartbeat_time": when})


def history(conn: Connection, job_id: int) -> list[tuple[str, str, datetime]]:
    """A job's heartbeat data as DIRAC's (name, value, time) triples: by time, then in
    arrival order (heartbeats of one second in the order they came, values in the order
    sent)."""
    query = (sa.select(job_heartbeats.c.heartbeat_time, job_heartbeats.c.data)
             .where(job_heartbeats.c.job_id == job_id)
             .order_by(job_heartbeats.c.heartbeat_time, job_heartbeats.c.id))
    return [(name, value, when) for when, data in conn.execute(query)
            for name, value in decode(data)]


def latest_values(conn: Connection, job_ids: Iterable[int], names: Iterable[str]
                  ) -> dict[int, dict[str, str]]:
    """The last value of each of ``names`` each job reported (jobs without any are absent).

    Reads each job's heartbeats newest first and stops at the first that carries every
    name; a name a later heartbeat lacks keeps the value an earlier one gave.
    """
    wanted = set(names)
    out: dict[int, dict[str, str]] = {}
    ids = sorted(set(job_ids))
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start:start + CHUNK]
        done: set[int] = set()
        query = (sa.select(job_heartbeats.c.job_id, job_heartbeats.c.data)
                 .where(job_heartbeats.c.job_id.in_(chunk))
                 .order_by(job_heartbeats.c.job_id, job_heartbeats.c.heartbeat_time.desc(),
                           job_heartbeats.c.id.desc()))
        for job_id, data in conn.execute(query):
            if job_id in done:
                continue
            found = out.get(job_id)
            for name, value in reversed(decode(data)):  # the last of a name in a row wins
                if name in wanted and (found is None or name not in found):
                    found = out.setdefault(job_id, {})
                    found[name] = value
            if found is not None and len(found) == len(wanted):
                done.add(job_id)
    return out


# -- the migration from DIRAC's row per value, and back ------------------------------------------

_legacy_md = sa.MetaData()
#: the table before WMS migration "one row per heartbeat" (DIRAC's layout, snake_case)
legacy_heartbeat_data = sa.Table(
    "heartbeat_data",
    _legacy_md,
    sa.Column("id", JobIdType, primary_key=True, autoincrement=True),
    sa.Column("job_id", JobIdType, sa.ForeignKey(jobs.c.job_id, ondelete="CASCADE"),
              nullable=False),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("heartbeat_time", UTCDateTime, nullable=False),
    sa.Index("ix_heartbeat_job", "job_id", "heartbeat_time"),
)


def _after(table: sa.Table, last: tuple[int, datetime, int] | None) -> Any:
    """Keyset condition: rows after ``last`` in (job_id, heartbeat_time, id) order."""
    if last is None:
        return sa.true()
    job_id, when, row_id = last
    c = table.c
    return sa.or_(c.job_id > job_id,
                  sa.and_(c.job_id == job_id, c.heartbeat_time > when),
                  sa.and_(c.job_id == job_id, c.heartbeat_time == when, c.id > row_id))


def _insert_in_order(conn: Connection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    for start in range(0, len(rows), 1000):
        conn.execute(sa.insert(table), rows[start:start + 1000])


def pivot(conn: Connection) -> int:
    """Rows of ``heartbeat_data`` (one per value) into ``job_heartbeats`` (one per heartbeat),
    then ``heartbeat_data`` dropped; returns the heartbeats written.

    Values of one job with the same time become one heartbeat, in their row order; a name
    met again within it starts the next heartbeat (two heartbeats in one second), so the
    expanded answer is the one the old rows gave. Read in batches of
    :data:`MIGRATION_BATCH` rows in (job, time, id) order. Re-runnable: a run that stopped
    half-way (MariaDB commits DDL on its own) starts again from an empty new table.
    """
    job_heartbeats.create(conn, checkfirst=True)
    if not sa.inspect(conn).has_table(legacy_heartbeat_data.name):
        return 0
    old = legacy_heartbeat_data
    conn.execute(sa.delete(job_heartbeats))
    written = 0
    current: tuple[int, datetime] | None = None
    values: dict[str, str] = {}
    out: list[dict[str, Any]] = []
    last: tuple[int, datetime, int] | None = None

    def close() -> None:
        if current is not None and values:
            out.append({"job_id": current[0], "heartbeat_time": current[1],
                        "data": _dumps(values)})

    while True:
        batch = conn.execute(
            sa.select(old.c.id, old.c.job_id, old.c.name, old.c.value, old.c.heartbeat_time)
            .where(_after(old, last))
            .order_by(old.c.job_id, old.c.heartbeat_time, old.c.id)
            .limit(MIGRATION_BATCH)).all()
        if not batch:
            break
        for _, job_id, name, value, when in batch:
            if current != (job_id, when) or name in values:
                close()
                current, values = (job_id, when), {}
            values[name] = value
        last = (batch[-1].job_id, batch[-1].heartbeat_time, batch[-1].id)
        if len(out) >= 1000:
            _insert_in_order(conn, job_heartbeats, out)
            written += len(out)
            out = []
    close()
    _insert_in_order(conn, job_heartbeats, out)
    written += len(out)
    old.drop(conn)
    return written


def unpivot(conn: Connection) -> int:
    """The downgrade of :func:`pivot`: each heartbeat back into one ``heartbeat_data`` row
    per value (names cut at 100 characters), then ``job_heartbeats`` dropped; returns the
    rows written. Re-runnable like :func:`pivot`."""
    old = legacy_heartbeat_data
    old.create(conn, checkfirst=True)
    if not sa.inspect(conn).has_table(job_heartbeats.name):
        return 0
    conn.execute(sa.delete(old))
    written, last = 0, 0
    while True:
        batch = conn.execute(
            sa.select(job_heartbeats.c.id, job_heartbeats.c.job_id,
                      job_heartbeats.c.heartbeat_time, job_heartbeats.c.data)
            .where(job_heartbeats.c.id > last).order_by(job_heartbeats.c.id)
            .limit(MIGRATION_BATCH)).all()
        if not batch:
            break
        rows = [{"job_id": job_id, "name": name, "value": value, "heartbeat_time": when}
                for _, job_id, when, data in batch for name, value in decode(data)]
        _insert_in_order(conn, old, rows)
        written += len(rows)
        last = batch[-1].id
    job_heartbeats.drop(conn)
    return written
