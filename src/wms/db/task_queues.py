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

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.engine import Connection

from core.bulk import insert_rows
from wms.db.tables import JOB_ATTRIBUTES, job_jdls, job_logging, jobs
from wms.db.tq_tables import site_mask, task_queues, tq_jobs, tq_requirements

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
    """A matching task queue."""

    tq_id: int
    owner: str
    owner_group: str
    vo: str
    job_priority: int


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


def add_jobs(conn: Connection, members: Sequence[tuple[int, int, int, float]], *,
             new: bool = False) -> None:
    """Put jobs in queues: (job_id, tq_id, priority, pick_key); a job already queued moves.

    ``new``: the jobs were stored in this transaction, so none is in a queue
    (``tq_jobs.job_id`` references the job: no row can predate it) and the DELETE of their
    memberships is skipped."""
    if not new:
        remove_jobs(conn, [m[0] for m in members])
    # rows to the driver (core.bulk), the queue and priority shared by a group's rows given
    # once: written once into the INSERT on MariaDB, not escaped again for every row
    groups: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for j, t, p, k in sorted(members):
        groups.setdefault((t, p), []).append({"job_id": j, "pick_key": k})
    for (t, p), rows in groups.items():
        insert_rows(conn, tq_jobs, rows, constants={"tq_id": t, "priority": p})


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


def _has_jobs(tq: Any) -> sa.ColumnElement[bool]:
    """The queue has at least one job. A LIMIT 1 scalar subquery, not EXISTS: MariaDB turns
    EXISTS into a semi-join that materialises the whole ``tq_jobs`` index on every match."""
    return (sa.select(tq_jobs.c.job_id).where(tq_jobs.c.tq_id == tq.c.tq_id).limit(1)
            .scalar_subquery().is_not(None))


# Statements are built once per "shape" of the filter and cached; values are bound (lists as
# expanding IN parameters): building SQLAlchemy constructs costs more than running them.

_Shape = tuple[Any, ...]


def _shape(flt: TQFilter) -> tuple[_Shape, dict[str, Any]]:
    """The filter's shape (hashable) and its bound values."""
    params: dict[str, Any] = {}
    shape: list[Any] = []
    for name, value in (("vo", flt.vo), ("groups", flt.owner_groups), ("owners", flt.owners),
                        ("cpu", flt.cpu_time), ("site", flt.site)):
        shape.append(value is not None)
        if value is not None:
            params[name] = list(value) if isinstance(value, (list, tuple)) else value
    offered = []
    for kind, values in sorted(flt.offered.items()):
        if values is None:
            continue
        offered.append((kind, bool(values)))
        if values:
            params[f"offer_{kind}"] = list(values)
    shape.append(tuple(offered))
    shape.append(flt.site_mask if flt.site is not None else "ignore")
    shape.append(None if flt.tags is None else bool(flt.tags))
    if flt.tags:
        params["tags"] = list(flt.tags)
    required = list(dict.fromkeys(flt.required_tags))
    shape.append(len(required))
    params.update({f"rtag_{i}": tag for i, tag in enumerate(required)})
    excluded = []
    for name, values in sorted(flt.exclude.items()):
        if values:
            excluded.append(name)
            params[f"ex_{name}"] = list(values)
    shape.append(tuple(excluded))
    shape.append(flt.only_with_jobs)
    return tuple(shape), params


def _count(condition: sa.ColumnElement[bool]) -> sa.ColumnElement[Any]:
    return sa.func.sum(sa.case((condition, 1), else_=0))


