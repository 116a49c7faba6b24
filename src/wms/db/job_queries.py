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

import functools
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from core.db import UTCDateTime
from core.exceptions import InvalidArgumentError
from wms.db import counters as job_counters
from wms.db import search_plans
from wms.db.filters import (
    OPERATORS,
    Filter,
    Scope,
    Shape,
    column,
    condition,
    scope_condition,
    shape_of,
    shaped_condition,
)
from wms.db.tables import JOB_ATTRIBUTES, jobs

__all__ = ["OPERATORS", "Filter", "InvalidArgumentError", "Scope", "TOTAL_CAP", "attributes_of",
           "column", "condition", "counters", "datetime_positions", "distinct", "job_id_scope",
           "owner_scope", "search_jobs", "total_is_exact"]

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
                with_total: bool = True, as_tuples: bool = False,
                datetimes_as_text: bool = False, plan: str = "counted"
                ) -> tuple[int, list[Any]]:
    """(total matching, one page of records) ordered by ``sort``: dictionaries, or tuples of
    values in ``columns`` order with ``as_tuples``.

    The total is exact: from the job counters when every filter is on a counted attribute
    (owner, group, VO, status, minor status, site, job group), else by counting at most
    :data:`TOTAL_CAP` + 1 rows; :func:`total_is_exact` tells which. Without ``with_total``
    it is -1 (keyset paging needs none). Statements are built once per shape of the query
    (attributes, operators, columns, order) and reused with new values.

    ``datetimes_as_text`` (implies ``as_tuples``) is the fast path of large pages: the
    database writes the datetimes as UTC text ``YYYY-mm-dd HH:MM:SS`` (the wire's form,
    microseconds cut as the encoder cuts them; the positions are :func:`datetime_positions`)
    and the rows come straight from the driver's cursor, no conversion per value.

    ``plan``: how a page of one owner's jobs with a status filter, in JobID order, reads the
    table (:mod:`wms.db.search_plans`): ``"counted"`` chooses from the job counters,
    ``"database"`` leaves it to the database's planner, an index name
    (``search_plans.WALK``, ``search_plans.BY_STATUS``) forces that path. The records are
    the same whichever is taken.
    """
    shape, params = shape_of(filters)
    for _, direction in sort:
        if direction not in ("asc", "desc"):
            raise InvalidArgumentError(f"sort direction must be asc or desc, not {direction!r}")
    scope_shape = None if scope is None else scope.shape
    if scope is not None:
        params.update(scope.params)
    total = -1
    answerable = job_counters.answerable(filters, scope)
    if with_total:
        total = (job_counters.count(conn, filters, scope) if answerable
                 else min(TOTAL_CAP + 1, int(conn.execute(
                     _capped_count(shape, scope_shape), {**params, "p_cap": TOTAL_CAP + 1})
                     .scalar_one())))
    chosen: search_plans.Plan | None = None
    if plan == "counted":
        chosen = search_plans.plan_for(conn, filters, scope, sort, limit, offset,
                                       total if with_total and answerable else None)
    elif plan != "database":
        chosen = search_plans.forced(plan, filters, sort, limit)
    for name in columns:
        column(name)
    if chosen is not None and len(chosen.statuses) <= 1:  # one ordered read: the hint alone
        statement = _hinted_page(shape, scope_shape, tuple(columns), tuple(sort),
                                 datetimes_as_text, chosen.index)
    elif chosen is not None and limit is not None:
        statement = _planned_page(shape, scope_shape, tuple(columns), sort[0][1] == "desc",
                                  datetimes_as_text, chosen.index, len(chosen.statuses),
                                  search_plans.status_filter(filters) or 0)
        params.update(search_plans.branch_params(chosen, limit, offset))
    else:
        statement = _page(shape, scope_shape, tuple(columns), tuple(sort), limit is not None,
                          datetimes_as_text)
    result = conn.execute(statement, {**params, "p_limit": limit, "p_offset": offset})
    if datetimes_as_text:
        if _plain_rows(conn.dialect, tuple(columns)):
            rows = list(result.cursor.fetchall())  # the driver's tuples: no conversion
            result.close()
            return total, rows
        return total, [tuple(row) for row in result.all()]
    if as_tuples:
        return total, [tuple(row) for row in result.all()]
    names = list(result.keys())  # tuples zipped with the names: no RowMapping per row
    return total, [dict(zip(names, row, strict=True)) for row in result.all()]


def datetime_positions(columns: Sequence[str]) -> list[int]:
    """Positions of the datetime attributes among ``columns``."""
    return [i for i, name in enumerate(columns) if _is_datetime(column(name))]


def _is_datetime(col: sa.ColumnElement[Any]) -> bool:
    return isinstance(col.type, UTCDateTime | sa.DateTime)


