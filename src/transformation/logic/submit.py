"""Tasks become jobs (job types) or requests (data types), each exactly once.

A submitter first *claims* a batch of Created tasks: one conditional UPDATE (Created ->
Reserved, ``claimed_by`` = a fresh token) that only one agent can win per task, then submits
the batch (jobs: one bulk WMS transaction; requests: one RMS request per task), then records
Submitted with the external IDs, again conditionally on its own claim. A submitter that dies
between the two leaves Reserved tasks: :func:`recover_reserved` looks for their jobs/requests
by name (``<transformation:08d>_<task:08d>``, DIRAC's task name) once they are older than
``ReservedTimeout`` and records what exists, or makes the task Created again. A submitter
that only *looked* dead (its cycle outlived its heartbeat) finds at record time that it lost
some claims: :func:`settle_lost` then adopts the tasks released but not yet claimed again and
names its jobs/requests that a peer has replaced, which the agent withdraws. No task keeps two
live jobs or requests.

A job's JDL is the transformation's template plus, per task: ``InputData`` (the task's
files), ``JobName`` (the task name), ``JobGroup`` (the transformation ID, 8 digits),
``JobType`` (the transformation type), ``OutputPath`` (``/<vo>/prod/<trans>/<task>`` by
default), ``TransformationID``, ``TaskID``, and ``Site``/``OutputSE`` from the plugin when
the template does not fix them.

Example::

    >>> task_name(12, 3)
    '00000012_00000003'
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, Row

from core.config.transformations import TransformationsConfig
from core.db import utcnow, write_transaction
from dms.db import rms as rms_db
from dms.logic.rms import parse_request
from transformation.db import queries as db
from transformation.db.tables import tasks as tasks_t
from transformation.logic import states
from transformation.logic.tasks import task_inputs
from wms.db.tables import jobs as jobs_t
from wms.logic import submission
from wms.logic.jdl import JDL, parse_jdl
from wms.logic.job_description import JobLimits
from wms.logic.optimizer import NewJobsOptimiser
from wms.logic.states import JobStatus

OnStored = Callable[[Connection, submission.SubmitResult, Any], None]


def task_name(tid: int, task_id: int) -> str:
    return f"{tid:08d}_{task_id:08d}"


def job_group(tid: int) -> str:
    return f"{tid:08d}"


def output_dir(settings: TransformationsConfig, vo: str, tid: int, task_id: int) -> str:
    return settings.output_path.format(vo=vo, transformation=tid, task=task_id)


def output_base(settings: TransformationsConfig, vo: str, tid: int) -> str:
    """The directory holding every task's outputs (the template up to ``{task``)."""
    head = settings.output_path.split("{task")[0].rstrip("/")
    return head.format(vo=vo, transformation=tid) or "/"


def claim(engine: Engine, tid: int, owner: str, limit: int) -> tuple[str, list[Row[Any]]]:
    """Reserve up to ``limit`` Created tasks; returns the claim token and the claimed rows."""
    token = f"{owner[:48]}|{uuid.uuid4().hex[:12]}"
    with engine.connect() as conn:
        candidates = list(conn.execute(sa.select(tasks_t.c.task_id).where(
            tasks_t.c.transformation_id == tid, tasks_t.c.status == states.CREATED)
            .order_by(tasks_t.c.task_id).limit(limit)).scalars())
    if not candidates:
        return token, []
    with write_transaction(engine) as conn:
        db.set_tasks(conn, tid, candidates, {"status": states.RESERVED, "claimed_by": token,
                                             "last_update": utcnow()},
                     only_status=[states.CREATED])
    with engine.connect() as conn:
        rows = db.task_rows(conn, [tasks_t.c.transformation_id == tid,
                                   tasks_t.c.claimed_by == token,
                                   tasks_t.c.status == states.RESERVED])
    return token, rows


