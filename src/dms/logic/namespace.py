"""The catalog namespace: files, replicas and directories, in bulk, with rights checked.

Every function takes the engine, the :class:`~dms.logic.rights.Requester` and many paths, runs
one transaction with a bounded number of statements, and returns a
:class:`~dms.bulk.BulkResult` (per-path value or failure reason). Paths that are not valid LFNs
fail with the reason; nothing else in the batch is affected.

Example::

    >>> from core.db import init_schema, make_engine
    >>> from dms.db.schema import DMS_SCHEMA
    >>> from dms.logic.rights import CatalogSettings, Requester
    >>> engine = make_engine("sqlite://"); _ = init_schema(engine, DMS_SCHEMA)
    >>> cfg = CatalogSettings(vo_groups={"demo": "demo_user"})
    >>> alice = Requester("alice", "demo_user", "demo")
    >>> add_files(engine, cfg, alice, {"/demo/user/a/alice/f1": {
    ...     "PFN": "", "Size": 3, "SE": "DISK-SE", "GUID": "g1", "Checksum": "0a1b2c3d"}}).failed
    {}
    >>> is_file(engine, alice, ["/demo/user/a/alice/f1", "/demo/user/a/alice"]).successful
    {'/demo/user/a/alice/f1': True, '/demo/user/a/alice': False}

Replicas (add, remove, mark, list) are :mod:`dms.logic.replicas`.
"""

from __future__ import annotations

import functools
import random
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, Row

from core.db import utcnow, write_transaction
from core.exceptions import InvalidArgumentError
from dms.bulk import DENIED, EXISTS, IS_DIR, NO_SUCH, NOT_DIR, NOT_EMPTY, BulkResult
from dms.db import catalog as db
from dms.db import changes as journal
from dms.logic.rights import (
    EXECUTE,
    READ,
    WRITE,
    CatalogSettings,
    Requester,
    may,
    on_own_home_chain,
    system_owner,
)
from dms.paths import ancestors, join, name_of, normalise_lfn, parent_of

CHECKSUM_TYPES = ("ADLER32", "AD", "MD5", "SHA256")
CONFLICT_RETRIES = 6
#: first back-off after a conflict, seconds (doubled at each attempt, with jitter): the writer
#: that won may still be committing its other rows
CONFLICT_BACKOFF = 0.01
F = TypeVar("F", bound=Callable[..., Any])


def retry_conflicts(func: F) -> F:
    """Run a writing bulk call again when a concurrent writer made the same directory, file or
    SE first (a unique key conflict): the next attempt, after a short jittered back-off, sees
    the other's committed rows."""
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        for attempt in range(CONFLICT_RETRIES):
            try:
                return func(*args, **kwargs)
            except (sa.exc.IntegrityError, sa.exc.OperationalError) as exc:
                text = str(exc.orig).lower()
                retryable = isinstance(exc, sa.exc.IntegrityError) or "deadlock" in text
                if not retryable or attempt == CONFLICT_RETRIES - 1:
                    raise
                time.sleep(CONFLICT_BACKOFF * 2**attempt * (0.5 + random.random()))  # noqa: S311
        raise AssertionError("unreachable")  # pragma: no cover
    return wrapper  # type: ignore[return-value]


# -- resolving paths --------------------------------------------------------------------------

@dataclass
class Resolved:
    """Directories (by path) and files (by LFN) found for a set of paths and their ancestors."""

    dirs: dict[str, Row[Any]]
    files: dict[str, Row[Any]]
    _through: dict[tuple[str, str], bool] = field(default_factory=dict)

    def reachable(self, req: Requester, path: str) -> bool:
        """Every directory above ``path`` exists and lets ``req`` through (x)."""
        if path == "/":
            return True
        parent = parent_of(path)
        key = (req.user, parent)
        known = self._through.get(key)
        if known is None:
            row = self.dirs.get(parent)
            known = row is not None and may(req, row, EXECUTE) and self.reachable(req, parent)
            self._through[key] = known
        return known

    def entry(self, path: str) -> Row[Any] | None:
        return self.dirs.get(path) or self.files.get(path)


