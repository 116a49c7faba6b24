"""Reports from running jobs: statuses, application statuses, parameters and heartbeats.

Rules:

* a status change must be allowed by DIRAC's table (:mod:`wms.logic.states`); setting the
  current status again (to change the minor status) is always allowed; ``force`` skips the
  check (administrators' repairs);
* the task queues follow: a job leaving ``Waiting`` by a report, forced or not, leaves its task
  queue in the same transaction; no report puts a job *into* ``Waiting`` (only the optimiser
  does, queueing it: ``rescheduleJob`` sends a job back) or ``Standby`` (jobs are born in it,
  subscribed to an event), even forced: the job would wait in no queue, for no event;
* the first ``Running`` sets StartExecTime; a final status sets EndExecTime;
* a heartbeat stores its dynamic data, sets HeartBeatTime, brings a ``Matched`` or ``Stalled``
  job to ``Running`` (as DIRAC does), and returns the job's pending commands (``Kill``);
* updates of jobs in a final state are refused, except application status and parameters;
* a job's own credential (the token its pilot got with the match) reports only on the attempt
  it was issued for, and its status reports and heartbeats only while the job is Matched,
  Running, Stalled or Completing: the late reports of a pilot that was cut off beyond the
  stalled limit are refused with :class:`~core.exceptions.JobNotActiveError`.

Example::

    >>> from core.db import init_schema, make_engine
    >>> from core.security.identity import Identity
    >>> from wms.db.schema import WMS_SCHEMA
    >>> from wms.logic.submission import DEFAULT_LIMITS, Submitter, submit
    >>> engine = make_engine("sqlite://"); _ = init_schema(engine, WMS_SCHEMA)
    >>> [job] = submit(engine, '[Executable="ls";]', Submitter("al", "g", "v"),
    ...                DEFAULT_LIMITS).job_ids
    >>> al = Identity(auth_method="x509", username="al", group="g", vo="v", valid_dn=True,
    ...               valid_group=True)
    >>> set_status(engine, al, job, "Running", source="test")
    Traceback (most recent call last):
    ...
    core.exceptions.InvalidTransitionError: Job status change Received -> Running not allowed
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection, Engine

from core.db import retry_conflicts, utcnow, write_transaction
from core.exceptions import (
    InvalidArgumentError,
    InvalidTransitionError,
    JobNotActiveError,
    JobNotFoundError,
    NotAuthorizedError,
)
from core.security.identity import Identity
from wms.db import jobs as jobs_db
from wms.db import task_queues as tq_db
from wms.logic import parameter_store
from wms.logic.job_policy import job_attempt, job_scope, may_report
from wms.logic.parameter_store import ParameterStore
from wms.logic.states import FINAL, JobStatus, check_transition, parse_status

#: the statuses in which a job belongs to the pilot that was given it
ACTIVE = frozenset({JobStatus.MATCHED, JobStatus.RUNNING, JobStatus.STALLED,
                    JobStatus.COMPLETING})


def _row(conn: Connection, ident: Identity, job_id: int, *,
         active: bool = False) -> jobs_db.StatusRow:
    """The job's row, locked, once ``ident`` may report on it (:func:`check_reporter`)."""
    row = jobs_db.status_of(conn, [job_id], for_update=True).get(job_id)
    check_reporter(ident, job_id, row, active=active)
    assert row is not None  # noqa: S101 - checked above
    return row


def check_reporter(ident: Identity, job_id: int, row: jobs_db.StatusRow | None, *,
                   active: bool = False) -> None:
    """Raise unless ``ident`` may report on the job whose current row is ``row`` (None: no
    such job). A job's own credential (its pilot's) must be of the job's current attempt, and
    with ``active`` the job must still be running: a pilot cut off beyond the stalled limit
    finds its job failed or rescheduled (and perhaps matched again), and its late reports are
    refused (:class:`JobNotActiveError`)."""
    if row is None:
        raise JobNotFoundError(f"Job {job_id} not found")
    if not may_report(ident, owner=row.owner, owner_group=row.owner_group, job_id=job_id):
        raise NotAuthorizedError(f"{ident.username} may not update job {job_id}")
    if job_scope(ident):
        attempt = job_attempt(ident)
        if attempt is not None and attempt != row.reschedule_counter:
            raise JobNotActiveError(f"Job {job_id} was rescheduled since this pilot got it "
                                    f"(attempt {attempt}, now {row.reschedule_counter}): "
                                    "report refused")
        if active and row.status not in ACTIVE:
            raise JobNotActiveError(f"Job {job_id} is {row.status} ({row.minor_status}): "
                                    "reports of its pilot are refused")


