"""Submitting jobs: from a JDL text to stored jobs, in as few statements as possible.

A single JDL becomes one job in ``Received``/"Job accepted". A parametric JDL becomes N
children in ``Submitting``/"Bulk transaction confirmation" until the client confirms them
(:func:`confirm_bulk`), as DIRAC does, so a client that dies mid-submission leaves no half
batch running. Everything is validated before anything is stored: a bad child fails the whole
submission with an error naming the attribute, and nothing is kept.

Database work for N jobs: one INSERT ... RETURNING per 1,000 jobs, one INSERT for the JDLs
(original and processed: the processed one needs the job ID, so it is made between the two
INSERTs), one for input data, one for the logging records, all in one transaction. A bulk
submission (:func:`submit_many`) is :func:`prepare_many` (no database writes) then
:func:`store_prepared` (the transaction), so a caller may prepare one batch while storing
another.

Example::

    >>> from core.db import init_schema, make_engine
    >>> from wms.db.schema import WMS_SCHEMA
    >>> engine = make_engine("sqlite://"); _ = init_schema(engine, WMS_SCHEMA)
    >>> owner = Submitter("alice", "demo_user", "demo")
    >>> submit(engine, '[Executable = "/bin/true";]', owner, DEFAULT_LIMITS).job_ids
    [1]
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from sqlalchemy.engine import Connection, Engine

from core.db import retry_conflicts, utcnow, write_transaction
from wms.db import jobs as jobs_db
from wms.logic import optimizer, scheduling_record
from wms.logic.child_description import ChildDescriber
from wms.logic.jdl import JDL, TextTemplate, parse_jdl
from wms.logic.job_description import (
    DEFAULT_LIMITS,
    JobDescription,
    JobLimits,
    describe_job,
    processed_jdl,
)
from wms.logic.parametric import (
    expand_with_varying,
    is_parametric,
    job_id_attributes,
    substitute_job_id,
)
from wms.logic.processed_text import ProcessedTemplate
from wms.logic.states import JobStatus, MinorStatus

__all__ = ["DEFAULT_LIMITS", "PreparedJobs", "SubmitResult", "Submitter", "confirm_bulk",
           "describe", "prepare_many", "store", "store_in", "store_prepared", "submit",
           "submit_many"]

SOURCE = "JobManager"


@dataclass(frozen=True)
class Submitter:
    owner: str
    owner_group: str
    vo: str


@dataclass(frozen=True)
class SubmitResult:
    job_ids: list[int]
    parametric: bool
    #: job ID -> the ``SB:`` references of its input sandbox (to assign to the job)
    input_sandboxes: dict[int, list[str]]
    #: job ID -> its validated description (lets the optimiser skip re-validation)
    descriptions: dict[int, JobDescription]
    #: with ``defer_logging``: the jobs' first logging records (job, status, minor,
    #: application, source), not yet written; ``on_stored`` may write them with its own
    #: (emptying the list), else they are written once it returns
    logging: list[tuple[int, str, str, str, str]] = field(default_factory=list)


def sandbox_references(jdl_text: str) -> list[str]:
    """The ``SB:`` entries of a JDL's InputSandbox (checked before anything is stored)."""
    jdl = parse_jdl(jdl_text)
    return [str(item) for item in jdl.get_list("InputSandbox", [])
            if str(item).startswith("SB:")]


def _describe(jdl: JDL, who: Submitter, limits: JobLimits) -> JobDescription:
    return describe_job(jdl, owner=who.owner, owner_group=who.owner_group, vo=who.vo,
                        limits=limits)


#: called inside the storing transaction, e.g. to assign sandboxes and optimise at once
OnStored = Callable[[Connection, "SubmitResult", datetime], None]


