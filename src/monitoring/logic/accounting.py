"""Accounting: records from the WMS outbox, stored once per job or pilot, and hourly buckets.

The WMS writes an outbox row when a job or pilot reaches a final status (``wms.db.outbox``).
:func:`ship` takes a batch of rows, builds the records from the WMS tables (the job, its
parameters of the current attempt, its last heartbeat; the pilot and its jobs), stores them
with :func:`store` and only then deletes the rows. Every step can be repeated:

1. the stored versions of the records are read (a job that ends again after a rescheduling
   replaces its earlier record), and the hours of old and new versions are marked *dirty* in
   ``mon_dirty_buckets``;
2. the records are upserted under their id (``JobID``, the pilot reference);
3. the buckets get the difference: new values added, old ones taken away, empty buckets
   removed (no aggregation over the records); the marks go.

Only one shipper runs at a time (a lease in the state database), so a difference is never
applied twice. A crash or a backend outage leaves the outbox rows and the dirty marks; the
next cycle first rebuilds the dirty hours' buckets from the records themselves, then ships the
rows again with the same ids: never a lost record, never a duplicate. A row whose job is no
longer final (rescheduled meanwhile) is dropped: the job makes a new row when it ends again.

Example::

    >>> sorted(JOB_PARAMETERS)[:2]
    ['CPUNormalizationFactor', 'GridCE']
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.engine import Connection, Engine

from core.db import utcnow
from monitoring.db.base import Backend, epoch, from_epoch
from monitoring.db.tables import dirty_buckets
from monitoring.types import (
    ACCOUNTING,
    BUCKET_SECONDS,
    TYPES,
    RecordType,
    bucket_start,
    doc_id,
    normalise,
)
from wms.db import heartbeats, outbox
from wms.db.pilot_tables import pilot_agents, pilot_jobs
from wms.db.tables import jobs
from wms.logic import parameter_store
from wms.logic.parameter_store import ParameterStore

log = logging.getLogger("pilotwms.monitoring.accounting")

#: job parameters (DIRAC's names, set by the job wrapper) -> record fields
JOB_PARAMETERS = {
    "TotalCPUTime(s)": "CPUTime", "NormCPUTime(s)": "NormCPUTime",
    "WallClockTime(s)": "WallClockTime", "MemoryUsed(kb)": "MemoryPeak",
    "NumberOfProcessors": "Processors", "CPUNormalizationFactor": "CPUNormalizationFactor",
    "GridCE": "GridCE", "Pilot_Reference": "PilotReference",
    "InputDataSize": "InputDataSize", "OutputDataSize": "OutputDataSize",
    "InputDataFiles": "InputDataFiles", "OutputDataFiles": "OutputDataFiles",
    "InputSandBoxSize": "InputSandBoxSize", "OutputSandBoxSize": "OutputSandBoxSize",
}
#: heartbeat values used when the wrapper could not send its final parameters (killed,
#: stalled jobs): the last ones the watchdog reported
HEARTBEAT_FALLBACK = {"CPUConsumed": "CPUTime", "WallClockTime": "WallClockTime",
                      "MemoryUsed": "MemoryPeak"}
FINAL_JOB = outbox.FINAL_JOB_STATUSES


def _number(text: Any) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return 0.0


# -- building records from the WMS ---------------------------------------------------------------


def _last_heartbeats(conn: Connection, job_ids: Sequence[int]) -> dict[int, dict[str, str]]:
    return heartbeats.latest_values(conn, job_ids, HEARTBEAT_FALLBACK)


def job_records(conn: Connection, job_ids: Sequence[int],
                store: ParameterStore | None = None) -> list[dict[str, Any]]:
    """Accounting records of the jobs among ``job_ids`` that are in a final status now
    (parameters from the WMS table, or ``store`` when they live in the search backend)."""
    rows = []
    for start in range(0, len(job_ids), 500):
        chunk = list(job_ids[start:start + 500])
        rows += list(conn.execute(sa.select(jobs).where(jobs.c.job_id.in_(chunk),
                                                        jobs.c.status.in_(list(FINAL_JOB)))))
    if not rows:
        return []
    ids = [row.job_id for row in rows]
    params = parameter_store.read(conn, store, ids)
    beats = _last_heartbeats(conn, ids)
    records = []
    for row in rows:
        values: dict[str, Any] = {}
        for name, value in params.get(row.job_id, {}).items():
            field = JOB_PARAMETERS.get(name)
            if field is not None:
                values[field] = value
        for name, field in HEARTBEAT_FALLBACK.items():
            if field not in values and name in beats.get(row.job_id, {}):
                # heartbeat memory is in kB already, like the wrapper's "MemoryUsed(kb)"
                values[field] = _number(beats[row.job_id][name])
        end = row.end_exec_time or row.last_update_time
        start_time = row.start_exec_time
        wall = _number(values.get("WallClockTime"))
        if not wall and start_time is not None:
            wall = max(0.0, (end - start_time).total_seconds())
        processors = max(1.0, _number(values.get("Processors")) or 1.0)
        cpu = _number(values.get("CPUTime"))
        factor = _number(values.get("CPUNormalizationFactor"))
        norm = _number(values.get("NormCPUTime")) or cpu * factor
        record = {
            "JobID": row.job_id, "User": row.owner, "UserGroup": row.owner_group,
            "VO": row.vo, "Site": row.site, "GridCE": values.get("GridCE", ""),
            "JobType": row.job_type, "JobGroup": row.job_group,
            "FinalMajorStatus": row.status, "FinalMinorStatus": row.minor_status,
            "CPUTime": cpu, "NormCPUTime": norm, "WallClockTime": wall,
            "ExecTime": wall * processors, "MemoryPeak": _number(values.get("MemoryPeak")),
            "Processors": processors, "Reschedules": row.reschedule_counter,
            "SubmissionTime": row.submission_time, "StartTime": start_time, "EndTime": end,
            "Attempt": row.reschedule_counter, "CPUNormalizationFactor": factor or None,
            "PilotReference": values.get("PilotReference"),
        }
        for name in ("InputDataSize", "OutputDataSize", "InputDataFiles", "OutputDataFiles",
                     "InputSandBoxSize", "OutputSandBoxSize"):
            record[name] = _number(values.get(name))
        records.append(record)
    return records


def pilot_records(conn: Connection, pilot_ids: Sequence[int]) -> list[dict[str, Any]]:
    """Records of the pilots among ``pilot_ids`` (with the number of jobs each ran)."""
    records = []
    for start in range(0, len(pilot_ids), 500):
        chunk = list(pilot_ids[start:start + 500])
        counts: dict[int, int] = dict(conn.execute(sa.select(pilot_jobs.c.pilot_id, sa.func.count())
                                   .where(pilot_jobs.c.pilot_id.in_(chunk))
                                   .group_by(pilot_jobs.c.pilot_id)).all())
        for row in conn.execute(sa.select(pilot_agents).where(
                pilot_agents.c.pilot_id.in_(chunk),
                pilot_agents.c.status.in_(list(outbox.FINAL_PILOT_STATUSES)))):
            records.append({
                "PilotReference": row.pilot_reference, "UserGroup": row.owner_group,
                "VO": row.vo, "Site": row.site, "GridCE": row.ce, "Queue": row.queue,
                "GridType": row.grid_type, "GridStatus": row.status,
                "Jobs": counts.get(row.pilot_id, 0), "SubmissionTime": row.submission_time,
                "EndTime": row.last_update_time})
    return records


# -- storing: records, then buckets --------------------------------------------------------------


def _mark_dirty(state: Engine, rtype: RecordType, hours: Iterable[int]) -> None:
    rows = [{"type": rtype.name, "bucket": h} for h in sorted(set(hours))]
    if not rows:
        return
    with state.begin() as conn:
        if conn.dialect.name == "sqlite":
            conn.execute(sqlite.insert(dirty_buckets).on_conflict_do_nothing(), rows)
        else:
            conn.execute(mysql.insert(dirty_buckets).prefix_with("IGNORE"), rows)


def _ranges(hours: Sequence[int]) -> list[tuple[int, int]]:
    """Contiguous [start, end) epoch ranges covering sorted hour starts."""
    out: list[tuple[int, int]] = []
    for hour in sorted(set(hours)):
        if out and out[-1][1] == hour:
            out[-1] = (out[-1][0], hour + BUCKET_SECONDS)
        else:
            out.append((hour, hour + BUCKET_SECONDS))
    return out


def _clear_dirty(state: Engine, rtype: RecordType, hours: Sequence[int]) -> None:
    wanted = sorted(set(hours))
    with state.begin() as conn:
        for start in range(0, len(wanted), 500):
            conn.execute(sa.delete(dirty_buckets).where(
                dirty_buckets.c.type == rtype.name,
                dirty_buckets.c.bucket.in_(wanted[start:start + 500])))


def rebuild_buckets(backend: Backend, state: Engine, rtype: RecordType,
                    limit: int = 2000) -> int:
    """Recompute the buckets of the dirty hours of ``rtype`` from its records (recovery after
    an interrupted cycle, and records written by ``put``); returns the hours rebuilt."""
    assert rtype.buckets is not None  # noqa: S101 - accounting types only
    btype = TYPES[rtype.buckets]
    with state.connect() as conn:
        hours = [int(h) for h in conn.execute(
            sa.select(dirty_buckets.c.bucket).where(dirty_buckets.c.type == rtype.name)
            .order_by(dirty_buckets.c.bucket).limit(limit)).scalars()]
    for lo, hi in _ranges(hours):
        backend.rebuild_buckets(rtype, btype, from_epoch(lo), from_epoch(hi))
    if hours:
        _clear_dirty(state, rtype, hours)
    return len(hours)


def _bucket_key(rtype: RecordType, doc: dict[str, Any]) -> tuple[datetime, tuple[str, ...]]:
    return bucket_start(doc[rtype.time_field]), tuple(doc[k] for k in rtype.keys)


def apply_deltas(backend: Backend, rtype: RecordType, before: dict[str, dict[str, Any]],
                 docs: Sequence[dict[str, Any]]) -> int:
    """Bring the buckets up to date for records replacing ``before`` (their stored versions):
    each bucket gets the new records' values added and the old ones' taken away; a bucket
    left without records goes. Returns the buckets written."""
    assert rtype.buckets is not None  # noqa: S101 - accounting types only
    btype = TYPES[rtype.buckets]
    fields = (*rtype.values, "Entries")
    deltas: dict[tuple[datetime, tuple[str, ...]], dict[str, float]] = {}

    def add(doc: dict[str, Any], sign: float) -> None:
        entry = deltas.setdefault(_bucket_key(rtype, doc), dict.fromkeys(fields, 0.0))
        for name in rtype.values:
            entry[name] += sign * doc[name]
        entry["Entries"] += sign

    for old in before.values():
        add(old, -1.0)
    for new in docs:
        add(new, 1.0)
    ids = {key: doc_id(btype, {"BucketStart": key[0], **dict(zip(rtype.keys, key[1],
                                                                 strict=True))})
           for key in deltas}
    stored = backend.get(btype, list(ids.values()))
    write, gone = [], []
    for key, delta in deltas.items():
        if not any(delta.values()):
            continue  # a record written again unchanged
        bucket_id = ids[key]
        base = stored.get(bucket_id)
        values = {name: (base[name] if base else 0.0) + delta[name] for name in fields}
        if values["Entries"] <= 0.5:
            if base is not None:
                gone.append(bucket_id)
            continue
        doc = {"BucketStart": key[0], **dict(zip(rtype.keys, key[1], strict=True)), **values}
        write.append({**normalise(btype, doc), "_id": bucket_id})
    backend.delete_ids(btype, gone)
    return backend.put(btype, write)


def store(backend: Backend, state: Engine, rtype: RecordType,
          records: Sequence[dict[str, Any]], *, buckets: str = "incremental") -> int:
    """Store accounting records (upsert by id) and their buckets.

    ``buckets="incremental"`` (the shipping cycle, which runs alone: :func:`ship`) updates
    the buckets with the difference the records make; ``"defer"`` (records arriving through
    ``put``, possibly concurrently) only marks their hours for the next cycle's rebuild.
    """
    docs = []
    for record in records:
        norm = normalise(rtype, record)
        docs.append({**norm, "_id": doc_id(rtype, norm)})
    if not docs:
        return 0
    before = backend.get(rtype, [d["_id"] for d in docs])
    hours = [epoch(bucket_start(d[rtype.time_field])) for d in (*docs, *before.values())]
    # marked first: a crash anywhere below leaves them, and the next cycle rebuilds those
    # hours from the records themselves
    _mark_dirty(state, rtype, hours)
    backend.put(rtype, docs)
    if buckets == "incremental":
        apply_deltas(backend, rtype, before, docs)
        _clear_dirty(state, rtype, hours)
    return len(docs)


@dataclass
class ShipResult:
    jobs: int = 0
    pilots: int = 0
    transfers: int = 0
    skipped: int = 0
    #: outbox rows left (more to do at once)
    more: bool = False


def ship(backend: Backend, state: Engine, wms: Engine, *, batch: int = 5000,
         parameters: ParameterStore | None = None) -> ShipResult:
    """One batch of the outbox into accounting records. Raises
    :class:`~monitoring.db.base.BackendUnavailable` (rows kept) when the backend is down."""
    with wms.connect() as conn:
        rows = outbox.pending(conn, batch)
        job_ids = sorted({r.ref for r in rows if r.kind == "job"})
        pilot_ids = sorted({r.ref for r in rows if r.kind == "pilot"})
        job_docs = job_records(conn, job_ids, parameters)
        pilot_docs = pilot_records(conn, pilot_ids)
    result = ShipResult(more=len(rows) >= batch)
    # hours left dirty (an interrupted cycle, records from put) are rebuilt first
    for rtype in ACCOUNTING:
        rebuild_buckets(backend, state, rtype)
    result.jobs = store(backend, state, TYPES["Job"], job_docs)
    result.pilots = store(backend, state, TYPES["Pilot"], pilot_docs)
    result.skipped = len(rows) - len(job_docs) - len(pilot_docs)
    with wms.begin() as conn:
        outbox.remove(conn, [r.id for r in rows])
    if rows:
        log.info("accounting: %d job and %d pilot record(s) stored, %d row(s) skipped",
                 result.jobs, result.pilots, result.skipped)
    return result


def backlog(wms: Engine) -> tuple[int, datetime | None]:
    """(rows waiting in the outbox, creation time of the oldest)."""
    with wms.connect() as conn:
        oldest = conn.execute(sa.select(sa.func.min(outbox.monitoring_outbox.c.created))
                              ).scalar()
        return outbox.count(conn), oldest


def lag(wms: Engine) -> timedelta:
    """How long the oldest waiting row has waited (zero when none)."""
    _, oldest = backlog(wms)
    if oldest is None:
        return timedelta(0)
    if oldest.tzinfo is None:
        oldest = oldest.replace(tzinfo=utcnow().tzinfo)
    return utcnow() - oldest
