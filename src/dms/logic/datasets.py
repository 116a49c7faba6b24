"""Datasets: a named metadata query living in a directory (``/demo/user/a/alice/myset``).

A dataset is *Dynamic* (its files are the query's current result) until it is frozen: then the
matching files are recorded and stay its content until it is released. Rights: creating or
removing one needs ``w`` on its directory; reading it, reading the directory.

Example::

    >>> from core.db import init_schema, make_engine
    >>> from dms.db.schema import DMS_SCHEMA
    >>> from dms.logic.rights import CatalogSettings, Requester
    >>> engine = make_engine("sqlite://"); _ = init_schema(engine, DMS_SCHEMA)
    >>> alice = Requester("alice", "demo_user", "demo")
    >>> cfg = CatalogSettings(vo_groups={"demo": "demo_user"})
    >>> add_datasets(engine, cfg, alice, {"/demo/user/a/alice/s1": {"Size": {">": 0}}}).failed
    {}
    >>> get_dataset_files(engine, alice, ["/demo/user/a/alice/s1"]).successful
    {'/demo/user/a/alice/s1': []}
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, Row

from core.db import utcnow, write_transaction
from core.exceptions import InvalidArgumentError
from core.in_values import in_values
from dms.bulk import DENIED, EXISTS, NO_SUCH, BulkResult
from dms.db import catalog as db
from dms.db.tables import dataset_files, datasets, files
from dms.logic.metadata import matching, query_ids
from dms.logic.namespace import _ensure_dirs, normalise, resolve, retry_conflicts
from dms.logic.rights import EXECUTE, READ, WRITE, CatalogSettings, Requester, may
from dms.paths import ancestors, join, name_of, parent_of

DYNAMIC, FROZEN = "Dynamic", "Frozen"


def datasets_in(conn: Connection, dir_ids: Iterable[int]) -> set[int]:
    ids = list(set(dir_ids))
    if not ids:
        return set()
    return set(conn.execute(sa.select(datasets.c.dir_id).distinct()
                            .where(in_values(datasets.c.dir_id, ids))).scalars())


def _describe(row: Row[Any], path: str) -> dict[str, Any]:
    return {"DatasetID": row.dataset_id, "MetaQuery": json.loads(row.query),
            "DirID": row.dir_id, "TotalSize": row.total_size, "NumberOfFiles": row.n_files,
            "Owner": row.owner, "OwnerGroup": row.owner_group, "Status": row.status,
            "CreationDate": row.created, "ModificationDate": row.modified,
            "DatasetHash": row.dataset_hash, "Mode": row.mode, "Path": path}


def datasets_listing(conn: Connection, dir_row: Row[Any], path: str, verbose: bool
                     ) -> dict[str, Any]:
    rows = conn.execute(sa.select(datasets).where(datasets.c.dir_id == dir_row.dir_id))
    return {join(path, r.name): (_describe(r, join(path, r.name)) if verbose else True)
            for r in rows}


def _lookup(conn: Connection, req: Requester, names: Mapping[str, str], result: BulkResult,
            need: int) -> dict[str, Row[Any]]:
    """path -> dataset row for the datasets ``req`` may use (``need`` on its directory)."""
    res = resolve(conn, {parent_of(p) for p in names})
    out = {}
    for path, raw in names.items():
        parent = res.dirs.get(parent_of(path))
        chain = ancestors(path)
        if parent is None or not all(c in res.dirs for c in chain):
            result.fail(raw, NO_SUCH)
            continue
        if not all(may(req, res.dirs[c], EXECUTE) for c in chain) or not may(req, parent, need):
            result.fail(raw, DENIED)
            continue
        row = conn.execute(sa.select(datasets).where(datasets.c.dir_id == parent.dir_id,
                                                     datasets.c.name == name_of(path))).first()
        if row is None:
            result.fail(raw, NO_SUCH)
        else:
            out[path] = row
    return out


def _matching(conn: Connection, req: Requester, query: Mapping[str, Any]
              ) -> list[tuple[int, str]]:
    select = query_ids(conn, query, req=req)
    return [] if select is None else matching(conn, req, select)


@retry_conflicts
def add_datasets(engine: Engine, settings: CatalogSettings, req: Requester,
                 entries: Mapping[str, Any]) -> BulkResult:
    """``{dataset path: metaQuery}``: new Dynamic datasets (directories made as needed)."""
    result = BulkResult()
    wanted = normalise(entries, result)
    now = utcnow()
    with write_transaction(engine) as conn:
        res = resolve(conn, set(wanted))
        refused = _ensure_dirs(conn, req, settings, {parent_of(p) for p in wanted}, res)
        for path, raw in wanted.items():
            query = entries[raw]
            parent = parent_of(path)
            if not isinstance(query, Mapping) or not query:
                result.fail(raw, "a dataset needs a non-empty metadata query")
                continue
            try:
                query_ids(conn, query)  # validates the query (fields, operators, values)
            except InvalidArgumentError as exc:
                result.fail(raw, str(exc))
                continue
            if parent in refused:
                result.fail(raw, refused[parent])
            elif path in res.dirs or path in res.files:
                result.fail(raw, EXISTS)
            elif not res.reachable(req, path) or not may(req, res.dirs[parent], WRITE):
                result.fail(raw, DENIED)
            else:
                dir_id = res.dirs[parent].dir_id
                taken = conn.execute(sa.select(datasets.c.dataset_id).where(
                    datasets.c.dir_id == dir_id, datasets.c.name == name_of(path))).first()
                if taken is not None:
                    result.fail(raw, EXISTS)
                    continue
                conn.execute(datasets.insert().values(
                    dir_id=dir_id, name=name_of(path), query=json.dumps(query, sort_keys=True,
                                                                         default=str),
                    status=DYNAMIC, owner=req.user, owner_group=req.group,
                    mode=settings.file_mode, created=now, modified=now, total_size=0,
                    n_files=0, dataset_hash=""))
                result.ok(raw)
    return result


def remove_datasets(engine: Engine, req: Requester, names: Iterable[str]) -> BulkResult:
    result = BulkResult()
    wanted = normalise(names, result)
    with write_transaction(engine) as conn:
        for path, row in _lookup(conn, req, wanted, result, WRITE).items():
            conn.execute(dataset_files.delete().where(
                dataset_files.c.dataset_id == row.dataset_id))
            conn.execute(datasets.delete().where(datasets.c.dataset_id == row.dataset_id))
            result.ok(wanted[path])
    return result


def get_datasets(engine: Engine, req: Requester, names: Iterable[str]) -> BulkResult:
    """``{path: {MetaQuery, Status, NumberOfFiles, TotalSize, ...}}``."""
    result = BulkResult()
    wanted = normalise(names, result)
    with engine.connect() as conn:
        for path, row in _lookup(conn, req, wanted, result, READ).items():
            result.ok(wanted[path], _describe(row, path))
    return result


def _frozen_lfns(conn: Connection, dataset_id: int) -> list[str]:
    ids = conn.execute(sa.select(dataset_files.c.file_id).where(
        dataset_files.c.dataset_id == dataset_id)).scalars()
    return sorted(db.lfns_of(conn, ids).values())


def get_dataset_files(engine: Engine, req: Requester, names: Iterable[str]) -> BulkResult:
    """``{path: [lfn, ...]}``: the recorded files of a frozen dataset, else the query's."""
    result = BulkResult()
    wanted = normalise(names, result)
    with engine.connect() as conn:
        for path, row in _lookup(conn, req, wanted, result, READ).items():
            if row.status == FROZEN:
                result.ok(wanted[path], _frozen_lfns(conn, row.dataset_id))
            else:
                found = _matching(conn, req, json.loads(row.query))
                result.ok(wanted[path], sorted(lfn for _id, lfn in found))
    return result


