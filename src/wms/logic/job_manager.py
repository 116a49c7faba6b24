"""Killing, deleting, rescheduling and removing jobs, with DIRAC's rules and wording.

Every function works on many jobs in one transaction, sorts the requested IDs into valid,
invalid (no such job) and non-authorised ones (see :mod:`wms.logic.job_policy`), and reports
jobs whose status does not allow the action as failed, with the reason: a refused transition is
reported, never silently applied.

* kill: active jobs become ``Killed``/"Marked for termination" and leave their task queue; jobs
  that may be running on a worker node (Matched, Running, Stalled, Completing) also get a
  ``Kill`` command that the pilot receives with its next heartbeat.
* delete: a job still active is killed first; then ``Deleted``/"Checking accounting".
* reschedule: ``Rescheduled``/"Job Rescheduled" (a running payload is told to stop), the
  counter goes up; past ``MaxRescheduling`` the job fails with "Maximum of reschedulings
  reached". Parameters of earlier attempts are kept (they are keyed by attempt). The optimiser
  brings the job back to Received after the back-off delay.
* reset (administrators): the counter goes back to 0, then reschedule.
* remove (administrators): the rows are deleted for good.

Example::

    >>> from core.db import init_schema, make_engine
    >>> from core.security.identity import Identity
    >>> from wms.db.schema import WMS_SCHEMA
    >>> from wms.logic.submission import DEFAULT_LIMITS, Submitter, submit
    >>> engine = make_engine("sqlite://"); _ = init_schema(engine, WMS_SCHEMA)
    >>> ids = submit(engine, '[Executable="ls";]', Submitter("al", "g", "v"),
    ...              DEFAULT_LIMITS).job_ids
    >>> al = Identity(auth_method="x509", username="al", group="g", vo="v", valid_dn=True,
    ...               valid_group=True)
    >>> kill_jobs(engine, al, ids + [99], dequeue=lambda conn, ids: None).invalid
    [99]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.engine import Connection, Engine

from core.db import retry_conflicts, utcnow, write_transaction
from core.security.identity import Identity
from wms.db import jobs as jobs_db
from wms.db.tables import jobs as jobs_table
from wms.logic.job_policy import job_scope, select_jobs
from wms.logic.states import ACTIVE, JobStatus, MinorStatus, allowed

Dequeue = Callable[[Connection, Sequence[int]], None]

SOURCE = "JobManager"
#: statuses in which a payload may be running on a worker node
ON_WORKER = frozenset({JobStatus.MATCHED, JobStatus.RUNNING, JobStatus.STALLED,
                       JobStatus.COMPLETING})


@dataclass
class ActionResult:
    done: list[int] = field(default_factory=list)
    invalid: list[int] = field(default_factory=list)
    nonauthorized: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return not (self.invalid or self.nonauthorized or self.failed)


def _select(conn: Connection, ident: Identity, job_ids: Sequence[int], *,
            report: bool = False) -> tuple[ActionResult, dict[int, jobs_db.StatusRow]]:
    rows = jobs_db.status_of(conn, job_ids, for_update=True)
    sel = select_jobs(ident, job_ids, rows, report=report)
    return ActionResult(invalid=sel.invalid, nonauthorized=sel.nonauthorized), {
        job_id: rows[job_id] for job_id in sel.valid}


def _kill(conn: Connection, rows: dict[int, jobs_db.StatusRow], result: ActionResult,
          dequeue: Dequeue, now: datetime, *, deleting: bool) -> list[int]:
    """Kill the active jobs among ``rows``; returns the IDs now Killed (or already final)."""
    to_kill = [job_id for job_id, row in rows.items() if row.status in ACTIVE]
    on_worker = [job_id for job_id in to_kill if rows[job_id].status in ON_WORKER]
    jobs_db.apply_status_changes(
        conn, [jobs_db.StatusChange(j, JobStatus.KILLED, MinorStatus.MARKED_FOR_TERMINATION)
               for j in to_kill], rows, now=now, source=SOURCE, extra={"end_exec_time": now})
    jobs_db.add_commands(conn, on_worker, "Kill", now)
    dequeue(conn, to_kill)
    killed = set(to_kill)
    for job_id, row in rows.items():
        if job_id in killed:
            continue
        if deleting and row.status != JobStatus.DELETED:
            killed.add(job_id)  # final jobs can be deleted directly
        else:
            result.failed[job_id] = f"Job {job_id} is already {row.status}"
    return sorted(killed)


@retry_conflicts()
def kill_jobs(engine: Engine, ident: Identity, job_ids: Sequence[int], *, dequeue: Dequeue,
              now: datetime | None = None) -> ActionResult:
    now = now or utcnow()
    with write_transaction(engine) as conn:
        result, rows = _select(conn, ident, job_ids)
        result.done = _kill(conn, rows, result, dequeue, now, deleting=False)
    return result


@retry_conflicts()
def delete_jobs(engine: Engine, ident: Identity, job_ids: Sequence[int], *, dequeue: Dequeue,
                now: datetime | None = None) -> ActionResult:
    now = now or utcnow()
    with write_transaction(engine) as conn:
        result, rows = _select(conn, ident, job_ids)
        to_delete = _kill(conn, rows, result, dequeue, now, deleting=True)
        current = jobs_db.status_of(conn, to_delete)
        jobs_db.apply_status_changes(
            conn, [jobs_db.StatusChange(j, JobStatus.DELETED, MinorStatus.CHECKING_ACCOUNTING)
                   for j in to_delete], current, now=now, source=SOURCE)
        result.done = to_delete
    return result


@retry_conflicts()
def reschedule_jobs(engine: Engine, ident: Identity, job_ids: Sequence[int], *,
                    dequeue: Dequeue, max_rescheduling: int, reset: bool = False,
                    now: datetime | None = None) -> ActionResult:
    """Reschedule the jobs ``ident`` may manage; a job's own credential (job-scoped) may
    reschedule its job, as DIRAC's job wrapper does when the worker node lets it down."""
    now = now or utcnow()
    with write_transaction(engine) as conn:
        result, rows = _select(conn, ident, job_ids,
                               report=bool(job_scope(ident)) and not reset)
        if reset and rows:
            jobs_db.update_jobs(conn, list(rows), reschedule_counter=0)
            rows = jobs_db.status_of(conn, list(rows))
        go, too_many = [], []
        for job_id, row in rows.items():
            if row.status == JobStatus.RESCHEDULED or not allowed(row.status,
                                                                   JobStatus.RESCHEDULED):
                result.failed[job_id] = (f"Job {job_id} in status {row.status} can't be "
                                         "rescheduled")
            elif row.reschedule_counter >= max_rescheduling:
                too_many.append(job_id)
            else:
                go.append(job_id)
        moving = go + too_many
        stop = [job_id for job_id in moving if rows[job_id].status in ON_WORKER]
        jobs_db.add_commands(conn, stop, "Kill", now)
        dequeue(conn, moving)
        # over the limit: Rescheduled then Failed, both allowed by the table and both logged
        jobs_db.apply_status_changes(
            conn, [jobs_db.StatusChange(j, JobStatus.RESCHEDULED, MinorStatus.RESCHEDULED)
                   for j in go] +
            [jobs_db.StatusChange(j, JobStatus.RESCHEDULED, MinorStatus.MAX_RESCHEDULING)
             for j in too_many], rows, now=now, source=SOURCE,
            extra={"reschedule_time": now, "heartbeat_time": None, "start_exec_time": None,
                   "end_exec_time": None})
        jobs_db.update_jobs(conn, go, reschedule_counter=jobs_table.c.reschedule_counter + 1)
        current = jobs_db.status_of(conn, too_many)
        jobs_db.apply_status_changes(
            conn, [jobs_db.StatusChange(j, JobStatus.FAILED, MinorStatus.MAX_RESCHEDULING)
                   for j in too_many], current, now=now, source=SOURCE,
            extra={"end_exec_time": now})
        for job_id in too_many:
            result.failed[job_id] = f"Job {job_id}: {MinorStatus.MAX_RESCHEDULING}"
        result.done = sorted(go)
    return result


@retry_conflicts()
def remove_jobs(engine: Engine, ident: Identity, job_ids: Sequence[int], *,
                dequeue: Dequeue) -> ActionResult:
    """Delete the rows (administrators only: the service checks the property)."""
    with write_transaction(engine) as conn:
        result, rows = _select(conn, ident, job_ids)
        dequeue(conn, list(rows))
        jobs_db.delete_jobs(conn, sorted(rows))
        result.done = sorted(rows)
    return result
