"""Transformations: create, read, change (status machine, parameters), files and tasks.

Functions take the transformation engine, the :class:`CatalogView` where the catalog is
needed, and an :class:`Actor` (who acts: for the change log and the rights). Rights are
decided here by :func:`may_modify` and checked by the service: ``ProductionManagement``
creates and modifies anything of its VO, ``ProductionSharing`` / ``ProductionUser`` create
and modify what their group / they authored (DIRAC's rules); an owner may stop (and flush)
their own; every member of the VO reads.

Example::

    >>> from core.config.transformations import TransformationsConfig
    >>> from core.db import init_schema, make_engine
    >>> from dms.db.schema import DMS_SCHEMA
    >>> from transformation.db.schema import TRANSFORMATION_SCHEMA
    >>> engine = make_engine("sqlite://")
    >>> _ = init_schema(engine, DMS_SCHEMA); _ = init_schema(engine, TRANSFORMATION_SCHEMA)
    >>> who = Actor("alice", "prod", "demo", frozenset({"ProductionManagement"}))
    >>> tid = create(engine, CatalogView(engine), TransformationsConfig(), who,
    ...              {"Name": "sim", "Type": "MCSimulation", "Body": '[Executable="sim";]'})
    >>> set_status(engine, who, tid, "Active"); get(engine, tid, "demo")["Status"]
    'Active'
    >>> extend(engine, who, tid, 2)
    [1, 2]
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine, Row

from core.config.transformations import TransformationsConfig
from core.db import utcnow, write_transaction
from core.exceptions import (
    AlreadyExistsError,
    InvalidArgumentError,
    NotAuthorizedError,
    NotFoundError,
)
from transformation.db import queries as db
from transformation.db.tables import tasks as tasks_t
from transformation.db.tables import transformations as trans_t
from transformation.logic import definition, states
from transformation.logic.catalog import CatalogView
from transformation.logic.selection import check_page, conditions, order_by, time_window

MANAGER = "ProductionManagement"
#: DIRAC's finer production rights: the author group's members / the author change their own
SHARING = "ProductionSharing"
USER = "ProductionUser"
#: properties that may create transformations and productions (as DIRAC's handler)
CREATORS = (MANAGER, SHARING, USER)


@dataclass(frozen=True)
class Actor:
    user: str
    group: str
    vo: str
    properties: frozenset[str] = field(default_factory=frozenset)

    @property
    def manager(self) -> bool:
        return MANAGER in self.properties


def may_modify(actor: Actor, row: Row[Any], *, stopping: bool = False) -> bool:
    """DIRAC's checkPermissions within the VO: ``ProductionManagement`` changes anything,
    ``ProductionSharing`` what its group authored, ``ProductionUser`` what the user authored;
    beyond DIRAC, an owner without those properties may still stop/flush their own."""
    if actor.vo and row.vo != actor.vo:
        return False
    if actor.manager:
        return True
    if SHARING in actor.properties and row.author_group == actor.group:
        return True
    owner = row.author == actor.user
    return owner and (stopping or USER in actor.properties)


# -- reading ------------------------------------------------------------------------------------

COLUMNS = {  # DIRAC's names -> columns
    "TransformationID": "transformation_id", "TransformationName": "name",
    "Description": "description", "LongDescription": "long_description",
    "CreationDate": "created", "LastUpdate": "last_update", "Author": "author",
    "AuthorGroup": "author_group", "Type": "type", "Plugin": "plugin",
    "AgentType": "agent_type", "Status": "status", "FileMask": "file_mask",
    "TransformationGroup": "transformation_group", "GroupSize": "group_size",
    "InheritedFrom": "inherited_from", "Body": "body", "MaxNumberOfTasks": "max_tasks",
    "EventsPerTask": "events_per_task", "MaxFilesPerTask": "max_files_per_task",
    "TargetSE": "target_ses", "VO": "vo", "ProductionID": "production_id",
}


def to_wire(row: Row[Any], extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {key: getattr(row, col) for key, col in COLUMNS.items()}
    out["GroupSize"] = int(row.group_size) if float(row.group_size).is_integer() \
        else row.group_size
    out["TransformationFamily"] = "0"
    out["PluginParams"] = json.loads(row.plugin_params or "{}")
    out["InputMetaQuery"] = json.loads(row.input_query) if row.input_query else {}
    out["OutputMetaQuery"] = json.loads(row.output_query) if row.output_query else {}
    out["ProductionID"] = row.production_id or 0
    if extra:
        out.update(extra)
    return out


def find(engine: Engine, ident: int | str, vo: str | None, *, lock: bool = False) -> Row[Any]:
    with engine.connect() as conn:
        row = db.get_transformation(conn, ident, vo)
    if row is None or (vo and row.vo != vo):
        raise NotFoundError(f"Transformation {ident} does not exist")
    return row


def parameters_of(engine: Engine, tid: int) -> dict[str, Any]:
    with engine.connect() as conn:
        rows = db.get_parameters(conn, [tid]).get(tid, {})
    return {name: definition.decode_parameter(r.value, r.type) for name, r in rows.items()}


def get(engine: Engine, ident: int | str, vo: str | None, extra_params: bool = False
        ) -> dict[str, Any]:
    row = find(engine, ident, vo)
    return to_wire(row, parameters_of(engine, row.transformation_id) if extra_params else None)


TRANS_SELECT = {key: trans_t.c[col] for key, col in COLUMNS.items()}


def listing(engine: Engine, vo: str | None, cond: Mapping[str, Any] | None = None, *,
            older: Any = None, newer: Any = None, time_stamp: str = "CreationDate",
            order: Any = None, limit: int | None = None, offset: int | None = None,
            extra_params: bool = False, columns: Sequence[str] | None = None
            ) -> list[dict[str, Any]]:
    where = conditions(cond or {}, TRANS_SELECT)
    if vo:
        where.append(trans_t.c.vo == vo)
    where += time_window(TRANS_SELECT, time_stamp, older, newer)
    ordered = order_by(order, TRANS_SELECT, (trans_t.c.transformation_id,))
    check_page(limit, offset)
    with engine.connect() as conn:
        rows = db.find_transformations(conn, where, limit=limit, offset=offset,
                                       order=ordered)
        params = db.get_parameters(conn, [r.transformation_id for r in rows]) \
            if extra_params else {}
    out = []
    for row in rows:
        extra = {n: definition.decode_parameter(p.value, p.type)
                 for n, p in params.get(row.transformation_id, {}).items()}
        item = to_wire(row, extra)
        if columns:
            item = {k: v for k, v in item.items() if k in columns}
        out.append(item)
    return out


def logging(engine: Engine, ident: int | str, vo: str | None) -> list[dict[str, Any]]:
    row = find(engine, ident, vo)
    with engine.connect() as conn:
        records = db.get_log(conn, row.transformation_id)
    return [{"TransformationID": r.transformation_id, "Message": r.message,
             "Author": r.author, "MessageDate": r.date} for r in records]


# -- creating and changing ----------------------------------------------------------------------

def create(engine: Engine, catalog: CatalogView | None, settings: TransformationsConfig,
           actor: Actor, data: Mapping[str, Any], *, known_ses: Sequence[str] | None = None,
           production_id: int | None = None) -> int:
    """Check and store a new transformation (and its input files); returns its ID.
    Nothing is stored when anything is wrong."""
    kinds = catalog.fields() if catalog is not None else {}
    desc = definition.describe(data, settings=settings, kinds=kinds,
                               owner=(actor.user, actor.group, actor.vo), known_ses=known_ses)
    ids: dict[str, int] = {}
    if desc.input_files:
        if catalog is None:
            raise InvalidArgumentError("InputFiles: no file catalog is configured")
        ids = catalog.file_ids(desc.input_files)
        missing = [lfn for lfn in desc.input_files if lfn not in ids]
        if missing:
            raise InvalidArgumentError(f"InputFiles: not in the catalog: {', '.join(missing[:5])}"
                                       + (" ..." if len(missing) > 5 else ""))
    try:
        with write_transaction(engine) as conn:
            tid = store(conn, desc, actor, ids, production_id=production_id)
    except sa.exc.IntegrityError:
        raise AlreadyExistsError(f"TransformationName {desc.values['name']!r} is already used "
                                 f"in VO {actor.vo}") from None
    return tid


def store(conn: Any, desc: definition.Description, actor: Actor, file_ids: Mapping[str, int],
          *, production_id: int | None = None) -> int:
    """Insert a checked description in the caller's transaction; returns the ID."""
    now = utcnow()
    values = dict(desc.values)
    if production_id is not None:
        values["production_id"] = production_id
    if db.get_transformation(conn, desc.values["name"], actor.vo) is not None:
        raise AlreadyExistsError(
            f"TransformationName {desc.values['name']!r} is already used in VO {actor.vo}")
    tid = db.insert_transformation(conn, values, now)
    db.set_parameters(conn, tid, desc.parameters)
    messages = ["Transformation created"]
    if file_ids:
        db.add_files(conn, tid, file_ids.values(), now)
        messages.append(f"Added {len(file_ids)} files")
    if desc.start:
        db.update_transformation(conn, tid, {"status": states.ACTIVE}, now)
        messages.append("Status set to Active")
    db.add_log(conn, tid, messages, actor.user, now)
    return tid


