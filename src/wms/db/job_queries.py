"""Read queries for monitoring: attributes, filtered searches, counters, distinct values.

Filters are lists of ``(attribute, operator, value)`` (``wms.db.filters``); ``scope`` is the
:class:`~wms.db.filters.Scope` of jobs the caller may see. Totals and counts by status come
from the job counters (``wms.db.counters``) whenever they can.

Example::

    >>> from core.db import init_schema, make_engine
    >>> from wms.db.schema import WMS_SCHEMA
    >>> engine = make_engine("sqlite://"); _ = init_schema(engine, WMS_SCHEMA)
    >>> with engine.connect() as conn:
    ...     search_jobs(conn, [("Status", "eq", "Waiting")], columns=["JobID"])
    (0, [])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from core.exceptions import InvalidArgumentError
from wms.db import counters as job_counters
from wms.db.filters import OPERATORS, Filter, Scope, column, condition
from wms.db.tables import JOB_ATTRIBUTES, jobs

__all__ = ["OPERATORS", "Filter", "InvalidArgumentError", "Scope", "TOTAL_CAP", "attributes_of",
           "column", "condition", "counters", "distinct", "job_id_scope", "owner_scope",
           "search_jobs", "total_is_exact"]

#: totals the counters cannot give are counted up to this many (then reported as a lower bound)
TOTAL_CAP = 10_000


def attributes_of(conn: Connection, job_ids: Sequence[int], names: Sequence[str] | None = None,
                  scope: Scope | None = None) -> dict[int, dict[str, Any]]:
    """{job_id: {Attribute: value}} for the jobs (visible in ``scope``) among ``job_ids``."""
    wanted = list(names) if names else list(JOB_ATTRIBUTES)
    cols = [column(n).label(n) for n in wanted]
    if "JobID" not in wanted:
        cols.append(jobs.c.job_id.label("JobID"))
    out: dict[int, dict[str, Any]] = {}
    ids = sorted(set(job_ids))
    for start in range(0, len(ids), 1000):
        query = sa.select(*cols).where(jobs.c.job_id.in_(ids[start:start + 1000]))
        if scope is not None:
            query = query.where(scope.condition())
        for row in conn.execute(query).mappings():
            record = dict(row)
            job_id = int(record["JobID"])
            out[job_id] = {n: record[n] for n in wanted}
    return out


def search_jobs(conn: Connection, filters: Sequence[Filter], *,
                columns: Sequence[str] = ("JobID",),
                sort: Sequence[tuple[str, str]] = (("JobID", "asc"),),
                scope: Scope | None = None, limit: int | None = None, offset: int = 0,
                with_total: bool = True) -> tuple[int, list[dict[str, Any]]]:
    """(total matching, one page of records) ordered by ``sort``.

    The total is exact: from the job counters when every filter is on a counted attribute
    (owner, group, VO, status, minor status, site, job group), else by counting at most
    :data:`TOTAL_CAP` + 1 rows; :func:`total_is_exact` tells which. Without ``with_total``
    it is -1 (keyset paging needs none).
    """
    where = _where(filters, scope)
    total = -1
    if with_total:
        total = (job_counters.count(conn, filters, scope)
                 if job_counters.answerable(filters, scope) else _capped_count(conn, where))
    query = sa.select(*[column(c).label(c) for c in columns]).where(where)
    for name, direction in sort:
        if direction not in ("asc", "desc"):
            raise InvalidArgumentError(f"sort direction must be asc or desc, not {direction!r}")
        col = column(name)
        query = query.order_by(col.asc() if direction == "asc" else col.desc())
    if limit is not None:
        query = query.limit(limit).offset(offset)
    return total, [dict(row) for row in conn.execute(query).mappings()]


def total_is_exact(total: int, filters: Sequence[Filter], scope: Scope | None) -> bool:
    """False when ``total`` from :func:`search_jobs` is only "at least :data:`TOTAL_CAP`"."""
    return total <= TOTAL_CAP or job_counters.answerable(filters, scope)


def _where(filters: Sequence[Filter], scope: Scope | None) -> sa.ColumnElement[bool]:
    where = condition(filters)
    return where if scope is None else sa.and_(where, scope.condition())


def _capped_count(conn: Connection, where: sa.ColumnElement[bool]) -> int:
    found = sa.select(jobs.c.job_id).where(where).limit(TOTAL_CAP + 1).subquery()
    return min(TOTAL_CAP + 1, int(conn.execute(sa.select(sa.func.count()).select_from(found))
                                  .scalar_one()))


def counters(conn: Connection, group_by: Sequence[str], filters: Sequence[Filter],
             scope: Scope | None = None) -> list[tuple[dict[str, Any], int]]:
    """Job counts per combination of the ``group_by`` attributes (from the job counters when
    every attribute involved is counted)."""
    if all(n in job_counters.COUNTED for n in group_by) and job_counters.answerable(
            filters, scope):
        return job_counters.group_counts(conn, group_by, filters, scope)
    cols = [column(n).label(n) for n in group_by]
    query = (sa.select(*cols, sa.func.count().label("n")).where(_where(filters, scope))
             .group_by(*cols))
    return [({n: row[n] for n in group_by}, int(row["n"]))
            for row in conn.execute(query).mappings()]


def distinct(conn: Connection, name: str, filters: Sequence[Filter] = (),
             scope: Scope | None = None) -> list[Any]:
    col = column(name)
    return [x for x in conn.execute(sa.select(col).where(_where(filters, scope)).distinct()
                                    .order_by(col)).scalars()]


def owner_scope(owner: str | None, group: str | None) -> Scope | None:
    """Jobs of ``owner``, or of ``group`` too when given; None means every job."""
    if owner is None and group is None:
        return None
    return Scope(owner=owner, group=group)


def job_id_scope(job_ids: Sequence[int]) -> Scope:
    """Only these jobs."""
    return Scope(job_ids=tuple(job_ids))