def resolve(conn: Connection, paths: Iterable[str], full: bool | Sequence[str] = True
            ) -> Resolved:
    """Look up paths (as directories, else as files) and every ancestor directory
    (``full=False``: file rows without dates; or the file columns to read)."""
    paths = set(paths)
    wanted = set(paths)
    for parent in {parent_of(p) for p in paths}:
        wanted.add(parent)
        wanted.update(ancestors(parent))
    dirs = db.get_dirs(conn, wanted)
    by_dir: dict[int, list[str]] = defaultdict(list)
    for path in paths:
        if path in dirs or path == "/":
            continue
        parent_row = dirs.get(parent_of(path))
        if parent_row is not None:
            by_dir[parent_row.dir_id].append(name_of(path))
    found = db.get_files(conn, by_dir, full) if by_dir else {}
    by_id = {row.dir_id: path for path, row in dirs.items()}
    file_rows = {join(by_id[d], n): row for (d, n), row in found.items()}
    return Resolved(dirs, file_rows)


def normalise(paths: Iterable[str], result: BulkResult) -> dict[str, str]:
    """Canonical path -> the caller's spelling; invalid paths go to ``result.failed``."""
    out: dict[str, str] = {}
    for raw in paths:
        try:
            out[normalise_lfn(raw)] = raw
        except (TypeError, ValueError) as exc:
            result.fail(str(raw), str(exc))
    return out


def as_list(lfns: str | Iterable[str] | Mapping[str, Any]) -> list[str]:
    """DIRAC's bulk argument: one LFN, a list, or a dict keyed by LFN."""
    if isinstance(lfns, str):
        return [lfns]
    out = list(lfns)
    for lfn in out:
        if not isinstance(lfn, str):
            raise InvalidArgumentError(f"an LFN must be a string, not {type(lfn).__name__}")
    return out


# -- making directories -----------------------------------------------------------------------

def _plan_dirs(req: Requester, settings: CatalogSettings, missing: set[str],
               known: Mapping[str, Row[Any]]) -> tuple[list[db.NewDir], dict[str, str]]:
    """The directories to create for ``missing`` (+ their missing ancestors), and the paths
    that may not be created (path -> reason)."""
    todo = set(missing)
    for path in missing:
        todo.update(a for a in ancestors(path) if a not in known)
    plan: list[db.NewDir] = []
    refused: dict[str, str] = {}
    planned: set[str] = set()
    for path in sorted(todo, key=lambda p: (p.count("/"), p)):
        parent = parent_of(path) if path != "/" else None
        if parent is not None and parent not in known and parent not in planned:
            refused[path] = refused.get(parent, NO_SUCH)
            continue
        owner = system_owner(path, settings)
        if path == "/":  # the root exists for everybody: made on first use
            plan.append(db.NewDir(path, "root", "root", 0o755))
        elif owner is not None:
            if not (req.admin or on_own_home_chain(req, path)):
                parent_row = known.get(parent or "")
                if parent_row is None or not _wx(req, parent_row):
                    refused[path] = DENIED
                    continue
            plan.append(db.NewDir(path, owner[0], owner[1], 0o755))
        else:
            parent_row = known.get(parent or "")
            if parent_row is not None and not _wx(req, parent_row):
                refused[path] = DENIED
                continue
            plan.append(db.NewDir(path, req.user, req.group, settings.dir_mode))
        planned.add(path)
    return plan, refused


def _wx(req: Requester, row: Any) -> bool:
    return may(req, row, WRITE) and may(req, row, EXECUTE)


