"""Input files reach transformations: from the catalog's change journal within seconds, and
by a periodic full reconciliation (the safety net, which also sees removals).

**Event path** (:func:`follow_journal`): read the catalog's ``fc_changes`` forward from the
stored watermark (``ts_state``), in batches; collect the files registered or re-described
(a directory's metadata change stands for the files below it); evaluate each changed file
against the compiled input query of every transformation that attaches files
(:mod:`transformation.logic.query`) using facts read for the batch only; attach the matches
(insert-ignore: a file already attached keeps its status) and move the watermark, in one
transaction. Removed files still Unused become ``Removed``. With a
:class:`~transformation.logic.tasks.Grouper` (the TransformationAgent's), the matches of an
Active transformation are grouped into tasks before that transaction and stored in it already
Assigned; a plan that no longer holds attaches them Unused. Cost per file: a few indexed
reads per batch of 1,000, whatever the size of the catalog.

A journal change can only add a file to a transformation, never take it away, so within one
call the (transformation, file) pairs already attached by an earlier batch are not evaluated
or sent again (:class:`Attached`): a directory's metadata change expands to every file below
it, and the later batches often bring the same files again through their own registrations
(400,000 of 900,500 rows re-sent in bench/transformation.py before).

The journal's IDs are given at insert time but transactions may commit out of order (MariaDB):
a reader must not jump over an ID still in flight. So the batch stops at the first gap in the
IDs until the gap is :data:`GAP_WAIT` seconds old (a rolled back registration leaves a gap
for ever); anything late is still found by the reconciliation.

**Reconciliation** (:func:`reconcile`): the full SQL evaluation of one transformation's query
(the catalog's own); missing files are attached, attached Unused files no longer in the
catalog become Removed. New transformations are reconciled at once (their past files), then
every ``ReconcilePeriod`` seconds.

Example::

    >>> from core.db import init_schema, make_engine
    >>> from dms.db.schema import DMS_SCHEMA
    >>> from transformation.db.schema import TRANSFORMATION_SCHEMA
    >>> engine = make_engine("sqlite://")
    >>> _ = init_schema(engine, DMS_SCHEMA); _ = init_schema(engine, TRANSFORMATION_SCHEMA)
    >>> follow_journal(engine, CatalogView(engine)).changes
    0
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from core.db import utcnow, write_transaction
from dms.db import changes as journal
from transformation.db import queries as db
from transformation.db.tables import files as files_t
from transformation.db.tables import transformations as trans_t
from transformation.logic import states
from transformation.logic.catalog import CatalogView
from transformation.logic.query import CompiledQuery, compile_query
from transformation.logic.tasks import ConflictError, Grouper, Plan

log = logging.getLogger("pilotwms.transformation.inputs")

WATERMARK = "journal_watermark"
RECONCILED = "reconciled:"
GAP_WAIT = 10.0
#: files evaluated per statement batch
FACTS_BATCH = 1000
#: (transformation, file) pairs remembered per call of :func:`follow_journal` at most
ATTACHED_MEMORY = 2_000_000
#: journal kinds that change only a file's replicas: they matter to queries on SEs alone
#: (a registration journals F+ and R+; re-evaluating and re-attaching the file for its R+
#: in the next batch doubled the attach work)
REPLICA_KINDS = frozenset({journal.REPLICA_ADDED, journal.REPLICA_REMOVED})


@dataclass
class Watch:
    tid: int
    query: CompiledQuery
    path_dir: int | None


@dataclass
class FollowReport:
    changes: int = 0
    files: int = 0
    attached: dict[int, int] = field(default_factory=dict)
    removed: int = 0
    watermark: int = 0


class Attached:
    """The files known attached to each transformation during one :func:`follow_journal`
    (rows written or found by a committed batch), at most :data:`ATTACHED_MEMORY` pairs:
    past that, files are evaluated and sent again (insert-ignore keeps the result right)."""

    def __init__(self) -> None:
        self.by_tid: dict[int, set[int]] = {}
        self.size = 0

    def unknown(self, files: set[int], tids: list[int]) -> set[int]:
        """The files among ``files`` not known attached to every one of ``tids``."""
        known: set[int] | None = None
        for tid in tids:
            mine = self.by_tid.get(tid)
            if not mine:
                return files
            known = mine if known is None else known & mine
        return files - known if known else files

    def new(self, tid: int, fids: list[int]) -> list[int]:
        mine = self.by_tid.get(tid)
        return [f for f in fids if f not in mine] if mine else fids

    def remember(self, tid: int, fids: list[int]) -> None:
        if self.size + len(fids) <= ATTACHED_MEMORY:
            mine = self.by_tid.setdefault(tid, set())
            before = len(mine)
            mine.update(fids)
            self.size += len(mine) - before


def watches(engine: Engine, catalog: CatalogView) -> list[Watch]:
    """The compiled input queries of the transformations that attach files."""
    kinds = catalog.fields()
    out = []
    with engine.connect() as conn:
        rows = db.find_transformations(conn, [trans_t.c.status.in_(sorted(states.ATTACHING)),
                                              trans_t.c.input_query.is_not(None)])
    for row in rows:
        try:
            query = compile_query(json.loads(row.input_query), kinds)
        except ValueError as exc:  # a field deleted since: nothing matches
            log.warning("transformation %s: input query no longer valid: %s",
                        row.transformation_id, exc)
            continue
        path_dir = None
        if query.path != "/":
            path_dir = catalog.dir_id(query.path)
            if path_dir is None:
                continue
        out.append(Watch(row.transformation_id, query, path_dir))
    return out


def _contiguous(batch: list[journal.Change], after: int) -> list[journal.Change]:
    """The prefix of ``batch`` without a recent gap in the IDs."""
    now = utcnow()
    out = []
    expected = after + 1
    for change in batch:
        if change.change_id != expected and \
                now - change.created < timedelta(seconds=GAP_WAIT):
            break
        out.append(change)
        expected = change.change_id + 1
    return out


def follow_journal(engine: Engine, catalog: CatalogView, *, batch: int = 20_000,
                   rounds: int = 50, grouper: Grouper | None = None) -> FollowReport:
    """Handle the journal from the watermark on (up to ``rounds`` batches). With ``grouper``
    the files attached to Active transformations are grouped into tasks as they are
    attached (:class:`~transformation.logic.tasks.Grouper`)."""
    report = FollowReport()
    attached = Attached()
    for _ in range(rounds):
        with engine.connect() as conn:
            after = db.get_state(conn, WATERMARK)
        if after is None:  # first run: start at the end (reconciliation sees the past)
            with catalog.engine.connect() as conn:
                start = journal.last_id(conn)
            with write_transaction(engine) as conn:
                if db.get_state(conn, WATERMARK) is None:
                    db.set_state(conn, WATERMARK, start, utcnow())
            continue
        with catalog.engine.connect() as conn:
            found = journal.read_since(conn, after, batch)
        todo = _contiguous(found, after)
        if not todo:
            report.watermark = after
            break
        _handle(engine, catalog, after, todo, report, attached, grouper)
        if len(found) < batch:
            break
    return report


def _handle(engine: Engine, catalog: CatalogView, after: int, todo: list[journal.Change],
            report: FollowReport, attached: Attached, grouper: Grouper | None) -> None:
    changed: set[int] = set()
    replica_only: set[int] = set()  # files whose replicas alone changed
    removed: set[int] = set()
    dirs: set[int] = set()
    for change in todo:
        if change.kind == journal.FILE_REMOVED and change.file_id is not None:
            removed.add(change.file_id)
            changed.discard(change.file_id)
            replica_only.discard(change.file_id)
        elif change.kind == journal.DIR_META and change.dir_id is not None:
            dirs.add(change.dir_id)
        elif change.kind in REPLICA_KINDS and change.file_id is not None:
            replica_only.add(change.file_id)
            removed.discard(change.file_id)
        elif change.file_id is not None:
            changed.add(change.file_id)
            removed.discard(change.file_id)
    if dirs:
        with catalog.engine.connect() as conn:
            for dir_id in dirs:
                last = 0
                while True:
                    page = journal.files_below(conn, dir_id, last, 10_000)
                    changed.update(page)
                    if len(page) < 10_000:
                        break
                    last = page[-1]
    report.changes += len(todo)
    matches: dict[int, list[int]] = defaultdict(list)
    active = watches(engine, catalog) if changed or replica_only else []
    if any(w.query.needs_ses for w in active):
        changed |= replica_only  # a replica added or removed can change only an SE test
    report.files += len(changed)
    if active and changed:
        fields = set().union(*(w.query.fields for w in active))
        need_ses = any(w.query.needs_ses for w in active)
        columns = set().union(*(w.query.columns for w in active))
        # grouping needs the LFNs of the matching files: their names are read with the facts
        # (the catalog's files are then read once, not twice)
        names = grouper is not None and "name" not in columns
        ordered = sorted(attached.unknown(changed, [w.tid for w in active]))
        for start in range(0, len(ordered), FACTS_BATCH):
            facts = catalog.facts(ordered[start:start + FACTS_BATCH], fields, ses=need_ses,
                                  columns=columns | {"name"} if names else columns)
            matched: dict[int, tuple[int, str]] = {}
            for fid, fact in facts.items():
                for watch in active:
                    if watch.query.matches(fact, watch.path_dir):
                        matches[watch.tid].append(fid)
                        if names:
                            matched[fid] = (fact.dir_id, fact.columns["name"])
            if names:
                catalog.remember_lfns(matched)
    plans: dict[int, Plan] = {}
    for tid, fids in matches.items():
        matches[tid] = fids = attached.new(tid, fids)
        plan = grouper.plan(engine, tid, fids) if grouper is not None else None
        if plan is not None:
            plans[tid] = plan
    now = utcnow()
    with write_transaction(engine) as conn:
        current = db.get_state(conn, WATERMARK, lock=True)
        if current != after:  # another copy moved it meanwhile: its work stands
            return
        for tid in sorted(matches):  # transformation rows locked in one order
            fids = matches[tid]
            added = _attach_grouped(conn, grouper, plans.get(tid), now)
            if added is None:
                added = db.add_files(conn, tid, fids, now)
            if added:
                report.attached[tid] = report.attached.get(tid, 0) + added
        if removed:
            for tid in _attached_to(conn, removed):
                report.removed += db.set_files(conn, tid, sorted(removed), {
                    "status": states.REMOVED, "last_update": now},
                    only_status=[states.UNUSED])
        db.set_state(conn, WATERMARK, todo[-1].change_id, now)
    for tid, fids in matches.items():  # committed: attached now, whatever happens next
        attached.remember(tid, fids)
    report.watermark = todo[-1].change_id


def _attach_grouped(conn: Connection, grouper: Grouper | None, plan: Plan | None,
                    now: datetime) -> int | None:
    """The planned tasks and files stored (a savepoint); None when there is no plan or it no
    longer holds (the files are then attached Unused, for :func:`make_tasks`)."""
    if grouper is None or plan is None:
        return None
    try:
        with conn.begin_nested():
            return grouper.store(conn, plan, now)
    except ConflictError as exc:
        log.info("%s: files attached Unused", exc)
        return None


def _attached_to(conn: object, file_ids: set[int]) -> set[int]:
    out: set[int] = set()
    for batch in db.chunks(sorted(file_ids)):
        out.update(conn.execute(sa.select(files_t.c.transformation_id).distinct().where(  # type: ignore[attr-defined]
            files_t.c.file_id.in_(batch))).scalars())
    return out


def due_for_reconciliation(engine: Engine, period: float) -> list[int]:
    """Transformations with a query never reconciled, or not for ``period`` seconds."""
    now = utcnow()
    with engine.connect() as conn:
        rows = db.find_transformations(conn, [trans_t.c.status.in_(sorted(states.ATTACHING)),
                                              trans_t.c.input_query.is_not(None)])
        out = []
        for row in rows:
            last = db.get_state(conn, f"{RECONCILED}{row.transformation_id}")
            if last is None or (period and now.timestamp() - last >= period):
                out.append(row.transformation_id)
    return out


def reconcile(engine: Engine, catalog: CatalogView, tid: int) -> tuple[int, int]:
    """Full evaluation of one transformation's query: (files attached, files Removed)."""
    with engine.connect() as conn:
        row = db.get_transformation(conn, tid)
    if row is None or not row.input_query or row.status not in states.ATTACHING:
        return (0, 0)
    try:
        matching = catalog.query(json.loads(row.input_query))
    except Exception as exc:  # noqa: BLE001 - a query the catalog no longer accepts
        log.warning("transformation %s: cannot reconcile: %s", tid, exc)
        matching = None
    now = utcnow()
    added = gone = 0
    attached: set[int] = set()
    unused: set[int] = set()
    with engine.connect() as conn:
        last = 0
        while True:  # every attached file, by pages of 50,000 IDs
            page = conn.execute(sa.select(files_t.c.file_id, files_t.c.status).where(
                files_t.c.transformation_id == tid, files_t.c.file_id > last)
                .order_by(files_t.c.file_id).limit(50_000)).all()
            attached.update(f for f, _s in page)
            unused.update(f for f, s in page if s == states.UNUSED)
            if len(page) < 50_000:
                break
            last = page[-1][0]
    still = set(catalog.facts(sorted(unused), columns=())) if unused else set()
    with write_transaction(engine) as conn:
        if matching:
            added = db.add_files(conn, tid, sorted(matching - attached), now)
        lost = sorted(unused - still)
        if lost:
            gone = db.set_files(conn, tid, lost, {"status": states.REMOVED,
                                                  "last_update": now},
                                only_status=[states.UNUSED])
        messages = []
        if added:
            messages.append(f"Reconciliation: {added} files attached")
        if gone:
            messages.append(f"Reconciliation: {gone} files no longer in the catalog: Removed")
        db.add_log(conn, tid, messages, "InputData", now)
        db.set_state(conn, f"{RECONCILED}{tid}", int(now.timestamp()), now)
    return added, gone
