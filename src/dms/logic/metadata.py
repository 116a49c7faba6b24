"""User metadata: fields declared by administrators, values on directories (inherited below
them) and on files, and queries (see :mod:`dms.db.metadata` for the syntax).

A field may be set on an entry only when no directory above it already defines it, and on a
directory only when nothing below defines it either (DIRAC's "Metadata conflict"), so every
file has at most one effective value per field and queries stay plain indexed joins.

Example::

    >>> from core.db import init_schema, make_engine
    >>> from dms.db.schema import DMS_SCHEMA
    >>> from dms.logic.namespace import create_directories
    >>> from dms.logic.rights import CatalogSettings, Requester
    >>> engine = make_engine("sqlite://"); _ = init_schema(engine, DMS_SCHEMA)
    >>> root = Requester("admin", "admin", "demo", admin=True)
    >>> add_field(engine, root, "run", "int")
    True
    >>> _ = create_directories(engine, CatalogSettings(), root, ["/demo/r1"])
    >>> set_metadata(engine, root, "/demo/r1", {"run": 7})
    >>> find_files(engine, root, {"run": {">": 3}}, "/")
    []
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from core.db import write_transaction
from core.exceptions import InvalidArgumentError, NotAuthorizedError, NotFoundError
from dms.bulk import DENIED, NO_SUCH, BulkResult
from dms.db import catalog as db
from dms.db import changes as journal
from dms.db import metadata as meta_db
from dms.db.tables import files
from dms.logic.namespace import Resolved, normalise, resolve
from dms.logic.rights import EXECUTE, READ, WRITE, Requester, may
from dms.paths import ancestors, normalise_lfn

FIELD_NAME_MAX = 64


def _admin(req: Requester) -> None:
    if not req.admin:
        raise NotAuthorizedError("only catalog administrators manage metadata fields")


def add_field(engine: Engine, req: Requester, name: str, kind: str) -> bool:
    """Declare a typed field (int, float, string, date; DIRAC's INT/FLOAT/VARCHAR/DATETIME
    spellings too). True if new; declaring it again with the same type is a no-op."""
    _admin(req)
    if (not isinstance(name, str) or not name.isidentifier() or len(name) > FIELD_NAME_MAX
            or name in meta_db.STANDARD or name == meta_db.PATH_KEY):
        raise InvalidArgumentError(f"bad metadata field name {name!r}")
    try:
        canonical = meta_db.canonical_type(kind)
    except ValueError as exc:
        raise InvalidArgumentError(str(exc)) from None
    with write_transaction(engine) as conn:
        try:
            return meta_db.add_field(conn, name, canonical)
        except ValueError as exc:
            raise InvalidArgumentError(str(exc)) from None


def delete_field(engine: Engine, req: Requester, name: str) -> None:
    _admin(req)
    with write_transaction(engine) as conn:
        if name not in meta_db.fields(conn):
            raise NotFoundError(f"no metadata field {name!r}")
        meta_db.delete_field(conn, name)


def get_fields(engine: Engine) -> dict[str, str]:
    """name -> canonical type."""
    with engine.connect() as conn:
        return meta_db.fields(conn)


def _entry(conn: Connection, req: Requester, path: str, need: int) -> tuple[Resolved, Any]:
    try:
        path = normalise_lfn(path)
    except (TypeError, ValueError) as exc:
        raise InvalidArgumentError(str(exc)) from None
    res = resolve(conn, [path])
    row = res.entry(path)
    if not res.reachable(req, path):
        if all(a in res.dirs for a in ancestors(path)):
            raise NotAuthorizedError(f"{path}: {DENIED}")
        raise NotFoundError(f"{path}: {NO_SUCH}")
    if row is None:
        raise NotFoundError(f"{path}: {NO_SUCH}")
    if need and not may(req, row, need):
        raise NotAuthorizedError(f"{path}: {DENIED}")
    return res, row


def _typed(kinds: Mapping[str, str], values: Mapping[str, Any]) -> dict[str, tuple[str, Any]]:
    out = {}
    for name, value in values.items():
        if name not in kinds:
            raise InvalidArgumentError(f"unknown metadata field {name!r}")
        try:
            out[name] = (kinds[name], meta_db.convert(kinds[name], value))
        except ValueError as exc:
            raise InvalidArgumentError(f"{name}: {exc}") from None
    return out


def set_metadata(engine: Engine, req: Requester, path: str, values: Mapping[str, Any]) -> None:
    """Set field values on a directory or a file (``w`` on it)."""
    if not isinstance(values, Mapping) or not values:
        raise InvalidArgumentError("setMetadata needs a non-empty {field: value} dict")
    with write_transaction(engine) as conn:
        res, row = _entry(conn, req, path, WRITE)
        kinds = meta_db.fields(conn)
        typed = _typed(kinds, values)
        is_dir = hasattr(row, "path_hash")
        dir_id = row.dir_id
        above = meta_db.dir_values(conn, dir_id, kinds)
        conflicts = []
        for name, (_kind, value) in typed.items():
            if name in above and (above[name][1] != dir_id or not is_dir) and \
                    above[name][0] != value:
                conflicts.append(name)
        if is_dir:
            conflicts += sorted(meta_db.defined_below(conn, dir_id, list(typed)))
        if conflicts:
            raise InvalidArgumentError(
                f"Metadata conflict detected for {', '.join(sorted(set(conflicts)))} "
                f"on {path}: defined above or below it")
        if is_dir:
            meta_db.set_values(conn, dir_id=dir_id, values=typed)
            journal.record(conn, journal.DIR_META, dir_ids=[dir_id])
        else:
            own = {n: v for n, v in typed.items() if n not in above}
            if own:
                meta_db.set_values(conn, file_id=row.file_id, values=own)
                journal.record(conn, journal.FILE_META, file_ids=[row.file_id])


def remove_metadata(engine: Engine, req: Requester, targets: Mapping[str, Any]) -> BulkResult:
    """``{path: [field, ...]}`` (or one field name): remove values set on those entries."""
    result = BulkResult()
    wanted = normalise(targets, result)
    with write_transaction(engine) as conn:
        for path, raw in wanted.items():
            names = targets[raw]
            names = [names] if isinstance(names, str) else names
            if not isinstance(names, list | tuple) or not all(
                    isinstance(n, str) for n in names):
                result.fail(raw, "metadata field names must be a name or a list of names")
                continue
            names = list(names)
            try:
                _res, row = _entry(conn, req, path, WRITE)
            except (NotFoundError, NotAuthorizedError) as exc:
                result.fail(raw, DENIED if isinstance(exc, NotAuthorizedError) else NO_SUCH)
                continue
            if hasattr(row, "path_hash"):
                meta_db.delete_values(conn, dir_id=row.dir_id, names=names)
            else:
                meta_db.delete_values(conn, file_id=row.file_id, names=names)
            result.ok(raw)
    return result


def get_user_metadata(engine: Engine, req: Requester, path: str,
                      inherited: bool = True) -> dict[str, Any]:
    """The effective ``{field: value}`` of a directory or file (own and inherited)."""
    with engine.connect() as conn:
        _res, row = _entry(conn, req, path, READ)
        kinds = meta_db.fields(conn)
        values = {n: v for n, (v, _d) in meta_db.dir_values(conn, row.dir_id, kinds,
                                                           inherited).items()}
        if not hasattr(row, "path_hash"):
            if not inherited:
                values = {}
            values.update(meta_db.file_values(conn, row.file_id, kinds))
        return values


def query_ids(conn: Connection, query: Mapping[str, Any], path: str = "/",
              req: Requester | None = None) -> sa.Select[Any] | None:
    """The SELECT of (file_id, dir_id, name) matching ``query`` under ``path`` (and, when
    ``req`` is given and not an administrator, whose own mode lets ``req`` read them); None
    when ``path`` does not exist."""
    if not isinstance(query, Mapping):
        raise InvalidArgumentError("a metadata query is a dict")
    top = query.get(meta_db.PATH_KEY, path) or "/"
    try:
        top = normalise_lfn(str(top))
    except (TypeError, ValueError) as exc:
        raise InvalidArgumentError(str(exc)) from None
    top_row = db.get_dirs(conn, [top]).get(top)
    try:
        conds = meta_db.file_conditions(
            conn, query, meta_db.fields(conn),
            None if top_row is None or top == "/" else top_row.dir_id)
    except ValueError as exc:
        raise InvalidArgumentError(str(exc)) from None
    if top_row is None:
        return None
    select = sa.select(files.c.file_id, files.c.dir_id, files.c.name).where(*conds)
    if req is not None and not req.admin:
        select = select.where(_readable_by(req))
    return select


def _readable_by(req: Requester) -> Any:
    """SQL: the file's own mode lets ``req`` read it (owner, group or other bits)."""
    def bit(mask: int) -> Any:
        return files.c.mode.op("&")(mask) != 0

    mine = files.c.owner == req.user
    group = files.c.owner_group == req.group
    return sa.or_(sa.and_(mine, bit(0o400)),
                  sa.and_(~mine, group, bit(0o040)),
                  sa.and_(~mine, ~group, bit(0o004)))