def _ensure_dirs(conn: Connection, req: Requester, settings: CatalogSettings,
                 wanted: set[str], res: Resolved) -> dict[str, str]:
    """Create the directories in ``wanted`` that do not exist; returns refused path -> reason
    (``res.dirs`` gains the new rows). Every existing ancestor must be reachable."""
    missing = {p for p in wanted if p not in res.dirs}
    if not missing:
        return {}
    plan, refused = _plan_dirs(req, settings, missing, res.dirs)
    # a planned directory whose parent exists may clash with a file of that name
    by_parent: dict[int, list[str]] = defaultdict(list)
    for item in plan:
        parent_row = res.dirs.get(parent_of(item.path))
        if item.path != "/" and parent_row is not None:
            by_parent[parent_row.dir_id].append(name_of(item.path))
    clashes = {(d, n) for (d, n) in db.get_files(conn, by_parent, False)} if by_parent else set()
    reachable = []
    for item in plan:
        top = [a for a in ancestors(item.path) if a in res.dirs]
        parent_row = res.dirs.get(parent_of(item.path))
        if parent_row is not None and (parent_row.dir_id, name_of(item.path)) in clashes:
            refused[item.path] = NOT_DIR
        elif all(may(req, res.dirs[a], EXECUTE) for a in top):
            reachable.append(item)
        else:
            refused[item.path] = DENIED
    planned = {item.path for item in reachable}
    ok = [item for item in reachable
          if all(a in res.dirs or a in planned for a in ancestors(item.path))
          and not any(a in refused for a in ancestors(item.path))]
    res.dirs.update(db.create_dirs(conn, ok, utcnow()))
    for path in missing - set(res.dirs):
        chain = [a for a in ancestors(path) if a in refused]
        refused.setdefault(path, refused[chain[-1]] if chain else DENIED)
    return {p: r for p, r in refused.items() if p in missing}


@retry_conflicts
def create_directories(engine: Engine, settings: CatalogSettings, req: Requester,
                       paths: Iterable[str]) -> BulkResult:
    """Make directories and their missing parents (``mkdir -p``); existing ones succeed."""
    result = BulkResult()
    wanted = normalise(paths, result)
    with write_transaction(engine) as conn:
        res = resolve(conn, wanted)
        for path in list(wanted):
            if path in res.dirs and not res.reachable(req, path):
                result.fail(wanted.pop(path), DENIED)  # do not reveal what is hidden
            elif path in res.files:
                result.fail(wanted.pop(path), EXISTS if res.reachable(req, path) else DENIED)
        refused = _ensure_dirs(conn, req, settings, set(wanted), res)
    for path, raw in wanted.items():
        if path in refused:
            result.fail(raw, refused[path])
        else:
            result.ok(raw)
    return result


def remove_directories(engine: Engine, req: Requester, paths: Iterable[str]) -> BulkResult:
    """Remove empty directories (``rmdir``); removing a missing one succeeds (DIRAC)."""
    result = BulkResult()
    wanted = normalise(paths, result)
    with write_transaction(engine) as conn:
        res = resolve(conn, set(wanted) | {parent_of(p) for p in wanted})
        rows = {p: res.dirs[p] for p in wanted if p in res.dirs}
        counts = db.children_count(conn, [row.dir_id for row in rows.values()])
        from dms.logic.datasets import datasets_in

        with_datasets = datasets_in(conn, [row.dir_id for row in rows.values()])
        doomed = []
        for path, raw in wanted.items():
            if path in res.files:
                result.fail(raw, NOT_DIR)
            elif path not in rows:
                if res.reachable(req, path):
                    result.ok(raw)
                else:
                    result.fail(raw, DENIED)
            elif path == "/" or not res.reachable(req, path) or not _wx(
                    req, res.dirs[parent_of(path)]):
                result.fail(raw, DENIED)
            elif counts.get(rows[path].dir_id) or rows[path].dir_id in with_datasets:
                result.fail(raw, NOT_EMPTY)
            else:
                doomed.append(rows[path].dir_id)
                result.ok(raw)
        db.delete_dirs(conn, doomed)
    return result


