"""Namespace queries of the file catalog: directories, files, replicas, SEs, usage counters.

Every function works on a list of items and issues a bounded number of statements (chunks of
:data:`CHUNK` values per ``IN`` list), never one per LFN. Callers own the transaction.

Example::

    >>> from core.db import init_schema, make_engine, utcnow
    >>> from dms.db.schema import DMS_SCHEMA
    >>> engine = make_engine("sqlite://"); _ = init_schema(engine, DMS_SCHEMA)
    >>> with engine.begin() as conn:
    ...     made = create_dirs(conn, [NewDir("/", "root", "root", 0o755),
    ...                               NewDir("/demo", "demo", "demo_user", 0o755)], utcnow())
    ...     sorted(get_dirs(conn, ["/demo", "/nope"]))
    ['/demo']
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.engine import Connection, Row

from dms.db.tables import (
    dir_closure,
    dir_usage,
    directories,
    files,
    replicas,
    storage_elements,
)
from dms.paths import ancestors, depth_of

CHUNK = 1000
LOGICAL = 0  # se_id of the logical (per-file) usage counters
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


def path_hash(path: str) -> str:
    return hashlib.sha1(path.encode(), usedforsecurity=False).hexdigest()


@dataclass(frozen=True)
class NewDir:
    path: str
    owner: str
    group: str
    mode: int


# -- directories ------------------------------------------------------------------------------

def get_dirs(conn: Connection, paths: Iterable[str]) -> dict[str, Row[Any]]:
    """path -> directory row, for the paths that exist."""
    wanted = {path_hash(p): p for p in paths}
    out: dict[str, Row[Any]] = {}
    for batch in chunks(wanted):
        for row in conn.execute(sa.select(directories).where(directories.c.path_hash.in_(batch))):
            out[row.path] = row
    return out


def get_dirs_by_id(conn: Connection, ids: Iterable[int]) -> dict[int, Row[Any]]:
    out: dict[int, Row[Any]] = {}
    for batch in chunks(set(ids)):
        for row in conn.execute(sa.select(directories).where(directories.c.dir_id.in_(batch))):
            out[row.dir_id] = row
    return out


def create_dirs(conn: Connection, new: Sequence[NewDir], now: datetime) -> dict[str, Row[Any]]:
    """Insert directories whose parents exist or are in ``new``; returns path -> row.

    Rows are inserted level by level (one executemany per depth) with their closure rows.
    """
    if not new:
        return {}
    by_depth: dict[int, list[NewDir]] = defaultdict(list)
    for item in new:
        by_depth[depth_of(item.path)].append(item)
    needed = {a for item in new for a in ancestors(item.path)}
    known = get_dirs(conn, needed - {item.path for item in new})
    made: dict[str, Row[Any]] = {}
    for depth in sorted(by_depth):
        level = by_depth[depth]
        rows = []
        for item in level:
            parent = ancestors(item.path)[-1] if item.path != "/" else None
            parent_row = None if parent is None else (made.get(parent) or known.get(parent))
            if parent is not None and parent_row is None:
                raise LookupError(f"parent of {item.path} does not exist")
            rows.append({"parent_id": None if parent_row is None else parent_row.dir_id,
                         "path": item.path, "path_hash": path_hash(item.path),
                         "owner": item.owner, "owner_group": item.group, "mode": item.mode,
                         "created": now, "modified": now, "status": "AprioriGood"})
        conn.execute(directories.insert(), rows)
        made.update(get_dirs(conn, [item.path for item in level]))
        closure = []
        for item in level:
            row = made[item.path]
            closure.append({"ancestor_id": row.dir_id, "descendant_id": row.dir_id, "depth": 0})
            chain = ancestors(item.path)
            for index, anc in enumerate(chain):
                anc_row = made.get(anc) or known[anc]
                closure.append({"ancestor_id": anc_row.dir_id, "descendant_id": row.dir_id,
                                "depth": len(chain) - index})
        conn.execute(dir_closure.insert(), closure)
    return made


def children_count(conn: Connection, dir_ids: Iterable[int]) -> dict[int, int]:
    """dir_id -> number of subdirectories plus files (0 when empty)."""
    out: dict[int, int] = defaultdict(int)
    for batch in chunks(set(dir_ids)):
        for parent, count in conn.execute(
                sa.select(directories.c.parent_id, sa.func.count())
                .where(directories.c.parent_id.in_(batch)).group_by(directories.c.parent_id)):
            out[parent] += count
        for parent, count in conn.execute(
                sa.select(files.c.dir_id, sa.func.count())
                .where(files.c.dir_id.in_(batch)).group_by(files.c.dir_id)):
            out[parent] += count
    return out


def delete_dirs(conn: Connection, dir_ids: Sequence[int]) -> None:
    for batch in chunks(dir_ids):
        conn.execute(dir_usage.delete().where(dir_usage.c.dir_id.in_(batch)))
        conn.execute(dir_closure.delete().where(dir_closure.c.descendant_id.in_(batch)))
        conn.execute(directories.delete().where(directories.c.dir_id.in_(batch)))


def subdirs(conn: Connection, dir_id: int) -> list[Row[Any]]:
    return list(conn.execute(sa.select(directories).where(directories.c.parent_id == dir_id)
                             .order_by(directories.c.path)))


def subtree_ids(top_id: int) -> sa.Select[Any]:
    """A sub-select of every directory id under (and including) ``top_id``."""
    return sa.select(dir_closure.c.descendant_id).where(dir_closure.c.ancestor_id == top_id)


def update_rows(conn: Connection, table: sa.Table, key: str, values: Mapping[int, dict[str, Any]]
                ) -> None:
    """Per-row updates grouped by identical values (one statement per distinct value set)."""
    groups: dict[tuple[tuple[str, Any], ...], list[int]] = defaultdict(list)
    for ident, vals in values.items():
        groups[tuple(sorted(vals.items()))].append(ident)
    for vals_key, ids in groups.items():
        for batch in chunks(ids):
            conn.execute(table.update().where(table.c[key].in_(batch)).values(dict(vals_key)))


# -- files ------------------------------------------------------------------------------------

#: the file columns needed for rights and replica lookups (no dates to convert)
LITE = ("file_id", "dir_id", "name", "owner", "owner_group", "mode")
#: enough to find files when no rights need checking (administrators)
IDS = ("file_id", "dir_id", "name")


def get_files(conn: Connection, wanted: Mapping[int, Iterable[str]],
              full: bool | Sequence[str] = True) -> dict[tuple[int, str], Row[Any]]:
    """(dir_id, name) -> file row for the pairs that exist (``wanted``: dir_id -> names).

    One statement per :data:`CHUNK` names: ``(dir_id = d1 AND name IN (...)) OR (dir_id = d2
    AND name IN (...))``, which both databases answer from the unique ``(dir_id, name)``
    index without probing combinations that were not asked for.
    """
    pairs = [(d, n) for d, names in sorted(wanted.items()) for n in sorted(set(names))]
    if full is True:
        cols: list[Any] = [files]
    else:
        cols = [files.c[c] for c in (LITE if full is False else full)]
    out: dict[tuple[int, str], Row[Any]] = {}
    for batch in chunks(pairs):
        by_dir: dict[int, list[str]] = defaultdict(list)
        for d, n in batch:
            by_dir[d].append(n)
        cond = sa.or_(*(sa.and_(files.c.dir_id == d, files.c.name.in_(names))
                        for d, names in by_dir.items()))
        for row in conn.execute(sa.select(*cols).where(cond)):
            out[(row.dir_id, row.name)] = row
    return out


def get_files_by_id(conn: Connection, ids: Iterable[int]) -> dict[int, Row[Any]]:
    out: dict[int, Row[Any]] = {}
    for batch in chunks(set(ids)):
        for row in conn.execute(sa.select(files).where(files.c.file_id.in_(batch))):
            out[row.file_id] = row
    return out


def lfns_of(conn: Connection, file_ids: Iterable[int]) -> dict[int, str]:
    """file_id -> LFN."""
    rows: list[tuple[int, int, str]] = []
    for batch in chunks(sorted(set(file_ids))):
        rows.extend(tuple(r) for r in conn.execute(_NAMES_BY_ID, {"ids": batch}))
    paths = dir_paths(conn, {row[1] for row in rows})  # apart: see _GOOD_REPLICAS_BY_ID
    return {file_id: paths[dir_id] + "/" + name for file_id, dir_id, name in rows}


def existing_guids(conn: Connection, guids: Iterable[str]) -> set[str]:
    found: set[str] = set()
    for batch in chunks(set(guids)):
        found.update(conn.execute(sa.select(files.c.guid).where(files.c.guid.in_(batch)))
                     .scalars())
    return found


def insert_files(conn: Connection, rows: list[dict[str, Any]]) -> None:
    for batch in chunks(rows):
        conn.execute(files.insert(), batch)


def delete_files(conn: Connection, file_ids: Sequence[int]) -> None:
    from dms.db.tables import ancestry, dataset_files, file_meta

    for batch in chunks(file_ids):
        conn.execute(replicas.delete().where(replicas.c.file_id.in_(batch)))
        conn.execute(file_meta.delete().where(file_meta.c.file_id.in_(batch)))
        conn.execute(dataset_files.delete().where(dataset_files.c.file_id.in_(batch)))
        conn.execute(ancestry.delete().where(ancestry.c.file_id.in_(batch)))
        conn.execute(ancestry.delete().where(ancestry.c.ancestor_id.in_(batch)))
        conn.execute(files.delete().where(files.c.file_id.in_(batch)))


def files_in_dir(conn: Connection, dir_id: int) -> list[Row[Any]]:
    return list(conn.execute(sa.select(files).where(files.c.dir_id == dir_id)
                             .order_by(files.c.name)))


# -- storage elements and replicas --------------------------------------------------------------

def se_ids(conn: Connection, names: Iterable[str], create: bool = False) -> dict[str, int]:
    """SE name -> id; unknown names are created when ``create``, else left out."""
    wanted = set(names)
    found = {name: se_id for se_id, name in conn.execute(
        sa.select(storage_elements.c.se_id, storage_elements.c.name)
        .where(storage_elements.c.name.in_(wanted)))} if wanted else {}
    missing = wanted - set(found)
    if missing and create:
        _insert_ignore(conn, storage_elements, [{"name": n} for n in sorted(missing)])
        found.update(se_ids(conn, missing))
    return found


def se_names(conn: Connection) -> dict[int, str]:
    return {se_id: name for se_id, name in conn.execute(
        sa.select(storage_elements.c.se_id, storage_elements.c.name))}


def get_replicas(conn: Connection, file_ids: Iterable[int], all_status: bool = True
                 ) -> dict[int, dict[str, str]]:
    """file_id -> {SE name: PFN} (only ``AprioriGood`` replicas unless ``all_status``)."""
    out: dict[int, dict[str, str]] = defaultdict(dict)
    names = se_names(conn)
    for batch in chunks(set(file_ids)):
        query = sa.select(replicas.c.file_id, replicas.c.se_id, replicas.c.pfn).where(
            replicas.c.file_id.in_(batch))
        if not all_status:
            query = query.where(replicas.c.status == "AprioriGood")
        for file_id, se_id, pfn in conn.execute(query).fetchall():
            out[file_id][names[se_id]] = pfn
    return out


#: files with their good replicas (one row per replica, or one with NULL), by file ID. The
#: IN list is one expanding parameter, so the statement is compiled once per process.
#: Directory paths are read apart, by their few IDs: joined here, MariaDB turns a list of
#: 1,000 IDs into a derived table (in_predicate_conversion_threshold) and starts from the
#: directories, reading every file of each (4x slower than the two reads).
_GOOD_REPLICAS_BY_ID = (
    sa.select(files.c.dir_id, files.c.name, replicas.c.se_id)
    .select_from(files.outerjoin(replicas, sa.and_(replicas.c.file_id == files.c.file_id,
                                                   replicas.c.status == "AprioriGood")))
    .where(files.c.file_id.in_(sa.bindparam("ids", expanding=True))))
_NAMES_BY_ID = sa.select(files.c.file_id, files.c.dir_id, files.c.name).where(
    files.c.file_id.in_(sa.bindparam("ids", expanding=True)))
_PATHS_BY_ID = sa.select(directories.c.dir_id, directories.c.path).where(
    directories.c.dir_id.in_(sa.bindparam("ids", expanding=True)))


def dir_paths(conn: Connection, dir_ids: Iterable[int]) -> dict[int, str]:
    """dir_id -> path, without its trailing slash (``""`` for the root)."""
    out: dict[int, str] = {}
    for batch in chunks(sorted(set(dir_ids))):
        out.update((d, p.rstrip("/")) for d, p in conn.execute(_PATHS_BY_ID, {"ids": batch}))
    return out


#: :data:`_GOOD_REPLICAS_BY_ID` aggregated by directory and SE: a few rows per 1,000 files
#: instead of one per file (a Python driver spends more on reading a row than the server on
#: finding it); the count and the total length of the names detect a name holding the
#: separator and a truncated ``group_concat`` (MariaDB's group_concat_max_len), which are
#: then read row by row
_GOOD_REPLICAS_GROUPED = (
    sa.select(files.c.dir_id, replicas.c.se_id, sa.func.count(),
              sa.func.sum(sa.func.char_length(files.c.name)), sa.func.group_concat(files.c.name))
    .select_from(files.outerjoin(replicas, sa.and_(replicas.c.file_id == files.c.file_id,
                                                   replicas.c.status == "AprioriGood")))
    .group_by(files.c.dir_id, replicas.c.se_id))
_GROUPED_IN = _GOOD_REPLICAS_GROUPED.where(files.c.file_id.in_(sa.bindparam("ids",
                                                                           expanding=True)))
_GROUPED_RANGE = _GOOD_REPLICAS_GROUPED.where(files.c.file_id.between(sa.bindparam("low"),
                                                                      sa.bindparam("high")))


def _id_range(batch: Sequence[int]) -> tuple[int, int] | None:
    """(first, last) when the sorted distinct ``batch`` is a run of consecutive IDs."""
    if batch and batch[-1] - batch[0] + 1 == len(batch):
        return batch[0], batch[-1]
    return None


def good_replica_ses(conn: Connection, file_ids: Iterable[int]) -> dict[str, list[str]]:
    """LFN -> names of the SEs holding an ``AprioriGood`` replica, for the files whose
    catalog IDs are given (``[]`` for a file without one; unknown IDs are left out). Two
    indexed reads per :data:`CHUNK` files: what an input-data check needs, without resolving
    paths or reading files and replicas apart. The names come grouped by directory and SE
    (:data:`_GOOD_REPLICAS_GROUPED`); a run of consecutive IDs is one ``BETWEEN``."""
    names = se_names(conn)
    groups: list[tuple[int, int | None, list[str]]] = []
    for batch in chunks(sorted(set(file_ids))):
        span = _id_range(batch)
        result = (conn.execute(_GROUPED_RANGE, {"low": span[0], "high": span[1]})
                  if span is not None else conn.execute(_GROUPED_IN, {"ids": batch}))
        grouped: list[tuple[int, int | None, list[str]]] = []
        for dir_id, se_id, count, length, joined in result:
            text = joined.decode() if isinstance(joined, bytes) else str(joined)
            part = text.split(",")
            if len(part) != count or len(text) - count + 1 != int(length or 0):
                break  # a name with a comma, or a truncated list: this batch row by row
            grouped.append((dir_id, se_id, part))
        else:
            groups.extend(grouped)
            continue
        result.close()
        for dir_id, name, se_id in conn.execute(_GOOD_REPLICAS_BY_ID, {"ids": batch}):
            groups.append((dir_id, se_id, [name]))
    paths = dir_paths(conn, {group[0] for group in groups})
    out: dict[str, list[str]] = {}
    for dir_id, se_id, part in groups:
        head = paths[dir_id] + "/"
        if se_id is None:
            for name in part:
                out.setdefault(head + name, [])
        else:
            se = names[se_id]
            for name in part:
                out.setdefault(head + name, []).append(se)
    return out


def insert_replicas(conn: Connection, rows: list[dict[str, Any]]) -> None:
    for batch in chunks(rows):
        conn.execute(replicas.insert(), batch)


def delete_replicas(conn: Connection, pairs: Sequence[tuple[int, int]]) -> None:
    """Delete (file_id, se_id) replicas, grouped by SE."""
    by_se: dict[int, list[int]] = defaultdict(list)
    for file_id, se_id in pairs:
        by_se[se_id].append(file_id)
    for se_id, ids in by_se.items():
        for batch in chunks(ids):
            conn.execute(replicas.delete().where(replicas.c.se_id == se_id,
                                                 replicas.c.file_id.in_(batch)))


# -- usage counters ---------------------------------------------------------------------------

def bump_usage(conn: Connection, deltas: Mapping[tuple[int, int], tuple[int, int]]) -> None:
    """Add (size, files) deltas to the (dir_id, se_id) counters (upsert, atomic increments)."""
    rows = [{"dir_id": d, "se_id": s, "size": size, "files": count}
            for (d, s), (size, count) in deltas.items() if size or count]
    if not rows:
        return
    for batch in chunks(rows):
        if conn.dialect.name == "sqlite":
            stmt = sqlite.insert(dir_usage)
            conn.execute(stmt.on_conflict_do_update(
                index_elements=["dir_id", "se_id"],
                set_={"size": dir_usage.c.size + stmt.excluded.size,
                      "files": dir_usage.c.files + stmt.excluded.files}), batch)
        else:
            mstmt = mysql.insert(dir_usage)
            conn.execute(mstmt.on_duplicate_key_update(
                size=dir_usage.c.size + mstmt.inserted.size,
                files=dir_usage.c.files + mstmt.inserted.files), batch)


def usage_of(conn: Connection, dir_id: int, recursive: bool = True) -> dict[int, tuple[int, int]]:
    """se_id -> (size, files) for a directory (and its subtree when ``recursive``)."""
    query = sa.select(dir_usage.c.se_id, sa.func.sum(dir_usage.c.size),
                      sa.func.sum(dir_usage.c.files))
    if recursive:
        query = query.where(dir_usage.c.dir_id.in_(subtree_ids(dir_id)))
    else:
        query = query.where(dir_usage.c.dir_id == dir_id)
    return {se: (int(size or 0), int(count or 0))
            for se, size, count in conn.execute(query.group_by(dir_usage.c.se_id))}


def count_subdirs(conn: Connection, dir_id: int, recursive: bool = True) -> int:
    if recursive:
        query = sa.select(sa.func.count()).select_from(dir_closure).where(
            dir_closure.c.ancestor_id == dir_id, dir_closure.c.depth > 0)
    else:
        query = sa.select(sa.func.count()).select_from(directories).where(
            directories.c.parent_id == dir_id)
    return int(conn.execute(query).scalar_one())


def _insert_ignore(conn: Connection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    if conn.dialect.name == "sqlite":
        conn.execute(sqlite.insert(table).on_conflict_do_nothing(), rows)
    else:
        conn.execute(mysql.insert(table).prefix_with("IGNORE"), rows)
