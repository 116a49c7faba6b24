"""Replicas in the catalog: register, unregister, mark and list them, in bulk, rights checked.

The file side (files, directories, existence and metadata) is :mod:`dms.logic.namespace`;
this module keeps the replica verbs apart. Each function runs one transaction with a bounded
number of statements and returns a :class:`~dms.bulk.BulkResult`: a path that is not a valid
LFN, not visible, or not writable fails with its reason and the rest of the batch goes on.
Replica changes are written to the catalog's change journal (``R+``/``R-``), which the
transformation system reads.

Example::

    >>> from core.db import init_schema, make_engine
    >>> from dms.db.schema import DMS_SCHEMA
    >>> from dms.logic.namespace import add_files
    >>> from dms.logic.rights import CatalogSettings, Requester
    >>> engine = make_engine("sqlite://"); _ = init_schema(engine, DMS_SCHEMA)
    >>> cfg = CatalogSettings(vo_groups={"demo": "demo_user"})
    >>> alice = Requester("alice", "demo_user", "demo")
    >>> lfn = "/demo/user/a/alice/f1"
    >>> _ = add_files(engine, cfg, alice, {lfn: {"PFN": "", "Size": 3, "SE": "DISK-SE",
    ...                                           "GUID": "g1", "Checksum": "0a1b2c3d"}})
    >>> add_replicas(engine, alice, {lfn: {"SE": "TAPE-SE"}}).failed
    {}
    >>> sorted(get_replicas(engine, alice, [lfn]).successful[lfn])
    ['DISK-SE', 'TAPE-SE']
    >>> set_replica_status(engine, alice, {lfn: {"SE": "TAPE-SE", "Status": "Lost"}}).failed
    {'/demo/user/a/alice/f1': 'Status must be one of AprioriGood, Trash, Removing, \
Problematic, Bad'}
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy.engine import Engine

from core.db import utcnow, write_transaction
from dms.bulk import DENIED, IS_DIR, NO_SUCH, BulkResult
from dms.db import catalog as db
from dms.db import changes as journal
from dms.logic.namespace import (
    _exists_hidden,
    _insert_replicas,
    _readable_files,
    normalise,
    resolve,
    retry_conflicts,
)
from dms.logic.rights import WRITE, Requester, may

__all__ = ["REPLICA_STATUSES", "add_replicas", "get_replicas", "remove_replicas",
           "set_replica_status"]


@retry_conflicts
def add_replicas(engine: Engine, req: Requester, entries: Mapping[str, Any]) -> BulkResult:
    """Register replicas ``{lfn: {"SE": name, "PFN": url}}`` (write permission on the file)."""
    result = BulkResult()
    wanted = normalise(entries, result)
    parsed: dict[str, dict[str, Any]] = {}
    for path, raw in wanted.items():
        info = entries[raw]
        if not isinstance(info, Mapping) or not isinstance(info.get("SE"), str) or not info["SE"]:
            result.fail(raw, "SE missing")
        else:
            parsed[path] = {"SE": info["SE"], "PFN": str(info.get("PFN") or "")}
    with write_transaction(engine) as conn:
        res = resolve(conn, parsed)
        ok = {}
        for path, info in parsed.items():
            raw = wanted[path]
            if not res.reachable(req, path):
                result.fail(raw, DENIED if _exists_hidden(res, path) else NO_SUCH)
            elif path not in res.files:
                result.fail(raw, IS_DIR if path in res.dirs else NO_SUCH)
            elif not may(req, res.files[path], WRITE):
                result.fail(raw, DENIED)
            else:
                ok[path] = info
        deltas: dict[tuple[int, int], tuple[int, int]] = defaultdict(lambda: (0, 0))
        _insert_replicas(conn, res.files, ok, deltas, utcnow())
        db.bump_usage(conn, deltas)
        journal.record(conn, journal.REPLICA_ADDED,
                       file_ids=[res.files[p].file_id for p in ok])
    for path in ok:
        result.ok(wanted[path])
    return result




def remove_replicas(engine: Engine, req: Requester, entries: Mapping[str, Any]) -> BulkResult:
    """Unregister replicas ``{lfn: {"SE": name}}`` (or ``{lfn: name}``); a missing replica
    succeeds. The file itself stays, even without replicas."""
    result = BulkResult()
    wanted = normalise(entries, result)
    targets: dict[str, str] = {}
    for path, raw in wanted.items():
        info = entries[raw]
        se = info.get("SE") if isinstance(info, Mapping) else info
        if not isinstance(se, str) or not se:
            result.fail(raw, "SE missing")
        else:
            targets[path] = se
    with write_transaction(engine) as conn:
        _res, ok = _readable_files(conn, req, {p: wanted[p] for p in targets}, result,
                                   need=WRITE)
        reps = db.get_replicas(conn, [row.file_id for row in ok.values()])
        ses = db.se_ids(conn, set(targets.values()))
        pairs = []
        deltas: dict[tuple[int, int], tuple[int, int]] = defaultdict(lambda: (0, 0))
        for path, row in ok.items():
            se = targets[path]
            if se in reps.get(row.file_id, {}):
                pairs.append((row.file_id, ses[se]))
                size, count = deltas[(row.dir_id, ses[se])]
                deltas[(row.dir_id, ses[se])] = (size - row.size, count - 1)
            result.ok(wanted[path])
        db.delete_replicas(conn, pairs)
        db.bump_usage(conn, deltas)
        journal.record(conn, journal.REPLICA_REMOVED, file_ids=[f for f, _se in pairs])
    return result


REPLICA_STATUSES = ("AprioriGood", "Trash", "Removing", "Problematic", "Bad")


def set_replica_status(engine: Engine, req: Requester, entries: Mapping[str, Any]
                       ) -> BulkResult:
    """``{lfn: {"SE": name, "Status": status}}`` (``w`` on the file). Replicas not
    ``AprioriGood`` are hidden from ``getReplicas`` unless ``allStatus``."""
    from dms.db.tables import replicas

    result = BulkResult()
    wanted = normalise(entries, result)
    targets: dict[str, tuple[str, str]] = {}
    for path, raw in wanted.items():
        info = entries[raw]
        if not isinstance(info, Mapping) or not isinstance(info.get("SE"), str):
            result.fail(raw, "SE missing")
        elif info.get("Status") not in REPLICA_STATUSES:
            result.fail(raw, f"Status must be one of {', '.join(REPLICA_STATUSES)}")
        else:
            targets[path] = (info["SE"], info["Status"])
    with write_transaction(engine) as conn:
        _res, ok = _readable_files(conn, req, {p: wanted[p] for p in targets}, result,
                                   need=WRITE, full=False)
        reps = db.get_replicas(conn, [row.file_id for row in ok.values()])
        ses = db.se_ids(conn, {se for se, _status in targets.values()})
        for path, row in ok.items():
            se, status = targets[path]
            if se not in reps.get(row.file_id, {}):
                result.fail(wanted[path], f"No replica at {se}")
                continue
            conn.execute(replicas.update().where(replicas.c.file_id == row.file_id,
                                                 replicas.c.se_id == ses[se])
                         .values(status=status))
            result.ok(wanted[path])
    return result


def get_replicas(engine: Engine, req: Requester, lfns: Iterable[str],
                 all_status: bool = True) -> BulkResult:
    """``{lfn: {SE: PFN}}`` for readable files."""
    result = BulkResult()
    wanted = normalise(lfns, result)
    with engine.connect() as conn:
        _res, ok = _readable_files(conn, req, wanted, result, full=False)
        reps = db.get_replicas(conn, [row.file_id for row in ok.values()], all_status)
    for path, row in ok.items():
        result.ok(wanted[path], dict(reps.get(row.file_id, {})))
    return result