# -- files ------------------------------------------------------------------------------------

def _file_entry(lfn: str, info: Any) -> dict[str, Any]:
    if not isinstance(info, Mapping):
        raise ValueError("the file description must be a dict")
    size = info.get("Size", 0)
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        try:
            size = int(size)
        except (TypeError, ValueError):
            raise ValueError(f"bad Size {size!r}") from None
        if size < 0:
            raise ValueError("Size must not be negative")
    checksum = info.get("Checksum") or info.get("CheckSumValue") or None
    ctype = (info.get("ChecksumType") or info.get("CheckSumType")
             or ("ADLER32" if checksum else None))
    if ctype is not None:
        ctype = str(ctype).upper()
        if ctype == "AD":
            ctype = "ADLER32"
        if ctype not in CHECKSUM_TYPES:
            raise ValueError(f"unknown ChecksumType {ctype!r}")
    guid = str(info.get("GUID") or uuid.uuid4()).upper()
    se = info.get("SE")
    if se is not None and (not isinstance(se, str) or not se):
        raise ValueError("SE must be a storage element name")
    pfn = info.get("PFN") or ""
    return {"size": size, "checksum": str(checksum).lower() if checksum else None,
            "checksum_type": ctype, "guid": guid, "se": se, "pfn": str(pfn)}


def _same(row: Row[Any], entry: Mapping[str, Any]) -> bool:
    return (row.size == entry["size"] and row.guid == entry["guid"]
            and (row.checksum or None) == entry["checksum"])


@retry_conflicts
def add_files(engine: Engine, settings: CatalogSettings, req: Requester,
              entries: Mapping[str, Any]) -> BulkResult:
    """Register files (``{lfn: {PFN, Size, SE, GUID, Checksum, ChecksumType}}``) and their
    first replica; missing directories are made. Re-adding the same file (same size, GUID and
    checksum) succeeds and adds the replica; anything else registered there fails."""
    result = BulkResult()
    wanted = normalise(entries, result)
    parsed: dict[str, dict[str, Any]] = {}
    for path, raw in wanted.items():
        try:
            parsed[path] = _file_entry(path, entries[raw])
        except ValueError as exc:
            result.fail(raw, str(exc))
    now = utcnow()
    with write_transaction(engine) as conn:
        res = resolve(conn, parsed)
        refused = _ensure_dirs(conn, req, settings, {parent_of(p) for p in parsed}, res)
        new_rows: list[dict[str, Any]] = []
        existing_replicas: list[str] = []
        guids = db.existing_guids(conn, [e["guid"] for e in parsed.values()])
        seen_guids: set[str] = set()
        for path, entry in parsed.items():
            raw = wanted[path]
            parent = parent_of(path)
            if path in res.dirs:
                result.fail(raw, IS_DIR)
            elif parent in refused:
                result.fail(raw, refused[parent])
            elif not res.reachable(req, path) or not _wx(req, res.dirs[parent]):
                result.fail(raw, DENIED)
            elif path in res.files:
                if _same(res.files[path], entry):
                    existing_replicas.append(path)
                else:
                    result.fail(raw, "File already registered with alternative metadata")
            elif entry["guid"] in guids or entry["guid"] in seen_guids:
                result.fail(raw, "GUID already registered for another file")
            else:
                seen_guids.add(entry["guid"])
                new_rows.append({
                    "dir_id": res.dirs[parent].dir_id, "name": name_of(path),
                    "size": entry["size"], "checksum": entry["checksum"],
                    "checksum_type": entry["checksum_type"], "guid": entry["guid"],
                    "owner": req.user, "owner_group": req.group, "mode": settings.file_mode,
                    "created": now, "modified": now, "status": "AprioriGood"})
        db.insert_files(conn, new_rows)
        deltas: dict[tuple[int, int], tuple[int, int]] = defaultdict(lambda: (0, 0))
        for row in new_rows:
            size, count = deltas[(row["dir_id"], db.LOGICAL)]
            deltas[(row["dir_id"], db.LOGICAL)] = (size + row["size"], count + 1)
        made = {p for p in parsed if wanted[p] not in result.failed}
        fresh = resolve(conn, made).files
        replica_map = {p: {"SE": parsed[p]["se"], "PFN": parsed[p]["pfn"]}
                       for p in made if parsed[p]["se"]}
        rep = _insert_replicas(conn, fresh, replica_map, deltas, now)
        db.bump_usage(conn, deltas)
        created = {(row["dir_id"], row["name"]) for row in new_rows}
        journal.record(conn, journal.FILE_ADDED, file_ids=[
            row.file_id for row in fresh.values() if (row.dir_id, row.name) in created])
        journal.record(conn, journal.REPLICA_ADDED, file_ids=[
            fresh[p].file_id for p in existing_replicas if p in fresh and p in replica_map])
    for path in made:
        if path in rep.failed:
            result.fail(wanted[path], rep.failed[path])
        else:
            result.ok(wanted[path])
    return result