def _modifiable(engine: Engine, actor: Actor, ident: int | str, *,
                stopping: bool = False) -> Row[Any]:
    row = find(engine, ident, actor.vo or None)
    if not may_modify(actor, row, stopping=stopping):
        raise NotAuthorizedError(
            f"You do not have permissions for transformation {row.transformation_id}")
    return row


def set_status(engine: Engine, actor: Actor, ident: int | str, status: str, *,
               author: str | None = None) -> None:
    """Move along the status machine (owners may stop or flush their own)."""
    row = _modifiable(engine, actor, ident, stopping=status in (states.STOPPED, states.FLUSH))
    change_status(engine, row.transformation_id, status, author or actor.user)


def change_status(engine: Engine, tid: int, status: str, author: str,
                  message: str | None = None) -> bool:
    """Compare-and-set the status (rights already checked); False if it changed under us."""
    now = utcnow()
    with write_transaction(engine) as conn:
        row = db.get_transformation(conn, tid, lock=True)
        if row is None:
            raise NotFoundError(f"Transformation {tid} does not exist")
        states.check_transition(row.status, status)
        if row.status == status:
            return True
        ok = db.update_transformation(conn, tid, {"status": status}, now,
                                      status_was=row.status)
        if ok:
            db.add_log(conn, tid, [message or f"Status changed from {row.status} to {status}"],
                       author, now)
        return ok