def _selected(name: str, datetimes_as_text: bool) -> sa.ColumnElement[Any]:
    col = column(name)
    if datetimes_as_text and _is_datetime(col):
        # SQLite keeps 'YYYY-mm-dd HH:MM:SS.ffffff', MariaDB's DATETIME casts to
        # 'YYYY-mm-dd HH:MM:SS': the first 19 characters are the wire's text, both naive UTC
        return sa.func.substr(sa.cast(col, sa.String), 1, 19).label(name)
    return col.label(name)


@functools.lru_cache(maxsize=64)
def _plain_rows(dialect: sa.Dialect, columns: tuple[str, ...]) -> bool:
    """True when the driver's values need no conversion for these columns (datetimes read
    as text): SQLAlchemy would process none of them."""
    for name in columns:
        col = column(name)
        if _is_datetime(col):
            continue
        if col.type.dialect_impl(dialect).result_processor(dialect, None) is not None:
            return False
    return True


def total_is_exact(total: int, filters: Sequence[Filter], scope: Scope | None) -> bool:
    """False when ``total`` from :func:`search_jobs` is only "at least :data:`TOTAL_CAP`"."""
    return total <= TOTAL_CAP or job_counters.answerable(filters, scope)


def _where(shape: Shape, scope_shape: tuple[bool, bool, bool] | None
           ) -> sa.ColumnElement[bool]:
    where = shaped_condition(shape)
    return where if scope_shape is None else sa.and_(where, scope_condition(scope_shape))


@functools.lru_cache(maxsize=512)
def _page(shape: Shape, scope_shape: tuple[bool, bool, bool] | None, columns: tuple[str, ...],
          sort: tuple[tuple[str, str], ...], paged: bool, datetimes_as_text: bool = False
          ) -> sa.Select[Any]:
    query = (sa.select(*[_selected(c, datetimes_as_text) for c in columns])
             .where(_where(shape, scope_shape)))
    for name, direction in sort:
        col = column(name)
        query = query.order_by(col.asc() if direction == "asc" else col.desc())
    if paged:
        query = query.limit(sa.bindparam("p_limit")).offset(sa.bindparam("p_offset"))
    return query


@functools.lru_cache(maxsize=256)
def _hinted_page(shape: Shape, scope_shape: tuple[bool, bool, bool] | None,
                 columns: tuple[str, ...], sort: tuple[tuple[str, str], ...],
                 datetimes_as_text: bool, index: str) -> sa.Select[Any]:
    return search_plans.hinted(_page(shape, scope_shape, columns, sort, True,
                                     datetimes_as_text), index)


@functools.lru_cache(maxsize=256)
def _planned_page(shape: Shape, scope_shape: tuple[bool, bool, bool] | None,
                  columns: tuple[str, ...], descending: bool, datetimes_as_text: bool,
                  index: str, branches: int, position: int) -> sa.Select[Any]:
    return search_plans.page_statement(
        shape, scope_shape, tuple(_selected(c, datetimes_as_text) for c in columns),
        descending, index, branches, position)


@functools.lru_cache(maxsize=256)
def _capped_count(shape: Shape, scope_shape: tuple[bool, bool, bool] | None
                  ) -> sa.Select[Any]:
    found = (sa.select(jobs.c.job_id).where(_where(shape, scope_shape))
             .limit(sa.bindparam("p_cap")).subquery())
    return sa.select(sa.func.count()).select_from(found)


def counters(conn: Connection, group_by: Sequence[str], filters: Sequence[Filter],
             scope: Scope | None = None) -> list[tuple[dict[str, Any], int]]:
    """Job counts per combination of the ``group_by`` attributes (from the job counters when
    every attribute involved is counted)."""
    if all(n in job_counters.COUNTED for n in group_by) and job_counters.answerable(
            filters, scope):
        return job_counters.group_counts(conn, group_by, filters, scope)
    cols = [column(n).label(n) for n in group_by]
    query = (sa.select(*cols, sa.func.count().label("n")).where(_condition(filters, scope))
             .group_by(*cols))
    return [({n: row[n] for n in group_by}, int(row["n"]))
            for row in conn.execute(query).mappings()]


def distinct(conn: Connection, name: str, filters: Sequence[Filter] = (),
             scope: Scope | None = None) -> list[Any]:
    col = column(name)
    return [x for x in conn.execute(sa.select(col).where(_condition(filters, scope)).distinct()
                                    .order_by(col)).scalars()]


def _condition(filters: Sequence[Filter], scope: Scope | None) -> sa.ColumnElement[bool]:
    where = condition(filters)
    return where if scope is None else sa.and_(where, scope.condition())


def owner_scope(owner: str | None, group: str | None) -> Scope | None:
    """Jobs of ``owner``, or of ``group`` too when given; None means every job."""
    if owner is None and group is None:
        return None
    return Scope(owner=owner, group=group)


def job_id_scope(job_ids: Sequence[int]) -> Scope:
    """Only these jobs."""
    return Scope(job_ids=tuple(job_ids))