def _insert_replicas(conn: Connection, rows: Mapping[str, Row[Any]],
                     wanted: Mapping[str, Mapping[str, Any]],
                     deltas: dict[tuple[int, int], tuple[int, int]], now: Any) -> BulkResult:
    """Add replicas ``{lfn: {"SE", "PFN"}}`` of known files; an existing replica on the same SE
    succeeds (its PFN is kept)."""
    result = BulkResult()
    ses = db.se_ids(conn, {str(w["SE"]) for w in wanted.values()}, create=True)
    have = db.get_replicas(conn, [rows[p].file_id for p in wanted])
    new = []
    for path, info in wanted.items():
        row = rows[path]
        se = str(info["SE"])
        if se not in have.get(row.file_id, {}):
            new.append({"file_id": row.file_id, "se_id": ses[se], "pfn": info.get("PFN") or "",
                        "status": "AprioriGood", "created": now})
            size, count = deltas[(row.dir_id, ses[se])]
            deltas[(row.dir_id, ses[se])] = (size + row.size, count + 1)
        result.ok(path)
    db.insert_replicas(conn, new)
    return result


def _exists_hidden(res: Resolved, path: str) -> bool:
    """Some ancestor blocks the way (so say 'Permission denied', not 'No such file')."""
    return all(a in res.dirs for a in ancestors(path))


def _readable_files(conn: Connection, req: Requester, paths: Mapping[str, str],
                    result: BulkResult, *, need: int = READ, full: bool = True
                    ) -> tuple[Resolved, dict[str, Row]]:
    """The files among ``paths`` that ``req`` may read (others failed with the reason)."""
    res = resolve(conn, paths, full if full or not req.admin else db.IDS)
    ok: dict[str, Row[Any]] = {}
    allowed: dict[tuple[str, str, int], bool] = {}
    for path, raw in paths.items():
        row = res.files.get(path)
        if not res.reachable(req, path):
            result.fail(raw, DENIED if _exists_hidden(res, path) else NO_SUCH)
        elif path in res.dirs:
            result.fail(raw, IS_DIR)
        elif row is None:
            result.fail(raw, NO_SUCH)
        elif not _cached_may(allowed, req, row, need):
            result.fail(raw, DENIED)
        else:
            ok[path] = res.files[path]
    return res, ok


def _cached_may(cache: dict[tuple[str, str, int], bool], req: Requester, row: Any,
                need: int) -> bool:
    if req.admin:
        return True
    key = (row.owner, row.owner_group, row.mode)
    known = cache.get(key)
    if known is None:
        known = cache[key] = may(req, row, need)
    return known


