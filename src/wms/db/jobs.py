"""Queries on the job tables. No rules here: callers (``wms.logic``) decide what may change.

Every function takes an open ``Connection`` so that logic composes several of them in one
transaction, and works on many jobs at once: one statement per table, never one per job.

Example::

    >>> from datetime import datetime, timezone
    >>> from core.db import init_schema, make_engine
    >>> from wms.db.schema import WMS_SCHEMA
    >>> engine = make_engine("sqlite://"); _ = init_schema(engine, WMS_SCHEMA)
    >>> now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    >>> with engine.begin() as conn:
    ...     ids = insert_jobs(conn, [NewJob(owner="alice", owner_group="g", vo="v",
    ...                                     status="Received", minor_status="Job accepted",
    ...                                     original_jdl="[]")], now=now, source="JobManager")
    ...     status_of(conn, ids)[ids[0]].status
    'Received'
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from core.bulk import LITERAL_DRIVERS, LITERAL_ROWS, insert_rows
from core.in_values import in_values
from wms.db import heartbeats, outbox
from wms.db.tables import (
    input_data,
    job_commands,
    job_heartbeats,
    job_jdls,
    job_logging,
    job_parameters,
    jobs,
)

#: rows per statement for bulk inserts (keeps packets under MariaDB's max_allowed_packet)
CHUNK = 1000


@dataclass
class NewJob:
    """What is inserted for one job."""

    owner: str
    owner_group: str
    vo: str
    status: str
    minor_status: str
    original_jdl: str
    job_type: str = "User"
    job_group: str = ""
    job_name: str = "Name"
    site: str = "ANY"
    user_priority: int = 1
    application_status: str = "Unknown"
    input_data: list[str] = field(default_factory=list)
    parametric_parent: int | None = None


@dataclass(frozen=True)
class StatusRow:
    job_id: int
    status: str
    minor_status: str
    application_status: str
    owner: str
    owner_group: str
    vo: str
    site: str
    reschedule_counter: int


@dataclass(frozen=True)
class StatusChange:
    """A new (status, minor, application status) for one job; None keeps the current value."""

    job_id: int
    status: str | None = None
    minor_status: str | None = None
    application_status: str | None = None


def _chunks(items: Sequence[Any], size: int = CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


#: what ``insert_jobs``'s ``processed`` callback returns: the processed JDL, or (original,
#: processed), or (original, processed, scheduling record)
Texts = str | tuple[str, str] | tuple[str, str, str | None] | None


def insert_jobs(conn: Connection, new: Sequence[NewJob], *, now: datetime,
                source: str, processed: Callable[[int, int], Texts] | None = None,
                log: bool = True) -> list[int]:
    """Insert jobs with their JDL, input data and first logging record; IDs in input order.

    ``processed(index, job_id)``, when given, is the processed JDL stored at once (saves an
    UPDATE per job when the caller can make it from the ID alone: on MariaDB an UPDATE
    executemany is one round trip per row), or an (original, processed) pair when the
    original text depends on the ID too (a parametric child's ``%j``), or an (original,
    processed, scheduling) triple with the optimiser's record of the job
    (:mod:`wms.logic.scheduling_record`). ``log=False``: the first logging records are
    the caller's to write (with later ones, in one INSERT: :func:`add_logging_rows`)."""
    ids: list[int] = []
    for chunk in _chunks(new):
        rows = [{
            "owner": j.owner, "owner_group": j.owner_group, "vo": j.vo, "status": j.status,
            "minor_status": j.minor_status, "application_status": j.application_status,
            "job_type": j.job_type, "job_group": j.job_group, "job_name": j.job_name,
            "site": j.site, "user_priority": j.user_priority,
            "parametric_parent": j.parametric_parent,
        } for j in chunk]
        if conn.dialect.name == "sqlite" and len(rows) > 1:
            ids.extend(_sqlite_insert(conn, rows, now))
            continue
        rows = [{**row, "submission_time": now, "last_update_time": now} for row in rows]
        statement, rows = _returning_insert(conn, rows)
        options = {} if statement is _INSERT_RETURNING else _NOT_CACHED
        ids.extend(int(x) for x in conn.execute(statement, rows, execution_options=options)
                   .scalars().all())
    # the texts and input files go to the driver's executemany (see core.bulk): per-row
    # parameter processing of 10^5 rows costs more than the database's work
    texts: list[dict[str, Any]] = []
    records: list[str | None] = []
    for index, (job_id, j) in enumerate(zip(ids, new, strict=True)):
        made = processed(index, job_id) if processed is not None else None
        original: str = j.original_jdl
        text: str | None = None
        record: str | None = None
        if isinstance(made, tuple):
            original, text = made[0], made[1]
            if len(made) == 3:
                record = made[2]
        else:
            text = made
        texts.append({"job_id": job_id, "original_jdl": original, "processed_jdl": text})
        records.append(record)
    # a parametric submission's children mostly share one scheduling record: then it is
    # given once (on MariaDB written once into the INSERT, not escaped again for every row)
    shared: dict[str, Any] = {}
    if len(set(records)) == 1:
        shared["scheduling"] = records[0]
    else:
        for row, record in zip(texts, records, strict=True):
            row["scheduling"] = record
    insert_rows(conn, job_jdls, texts, constants=shared)
    insert_rows(conn, input_data, [
        {"job_id": job_id, "lfn": lfn} for job_id, j in zip(ids, new, strict=True)
        for lfn in dict.fromkeys(j.input_data)])
    if log:
        add_logging(conn, [(job_id, j.status, j.minor_status, j.application_status)
                           for job_id, j in zip(ids, new, strict=True)], now=now,
                    source=source)
    return ids


