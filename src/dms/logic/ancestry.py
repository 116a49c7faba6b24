"""File ancestry: which files a file was made from (its parents), walked to any depth.

Only direct links are stored; ``getFileAncestors(lfns, depths)`` walks up level by level
(one bulk query per level, at most :data:`MAX_DEPTH` levels) and reports ``{ancestor: depth}``
for the requested depths (all when ``depths`` is empty). Adding ancestors needs ``w`` on the
file; ancestors must exist and be readable.

Example::

    >>> from core.db import init_schema, make_engine
    >>> from dms.db.schema import DMS_SCHEMA
    >>> from dms.logic.namespace import add_files
    >>> from dms.logic.rights import CatalogSettings, Requester
    >>> engine = make_engine("sqlite://"); _ = init_schema(engine, DMS_SCHEMA)
    >>> alice = Requester("alice", "demo_user", "demo")
    >>> cfg = CatalogSettings(vo_groups={"demo": "demo_user"})
    >>> h = "/demo/user/a/alice/"
    >>> _ = add_files(engine, cfg, alice, {h + "raw": {"Size": 1}, h + "reco": {"Size": 1}})
    >>> add_ancestors(engine, alice, {h + "reco": {"Ancestors": [h + "raw"]}}).failed
    {}
    >>> get_ancestors(engine, alice, [h + "reco"]).successful
    {'/demo/user/a/alice/reco': {'/demo/user/a/alice/raw': 1}}
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from core.db import write_transaction
from dms.bulk import BulkResult
from dms.db import catalog as db
from dms.db.tables import ancestry
from dms.logic.namespace import _readable_files, normalise
from dms.logic.rights import WRITE, Requester
from dms.paths import normalise_lfn

MAX_DEPTH = 20


def add_ancestors(engine: Engine, req: Requester, entries: Mapping[str, Any]) -> BulkResult:
    """``{lfn: {"Ancestors": [lfn, ...]}}`` (or ``{lfn: [lfn, ...]}``)."""
    result = BulkResult()
    wanted = normalise(entries, result)
    parents: dict[str, list[str]] = {}
    for path, raw in wanted.items():
        info = entries[raw]
        names = info.get("Ancestors", []) if isinstance(info, Mapping) else info
        if isinstance(names, str):
            names = [names]
        try:
            parents[path] = [normalise_lfn(n) for n in names or []]
        except (TypeError, ValueError) as exc:
            result.fail(raw, f"bad ancestor: {exc}")
    with write_transaction(engine) as conn:
        _res, targets = _readable_files(conn, req, {p: wanted[p] for p in parents}, result,
                                        need=WRITE)
        all_parents = {a: a for p in targets for a in parents[p]}
        parent_check = BulkResult()
        _res2, found = _readable_files(conn, req, all_parents, parent_check)
        rows = []
        for path, row in targets.items():
            missing = [a for a in parents[path] if a not in found]
            if missing:
                result.fail(wanted[path], f"{missing[0]}: "
                            f"{parent_check.failed.get(missing[0], 'not found')}")
                continue
            if path in parents[path]:
                result.fail(wanted[path], "a file cannot be its own ancestor")
                continue
            for anc in parents[path]:
                rows.append({"file_id": row.file_id, "ancestor_id": found[anc].file_id})
            result.ok(wanted[path])
        existing = _links(conn, "file_id", [r["file_id"] for r in rows])
        new = [r for r in rows if r["ancestor_id"] not in existing.get(r["file_id"], set())]
        for batch in db.chunks(new):
            conn.execute(ancestry.insert(), batch)
    return result


def _links(conn: Connection, column: str, ids: Iterable[int]) -> dict[int, set[int]]:
    other = "ancestor_id" if column == "file_id" else "file_id"
    out: dict[int, set[int]] = defaultdict(set)
    for batch in db.chunks(set(ids)):
        for key, value in conn.execute(sa.select(ancestry.c[column], ancestry.c[other])
                                       .where(ancestry.c[column].in_(batch))):
            out[key].add(value)
    return out


def _walk(engine: Engine, req: Requester, lfns: Iterable[str], depths: Any,
          column: str) -> BulkResult:
    if isinstance(depths, int):
        depths = [depths]
    wanted_depths = {int(d) for d in depths or []}
    max_depth = min(max(wanted_depths), MAX_DEPTH) if wanted_depths else MAX_DEPTH
    result = BulkResult()
    wanted = normalise(lfns, result)
    with engine.connect() as conn:
        _res, ok = _readable_files(conn, req, wanted, result)
        found: dict[int, dict[int, int]] = {row.file_id: {} for row in ok.values()}
        frontier = {row.file_id: {row.file_id} for row in ok.values()}
        for depth in range(1, max_depth + 1):
            step = _links(conn, column, {i for ids in frontier.values() for i in ids})
            nxt: dict[int, set[int]] = {}
            for origin, ids in frontier.items():
                reached = {r for i in ids for r in step.get(i, ())} - set(found[origin])
                reached.discard(origin)
                for r in reached:
                    found[origin][r] = depth
                if reached:
                    nxt[origin] = reached
            if not nxt:
                break
            frontier = nxt
        names = db.lfns_of(conn, {i for d in found.values() for i in d})
    for path, row in ok.items():
        result.ok(wanted[path], {names[i]: d for i, d in sorted(found[row.file_id].items())
                                 if not wanted_depths or d in wanted_depths})
    return result


def get_ancestors(engine: Engine, req: Requester, lfns: Iterable[str],
                  depths: Any = None) -> BulkResult:
    return _walk(engine, req, lfns, depths, "file_id")


def get_descendants(engine: Engine, req: Requester, lfns: Iterable[str],
                    depths: Any = None) -> BulkResult:
    return _walk(engine, req, lfns, depths, "ancestor_id")