def remove_files(engine: Engine, req: Requester, lfns: Iterable[str]) -> BulkResult:
    """Unregister files and all their replicas (``w`` on the directory, POSIX ``unlink``).
    Removing a file that is not there succeeds, as in DIRAC."""
    result = BulkResult()
    wanted = normalise(lfns, result)
    with write_transaction(engine) as conn:
        res = resolve(conn, wanted)
        doomed: dict[str, Row[Any]] = {}
        for path, raw in wanted.items():
            if not res.reachable(req, path):
                if _exists_hidden(res, path):
                    result.fail(raw, DENIED)
                else:
                    result.ok(raw)
            elif path in res.dirs:
                result.fail(raw, IS_DIR)
            elif path not in res.files:
                result.ok(raw)
            elif not _wx(req, res.dirs[parent_of(path)]):
                result.fail(raw, DENIED)
            else:
                doomed[path] = res.files[path]
                result.ok(raw)
        reps = db.get_replicas(conn, [row.file_id for row in doomed.values()])
        ses = db.se_ids(conn, {se for r in reps.values() for se in r})
        deltas: dict[tuple[int, int], tuple[int, int]] = defaultdict(lambda: (0, 0))
        for row in doomed.values():
            keys = [db.LOGICAL] + [ses[se] for se in reps.get(row.file_id, {})]
            for key in keys:
                size, count = deltas[(row.dir_id, key)]
                deltas[(row.dir_id, key)] = (size - row.size, count - 1)
        db.delete_files(conn, [row.file_id for row in doomed.values()])
        db.bump_usage(conn, deltas)
        journal.record(conn, journal.FILE_REMOVED,
                       file_ids=[row.file_id for row in doomed.values()])
    return result


def file_metadata(row: Row[Any]) -> dict[str, Any]:
    """A file's catalog entry with DIRAC's keys."""
    return {"Size": row.size, "Checksum": row.checksum or "",
            "ChecksumType": row.checksum_type or "", "GUID": row.guid, "Owner": row.owner,
            "OwnerGroup": row.owner_group, "Mode": row.mode, "CreationDate": row.created,
            "ModificationDate": row.modified, "Status": row.status, "FileID": row.file_id,
            "UID": 0, "GID": 0}


def get_file_metadata(engine: Engine, req: Requester, lfns: Iterable[str]) -> BulkResult:
    result = BulkResult()
    wanted = normalise(lfns, result)
    with engine.connect() as conn:
        _res, ok = _readable_files(conn, req, wanted, result)
    for path, row in ok.items():
        result.ok(wanted[path], file_metadata(row))
    return result


def _probe(engine: Engine, req: Requester, lfns: Iterable[str], kind: str) -> BulkResult:
    result = BulkResult()
    wanted = normalise(lfns, result)
    with engine.connect() as conn:
        res = resolve(conn, wanted)
    for path, raw in wanted.items():
        if not res.reachable(req, path):
            if _exists_hidden(res, path):
                result.fail(raw, DENIED)
            else:
                result.ok(raw, False)
        elif kind == "exists":
            result.ok(raw, path in res.dirs or path in res.files)
        elif kind == "file":
            if path in res.dirs or path in res.files:
                result.ok(raw, path in res.files)
            else:
                result.fail(raw, NO_SUCH)
        elif path in res.dirs or path in res.files:
            result.ok(raw, path in res.dirs)
        else:
            result.fail(raw, NO_SUCH)
    return result


def exists(engine: Engine, req: Requester, lfns: Iterable[str]) -> BulkResult:
    """``{path: bool}``: an entry (file or directory) exists there."""
    return _probe(engine, req, lfns, "exists")


def is_file(engine: Engine, req: Requester, lfns: Iterable[str]) -> BulkResult:
    return _probe(engine, req, lfns, "file")


def is_directory(engine: Engine, req: Requester, lfns: Iterable[str]) -> BulkResult:
    return _probe(engine, req, lfns, "dir")