def killed_while_reporting(ident: Identity, job_id: int,
                           row: jobs_db.StatusRow | None) -> JobNotActiveError | None:
    """The refusal of a heartbeat from the job's own pilot when the job is no longer active
    (killed meanwhile) but its attempt is still this pilot's: the pilot is then sent the
    job's pending commands (the ``Kill``) instead, if there are any, as DIRAC sends them.
    Raises what ``check_reporter(..., active=True)`` refuses otherwise; None: it passes (the
    caller need not check again)."""
    check_reporter(ident, job_id, row)
    assert row is not None  # noqa: S101 - checked above
    if not job_scope(ident) or row.status in ACTIVE:
        return None
    try:
        check_reporter(ident, job_id, row, active=True)
    except JobNotActiveError as exc:
        return exc
    return None


def plan_change(row: jobs_db.StatusRow, status: str | None, minor: str | None,
                app: str | None, when: datetime, force: bool
                ) -> tuple[jobs_db.StatusChange, dict[str, Any]]:
    """The change a status report makes to the job in ``row`` (checked against the
    transition table unless ``force``) and the time columns it sets beside (StartExecTime on
    the first Running, EndExecTime on a final status)."""
    extra: dict[str, Any] = {}
    if status:
        new = parse_status(status)
        if not force:
            check_transition(row.status, new)
        if new != row.status and new in (JobStatus.WAITING, JobStatus.STANDBY):
            why = ("a Waiting job is in a task queue: use rescheduleJob to queue it again"
                   if new == JobStatus.WAITING else
                   "Standby jobs are made by an event subscription")
            raise InvalidTransitionError(
                f"Job {row.job_id}: {row.status} -> {new} is not set by a status report "
                f"({why})")
        if new == JobStatus.RUNNING and row.status != JobStatus.RUNNING:
            extra["start_exec_time"] = when
        if new in FINAL:
            extra["end_exec_time"] = when
        status = new.value
    elif row.status in FINAL and minor and not force:
        raise InvalidArgumentError(f"Job {row.job_id} is {row.status}: minor status is final")
    return jobs_db.StatusChange(row.job_id, status or None, minor or None, app or None), extra


def leaves_queue(row: jobs_db.StatusRow, change: jobs_db.StatusChange) -> bool:
    """Whether ``change`` takes the job in ``row`` out of Waiting, hence out of its task
    queue (the caller removes it there in the same transaction)."""
    return row.status == JobStatus.WAITING and change.status not in (None, JobStatus.WAITING)


def _apply(conn: Connection, row: jobs_db.StatusRow, status: str | None, minor: str | None,
           app: str | None, source: str, when: datetime, force: bool) -> None:
    change, extra = plan_change(row, status, minor, app, when, force)
    if leaves_queue(row, change):
        tq_db.remove_jobs(conn, [row.job_id])
    jobs_db.apply_status_changes(conn, [change], {row.job_id: row}, now=when, source=source,
                                 extra=extra)


@retry_conflicts()
def set_status(engine: Engine, ident: Identity, job_id: int, status: str = "",
               minor: str = "", application: str = "", *, source: str = "Unknown",
               when: datetime | None = None, force: bool = False) -> None:
    when = when or utcnow()
    with write_transaction(engine) as conn:
        row = _row(conn, ident, job_id, active=bool(status or minor))
        _apply(conn, row, status, minor, application, source, when, force)


@retry_conflicts()
def set_status_bulk(engine: Engine, ident: Identity, job_id: int,
                    updates: Mapping[datetime, Mapping[str, str]], *,
                    force: bool = False) -> None:
    """Apply timestamped updates in time order (DIRAC's setJobStatusBulk); all or nothing."""
    with write_transaction(engine) as conn:
        for when in sorted(updates):
            row = _row(conn, ident, job_id, active=True)
            item = updates[when]
            _apply(conn, row, item.get("Status"), item.get("MinorStatus"),
                   item.get("ApplicationStatus"), item.get("Source", "Unknown"), when, force)