def runs(external: Mapping[int, str]) -> tuple[list[tuple[int, int, int]], dict[int, str]]:
    """Split ``{task: external ID}`` into runs ``(first task, last task, ID - task)`` where
    consecutive tasks have consecutive numeric IDs (a bulk submission gives a batch of
    tasks, claimed in order, consecutive job IDs), and the rest.

    >>> runs({1: "101", 2: "102", 3: "103", 5: "107", 6: "x", 7: "0108"})
    ([(1, 3, 100)], {5: '107', 6: 'x', 7: '0108'})
    """
    spans: list[tuple[int, int, int]] = []
    rest: dict[int, str] = {}
    run: list[int] = []  # [first task, last task, offset]
    for task, ext in sorted(external.items()):
        text = str(ext)
        number = int(text) if text.isdigit() and str(int(text)) == text else None
        if number is not None and run and task == run[1] + 1 and number - task == run[2]:
            run[1] = task
            continue
        if run:
            if run[1] > run[0]:
                spans.append((run[0], run[1], run[2]))
            else:
                rest[run[0]] = str(run[0] + run[2])
        run = [task, task, number - task] if number is not None else []
        if number is None:
            rest[task] = text
    if run:
        if run[1] > run[0]:
            spans.append((run[0], run[1], run[2]))
        else:
            rest[run[0]] = str(run[0] + run[2])
    return spans, rest


def record(engine: Engine, tid: int, token: str, external: Mapping[int, str],
           status: str = states.SUBMITTED) -> int:
    """Reserved -> ``status`` with the external IDs, for tasks still claimed by ``token``.

    A run of tasks with consecutive external IDs is one UPDATE over the task range (the ID
    computed from the task number); others go one row each (pymysql runs an UPDATE
    executemany row by row: 1,000 round trips a batch on MariaDB)."""
    now = utcnow()
    if not external:
        return 0
    mine = [tasks_t.c.transformation_id == tid, tasks_t.c.claimed_by == token,
            tasks_t.c.status == states.RESERVED]
    spans, rest = runs(external)
    total = 0
    with write_transaction(engine) as conn:
        for first, last, offset in spans:
            total += conn.execute(tasks_t.update().where(
                *mine, tasks_t.c.task_id.between(first, last)).values(
                status=status, last_update=now,
                external_id=sa.cast(tasks_t.c.task_id + offset, sa.String(32)))).rowcount or 0
        if rest:
            stmt = (tasks_t.update().where(*mine, tasks_t.c.task_id == sa.bindparam("b_task"))
                    .values(status=status, external_id=sa.bindparam("b_ext"), last_update=now))
            total += conn.execute(stmt, [{"b_task": t, "b_ext": e} for t, e in
                                         rest.items()]).rowcount or 0
    return int(total)


def settle_lost(engine: Engine, tid: int, made: Mapping[int, str]) -> tuple[int, list[str]]:
    """After :func:`record` kept fewer tasks than were ``made`` (task ID -> this submitter's
    external ID): a peer's :func:`recover_reserved` took some claims over. Per task:

    * recorded with this submitter's own ID (the peer found the job by name): settled;
    * Created again and not claimed since: adopted (Submitted with this ID);
    * anything else (claimed again, or recorded with another ID): this submitter's
      job/request duplicates the task's, and must be withdrawn.

    Returns (adopted, external IDs to withdraw)."""
    now = utcnow()
    adopted = 0
    duplicates: list[str] = []
    with write_transaction(engine) as conn:
        rows = db.task_rows(conn, [tasks_t.c.transformation_id == tid,
                                   tasks_t.c.task_id.in_(list(made))])
        for row in rows:
            ours = made[row.task_id]
            if row.external_id == ours:
                continue
            if row.status == states.CREATED and row.claimed_by is None and conn.execute(
                    tasks_t.update().where(
                        tasks_t.c.transformation_id == tid, tasks_t.c.task_id == row.task_id,
                        tasks_t.c.status == states.CREATED, tasks_t.c.claimed_by.is_(None))
                    .values(status=states.SUBMITTED, external_id=ours,
                            last_update=now)).rowcount:
                adopted += 1
            else:
                duplicates.append(ours)
        if adopted or duplicates:
            db.add_log(conn, tid, [f"Claims lost while submitting: adopted {adopted} tasks, "
                                   f"withdrawing {len(duplicates)} duplicates"],
                       "TaskAgent", now)
    return adopted, duplicates


