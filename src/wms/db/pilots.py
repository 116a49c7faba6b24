"""Queries on the pilot tables (no rules: :mod:`wms.logic.pilots` has them).

Example::

    >>> from core.db import init_schema, make_engine, utcnow
    >>> from wms.db.schema import WMS_SCHEMA
    >>> engine = make_engine("sqlite://"); _ = init_schema(engine, WMS_SCHEMA)
    >>> with engine.begin() as conn:
    ...     add_pilots(conn, ["local://h/1"], vo="demo", owner_group="demo_pilot",
    ...                grid_type="Local", site="S", ce="ce", queue="q", now=utcnow())
    ...     pilot_info(conn, ["local://h/1"])["local://h/1"]["Status"]
    'Submitted'
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from core.in_values import in_values
from wms.db.pilot_tables import pilot_agents, pilot_jobs, pilot_output

_WIRE = {
    "PilotID": pilot_agents.c.pilot_id, "PilotJobReference": pilot_agents.c.pilot_reference,
    "PilotStamp": pilot_agents.c.pilot_stamp, "VO": pilot_agents.c.vo,
    "OwnerGroup": pilot_agents.c.owner_group, "GridType": pilot_agents.c.grid_type,
    "GridSite": pilot_agents.c.site, "DestinationSite": pilot_agents.c.ce,
    "Queue": pilot_agents.c.queue, "Status": pilot_agents.c.status,
    "StatusReason": pilot_agents.c.status_reason,
    "SubmissionTime": pilot_agents.c.submission_time,
    "LastUpdateTime": pilot_agents.c.last_update_time, "Host": pilot_agents.c.host,
    "OutputReady": pilot_agents.c.output_ready,
}


def add_pilots(conn: Connection, refs: Sequence[str], *, vo: str, owner_group: str,
               grid_type: str, site: str, ce: str, queue: str, now: datetime,
               stamps: dict[str, str] | None = None) -> None:
    if refs:
        conn.execute(sa.insert(pilot_agents), [
            {"pilot_reference": ref, "pilot_stamp": (stamps or {}).get(ref, ""), "vo": vo,
             "owner_group": owner_group, "grid_type": grid_type, "site": site, "ce": ce,
             "queue": queue, "status": "Submitted", "submission_time": now,
             "last_update_time": now} for ref in refs])


def _named(refs: Sequence[str]) -> sa.ColumnElement[bool]:
    """A pilot is named by its CE reference or by the stamp its site director gave it (the
    pilot knows only the stamp: the CE reference exists after submission)."""
    names = [r for r in refs if r]
    return sa.or_(in_values(pilot_agents.c.pilot_reference, names),
                  in_values(pilot_agents.c.pilot_stamp, names))


def pilot_ids(conn: Connection, refs: Sequence[str]) -> dict[str, int]:
    """name (reference or stamp, as given) -> pilot id."""
    wanted = set(refs)
    query = sa.select(pilot_agents.c.pilot_reference, pilot_agents.c.pilot_stamp,
                      pilot_agents.c.pilot_id).where(_named(refs))
    out: dict[str, int] = {}
    for ref, stamp, pid in conn.execute(query):
        for name in (ref, stamp):
            if name in wanted:
                out[name] = int(pid)
    return out


def update_pilots(conn: Connection, refs: Sequence[str], **values: Any) -> int:
    if not refs:
        return 0
    return int(conn.execute(sa.update(pilot_agents).where(_named(refs)).values(**values))
               .rowcount)


def pilot_info(conn: Connection, refs: Sequence[str]) -> dict[str, dict[str, Any]]:
    cols = [c.label(name) for name, c in _WIRE.items()]
    query = sa.select(*cols).where(in_values(pilot_agents.c.pilot_reference, refs))
    return {row["PilotJobReference"]: dict(row) for row in conn.execute(query).mappings()}


def pilots_of_queue(conn: Connection, site: str, ce: str, queue: str,
                    statuses: Sequence[str]) -> dict[str, str]:
    """reference -> status of the queue's pilots in ``statuses``."""
    query = sa.select(pilot_agents.c.pilot_reference, pilot_agents.c.status).where(
        pilot_agents.c.site == site, pilot_agents.c.ce == ce, pilot_agents.c.queue == queue,
        pilot_agents.c.status.in_(list(statuses)))
    return {ref: status for ref, status in conn.execute(query)}


def pilots_without_output(conn: Connection, statuses: Sequence[str], limit: int = 500
                          ) -> list[tuple[str, str, str, str]]:
    """(reference, site, ce, queue) of finished pilots whose output was not retrieved."""
    query = (sa.select(pilot_agents.c.pilot_reference, pilot_agents.c.site,
                       pilot_agents.c.ce, pilot_agents.c.queue)
             .where(pilot_agents.c.status.in_(list(statuses)),
                    pilot_agents.c.output_ready == sa.false()).limit(limit))
    return [tuple(row) for row in conn.execute(query)]


def add_job(conn: Connection, ref: str, job_id: int, now: datetime) -> None:
    ids = pilot_ids(conn, [ref])
    if ref in ids:
        conn.execute(sa.delete(pilot_jobs).where(pilot_jobs.c.pilot_id == ids[ref],
                                                 pilot_jobs.c.job_id == job_id))
        conn.execute(sa.insert(pilot_jobs).values(pilot_id=ids[ref], job_id=job_id,
                                                  start_time=now))


