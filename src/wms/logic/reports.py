"""What running jobs report, written in batches: heartbeats, status and parameter reports of
many requests in ONE transaction (the write-behind path of ``JobStateUpdate``).

:func:`apply_reports` takes reports in arrival order and gives one result per report, with
the rules of :mod:`wms.logic.state_update` applied to each exactly as a call of its own
would: the same rights (:func:`~wms.logic.state_update.check_reporter`), the same transitions
(:func:`~wms.logic.state_update.plan_change`), a heartbeat of a Matched or Stalled job makes it
Running, a heartbeat's reply carries the job's pending commands (``Kill``). Reports of one job
see each other's effects in order (a ``Running`` then an ``Application`` minor status in one
batch is what two calls would do). A report refused by the rules gets its error and changes
nothing; the others go on.

The transaction locks the jobs' rows in job ID order (``SELECT ... FOR UPDATE`` on MariaDB),
so two batches (two server processes) never wait for each other in a cycle; a deadlock or
conflict with another writer re-runs the whole batch (:func:`core.db.retry_conflicts`). If the
batch fails otherwise (a row the database refuses), each report is retried in a transaction
of its own, so one bad row fails alone. :func:`committer` wraps it all in a
:class:`~core.group_commit.GroupCommitter`: requests are answered once their report is
committed.

Example::

    >>> from core.db import init_schema, make_engine, utcnow
    >>> from core.security.identity import Identity
    >>> from wms.db.schema import WMS_SCHEMA
    >>> from wms.logic.submission import DEFAULT_LIMITS, Submitter, submit
    >>> engine = make_engine("sqlite://"); _ = init_schema(engine, WMS_SCHEMA)
    >>> [job] = submit(engine, '[Executable="ls";]', Submitter("al", "g", "v"),
    ...                DEFAULT_LIMITS).job_ids
    >>> al = Identity(auth_method="x509", username="al", group="g", vo="v", valid_dn=True,
    ...               valid_group=True)
    >>> now = utcnow()
    >>> apply_reports(engine, [StatusReport(al, job, application="Step 1", when=now),
    ...                        Heartbeat(al, job, {"CPUConsumed": 1}, {}, when=now),
    ...                        ParameterReport(al, 999, {"A": "1"})])
    [None, {}, JobNotFoundError('Job 999 not found')]
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine

from core.db import retry_conflicts, rolled_back, utcnow, write_transaction
from core.exceptions import DatabaseError, PilotWMSError
from core.faults import service_error
from core.group_commit import GroupCommitter
from core.security.identity import Identity
from wms.db import heartbeats as heartbeats_db
from wms.db import jobs as jobs_db
from wms.db import outbox
from wms.db import reports as reports_db
from wms.db import task_queues as tq_db
from wms.logic import parameter_store
from wms.logic.parameter_store import ParameterStore
from wms.logic.state_update import (
    check_reporter,
    killed_while_reporting,
    leaves_queue,
    plan_change,
)
from wms.logic.states import JobStatus

log = logging.getLogger("pilotwms.wms.reports")

__all__ = ["GroupCommitSettings", "Heartbeat", "ParameterReport", "Report", "StatusReport",
           "apply_reports", "committer"]


@dataclass(frozen=True)
class Heartbeat:
    """``sendHeartBeat``: dynamic data (history rows) and static data (parameters)."""

    ident: Identity
    job_id: int
    dynamic: Mapping[str, Any]
    static: Mapping[str, Any]
    when: datetime = field(default_factory=utcnow)


@dataclass(frozen=True)
class StatusReport:
    """``setJobStatus`` / ``setJobApplicationStatus``: empty strings keep the value."""

    ident: Identity
    job_id: int
    status: str = ""
    minor: str = ""
    application: str = ""
    source: str = "Unknown"
    when: datetime = field(default_factory=utcnow)
    force: bool = False


@dataclass(frozen=True)
class ParameterReport:
    """``setJobParameter(s)``: parameters of the job's current attempt."""

    ident: Identity
    job_id: int
    values: Mapping[str, Any]


Report = Heartbeat | StatusReport | ParameterReport