def _matching(shape: _Shape) -> sa.Select[Any]:
    """The matching queues in one pass: queue columns in WHERE, requirements counted per queue
    in HAVING over a LEFT JOIN (no correlated EXISTS per kind: MariaDB would materialise each)."""
    has_vo, has_groups, has_owners, has_cpu, has_site, offered, mask, tags, n_required, \
        excluded, only_with_jobs = shape
    tq, req = task_queues.alias("tq"), tq_requirements.alias("r")
    kind, value = req.c.kind, req.c.value
    where: list[sa.ColumnElement[bool]] = []
    having: list[sa.ColumnElement[bool]] = []
    if has_vo:
        where.append(tq.c.vo == sa.bindparam("vo"))
    if has_groups:
        where.append(tq.c.owner_group.in_(sa.bindparam("groups", expanding=True)))
    if has_owners:
        where.append(tq.c.owner.in_(sa.bindparam("owners", expanding=True)))
    if has_cpu:
        where.append(tq.c.cpu_time <= sa.bindparam("cpu"))
    for name, with_values in offered:
        if with_values:
            offer: sa.BindParameter[Any] = sa.bindparam(f"offer_{name}", expanding=True)
            having.append(sa.or_(_count(kind == name) == 0,
                                 _count(sa.and_(kind == name, value.in_(offer))) > 0))
        else:
            having.append(_count(kind == name) == 0)
    if has_site:
        having.append(_count(sa.and_(kind == "BannedSite", value == sa.bindparam("site"))) == 0)
        if mask == "not_banned":
            where.append(~sa.exists().where(site_mask.c.site == sa.bindparam("site"),
                                            site_mask.c.status == "Banned"))
        elif mask == "active":
            where.append(sa.exists().where(site_mask.c.site == sa.bindparam("site"),
                                           site_mask.c.status == "Active"))
    if tags is not None:
        having.append(_count(sa.and_(kind == "Tag", value.not_in(
            sa.bindparam("tags", expanding=True)))) == 0 if tags else _count(kind == "Tag") == 0)
    for i in range(n_required):
        having.append(_count(sa.and_(kind == "Tag", value == sa.bindparam(f"rtag_{i}"))) > 0)
    for name in excluded:
        column = TQ_COLUMNS.get(name)
        values: sa.BindParameter[Any] = sa.bindparam(f"ex_{name}", expanding=True)
        if column is not None:
            where.append(tq.c[column.name].not_in(values))
        else:
            having.append(_count(sa.and_(kind == name, value.in_(values))) == 0)
    if only_with_jobs:
        where.append(_has_jobs(tq))
    columns = [tq.c.tq_id, tq.c.owner, tq.c.owner_group, tq.c.vo, tq.c.job_priority]
    return (sa.select(*columns)
            .select_from(tq.outerjoin(req, req.c.tq_id == tq.c.tq_id))
            .where(*where).group_by(*columns).having(sa.and_(sa.true(), *having))
            .order_by(tq.c.tq_id))


@functools.lru_cache(maxsize=256)
def _candidates_statement(shape: _Shape) -> sa.Select[Any]:
    return _matching(shape)


_SHARE_STATEMENT = (sa.select(task_queues.c.owner_group, task_queues.c.owner,
                              sa.func.sum(task_queues.c.job_priority))
                    .where(_has_jobs(task_queues))
                    .group_by(task_queues.c.owner_group, task_queues.c.owner))


def share_data(conn: Connection) -> dict[tuple[str, str], float]:
    """(group, owner) -> sum of job priorities of the owner's non-empty queues."""
    return {(g, o): float(total or 0) for g, o, total in conn.execute(_SHARE_STATEMENT)}


@functools.lru_cache(maxsize=256)
def _ids_statement(shape: _Shape) -> sa.Select[Any]:
    matched = _matching(shape).subquery("m")
    return sa.select(matched.c.tq_id).order_by(matched.c.tq_id)


def matching_task_queues(conn: Connection, flt: TQFilter) -> list[CandidateTQ]:
    """The queues passing ``flt``, in one statement."""
    shape, params = _shape(flt)
    return [CandidateTQ(int(r[0]), r[1], r[2], r[3], int(r[4]))
            for r in conn.execute(_candidates_statement(shape), params)]


