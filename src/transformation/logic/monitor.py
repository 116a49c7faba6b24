"""Tasks follow their jobs or requests; files follow their tasks.

For each transformation, the submitted tasks that are not final get their job's (request's)
status in one bulk read. A task that ends:

* ``Done``: its files become ``Processed`` (unless another task of the file is still open,
  as with ``Broadcast``);
* ``Failed`` (also Killed, Deleted, Canceled, or a job that vanished: ``Lost``): its files go
  back to ``Unused`` with one more error, or ``MaxReset`` when they reached
  ``FilesMaxResetCounter`` errors; the plugin regroups them.

A rescheduled job stays the task's job: the task shows ``Rescheduled`` then ``Waiting`` again
and its files stay Assigned. Everything is applied in one transaction per transformation and
only to tasks that were not final when it started, so two monitors never count a failure
twice.

Example::

    >>> outcome("Done"), outcome("Killed"), outcome("Running")
    ('done', 'failed', None)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine, Row

from core.db import utcnow, write_transaction
from core.ids import as_id
from core.in_values import in_values
from dms.db import rms as rms_db
from transformation.db import queries as db
from transformation.db.tables import files as files_t
from transformation.db.tables import tasks as tasks_t
from transformation.logic import states
from wms.db import jobs as jobs_db

Fetch = Callable[[Sequence[str]], dict[str, str]]
NOT_SUBMITTED = (states.CREATED, states.RESERVED)


def outcome(status: str) -> str | None:
    if status in states.SUCCESS:
        return "done"
    if status in states.FAILURE:
        return "failed"
    return None


@dataclass
class MonitorReport:
    updated: int = 0
    done: list[Row[Any]] = field(default_factory=list)
    failed: list[Row[Any]] = field(default_factory=list)
    max_reset: int = 0


def job_statuses(wms_engine: Engine) -> Fetch:
    def fetch(ids: Sequence[str]) -> dict[str, str]:
        wanted = [n for n in map(as_id, ids) if n is not None]
        with wms_engine.connect() as conn:
            rows = jobs_db.status_of(conn, wanted)
        return {str(j): ("Lost" if j not in rows else rows[j].status) for j in wanted}
    return fetch


def request_statuses(rms_engine: Engine) -> Fetch:
    table = rms_db.rms_requests

    def fetch(ids: Sequence[str]) -> dict[str, str]:
        wanted = [n for n in map(as_id, ids) if n is not None]
        found: dict[int, str] = {}
        with rms_engine.connect() as conn:
            for batch in db.chunks(wanted):
                found.update(conn.execute(sa.select(table.c.request_id, table.c.status)
                                          .where(table.c.request_id.in_(batch))).all())
        return {str(r): found.get(r, "Lost") for r in wanted}
    return fetch


def follow(engine: Engine, tid: int, fetch: Fetch, *, max_reset: int,
           before_final: Callable[[list[Row[Any]]], None] | None = None) -> MonitorReport:
    """Update the open tasks of ``tid``; ``before_final(done_tasks)`` runs before their files
    are marked (e.g. to register ancestry)."""
    report = MonitorReport()
    with engine.connect() as conn:
        open_tasks = db.task_rows(conn, [tasks_t.c.transformation_id == tid,
                                         tasks_t.c.status.not_in(
                                             [*NOT_SUBMITTED, *states.TASK_FINAL]),
                                         tasks_t.c.external_id != ""])
    if not open_tasks:
        return report
    statuses = fetch([t.external_id for t in open_tasks])
    changed = {t.task_id: statuses[t.external_id] for t in open_tasks
               if statuses.get(t.external_id, t.status) != t.status}
    if not changed:
        return report
    finals = [t for t in open_tasks if t.task_id in changed and outcome(changed[t.task_id])]
    done_rows = [t for t in finals if outcome(changed[t.task_id]) == "done"]
    if done_rows and before_final is not None:
        before_final(done_rows)
    now = utcnow()
    with write_transaction(engine) as conn:
        current = {r.task_id: r.status for r in db.task_rows(conn, [
            tasks_t.c.transformation_id == tid, in_values(tasks_t.c.task_id, changed)])}
        apply = {t: s for t, s in changed.items()
                 if t in current and current[t] not in states.TASK_FINAL}
        db.update_task_statuses(conn, tid, apply, now)
        report.updated = len(apply)
        done = [t for t, s in apply.items() if outcome(s) == "done"]
        failed = [t for t, s in apply.items() if outcome(s) == "failed"]
        by_task = db.files_of_tasks(conn, tid, done + failed)
        if done:
            fids = {f for t in done for f in by_task.get(t, [])}
            still = db.open_tasks_of_files(conn, tid, fids, states.TASK_FINAL)
            db.set_files(conn, tid, sorted(fids - still),
                         {"status": states.PROCESSED, "last_update": now},
                         only_status=[states.ASSIGNED])
        if failed:
            bad = sorted({f for t in failed for f in by_task.get(t, [])})
            _fail_files(conn, tid, bad, max_reset, now, report)
        messages = []
        if done:
            messages.append(f"{len(done)} tasks Done")
        if failed:
            messages.append(f"{len(failed)} tasks failed: their files are Unused again"
                            + (f" ({report.max_reset} MaxReset)" if report.max_reset else ""))
        db.add_log(conn, tid, messages, "TransformationMonitor", now)
    by_id = {t.task_id: t for t in open_tasks}
    report.done = [by_id[t] for t in done]
    report.failed = [by_id[t] for t in failed]
    return report


def _fail_files(conn: Any, tid: int, fids: Sequence[int], max_reset: int, now: Any,
                report: MonitorReport) -> None:
    """Assigned -> Unused (error count + 1), or MaxReset at the limit."""
    for batch in db.chunks(fids):
        cond = [files_t.c.transformation_id == tid, files_t.c.file_id.in_(batch),
                files_t.c.status == states.ASSIGNED]
        report.max_reset += conn.execute(files_t.update().where(
            *cond, files_t.c.error_count + 1 >= max_reset).values(
            status=states.MAX_RESET, error_count=files_t.c.error_count + 1,
            last_update=now)).rowcount or 0
        conn.execute(files_t.update().where(*cond).values(
            status=states.UNUSED, task_id=None, error_count=files_t.c.error_count + 1,
            last_update=now))


def outputs_of(wms_engine: Engine, tasks: Sequence[Row[Any]]) -> dict[int, list[str]]:
    """task ID -> the LFNs its job uploaded (job parameter ``UploadedOutputData``)."""
    # an ExternalID that is no job ID (set by hand with setTaskStatusAndWmsID) is skipped
    by_job = {job: t.task_id for t in tasks if (job := as_id(t.external_id)) is not None}
    with wms_engine.connect() as conn:
        params = jobs_db.parameters_of(conn, list(by_job))
    out: dict[int, list[str]] = {}
    for job, values in params.items():
        text = values.get("UploadedOutputData", "")
        lfns = [x.strip() for x in text.split(",") if x.strip()]
        if lfns:
            out[by_job[job]] = lfns
    return out


def ancestry(outputs: Mapping[int, list[str]], inputs: Mapping[int, list[str]]
             ) -> dict[str, dict[str, list[str]]]:
    """``addFileAncestors`` entries: every output's parents are its task's inputs.

    >>> ancestry({1: ["/o"]}, {1: ["/i1", "/i2"]})
    {'/o': {'Ancestors': ['/i1', '/i2']}}
    """
    return {out: {"Ancestors": list(inputs.get(task, []))}
            for task, outs in outputs.items() for out in outs if inputs.get(task)}