@dataclass
class _Batch:
    """What a batch writes, gathered while its reports are checked in order."""

    current: dict[int, jobs_db.StatusRow]
    heartbeat_times: dict[int, datetime] = field(default_factory=dict)
    #: (job, data, time): one row per heartbeat with dynamic data
    heartbeat_rows: list[tuple[int, str, datetime]] = field(default_factory=list)
    #: job -> column -> value, later reports overriding earlier ones
    columns: dict[int, dict[str, Any]] = field(default_factory=dict)
    logging: list[tuple[int, str, str, str, datetime, str]] = field(default_factory=list)
    ended: list[tuple[int, str]] = field(default_factory=list)
    parameters: list[tuple[int, int, str, str]] = field(default_factory=list)
    #: report index -> job, for the heartbeats that take the job's commands
    command_takers: dict[int, int] = field(default_factory=dict)
    taker_jobs: set[int] = field(default_factory=set)
    #: report index -> (job, refusal): heartbeats of the job's own pilot after a kill, sent
    #: the job's pending commands instead of the refusal when there are some
    killed: dict[int, tuple[int, Exception]] = field(default_factory=dict)
    #: jobs a report took out of Waiting: out of their task queues too
    dequeued: list[int] = field(default_factory=list)

    def change(self, change: jobs_db.StatusChange, extra: Mapping[str, Any], when: datetime,
               source: str) -> None:
        row = self.current[change.job_id]
        new = (change.status or row.status, change.minor_status or row.minor_status,
               change.application_status or row.application_status)
        columns = self.columns.setdefault(change.job_id, {})
        columns.update(status=new[0], minor_status=new[1], application_status=new[2],
                       last_update_time=when, **extra)
        self.logging.append((change.job_id, *new, when, source[:32]))
        if new[0] != row.status and new[0] in outbox.FINAL_JOB_STATUSES:
            self.ended.append((change.job_id, new[0]))
        self.current[change.job_id] = dataclasses.replace(
            row, status=new[0], minor_status=new[1], application_status=new[2])


def _plan(batch: _Batch, index: int, report: Report) -> Any:
    """Check one report against the batch's current rows and record its writes; returns its
    result (commands are filled in later) or raises what a call of its own would."""
    row = batch.current.get(report.job_id)
    if isinstance(report, Heartbeat):
        # raises what check_reporter(active=True) refuses, except the heartbeats of a killed
        # job's own pilot (returned); None: check_reporter(active=True) passes too
        refused = killed_while_reporting(report.ident, report.job_id, row)
        if refused is not None:
            batch.killed[index] = (report.job_id, refused)
            return refused
        assert row is not None  # noqa: S101 - checked
        when = report.when
        batch.heartbeat_times[report.job_id] = when
        if row.status in (JobStatus.MATCHED, JobStatus.STALLED):
            extra = {"start_exec_time": when} if row.status == JobStatus.MATCHED else {}
            batch.change(jobs_db.StatusChange(report.job_id, JobStatus.RUNNING,
                                              "Job Heartbeat"), extra, when, "Heartbeat")
        if report.dynamic:
            batch.heartbeat_rows.append((report.job_id, heartbeats_db.encode(report.dynamic),
                                         when))
        batch.parameters.extend((report.job_id, row.reschedule_counter, str(k), str(v))
                                for k, v in report.static.items())
        if report.job_id not in batch.taker_jobs:
            batch.taker_jobs.add(report.job_id)
            batch.command_takers[index] = report.job_id
        return {}
    if isinstance(report, StatusReport):
        check_reporter(report.ident, report.job_id, row,
                       active=bool(report.status or report.minor))
        assert row is not None  # noqa: S101 - checked
        change, extra = plan_change(row, report.status, report.minor, report.application,
                                    report.when, report.force)
        if leaves_queue(row, change):
            batch.dequeued.append(report.job_id)
        batch.change(change, extra, report.when, report.source)
        return None
    check_reporter(report.ident, report.job_id, row)
    assert row is not None  # noqa: S101 - checked
    batch.parameters.extend((report.job_id, row.reschedule_counter, str(k), str(v))
                            for k, v in report.values.items())
    return None


@retry_conflicts()
def _apply_batch(engine: Engine, reports: Sequence[Report], store: ParameterStore | None,
                 now: datetime | None = None
                 ) -> tuple[list[Any], list[tuple[int, int, str, str]]]:
    """(results, parameters left for ``store``) of one transaction."""
    now = now or utcnow()
    results: list[Any] = []
    with write_transaction(engine) as conn:
        batch = _Batch(jobs_db.status_of(conn, [r.job_id for r in reports], for_update=True))
        for index, report in enumerate(reports):
            try:
                results.append(_plan(batch, index, report))
            except PilotWMSError as exc:
                results.append(exc)
        if batch.heartbeat_times:
            reports_db.set_heartbeat_times(conn, batch.heartbeat_times)
        if batch.dequeued:
            tq_db.remove_jobs(conn, batch.dequeued)
        if batch.columns:
            reports_db.update_job_rows(conn, batch.columns, ended=batch.ended, now=now)
        if batch.logging:
            reports_db.add_logging_rows(conn, batch.logging)
        if batch.heartbeat_rows:
            reports_db.add_heartbeat_rows(conn, batch.heartbeat_rows)
        if batch.parameters and store is None:
            reports_db.upsert_parameters(conn, batch.parameters)
        takers = batch.taker_jobs
        killed = {index: job for index, (job, _) in batch.killed.items() if job not in takers}
        if takers or killed:
            commands = reports_db.take_commands_of(conn, takers | set(killed.values()), now)
            for index, job_id in batch.command_takers.items():
                results[index] = commands.get(job_id, {})
            for index, job_id in killed.items():  # the first such heartbeat gets them
                if commands.get(job_id):
                    results[index] = commands.pop(job_id)
    return results, batch.parameters if store is not None else []