#: what ``setJobAttribute`` may change (DIRAC's ``MUTABLE_JOB_ATTRIBUTES``); statuses still go
#: through the transition table
MUTABLE_ATTRIBUTES = {"Status", "MinorStatus", "ApplicationStatus", "Site", "StartExecTime",
                      "EndExecTime", "HeartBeatTime"}
_TIME_COLUMNS = {"StartExecTime": "start_exec_time", "EndExecTime": "end_exec_time",
                 "HeartBeatTime": "heartbeat_time"}


def set_attribute(engine: Engine, ident: Identity, job_id: int, name: str, value: Any, *,
                  source: str = "JobStateUpdate") -> None:
    """DIRAC's ``setJobAttribute``: one of :data:`MUTABLE_ATTRIBUTES`; a status is checked
    against the transition table and logged like any status report."""
    if name not in MUTABLE_ATTRIBUTES:
        raise InvalidArgumentError(
            f"Job attribute '{name}' cannot be modified through JobStateUpdate")
    with write_transaction(engine) as conn:
        row = _row(conn, ident, job_id)
        now = utcnow()
        if name in ("Status", "MinorStatus", "ApplicationStatus"):
            status, minor, app = (str(value) if name == n else None
                                  for n in ("Status", "MinorStatus", "ApplicationStatus"))
            _apply(conn, row, status, minor, app, source, now, False)
        elif name == "Site":
            site = str(value).strip()
            if not site or len(site) > 128:
                raise InvalidArgumentError("Site must have 1 to 128 characters")
            jobs_db.update_jobs(conn, [job_id], site=site, last_update_time=now)
        else:
            if not isinstance(value, datetime):
                raise InvalidArgumentError(f"{name} must be a datetime")
            jobs_db.update_jobs(conn, [job_id], **{_TIME_COLUMNS[name]: value})


@retry_conflicts()
def set_parameters(engine: Engine, ident: Identity, params: Mapping[int, Mapping[str, Any]],
                   *, store: ParameterStore | None = None) -> None:
    """Set parameters of the jobs' current attempt (in ``store`` when there is one:
    :mod:`wms.logic.parameter_store`)."""
    values = {j: {k: str(v) for k, v in p.items()} for j, p in params.items()}
    with write_transaction(engine) as conn:
        rows = {job_id: _row(conn, ident, job_id) for job_id in params}
        attempts = {j: row.reschedule_counter for j, row in rows.items()}
        if store is None:
            jobs_db.set_parameters(conn, values, attempts)
            return
    parameter_store.write(engine, store, values, attempts)  # outside the transaction


@retry_conflicts()
def heartbeat(engine: Engine, ident: Identity, job_id: int, dynamic: Mapping[str, Any],
              static: Mapping[str, Any], *, now: datetime | None = None,
              store: ParameterStore | None = None) -> dict[str, str]:
    """Record a heartbeat; returns the job's pending commands (e.g. ``{"Kill": ""}``)."""
    now = now or utcnow()
    if static and store is not None:
        commands = heartbeat(engine, ident, job_id, dynamic, {}, now=now)
        set_parameters(engine, ident, {job_id: static}, store=store)
        return commands
    with write_transaction(engine) as conn:
        row = jobs_db.status_of(conn, [job_id], for_update=True).get(job_id)
        refused = killed_while_reporting(ident, job_id, row)
        if refused is not None:  # nothing recorded; the Kill, if still pending, is sent
            commands = jobs_db.take_commands(conn, job_id, now)
            if not commands:
                raise refused
            return commands
        row = _row(conn, ident, job_id, active=True)
        jobs_db.update_jobs(conn, [job_id], heartbeat_time=now)
        if row.status in (JobStatus.MATCHED, JobStatus.STALLED):
            extra = {"start_exec_time": now} if row.status == JobStatus.MATCHED else {}
            jobs_db.apply_status_changes(
                conn, [jobs_db.StatusChange(job_id, JobStatus.RUNNING, "Job Heartbeat")],
                {job_id: row}, now=now, source="Heartbeat", extra=extra)
        jobs_db.add_heartbeat(conn, job_id, dict(dynamic), now)
        if static:
            jobs_db.set_parameters(conn, {job_id: {k: str(v) for k, v in static.items()}},
                                   {job_id: row.reschedule_counter})
        return jobs_db.take_commands(conn, job_id, now)
