"""From Received to Waiting: the checks DIRAC's optimisers make, done in one pass.

For a batch of jobs (those just submitted or confirmed, or those a sweep finds pending):

1. rescheduled jobs whose back-off delay has passed go back to ``Received``;
2. sanity: the stored JDL parses and validates again for its owner (else ``Failed``/"Illegal
   Job JDL"), unless the job has a scheduling record made when it was validated at
   submission under the same limits (a parametric child: :mod:`wms.logic.scheduling_record`);
3. input data: a resolver passed in by the caller (see :mod:`wms.logic.input_data`) gives the
   sites holding all of a job's input files, and the job is queued for those only, or refuses
   it ("Input Data Not Available", ...); without a resolver, input data is accepted as is;
4. scheduling: the requested sites minus the banned ones must not be empty (else ``Failed``/
   "No candidate sites available"); the site mask is applied at match time, so a job for a
   site banned today waits rather than fails;
5. ``Checking`` then ``Waiting``/"Pilot Agent Submission", both logged, and the job enters its
   task queue through the ``enqueue`` function given by the caller.

Everything happens in one write transaction per batch. A single submission runs
:func:`optimise_new` inside the transaction that stores the job, so the job is Waiting when
the request returns and a crash can never leave it half-way; :func:`optimise` serves bulk
confirmations and rescheduling, and :func:`pending_jobs` lets a sweep pick up anything left in
Received/Checking.

Example::

    >>> from core.db import init_schema, make_engine
    >>> from wms.db.schema import WMS_SCHEMA
    >>> from wms.logic.submission import DEFAULT_LIMITS, Submitter, submit
    >>> engine = make_engine("sqlite://"); _ = init_schema(engine, WMS_SCHEMA)
    >>> ids = submit(engine, '[Executable="ls";]', Submitter("al", "g", "v"),
    ...              DEFAULT_LIMITS).job_ids
    >>> optimise(engine, ids, enqueue=lambda conn, items, now: None).waiting
    [1]
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from core.db import utcnow, write_transaction
from core.exceptions import InvalidJDLError
from core.in_values import in_values
from wms.db import jobs as jobs_db
from wms.db.tables import jobs
from wms.logic import input_data, scheduling_record
from wms.logic.input_data import InputDataCheck
from wms.logic.jdl import parse_jdl
from wms.logic.job_description import DEFAULT_LIMITS, JobDescription, JobLimits, describe_job
from wms.logic.states import JobStatus, MinorStatus

SOURCE = "Optimizer"
Enqueue = Callable[[Connection, Sequence[tuple[int, JobDescription]], datetime], None]


@dataclass
class OptimiseResult:
    waiting: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)
    skipped: list[int] = field(default_factory=list)


def reschedule_delay(counter: int, delays: Sequence[int]) -> int:
    """Seconds to wait before the ``counter``-th attempt (the last delay repeats)."""
    return int(delays[min(max(counter - 1, 0), len(delays) - 1)])


def optimise(
    engine: Engine,
    job_ids: Sequence[int],
    *,
    enqueue: Enqueue,
    limits: JobLimits = DEFAULT_LIMITS,
    check_input_data: InputDataCheck | None = None,
    reschedule_delays: Sequence[int] = (60, 180, 300, 600),
    now: datetime | None = None,
) -> OptimiseResult:
    """Move the given jobs that are Received (or due Rescheduled) to Waiting, in one write
    transaction (jobs just stored in the caller's transaction: :func:`optimise_new`)."""
    with write_transaction(engine) as conn:
        return optimise_in(conn, job_ids, enqueue=enqueue, limits=limits,
                           check_input_data=check_input_data,
                           reschedule_delays=reschedule_delays, now=now)


def optimise_in(
    conn: Connection,
    job_ids: Sequence[int],
    *,
    enqueue: Enqueue,
    limits: JobLimits = DEFAULT_LIMITS,
    check_input_data: InputDataCheck | None = None,
    reschedule_delays: Sequence[int] = (60, 180, 300, 600),
    now: datetime | None = None,
    current: Mapping[int, jobs_db.StatusRow] | None = None,
) -> OptimiseResult:
    """:func:`optimise` inside the caller's write transaction ``conn`` (e.g. the one that
    confirms a bulk submission, so that a crash cannot leave the jobs Received).

    ``current``: the rows of ``job_ids`` as the caller locked them in this transaction, with
    a change it logged but did not write (a bulk confirmation: Received, still Submitting in
    the table); they are not read again, and each job's row is written once, with its final
    status (Waiting or Failed)."""
    now = now or utcnow()
    result = OptimiseResult()
    rows = (dict(current) if current is not None
            else jobs_db.status_of(conn, job_ids, for_update=True))
    rescheduled = [j for j, row in rows.items() if row.status == JobStatus.RESCHEDULED]
    times = dict(conn.execute(sa.select(jobs.c.job_id, jobs.c.reschedule_time)
                              .where(in_values(jobs.c.job_id, rescheduled))).all()) \
        if rescheduled else {}  # a bulk confirmation has none: no query
    due = []
    for job_id in rescheduled:
        row = rows[job_id]
        since = times.get(job_id) or now
        wait = reschedule_delay(row.reschedule_counter, reschedule_delays)
        if since + timedelta(seconds=wait) <= now:
            due.append(job_id)
    if due:  # else the rows just read are still the jobs' state
        jobs_db.apply_status_changes(
            conn, [jobs_db.StatusChange(j, JobStatus.RECEIVED, MinorStatus.JOB_ACCEPTED)
                   for j in due], rows, now=now, source=SOURCE)
        jobs_db.cancel_commands(conn, due, now)  # a new attempt: no Kill meant for the old
        rows = jobs_db.status_of(conn, list(rows))
    todo = [j for j, row in rows.items() if row.status in (JobStatus.RECEIVED,
                                                             JobStatus.CHECKING)]
    result.skipped = sorted(set(job_ids) - set(todo))
    described = _from_records(conn, todo, rows, limits)
    texts = jobs_db.jdls_of(conn, [j for j in todo if j not in described])
    for job_id in todo:
        if job_id in described:
            continue
        row = rows[job_id]
        try:
            text = texts.get(job_id)
            if text is None:
                raise InvalidJDLError("no JDL stored")
            described[job_id] = describe_job(parse_jdl(text), owner=row.owner,
                                             owner_group=row.owner_group, vo=row.vo,
                                             limits=limits)
        except InvalidJDLError:
            result.failed[job_id] = MinorStatus.ILLEGAL_JOB_JDL
    described = {j: described[j] for j in todo if j in described}  # in the jobs' order
    refused, data_sites = _schedule(described, check_input_data, result.failed)
    result.failed.update(refused)
    _restrict(conn, described, data_sites)
    fail_changes = [jobs_db.StatusChange(j, JobStatus.FAILED, reason)
                    for j, reason in result.failed.items()]
    jobs_db.apply_status_changes(conn, fail_changes, rows, now=now, source=SOURCE,
                                 extra={"end_exec_time": now})
    good = [j for j in described if j not in result.failed]
    # Received -> Checking -> Waiting in one UPDATE per 1,000 jobs (Checking lasts only this
    # transaction: nobody else can see it), both steps logged, Checking first
    jobs_db.add_logging(conn, [(j, JobStatus.CHECKING, MinorStatus.JOB_ACCEPTED,
                                rows[j].application_status)
                               for j in good if rows[j].status == JobStatus.RECEIVED],
                        now=now, source=SOURCE)
    jobs_db.apply_status_changes(
        conn, [jobs_db.StatusChange(j, JobStatus.WAITING, MinorStatus.PILOT_AGENT_SUBMISSION)
               for j in good], rows, now=now, source=SOURCE)
    enqueue(conn, [(j, described[j]) for j in good], now)
    result.waiting = sorted(good)
    return result


def _from_records(conn: Connection, todo: Sequence[int], rows: Mapping[int, jobs_db.StatusRow],
                  limits: JobLimits) -> dict[int, JobDescription]:
    """The descriptions of the jobs whose scheduling record is valid under ``limits``
    (the others are described from their JDL). Children with equal records and owners
    share one description: nothing here or in ``enqueue`` changes one in place."""
    made: dict[tuple[str, str, str, str], JobDescription | None] = {}
    out: dict[int, JobDescription] = {}
    for job_id, text in jobs_db.scheduling_of(conn, todo).items():
        row = rows[job_id]
        key = (text, row.owner, row.owner_group, row.vo)
        if key not in made:
            made[key] = scheduling_record.decode(text, owner=row.owner,
                                                 owner_group=row.owner_group, vo=row.vo,
                                                 limits=limits)
        desc = made[key]
        if desc is not None:
            out[job_id] = desc
    return out


def optimise_new(
    conn: Connection,
    described: Mapping[int, JobDescription],
    *,
    enqueue: Enqueue,
    now: datetime,
    check_input_data: InputDataCheck | None = None,
    logged: list[tuple[int, str, str, str, str]] | None = None,
) -> OptimiseResult:
    """Optimise jobs stored as Received moments ago in the caller's transaction ``conn``,
    with the descriptions validated at submission: no re-reading, one status update and one
    logging insert for the lot (Checking, then Waiting), then ``enqueue``. A single
    submission is thereby one transaction from request to Waiting.

    ``logged``: the jobs' first logging records (job, status, minor, application, source),
    not written yet (:func:`wms.logic.submission.submit`'s ``defer_logging``): they go first
    into the optimiser's first logging INSERT, and the list is emptied.
    """
    pending = list(logged or [])
    if logged:
        logged.clear()

    def log(records: list[tuple[int, str, str, str]]) -> None:
        nonlocal pending
        if pending:  # the submission's records first, in the same INSERT
            jobs_db.add_logging_rows(conn, pending + [(*r, SOURCE) for r in records], now=now)
            pending = []
        else:
            jobs_db.add_logging(conn, records, now=now, source=SOURCE)

    plan = plan_new(described, check_input_data)
    result = _finish(conn, plan, log, enqueue=enqueue, now=now, write_waiting=True)
    if pending:
        jobs_db.add_logging_rows(conn, pending, now=now)
    return result


@dataclass(frozen=True)
class NewJobsOptimiser:
    """How a bulk submission optimises the jobs it stores (``submission.submit_many``'s
    ``optimise``): as :func:`optimise_new` with these arguments, the jobs to be Waiting
    inserted Waiting (no UPDATE of their rows, each firing the counters' trigger)."""

    enqueue: Enqueue
    check_input_data: InputDataCheck | None = None


@dataclass
class NewJobsPlan:
    """What :func:`optimise_new` decides for jobs before they are stored (by
    :func:`plan_new`), keyed as their descriptions were given (e.g. by index): a caller
    that stores them afterwards inserts the jobs to be Waiting as Waiting, in their
    :meth:`site`, and then calls :func:`finish_new`."""

    #: the descriptions, those restricted to their data's sites changed accordingly
    described: dict[int, JobDescription]
    #: key -> minor status of the jobs that fail
    failed: dict[int, str]
    #: key -> Site of the jobs restricted to the sites holding their data
    site_of: dict[int, str]

    def waiting(self, key: int) -> bool:
        return key not in self.failed

    def site(self, key: int, default: str) -> str:
        """The Site of a job to be Waiting (``default``: its description's)."""
        return self.site_of.get(key, default)


def plan_new(described: Mapping[int, JobDescription],
             check_input_data: InputDataCheck | None = None) -> NewJobsPlan:
    """:func:`optimise_new`'s decisions for the jobs of ``described`` (not read from the
    database: they may not be stored yet)."""
    plan = NewJobsPlan(dict(described), {}, {})
    plan.failed, data_sites = _schedule(plan.described, check_input_data, {})
    plan.site_of = {j: s for s, ids in _restrict(None, plan.described, data_sites,
                                                 write=False).items() for j in ids}
    return plan


def finish_new(conn: Connection, plan: NewJobsPlan, job_ids: Mapping[int, int], *,
               enqueue: Enqueue, now: datetime) -> OptimiseResult:
    """What :func:`optimise_new` writes for jobs stored Received moments ago in ``conn``'s
    transaction, except the status of those to be Waiting, stored Waiting already (with
    :meth:`NewJobsPlan.site`): the failures, the logging records (the same rows, in the same
    order) and the task queues. ``job_ids``: the plan's key -> the job's ID."""
    plan = NewJobsPlan({job_ids[k]: d for k, d in plan.described.items()},
                       {job_ids[k]: r for k, r in plan.failed.items()},
                       {job_ids[k]: s for k, s in plan.site_of.items()})

    def log(records: list[tuple[int, str, str, str]]) -> None:
        jobs_db.add_logging(conn, records, now=now, source=SOURCE)

    return _finish(conn, plan, log, enqueue=enqueue, now=now, write_waiting=False)


def _finish(conn: Connection, plan: NewJobsPlan,
            log: Callable[[list[tuple[int, str, str, str]]], None], *, enqueue: Enqueue,
            now: datetime, write_waiting: bool) -> OptimiseResult:
    """:func:`optimise_new`'s writes; ``write_waiting``: the jobs to be Waiting are still
    Received (else stored Waiting already)."""
    result = OptimiseResult()
    result.failed = plan.failed
    described = plan.described
    for reason in dict.fromkeys(result.failed.values()):
        failed = [j for j, r in result.failed.items() if r == reason]
        jobs_db.update_jobs(conn, failed, status=JobStatus.FAILED, minor_status=reason,
                            last_update_time=now, end_exec_time=now)
        log([(j, JobStatus.FAILED, reason, "Unknown") for j in failed])
    good = [j for j in described if j not in result.failed]
    if good:
        by_site: dict[str | None, list[int]] = {}
        for j in good:
            by_site.setdefault(plan.site_of.get(j), []).append(j)
        for site, ids in by_site.items() if write_waiting else ():
            # one UPDATE per 1,000 jobs and distinct Site
            extra = {} if site is None else {"site": site}
            jobs_db.update_jobs(conn, ids, status=JobStatus.WAITING,
                                minor_status=MinorStatus.PILOT_AGENT_SUBMISSION,
                                last_update_time=now, **extra)
        log([rec for j in good for rec in (
            (j, JobStatus.CHECKING, MinorStatus.JOB_ACCEPTED, "Unknown"),
            (j, JobStatus.WAITING, MinorStatus.PILOT_AGENT_SUBMISSION, "Unknown"))])
        enqueue(conn, [(j, described[j]) for j in good], now)
    result.waiting = sorted(good)
    return result


def _schedule(described: Mapping[int, JobDescription],
              check_input_data: InputDataCheck | None,
              already: Mapping[int, str]) -> tuple[dict[int, str], dict[int, tuple[str, ...]]]:
    """({job: minor status} of the jobs that cannot run, {job: sites} of the jobs that may
    run only where their input data is). Refused: no site left once the banned ones are
    removed ("No candidate sites available"); input data refused by the resolver (see
    :mod:`wms.logic.input_data`)."""
    refused: dict[int, str] = {}
    for job_id, desc in described.items():
        if desc.sites and not set(desc.sites) - set(desc.banned_sites):
            refused[job_id] = MinorStatus.NO_CANDIDATE_SITE_FOUND
    restricted: dict[int, tuple[str, ...]] = {}
    if check_input_data is not None:
        wanted = {j: d.input_data for j, d in described.items()
                  if d.input_data and j not in refused and j not in already}
        for job_id, verdict in (check_input_data(wanted) if wanted else {}).items():
            desc = described[job_id]
            verdict = input_data.narrow(verdict, sites=desc.sites, banned=desc.banned_sites)
            if verdict.reason:
                refused[job_id] = verdict.reason
            else:
                restricted[job_id] = verdict.sites
    return refused, restricted


def _restrict(conn: Connection | None, described: dict[int, JobDescription],
              data_sites: Mapping[int, tuple[str, ...]], *,
              write: bool = True) -> dict[str, list[int]]:
    """Queue the jobs for the sites holding their data only; their Site attribute says so
    (written here, or by the caller when ``write`` is False); returns {Site: jobs}."""
    by_summary: dict[str, list[int]] = {}
    for job_id, sites in data_sites.items():
        desc = replace(described[job_id], sites=list(sites))
        described[job_id] = desc
        by_summary.setdefault(desc.site_summary, []).append(job_id)
    if write and conn is not None:
        for summary, ids in by_summary.items():  # one statement per distinct Site value
            jobs_db.update_jobs(conn, ids, site=summary)
    return by_summary


def pending_jobs(conn: Connection, *, older_than: timedelta, now: datetime,
                 limit: int = 1000) -> list[int]:
    """Jobs a crash may have left behind (Received/Checking untouched for ``older_than``) and
    rescheduled jobs, oldest first."""
    query = (sa.select(jobs.c.job_id)
             .where(sa.or_(
                 sa.and_(jobs.c.status.in_([JobStatus.RECEIVED, JobStatus.CHECKING]),
                         jobs.c.last_update_time <= now - older_than),
                 jobs.c.status == JobStatus.RESCHEDULED))
             .order_by(jobs.c.last_update_time).limit(limit))
    return [int(x) for x in conn.execute(query).scalars()]
