"""Batched writes of what running jobs report (heartbeats, statuses, parameters), for the
write-behind path of :mod:`wms.logic.reports`: a handful of statements per batch whatever its
size, never one per job.

No rules here: the caller has locked the jobs' rows (:func:`wms.db.jobs.status_of` with
``for_update``, in job ID order) and decided what changes.

Example::

    >>> from datetime import datetime, timezone
    >>> from core.db import init_schema, make_engine
    >>> from wms.db import jobs as jobs_db
    >>> from wms.db.schema import WMS_SCHEMA
    >>> engine = make_engine("sqlite://"); _ = init_schema(engine, WMS_SCHEMA)
    >>> now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    >>> with engine.begin() as conn:
    ...     [job] = jobs_db.insert_jobs(conn, [jobs_db.NewJob(
    ...         owner="al", owner_group="g", vo="v", status="Running", minor_status="x",
    ...         original_jdl="[]")], now=now, source="doc")
    ...     add_heartbeat_rows(conn, [(job, '{"CPUConsumed":"1.5"}', now)])
    ...     upsert_parameters(conn, [(job, 0, "HostName", "wn1")])
    ...     upsert_parameters(conn, [(job, 0, "HostName", "wn2")])
    ...     take_commands_of(conn, [job], now), jobs_db.parameters_of(conn, [job])
    ({}, {1: {'HostName': 'wn2'}})
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.engine import Connection, Dialect

from wms.db import heartbeats, outbox
from wms.db import jobs as jobs_db
from wms.db.prepared import executemany
from wms.db.tables import job_commands, job_parameters, jobs

__all__ = ["add_heartbeat_rows", "add_logging_rows", "set_heartbeat_times",
           "take_commands_of", "update_job_rows", "upsert_parameters"]

CHUNK = jobs_db.CHUNK

# the statements of every batch, built once (expanding IN lists of integer IDs, rendered into
# the SQL at execution: no bind name and no driver escaping per ID)
_IDS: sa.BindParameter[Any] = sa.bindparam("ids", expanding=True, literal_execute=True)
_SET_HEARTBEAT_TIME = (sa.update(jobs).where(jobs.c.job_id.in_(_IDS))
                       .values(heartbeat_time=sa.bindparam("when")))
_PENDING_COMMANDS = (sa.select(job_commands.c.id, job_commands.c.job_id,
                               job_commands.c.command, job_commands.c.arguments)
                     .where(job_commands.c.job_id.in_(_IDS),
                            job_commands.c.status == "Received")
                     .order_by(job_commands.c.id))
_MARK_SENT = (sa.update(job_commands).where(job_commands.c.id.in_(_IDS))
              .values(status="Sent", execution_time=sa.bindparam("now")))


def _chunks(items: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), CHUNK):
        yield items[start:start + CHUNK]


def set_heartbeat_times(conn: Connection, times: Mapping[int, datetime]) -> None:
    """``HeartBeatTime`` of each job: one UPDATE per distinct time (a batch spans a second
    or two: one or two statements)."""
    by_time: dict[datetime, list[int]] = {}
    for job_id, when in times.items():
        by_time.setdefault(when, []).append(job_id)
    for when, ids in by_time.items():
        for chunk in _chunks(sorted(ids)):
            conn.execute(_SET_HEARTBEAT_TIME, {"ids": list(chunk), "when": when})


def add_heartbeat_rows(conn: Connection, rows: Sequence[tuple[int, str, datetime]]) -> None:
    """Append (job_id, data, time) heartbeats (``data``: :func:`wms.db.heartbeats.encode`),
    one row each, in the given order (the history is read back by time, then insertion
    order)."""
    heartbeats.add(conn, rows)


def add_logging_rows(conn: Connection,
                     rows: Sequence[tuple[int, str, str, str, datetime, str]]) -> None:
    """Append (job_id, status, minor, application, time, source) records to the histories,
    one multi-row INSERT per (time, source)."""
    groups: dict[tuple[datetime, str], list[tuple[int, str, str, str]]] = {}
    for job_id, status, minor, app, when, source in rows:
        groups.setdefault((when, source), []).append((job_id, status, minor, app))
    for (when, source), records in groups.items():
        jobs_db.add_logging(conn, records, now=when, source=source)


def update_job_rows(conn: Connection, values: Mapping[int, Mapping[str, Any]], *,
                    ended: Sequence[tuple[int, str]] = (), now: datetime) -> None:
    """Set columns per job (``{job_id: {column: value}}``): jobs given the same values share
    one UPDATE. ``ended`` (job, final status) pairs get their monitoring outbox row."""
    groups: dict[tuple[tuple[str, Any], ...], list[int]] = {}
    for job_id, columns in values.items():
        groups.setdefault(tuple(sorted(columns.items())), []).append(job_id)
    for key, ids in groups.items():
        for chunk in _chunks(sorted(ids)):
            conn.execute(sa.update(jobs).where(jobs.c.job_id.in_(chunk)).values(dict(key)))
    outbox.add(conn, "job", list(ended), now)


def take_commands_of(conn: Connection, job_ids: Iterable[int], now: datetime
                     ) -> dict[int, dict[str, str]]:
    """Pending commands of the jobs, marked as sent (delivered in heartbeat replies); two
    statements for all the jobs, one when none has a command."""
    out: dict[int, dict[str, str]] = {}
    sent: list[int] = []
    for chunk in _chunks(sorted(set(job_ids))):
        for row_id, job_id, command, arguments in conn.execute(_PENDING_COMMANDS,
                                                               {"ids": list(chunk)}):
            out.setdefault(job_id, {})[command] = arguments
            sent.append(row_id)
    for chunk in _chunks(sent):
        conn.execute(_MARK_SENT, {"ids": list(chunk), "now": now})
    return out


def _upsert(dialect: Dialect) -> Any:
    """INSERT of a parameter that replaces the value of an existing one."""
    name = dialect.name
    if name in ("mysql", "mariadb"):
        statement = mysql.insert(job_parameters)
        return statement.on_duplicate_key_update(value=statement.inserted.value)
    if name == "sqlite":
        lite = sqlite.insert(job_parameters)
        return lite.on_conflict_do_update(index_elements=["job_id", "attempt", "name"],
                                          set_={"value": lite.excluded.value})
    return None


def upsert_parameters(conn: Connection, rows: Sequence[tuple[int, int, str, str]]) -> None:
    """Set (job_id, attempt, name, value) parameters, new or not: one multi-row upsert per
    1,000 (MariaDB's ``ON DUPLICATE KEY UPDATE``, SQLite's ``ON CONFLICT``); a later row for
    the same parameter wins."""
    merged: dict[tuple[int, int, str], str] = {}
    for job_id, attempt, name, value in rows:
        merged[(job_id, attempt, name[:100])] = str(value)
    if not merged:
        return
    if _upsert(conn.dialect) is None:  # pragma: no cover - another database: delete + insert
        params: dict[int, dict[str, str]] = {}
        attempts: dict[int, int] = {}
        for (job_id, attempt, name), value in merged.items():
            params.setdefault(job_id, {})[name] = value
            attempts[job_id] = attempt
        jobs_db.set_parameters(conn, params, attempts)
        return
    executemany(conn, job_parameters, _upsert, [
        {"job_id": job_id, "attempt": attempt, "name": name, "value": value}
        for (job_id, attempt, name), value in sorted(merged.items())])
