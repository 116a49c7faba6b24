"""Live job counts by owner, group, VO, status, minor status, site and job group.

Counting a user's 100,000 jobs with ``COUNT(*)`` walks 100,000 index entries on every page of
a job monitor. Instead, triggers on ``jobs`` append a row to ``job_count_deltas`` for every
insert, delete and change of a counted column (``-1`` for the old values, ``+1`` for the new
ones), in the writing transaction itself, whatever code path wrote it. :func:`fold` moves the
deltas into ``job_counters`` (one row per combination of values) from time to time, and
:func:`count`/:func:`group_counts` read both tables in one statement, so a count is exact at
any moment and costs a few index probes whatever the number of jobs.

Why triggers and an append-only table (a decision in docs/architecture.md): every writer gets
the counts right without knowing of them, and nobody updates a shared counter row in the hot
transactions (matching, status updates), which on MariaDB would serialise them behind one
row lock and invite deadlocks. The trigger bodies are fixed DDL text (no value is ever
formatted into them).

Example::

    >>> from core.db import init_schema, make_engine, utcnow
    >>> from wms.db.schema import WMS_SCHEMA
    >>> from wms.db import jobs as jobs_db
    >>> engine = make_engine("sqlite://"); _ = init_schema(engine, WMS_SCHEMA)
    >>> with engine.begin() as conn:
    ...     _ = jobs_db.insert_jobs(conn, [jobs_db.NewJob(
    ...         owner="al", owner_group="g", vo="v", status="Received", minor_status="ok",
    ...         original_jdl="[]")] * 3, now=utcnow(), source="doc")
    ...     count(conn, [("Status", "eq", "Received")], None)
    3
    >>> with engine.begin() as conn:
    ...     fold(conn)  # three +1 deltas, one per inserted job
    ...     group_counts(conn, ["Owner", "Status"], [], None)
    3
    [({'Owner': 'al', 'Status': 'Received'}, 3)]
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.engine import Connection, Engine

from wms.db.filters import (
    Filter,
    Scope,
    Shape,
    scope_condition,
    shape_of,
    shaped_condition,
)
from wms.db.tables import JobIdType, jobs, metadata

#: DIRAC attribute name -> column name of the counted values (same names in both tables)
COUNTED = {
    "Owner": "owner", "OwnerGroup": "owner_group", "VO": "vo", "Status": "status",
    "MinorStatus": "minor_status", "Site": "site", "JobGroup": "job_group",
}
_DIMS = list(COUNTED.values())


def _dimension_columns() -> list[sa.Column[Any]]:
    return [sa.Column(name, jobs.c[name].type, nullable=False) for name in _DIMS]


job_counters = sa.Table(
    "job_counters",
    metadata,
    sa.Column("id", JobIdType, primary_key=True, autoincrement=True),
    *_dimension_columns(),
    sa.Column("n", sa.BigInteger, nullable=False),
    sa.Index("ux_job_counters_values", *_DIMS, unique=True),
    sa.Index("ix_job_counters_status", "status"),
    # a user's counts by status, read from the index alone (the unique index above is a range
    # of every combination of the owner's values, thousands of rows at 10M jobs)
    sa.Index("ix_job_counters_owner_status", "owner", "status", "n"),
)

job_count_deltas = sa.Table(
    "job_count_deltas",
    metadata,
    sa.Column("id", JobIdType, primary_key=True, autoincrement=True),
    *_dimension_columns(),
    sa.Column("delta", sa.Integer, nullable=False),
)

#: one row, locked by :func:`fold` and :func:`rebuild` so that two processes never fold the
#: same deltas
job_counter_fold = sa.Table(
    "job_counter_fold",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
)

_COLS = "owner, owner_group, vo, status, minor_status, site, job_group"
_NEW = ("NEW.owner, NEW.owner_group, NEW.vo, NEW.status, NEW.minor_status, NEW.site, "
        "NEW.job_group")
_OLD = _NEW.replace("NEW.", "OLD.")
_CHANGED_SQLITE = " OR ".join(f"OLD.{c} IS NOT NEW.{c}" for c in _DIMS)
_SAME_MARIADB = " AND ".join(f"OLD.{c} <=> NEW.{c}" for c in _DIMS)
_INSERT = f"INSERT INTO job_count_deltas ({_COLS}, delta) VALUES "  # noqa: S608 - fixed text

TRIGGERS: dict[str, list[str]] = {
    "sqlite": [
        f"CREATE TRIGGER IF NOT EXISTS jobs_count_insert AFTER INSERT ON jobs "
        f"BEGIN {_INSERT}({_NEW}, 1); END",
        f"CREATE TRIGGER IF NOT EXISTS jobs_count_delete AFTER DELETE ON jobs "
        f"BEGIN {_INSERT}({_OLD}, -1); END",
        f"CREATE TRIGGER IF NOT EXISTS jobs_count_update AFTER UPDATE OF {_COLS} ON jobs "
        f"WHEN {_CHANGED_SQLITE} BEGIN {_INSERT}({_OLD}, -1), ({_NEW}, 1); END",
    ],
    "mysql": [
        f"CREATE TRIGGER IF NOT EXISTS jobs_count_insert AFTER INSERT ON jobs FOR EACH ROW "
        f"{_INSERT}({_NEW}, 1)",
        f"CREATE TRIGGER IF NOT EXISTS jobs_count_delete AFTER DELETE ON jobs FOR EACH ROW "
        f"{_INSERT}({_OLD}, -1)",
        f"CREATE TRIGGER IF NOT EXISTS jobs_count_update AFTER UPDATE ON jobs FOR EACH ROW "
        f"BEGIN IF NOT ({_SAME_MARIADB}) THEN {_INSERT}({_OLD}, -1), ({_NEW}, 1); END IF; END",
    ],
}


def create_triggers(conn: Connection) -> None:
    """Create the counting triggers (idempotent) and the fold lock row."""
    for statement in TRIGGERS["sqlite" if conn.dialect.name == "sqlite" else "mysql"]:
        conn.exec_driver_sql(statement)
    if conn.execute(sa.select(job_counter_fold.c.id)).first() is None:
        conn.execute(sa.insert(job_counter_fold).values(id=1))


@sa.event.listens_for(metadata, "after_create")
def _after_create(target: sa.MetaData, connection: Connection, **_: Any) -> None:
    create_triggers(connection)


# -- reading -------------------------------------------------------------------------------------


def answerable(filters: Sequence[Filter], scope: Scope | None) -> bool:
    """True when the counters can count jobs matching ``filters`` within ``scope``."""
    return all(name in COUNTED for name, _, _ in filters) and (
        scope is None or scope.job_ids is None)


def _columns(table: sa.Table) -> dict[str, sa.ColumnElement[Any]]:
    return {name: table.c[column] for name, column in COUNTED.items()}


def _where(table: sa.Table, shape: Shape, scope_shape: tuple[bool, bool, bool] | None
           ) -> sa.ColumnElement[bool]:
    columns = _columns(table)
    where = shaped_condition(shape, columns)
    if scope_shape is not None:
        where = sa.and_(where, scope_condition(scope_shape, columns))
    return where


def _params(filters: Sequence[Filter], scope: Scope | None
            ) -> tuple[Shape, tuple[bool, bool, bool] | None, dict[str, Any]]:
    shape, params = shape_of(filters)
    if scope is not None:
        params.update(scope.params)
    return shape, None if scope is None else scope.shape, params


@functools.lru_cache(maxsize=256)
def _count_statement(shape: Shape, scope_shape: tuple[bool, bool, bool] | None
                     ) -> sa.Select[Any]:
    parts = sa.union_all(
        sa.select(job_counters.c.n.label("n")).where(_where(job_counters, shape, scope_shape)),
        sa.select(job_count_deltas.c.delta.label("n"))
        .where(_where(job_count_deltas, shape, scope_shape))).subquery()
    return sa.select(sa.func.coalesce(sa.func.sum(parts.c.n), 0))


def count(conn: Connection, filters: Sequence[Filter], scope: Scope | None) -> int:
    """Exact number of jobs matching ``filters`` in ``scope`` (see :func:`answerable`)."""
    shape, scope_shape, params = _params(filters, scope)
    return int(conn.execute(_count_statement(shape, scope_shape), params).scalar_one())


@functools.lru_cache(maxsize=256)
def _group_statement(names: tuple[str, ...], shape: Shape,
                     scope_shape: tuple[bool, bool, bool] | None) -> sa.Select[Any]:
    parts = sa.union_all(
        sa.select(*[job_counters.c[n] for n in names], job_counters.c.n.label("n"))
        .where(_where(job_counters, shape, scope_shape)),
        sa.select(*[job_count_deltas.c[n] for n in names], job_count_deltas.c.delta.label("n"))
        .where(_where(job_count_deltas, shape, scope_shape))).subquery()
    keys = [parts.c[n] for n in names]
    total = sa.func.sum(parts.c.n)
    return (sa.select(*keys, total.label("total")).group_by(*keys)
            .having(total != 0).order_by(*keys))


def group_counts(conn: Connection, group_by: Sequence[str], filters: Sequence[Filter],
                 scope: Scope | None) -> list[tuple[dict[str, Any], int]]:
    """Job counts per combination of the ``group_by`` attributes (all counted ones), zero
    counts left out, sorted by the grouping values."""
    shape, scope_shape, params = _params(filters, scope)
    statement = _group_statement(tuple(COUNTED[name] for name in group_by), shape, scope_shape)
    return [({name: row[i] for i, name in enumerate(group_by)}, int(row[-1]))
            for row in conn.execute(statement, params)]


# -- folding -------------------------------------------------------------------------------------


def pending(conn: Connection) -> bool:
    """True when there are deltas to fold (one index probe, no lock)."""
    return conn.execute(sa.select(job_count_deltas.c.id).limit(1)).first() is not None


def _lock(conn: Connection) -> None:
    """Serialise folders: the lock row on MariaDB; SQLite's write lock is already held when
    the caller uses ``write_transaction``."""
    query = sa.select(job_counter_fold.c.id).where(job_counter_fold.c.id == 1)
    if conn.dialect.name != "sqlite":
        query = query.with_for_update()
    conn.execute(query)


def _upsert(conn: Connection, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    if conn.dialect.name == "sqlite":
        sqlite_stmt = sqlite.insert(job_counters)
        stmt: Any = sqlite_stmt.on_conflict_do_update(
            index_elements=_DIMS, set_={"n": job_counters.c.n + sqlite_stmt.excluded.n})
    else:
        mysql_stmt = mysql.insert(job_counters)
        stmt = mysql_stmt.on_duplicate_key_update(n=job_counters.c.n + mysql_stmt.inserted.n)
    for start in range(0, len(rows), 1000):
        conn.execute(stmt, rows[start:start + 1000])


def fold(conn: Connection, limit: int = 50_000) -> int:
    """Move up to ``limit`` deltas into the counters; returns how many were folded.

    Call in a write transaction (``core.db.write_transaction``). Only the delta rows that were
    read are deleted (by ID), so deltas of transactions committing meanwhile are kept for the
    next fold and never lost; the lock row keeps two folders from summing the same rows.
    """
    _lock(conn)
    found = conn.execute(sa.select(job_count_deltas).order_by(job_count_deltas.c.id)
                         .limit(limit)).all()
    if not found:
        return 0
    sums: dict[tuple[Any, ...], int] = defaultdict(int)
    for row in found:
        sums[tuple(row[1:-1])] += int(row[-1])
    _upsert(conn, [{**dict(zip(_DIMS, key, strict=True)), "n": n}
                   for key, n in sorted(sums.items()) if n])
    ids = [int(row[0]) for row in found]
    for start in range(0, len(ids), 1000):
        conn.execute(sa.delete(job_count_deltas)
                     .where(job_count_deltas.c.id.in_(ids[start:start + 1000])))
    conn.execute(sa.delete(job_counters).where(job_counters.c.n == 0))
    return len(found)


def rebuild(conn: Connection) -> int:
    """Recount every job into the counters (after repairs done by hand); returns the number of
    counter rows. Call in a write transaction; on MariaDB at REPEATABLE READ, so that the
    recount and the deltas it replaces are read from one snapshot."""
    _lock(conn)
    pending = [int(x) for x in conn.execute(sa.select(job_count_deltas.c.id)).scalars()]
    dims = [jobs.c[n] for n in _DIMS]
    counted = conn.execute(sa.select(*dims, sa.func.count()).group_by(*dims)).all()
    for start in range(0, len(pending), 1000):
        conn.execute(sa.delete(job_count_deltas)
                     .where(job_count_deltas.c.id.in_(pending[start:start + 1000])))
    conn.execute(sa.delete(job_counters))
    rows = [{**dict(zip(_DIMS, row[:-1], strict=True)), "n": int(row[-1])} for row in counted]
    _upsert(conn, rows)
    return len(rows)


def repair(engine: Engine) -> str:
    """Recount every job into the job counters (after changes made to the jobs by hand)."""
    with engine.connect() as conn:
        if conn.dialect.name != "sqlite":  # the recount and the deltas from one snapshot
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        conn.info["immediate"] = True  # SQLite: BEGIN IMMEDIATE (core.db)
        try:
            with conn.begin():
                rows = rebuild(conn)
        finally:
            conn.info.pop("immediate", None)
    return f"job counters rebuilt: {rows} combinations of owner, group, status, site..."


def backfill(conn: Connection) -> None:
    """Migration step for a database made before the counters: triggers, then a recount."""
    create_triggers(conn)
    rebuild(conn)