def matching(conn: Connection, req: Requester, select: sa.Select[Any]) -> list[tuple[int, str]]:
    """(file_id, LFN) of the rows of a :func:`query_ids` select (made with ``req``) whose
    directories ``req`` may go through; paths and rights are worked out once per directory.
    """
    rows = conn.execute(select).fetchall()
    dirs = db.get_dirs_by_id(conn, {row[1] for row in rows})
    prefix = {d: (row.path.rstrip("/") + "/") for d, row in dirs.items()}
    if req.admin:
        return [(row[0], prefix[row[1]] + row[2]) for row in rows]
    needed = {a for row in dirs.values() for a in ancestors(row.path)}
    by_path = db.get_dirs(conn, needed - {row.path for row in dirs.values()})
    by_path.update({row.path: row for row in dirs.values()})
    through = {}
    for dir_id, row in dirs.items():
        chain = ancestors(row.path) + [row.path]
        through[dir_id] = all(c in by_path and may(req, by_path[c], EXECUTE) for c in chain)
    return [(file_id, prefix[dir_id] + name) for file_id, dir_id, name in rows
            if through[dir_id]]


def find_matching(engine: Engine, req: Requester, query: Mapping[str, Any], path: str = "/"
                  ) -> list[tuple[int, str]]:
    with engine.connect() as conn:
        select = query_ids(conn, query, path, req)
        return [] if select is None else matching(conn, req, select)


def find_files(engine: Engine, req: Requester, query: Mapping[str, Any], path: str = "/"
               ) -> list[str]:
    """The LFNs (sorted) of the readable files matching ``query`` under ``path``."""
    return sorted(lfn for _id, lfn in find_matching(engine, req, query, path))


def find_directories(engine: Engine, req: Requester, query: Mapping[str, Any],
                     path: str = "/") -> list[str]:
    """Directories holding matching files (DIRAC's findDirectoriesByMetadata, by files)."""
    return sorted({lfn.rpartition("/")[0] or "/" for _id, lfn in
                   find_matching(engine, req, query, path)})