#: a statement made for one call only: not kept in the engine's cache of compiled statements
_NOT_CACHED = {"compiled_cache": None}
_INSERT_RETURNING = sa.insert(jobs).returning(jobs.c.job_id, sort_by_parameter_order=True)


def _returning_insert(conn: Connection, rows: list[dict[str, Any]]
                      ) -> tuple[Any, list[dict[str, Any]]]:
    """The jobs' INSERT ... RETURNING and its parameters. From ``LITERAL_ROWS`` rows on, with
    a driver that escapes as MariaDB's client does (``mogrify``), the values that are the
    same in every row (owner, status, times...: most of them in a bulk submission) are
    written once into the statement as the driver would send them, and only the others are
    parameters: the driver escapes 2 values a row instead of 14 (the statement, unique to
    its constants, is compiled for this call and not cached)."""
    dialect = conn.dialect
    if len(rows) < LITERAL_ROWS or dialect.driver not in LITERAL_DRIVERS:
        return _INSERT_RETURNING, rows
    first = rows[0]
    same = [key for key, value in first.items()
            if all(type(row[key]) is type(value) and row[key] == value for row in rows)]
    if not same:
        return _INSERT_RETURNING, rows
    if len(same) == len(first):  # a parameter per row all the same
        same.remove("job_name")
    raw = conn.connection.dbapi_connection
    assert raw is not None  # noqa: S101 - an open connection
    mogrify = raw.cursor().mogrify
    written: dict[str, Any] = {}
    for key in same:
        processor = jobs.c[key].type.dialect_impl(dialect).bind_processor(dialect)
        value = processor(first[key]) if processor is not None else first[key]
        # a '%' is doubled by the compiler for the format paramstyle and undone by the driver
        written[key] = sa.literal_column(str(mogrify("%s", (value,))))
    statement = (sa.insert(jobs).values(written)
                 .returning(jobs.c.job_id, sort_by_parameter_order=True))
    varying = [key for key in first if key not in written]
    return statement, [{key: row[key] for key in varying} for row in rows]


def _sqlite_insert(conn: Connection, rows: list[dict[str, Any]], now: datetime) -> list[int]:
    """Many job rows on SQLite in one ``executemany`` (SQLAlchemy inserts row by row when
    RETURNING must keep the parameters' order). The writer holds SQLite's only write lock
    from its first INSERT on, and a rowid table without AUTOINCREMENT gives each new row
    max(rowid) + 1: the rows get consecutive IDs ending at the new maximum, checked below."""
    insert_rows(conn, jobs, rows, constants={"submission_time": now, "last_update_time": now})
    high = int(conn.execute(sa.select(sa.func.max(jobs.c.job_id))).scalar_one())
    low = high - len(rows) + 1
    found = conn.execute(sa.select(sa.func.count()).select_from(jobs).where(
        jobs.c.job_id.between(low, high), jobs.c.submission_time == now,
        jobs.c.owner.in_(sorted({r["owner"] for r in rows})))).scalar_one()
    if found != len(rows):  # pragma: no cover - not a rowid table any more?
        raise RuntimeError("job IDs of a bulk insert are not consecutive")
    return list(range(low, high + 1))