def pilots_of_job(conn: Connection, job_id: int) -> list[str]:
    query = (sa.select(pilot_agents.c.pilot_reference)
             .join(pilot_jobs, pilot_jobs.c.pilot_id == pilot_agents.c.pilot_id)
             .where(pilot_jobs.c.job_id == job_id).order_by(pilot_jobs.c.start_time))
    return [str(x) for x in conn.execute(query).scalars()]


def jobs_of_pilots(conn: Connection, refs: Sequence[str]) -> dict[str, list[int]]:
    """reference -> its job IDs (ascending), in one query, for the pilots that ran any."""
    query = (sa.select(pilot_agents.c.pilot_reference, pilot_jobs.c.job_id)
             .join(pilot_agents, pilot_jobs.c.pilot_id == pilot_agents.c.pilot_id)
             .where(in_values(pilot_agents.c.pilot_reference, refs))
             .order_by(pilot_jobs.c.job_id))
    out: dict[str, list[int]] = {}
    for ref, job_id in conn.execute(query):
        out.setdefault(ref, []).append(int(job_id))
    return out


def store_output(conn: Connection, ref: str, out: str, err: str) -> bool:
    ids = pilot_ids(conn, [ref])
    if ref not in ids:
        return False
    conn.execute(sa.delete(pilot_output).where(pilot_output.c.pilot_id == ids[ref]))
    conn.execute(sa.insert(pilot_output).values(pilot_id=ids[ref], std_output=out,
                                                std_error=err))
    update_pilots(conn, [ref], output_ready=True)
    return True


def output_of(conn: Connection, ref: str) -> tuple[str, str] | None:
    query = (sa.select(pilot_output.c.std_output, pilot_output.c.std_error)
             .join(pilot_agents, pilot_output.c.pilot_id == pilot_agents.c.pilot_id)
             .where(pilot_agents.c.pilot_reference == ref))
    row = conn.execute(query).first()
    return None if row is None else (row[0], row[1])


def select_pilots(conn: Connection, conditions: dict[str, Any], limit: int = 100_000
                  ) -> list[str]:
    """References of the pilots whose wire attributes (``Status``, ``GridSite``,
    ``DestinationSite``, ``OwnerGroup``...) equal the value, or one of the list's values
    (each of its column's type)."""
    query = sa.select(pilot_agents.c.pilot_reference)
    for name, wanted in conditions.items():
        column = _WIRE.get(name)
        if column is None:
            raise KeyError(name)
        values = wanted if isinstance(wanted, list | tuple) else [wanted]
        query = query.where(in_values(column, list(values)))
    query = query.order_by(pilot_agents.c.pilot_id).limit(limit)
    return [ref for (ref,) in conn.execute(query)]


def pilot_counts(conn: Connection, since: datetime | None = None,
                 until: datetime | None = None) -> list[tuple[str, str, int]]:
    """(site, status, count) of the pilots submitted in [since, until]."""
    site, status = pilot_agents.c.site, pilot_agents.c.status
    query = sa.select(site, status, sa.func.count()).group_by(site, status)
    if since is not None:
        query = query.where(pilot_agents.c.submission_time >= since)
    if until is not None:
        query = query.where(pilot_agents.c.submission_time <= until)
    return [(s, st, int(n)) for s, st, n in conn.execute(query)]


#: pilot attributes a search may filter or sort on (DIRAC's names)
SEARCHABLE = ("GridSite", "DestinationSite", "Queue", "Status", "GridType", "OwnerGroup", "VO",
              "PilotJobReference", "SubmissionTime", "LastUpdateTime", "PilotID")


def _pilot_condition(filters: dict[str, Any]) -> sa.ColumnElement[bool]:
    """``{attribute: value or [values]}`` on :data:`SEARCHABLE` attributes."""
    clauses = []
    for name, value in filters.items():
        if name not in SEARCHABLE:
            raise ValueError(f"pilots cannot be filtered on {name!r}")
        col = _WIRE[name]
        clauses.append(in_values(col, value) if isinstance(value, list | tuple)
                       else col == value)
    return sa.and_(sa.true(), *clauses)


def search_pilots(conn: Connection, filters: dict[str, Any], *, sort: str = "PilotID",
                  descending: bool = True, limit: int = 100, offset: int = 0
                  ) -> tuple[int, list[dict[str, Any]]]:
    """(total, one page of pilots) matching ``filters``, ordered by ``sort``."""
    if sort not in SEARCHABLE:
        raise ValueError(f"pilots cannot be sorted on {sort!r}")
    where = _pilot_condition(filters)
    total = int(conn.execute(sa.select(sa.func.count()).select_from(pilot_agents)
                             .where(where)).scalar_one())
    key = _WIRE[sort].desc() if descending else _WIRE[sort].asc()
    tie = pilot_agents.c.pilot_id.desc() if descending else pilot_agents.c.pilot_id.asc()
    cols = [c.label(name) for name, c in _WIRE.items()]
    rows = conn.execute(sa.select(*cols).where(where).order_by(key, tie)
                        .limit(limit).offset(offset)).mappings()
    return total, [dict(r) for r in rows]


def pilot_counters(conn: Connection, group_by: Sequence[str], filters: dict[str, Any]
                 ) -> list[tuple[dict[str, Any], int]]:
    """Pilot counts per combination of ``group_by`` attributes (e.g. GridSite, Status)."""
    for name in group_by:
        if name not in SEARCHABLE:
            raise ValueError(f"pilots cannot be grouped by {name!r}")
    cols = [_WIRE[n].label(n) for n in group_by]
    query = (sa.select(*cols, sa.func.count().label("n")).where(_pilot_condition(filters))
             .group_by(*cols))
    return [({n: row[n] for n in group_by}, int(row["n"]))
            for row in conn.execute(query).mappings()]