@retry_conflicts()
def submit(engine: Engine, jdl_text: str, who: Submitter, limits: JobLimits,
           now: datetime | None = None, *, on_stored: OnStored | None = None,
           initial: tuple[str, str] | None = None, defer_logging: bool = False
           ) -> SubmitResult:
    """Validate and store the job(s) of ``jdl_text``; returns their IDs in order.

    ``on_stored(conn, result, now)`` runs in the same write transaction once the jobs are
    stored: what it writes commits with them, and if it raises nothing is stored.
    ``initial`` = (status, minor status) replaces Received/"Job accepted" (e.g. Standby for a
    job subscribed to an event). ``defer_logging`` (single jobs only; ignored for a
    parametric JDL): the first logging records are left in ``result.logging`` for
    ``on_stored``, which must write no other logging record before them (the optimiser
    writes them with its own: one INSERT instead of two).
    """
    jdl = parse_jdl(jdl_text)
    parametric = is_parametric(jdl)
    children, varying = (expand_with_varying(jdl, limits.max_parametric_jobs) if parametric
                         else ([jdl], None))
    return store(engine, children, who, limits, now, on_stored=on_stored, initial=initial,
                 parametric=parametric, defer_logging=defer_logging and not parametric,
                 varying=varying)


def store(engine: Engine, children: Sequence[JDL], who: Submitter, limits: JobLimits,
          now: datetime | None = None, *, on_stored: OnStored | None = None,
          initial: tuple[str, str] | None = None, parametric: bool = False,
          defer_logging: bool = False, varying: Collection[str] | None = None
          ) -> SubmitResult:
    """Validate and store already expanded JDLs (one job each) in one transaction.

    ``parametric`` children start in Submitting/"Bulk transaction confirmation" (and ``%j``
    is replaced by each job's ID); others in ``initial`` or Received/"Job accepted".
    ``varying``: the children hold the same attributes with the same values except these
    (lower-case names, as :func:`~wms.logic.parametric.expand_with_varying` gives them);
    they are then described from one template (:mod:`wms.logic.child_description`).
    """
    now = now or utcnow()
    describer: ChildDescriber | None = None
    if varying is not None and children:
        describer = ChildDescriber(children[0], varying, owner=who.owner,
                                   owner_group=who.owner_group, vo=who.vo, limits=limits)
        descriptions = [describer.describe(child) for child in children]
    else:
        descriptions = [_describe(child, who, limits) for child in children]
    with write_transaction(engine) as conn:
        return store_in(conn, children, descriptions, who, limits, now, on_stored=on_stored,
                        initial=initial, parametric=parametric, defer_logging=defer_logging,
                        describer=describer)


def store_in(conn: Connection, children: Sequence[JDL], descriptions: Sequence[JobDescription],
             who: Submitter, limits: JobLimits, now: datetime, *,
             on_stored: OnStored | None = None, initial: tuple[str, str] | None = None,
             parametric: bool = False, defer_logging: bool = False,
             describer: ChildDescriber | None = None) -> SubmitResult:
    """:func:`store` inside the caller's write transaction, with the children's
    descriptions already made (by :func:`describe`); ``defer_logging`` as in
    :func:`submit`; ``describer``: the one that described the children (then a child's
    description after ``%j`` is replaced is made from it too)."""
    status: str
    minor: str
    if parametric:
        status, minor = JobStatus.SUBMITTING, MinorStatus.BULK_TRANSACTION_CONFIRMATION
    else:
        status, minor = initial or (JobStatus.RECEIVED, MinorStatus.JOB_ACCEPTED)
    # the children's texts written from one template (those of a parametric JDL hold the
    # same attributes with the same values except the varying ones)
    write = (TextTemplate(children[0], describer.varying).text
             if describer is not None and children else JDL.to_text)
    new = [
        jobs_db.NewJob(
            owner=who.owner, owner_group=who.owner_group, vo=who.vo, status=status,
            minor_status=minor, original_jdl=write(child), job_type=desc.job_type,
            job_group=desc.job_group, job_name=desc.job_name, site=desc.site_summary,
            user_priority=desc.priority, input_data=desc.input_data,
        )
        for child, desc in zip(children, descriptions, strict=True)
    ]
    final: dict[int, JobDescription] = {}
    describe_with_id, template = (_templates(describer, children, descriptions, who, limits)
                                  if parametric else (None, None))

    def texts(index: int, job_id: int) -> jobs_db.Texts:
        """The processed JDL, stored with the job's row (and the original one when ``%j``
        makes it depend on the ID): no UPDATE per job afterwards. A parametric child also
        gets its scheduling record: its confirmation then parses no JDL again."""
        desc = descriptions[index]
        original = new[index].original_jdl
        if describe_with_id is not None and "%j" in original:
            child = substitute_job_id(children[index], job_id)
            desc = describe_with_id(child)
            original = child.to_text()
        final[job_id] = desc
        if parametric:
            processed = (template.text(desc, job_id) if template is not None
                         else processed_jdl(desc, job_id).to_text())
            return original, processed, scheduling_record.encode(desc, limits)
        return processed_jdl(desc, job_id).to_text()

    ids = jobs_db.insert_jobs(conn, new, now=now, source=SOURCE, processed=texts,
                              log=not defer_logging)
    sandboxes = {job_id: [s for s in desc.input_sandbox if s.startswith("SB:")]
                 for job_id, desc in zip(ids, descriptions, strict=True)}
    result = SubmitResult(job_ids=ids, parametric=parametric,
                          input_sandboxes={j: s for j, s in sandboxes.items() if s},
                          descriptions=final)
    if defer_logging:
        result.logging.extend((job_id, j.status, j.minor_status, j.application_status, SOURCE)
                              for job_id, j in zip(ids, new, strict=True))
    if on_stored is not None:
        on_stored(conn, result, now)
    if result.logging:  # not written by on_stored
        jobs_db.add_logging_rows(conn, result.logging, now=now)
        result.logging.clear()
    return result


