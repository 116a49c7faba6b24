"""Directories in bulk: listings, per-directory replicas, sizes and per-SE usage, and the
owner/group/mode changes of any entry (see :mod:`dms.logic.namespace` for the conventions).

Example::

    >>> from core.db import init_schema, make_engine
    >>> from dms.db.schema import DMS_SCHEMA
    >>> from dms.logic.namespace import add_files
    >>> from dms.logic.rights import CatalogSettings, Requester
    >>> engine = make_engine("sqlite://"); _ = init_schema(engine, DMS_SCHEMA)
    >>> alice = Requester("alice", "demo_user", "demo")
    >>> _ = add_files(engine, CatalogSettings(vo_groups={"demo": "demo_user"}), alice,
    ...               {"/demo/user/a/alice/d/f": {"Size": 5, "SE": "DISK"}})
    >>> get_directory_size(engine, alice, ["/demo/user/a/alice"]).successful
    {'/demo/user/a/alice': {'LogicalSize': 5, 'LogicalFiles': 1, 'LogicalDirectories': 1}}
    >>> storage_usage(engine, alice, "/demo")
    {'DISK': {'Size': 5, 'Files': 1}}
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, Row

from core.db import utcnow, write_transaction
from dms.bulk import DENIED, NO_SUCH, NOT_DIR, BulkResult
from dms.db import catalog as db
from dms.db.tables import directories, files
from dms.logic.namespace import (
    Resolved,
    _exists_hidden,
    file_metadata,
    normalise,
    resolve,
)
from dms.logic.rights import EXECUTE, READ, Requester, may
from dms.paths import join


def dir_metadata(row: Row[Any]) -> dict[str, Any]:
    """A directory's entry with DIRAC's keys."""
    return {"DirID": row.dir_id, "Owner": row.owner, "OwnerGroup": row.owner_group,
            "Mode": row.mode, "CreationDate": row.created, "ModificationDate": row.modified,
            "Status": row.status, "UID": 0, "GID": 0}


def _readable_dirs(conn: Connection, req: Requester, paths: Mapping[str, str],
                   result: BulkResult, need: int = READ) -> tuple[Resolved, dict[str, Row]]:
    res = resolve(conn, paths)
    ok: dict[str, Row[Any]] = {}
    for path, raw in paths.items():
        if not res.reachable(req, path):
            result.fail(raw, DENIED if _exists_hidden(res, path) else NO_SUCH)
        elif path in res.files:
            result.fail(raw, NOT_DIR)
        elif path not in res.dirs:
            result.fail(raw, NO_SUCH)
        elif need and not all(may(req, res.dirs[path], bit) for bit in (READ, EXECUTE)
                              if bit & need):
            result.fail(raw, DENIED)
        else:
            ok[path] = res.dirs[path]
    return res, ok


def get_directory_metadata(engine: Engine, req: Requester, paths: Iterable[str]) -> BulkResult:
    result = BulkResult()
    wanted = normalise(paths, result)
    with engine.connect() as conn:
        _res, ok = _readable_dirs(conn, req, wanted, result, need=0)
    for path, row in ok.items():
        result.ok(wanted[path], dir_metadata(row))
    return result


def list_directory(engine: Engine, req: Requester, paths: Iterable[str],
                   verbose: bool = False) -> BulkResult:
    """``{dir: {"Files": {lfn: {"MetaData": {...}}}, "SubDirs": {path: {...}|True},
    "Links": {}, "Datasets": {...}}}`` (``r`` and ``x`` on the directory)."""
    from dms.logic.datasets import datasets_listing

    result = BulkResult()
    wanted = normalise(paths, result)
    with engine.connect() as conn:
        _res, ok = _readable_dirs(conn, req, wanted, result, need=READ | EXECUTE)
        for path, row in ok.items():
            if not may(req, row, EXECUTE):
                result.fail(wanted[path], DENIED)
                continue
            subs = {d.path: (dir_metadata(d) if verbose else True)
                    for d in db.subdirs(conn, row.dir_id)}
            file_rows = db.files_in_dir(conn, row.dir_id)
            reps: dict[int, dict[str, Any]] = {}
            if verbose:
                reps = db.get_replicas(conn, [f.file_id for f in file_rows])
            listing = {}
            for f in file_rows:
                meta = file_metadata(f) if verbose else {"FileID": f.file_id}
                entry: dict[str, Any] = {"MetaData": meta}
                if verbose:
                    entry["Replicas"] = dict(reps.get(f.file_id, {}))
                listing[join(path, f.name)] = entry
            result.ok(wanted[path], {"Files": listing, "SubDirs": subs, "Links": {},
                                     "Datasets": datasets_listing(conn, row, path, verbose)})
    return result


def get_directory_replicas(engine: Engine, req: Requester, paths: Iterable[str],
                           all_status: bool = True) -> BulkResult:
    """``{dir: {lfn: {SE: PFN}}}`` for the readable files directly in each directory."""
    result = BulkResult()
    wanted = normalise(paths, result)
    with engine.connect() as conn:
        _res, ok = _readable_dirs(conn, req, wanted, result, need=READ | EXECUTE)
        for path, row in ok.items():
            file_rows = [f for f in db.files_in_dir(conn, row.dir_id) if may(req, f, READ)]
            reps = db.get_replicas(conn, [f.file_id for f in file_rows], all_status)
            result.ok(wanted[path], {join(path, f.name): dict(reps.get(f.file_id, {}))
                                     for f in file_rows})
    return result


def get_directory_size(engine: Engine, req: Requester, paths: Iterable[str],
                       long_output: bool = False, recursive: bool = True) -> BulkResult:
    """DIRAC's ``{dir: {LogicalSize, LogicalFiles, LogicalDirectories[, PhysicalSize:
    {SE: {Size, Files}, TotalSize, TotalFiles}]}}`` from the usage counters."""
    result = BulkResult()
    wanted = normalise(paths, result)
    with engine.connect() as conn:
        _res, ok = _readable_dirs(conn, req, wanted, result, need=0)
        names = db.se_names(conn) if long_output else {}
        for path, row in ok.items():
            usage = db.usage_of(conn, row.dir_id, recursive)
            size, count = usage.get(db.LOGICAL, (0, 0))
            entry: dict[str, Any] = {"LogicalSize": size, "LogicalFiles": count,
                                     "LogicalDirectories": db.count_subdirs(
                                         conn, row.dir_id, recursive)}
            if long_output:
                physical: dict[str, Any] = {}
                for se_id, (se_size, se_files) in sorted(usage.items()):
                    if se_id != db.LOGICAL and se_files:
                        physical[names[se_id]] = {"Size": se_size, "Files": se_files}
                physical["TotalSize"] = sum(v["Size"] for v in physical.values())
                physical["TotalFiles"] = sum(v["Files"] for k, v in physical.items()
                                             if k != "TotalSize")
                entry["PhysicalSize"] = physical
            result.ok(wanted[path], entry)
    return result


def storage_usage(engine: Engine, req: Requester, path: str = "/") -> dict[str, dict[str, int]]:
    """``{SE: {"Size", "Files"}}`` of the replicas under ``path`` (per-SE usage)."""
    result = get_directory_size(engine, req, [path], long_output=True)
    if result.failed:
        from core.exceptions import NotAuthorizedError, NotFoundError

        reason = next(iter(result.failed.values()))
        raise (NotAuthorizedError if reason == DENIED else NotFoundError)(f"{path}: {reason}")
    physical = dict(next(iter(result.successful.values()))["PhysicalSize"])
    physical.pop("TotalSize", None)
    physical.pop("TotalFiles", None)
    return physical


# -- ownership and modes ----------------------------------------------------------------------

def change_path(engine: Engine, req: Requester, what: str, values: Mapping[str, Any],
                recursive: bool = False) -> BulkResult:
    """``what`` in owner/group/mode: ``{path: value}``. Only administrators change owners;
    owners change the group (to one of their groups) and the mode (0..0o777)."""
    result = BulkResult()
    wanted = normalise(values, result)
    checked: dict[str, Any] = {}
    for path, raw in wanted.items():
        value = values[raw]
        if what == "mode":
            try:
                value = int(value, 8) if isinstance(value, str) else int(value)
            except (TypeError, ValueError):
                result.fail(raw, f"bad mode {value!r}")
                continue
            if not 0 <= value <= 0o777:
                result.fail(raw, f"bad mode {oct(value)}")
                continue
        elif not isinstance(value, str) or not value:
            result.fail(raw, f"bad {what} {value!r}")
            continue
        checked[path] = value
    column = {"owner": "owner", "group": "owner_group", "mode": "mode"}[what]
    now = utcnow()
    with write_transaction(engine) as conn:
        res = resolve(conn, checked)
        dir_updates: dict[int, dict[str, Any]] = {}
        file_updates: dict[int, dict[str, Any]] = {}
        for path, value in checked.items():
            raw = wanted[path]
            row = res.entry(path)
            if not res.reachable(req, path):
                result.fail(raw, DENIED if _exists_hidden(res, path) else NO_SUCH)
            elif row is None:
                result.fail(raw, NO_SUCH)
            elif not req.admin and (what == "owner" or row.owner != req.user or (
                    what == "group" and value not in req.groups | {req.group})):
                result.fail(raw, DENIED)
            else:
                vals = {column: value, "modified": now}
                if path in res.dirs:
                    dir_updates[row.dir_id] = vals
                    if recursive:
                        _recurse(conn, req, row.dir_id, vals, dir_updates, file_updates)
                else:
                    file_updates[row.file_id] = vals
                result.ok(raw)
        db.update_rows(conn, directories, "dir_id", dir_updates)
        db.update_rows(conn, files, "file_id", file_updates)
    return result


def _recurse(conn: Connection, req: Requester, top_id: int, vals: dict[str, Any],
             dir_updates: dict[int, dict[str, Any]], file_updates: dict[int, dict[str, Any]]
             ) -> None:
    """Apply ``vals`` to the entries under ``top_id`` that ``req`` owns (all for admins)."""
    sub = db.subtree_ids(top_id)
    query = sa.select(directories.c.dir_id, directories.c.owner).where(
        directories.c.dir_id.in_(sub))
    for dir_id, owner in conn.execute(query):
        if req.admin or owner == req.user:
            dir_updates[dir_id] = vals
    fquery = sa.select(files.c.file_id, files.c.owner).where(files.c.dir_id.in_(sub))
    for file_id, owner in conn.execute(fquery):
        if req.admin or owner == req.user:
            file_updates[file_id] = vals
