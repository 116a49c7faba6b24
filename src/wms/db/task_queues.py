"""Queries on the task-queue tables. No rules here: :mod:`wms.logic.task_queues` and
:mod:`wms.logic.matching` decide what goes where and who gets what.

Every function takes an open ``Connection`` (the caller's transaction). Row locks are taken with
``FOR UPDATE [SKIP LOCKED]`` / ``LOCK IN SHARE MODE`` on MariaDB; SQLite ignores them and relies on
:func:`core.db.write_transaction` (``BEGIN IMMEDIATE``) to serialise writers.

Example::

    >>> from datetime import datetime, timezone
    >>> from core.db import init_schema, make_engine, write_transaction
    >>> from wms.db.schema import WMS_SCHEMA
    >>> engine = make_engine("sqlite://"); _ = init_schema(engine, WMS_SCHEMA)
    >>> now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    >>> new = NewTaskQueue("h1", "alice", "g", "vo", 3600, 1, {"Site": ["S1"]})
    >>> with write_transaction(engine) as conn:
    ...     ids = create_task_queues(conn, [new], now)
    ...     again = create_task_queues(conn, [new], now)
    ...     found = find_task_queues(conn, ["h1", "h2"])
    >>> ids == again == found
    True
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.engine import Connection

from wms.db.tables import JOB_ATTRIBUTES, job_jdls, jobs
from wms.db.tq_tables import (
    site_mask,
    task_queues,
    tq_jobs,
    tq_match_delays,
    tq_requirements,
)

#: rows per statement for bulk inserts and IN lists
CHUNK = 1000

#: single-valued task-queue columns that a negative condition may name (DIRAC attribute names)
TQ_COLUMNS: dict[str, sa.Column[Any]] = {
    "Owner": task_queues.c.owner,
    "OwnerGroup": task_queues.c.owner_group,
    "VO": task_queues.c.vo,
}


@dataclass(frozen=True)
class NewTaskQueue:
    """A task queue to find or create: its key and its requirements (kind -> values)."""

    req_hash: str
    owner: str
    owner_group: str
    vo: str
    cpu_time: int
    job_priority: int
    requirements: Mapping[str, Sequence[str]]


@dataclass(frozen=True)
class TQFilter:
    """What a resource accepts, as conditions on task queues.

    ``offered`` maps a requirement kind (Site, GridCE, Platform, JobType) to the resource's
    values: the queue must have no requirement of that kind or share a value; a kind mapped to
    None (or absent) is not restricted. ``tags`` None means any tags; otherwise every tag of the
    queue must be among them. ``exclude`` names (kind or ``Owner``/``OwnerGroup``/``VO``) values
    a queue must not have (running limits, matching delays).
    """

    vo: str | None = None
    owner_groups: Sequence[str] | None = None
    owners: Sequence[str] | None = None
    cpu_time: int | None = None
    site: str | None = None
    #: "ignore", "not_banned" (unknown sites allowed) or "active" (only sites marked Active)
    site_mask: Literal["ignore", "not_banned", "active"] = "ignore"
    offered: Mapping[str, Sequence[str] | None] = field(default_factory=dict)
    tags: Sequence[str] | None = None
    required_tags: Sequence[str] = ()
    exclude: Mapping[str, Sequence[str]] = field(default_factory=dict)
    only_with_jobs: bool = True


@dataclass(frozen=True)
class CandidateTQ:
    """A matching task queue with what the share computation needs."""

    tq_id: int
    owner: str
    owner_group: str
    vo: str
    job_priority: int
    #: sum of ``job_priority`` over the owner's non-empty queues in this group
    owner_priority_sum: float
    #: owners of this group with non-empty queues
    group_owners: int


@dataclass(frozen=True)
class ClaimRow:
    """The job at the head of a task queue, locked, with what the claim needs."""

    job_id: int
    tq_id: int
    status: str
    minor_status: str
    application_status: str
    owner: str
    owner_group: str
    vo: str
    site: str
    reschedule_counter: int
    jdl: str | None
    attributes: dict[str, Any]


def _chunks(items: Sequence[Any], size: int = CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _insert_ignoring_duplicates(conn: Connection, table: sa.Table,
                                rows: Sequence[dict[str, Any]], key: str) -> None:
    """Insert rows; rows whose unique key exists already are left as they are."""
    if not rows:
        return
    if conn.dialect.name == "sqlite":
        conn.execute(sqlite.insert(table).on_conflict_do_nothing(), list(rows))
        return
    stmt = mysql.insert(table)
    conn.execute(stmt.on_duplicate_key_update({key: stmt.inserted[key]}), list(rows))


# -- enqueue / dequeue ------------------------------------------------------------------------


def find_task_queues(conn: Connection, hashes: Iterable[str], *,
                     lock: bool = False) -> dict[str, int]:
    """req_hash -> tq_id of the existing queues among ``hashes``.

    ``lock`` takes shared row locks (MariaDB) so that a concurrent removal of an empty queue
    waits for this transaction, which is about to add jobs to it.
    """
    found: dict[str, int] = {}
    for chunk in _chunks(sorted(set(hashes))):
        query = (sa.select(task_queues.c.req_hash, task_queues.c.tq_id)
                 .where(task_queues.c.req_hash.in_(chunk))
                 .order_by(task_queues.c.req_hash))
        if lock:
            query = query.with_for_update(read=True)
        found.update((h, int(i)) for h, i in conn.execute(query))
    return found


def create_task_queues(conn: Connection, new: Sequence[NewTaskQueue],
                       now: datetime) -> dict[str, int]:
    """Find or create the queues (race-safe: unique hash, duplicates ignored); returns
    req_hash -> tq_id for all of ``new``. Rows are written in hash order (no deadlocks between
    concurrent creators)."""
    by_hash = {tq.req_hash: tq for tq in new}
    ids = find_task_queues(conn, by_hash, lock=True)
    missing = sorted(h for h in by_hash if h not in ids)
    if not missing:
        return ids
    _insert_ignoring_duplicates(conn, task_queues, [{
        "req_hash": h, "owner": by_hash[h].owner, "owner_group": by_hash[h].owner_group,
        "vo": by_hash[h].vo, "cpu_time": by_hash[h].cpu_time,
        "job_priority": by_hash[h].job_priority, "created": now} for h in missing], "req_hash")
    created = find_task_queues(conn, missing, lock=True)
    rows = sorted(({"tq_id": created[h], "kind": kind, "value": value}
                   for h in missing for kind, values in by_hash[h].requirements.items()
                   for value in dict.fromkeys(values)),
                  key=lambda r: (r["tq_id"], r["kind"], r["value"]))
    for chunk in _chunks(rows):
        _insert_ignoring_duplicates(conn, tq_requirements, chunk, "value")
    ids.update(created)
    return ids


def add_jobs(conn: Connection, members: Sequence[tuple[int, int, int, float]]) -> None:
    """Put jobs in queues: (job_id, tq_id, priority, pick_key); a job already queued moves."""
    remove_jobs(conn, [m[0] for m in members])
    for chunk in _chunks(sorted(members)):
        conn.execute(sa.insert(tq_jobs), [
            {"job_id": j, "tq_id": t, "priority": p, "pick_key": k} for j, t, p, k in chunk])


def remove_jobs(conn: Connection, job_ids: Sequence[int]) -> None:
    """Take jobs out of their queues (queues stay; see :func:`remove_empty_task_queue`)."""
    for chunk in _chunks(sorted(set(job_ids))):
        conn.execute(sa.delete(tq_jobs).where(tq_jobs.c.job_id.in_(chunk)))


def empty_task_queue_ids(conn: Connection) -> list[int]:
    query = sa.select(task_queues.c.tq_id).where(
        ~sa.exists().where(tq_jobs.c.tq_id == task_queues.c.tq_id))
    return [int(x) for x in conn.execute(query.order_by(task_queues.c.tq_id)).scalars()]


def remove_empty_task_queue(conn: Connection, tq_id: int) -> bool:
    """Delete the queue if it has no job; True when deleted.

    The queue row is locked first, so an enqueuer holding it (shared) is waited for and its
    jobs are seen; an enqueuer coming later finds no row and creates a new queue.
    """
    locked = conn.execute(sa.select(task_queues.c.tq_id).where(task_queues.c.tq_id == tq_id)
                          .with_for_update()).first()
    if locked is None:
        return False
    if conn.execute(sa.select(tq_jobs.c.job_id).where(tq_jobs.c.tq_id == tq_id)
                    .limit(1)).first() is not None:
        return False
    conn.execute(sa.delete(tq_requirements).where(tq_requirements.c.tq_id == tq_id))
    conn.execute(sa.delete(task_queues).where(task_queues.c.tq_id == tq_id))
    return True


# -- matching ---------------------------------------------------------------------------------


def _requirement(tq: Any, kind: str, values: Sequence[str] | None = None,
                 *, negate_values: bool = False) -> sa.ColumnElement[bool]:
    """EXISTS a requirement of ``kind`` on the queue (with a value in / not in ``values``)."""
    req = tq_requirements.alias()
    conds: list[sa.ColumnElement[bool]] = [req.c.tq_id == tq.c.tq_id, req.c.kind == kind]
    if values is not None:
        conds.append(req.c.value.not_in(list(values)) if negate_values
                     else req.c.value.in_(list(values)))
    return sa.exists().where(*conds)


def _conditions(tq: Any, flt: TQFilter) -> list[sa.ColumnElement[bool]]:
    conds: list[sa.ColumnElement[bool]] = []
    if flt.vo is not None:
        conds.append(tq.c.vo == flt.vo)
    if flt.owner_groups is not None:
        conds.append(tq.c.owner_group.in_(list(flt.owner_groups)))
    if flt.owners is not None:
        conds.append(tq.c.owner.in_(list(flt.owners)))
    if flt.cpu_time is not None:
        conds.append(tq.c.cpu_time <= flt.cpu_time)
    for kind, values in flt.offered.items():
        if values is not None:
            conds.append(sa.or_(~_requirement(tq, kind), _requirement(tq, kind, values))
                         if values else ~_requirement(tq, kind))
    if flt.site is not None:
        conds.append(~_requirement(tq, "BannedSite", [flt.site]))
        if flt.site_mask == "not_banned":
            conds.append(~sa.exists().where(site_mask.c.site == flt.site,
                                            site_mask.c.status == "Banned"))
        elif flt.site_mask == "active":
            conds.append(sa.exists().where(site_mask.c.site == flt.site,
                                           site_mask.c.status == "Active"))
    if flt.tags is not None:
        conds.append(~_requirement(tq, "Tag", flt.tags, negate_values=True)
                     if flt.tags else ~_requirement(tq, "Tag"))
    for tag in dict.fromkeys(flt.required_tags):
        conds.append(_requirement(tq, "Tag", [tag]))
    for name, values in flt.exclude.items():
        if not values:
            continue
        column = TQ_COLUMNS.get(name)
        if column is not None:
            conds.append(tq.c[column.name].not_in(list(values)))
        else:
            conds.append(~_requirement(tq, name, values))
    if flt.only_with_jobs:
        conds.append(sa.exists().where(tq_jobs.c.tq_id == tq.c.tq_id))
    return conds


def matching_task_queues(conn: Connection, flt: TQFilter) -> list[CandidateTQ]:
    """The queues passing ``flt``, with their owner's priority sum and their group's number of
    owners (over all non-empty queues), in one statement."""
    tq = task_queues.alias("tq")
    others = task_queues.alias("o")
    owner_sums = (sa.select(others.c.owner_group, others.c.owner,
                            sa.func.sum(others.c.job_priority).label("psum"))
                  .where(sa.exists().where(tq_jobs.c.tq_id == others.c.tq_id))
                  .group_by(others.c.owner_group, others.c.owner).subquery("os"))
    group_counts = (sa.select(owner_sums.c.owner_group, sa.func.count().label("owners"))
                    .group_by(owner_sums.c.owner_group).subquery("gc"))
    query = (sa.select(tq.c.tq_id, tq.c.owner, tq.c.owner_group, tq.c.vo, tq.c.job_priority,
                       owner_sums.c.psum, group_counts.c.owners)
             .select_from(tq.join(owner_sums, sa.and_(owner_sums.c.owner_group == tq.c.owner_group,
                                                      owner_sums.c.owner == tq.c.owner))
                          .join(group_counts, group_counts.c.owner_group == tq.c.owner_group))
             .where(*_conditions(tq, flt))
             .order_by(tq.c.tq_id))
    return [CandidateTQ(int(r[0]), r[1], r[2], r[3], int(r[4]), float(r[5] or 0), int(r[6]))
            for r in conn.execute(query)]


def matching_task_queue_ids(conn: Connection, flt: TQFilter) -> list[int]:
    """Only the IDs of the queues passing ``flt`` (empty queues included if asked)."""
    tq = task_queues.alias("tq")
    query = sa.select(tq.c.tq_id).where(*_conditions(tq, flt)).order_by(tq.c.tq_id)
    return [int(x) for x in conn.execute(query).scalars()]


def claim_next_job(conn: Connection, tq_id: int | None, *, job_id: int | None = None,
                   tq_ids: Sequence[int] | None = None,
                   exclude: Mapping[str, Sequence[str]] | None = None,
                   attributes: Sequence[str] = ()) -> ClaimRow | None:
    """Lock and return the queued job with the smallest pick key in queue ``tq_id`` (or job
    ``job_id`` in any of ``tq_ids``), skipping rows other transactions hold (MariaDB ``SKIP LOCKED``).

    ``exclude`` maps DIRAC job attribute names to values the job must not have; ``attributes``
    are extra job attributes to return.
    """
    columns = [tq_jobs.c.job_id, tq_jobs.c.tq_id, jobs.c.status, jobs.c.minor_status,
               jobs.c.application_status, jobs.c.owner, jobs.c.owner_group, jobs.c.vo, jobs.c.site,
               jobs.c.reschedule_counter, job_jdls.c.processed_jdl]
    extra = [JOB_ATTRIBUTES[name].label(f"a_{i}") for i, name in enumerate(attributes)]
    query = (sa.select(*columns, *extra)
             .select_from(tq_jobs.join(jobs, jobs.c.job_id == tq_jobs.c.job_id)
                          .outerjoin(job_jdls, job_jdls.c.job_id == tq_jobs.c.job_id)))
    if tq_id is not None:
        query = query.where(tq_jobs.c.tq_id == tq_id)
    if job_id is not None:
        query = query.where(tq_jobs.c.job_id == job_id)
    if tq_ids is not None:
        query = query.where(tq_jobs.c.tq_id.in_(list(tq_ids)))
    for name, values in (exclude or {}).items():
        if values:
            query = query.where(JOB_ATTRIBUTES[name].not_in(list(values)))
    query = query.order_by(tq_jobs.c.pick_key).limit(1).with_for_update(skip_locked=True)
    row = conn.execute(query).first()
    if row is None:
        return None
    return ClaimRow(job_id=int(row[0]), tq_id=int(row[1]), status=row[2], minor_status=row[3],
                    application_status=row[4], owner=row[5], owner_group=row[6], vo=row[7],
                    site=row[8], reschedule_counter=int(row[9]), jdl=row[10],
                    attributes={name: row[11 + i] for i, name in enumerate(attributes)})


def running_counts(conn: Connection, site: str, attribute: str, values: Sequence[str],
                   statuses: Sequence[str]) -> dict[str, int]:
    """Jobs at ``site`` in ``statuses`` per value of ``attribute`` (only ``values``)."""
    column = JOB_ATTRIBUTES[attribute]
    query = (sa.select(column, sa.func.count())
             .where(jobs.c.site == site, jobs.c.status.in_(list(statuses)),
                    column.in_(list(values)))
             .group_by(column))
    return {str(value): int(count) for value, count in conn.execute(query)}


def active_delays(conn: Connection, site: str, now: datetime) -> dict[str, list[str]]:
    """attribute -> values that may not be matched at ``site`` yet."""
    out: dict[str, list[str]] = {}
    query = sa.select(tq_match_delays.c.attribute, tq_match_delays.c.value).where(
        tq_match_delays.c.site == site, tq_match_delays.c.until > now)
    for attribute, value in conn.execute(query):
        out.setdefault(attribute, []).append(value)
    return out


def set_delays(conn: Connection, site: str, delays: Sequence[tuple[str, str, datetime]]) -> None:
    """Record (attribute, value, until) delays at ``site`` (replacing older ones)."""
    for attribute, value, _ in delays:
        conn.execute(sa.delete(tq_match_delays).where(
            tq_match_delays.c.site == site, tq_match_delays.c.attribute == attribute,
            tq_match_delays.c.value == value))
    if delays:
        conn.execute(sa.insert(tq_match_delays), [
            {"site": site, "attribute": a, "value": v, "until": u} for a, v, u in delays])


# -- inspection ---------------------------------------------------------------------------------


def task_queue_info(conn: Connection, tq_ids: Sequence[int] | None = None
                    ) -> dict[int, dict[str, Any]]:
    """tq_id -> columns, ``jobs`` (count) and ``requirements`` (kind -> sorted values), for
    the given queues or all non-empty ones."""
    counts = (sa.select(tq_jobs.c.tq_id, sa.func.count().label("n"))
              .group_by(tq_jobs.c.tq_id).subquery("c"))
    query = (sa.select(task_queues, counts.c.n)
             .select_from(task_queues.join(counts, counts.c.tq_id == task_queues.c.tq_id)))
    if tq_ids is not None:
        if not tq_ids:
            return {}
        query = query.where(task_queues.c.tq_id.in_(list(tq_ids)))
    out: dict[int, dict[str, Any]] = {}
    for row in conn.execute(query.order_by(task_queues.c.tq_id)).mappings():
        info = dict(row)
        info["jobs"] = int(info.pop("n"))
        info["requirements"] = {}
        out[int(row["tq_id"])] = info
    if out:
        for chunk in _chunks(sorted(out)):
            reqs = (sa.select(tq_requirements).where(tq_requirements.c.tq_id.in_(chunk))
                    .order_by(tq_requirements.c.tq_id, tq_requirements.c.kind,
                              tq_requirements.c.value))
            for tq_id, kind, value in conn.execute(reqs):
                out[int(tq_id)]["requirements"].setdefault(kind, []).append(value)
    return out
