"""The files of a transformation: attached by hand, listed with their LFNs (read from the
catalog by file ID), statuses set along DIRAC's file state machine, reset.

Example::

    >>> from core.config.transformations import TransformationsConfig
    >>> from core.db import init_schema, make_engine
    >>> from dms.db.schema import DMS_SCHEMA
    >>> from transformation.db.schema import TRANSFORMATION_SCHEMA
    >>> from transformation.logic.transformations import Actor, create
    >>> engine = make_engine("sqlite://")
    >>> _ = init_schema(engine, DMS_SCHEMA); _ = init_schema(engine, TRANSFORMATION_SCHEMA)
    >>> who = Actor("alice", "prod", "demo", frozenset({"ProductionManagement"}))
    >>> tid = create(engine, CatalogView(engine), TransformationsConfig(), who,
    ...              {"Name": "r", "Type": "Processing", "Body": '[Executable="x";]'})
    >>> add_files(engine, CatalogView(engine), who, tid, ["/demo/nope"])["Failed"]
    {'/demo/nope': 'File not in the catalog'}
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from core.db import utcnow, write_transaction
from core.exceptions import InvalidArgumentError
from core.in_values import in_values
from transformation.db import queries as db
from transformation.db.tables import files as files_t
from transformation.db.tables import task_files
from transformation.logic import states
from transformation.logic.catalog import CatalogView
from transformation.logic.selection import check_page, conditions, order_by, time_window
from transformation.logic.transformations import (
    Actor,
    _modifiable,
    _vo_scope,
)

# -- files --------------------------------------------------------------------------------------

def add_files(engine: Engine, catalog: CatalogView, actor: Actor, ident: int | str,
              lfns: Iterable[str]) -> dict[str, dict[str, str]]:
    """DIRAC's addFilesToTransformation: ``{"Successful": {lfn: "Added"|"Present"},
    "Failed": {lfn: reason}}``."""
    row = _modifiable(engine, actor, ident)
    lfns = list(dict.fromkeys(lfns))
    ids = catalog.file_ids(lfns)
    now = utcnow()
    ok: dict[str, str] = {}
    failed = {lfn: "File not in the catalog" for lfn in lfns if lfn not in ids}
    with write_transaction(engine) as conn:
        present = db.attached(conn, row.transformation_id, ids.values())
        added = [fid for fid in ids.values() if fid not in present]
        db.add_files(conn, row.transformation_id, added, now)
        if added:
            db.add_log(conn, row.transformation_id, [f"Added {len(added)} files"],
                       actor.user, now)
    for lfn, fid in ids.items():
        ok[lfn] = "Present" if fid in present else "Added"
    return {"Successful": ok, "Failed": failed}


FILE_COLUMNS = {"TransformationID": files_t.c.transformation_id, "FileID": files_t.c.file_id,
                "Status": files_t.c.status, "TaskID": files_t.c.task_id,
                "ErrorCount": files_t.c.error_count, "TargetSE": files_t.c.target_se,
                "UsedSE": files_t.c.used_se, "LastUpdate": files_t.c.last_update,
                "InsertedTime": files_t.c.inserted}


def _through_task_files(value: Any) -> list[Any]:
    """For a selection on TaskID: the same files found through ``ts_task_files`` (indexed by
    transformation and task; ``ts_files.task_id`` is not). A file's task always has its link
    there, so the condition only narrows the search; not used when NULL is asked for."""
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    if not values or None in values:
        return []
    return [files_t.c.file_id.in_(sa.select(task_files.c.file_id).where(
        task_files.c.transformation_id == files_t.c.transformation_id,
        *conditions({"TaskID": value}, {"TaskID": task_files.c.task_id})))]


def get_files(engine: Engine, catalog: CatalogView | None, vo: str | None,
              cond: Mapping[str, Any] | None = None, *, older: Any = None, newer: Any = None,
              time_stamp: str = "LastUpdate", order: Any = None,
              limit: int | None = None, offset: int | None = None,
              columns: Sequence[str] | None = None) -> list[dict[str, Any]]:
    cond = dict(cond or {})
    lfns = cond.pop("LFN", None)
    where = conditions(cond, FILE_COLUMNS) + _vo_scope(files_t.c.transformation_id, vo)
    where += _through_task_files(cond.get("TaskID"))
    if lfns is not None:
        if catalog is None:
            return []
        ids = catalog.file_ids([lfns] if isinstance(lfns, str) else lfns)
        where.append(in_values(files_t.c.file_id, ids.values()))
    where += time_window(FILE_COLUMNS, time_stamp, older, newer)
    ordered = order_by(order, FILE_COLUMNS, (files_t.c.transformation_id, files_t.c.file_id))
    check_page(limit, offset)
    with engine.connect() as conn:
        rows = db.file_rows(conn, where, limit=limit, offset=offset,
                            order=ordered)
    names = catalog.lfns(r.file_id for r in rows) if catalog is not None else {}
    out = []
    for r in rows:
        item = {"TransformationID": r.transformation_id, "FileID": r.file_id,
                "Status": r.status, "TaskID": r.task_id, "ErrorCount": r.error_count,
                "TargetSE": r.target_se or "Unknown", "UsedSE": r.used_se or "Unknown",
                "LastUpdate": r.last_update, "InsertedTime": r.inserted,
                "LFN": names.get(r.file_id, "")}
        if columns:
            item = {k: v for k, v in item.items() if k in columns}
        out.append(item)
    return out


def set_file_status(engine: Engine, actor: Actor, ident: int | str,
                    new: Mapping[int, tuple[str, bool]], *, force: bool = False,
                    max_reset: int | None = None) -> dict[int, str]:
    """``{file_id: (status, failed)}`` (DIRAC's wire form: ``failed`` adds one to the error
    count); returns the statuses really set. ``Unused`` past ``max_reset`` errors becomes
    ``MaxReset``; resetting to Unused clears the task."""
    row = _modifiable(engine, actor, ident)
    tid = row.transformation_id
    now = utcnow()
    done: dict[int, str] = {}
    with write_transaction(engine) as conn:
        current = db.attached(conn, tid, new)
        by_target: dict[tuple[str, bool], list[int]] = {}
        for fid, (status, failed) in new.items():
            if fid not in current:
                continue
            try:
                target = states.file_transition(current[fid].status, status, force=force)
            except ValueError as exc:
                raise InvalidArgumentError(str(exc)) from None
            errors = current[fid].error_count + (1 if failed else 0)
            if target == states.UNUSED and max_reset and errors >= max_reset and not force:
                target = states.MAX_RESET
            if target != current[fid].status or failed:
                by_target.setdefault((target, bool(failed)), []).append(fid)
                done[fid] = target
        for (target, failed), fids in by_target.items():
            values: dict[str, Any] = {"status": target, "last_update": now}
            if failed:
                values["error_count"] = files_t.c.error_count + 1
            if target == states.UNUSED:
                values["task_id"] = None
                if force:
                    values["error_count"] = 0
            db.set_files(conn, tid, fids, values)
        if done:
            db.add_log(conn, tid, [f"{len(fids)} files set {target}"
                                   for (target, _f), fids in by_target.items()],
                       actor.user, now)
    return done


def reset_files(engine: Engine, actor: Actor, ident: int | str, status: str) -> int:
    """``dtrans reset-files``: every file in ``status`` back to Unused (error count 0)."""
    if status not in states.FILE_STATUSES:
        raise InvalidArgumentError(f"unknown file status {status!r} "
                                   f"(one of {', '.join(states.FILE_STATUSES)})")
    row = _modifiable(engine, actor, ident)
    now = utcnow()
    with write_transaction(engine) as conn:
        count = conn.execute(files_t.update().where(
            files_t.c.transformation_id == row.transformation_id,
            files_t.c.status == status).values(status=states.UNUSED, task_id=None,
                                                error_count=0, last_update=now)).rowcount
        if count:
            db.add_log(conn, row.transformation_id,
                       [f"{count} {status} files reset to Unused"], actor.user, now)
    return int(count or 0)


