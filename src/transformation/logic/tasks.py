"""Tasks: made from unused files by a plugin, or added by hand, or empty (MC).

:func:`make_tasks` is the TransformationAgent's step for one transformation: it reads the
unused files, asks the catalog for what the plugin needs, lets the plugin group them, and
stores the tasks in one short transaction that first takes the transformation row (the task
counter) and then moves the files Unused -> Assigned only if they still are Unused: two agents
on one transformation queue on the row, and a file can never enter two tasks (a conflict rolls
the whole batch back; the next cycle regroups).

:class:`Grouper` does the same as files are attached by the journal step: the new files of an
Active transformation are grouped with its Unused ones and inserted already Assigned with their
task, so grouping does not rewrite each file row a second time (on MariaDB, moving each row's
``ix_ts_files_status`` entry and growing the row cost more than inserting it).

Example::

    >>> from core.db import init_schema, make_engine, utcnow
    >>> from dms.db.schema import DMS_SCHEMA
    >>> from transformation.db.schema import TRANSFORMATION_SCHEMA
    >>> engine = make_engine("sqlite://")
    >>> _ = init_schema(engine, DMS_SCHEMA); _ = init_schema(engine, TRANSFORMATION_SCHEMA)
    >>> make_tasks(engine, CatalogView(engine), 1, {})
    0
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from core.db import utcnow, write_transaction
from core.exceptions import InvalidArgumentError, NotFoundError
from transformation.db import queries as db
from transformation.db.tables import task_files
from transformation.db.tables import tasks as tasks_t
from transformation.logic import states
from transformation.logic.catalog import CatalogView
from transformation.logic.transformations import Actor, _modifiable
from transformation.plugins import Context, PluginFile, TaskSpec, load_plugin

log = logging.getLogger("pilotwms.transformation")

#: unused files read per transformation and cycle
FILES_PER_CYCLE = 100_000
#: grouping at attach time (:class:`Grouper`) only for transformations with at most this many
#: Unused files (each journal batch reads them again)
BACKLOG = 10_000


class ConflictError(Exception):
    """Another agent changed the files while this one grouped them."""


def store_tasks(engine: Engine, tid: int, specs: Sequence[TaskSpec], lfns: Mapping[int, str],
                *, author: str = "TransformationAgent", processed: Sequence[int] = (),
                removed: Sequence[int] = (), unflush: bool = False) -> list[int]:
    """Store tasks (files must still be Unused); returns the new task IDs."""
    with write_transaction(engine) as conn:
        return _store(conn, tid, specs, lfns, utcnow(), author=author, processed=processed,
                      removed=removed, unflush=unflush)


def _store(conn: Connection, tid: int, specs: Sequence[TaskSpec], lfns: Mapping[int, str],
           now: datetime, *, author: str = "TransformationAgent",
           processed: Sequence[int] = (), removed: Sequence[int] = (), unflush: bool = False,
           new: Collection[int] = ()) -> list[int]:
    """:func:`store_tasks` in the caller's transaction. ``new``: files of ``specs`` and
    ``processed`` not attached yet, inserted here with their task (Assigned), Processed, or
    Unused when the plugin left them; every other file of ``specs`` must be attached and
    Unused. :class:`ConflictError` when a file is not as expected."""
    first = db.take_task_numbers(conn, tid, len(specs)) if specs else 0
    fresh = set(new)
    task_of: dict[int, tuple[int, str]] = {}
    if specs:
        rows: list[dict[str, Any]] = []
        links: list[tuple[int, int, int]] = []
        for offset, spec in enumerate(specs):
            task_id = first + offset
            rows.append({"transformation_id": tid, "task_id": task_id,
                         "status": states.CREATED, "target_se": spec.target_se,
                         "site": spec.site,
                         "input_vector": "\n".join(lfns.get(f, "") for f in spec.file_ids)})
            links.extend((tid, task_id, f) for f in spec.file_ids)
            grouped = (task_id, spec.target_se)
            for f in spec.file_ids:
                task_of.setdefault(f, grouped)
        db.insert_tasks(conn, rows, links, now)
        wanted = len(task_of.keys() - fresh)
        changed = db.assign_files(conn, tid, first, first + len(specs) - 1, now) \
            if wanted else 0
        if changed != wanted:  # another agent took some: roll everything back
            raise ConflictError(f"transformation {tid}: {wanted - changed} files changed "
                                "meanwhile")
    if fresh:
        done = set(processed) & fresh
        if db.attach_files(conn, tid, sorted(fresh), now, task_of, done) != len(fresh):
            raise ConflictError(f"transformation {tid}: files attached meanwhile")
    messages = []
    if specs:
        messages.append(f"Created {len(specs)} tasks ({first}..{first + len(specs) - 1})")
    if processed:
        db.set_files(conn, tid, [f for f in processed if f not in fresh],
                     {"status": states.PROCESSED, "last_update": now},
                     only_status=[states.UNUSED])
        messages.append(f"{len(processed)} files need nothing: Processed")
    if removed:
        db.set_files(conn, tid, list(removed), {"status": states.REMOVED,
                                                "last_update": now},
                     only_status=[states.UNUSED])
        messages.append(f"{len(removed)} files no longer in the catalog: Removed")
    if unflush:
        if db.update_transformation(conn, tid, {"status": states.ACTIVE}, now,
                                    status_was=states.FLUSH):
            messages.append("Flushed: status back to Active")
    db.add_log(conn, tid, messages, author, now)
    return list(range(first, first + len(specs))) if specs else []


def _group(catalog: CatalogView, row: Any, unused: Sequence[int], history: Mapping[str, int],
           se_sites: Mapping[str, str], flush: bool
           ) -> tuple[list[TaskSpec], list[int], list[int], dict[int, str]]:
    """The plugin's grouping of ``unused``: (tasks within MaxTasks, files Processed, files
    no longer in the catalog, LFNs)."""
    plugin_class = load_plugin(row.plugin)
    params = json.loads(row.plugin_params or "{}")
    keys = plugin_class.meta_keys(params)
    lfns = catalog.lfns(unused)
    removed = [f for f in unused if f not in lfns]
    if keys or plugin_class.needs_ses or plugin_class.needs_size:
        facts = catalog.facts(unused, keys, ses=plugin_class.needs_ses,
                              columns=["size"] if plugin_class.needs_size else [])
        files = [PluginFile(f, lfns[f], int(facts[f].columns.get("size") or 0),
                            sorted(facts[f].ses), facts[f].meta) for f in unused if f in facts]
    else:
        files = [PluginFile(f, lfns[f]) for f in unused if f in lfns]
    ctx = Context(group_size=row.group_size, params=params,
                  max_files=row.max_files_per_task,
                  target_ses=[s for s in row.target_ses.split(",") if s],
                  se_sites=se_sites, history=history)
    grouping = plugin_class(ctx).group(files, flush)
    specs = grouping.tasks
    if row.max_tasks:
        room = max(0, row.max_tasks - (row.next_task - 1))
        specs = specs[:room]
    return specs, list(grouping.processed), removed, lfns


def make_tasks(engine: Engine, catalog: CatalogView, tid: int,
               se_sites: Mapping[str, str], *, limit: int = FILES_PER_CYCLE) -> int:
    """Group the unused files of transformation ``tid`` into tasks; returns how many."""
    with engine.connect() as conn:
        row = db.get_transformation(conn, tid)
        if row is None or row.status not in states.PROCESSING:
            return 0
        unused = db.unused_files(conn, tid, limit)
        history = db.target_se_counts(conn, tid) if row.plugin == "ByShare" else {}
    flush = row.status == states.FLUSH
    if not unused:
        if flush:
            store_tasks(engine, tid, [], {}, unflush=True)
        return 0
    specs, processed, removed, lfns = _group(catalog, row, unused, history, se_sites, flush)
    try:
        made = store_tasks(engine, tid, specs, lfns, processed=processed,
                           removed=removed, unflush=flush)
    except ConflictError as exc:
        log.info("%s; regrouping next cycle", exc)
        return 0
    return len(made)


@dataclass
class Plan:
    """Tasks planned for files about to be attached (:class:`Grouper`)."""

    tid: int
    status: str
    next_task: int
    specs: list[TaskSpec]
    processed: list[int]
    removed: list[int]
    lfns: dict[int, str]
    #: the files not attached yet (the rest of the plan's files were Unused)
    new: set[int]
    #: the files the plan leaves Unused among ``new`` and the pending ones given to
    #: :meth:`Grouper.plan`
    left: set[int] = field(default_factory=set)


class Grouper:
    """Grouping at attach time (the TransformationAgent's journal step): the files a journal
    batch attaches to an Active transformation are grouped with its Unused files before they
    are stored, and inserted already Assigned with their task, instead of being inserted
    Unused and then moved to Assigned by :func:`make_tasks` (on MariaDB that UPDATE moved
    every file's entry in ``ix_ts_files_status`` and grew every row: most of the server's
    time in grouping). :meth:`plan` reads and groups outside the transaction;
    :meth:`store` runs in the attaching transaction, under the transformation row's lock,
    and raises :class:`ConflictError` when anything changed (the caller then attaches the
    files Unused, as without a grouper)."""

    def __init__(self, catalog: CatalogView, se_sites: Mapping[str, str], *,
                 backlog: int = BACKLOG) -> None:
        self.catalog = catalog
        self.se_sites = se_sites
        self.backlog = backlog

    def plan(self, engine: Engine, tid: int, files: Sequence[int],
             pending: Collection[int] = ()) -> Plan | None:
        """The tasks of ``files`` (not attached yet) and of the Unused files; None when the
        transformation is not Active, has no room for tasks (MaxTasks) or has more than
        ``backlog`` Unused files (they are left to :func:`make_tasks`, the new files
        attached Unused). ``pending``: files attached Unused by the caller's transaction,
        not committed yet (an earlier chunk's :attr:`Plan.left`), grouped as Unused ones."""
        if not files:
            return None
        with engine.connect() as conn:
            row = db.get_transformation(conn, tid)
            if row is None or row.status != states.ACTIVE or \
                    (row.max_tasks and row.next_task > row.max_tasks):
                return None
            unused = set(db.unused_files(conn, tid, self.backlog + 1))
            unused.update(pending)
            if len(unused) > self.backlog:
                return None
            history = db.target_se_counts(conn, tid) if row.plugin == "ByShare" else {}
        new = set(files) - unused
        specs, processed, removed, lfns = _group(self.catalog, row, sorted(new | unused),
                                                 history, self.se_sites, False)
        left = new.union(pending).difference(processed, removed)
        for spec in specs:
            left.difference_update(spec.file_ids)
        return Plan(tid, row.status, row.next_task, specs, processed,
                    [f for f in removed if f not in new], lfns, new, left)

    def store(self, conn: Connection, plan: Plan, now: datetime) -> int:
        """Store ``plan``; returns how many new files were attached."""
        row = db.get_transformation(conn, plan.tid, lock=True)
        if row is None or row.status != plan.status or \
                (row.max_tasks and row.next_task != plan.next_task):
            raise ConflictError(f"transformation {plan.tid} changed meanwhile")
        made = _store(conn, plan.tid, plan.specs, plan.lfns, now, processed=plan.processed,
                      removed=plan.removed, new=plan.new)
        if made:
            log.info("transformation %d: %d tasks made as files were attached", plan.tid,
                     len(made))
        return len(plan.new)


def add_task(engine: Engine, catalog: CatalogView, actor: Actor, ident: int | str,
             lfns: list[str], se: str = "") -> int:
    """DIRAC's addTaskForTransformation: one task of the given attached Unused files."""
    row = _modifiable(engine, actor, ident)
    ids = catalog.file_ids(lfns)
    missing = [x for x in lfns if x not in ids]
    if missing:
        raise InvalidArgumentError(f"not in the catalog: {', '.join(missing[:5])}")
    with engine.connect() as conn:
        present = db.attached(conn, row.transformation_id, ids.values())
    bad = [lfn for lfn, f in ids.items() if f not in present or
           present[f].status != states.UNUSED]
    if bad:
        raise InvalidArgumentError(f"not Unused in transformation {row.transformation_id}: "
                                   f"{', '.join(bad[:5])}")
    try:
        [task] = store_tasks(engine, row.transformation_id,
                             [TaskSpec([ids[x] for x in lfns], target_se=se)],
                             {f: x for x, f in ids.items()}, author=actor.user)
    except ConflictError:
        raise InvalidArgumentError("the files changed meanwhile: try again") from None
    return task


def set_task_status(engine: Engine, actor: Actor, ident: int | str, task_ids: list[int],
                    status: str, external_id: str | None = None) -> None:
    if status not in states.TASK_STATUSES:
        raise InvalidArgumentError(f"unknown task status {status!r}")
    row = _modifiable(engine, actor, ident)
    values: dict[str, Any] = {"status": status, "last_update": utcnow()}
    if external_id is not None:
        values["external_id"] = str(external_id)[:32]
    with write_transaction(engine) as conn:
        if not db.set_tasks(conn, row.transformation_id, task_ids, values):
            raise NotFoundError(f"no such task in transformation {row.transformation_id}")


def delete_tasks(engine: Engine, actor: Actor, ident: int | str, task_min: int,
                 task_max: int) -> int:
    """Delete tasks ``task_min..task_max`` not yet submitted; their files go back to
    Unused."""
    row = _modifiable(engine, actor, ident)
    tid = row.transformation_id
    now = utcnow()
    with write_transaction(engine) as conn:
        doomed = list(conn.execute(sa.select(tasks_t.c.task_id).where(
            tasks_t.c.transformation_id == tid, tasks_t.c.task_id.between(task_min, task_max),
            tasks_t.c.status == states.CREATED)).scalars())
        if not doomed:
            return 0
        fids = [f for fs in db.files_of_tasks(conn, tid, doomed).values() for f in fs]
        db.set_files(conn, tid, fids, {"status": states.UNUSED, "task_id": None,
                                       "last_update": now}, only_status=[states.ASSIGNED])
        for batch in db.chunks(doomed):
            conn.execute(task_files.delete().where(task_files.c.transformation_id == tid,
                                                   task_files.c.task_id.in_(batch)))
            conn.execute(tasks_t.delete().where(tasks_t.c.transformation_id == tid,
                                                tasks_t.c.task_id.in_(batch)))
        db.add_log(conn, tid, [f"Deleted {len(doomed)} tasks"], actor.user, now)
    return len(doomed)


def task_inputs(row: Any) -> list[str]:
    return [x for x in (row.input_vector or "").split("\n") if x]


def files_by_task(engine: Engine, tid: int, task_ids: Sequence[int]) -> dict[int, list[int]]:
    with engine.connect() as conn:
        return db.files_of_tasks(conn, tid, task_ids)


__all__ = ["ConflictError", "Grouper", "Plan", "add_task", "delete_tasks", "files_by_task",
           "make_tasks", "set_task_status", "store_tasks", "task_inputs"]
