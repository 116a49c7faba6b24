"""Queries on the transformation tables. No rules here: :mod:`transformation.logic` decides.

Functions take an open ``Connection`` (callers own the transaction) and work on many rows per
statement (chunks of :data:`CHUNK`).

Example::

    >>> from core.db import init_schema, make_engine, utcnow
    >>> from transformation.db.schema import TRANSFORMATION_SCHEMA
    >>> engine = make_engine("sqlite://"); _ = init_schema(engine, TRANSFORMATION_SCHEMA)
    >>> with engine.begin() as conn:
    ...     tid = insert_transformation(conn, {"name": "t", "vo": "demo", "author": "a",
    ...         "author_group": "g", "type": "Processing", "plugin": "Standard",
    ...         "status": "New"}, utcnow())
    ...     add_files(conn, tid, [10, 11, 10], utcnow()), file_counts(conn, tid)
    (2, {'Unused': 2})
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.engine import Connection, Row

from core.bulk import insert_rows
from core.ids import as_id
from transformation.db.tables import (
    files,
    log,
    parameters,
    state,
    task_files,
    tasks,
    transformations,
)

CHUNK = 1000
T = TypeVar("T")


def chunks(items: Iterable[T], size: int = CHUNK) -> Iterator[list[T]]:
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def among(column: Any, batch: Sequence[int]) -> Any:
    """``column IN (batch)``, or ``BETWEEN`` when the batch is a run of consecutive numbers
    (a batch of tasks usually is): the same rows, and MariaDB turns an IN list of 1,000
    values into a derived table join (``in_predicate_conversion_threshold``)."""
    low, high = min(batch), max(batch)
    if high - low + 1 == len(batch) == len(set(batch)):
        return column.between(low, high)
    return column.in_(batch)


def bulk_insert(conn: Connection, table: sa.Table, rows: Sequence[Any], *,
                constants: Mapping[str, Any] | None = None, ignore: bool = False,
                columns: Sequence[str] | None = None) -> int:
    """Insert many rows fast; returns how many were inserted (``ignore``: rows whose key
    exists are skipped).

    The statement is SQLAlchemy's, compiled once for the dialect; the rows go straight to the
    driver (written out as multi-row INSERTs on MariaDB, :func:`core.bulk.insert_rows`). Row
    values must be plain ints and strings; ``constants`` (the same for every row:
    timestamps...) are converted once by their column's type; ``columns``: the rows are
    tuples of values in this order instead of mappings. This keeps SQLAlchemy's per-row
    parameter work (tens of microseconds a row) out of the paths that insert 100,000 rows at
    a time.
    """
    if not rows:
        return 0
    stmt: Any = None
    if ignore:
        stmt = sqlite.insert(table).on_conflict_do_nothing() if conn.dialect.name == "sqlite" \
            else mysql.insert(table).prefix_with("IGNORE")
    return insert_rows(conn, table, rows, constants=constants, statement=stmt,
                       columns=columns)


def insert_ignore(conn: Connection, table: sa.Table, rows: list[dict[str, Any]]) -> int:
    """Insert rows, skipping those whose key exists; returns how many were inserted."""
    if not rows:
        return 0
    if conn.dialect.name == "sqlite":
        stmt: Any = sqlite.insert(table).on_conflict_do_nothing()
    else:
        stmt = mysql.insert(table).prefix_with("IGNORE")
    total = 0
    for batch in chunks(rows):
        total += conn.execute(stmt, batch).rowcount or 0
    return total


# -- transformations ----------------------------------------------------------------------------

def insert_transformation(conn: Connection, values: Mapping[str, Any], now: datetime) -> int:
    result = conn.execute(transformations.insert().values(
        **values, created=now, last_update=now))
    return int(result.inserted_primary_key[0])  # type: ignore[index]


def get_transformation(conn: Connection, ident: int | str, vo: str | None = None,
                       *, lock: bool = False) -> Row[Any] | None:
    """By ID, or by name (in ``vo`` when given)."""
    query = sa.select(transformations)
    number = as_id(ident)
    if number is not None:
        query = query.where(transformations.c.transformation_id == number)
    elif not isinstance(ident, str):
        return None  # a number no ID column holds
    else:
        query = query.where(transformations.c.name == ident)
        if vo:
            query = query.where(transformations.c.vo == vo)
    if lock and conn.dialect.name != "sqlite":
        query = query.with_for_update()
    return conn.execute(query).first()


def find_transformations(conn: Connection, where: Sequence[Any] = (), *,
                         order: Any = None, limit: int | None = None,
                         offset: int | None = None) -> list[Row[Any]]:
    query = sa.select(transformations).where(*where).order_by(
        *(order if order is not None else (transformations.c.transformation_id,)))
    if limit:
        query = query.limit(limit)
    if offset:
        query = query.offset(offset)
    return list(conn.execute(query))


def update_transformation(conn: Connection, tid: int, values: Mapping[str, Any],
                          now: datetime, *, status_was: str | None = None) -> bool:
    """Update (compare-and-set on the status when ``status_was``); False if nothing changed."""
    cond = [transformations.c.transformation_id == tid]
    if status_was is not None:
        cond.append(transformations.c.status == status_was)
    result = conn.execute(transformations.update().where(*cond).values(
        **values, last_update=now))
    return bool(result.rowcount)


def take_task_numbers(conn: Connection, tid: int, count: int) -> int:
    """Reserve ``count`` task numbers; returns the first. The UPDATE locks the row until the
    transaction ends: makers of tasks of one transformation queue here."""
    conn.execute(transformations.update().where(transformations.c.transformation_id == tid)
                 .values(next_task=transformations.c.next_task + count))
    after = conn.execute(sa.select(transformations.c.next_task).where(
        transformations.c.transformation_id == tid)).scalar_one()
    return int(after) - count


def add_log(conn: Connection, tid: int, messages: Sequence[str], author: str,
            now: datetime) -> None:
    if messages:
        conn.execute(log.insert(), [{"transformation_id": tid, "message": m, "author": author,
                                     "date": now} for m in messages])


def get_log(conn: Connection, tid: int) -> list[Row[Any]]:
    return list(conn.execute(sa.select(log).where(log.c.transformation_id == tid)
                             .order_by(log.c.record_id)))


def set_parameters(conn: Connection, tid: int, values: Mapping[str, tuple[str, str]]) -> None:
    """``{name: (text, type)}``, replacing old values."""
    if not values:
        return
    conn.execute(parameters.delete().where(parameters.c.transformation_id == tid,
                                           parameters.c.name.in_(list(values))))
    conn.execute(parameters.insert(), [
        {"transformation_id": tid, "name": k, "value": v, "type": t}
        for k, (v, t) in values.items()])


def delete_parameter(conn: Connection, tid: int, name: str) -> int:
    return int(conn.execute(parameters.delete().where(
        parameters.c.transformation_id == tid, parameters.c.name == name)).rowcount or 0)


def get_parameters(conn: Connection, tids: Iterable[int]) -> dict[int, dict[str, Row[Any]]]:
    out: dict[int, dict[str, Row[Any]]] = {}
    for batch in chunks(set(tids)):
        for row in conn.execute(sa.select(parameters).where(
                parameters.c.transformation_id.in_(batch))):
            out.setdefault(row.transformation_id, {})[row.name] = row
    return out


# -- files --------------------------------------------------------------------------------------

def add_files(conn: Connection, tid: int, file_ids: Iterable[int], now: datetime,
              status: str = "Unused") -> int:
    """Attach catalog files (already attached ones are left as they are)."""
    rows = [(tid, f) for f in dict.fromkeys(file_ids)]
    return bulk_insert(conn, files, rows, ignore=True, columns=_FILE_KEY, constants={
        "status": status, "error_count": 0, "target_se": "", "used_se": "",
        "last_update": now, "inserted": now})


_FILE_KEY = ("transformation_id", "file_id")
_ASSIGNED = ("transformation_id", "file_id", "task_id", "target_se")


def attach_files(conn: Connection, tid: int, file_ids: Sequence[int], now: datetime,
                 task_of: Mapping[int, tuple[int, str]], processed: Collection[int]) -> int:
    """Attach files already grouped: those in ``task_of`` (file -> (task, target SE))
    Assigned to their task, those in ``processed`` Processed, the others Unused; rows whose
    key exists are skipped. Returns how many were inserted."""
    assigned: list[tuple[int, int, int, str]] = []
    done: list[tuple[int, int]] = []
    unused: list[tuple[int, int]] = []
    for f in file_ids:
        grouped = task_of.get(f)
        if grouped is not None:
            assigned.append((tid, f, *grouped))
        else:
            (done if f in processed else unused).append((tid, f))
    constants = {"error_count": 0, "used_se": "", "last_update": now, "inserted": now}
    return (bulk_insert(conn, files, assigned, ignore=True, columns=_ASSIGNED,
                        constants={**constants, "status": "Assigned"})
            + bulk_insert(conn, files, done, ignore=True, columns=_FILE_KEY,
                          constants={**constants, "status": "Processed", "target_se": ""})
            + bulk_insert(conn, files, unused, ignore=True, columns=_FILE_KEY,
                          constants={**constants, "status": "Unused", "target_se": ""}))


def attached(conn: Connection, tid: int, file_ids: Iterable[int]) -> dict[int, Row[Any]]:
    out: dict[int, Row[Any]] = {}
    for batch in chunks(set(file_ids)):
        for row in conn.execute(sa.select(files).where(files.c.transformation_id == tid,
                                                       files.c.file_id.in_(batch))):
            out[row.file_id] = row
    return out


def file_rows(conn: Connection, where: Sequence[Any], *, limit: int | None = None,
              offset: int | None = None, order: Any = None) -> list[Row[Any]]:
    query = sa.select(files).where(*where).order_by(
        *(order if order is not None else (files.c.transformation_id, files.c.file_id)))
    if limit:
        query = query.limit(limit)
    if offset:
        query = query.offset(offset)
    return list(conn.execute(query))


def unused_files(conn: Connection, tid: int, limit: int) -> list[int]:
    return list(conn.execute(sa.select(files.c.file_id).where(
        files.c.transformation_id == tid, files.c.status == "Unused")
        .order_by(files.c.file_id).limit(limit)).scalars())


def file_counts(conn: Connection, tid: int) -> dict[str, int]:
    return {status: int(n) for status, n in conn.execute(
        sa.select(files.c.status, sa.func.count()).where(files.c.transformation_id == tid)
        .group_by(files.c.status))}


def set_files(conn: Connection, tid: int, file_ids: Sequence[int], values: Mapping[str, Any],
              *, only_status: Iterable[str] | None = None) -> int:
    """Update files (those in ``only_status`` when given); returns the rows changed."""
    total = 0
    for batch in chunks(file_ids):
        cond = [files.c.transformation_id == tid, files.c.file_id.in_(batch)]
        if only_status is not None:
            cond.append(files.c.status.in_(list(only_status)))
        total += conn.execute(files.update().where(*cond).values(**values)).rowcount or 0
    return total


def target_se_counts(conn: Connection, tid: int) -> dict[str, int]:
    """Files per target SE in this transformation's tasks that did not fail."""
    query = (sa.select(tasks.c.target_se, sa.func.count())
             .select_from(task_files.join(tasks, sa.and_(
                 tasks.c.transformation_id == task_files.c.transformation_id,
                 tasks.c.task_id == task_files.c.task_id)))
             .where(task_files.c.transformation_id == tid, tasks.c.target_se != "",
                    tasks.c.status.not_in(["Failed", "Killed", "Deleted", "Canceled", "Lost"]))
             .group_by(tasks.c.target_se))
    return {se: int(n) for se, n in conn.execute(query)}