def matching_task_queue_ids(conn: Connection, flt: TQFilter) -> list[int]:
    """Only the IDs of the queues passing ``flt`` (empty queues included if asked)."""
    shape, params = _shape(flt)
    return [int(x) for x in conn.execute(_ids_statement(shape), params).scalars()]


_JOB_COLUMNS = (jobs.c.status, jobs.c.minor_status, jobs.c.application_status, jobs.c.owner,
                jobs.c.owner_group, jobs.c.vo, jobs.c.site, jobs.c.reschedule_counter,
                job_jdls.c.processed_jdl)


def _head_conditions(by_tq: bool, by_job: bool, by_tq_ids: bool, excluded: tuple[str, ...],
                     mask: str, *, correlated: bool) -> list[sa.ColumnElement[bool]]:
    conds: list[sa.ColumnElement[bool]] = []
    if by_tq:
        conds.append(tq_jobs.c.tq_id == sa.bindparam("tq_id"))
    if by_job:
        conds.append(tq_jobs.c.job_id == sa.bindparam("job_id"))
    if by_tq_ids:
        conds.append(tq_jobs.c.tq_id.in_(sa.bindparam("tq_ids", expanding=True)))
    other = jobs.alias("x")  # the statement may join ``jobs`` itself
    for i, name in enumerate(excluded):
        values: sa.BindParameter[Any] = sa.bindparam(f"ex_{i}", expanding=True)
        if correlated:  # a subquery: not locked, unlike a joined table
            conds.append(~sa.exists().where(other.c.job_id == tq_jobs.c.job_id,
                                            other.c[JOB_ATTRIBUTES[name].name].in_(values)))
        else:
            conds.append(JOB_ATTRIBUTES[name].not_in(values))
    if mask == "not_banned":
        conds.append(~sa.exists().where(site_mask.c.site == sa.bindparam("site"),
                                        site_mask.c.status == "Banned"))
    elif mask == "active":
        conds.append(sa.exists().where(site_mask.c.site == sa.bindparam("site"),
                                       site_mask.c.status == "Active"))
    return conds


@functools.lru_cache(maxsize=256)
def _joined_claim_statement(by_tq: bool, by_job: bool, by_tq_ids: bool,
                            excluded: tuple[str, ...], attributes: tuple[str, ...],
                            mask: str, *, locking: bool = False) -> sa.Select[Any]:
    """The queued job with the smallest pick key, its job row and its JDL, in one statement.

    SQLite (not ``locking``): the write lock is already held. MariaDB (``locking``):
    ``FOR UPDATE SKIP LOCKED`` locks the queue and job rows of the job it returns, skipping
    jobs whose queue or job row another transaction holds (a held JDL row comes back as
    NULL: the caller reads it unlocked). The plan is pinned (``STRAIGHT_JOIN``, primary keys
    for ``jobs`` and ``job_jdls``, for one queue its ``(tq_id, pick_key)`` index): a walk of
    the queue in pick-key order that stops at the first free job, so only that job's rows
    (and the queue rows of jobs skipped on the way) are locked. Left to itself, MariaDB
    10.11 joins small tables by a scan and a filesort, which locks every row of the queue
    and serialises matchers. The exclusions are correlated subqueries, which lock nothing."""
    extra = [JOB_ATTRIBUTES[name].label(f"a_{i}") for i, name in enumerate(attributes)]
    query = (sa.select(tq_jobs.c.job_id, tq_jobs.c.tq_id, *_JOB_COLUMNS, *extra)
             .select_from(tq_jobs.join(jobs, jobs.c.job_id == tq_jobs.c.job_id)
                          .outerjoin(job_jdls, job_jdls.c.job_id == tq_jobs.c.job_id))
             .where(*_head_conditions(by_tq, by_job, by_tq_ids, excluded, mask,
                                      correlated=locking))
             .order_by(tq_jobs.c.pick_key).limit(1))
    if not locking:
        return query
    for dialect in ("mysql", "mariadb"):
        query = (query.prefix_with("STRAIGHT_JOIN", dialect=dialect)
                 .with_hint(jobs, "FORCE INDEX (PRIMARY)", dialect)
                 .with_hint(job_jdls, "FORCE INDEX (PRIMARY)", dialect))
        if by_tq and not (by_job or by_tq_ids):
            query = query.with_hint(tq_jobs, "FORCE INDEX (ix_tq_jobs_tq_key)", dialect)
    return query.with_for_update(skip_locked=True)


