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

The changed files of a batch are evaluated, planned and written by chunks of :data:`CHUNK`
(a directory's metadata change can bring 100,000 files into one batch), still in the one
transaction that moves the watermark: on MariaDB a writer thread with its own connection runs
each chunk's INSERTs while the caller reads and plans the next chunk (:class:`_Writer`); on
SQLite the writes run after the planning, as before, and the batch is one chunk
(:data:`CHUNK_DEFERRED`). The files a chunk's plan leaves Unused
are grouped with the next chunk's (``Grouper.plan(pending=...)``), so the tasks are those of
one chunk. Replica changes (``R+``/``R-``) are not read at all when no watched query tests
SEs: a count of the IDs in the batch's range is enough for the gap check below.

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

import contextvars
import json
import logging
import queue
import threading
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial

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
#: files of a journal batch evaluated, planned and sent to the writer together
CHUNK = 10_000
#: the same where the writes run after the last chunk (SQLite): nothing to overlap, so one
#: chunk (one plan and one store per transformation, the fewest statements)
CHUNK_DEFERRED = 1_000_000
#: chunks' jobs waiting for the writer at most (the next ones are prepared meanwhile)
WRITER_QUEUE = 16
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


def _read(catalog: CatalogView, after: int, batch: int, skip: frozenset[str]
          ) -> tuple[list[journal.Change], int, int, bool]:
    """The next changes to handle: (changes, the last ID they cover, how many changes that
    is, more may follow). With
    ``skip`` (replica kinds no watch needs) those changes are not read as rows: when the IDs
    up to the last one covered are all there (one count), the batch covers them too; with a
    gap, everything is read and :func:`_contiguous` decides."""
    with catalog.engine.connect() as conn:
        if skip:
            top = journal.last_id(conn)
            found = journal.read_since(conn, after, batch, upto=top, skip_kinds=skip)
            upto = found[-1].change_id if len(found) == batch else top
            if upto <= after:
                return [], after, 0, False
            if journal.count_between(conn, after, upto) == upto - after:
                return found, upto, upto - after, len(found) == batch
        found = journal.read_since(conn, after, batch)
    todo = _contiguous(found, after)
    return todo, todo[-1].change_id if todo else after, len(todo), len(found) == batch


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
        # the watches of this batch, before it is read: whether replica changes matter
        active = watches(engine, catalog)
        skip = frozenset() if any(w.query.needs_ses for w in active) else REPLICA_KINDS
        todo, upto, count, more = _read(catalog, after, batch, skip)
        if upto == after:
            report.watermark = after
            break
        report.changes += count
        _handle(engine, catalog, after, upto, todo, active, report, attached, grouper)
        if not more:
            break
    return report


def _handle(engine: Engine, catalog: CatalogView, after: int, upto: int,
            todo: list[journal.Change], active: list[Watch], report: FollowReport,
            attached: Attached, grouper: Grouper | None) -> None:
    """The changes ``todo`` (IDs ``after < id <= upto``) applied in one transaction, which
    moves the watermark to ``upto``; evaluated, planned and sent by chunks of :data:`CHUNK`
    files (:class:`_Writer`)."""
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
    if not changed and not replica_only:
        active = []
    if any(w.query.needs_ses for w in active):
        changed |= replica_only  # a replica added or removed can change only an SE test
    report.files += len(changed)
    writer = _Writer(engine, threaded=engine.dialect.name != "sqlite")
    added: dict[int, int] = defaultdict(int)  # written by the writer's jobs
    gone = [0]
    sent: dict[int, list[int]] = defaultdict(list)

    def check(conn: Connection) -> None:
        if db.get_state(conn, WATERMARK, lock=True) != after:
            raise _AbortError  # another copy moved it meanwhile: its work stands

    writer.submit(check)
    try:
        if active and changed:
            ordered = sorted(attached.unknown(changed, [w.tid for w in active]))
            carried: dict[int, set[int]] = defaultdict(set)
            size = CHUNK if writer.thread is not None else CHUNK_DEFERRED
            for start in range(0, len(ordered), size):
                if writer.stopped:
                    break
                matches = _evaluate(catalog, active, ordered[start:start + size],
                                    grouper is not None)
                for tid in sorted(matches):  # transformation rows locked in one order
                    fids = attached.new(tid, matches[tid])
                    sent[tid].extend(fids)
                    plan = grouper.plan(engine, tid, fids, carried[tid]) \
                        if grouper is not None else None
                    if plan is not None:
                        carried[tid] = plan.left
                    writer.submit(partial(_attach, grouper, tid, fids, plan, added))
        now = utcnow()

        def finish(conn: Connection) -> None:
            if removed:
                for tid in _attached_to(conn, removed):
                    gone[0] += db.set_files(conn, tid, sorted(removed), {
                        "status": states.REMOVED, "last_update": now},
                        only_status=[states.UNUSED])
            db.set_state(conn, WATERMARK, upto, now)

        writer.submit(finish)
    except BaseException:
        writer.cancel()
        raise
    if not writer.commit():
        return
    report.removed += gone[0]
    for tid, count in added.items():
        if count:
            report.attached[tid] = report.attached.get(tid, 0) + count
    for tid, fids in sent.items():  # committed: attached now, whatever happens next
        attached.remember(tid, fids)
    report.watermark = upto


def _evaluate(catalog: CatalogView, active: list[Watch], files: list[int], names: bool
              ) -> dict[int, list[int]]:
    """The files among ``files`` matching each watch's query (``{tid: [file_id]}``); with
    ``names``, the LFNs of the matching files are remembered by the view (for grouping)."""
    fields = set().union(*(w.query.fields for w in active))
    need_ses = any(w.query.needs_ses for w in active)
    columns = set().union(*(w.query.columns for w in active))
    # grouping needs the LFNs of the matching files: their names are read with the facts
    # (the catalog's files are then read once, not twice)
    names = names and "name" not in columns
    matches: dict[int, list[int]] = defaultdict(list)
    for start in range(0, len(files), FACTS_BATCH):
        facts = catalog.facts(files[start:start + FACTS_BATCH], fields, ses=need_ses,
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
    return matches


def _attach(grouper: Grouper | None, tid: int, fids: list[int], plan: Plan | None,
            added: dict[int, int], conn: Connection) -> None:
    """A writer's job: one transformation's files of one chunk, grouped or Unused."""
    now = utcnow()
    count = _attach_grouped(conn, grouper, plan, now)
    if count is None:
        count = db.add_files(conn, tid, fids, now)
    added[tid] += count


class _AbortError(Exception):
    """The batch is given up (the watermark moved): its transaction is rolled back."""


_COMMIT, _ROLLBACK = object(), object()


class _Writer:
    """The writes of one journal batch, in one transaction, as jobs (``job(conn)``) run in
    the order given. ``threaded`` (MariaDB): a thread with its own connection runs them as
    they come, so the server executes one chunk's INSERTs while the caller reads and plans
    the next one (the driver releases the GIL while it waits for the server); otherwise
    (SQLite: one writer at a time, and the caller's reads must not wait for it) they run
    at :meth:`commit`. A job raising :class:`_AbortError` rolls everything back."""

    def __init__(self, engine: Engine, *, threaded: bool) -> None:
        self.engine = engine
        self.jobs: list[Callable[[Connection], None]] = []
        self.aborted = False
        self.error: BaseException | None = None
        self.done = threading.Event()
        self.thread: threading.Thread | None = None
        if threaded:
            self.queue: queue.Queue[object] = queue.Queue(maxsize=WRITER_QUEUE)
            context = contextvars.copy_context()
            self.thread = threading.Thread(target=context.run, args=(self._serve,),
                                           name="journal-writer", daemon=True)
            self.thread.start()

    @property
    def stopped(self) -> bool:
        """The transaction already ended (given up or failed): no use preparing more."""
        return self.done.is_set()

    def submit(self, job: Callable[[Connection], None]) -> None:
        if self.thread is None:
            self.jobs.append(job)
            return
        self._put(job)

    def commit(self) -> bool:
        """Run what is left and commit; False when given up. Errors of the jobs are raised
        here."""
        if self.thread is None:
            try:
                with write_transaction(self.engine) as conn:
                    for job in self.jobs:
                        job(conn)
            except _AbortError:
                return False
            return True
        self._put(_COMMIT)
        self.thread.join()
        if self.error is not None:
            raise self.error
        return not self.aborted

    def cancel(self) -> None:
        if self.thread is not None:
            self._put(_ROLLBACK)
            self.thread.join()

    def _put(self, item: object) -> None:
        while not self.done.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _serve(self) -> None:
        try:
            with write_transaction(self.engine) as conn:
                while True:
                    job = self.queue.get()
                    if job is _COMMIT:
                        break
                    if job is _ROLLBACK:
                        raise _AbortError
                    job(conn)  # type: ignore[operator]
        except _AbortError:
            self.aborted = True
        except BaseException as exc:  # noqa: BLE001 - raised again in the caller's thread
            self.error = exc
        finally:
            self.done.set()


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