def _templates(describer: ChildDescriber | None, children: Sequence[JDL],
               descriptions: Sequence[JobDescription], who: Submitter, limits: JobLimits
               ) -> tuple[Callable[[JDL], JobDescription], ProcessedTemplate | None]:
    """How to describe a child once its ``%j`` is replaced, and the template of the children's
    processed JDLs: from ``describer``, with the attributes the replacement may change
    varying too (the others are the same in every child, before and after it); else each
    child in full, and no template."""
    if describer is None or not children:
        return (lambda child: _describe(child, who, limits)), None
    with_id = describer.with_varying(job_id_attributes(children[0]))
    varying_fields = with_id.varying_fields
    if varying_fields is None:
        return with_id.describe, None
    return with_id.describe, ProcessedTemplate(descriptions[0], varying_fields, with_id.varying)


def describe(jdl: JDL, who: Submitter, limits: JobLimits) -> JobDescription:
    """The validated description of one (non-parametric) JDL submitted by ``who``."""
    return _describe(jdl, who, limits)


#: called inside the confirming transaction with the jobs moved to Received
OnConfirmed = Callable[[Connection, list[int], datetime], object]


#: called inside the confirming transaction with the jobs confirmed and their rows, Received
#: and logged so but still Submitting in the table: it must write every one's final status
OnConfirmedRows = Callable[[Connection, list[int], datetime, dict[int, jobs_db.StatusRow]],
                           object]


@retry_conflicts()
def confirm_bulk(engine: Engine, job_ids: Sequence[int], now: datetime | None = None, *,
                 on_confirmed: OnConfirmed | None = None,
                 optimise: OnConfirmedRows | None = None) -> list[int]:
    """Submitting -> Received for the given jobs still in Submitting; returns those moved.

    ``on_confirmed(conn, ids, now)`` runs in the same write transaction (the service
    optimises the jobs there: a crash then leaves them Submitting or Waiting, never Received).
    ``optimise(conn, ids, now, rows)`` instead: the Received status is logged but not
    written, the rows (Received, as locked here) are handed over, and ``optimise`` writes
    each job's final status (e.g. :func:`wms.logic.optimizer.optimise_in` with ``current``):
    one UPDATE of each row, not two, and no second read of the rows.
    Callers check ownership first (see :mod:`wms.logic.job_policy`).
    """
    now = now or utcnow()
    with write_transaction(engine) as conn:
        rows = jobs_db.status_of(conn, job_ids, for_update=True)
        todo = [job_id for job_id, row in rows.items() if row.status == JobStatus.SUBMITTING]
        if optimise is not None:
            if todo:  # logged as apply_status_changes logs it (same rows, same order)
                jobs_db.add_logging(conn, [(job_id, JobStatus.RECEIVED, MinorStatus.JOB_ACCEPTED,
                                            rows[job_id].application_status)
                                           for job_id in todo], now=now, source=SOURCE)
                optimise(conn, sorted(todo), now, {job_id: replace(
                    rows[job_id], status=JobStatus.RECEIVED,
                    minor_status=MinorStatus.JOB_ACCEPTED) for job_id in sorted(todo)})
            return sorted(todo)
        changes = [jobs_db.StatusChange(job_id, JobStatus.RECEIVED, MinorStatus.JOB_ACCEPTED)
                   for job_id in todo]
        jobs_db.apply_status_changes(conn, changes, rows, now=now, source=SOURCE)
        if on_confirmed is not None and todo:
            on_confirmed(conn, sorted(todo), now)
    return sorted(todo)