#: DIRAC parameter names that are columns, with their checks
SETTABLE = {"Description": "description", "LongDescription": "long_description",
            "Plugin": "plugin", "GroupSize": "group_size", "Body": "body",
            "MaxNumberOfTasks": "max_tasks", "AgentType": "agent_type",
            "TransformationGroup": "transformation_group", "FileMask": "file_mask",
            "EventsPerTask": "events_per_task", "MaxFilesPerTask": "max_files_per_task",
            "TargetSE": "target_ses", "PluginParams": "plugin_params",
            "TransformationName": "name", "InputMetaQuery": "input_query"}


def set_parameter(engine: Engine, catalog: CatalogView | None,
                  settings: TransformationsConfig, actor: Actor, ident: int | str,
                  name: str, value: Any) -> None:
    """DIRAC's setTransformationParameter: a column (checked as at creation), the Status
    (status machine), or an additional parameter."""
    if not isinstance(name, str) or not name:
        raise InvalidArgumentError("parameter name must be a non-empty string")
    if name == "Status":
        if not isinstance(value, str):
            raise InvalidArgumentError("Status must be a string")
        set_status(engine, actor, ident, value)
        return
    row = _modifiable(engine, actor, ident)
    tid = row.transformation_id
    now = utcnow()
    if name in SETTABLE:
        current = to_wire(row)
        data = {"Name": row.name, "Type": row.type, "Plugin": row.plugin,
                "PluginParams": current["PluginParams"], "GroupSize": row.group_size,
                "Body": row.body, "TargetSE": row.target_ses, "AgentType": row.agent_type,
                "InputMetaQuery": current["InputMetaQuery"] or None}
        key = "Name" if name == "TransformationName" else name
        data[key] = value
        if name in ("Description", "LongDescription", "MaxNumberOfTasks", "TransformationGroup",
                    "FileMask", "EventsPerTask", "MaxFilesPerTask"):
            data[name] = value
        desc = definition.describe(data, settings=settings,
                                   kinds=catalog.fields() if catalog else {},
                                   owner=(row.author, row.author_group, row.vo))
        column = SETTABLE[name]
        new_value = desc.values[column]
        with write_transaction(engine) as conn:
            if column == "name" and (other := db.get_transformation(conn, new_value, row.vo)) \
                    is not None and other.transformation_id != tid:
                raise AlreadyExistsError(f"TransformationName {new_value!r} is already used "
                                         f"in VO {row.vo}")
            db.update_transformation(conn, tid, {column: new_value}, now)
            db.add_log(conn, tid, [f"{name} set to {_short(new_value)}"], actor.user, now)
        return
    if len(name) > 64:
        raise InvalidArgumentError("parameter names are at most 64 characters")
    with write_transaction(engine) as conn:
        db.set_parameters(conn, tid, {name: definition.encode_parameter(value)})
        db.update_transformation(conn, tid, {}, now)
        db.add_log(conn, tid, [f"{name} set to {_short(value)}"], actor.user, now)