def replace_jdls(conn: Connection, texts: dict[int, tuple[str, str | None]]) -> None:
    """Set (original, processed) JDLs of many jobs: a delete and an insert per 1000 (an
    UPDATE per job costs a round trip each on MariaDB)."""
    pairs = list(texts.items())
    for chunk in _chunks(pairs):
        conn.execute(sa.delete(job_jdls).where(job_jdls.c.job_id.in_([j for j, _ in chunk])))
        conn.execute(sa.insert(job_jdls), [
            {"job_id": job_id, "original_jdl": original, "processed_jdl": processed}
            for job_id, (original, processed) in chunk])


def set_jdls(conn: Connection, *, processed: dict[int, str],
             originals: dict[int, str] | None = None) -> None:
    """Store processed JDLs (and replace original ones, e.g. after ``%j`` substitution); a
    new processed JDL drops the job's scheduling record (the optimiser reads the JDL then)."""
    for column, items in (("processed_jdl", processed), ("original_jdl", originals or {})):
        if not items:
            continue
        values: dict[str, Any] = {column: sa.bindparam("b_jdl")}
        if column == "processed_jdl":
            values["scheduling"] = None
        statement = (sa.update(job_jdls).where(job_jdls.c.job_id == sa.bindparam("b_id"))
                     .values(values))
        pairs = list(items.items())
        for chunk in _chunks(pairs):
            conn.execute(statement, [{"b_id": job_id, "b_jdl": text} for job_id, text in chunk])


def add_logging(conn: Connection, records: Sequence[tuple[int, str, str, str]], *,
                now: datetime, source: str) -> None:
    """Append (job_id, status, minor, application) records to the job histories."""
    insert_rows(conn, job_logging, [
        {"job_id": r[0], "status": r[1], "minor_status": r[2], "application_status": r[3]}
        for r in records],
        constants={"status_time": now, "source": source[:32]})


def add_logging_rows(conn: Connection, records: Sequence[tuple[int, str, str, str, str]], *,
                     now: datetime) -> None:
    """Append (job_id, status, minor, application, source) records, each with its own
    source, in one INSERT (in order: the log's order is by time, then insertion)."""
    insert_rows(conn, job_logging, [
        {"job_id": r[0], "status": r[1], "minor_status": r[2], "application_status": r[3],
         "source": r[4][:32]} for r in records], constants={"status_time": now})


#: :func:`status_of`'s query, built once (an expanding IN: the hot report path builds no
#: expression per call; the IDs, integers, rendered into the SQL by SQLAlchemy at execution
#: (``literal_execute``): no bind name and no driver escaping per ID, ~30 % less CPU for 100)
_STATUS_QUERY = sa.select(jobs.c.job_id, jobs.c.status, jobs.c.minor_status,
                          jobs.c.application_status, jobs.c.owner, jobs.c.owner_group,
                          jobs.c.vo, jobs.c.site, jobs.c.reschedule_counter
                          ).where(jobs.c.job_id.in_(sa.bindparam("ids", expanding=True,
                                                                 literal_execute=True)))
_STATUS_QUERY_LOCKING = _STATUS_QUERY.with_for_update()


def status_of(conn: Connection, job_ids: Iterable[int], *,
              for_update: bool = False) -> dict[int, StatusRow]:
    """Current status and ownership of the jobs that exist among ``job_ids``."""
    found: dict[int, StatusRow] = {}
    wanted = sorted(set(job_ids))
    query = (_STATUS_QUERY_LOCKING if for_update and conn.dialect.name != "sqlite"
             else _STATUS_QUERY)
    for chunk in _chunks(wanted):
        for row in conn.execute(query, {"ids": list(chunk)}):
            found[row[0]] = StatusRow(*row)
    return found