def submit_many(engine: Engine, jdls: Sequence[JDL], who: Submitter, limits: JobLimits,
                now: datetime | None = None, *, on_stored: OnStored | None = None,
                optimise: optimizer.NewJobsOptimiser | None = None) -> SubmitResult:
    """Store many single (non-parametric) jobs in one transaction: a bulk submission, as a
    production system makes one batch of tasks into jobs. Every JDL is validated first (a bad
    one fails the batch, nothing stored); the jobs go to ``Received`` and ``on_stored`` runs
    in the storing transaction (e.g. to optimise them to Waiting at once). IDs in order.

    ``optimise``: the jobs are optimised in the storing transaction, before ``on_stored``,
    as :func:`wms.logic.optimizer.optimise_new` does it, the decisions being made before the
    INSERT: the jobs to be Waiting are inserted Waiting (logged Received, Checking, Waiting
    as before), not updated afterwards.

    The same as :func:`store_prepared` of :func:`prepare_many`: a caller may prepare the
    next batch while the previous one is being stored."""
    return store_prepared(engine, prepare_many(jdls, who, limits, optimise=optimise), now,
                          on_stored=on_stored)


@dataclass
class PreparedJobs:
    """A bulk submission validated, described and optimised, not stored yet
    (:func:`prepare_many`; stored by :func:`store_prepared`)."""

    new: list[jobs_db.NewJob]
    descriptions: list[JobDescription]
    template: ProcessedTemplate | None
    plan: optimizer.NewJobsPlan | None
    optimise: optimizer.NewJobsOptimiser | None


def prepare_many(jdls: Sequence[JDL], who: Submitter, limits: JobLimits, *,
                 optimise: optimizer.NewJobsOptimiser | None = None) -> PreparedJobs:
    """:func:`submit_many`'s work before its transaction: validation (a bad JDL raises),
    descriptions, the optimiser's decisions (its input data check reads the catalog) and
    the rows to insert. Writes nothing."""
    descriptions, template, write = _describe_many(jdls, who, limits)
    plan = (optimizer.plan_new(dict(enumerate(descriptions)), optimise.check_input_data)
            if optimise is not None else None)
    new = [
        jobs_db.NewJob(
            owner=who.owner, owner_group=who.owner_group, vo=who.vo,
            status=JobStatus.RECEIVED, minor_status=MinorStatus.JOB_ACCEPTED,
            original_jdl=write(jdl), job_type=desc.job_type, job_group=desc.job_group,
            job_name=desc.job_name, site=desc.site_summary, user_priority=desc.priority,
            input_data=desc.input_data)
        for jdl, desc in zip(jdls, descriptions, strict=True)
    ]
    if plan is not None:
        for index, job in enumerate(new):
            if plan.waiting(index):
                job.status = JobStatus.WAITING
                job.minor_status = MinorStatus.PILOT_AGENT_SUBMISSION
                job.site = plan.site(index, job.site)
    return PreparedJobs(new, descriptions, template, plan, optimise)