def _write_store(engine: Engine, store: ParameterStore,
                 parameters: Sequence[tuple[int, int, str, str]]) -> None:
    """Parameters to the external store, after the commit (as state_update does); a store
    that cannot be reached falls back to the table (:func:`parameter_store.write`)."""
    values: dict[int, dict[str, str]] = {}
    attempts: dict[int, int] = {}
    for job_id, attempt, name, value in parameters:
        values.setdefault(job_id, {})[name] = value
        attempts[job_id] = attempt
    parameter_store.write(engine, store, values, attempts)


def _client_error(exc: Exception) -> Exception:
    """What a request gets for a failed write (as the RPC server's blocking path does)."""
    if rolled_back(exc):
        return DatabaseError("the database rolled this change back (a concurrent change of "
                             "the same data, or a database node leaving its cluster): try "
                             "again")
    return service_error(exc) or exc


def apply_reports(engine: Engine, reports: Sequence[Report], *,
                  store: ParameterStore | None = None) -> list[Any]:
    """Write ``reports`` in one transaction; one result per report, in order: a heartbeat's
    pending commands (a dict), None for other reports, or the exception refusing the report.

    A failure of the batch as a whole is retried report by report (each in its own
    transaction), unless the database cannot be reached at all: then every report gets that
    error.
    """
    if not reports:
        return []
    try:
        results, parameters = _apply_batch(engine, reports, store)
    except Exception as exc:  # noqa: BLE001 - given to the waiting requests, not raised
        error = _client_error(exc)
        if len(reports) == 1 or (isinstance(error, PilotWMSError) and error.http_status == 503):
            return [error] * len(reports)
        log.warning("a batch of %d reports failed (%s): retrying them one by one",
                    len(reports), str(exc).splitlines()[0][:200])
        return [apply_reports(engine, [report], store=store)[0] for report in reports]
    if parameters and store is not None:
        try:
            _write_store(engine, store, parameters)
        except Exception as exc:  # noqa: BLE001 - committed: only the parameters failed
            log.exception("writing %d parameters to the parameter store failed",
                          len(parameters))
            failed = {job_id for job_id, _, _, _ in parameters}
            error = _client_error(exc)
            results = [error if r.job_id in failed and not isinstance(result, Exception)
                       and (isinstance(r, ParameterReport) or (isinstance(r, Heartbeat)
                                                               and r.static)) else result
                       for r, result in zip(reports, results, strict=True)]
    return results


@dataclass(frozen=True)
class GroupCommitSettings:
    """``Systems.WorkloadManagement.Services.JobStateUpdate.Options``: ``GroupCommit``
    (default true), ``GroupCommitMaxBatch`` (reports per transaction, default 1000),
    ``GroupCommitLingerMs`` (how long a report finding the writer idle waits for others
    while traffic is concurrent,
    default 2 ms).

    >>> GroupCommitSettings.from_options({"GroupCommitMaxBatch": "200"}).max_batch
    200
    """

    enabled: bool = True
    max_batch: int = 1000
    linger_ms: float = 2.0

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> GroupCommitSettings:
        from core.exceptions import ConfigError

        try:
            enabled = options.get("GroupCommit", True)
            if isinstance(enabled, str):
                enabled = enabled.strip().lower() not in ("false", "no", "0", "off")
            settings = cls(bool(enabled), int(options.get("GroupCommitMaxBatch", 1000)),
                           float(options.get("GroupCommitLingerMs", 2.0)))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"JobStateUpdate options: {exc}") from None
        if settings.max_batch < 1 or not 0 <= settings.linger_ms <= 60_000:
            raise ConfigError("JobStateUpdate options: GroupCommitMaxBatch must be >= 1 and "
                              "GroupCommitLingerMs within 0-60000")
        return settings


def committer(engine: Engine, *, store: ParameterStore | None = None,
              settings: GroupCommitSettings | None = None,
              name: str = "wms-reports") -> GroupCommitter[Report, Any]:
    """A group committer writing reports to ``engine`` (one per server process)."""
    settings = settings or GroupCommitSettings()

    def flush(items: Sequence[Report]) -> list[Any]:
        return apply_reports(engine, items, store=store)

    return GroupCommitter(flush, max_batch=settings.max_batch,
                          linger=settings.linger_ms / 1000, name=name)