def apply_status_changes(conn: Connection, changes: Sequence[StatusChange], current:
                         dict[int, StatusRow], *, now: datetime, source: str,
                         extra: dict[str, Any] | None = None) -> None:
    """Write already-checked changes and log them; ``extra`` sets more columns on all jobs.

    Jobs getting the same new values are updated by one statement. Jobs reaching a final
    status get a monitoring outbox row (one INSERT for all of them, :mod:`wms.db.outbox`).
    """
    groups: dict[tuple[str, str, str], list[int]] = {}
    records = []
    ended = []
    for change in changes:
        row = current[change.job_id]
        new = (change.status or row.status, change.minor_status or row.minor_status,
               change.application_status or row.application_status)
        groups.setdefault(new, []).append(change.job_id)
        records.append((change.job_id, *new))
        if new[0] != row.status and new[0] in outbox.FINAL_JOB_STATUSES:
            ended.append((change.job_id, new[0]))
    for (status, minor, app), ids in groups.items():
        values: dict[str, Any] = {"status": status, "minor_status": minor,
                                  "application_status": app, "last_update_time": now}
        values.update(extra or {})
        for chunk in _chunks(ids):
            conn.execute(sa.update(jobs).where(jobs.c.job_id.in_(chunk)).values(**values))
    add_logging(conn, records, now=now, source=source)
    outbox.add(conn, "job", ended, now)  # accounting, shipped by the monitoring agent


def update_jobs(conn: Connection, job_ids: Sequence[int], **values: Any) -> None:
    """Set columns on jobs (no status logic, no logging)."""
    for chunk in _chunks(list(job_ids)):
        conn.execute(sa.update(jobs).where(jobs.c.job_id.in_(chunk)).values(**values))


def jdls_of(conn: Connection, job_ids: Iterable[int],
            processed: bool = True) -> dict[int, str]:
    column = job_jdls.c.processed_jdl if processed else job_jdls.c.original_jdl
    out: dict[int, str] = {}
    for chunk in _chunks(sorted(set(job_ids))):
        for job_id, text in conn.execute(
                sa.select(job_jdls.c.job_id, column).where(job_jdls.c.job_id.in_(chunk))):
            if text is not None:
                out[job_id] = text
    return out


def scheduling_of(conn: Connection, job_ids: Iterable[int]) -> dict[int, str]:
    """The scheduling records of the jobs that have one (:mod:`wms.logic.scheduling_record`)."""
    out: dict[int, str] = {}
    for chunk in _chunks(sorted(set(job_ids))):
        for job_id, text in conn.execute(
                sa.select(job_jdls.c.job_id, job_jdls.c.scheduling)
                .where(job_jdls.c.job_id.in_(chunk), job_jdls.c.scheduling.is_not(None))):
            out[job_id] = text
    return out