def store_prepared(engine: Engine, prepared: PreparedJobs, now: datetime | None = None, *,
                   on_stored: OnStored | None = None) -> SubmitResult:
    """Store a :func:`prepare_many` batch in one write transaction (see :func:`submit_many`);
    IDs in order."""
    now = now or utcnow()
    new, descriptions, template, plan = (prepared.new, prepared.descriptions,
                                         prepared.template, prepared.plan)
    optimise = prepared.optimise

    def processed(index: int, job_id: int) -> str:
        if template is not None:
            return template.text(descriptions[index], job_id)
        return processed_jdl(descriptions[index], job_id).to_text()

    with write_transaction(engine) as conn:
        ids = jobs_db.insert_jobs(  # the processed JDLs are stored with the originals
            conn, new, now=now, source=SOURCE, processed=processed, log=plan is None)
        if plan is not None:  # the first records say Received, whatever the row says now
            jobs_db.add_logging(conn, [
                (job_id, JobStatus.RECEIVED, MinorStatus.JOB_ACCEPTED, j.application_status)
                for job_id, j in zip(ids, new, strict=True)], now=now, source=SOURCE)
        result = SubmitResult(job_ids=ids, parametric=False, input_sandboxes={
            job_id: [s for s in desc.input_sandbox if s.startswith("SB:")]
            for job_id, desc in zip(ids, descriptions, strict=True)
            if any(s.startswith("SB:") for s in desc.input_sandbox)},
            descriptions=dict(zip(ids, descriptions, strict=True)))
        if plan is not None and optimise is not None:
            optimizer.finish_new(conn, plan, dict(enumerate(ids)), enqueue=optimise.enqueue,
                                 now=now)
        if on_stored is not None:
            on_stored(conn, result, now)
    return result


def _describe_many(jdls: Sequence[JDL], who: Submitter, limits: JobLimits
                   ) -> tuple[list[JobDescription], ProcessedTemplate | None,
                              Callable[[JDL], str]]:
    """The descriptions of single jobs (as :func:`describe` gives them, errors included) and,
    when the JDLs differ only in some attributes' values (a production system's tasks made
    from one template), the template of their processed JDLs: then the steps of the
    description that read only the attributes all JDLs share run once
    (:class:`~wms.logic.child_description.ChildDescriber`); and how to write their texts
    (``JDL.to_text``, from one :class:`~wms.logic.jdl.TextTemplate` when they differ so)."""
    varying = varying_attributes(jdls) if len(jdls) > 1 else None
    if varying is None:
        return [_describe(jdl, who, limits) for jdl in jdls], None, JDL.to_text
    describer = ChildDescriber(jdls[0], varying, owner=who.owner, owner_group=who.owner_group,
                               vo=who.vo, limits=limits)
    descriptions = [describer.describe(jdl) for jdl in jdls]
    fields = describer.varying_fields
    template = (ProcessedTemplate(descriptions[0], fields, describer.varying)
                if fields is not None else None)
    return descriptions, template, TextTemplate(jdls[0], varying).text


def varying_attributes(jdls: Sequence[JDL]) -> frozenset[str] | None:
    """The lower-case names of the attributes whose values are not the same in all ``jdls``;
    None unless all hold the same attributes, spelt the same, in the same order. Values are
    the same when of the same types throughout (``1``, ``1.0`` and ``true`` differ)."""
    first = jdls[0]
    reference = first._values
    keys = list(reference)
    names = first._names
    varying: set[str] = set()
    for jdl in jdls[1:]:
        values = jdl._values
        if jdl._names != names or list(values) != keys:
            return None
        for key in keys:
            if key not in varying and not _same(values[key], reference[key]):
                varying.add(key)
    return frozenset(varying)


def _same(one: object, other: object) -> bool:
    """``one == other`` with the same types at every level (and floats written alike)."""
    if type(one) is not type(other):
        return False
    if isinstance(one, list):
        assert isinstance(other, list)  # noqa: S101 - same type
        return len(one) == len(other) and all(map(_same, one, other))
    if isinstance(one, JDL):
        assert isinstance(other, JDL)  # noqa: S101 - same type
        return (list(one._names.items()) == list(other._names.items())
                and all(_same(v, other._values[k]) for k, v in one._values.items()))
    if isinstance(one, float):
        return repr(one) == repr(other)
    return one == other
