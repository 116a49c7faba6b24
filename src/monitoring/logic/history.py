"""WMS and pilot history: snapshots of job and pilot counts every ``HistoryPeriod`` seconds.

Each snapshot is stamped with the start of its interval (``timestamp`` aligned on the epoch),
and each of its records has an id made of that time and its key values, so writing a snapshot
again replaces it. ``mon_history_cycles`` says which intervals are done:

* an interval is marked ``started`` before its records are written and ``done`` after, so a
  restart during a cycle finds it ``started``, deletes what was partly written and writes it
  again: no duplicate, no half snapshot;
* intervals missed while nothing ran (a stopped agent, a restarted server) are filled in from
  the job logging, up to ``HistoryBackfill`` intervals: the status and minor status of each
  job at that time are its last logging record before it (site, owner and the other keys are
  today's). Pilots have no status history, so missed pilot intervals stay empty.

The live snapshot is one ``GROUP BY`` on the jobs table (the status index), as DIRAC's
StatesAccountingAgent does; readers of live counts (``dstat --summary``, the portal) read the
latest snapshot instead of scanning the jobs table.

Example::

    >>> slot_of(datetime(2026, 12, 3, 10, 7, 31, tzinfo=timezone.utc), 300).isoformat()
    '2026-12-03T10:05:00+00:00'
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from core.db import utcnow, write_transaction
from monitoring.db.base import Backend, epoch, from_epoch
from monitoring.db.tables import history_cycles
from monitoring.types import TYPES, RecordType, doc_id, normalise
from wms.db.pilot_tables import pilot_agents
from wms.db.tables import job_logging, jobs

log = logging.getLogger("pilotwms.monitoring.history")

WMS = TYPES["WMSHistory"]
PILOTS = TYPES["PilotsHistory"]


def slot_of(when: datetime, period: int) -> datetime:
    stamp = int(when.timestamp())
    return datetime.fromtimestamp(stamp - stamp % period, timezone.utc)


# -- snapshots -----------------------------------------------------------------------------------

_JOB_KEYS = ("Site", "User", "UserGroup", "JobGroup", "JobType")


def _job_docs(rows: Sequence[Any], when: datetime) -> list[dict[str, Any]]:
    docs = []
    for status, minor, site, owner, group, job_group, job_type, count, resched in rows:
        doc = normalise(WMS, {"Status": status, "MinorStatus": minor, "Site": site,
                              "User": owner, "UserGroup": group, "JobGroup": job_group,
                              "JobType": job_type, "Jobs": count, "Reschedules": resched or 0,
                              "timestamp": when})
        docs.append({**doc, "_id": doc_id(WMS, doc)})
    return docs


def live_jobs(conn: Connection, when: datetime) -> list[dict[str, Any]]:
    """Job counts now, stamped ``when``."""
    keys = (jobs.c.status, jobs.c.minor_status, jobs.c.site, jobs.c.owner, jobs.c.owner_group,
            jobs.c.job_group, jobs.c.job_type)
    query = (sa.select(*keys, sa.func.count(), sa.func.sum(jobs.c.reschedule_counter))
             .group_by(*keys))
    return _job_docs(conn.execute(query).all(), when)


def jobs_at(conn: Connection, when: datetime) -> list[dict[str, Any]]:
    """Job counts as they were at ``when``, from the job logging (backfill)."""
    latest = (sa.select(job_logging.c.job_id, sa.func.max(job_logging.c.id).label("lid"))
              .where(job_logging.c.status_time <= when).group_by(job_logging.c.job_id)
              .subquery())
    log_row = job_logging.alias("l")
    keys = (log_row.c.status, log_row.c.minor_status, jobs.c.site, jobs.c.owner,
            jobs.c.owner_group, jobs.c.job_group, jobs.c.job_type)
    query = (sa.select(*keys, sa.func.count(), sa.func.sum(jobs.c.reschedule_counter))
             .select_from(latest.join(log_row, log_row.c.id == latest.c.lid)
                          .join(jobs, jobs.c.job_id == latest.c.job_id))
             .group_by(*keys))
    return _job_docs(conn.execute(query).all(), when)


def live_pilots(conn: Connection, when: datetime) -> list[dict[str, Any]]:
    keys = (pilot_agents.c.status, pilot_agents.c.site, pilot_agents.c.ce,
            pilot_agents.c.grid_type)
    docs = []
    for status, site, ce, grid_type, count in conn.execute(
            sa.select(*keys, sa.func.count()).group_by(*keys)):
        doc = normalise(PILOTS, {"Status": status, "GridSite": site, "GridCE": ce,
                                 "GridType": grid_type, "NumOfPilots": count,
                                 "timestamp": when})
        docs.append({**doc, "_id": doc_id(PILOTS, doc)})
    return docs


# -- cycles --------------------------------------------------------------------------------------


def _cycles(state: Engine, rtype: RecordType, since: datetime) -> dict[int, str]:
    with state.connect() as conn:
        rows = conn.execute(sa.select(history_cycles.c.ts, history_cycles.c.state).where(
            history_cycles.c.type == rtype.name, history_cycles.c.ts >= epoch(since)))
        return {int(ts): str(st) for ts, st in rows}


def _mark(state: Engine, rtype: RecordType, when: datetime, status: str, records: int = 0,
          source: str = "live") -> None:
    key = (history_cycles.c.type == rtype.name, history_cycles.c.ts == epoch(when))
    values = {"state": status, "records": records, "source": source, "updated": utcnow()}
    with write_transaction(state) as conn:
        if not conn.execute(sa.update(history_cycles).where(*key).values(**values)).rowcount:
            conn.execute(sa.insert(history_cycles).values(type=rtype.name, ts=epoch(when),
                                                          **values))


def write_snapshot(backend: Backend, state: Engine, rtype: RecordType, when: datetime,
                   docs: list[dict[str, Any]], *, source: str = "live",
                   redo: bool = False) -> int:
    """Store one snapshot; ``redo`` first removes what an interrupted cycle left."""
    _mark(state, rtype, when, "started", source=source)
    if redo:
        backend.delete_range(rtype, when, when + timedelta(seconds=1))
    backend.put(rtype, docs)
    _mark(state, rtype, when, "done", len(docs), source)
    return len(docs)


@dataclass
class HistoryResult:
    written: list[datetime] = field(default_factory=list)
    backfilled: list[datetime] = field(default_factory=list)


def run_cycle(backend: Backend, state: Engine, wms: Engine, *, period: int,
              backfill: int, now: datetime | None = None) -> HistoryResult:
    """Write the current interval's snapshots and any missed or unfinished ones."""
    now = now or utcnow()
    current = slot_of(now, period)
    oldest = current - timedelta(seconds=period * backfill)
    result = HistoryResult()
    done = _cycles(state, WMS, oldest)
    pilots_done = _cycles(state, PILOTS, oldest)
    known = [ts for ts, st in done.items() if st == "done"]
    # missed intervals: after the last done one (never before the first ever written)
    todo: list[datetime] = []
    if known:
        slot = max(from_epoch(max(known) + period), oldest)
        while slot < current:
            todo.append(slot)
            slot += timedelta(seconds=period)
    todo += [from_epoch(ts) for ts, st in done.items() if st == "started"
             and from_epoch(ts) < current]
    with wms.connect() as conn:
        for when in sorted(set(todo)):
            docs = jobs_at(conn, when)
            write_snapshot(backend, state, WMS, when, docs, source="logging",
                           redo=done.get(epoch(when)) == "started")
            result.backfilled.append(when)
        if done.get(epoch(current)) != "done":
            write_snapshot(backend, state, WMS, current, live_jobs(conn, current),
                           redo=epoch(current) in done)
            result.written.append(current)
        if pilots_done.get(epoch(current)) != "done":
            write_snapshot(backend, state, PILOTS, current, live_pilots(conn, current),
                           redo=epoch(current) in pilots_done)
    if result.backfilled:
        log.info("history: %d missed interval(s) filled in from the job logging",
                 len(result.backfilled))
    return result


def latest_snapshot(backend: Backend, rtype: RecordType, *, within: timedelta,
                    now: datetime | None = None) -> tuple[datetime | None, list[dict[str, Any]]]:
    """The newest snapshot no older than ``within``: (its time, its records)."""
    now = now or utcnow()
    times = backend.times(rtype, now - within, now + timedelta(seconds=1))
    if not times:
        return None, []
    when = times[-1]
    return when, backend.records(rtype, when, when + timedelta(seconds=1), limit=10_000)


def retention(backend: Backend, retention_days: dict[str, int],
              now: datetime | None = None) -> dict[str, int]:
    """Drop records older than each type's retention (0 keeps forever)."""
    now = now or utcnow()
    dropped = {}
    for name, days in retention_days.items():
        if days > 0 and name in TYPES:
            dropped[name] = backend.drop_before(TYPES[name], now - timedelta(days=days))
    return dropped