def input_data_of(conn: Connection, job_ids: Iterable[int]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for chunk in _chunks(sorted(set(job_ids))):
        for job_id, lfn in conn.execute(sa.select(input_data.c.job_id, input_data.c.lfn)
                                        .where(input_data.c.job_id.in_(chunk))
                                        .order_by(input_data.c.job_id, input_data.c.lfn)):
            out.setdefault(job_id, []).append(lfn)
    return out


def set_parameters(conn: Connection, params: dict[int, dict[str, str]],
                   attempts: dict[int, int]) -> None:
    """Upsert parameters of the jobs' current attempt (delete + insert: portable, bulk)."""
    rows = [{"job_id": job_id, "attempt": attempts[job_id], "name": name[:100],
             "value": str(value)} for job_id, values in params.items()
            for name, value in values.items()]
    if not rows:
        return
    for job_id, values in params.items():  # one statement per job, not per parameter
        conn.execute(sa.delete(job_parameters).where(
            job_parameters.c.job_id == job_id, job_parameters.c.attempt == attempts[job_id],
            in_values(job_parameters.c.name, [name[:100] for name in values])))
    conn.execute(sa.insert(job_parameters), rows)


def delete_parameters(conn: Connection, names: dict[int, list[str]],
                      attempts: dict[int, int]) -> None:
    """Remove the named parameters of the jobs' attempts (one statement per job)."""
    for job_id, wanted in names.items():
        if wanted:
            conn.execute(sa.delete(job_parameters).where(
                job_parameters.c.job_id == job_id,
                job_parameters.c.attempt == attempts[job_id],
                in_values(job_parameters.c.name, [name[:100] for name in wanted])))


def insert_parameters(conn: Connection, rows: Sequence[tuple[int, int, str, str]]) -> None:
    """Insert (job_id, attempt, name, value) parameters known to be new (one statement per
    1000; :func:`set_parameters` replaces existing ones)."""
    values = [{"job_id": j, "attempt": a, "name": n[:100], "value": str(v)}
              for j, a, n, v in rows]
    for chunk in _chunks(values):
        conn.execute(sa.insert(job_parameters), list(chunk))


def parameters_of(conn: Connection, job_ids: Iterable[int], *,
                  attempt: int | None = None) -> dict[int, dict[str, str]]:
    """Parameters of the latest attempt (or of ``attempt``) per job."""
    out: dict[int, dict[str, str]] = {}
    seen_attempt: dict[int, int] = {}
    for chunk in _chunks(sorted(set(job_ids))):
        query = sa.select(job_parameters).where(job_parameters.c.job_id.in_(chunk))
        if attempt is not None:
            query = query.where(job_parameters.c.attempt == attempt)
        for row in conn.execute(query.order_by(job_parameters.c.attempt.desc())):
            best = seen_attempt.setdefault(row.job_id, row.attempt)
            if row.attempt == best:
                out.setdefault(row.job_id, {})[row.name] = row.value
    return out


def logging_of(conn: Connection, job_id: int) -> list[tuple[str, str, str, datetime, str]]:
    query = (sa.select(job_logging.c.status, job_logging.c.minor_status,
                       job_logging.c.application_status, job_logging.c.status_time,
                       job_logging.c.source)
             .where(job_logging.c.job_id == job_id)
             .order_by(job_logging.c.status_time, job_logging.c.id))
    return [tuple(row) for row in conn.execute(query)]


def add_heartbeat(conn: Connection, job_id: int, data: dict[str, Any], now: datetime) -> None:
    """One heartbeat's dynamic data (one row, :mod:`wms.db.heartbeats`); none when empty."""
    if data:
        heartbeats.add(conn, [(job_id, heartbeats.encode(data), now)])


def heartbeats_of(conn: Connection, job_id: int) -> list[tuple[str, str, datetime]]:
    """(name, value, time) of every heartbeat value, by time then arrival."""
    return heartbeats.history(conn, job_id)


def add_commands(conn: Connection, job_ids: Sequence[int], command: str, now: datetime,
                 arguments: str = "") -> None:
    if job_ids:
        conn.execute(sa.insert(job_commands), [
            {"job_id": job_id, "command": command, "arguments": arguments,
             "status": "Received", "reception_time": now} for job_id in job_ids])


def cancel_commands(conn: Connection, job_ids: Sequence[int], now: datetime) -> None:
    """Pending commands of the jobs' earlier attempt (the Kill sent to the pilot of a
    rescheduled job) are cancelled: the next pilot must not receive them."""
    for chunk in _chunks(list(job_ids)):
        conn.execute(sa.update(job_commands)
                     .where(job_commands.c.job_id.in_(chunk),
                            job_commands.c.status == "Received")
                     .values(status="Cancelled", execution_time=now))


def take_commands(conn: Connection, job_id: int, now: datetime) -> dict[str, str]:
    """Pending commands of a job, marked as sent (delivered in a heartbeat reply)."""
    rows = conn.execute(sa.select(job_commands.c.id, job_commands.c.command,
                                  job_commands.c.arguments)
                        .where(job_commands.c.job_id == job_id,
                               job_commands.c.status == "Received")).all()
    if rows:
        conn.execute(sa.update(job_commands).where(job_commands.c.id.in_([r.id for r in rows]))
                     .values(status="Sent", execution_time=now))
    return {row.command: row.arguments for row in rows}


def delete_jobs(conn: Connection, job_ids: Sequence[int]) -> None:
    """Remove jobs and everything attached (the tables cascade on MariaDB and SQLite)."""
    for chunk in _chunks(list(job_ids)):
        for table in (job_heartbeats, job_commands, job_logging, job_parameters, input_data,
                      job_jdls):
            conn.execute(sa.delete(table).where(table.c.job_id.in_(chunk)))
        conn.execute(sa.delete(jobs).where(jobs.c.job_id.in_(chunk)))


def silent_jobs(conn: Connection, statuses: Sequence[str], before: datetime, *,
                by_update: bool = False, limit: int = 10_000) -> list[int]:
    """Jobs in ``statuses`` not heard of since ``before``: last heartbeat (else start, else
    last update), or only the last update with ``by_update``."""
    if by_update:
        seen: Any = jobs.c.last_update_time
    else:
        seen = sa.func.coalesce(jobs.c.heartbeat_time, jobs.c.start_exec_time,
                                jobs.c.last_update_time)
    query = (sa.select(jobs.c.job_id).where(jobs.c.status.in_(list(statuses)), seen < before)
             .order_by(jobs.c.job_id).limit(limit))
    return [int(x) for x in conn.execute(query).scalars()]