# -- tasks --------------------------------------------------------------------------------------

def insert_tasks(conn: Connection, rows: list[dict[str, Any]],
                 links: Sequence[Any], now: datetime) -> None:
    """Tasks (``created``/``last_update`` = ``now``) and their (task, file) links: mappings,
    or (transformation, task, file) tuples."""
    bulk_insert(conn, tasks, rows, constants={"created": now, "last_update": now,
                                              "parameters": "{}", "external_id": ""})
    if links and not isinstance(links[0], Mapping):
        bulk_insert(conn, task_files, links, columns=_LINK)
    else:
        bulk_insert(conn, task_files, links)


_LINK = ("transformation_id", "task_id", "file_id")


def assign_files(conn: Connection, tid: int, first: int, last: int, now: datetime) -> int:
    """Files of tasks ``first..last`` Unused -> Assigned with their task and target SE, in
    one multi-table UPDATE (UPDATE ... FROM on SQLite); returns the files changed."""
    stmt = (files.update()
            .where(files.c.transformation_id == tid, files.c.status == "Unused",
                   task_files.c.transformation_id == tid,
                   task_files.c.file_id == files.c.file_id,
                   task_files.c.task_id.between(first, last),
                   tasks.c.transformation_id == tid,
                   tasks.c.task_id == task_files.c.task_id)
            .values(status="Assigned", task_id=task_files.c.task_id,
                    target_se=tasks.c.target_se, last_update=now))
    return int(conn.execute(stmt).rowcount or 0)


