"""Questions about rights and identities DIRAC's file catalog client asks: permissions of
paths, whether an operation would be allowed, the LFN of a GUID, a file's full details.

* :func:`path_permissions`: ``{"Read", "Write", "Execute"}`` of the caller on each path (a path
  that does not exist answers for its closest existing directory, as DIRAC does);
* :func:`has_access`: whether the caller may do DIRAC operation ``op`` (a read method such as
  ``getReplicas``, a write method such as ``addFile``, or ``Read``/``Write``/``Execute``): read
  operations need the read bit of the entry, write operations the write bit of the directory
  that holds (or would hold) it, and every directory above must let the caller through;
* :func:`lfns_for_guids`: ``{guid: lfn}`` for the files the caller can reach;
* :func:`file_details`: the file's catalog entry plus its user metadata under ``MetaData``;
* :func:`replica_status` / :func:`set_file_status`: a replica's status at an SE, a file's
  status (``w`` on the file);
* :func:`directory_dump`: every file (``Size``, ``CreationDate``) and every directory below
  a directory, in one indexed query each (the directory closure), at most
  :data:`MAX_DUMP` files.

Example::

    >>> from core.db import init_schema, make_engine
    >>> from dms.db.schema import DMS_SCHEMA
    >>> from dms.logic.rights import Requester
    >>> engine = make_engine("sqlite://"); _ = init_schema(engine, DMS_SCHEMA)
    >>> alice = Requester("alice", "demo_user", "demo")
    >>> path_permissions(engine, alice, ["/demo/x"]).failed   # an empty catalog
    {'/demo/x': 'No such file or directory'}
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine, Row

from core.db import write_transaction
from core.in_values import in_values
from dms.bulk import NO_SUCH, BulkResult
from dms.db import catalog as db
from dms.db.tables import directories, files, replicas
from dms.logic import metadata, namespace
from dms.logic.replicas import REPLICA_STATUSES
from dms.logic.rights import EXECUTE, READ, WRITE, Requester, may
from dms.paths import ancestors, join, parent_of

#: DIRAC file catalog methods that only read
READ_OPERATIONS = frozenset({
    "Read", "exists", "isFile", "isDirectory", "getFileMetadata", "getFileSize",
    "getReplicas", "getReplicaStatus", "getFileDetails", "getLFNForGUID", "listDirectory",
    "getDirectoryMetadata", "getDirectorySize", "getDirectoryReplicas", "getDirectoryDump",
    "getFileUserMetadata", "getDirectoryUserMetadata", "findFilesByMetadata",
    "findDirectoriesByMetadata", "getFileAncestors", "getFileDescendents", "getDatasets",
    "getDatasetFiles", "getPathPermissions", "hasAccess"})


def _closest(res: namespace.Resolved, path: str) -> tuple[str, Row[Any]] | None:
    """The entry at ``path``, else its closest existing directory."""
    row = res.entry(path)
    if row is not None:
        return path, row
    for above in [parent_of(path), *ancestors(parent_of(path))]:
        if above in res.dirs:
            return above, res.dirs[above]
    return None


def path_permissions(engine: Engine, req: Requester, paths: Iterable[str]) -> BulkResult:
    result = BulkResult()
    wanted = namespace.normalise(paths, result)
    with engine.connect() as conn:
        res = namespace.resolve(conn, wanted, full=False)
    for path, raw in wanted.items():
        found = _closest(res, path)
        if found is None:
            result.fail(raw, NO_SUCH)
            continue
        _where, row = found
        result.ok(raw, {"Read": may(req, row, READ), "Write": may(req, row, WRITE),
                        "Execute": may(req, row, EXECUTE)})
    return result


def has_access(engine: Engine, req: Requester, paths: Iterable[str], op: str) -> BulkResult:
    result = BulkResult()
    wanted = namespace.normalise(paths, result)
    reading = op in READ_OPERATIONS
    bit = EXECUTE if op == "Execute" else READ if reading else WRITE
    with engine.connect() as conn:
        res = namespace.resolve(conn, wanted, full=False)
    for path, raw in wanted.items():
        target = path if reading or path in res.dirs else parent_of(path)
        found = _closest(res, target)
        if found is None:
            result.ok(raw, False)
            continue
        where, row = found
        result.ok(raw, req.admin or (res.reachable(req, where) and may(req, row, bit)))
    return result


def lfns_for_guids(engine: Engine, req: Requester, guids: Iterable[str]) -> BulkResult:
    result = BulkResult()
    wanted = sorted({str(g) for g in guids})
    with engine.connect() as conn:
        rows = conn.execute(sa.select(files.c.guid, files.c.dir_id, files.c.name)
                            .where(in_values(files.c.guid, wanted))).all() if wanted else []
        dirs = db.get_dirs_by_id(conn, {r.dir_id for r in rows})
        lfns = {r.guid: join(dirs[r.dir_id].path, r.name) for r in rows if r.dir_id in dirs}
        res = namespace.resolve(conn, lfns.values(), full=False)
    for guid in wanted:
        lfn = lfns.get(guid)
        if lfn is None or not res.reachable(req, lfn):
            result.fail(guid, "GUID not found")
        else:
            result.ok(guid, lfn)
    return result


def file_details(engine: Engine, req: Requester, lfns: Iterable[str]) -> BulkResult:
    result = namespace.get_file_metadata(engine, req, lfns)
    for lfn, entry in result.successful.items():
        entry["MetaData"] = metadata.get_user_metadata(engine, req, lfn)
    return result


#: most files one directory dump lists
MAX_DUMP = 1_000_000


def replica_status(engine: Engine, req: Requester, entries: Mapping[str, Any]) -> BulkResult:
    """``{lfn: SE}`` -> ``{lfn: status of that replica}`` (DIRAC's ``getReplicaStatus``)."""
    result = BulkResult()
    wanted = namespace.normalise(entries, result)
    with engine.connect() as conn:
        _res, ok = namespace._readable_files(conn, req, wanted, result, full=False)
        names = db.se_names(conn)
        ids = [row.file_id for row in ok.values()]
        found = {(f, names[s]): st for f, s, st in conn.execute(
            sa.select(replicas.c.file_id, replicas.c.se_id, replicas.c.status)
            .where(in_values(replicas.c.file_id, ids)))} if ids else {}
    for path, row in ok.items():
        raw = wanted[path]
        se = entries.get(raw) if isinstance(entries, Mapping) else None
        if not se:
            result.fail(raw, "Replica info not supplied")
        elif (row.file_id, se) not in found:
            result.fail(raw, "No replica at supplied site")
        else:
            result.ok(raw, found[(row.file_id, se)])
    return result


def set_file_status(engine: Engine, req: Requester, entries: Mapping[str, Any]) -> BulkResult:
    """``{lfn: status}``: a file's status (one of the replica statuses)."""
    result = BulkResult()
    wanted = namespace.normalise(entries, result)
    with write_transaction(engine) as conn:
        _res, ok = namespace._readable_files(conn, req, wanted, result, need=WRITE,
                                             full=False)
        for path, row in ok.items():
            status = entries[wanted[path]]
            if status not in REPLICA_STATUSES:
                result.fail(wanted[path], "Status must be one of "
                            + ", ".join(REPLICA_STATUSES))
                continue
            conn.execute(files.update().where(files.c.file_id == row.file_id)
                         .values(status=status))
            result.ok(wanted[path])
    return result


def directory_dump(engine: Engine, req: Requester, paths: Iterable[str]) -> BulkResult:
    """``{dir: {"Files": {lfn: {"Size", "CreationDate"}}, "SubDirs": [paths]}}``: the whole
    subtree (``r`` and ``x`` on the directory; DIRAC's ``getDirectoryDump``)."""
    result = BulkResult()
    wanted = namespace.normalise(paths, result)
    with engine.connect() as conn:
        res = namespace.resolve(conn, wanted, full=False)
        for path, raw in wanted.items():
            row = res.dirs.get(path)
            if row is None:
                result.fail(raw, f"{path} does not exist" if path not in res.files
                            else "Not a directory")
                continue
            if not (res.reachable(req, path) and may(req, row, READ | EXECUTE)):
                result.fail(raw, "Permission denied")
                continue
            below = db.subtree_ids(row.dir_id)
            subdirs = [p for (p,) in conn.execute(
                sa.select(directories.c.path).where(directories.c.dir_id.in_(below),
                                                    directories.c.dir_id != row.dir_id)
                .order_by(directories.c.path))]
            paths_by_id = {row.dir_id: path, **dict(conn.execute(
                sa.select(directories.c.dir_id, directories.c.path)
                .where(directories.c.dir_id.in_(below))).all())}
            listing = {join(paths_by_id[d], n): {"Size": size, "CreationDate": created}
                       for d, n, size, created in conn.execute(
                           sa.select(files.c.dir_id, files.c.name, files.c.size,
                                     files.c.created)
                           .where(files.c.dir_id.in_(below)).limit(MAX_DUMP))}
            result.ok(raw, {"Files": listing, "SubDirs": subdirs})
    return result