def claim_next_job(conn: Connection, tq_id: int | None, *, job_id: int | None = None,
                   tq_ids: Sequence[int] | None = None,
                   exclude: Mapping[str, Sequence[str]] | None = None,
                   attributes: Sequence[str] = (), site: str | None = None,
                   site_mask_mode: str = "ignore") -> ClaimRow | None:
    """Lock and return the queued job with the smallest pick key in queue ``tq_id`` (or job
    ``job_id`` in any of ``tq_ids``), in one statement. On MariaDB ``SKIP LOCKED`` skips jobs
    whose queue or job row another transaction holds (the next job of the queue is taken
    instead; a held JDL row gives ``jdl`` None); on SQLite the caller holds the write lock.
    None when there is no such job.

    ``exclude`` maps DIRAC job attribute names to values the job must not have; ``attributes``
    are extra job attributes to return. ``site_mask_mode`` (see :class:`TQFilter`) checks
    ``site`` in the site mask in the same statement.
    """
    excluded = tuple(name for name, values in sorted((exclude or {}).items()) if values)
    params: dict[str, Any] = {"tq_id": tq_id, "job_id": job_id,
                              "tq_ids": list(tq_ids or []), "site": site}
    params.update({f"ex_{i}": list((exclude or {})[name]) for i, name in enumerate(excluded)})
    shape = (tq_id is not None, job_id is not None, tq_ids is not None, excluded,
             site_mask_mode if site is not None else "ignore")
    statement = _joined_claim_statement(*shape[:4], tuple(attributes), shape[4],
                                        locking=conn.dialect.name != "sqlite")
    row = conn.execute(statement, params).first()
    if row is None:
        return None
    return ClaimRow(job_id=int(row[0]), tq_id=int(row[1]), status=row[2], minor_status=row[3],
                    application_status=row[4], owner=row[5], owner_group=row[6], vo=row[7],
                    site=row[8], reschedule_counter=int(row[9]), jdl=row[10],
                    attributes={name: row[11 + i] for i, name in enumerate(attributes)})


_MARK_MATCHED = (sa.update(jobs)
                 .where(jobs.c.job_id == sa.bindparam("b_job_id"),
                        jobs.c.status == sa.bindparam("b_from"))
                 .values(status=sa.bindparam("b_status"), minor_status=sa.bindparam("b_minor"),
                         application_status=sa.bindparam("b_app"), site=sa.bindparam("b_site"),
                         last_update_time=sa.bindparam("b_now")))
_LOG = sa.insert(job_logging)
_UNQUEUE = sa.delete(tq_jobs).where(tq_jobs.c.job_id == sa.bindparam("b_job_id"))


def take_job(conn: Connection, job_id: int, *, from_status: str, status: str, minor: str,
             application: str, site: str, now: datetime, source: str) -> bool:
    """Compare-and-set the job's status (only if it is ``from_status``), log the change and
    take the job out of its queue, with prepared statements (3). False if the job was not in
    ``from_status`` (nothing is logged then, but it still leaves the queue)."""
    done = conn.execute(_MARK_MATCHED, {
        "b_job_id": job_id, "b_from": from_status, "b_status": status, "b_minor": minor,
        "b_app": application, "b_site": site, "b_now": now}).rowcount == 1
    if done:
        conn.execute(_LOG, {"job_id": job_id, "status": status, "minor_status": minor,
                            "application_status": application, "status_time": now,
                            "source": source[:32]})
    conn.execute(_UNQUEUE, {"b_job_id": job_id})
    return done


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