def freeze_datasets(engine: Engine, req: Requester, names: Iterable[str]) -> BulkResult:
    """Record the current files of Dynamic datasets (``w`` on the dataset's directory)."""
    result = BulkResult()
    wanted = normalise(names, result)
    with write_transaction(engine) as conn:
        for path, row in _lookup(conn, req, wanted, result, WRITE).items():
            if row.status == FROZEN:
                result.ok(wanted[path])
                continue
            ids = sorted(i for i, _lfn in _matching(conn, req, json.loads(row.query)))
            for batch in db.chunks(ids):
                conn.execute(dataset_files.insert(),
                             [{"dataset_id": row.dataset_id, "file_id": i} for i in batch])
            total = 0
            for batch in db.chunks(ids):
                total += int(conn.execute(sa.select(sa.func.coalesce(sa.func.sum(
                    files.c.size), 0)).where(files.c.file_id.in_(batch))).scalar_one())
            digest = hashlib.md5(",".join(map(str, ids)).encode(),
                                 usedforsecurity=False).hexdigest()
            conn.execute(datasets.update().where(datasets.c.dataset_id == row.dataset_id)
                         .values(status=FROZEN, n_files=len(ids), total_size=total,
                                 dataset_hash=digest, modified=utcnow()))
            result.ok(wanted[path])
    return result


def release_datasets(engine: Engine, req: Requester, names: Iterable[str]) -> BulkResult:
    """Back to Dynamic: the recorded file list is dropped."""
    result = BulkResult()
    wanted = normalise(names, result)
    with write_transaction(engine) as conn:
        for path, row in _lookup(conn, req, wanted, result, WRITE).items():
            conn.execute(dataset_files.delete().where(
                dataset_files.c.dataset_id == row.dataset_id))
            conn.execute(datasets.update().where(datasets.c.dataset_id == row.dataset_id)
                         .values(status=DYNAMIC, n_files=0, total_size=0, dataset_hash="",
                                 modified=utcnow()))
            result.ok(wanted[path])
    return result
