"""Read queries for monitoring: attributes, filtered searches, counters, distinct values.

Filters are lists of ``(column, operator, value)`` with operators ``eq``, ``neq``, ``in``,
``not in``, ``like``, ``gt``, ``lt`` (and ``ge``, ``le``); ``scope`` is an extra condition the
caller builds from the identity (whose jobs may be seen).

Example::

    >>> from core.db import init_schema, make_engine
    >>> from wms.db.schema import WMS_SCHEMA
    >>> engine = make_engine("sqlite://"); _ = init_schema(engine, WMS_SCHEMA)
    >>> with engine.connect() as conn:
    ...     search_jobs(conn, [("Status", "eq", "Waiting")], columns=["JobID"])
    (0, [])
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from core.exceptions import InvalidArgumentError
from wms.db.tables import JOB_ATTRIBUTES, jobs

OPERATORS = ("eq", "neq", "in", "not in", "like", "gt", "lt", "ge", "le")
Filter = tuple[str, str, Any]


def column(name: str) -> sa.ColumnElement[Any]:
    try:
        return JOB_ATTRIBUTES[name]
    except KeyError:
        raise InvalidArgumentError(
            f"unknown job attribute {name!r}; known: {', '.join(sorted(JOB_ATTRIBUTES))}"
        ) from None


def condition(filters: Iterable[Filter]) -> sa.ColumnElement[bool]:
    clauses: list[sa.ColumnElement[bool]] = []
    for name, op, value in filters:
        col = column(name)
        if op == "eq":
            clauses.append(col == value)
        elif op == "neq":
            clauses.append(col != value)
        elif op in ("in", "not in"):
            values = list(value) if isinstance(value, list | tuple | set) else [value]
            clauses.append(col.in_(values) if op == "in" else col.not_in(values))
        elif op == "like":
            clauses.append(col.like(str(value)))
        elif op == "gt":
            clauses.append(col > value)
        elif op == "lt":
            clauses.append(col < value)
        elif op == "ge":
            clauses.append(col >= value)
        elif op == "le":
            clauses.append(col <= value)
        else:
            raise InvalidArgumentError(f"unknown operator {op!r}; use one of {OPERATORS}")
    return sa.and_(sa.true(), *clauses)


def attributes_of(conn: Connection, job_ids: Sequence[int], names: Sequence[str] | None = None,
                  scope: sa.ColumnElement[bool] | None = None) -> dict[int, dict[str, Any]]:
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
            query = query.where(scope)
        for row in conn.execute(query).mappings():
            record = dict(row)
            job_id = int(record["JobID"])
            out[job_id] = {n: record[n] for n in wanted}
    return out


def search_jobs(conn: Connection, filters: Sequence[Filter], *,
                columns: Sequence[str] = ("JobID",),
                sort: Sequence[tuple[str, str]] = (("JobID", "asc"),),
                scope: sa.ColumnElement[bool] | None = None,
                limit: int | None = None, offset: int = 0) -> tuple[int, list[dict[str, Any]]]:
    """(total matching, one page of records) ordered by ``sort``."""
    where = condition(filters)
    if scope is not None:
        where = sa.and_(where, scope)
    total = int(conn.execute(sa.select(sa.func.count()).select_from(jobs).where(where))
                .scalar_one())
    query = sa.select(*[column(c).label(c) for c in columns]).where(where)
    for name, direction in sort:
        if direction not in ("asc", "desc"):
            raise InvalidArgumentError(f"sort direction must be asc or desc, not {direction!r}")
        col = column(name)
        query = query.order_by(col.asc() if direction == "asc" else col.desc())
    if limit is not None:
        query = query.limit(limit).offset(offset)
    return total, [dict(row) for row in conn.execute(query).mappings()]


def counters(conn: Connection, group_by: Sequence[str], filters: Sequence[Filter],
             scope: sa.ColumnElement[bool] | None = None) -> list[tuple[dict[str, Any], int]]:
    cols = [column(n).label(n) for n in group_by]
    where = condition(filters)
    if scope is not None:
        where = sa.and_(where, scope)
    query = sa.select(*cols, sa.func.count().label("n")).where(where).group_by(*cols)
    return [({n: row[n] for n in group_by}, int(row["n"]))
            for row in conn.execute(query).mappings()]


def distinct(conn: Connection, name: str, filters: Sequence[Filter] = (),
             scope: sa.ColumnElement[bool] | None = None) -> list[Any]:
    col = column(name)
    where = condition(filters)
    if scope is not None:
        where = sa.and_(where, scope)
    return [x for x in conn.execute(sa.select(col).where(where).distinct().order_by(col))
            .scalars()]


def owner_scope(owner: str | None, group: str | None) -> sa.ColumnElement[bool] | None:
    """Jobs of ``owner``, or of ``group`` too when given; None means every job."""
    if owner is None and group is None:
        return None
    clauses = []
    if owner is not None:
        clauses.append(jobs.c.owner == owner)
    if group is not None:
        clauses.append(jobs.c.owner_group == group)
    return sa.or_(*clauses)


def job_id_scope(job_ids: Sequence[int]) -> sa.ColumnElement[bool]:
    """Only these jobs."""
    return jobs.c.job_id.in_(list(job_ids))
