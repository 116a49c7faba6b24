"""The catalog's change journal: what was registered, removed or re-described, in order.

Every namespace or metadata change that can make a file match (or stop matching) a query
appends rows to ``fc_changes`` *in the same transaction* as the change itself, so a reader
that follows the journal never misses a committed change and never sees a rolled-back one.
Readers (the transformation system) keep their own watermark (the last ``change_id`` they
handled) and read forward from it: the cost of following the catalog is proportional to what
changed, not to the catalog's size. The DMS does not know who reads the journal.

Kinds: ``F+`` file registered, ``F-`` file removed, ``R+``/``R-`` replica added/removed,
``M`` metadata set on a file, ``D`` metadata set on a directory (``dir_id``; every file below
it may now match).

:func:`file_facts` gives, for a batch of file IDs, what a query needs to be evaluated on
them (the file's columns, effective metadata values, replica SEs, ancestor directories), in a
bounded number of statements whatever the catalog's size.

Example::

    >>> from core.db import init_schema, make_engine
    >>> from dms.db.schema import DMS_SCHEMA
    >>> engine = make_engine("sqlite://"); _ = init_schema(engine, DMS_SCHEMA)
    >>> with engine.begin() as conn:
    ...     record(conn, FILE_ADDED, file_ids=[3, 4])
    ...     [(c.kind, c.file_id) for c in read_since(conn, 0, 10)]
    [('F+', 3), ('F+', 4)]
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import starmap
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from core.db import UTCDateTime, utcnow
from dms.db.catalog import chunks
from dms.db.tables import (
    IdType,
    dir_closure,
    dir_meta,
    file_meta,
    files,
    metadata,
    replicas,
    storage_elements,
)

FILE_ADDED, FILE_REMOVED = "F+", "F-"
REPLICA_ADDED, REPLICA_REMOVED = "R+", "R-"
FILE_META, DIR_META = "M", "D"

changes = sa.Table(
    "fc_changes",
    metadata,
    sa.Column("change_id", IdType, primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String(2), nullable=False),
    sa.Column("file_id", IdType, nullable=True),
    sa.Column("dir_id", IdType, nullable=True),
    sa.Column("created", UTCDateTime, nullable=False, index=True),
    sqlite_autoincrement=True,
)


class Change(NamedTuple):
    """One journal row (a tuple: a batch is tens of thousands of them)."""

    change_id: int
    kind: str
    file_id: int | None
    dir_id: int | None
    created: datetime


def record(conn: Connection, kind: str, *, file_ids: Iterable[int] = (),
           dir_ids: Iterable[int] = ()) -> None:
    """Append changes (call it inside the transaction that makes them)."""
    now = utcnow()
    rows = [{"kind": kind, "file_id": f, "dir_id": None, "created": now} for f in file_ids]
    rows += [{"kind": kind, "file_id": None, "dir_id": d, "created": now} for d in dir_ids]
    for batch in chunks(rows):
        conn.execute(changes.insert(), batch)


def read_since(conn: Connection, after: int, limit: int, *, upto: int | None = None,
               skip_kinds: Collection[str] = ()) -> list[Change]:
    """Up to ``limit`` changes with ``change_id > after`` (and ``<= upto`` when given), in
    order; changes of ``skip_kinds`` are left out (not read: use :func:`count_between` to
    know whether the IDs in between are all there)."""
    cond = [changes.c.change_id > after]
    if upto is not None:
        cond.append(changes.c.change_id <= upto)
    if skip_kinds:
        cond.append(changes.c.kind.not_in(sorted(skip_kinds)))
    query = (sa.select(*(changes.c[name] for name in Change._fields))
             .where(*cond).order_by(changes.c.change_id).limit(limit))
    return list(starmap(Change, conn.execute(query)))


def count_between(conn: Connection, after: int, upto: int) -> int:
    """How many changes have ``after < change_id <= upto`` (``upto - after`` when no ID in
    between is missing). One statement, no row read."""
    return int(conn.execute(sa.select(sa.func.count()).select_from(changes).where(
        changes.c.change_id > after, changes.c.change_id <= upto)).scalar_one())


def last_id(conn: Connection) -> int:
    return int(conn.execute(sa.select(sa.func.max(changes.c.change_id))).scalar() or 0)


def prune(conn: Connection, *, below: int | None = None, older_than: timedelta) -> int:
    """Delete changes older than ``older_than`` (and below ``below`` when given)."""
    cond = [changes.c.created < utcnow() - older_than]
    if below is not None:
        cond.append(changes.c.change_id < below)
    return int(conn.execute(changes.delete().where(*cond)).rowcount or 0)


# -- what queries need to know about a batch of files -------------------------------------------

@dataclass
class FileFacts:
    file_id: int
    dir_id: int
    #: the file's own columns (size, created, owner, ...) by column name
    columns: dict[str, Any]
    #: effective user metadata (own values and values inherited from directories)
    meta: dict[str, Any] = field(default_factory=dict)
    #: names of the SEs holding a replica (any status)
    ses: set[str] = field(default_factory=set)
    #: the directory and all its ancestors
    dirs: set[int] = field(default_factory=set)


_VALUE_COLUMNS = ("v_int", "v_float", "v_str", "v_date")


def _value(row: Any) -> Any:
    for column in _VALUE_COLUMNS:
        value = getattr(row, column)
        if value is not None:
            return value
    return None


def file_facts(conn: Connection, file_ids: Sequence[int], fields: Iterable[str] = (),
               *, ses: bool = False, columns: Iterable[str] | None = None
               ) -> dict[int, FileFacts]:
    """Facts of the existing files among ``file_ids`` (missing ones are left out); only
    ``columns`` of the file rows when given (reading fewer columns is much cheaper). The
    ``dirs`` and ``meta`` of the files of one directory may be one shared object, and
    ``ses`` without ``ses=True`` one shared empty set: read them, do not change them.

    Statements: per chunk of 1,000 files, one for the rows, one for their own metadata, one
    for their directories' ancestors, one for inherited values and, with ``ses``, one for the
    replicas: bounded by the batch, never by the catalog."""
    wanted = sorted(set(fields))
    names = None if columns is None else sorted(set(columns) - {"file_id", "dir_id"})
    selected = [files] if names is None else [files.c.file_id, files.c.dir_id,
                                              *(files.c[n] for n in names)]
    out: dict[int, FileFacts] = {}
    no_ses: set[str] = set()  # shared by every file when SEs are not asked for: never changed
    for batch in chunks(sorted(set(file_ids))):
        rows = conn.execute(sa.select(*selected).where(files.c.file_id.in_(batch))).fetchall()
        if not rows:
            continue
        dir_ids = {row[1] for row in rows}
        ancestors: dict[int, set[int]] = {d: {d} for d in dir_ids}
        for anc, desc in conn.execute(sa.select(dir_closure.c.ancestor_id,
                                                dir_closure.c.descendant_id).where(
                dir_closure.c.descendant_id.in_(dir_ids))):
            ancestors[desc].add(anc)
        # the files of one directory share its set of ancestors and its inherited values
        # (one object per directory, not per file: a batch is often 1,000 files of a few
        # directories)
        if names is None:
            here = {row[0]: FileFacts(row[0], row[1], dict(row._mapping), {},
                                      set() if ses else no_ses, ancestors[row[1]])
                    for row in rows}
        else:
            here = {row[0]: FileFacts(row[0], row[1], dict(zip(names, row[2:], strict=True)),
                                      {}, set() if ses else no_ses, ancestors[row[1]])
                    for row in rows}
        if wanted:
            inherited: dict[int, dict[str, Any]] = defaultdict(dict)
            query = (sa.select(dir_closure.c.descendant_id, dir_meta)
                     .join(dir_meta, dir_meta.c.dir_id == dir_closure.c.ancestor_id)
                     .where(dir_closure.c.descendant_id.in_(dir_ids),
                            dir_meta.c.field.in_(wanted)))
            for row in conn.execute(query):
                inherited[row.descendant_id][row.field] = _value(row)
            own: dict[int, dict[str, Any]] = defaultdict(dict)
            for row in conn.execute(sa.select(file_meta).where(
                    file_meta.c.file_id.in_(list(here)), file_meta.c.field.in_(wanted))):
                own[row.file_id][row.field] = _value(row)
            for facts in here.values():
                mine = own.get(facts.file_id)
                above = inherited.get(facts.dir_id)
                if mine:
                    facts.meta = {**above, **mine} if above else mine
                elif above:
                    facts.meta = above
        if ses:
            query = (sa.select(replicas.c.file_id, storage_elements.c.name)
                     .join(storage_elements, storage_elements.c.se_id == replicas.c.se_id)
                     .where(replicas.c.file_id.in_(list(here))))
            for file_id, name in conn.execute(query):
                here[file_id].ses.add(name)
        out.update(here)
    return out


def files_below(conn: Connection, dir_id: int, after: int, limit: int) -> list[int]:
    """IDs of the files in the subtree of ``dir_id`` with ``file_id > after`` (paged)."""
    below = sa.select(dir_closure.c.descendant_id).where(dir_closure.c.ancestor_id == dir_id)
    return list(conn.execute(sa.select(files.c.file_id).where(
        files.c.dir_id.in_(below), files.c.file_id > after)
        .order_by(files.c.file_id).limit(limit)).scalars())