def release(engine: Engine, tid: int, token: str, task_ids: Sequence[int]) -> None:
    """Reserved -> Created (the submission failed before anything was made)."""
    with write_transaction(engine) as conn:
        db.set_tasks(conn, tid, list(task_ids), {"status": states.CREATED, "claimed_by": None,
                                                 "last_update": utcnow()},
                     only_status=[states.RESERVED], claimed_by=token)


def claimer(token: str | None) -> str:
    """The agent instance that made a claim token."""
    return (token or "").rpartition("|")[0]


def recover_reserved(engine: Engine, tid: int, timeout: float,
                     lookup: Callable[[int, list[str]], dict[str, str]],
                     alive: Collection[str] = ()) -> tuple[int, int]:
    """Tasks Reserved for longer than ``timeout`` s by an agent instance no longer
    ``alive`` (its heartbeat stopped): those whose job/request exists (found by name with
    ``lookup(tid, names)`` -> {name: external ID}) become Submitted, the others Created
    again. A live submitter, however slow, keeps its claims. Returns (recovered,
    released)."""
    old = utcnow() - timedelta(seconds=timeout)
    with engine.connect() as conn:
        stale = [r for r in db.task_rows(conn, [tasks_t.c.transformation_id == tid,
                                                tasks_t.c.status == states.RESERVED,
                                                tasks_t.c.last_update < old])
                 if claimer(r.claimed_by) not in alive]
    if not stale:
        return 0, 0
    found = lookup(tid, [task_name(tid, r.task_id) for r in stale])
    now = utcnow()
    recovered = released = 0
    with write_transaction(engine) as conn:
        for row in stale:
            ext = found.get(task_name(tid, row.task_id))
            values: dict[str, Any] = {"last_update": now, "claimed_by": None}
            if ext is not None:
                values.update(status=states.SUBMITTED, external_id=str(ext))
                recovered += 1
            else:
                values["status"] = states.CREATED
                released += 1
            conn.execute(tasks_t.update().where(
                tasks_t.c.transformation_id == tid, tasks_t.c.task_id == row.task_id,
                tasks_t.c.status == states.RESERVED, tasks_t.c.claimed_by == row.claimed_by)
                .values(**values))
        db.add_log(conn, tid, [f"Recovered {recovered} reserved tasks, released {released}"],
                   "TaskAgent", now)
    return recovered, released


# -- jobs ---------------------------------------------------------------------------------------