def task_rows(conn: Connection, where: Sequence[Any], *, limit: int | None = None,
              offset: int | None = None, order: Sequence[Any] | None = None
              ) -> list[Row[Any]]:
    query = sa.select(tasks).where(*where).order_by(
        *(order if order is not None else (tasks.c.transformation_id, tasks.c.task_id)))
    if limit:
        query = query.limit(limit)
    if offset:
        query = query.offset(offset)
    return list(conn.execute(query))


def task_counts(conn: Connection, tid: int) -> dict[str, int]:
    return {status: int(n) for status, n in conn.execute(
        sa.select(tasks.c.status, sa.func.count()).where(tasks.c.transformation_id == tid)
        .group_by(tasks.c.status))}


def files_of_tasks(conn: Connection, tid: int, task_ids: Iterable[int]) -> dict[int, list[int]]:
    """Task -> its files' catalog IDs. Read as one row per task (the IDs joined by the
    server's ``group_concat``, checked against their count and sum: a list cut short by
    MariaDB's group_concat_max_len makes the batch read row by row), not one per file: a
    Python driver spends more on reading a row than the server on finding it."""
    out: dict[int, list[int]] = {}
    for batch in chunks(sorted(set(task_ids))):
        where = (task_files.c.transformation_id == tid, among(task_files.c.task_id, batch))
        grouped: dict[int, list[int]] = {}
        for task_id, count, total, joined in conn.execute(
                sa.select(task_files.c.task_id, sa.func.count(),
                          sa.func.sum(task_files.c.file_id),
                          sa.func.group_concat(task_files.c.file_id))
                .where(*where).group_by(task_files.c.task_id)):
            text = joined.decode() if isinstance(joined, bytes) else str(joined)
            try:
                ids = list(map(int, text.split(",")))
            except ValueError:
                break
            if len(ids) != count or sum(ids) != int(total):
                break
            grouped[task_id] = sorted(ids)
        else:
            out.update(grouped)
            continue
        for task_id, file_id in conn.execute(
                sa.select(task_files.c.task_id, task_files.c.file_id).where(*where)):
            out.setdefault(task_id, []).append(file_id)
    return out


