"""Silent jobs and old jobs: what the StalledJobAgent does each cycle.

1. ``Running`` jobs without a heartbeat for ``StalledAfterMinutes`` become ``Stalled``/"Job
   stalled: pilot not running" (a later heartbeat brings them back to Running).
2. ``Stalled`` jobs still silent after ``FailAfterMinutes`` become ``Failed`` with the same
   minor status, then, if ``RescheduleStalled``, are rescheduled (Failed -> Rescheduled is an
   allowed transition; the rescheduling limit applies).
3. ``Matched`` jobs that did not start within ``MatchedTimeoutMinutes`` are rescheduled.
4. Jobs in a final state for ``RemoveFinalAfterDays`` are removed with their history,
   parameters and heartbeat data; their sandboxes are unassigned, so the sandbox store's
   cleanup deletes them.

Each step works on many jobs per transaction; ``mine(job_id)`` lets several agent copies
split the work.

Example::

    >>> from core.config.schema import StalledJobsConfig
    >>> StalledJobsConfig().stalled_after_minutes
    10.0
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.engine import Connection, Engine

from core.config.schema import StalledJobsConfig
from core.db import utcnow, write_transaction
from core.security.identity import Identity
from wms.db import jobs as jobs_db
from wms.logic import job_manager
from wms.logic.states import FINAL, JobStatus

SOURCE = "StalledJobAgent"
STALLED_MINOR = "Job stalled: pilot not running"
#: the agent acts as an administrator of every job
AGENT_IDENTITY = Identity(auth_method="x509", username=SOURCE, group="agents",
                          properties=frozenset({"JobAdministrator"}), valid_dn=True,
                          valid_group=True)

Dequeue = Callable[[Connection, list[int]], None]
Unassign = Callable[[list[str]], object]


@dataclass
class StalledReport:
    stalled: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    rescheduled: list[int] = field(default_factory=list)
    removed: list[int] = field(default_factory=list)


def _set(engine: Engine, job_ids: list[int], status: str, minor: str, now: datetime,
         expected: str) -> list[int]:
    """Move the jobs still in ``expected`` (re-checked under the write lock)."""
    with write_transaction(engine) as conn:
        rows = jobs_db.status_of(conn, job_ids, for_update=True)
        todo = [j for j, row in rows.items() if row.status == expected]
        extra = {"end_exec_time": now} if status in FINAL else {}
        jobs_db.apply_status_changes(conn, [jobs_db.StatusChange(j, status, minor)
                                            for j in todo], rows, now=now, source=SOURCE,
                                     extra=extra)
    return sorted(todo)


def check_jobs(engine: Engine, conf: StalledJobsConfig, *, dequeue: Callable[..., None],
               max_rescheduling: int, unassign: Unassign | None = None,
               mine: Callable[[int], bool] = lambda job_id: True,
               now: datetime | None = None) -> StalledReport:
    now = now or utcnow()
    report = StalledReport()
    with engine.connect() as conn:
        running = jobs_db.silent_jobs(conn, [JobStatus.RUNNING, JobStatus.COMPLETING],
                                      now - timedelta(minutes=conf.stalled_after_minutes))
        stalled = jobs_db.silent_jobs(conn, [JobStatus.STALLED],
                                      now - timedelta(minutes=conf.fail_after_minutes))
        matched = jobs_db.silent_jobs(conn, [JobStatus.MATCHED],
                                      now - timedelta(minutes=conf.matched_timeout_minutes),
                                      by_update=True)
        old: list[int] = []
        if conf.remove_final_after_days > 0:
            old = jobs_db.silent_jobs(
                conn, [*map(str, FINAL), JobStatus.DELETED],
                now - timedelta(days=conf.remove_final_after_days), by_update=True)
    running, stalled, matched, old = ([j for j in ids if mine(j)]
                                      for ids in (running, stalled, matched, old))
    for status in (JobStatus.RUNNING, JobStatus.COMPLETING):
        report.stalled += _set(engine, running, JobStatus.STALLED, STALLED_MINOR, now, status)
    report.failed = _set(engine, stalled, JobStatus.FAILED, STALLED_MINOR, now,
                         JobStatus.STALLED)
    again = matched + (report.failed if conf.reschedule_stalled else [])
    if again:
        result = job_manager.reschedule_jobs(engine, AGENT_IDENTITY, again, dequeue=dequeue,
                                             max_rescheduling=max_rescheduling, now=now)
        report.rescheduled = result.done
    if old:
        result = job_manager.remove_jobs(engine, AGENT_IDENTITY, old, dequeue=dequeue)
        report.removed = result.done
        if unassign is not None and report.removed:
            unassign([f"Job:{j}" for j in report.removed])
    return report