def delete_parameter(engine: Engine, actor: Actor, ident: int | str, name: str) -> None:
    row = _modifiable(engine, actor, ident)
    now = utcnow()
    with write_transaction(engine) as conn:
        if db.delete_parameter(conn, row.transformation_id, name):
            db.add_log(conn, row.transformation_id, [f"{name} deleted"], actor.user, now)


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= 200 else text[:197] + "..."


def _vo_scope(column: Any, vo: str | None) -> list[Any]:
    if not vo:
        return []
    return [column.in_(sa.select(trans_t.c.transformation_id).where(trans_t.c.vo == vo))]


# -- tasks --------------------------------------------------------------------------------------

TASK_COLUMNS = {"TransformationID": tasks_t.c.transformation_id, "TaskID": tasks_t.c.task_id,
                "ExternalStatus": tasks_t.c.status, "ExternalID": tasks_t.c.external_id,
                "TargetSE": tasks_t.c.target_se, "Site": tasks_t.c.site,
                "CreationTime": tasks_t.c.created, "LastUpdateTime": tasks_t.c.last_update}


def task_to_wire(r: Row[Any], input_vector: bool = False) -> dict[str, Any]:
    item = {"TransformationID": r.transformation_id, "TaskID": r.task_id,
            "ExternalStatus": r.status, "ExternalID": r.external_id or "",
            "TargetSE": r.target_se or "Unknown", "Site": r.site or "",
            "CreationTime": r.created, "LastUpdateTime": r.last_update}
    if input_vector:  # DIRAC's TaskInputs form: LFNs joined by ";"
        item["InputVector"] = ";".join(x for x in (r.input_vector or "").split("\n") if x)
    return item


def get_tasks(engine: Engine, vo: str | None, cond: Mapping[str, Any] | None = None, *,
              older: Any = None, newer: Any = None, time_stamp: str = "CreationTime",
              limit: int | None = None, offset: int | None = None,
              input_vector: bool = False, order: Any = None) -> list[dict[str, Any]]:
    """DIRAC's ``getTransformationTasks``: ``order`` is its ``orderAttribute`` (a task
    attribute, ``"Attr:DESC"``, or a list of them; by transformation and task ID without)."""
    where = conditions(cond or {}, TASK_COLUMNS) + _vo_scope(tasks_t.c.transformation_id, vo)
    where += time_window(TASK_COLUMNS, time_stamp, older, newer)
    ordered = order_by(order, TASK_COLUMNS, (tasks_t.c.transformation_id, tasks_t.c.task_id))
    check_page(limit, offset)
    with engine.connect() as conn:
        rows = db.task_rows(conn, where, limit=limit, offset=offset, order=ordered)
    return [task_to_wire(r, input_vector) for r in rows]