def _substitute(value: Any, marks: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        for mark, text in marks.items():
            value = value.replace(mark, text)
        return value
    if isinstance(value, list):
        return [_substitute(v, marks) for v in value]
    return value


def marked(template: JDL) -> list[str]:
    """The template's attributes holding an ``@{...}`` placeholder."""
    return [key for key in template if "@{" in str(template[key])]


def job_for_task(template: JDL, trans: Row[Any], task: Row[Any],
                 settings: TransformationsConfig, marks_in: Sequence[str] | None = None
                 ) -> JDL:
    """The task's JDL; ``@{TransformationID}``, ``@{TaskID}`` and ``@{JobName}`` in the
    template's string values are replaced (e.g. ``OutputData = "out_@{TaskID}.root"``);
    ``marks_in``: the attributes holding them (:func:`marked`, computed once per batch)."""
    tid = trans.transformation_id
    jdl = template.copy()
    keys = marked(template) if marks_in is None else marks_in
    if keys:
        marks = {"@{TransformationID}": f"{tid:08d}", "@{TaskID}": f"{task.task_id:08d}",
                 "@{JobName}": task_name(tid, task.task_id)}
        for key in keys:
            jdl[key] = _substitute(jdl[key], marks)
    lfns = task_inputs(task)
    if lfns:
        jdl["InputData"] = [f"LFN:{x}" for x in lfns]
    jdl["JobName"] = task_name(tid, task.task_id)
    jdl["JobGroup"] = job_group(tid)
    jdl["JobType"] = trans.type
    if "OutputPath" not in jdl:
        jdl["OutputPath"] = output_dir(settings, trans.vo, tid, task.task_id)
    jdl["TransformationID"] = tid
    jdl["TaskID"] = task.task_id
    if task.site and "Site" not in jdl:
        jdl["Site"] = task.site
    if task.target_se and "OutputSE" not in jdl:
        jdl["OutputSE"] = task.target_se
    if task.parameters and task.parameters != "{}":
        for key, value in json.loads(task.parameters).items():
            jdl[key] = value
    return jdl


@dataclass(frozen=True)
class PreparedTasks:
    """:func:`prepare_jobs`' batch: the tasks' jobs validated and optimised, not stored."""

    task_ids: list[int]
    jobs: submission.PreparedJobs
    who: submission.Submitter


def prepare_jobs(trans: Row[Any], tasks: Sequence[Row[Any]], settings: TransformationsConfig,
                 limits: JobLimits, *, optimise: NewJobsOptimiser | None = None
                 ) -> PreparedTasks:
    """One bulk submission for ``tasks`` up to its WMS transaction (JDLs, validation, the
    optimiser's decisions; ``optimise``: see :func:`wms.logic.submission.submit_many`):
    writes nothing, so a caller can prepare a batch while the previous one is stored by
    :func:`store_jobs`."""
    template = parse_jdl(trans.body)
    keys = marked(template)
    jdls = [job_for_task(template, trans, task, settings, keys) for task in tasks]
    who = submission.Submitter(trans.author, trans.author_group, trans.vo)
    return PreparedTasks([task.task_id for task in tasks],
                         submission.prepare_many(jdls, who, limits, optimise=optimise), who)


def store_jobs(wms_engine: Engine, prepared: PreparedTasks, *,
               on_stored: OnStored | None = None) -> dict[int, int]:
    """Store a :func:`prepare_jobs` batch (one WMS transaction); task ID -> job ID."""
    result = submission.store_prepared(wms_engine, prepared.jobs, on_stored=on_stored)
    return dict(zip(prepared.task_ids, result.job_ids, strict=True))


def find_jobs(wms_engine: Engine, tid: int, names: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    with wms_engine.connect() as conn:
        for batch in db.chunks(names):
            for job_id, name in conn.execute(sa.select(jobs_t.c.job_id, jobs_t.c.job_name)
                                             .where(jobs_t.c.job_group == job_group(tid),
                                                    jobs_t.c.job_name.in_(batch),
                                                    jobs_t.c.status != JobStatus.DELETED)):
                out[name] = str(job_id)
    return out


# -- requests -----------------------------------------------------------------------------------

def request_for_task(trans: Row[Any], task: Row[Any]) -> dict[str, Any]:
    targets = task.target_se or trans.target_ses
    lfns = task_inputs(task)
    operations = []
    for op in (o.strip() for o in trans.body.split(";") if o.strip()):
        entry: dict[str, Any] = {"Type": op, "Files": [{"LFN": x} for x in lfns]}
        if op != "RemoveFile":
            entry["TargetSE"] = targets
        operations.append(entry)
    return {"RequestName": task_name(trans.transformation_id, task.task_id),
            "Operations": operations}


def submit_requests(rms_engine: Engine, trans: Row[Any], tasks: Sequence[Row[Any]]
                    ) -> dict[int, int]:
    out = {}
    for task in tasks:
        new = parse_request(request_for_task(trans, task), trans.author, trans.author_group,
                            trans.vo)
        out[task.task_id] = rms_db.insert_request(rms_engine, new)
    return out


def find_requests(rms_engine: Engine, tid: int, names: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    table = rms_db.rms_requests
    with rms_engine.connect() as conn:
        for batch in db.chunks(names):
            for rid, name in conn.execute(sa.select(table.c.request_id, table.c.name)
                                          .where(table.c.name.in_(batch),
                                                 table.c.status != rms_db.CANCELED)):
                out[name] = str(rid)
    return out