def open_tasks_of_files(conn: Connection, tid: int, file_ids: Iterable[int],
                        final: Iterable[str]) -> set[int]:
    """The files among ``file_ids`` that still have a task not in ``final``."""
    out: set[int] = set()
    for batch in chunks(set(file_ids)):
        query = (sa.select(task_files.c.file_id).distinct()
                 .join(tasks, sa.and_(tasks.c.transformation_id == task_files.c.transformation_id,
                                      tasks.c.task_id == task_files.c.task_id))
                 .where(task_files.c.transformation_id == tid, task_files.c.file_id.in_(batch),
                        tasks.c.status.not_in(list(final))))
        out.update(conn.execute(query).scalars())
    return out


def set_tasks(conn: Connection, tid: int, task_ids: Sequence[int], values: Mapping[str, Any],
              *, only_status: Iterable[str] | None = None,
              claimed_by: str | None = None) -> int:
    total = 0
    for batch in chunks(task_ids):
        cond = [tasks.c.transformation_id == tid, among(tasks.c.task_id, batch)]
        if only_status is not None:
            cond.append(tasks.c.status.in_(list(only_status)))
        if claimed_by is not None:
            cond.append(tasks.c.claimed_by == claimed_by)
        total += conn.execute(tasks.update().where(*cond).values(**values)).rowcount or 0
    return total


def update_task_statuses(conn: Connection, tid: int, new: Mapping[int, str],
                         now: datetime) -> None:
    """``{task_id: status}`` in one executemany."""
    if not new:
        return
    stmt = (tasks.update().where(tasks.c.transformation_id == tid,
                                 tasks.c.task_id == sa.bindparam("b_task"))
            .values(status=sa.bindparam("b_status"), last_update=now))
    conn.execute(stmt, [{"b_task": t, "b_status": s} for t, s in new.items()])


# -- state --------------------------------------------------------------------------------------

def get_state(conn: Connection, name: str, *, lock: bool = False) -> int | None:
    query = sa.select(state.c.value).where(state.c.name == name)
    if lock and conn.dialect.name != "sqlite":
        query = query.with_for_update(skip_locked=True)
    value = conn.execute(query).scalar()
    return None if value is None else int(value)


def set_state(conn: Connection, name: str, value: int, now: datetime) -> None:
    updated = conn.execute(state.update().where(state.c.name == name)
                           .values(value=value, updated=now)).rowcount
    if not updated:
        insert_ignore(conn, state, [{"name": name, "value": value, "updated": now}])
        conn.execute(state.update().where(state.c.name == name)
                     .values(value=value, updated=now))