def extend(engine: Engine, actor: Actor, ident: int | str, count: int) -> list[int]:
    """Make ``count`` tasks without input files (MC); returns their IDs."""
    if isinstance(count, bool) or not isinstance(count, int) or not 0 < count <= 100_000:
        raise InvalidArgumentError("the number of tasks must be between 1 and 100000")
    row = _modifiable(engine, actor, ident)
    return make_empty_tasks(engine, row.transformation_id, count, actor.user)


def make_empty_tasks(engine: Engine, tid: int, count: int, author: str) -> list[int]:
    now = utcnow()
    with write_transaction(engine) as conn:
        first = db.take_task_numbers(conn, tid, count)
        ids = list(range(first, first + count))
        db.insert_tasks(conn, [{"transformation_id": tid, "task_id": t,
                                "status": states.CREATED, "target_se": "", "site": "",
                                "input_vector": ""} for t in ids], [], now)
        db.add_log(conn, tid, [f"Extended by {count} tasks"], author, now)
    return ids


def extend_in_flight(engine: Engine, tid: int, in_flight: int, author: str) -> int:
    """MC: make tasks so that ``in_flight`` are open, without going past MaxNumberOfTasks;
    decided under the transformation row's lock, so two agents never both extend. Returns
    how many were made."""
    now = utcnow()
    with write_transaction(engine) as conn:
        db.take_task_numbers(conn, tid, 0)  # the row's lock
        row = db.get_transformation(conn, tid)
        if row is None or not row.max_tasks:
            return 0
        open_now = int(conn.execute(sa.select(sa.func.count()).select_from(tasks_t).where(
            tasks_t.c.transformation_id == tid,
            tasks_t.c.status.not_in(sorted(states.TASK_FINAL)))).scalar_one())
        room = min(in_flight - open_now, row.max_tasks - (row.next_task - 1))
        if room <= 0:
            return 0
        first = db.take_task_numbers(conn, tid, room)
        db.insert_tasks(conn, [{"transformation_id": tid, "task_id": t,
                                "status": states.CREATED, "target_se": "", "site": "",
                                "input_vector": ""} for t in range(first, first + room)],
                        [], now)
        db.add_log(conn, tid, [f"Extended by {room} tasks"], author, now)
    return room


# -- summaries ----------------------------------------------------------------------------------

def file_stats(engine: Engine, tid: int) -> dict[str, int]:
    """DIRAC's getTransformationStats: ``{status: n, "Total": n}``."""
    with engine.connect() as conn:
        counts = db.file_counts(conn, tid)
    counts["Total"] = sum(counts.values())
    return counts


def task_stats(engine: Engine, tid: int) -> dict[str, int]:
    """DIRAC's getTransformationTaskStats: ``{status: n, "TotalCreated": n}``."""
    with engine.connect() as conn:
        counts = db.task_counts(conn, tid)
    counts["TotalCreated"] = sum(counts.values())
    return counts


def percent_done(files: Mapping[str, int], tasks: Mapping[str, int]) -> float:
    """Processed files over files, or (no input files) done tasks over tasks, in %."""
    total = sum(v for k, v in files.items() if k not in ("Total", states.REMOVED,
                                                           states.NOT_PROCESSED))
    if total:
        return round(100.0 * files.get(states.PROCESSED, 0) / total, 1)
    created = sum(v for k, v in tasks.items() if k != "TotalCreated")
    return round(100.0 * tasks.get(states.TASK_DONE, 0) / created, 1) if created else 0.0


def summary(engine: Engine, row: Row[Any]) -> dict[str, Any]:
    """One transformation's line of ``getTransformationSummaryWeb``-style summaries."""
    files = file_stats(engine, row.transformation_id)
    tasks = task_stats(engine, row.transformation_id)
    out = to_wire(row)
    out.pop("Body", None)
    for status in states.FILE_STATUSES:
        out[f"Files_{status}"] = files.get(status, 0)
    out["Files_Total"] = files["Total"]
    out["Files_PercentProcessed"] = percent_done(files, tasks)
    for status, n in tasks.items():
        if status != "TotalCreated":
            out[f"Jobs_{status}"] = n
    out["Jobs_TotalCreated"] = tasks["TotalCreated"]
    return out
