"""``WorkloadManagement/JobManager``: submit, confirm, kill, delete, reschedule, reset, remove.

Replies carry DIRAC's extra keys: ``JobID`` and ``requireProxyUpload`` for submissions;
``InvalidJobIDs``, ``NonauthorizedJobIDs`` and ``FailedJobIDs`` when some jobs of an action could
not be handled (the reply is then ``OK: false``, as DIRAC's).

Example (wire)::

    requests.post(url + "/WorkloadManagement/JobManager",
                  data={"method": "submitJob", "args": '["[Executable=\\"/bin/true\\";]"]'}, ...)
    # {"OK": true, "Value": 12, "JobID": 12, "requireProxyUpload": false}
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection

from core.db import utcnow, write_transaction
from core.exceptions import (
    InvalidArgumentError,
    InvalidJDLError,
    JobManagementError,
    JobNotFoundError,
    JobSubmissionError,
    NotAuthorizedError,
)
from core.rpc.service import Call, Reply, Service, rpc_method
from wms.db import jobs as jobs_db
from wms.logic import capacity, dataset_jobs, events, job_manager, sandboxes, submission
from wms.logic.jdl import parse_jdl
from wms.logic.job_manager import ActionResult
from wms.logic.job_policy import job_ids_argument, select_jobs
from wms.logic.parametric import is_parametric
from wms.logic.states import FINAL, JobStatus
from wms.service.common import (
    SYSTEM,
    action_extra,
    dequeue,
    engine_of,
    limits_from,
    optimise,
    optimise_in,
    optimise_new,
    sandbox_settings,
    sweep_pending,
)
from wms.service.wiring import dataset_files, store_jobs

log = logging.getLogger("pilotwms.wms")
SUBMITTERS = ["NormalUser", "JobAdministrator", "ProductionManagement"]


class JobManagerService(Service):
    system = SYSTEM
    name = "JobManager"

    def _reply(self, result: ActionResult, what: str) -> Reply:
        if not result.complete:
            reasons = "; ".join(result.failed.values())
            raise JobManagementError(f"Some jobs failed {what}" + (f": {reasons}" if reasons
                                                                   else ""),
                                     **action_extra(result))
        return Reply(result.done, {"requireProxyUpload": False})

    #: seconds between sweeps for jobs left in Received/Checking or due after rescheduling
    SWEEP_PERIOD = 20.0

    def background_tasks(self) -> list[tuple[float, Callable[[], None]]]:
        return [(self.SWEEP_PERIOD, self._sweep)]

    def _sweep(self) -> None:
        sweep_pending(self.ctx)

    def startup_tasks(self) -> list[Callable[[], None]]:
        return [self._repair]

    def _repair(self) -> None:
        """At start-up, at once: what a crashed server left in Received/Checking (a bulk
        confirmation or a reschedule cut between its two transactions) goes on to Waiting now,
        not after the sweep's age limit. Safe beside live workers: the optimiser re-reads each
        job under its row lock and skips what another process has moved on meanwhile."""
        waiting = failed = 0
        for _batch in range(1000):  # 1,000 jobs per batch; stop when a batch moves none
            result = sweep_pending(self.ctx, older_than=0.0)
            if not (result.waiting or result.failed):
                break
            waiting, failed = waiting + len(result.waiting), failed + len(result.failed)
        if waiting or failed:
            log.info("start-up repair: %d job(s) to Waiting, %d failed", waiting, failed)

    @rpc_method("submitJob", rights=SUBMITTERS)
    def submit_job(self, call: Call, jdl: str) -> Reply:
        """Store the job(s); ``SB:`` input sandboxes must exist and be the caller's, and are
        assigned to the new jobs (DIRAC's JobSanity step), so a job never waits for a sandbox
        that is not there. A limited proxy cannot submit (DIRAC's rule)."""
        ident = call.identity
        if ident.is_limited_proxy:
            raise JobSubmissionError("Can't submit using a limited proxy")
        engine = engine_of(self.ctx)
        references = submission.sandbox_references(jdl)
        requester = sandboxes.Requester.from_identity(ident)
        if references:
            settings = sandbox_settings(self.ctx)
            for ref in dict.fromkeys(references):
                sandboxes.find_readable(engine, settings, requester, ref)
        who = submission.Submitter(ident.username or "", ident.group or "", ident.vo or "")
        parsed = parse_jdl(jdl)
        event = events.event_of(parsed)
        if event is not None and is_parametric(parsed):
            raise InvalidJDLError("a parametric job cannot subscribe to an event")

        def stored(conn: Connection, result: submission.SubmitResult, now: datetime) -> None:
            # one transaction: the job, its sandboxes and (unless parametric, which waits
            # for confirmBulkSubmission, or subscribed to an event, which waits in Standby)
            # its optimisation to Waiting commit together
            capacity.check_jobs(self.ctx.config, result.descriptions.values())
            if result.input_sandboxes:
                sandboxes.assign_in(conn, sandbox_settings(self.ctx), requester, {
                    f"Job:{job_id}": refs for job_id, refs in result.input_sandboxes.items()
                }, "Input", now)
            if event is not None:
                events.subscribe_in(conn, events.Actor.from_identity(ident), event,
                                    {job_id: parsed.to_text() for job_id in result.job_ids},
                                    now)
            elif not result.parametric:
                optimise_new(self.ctx, conn, result.descriptions, now, stored_here=True,
                             logged=result.logging)  # one logging INSERT for all rows

        initial = ((JobStatus.STANDBY, events.standby_minor(event)) if event is not None
                   else None)
        result = submission.submit(engine, jdl, who, limits_from(self.ctx.config),
                                   on_stored=stored, initial=initial,
                                   defer_logging=event is None)
        value: Any = result.job_ids if result.parametric else result.job_ids[0]
        return Reply(value, {"JobID": value, "requireProxyUpload": False})

    @rpc_method("confirmBulkSubmission", rights=SUBMITTERS)
    def confirm_bulk_submission(self, call: Call, job_ids: list[Any]) -> Reply:
        engine = engine_of(self.ctx)
        ids = job_ids_argument(job_ids)
        with engine.connect() as conn:
            rows = jobs_db.status_of(conn, ids)
        sel = select_jobs(call.identity, ids, rows)
        confirmed = submission.confirm_bulk(
            engine, sel.valid,
            optimise=lambda conn, ids, now, rows: optimise_in(self.ctx, conn, ids, now, rows))
        result = ActionResult(done=confirmed, invalid=sel.invalid,
                              nonauthorized=sel.nonauthorized)
        return self._reply(result, "confirmation")

    @rpc_method("killJob")
    def kill_job(self, call: Call, job_ids: int | str | list[Any], force: bool = False) -> Reply:
        result = job_manager.kill_jobs(engine_of(self.ctx), call.identity,
                                       job_ids_argument(job_ids), dequeue=dequeue)
        return self._reply(result, "killing")

    @rpc_method("deleteJob")
    def delete_job(self, call: Call, job_ids: int | str | list[Any],
                   force: bool = False) -> Reply:
        result = job_manager.delete_jobs(engine_of(self.ctx), call.identity,
                                         job_ids_argument(job_ids), dequeue=dequeue)
        return self._reply(result, "deletion")

    @rpc_method("rescheduleJob")
    def reschedule_job(self, call: Call, job_ids: int | str | list[Any]) -> Reply:
        result = job_manager.reschedule_jobs(
            engine_of(self.ctx), call.identity, job_ids_argument(job_ids), dequeue=dequeue,
            max_rescheduling=self.ctx.config.operations.max_rescheduling)
        optimise(self.ctx, result.done)  # those whose back-off is already over go on now
        return self._reply(result, "rescheduling")

    @rpc_method("resetJob", rights="JobAdministrator")
    def reset_job(self, call: Call, job_ids: int | str | list[Any]) -> Reply:
        result = job_manager.reschedule_jobs(
            engine_of(self.ctx), call.identity, job_ids_argument(job_ids), dequeue=dequeue,
            max_rescheduling=self.ctx.config.operations.max_rescheduling, reset=True)
        optimise(self.ctx, result.done)
        return self._reply(result, "resetting")

    @rpc_method("removeJob", rights="JobAdministrator")
    def remove_job(self, call: Call, job_ids: int | str | list[Any]) -> Reply:
        result = job_manager.remove_jobs(engine_of(self.ctx), call.identity,
                                         job_ids_argument(job_ids), dequeue=dequeue)
        return self._reply(result, "removal")

    @rpc_method("getMaxParametricJobs")
    def get_max_parametric_jobs(self, call: Call) -> int:
        return self.ctx.config.operations.max_parametric_jobs

    # -- jobs the server makes from a user's JDL ----------------------------------------------

    @rpc_method("submitDatasetJobs", rights=SUBMITTERS)
    def submit_dataset_jobs(self, call: Call, jdl: str, source: dict[str, Any],
                            files_per_job: int) -> Reply:
        """One job per group of ``files_per_job`` files of a dataset (``{"Dataset": path}``)
        or of a metadata query (``{"Query": {...}, "Path": "/"}``), read with the caller's
        catalog rights; all jobs or none are stored. Value: the job IDs."""
        template = dataset_jobs.check_template(jdl)
        limits = limits_from(self.ctx.config)
        if isinstance(files_per_job, bool) or not 1 <= int(files_per_job) <= \
                limits.max_input_data:
            raise InvalidArgumentError(
                f"files per job must be between 1 and {limits.max_input_data}")
        ident = call.identity
        files, label = dataset_files(self.ctx, ident, source)
        groups = dataset_jobs.group_by_location(files, int(files_per_job))
        if len(groups) > limits.max_parametric_jobs:
            raise InvalidArgumentError(
                f"{len(groups)} jobs: more than the {limits.max_parametric_jobs} allowed in one "
                "submission (more files per job?)")
        who = submission.Submitter(ident.username or "", ident.group or "", ident.vo or "")
        with write_transaction(engine_of(self.ctx)) as conn:
            result = store_jobs(self.ctx, conn, dataset_jobs.dataset_jdls(template, groups),
                                who, utcnow(), parameters={"Dataset": label})
        return Reply(result.job_ids, {"JobID": result.job_ids, "requireProxyUpload": False})

    @rpc_method("restartJob", rights=SUBMITTERS)
    def restart_job(self, call: Call, job_id: int) -> Reply:
        """A new job with the same description and input sandbox as a finished one (ECaccess
        restart); parameters ``RestartOf`` (new job) and ``RestartedAs`` (old job) link
        them. Value: the new job ID."""
        engine = engine_of(self.ctx)
        ident = call.identity
        with write_transaction(engine) as conn:
            rows = jobs_db.status_of(conn, [int(job_id)])
            sel = select_jobs(ident, [int(job_id)], rows)
            if sel.invalid:
                raise JobNotFoundError(f"Job {job_id} not found")
            if sel.nonauthorized:
                raise NotAuthorizedError(f"you may not restart job {job_id}")
            row = rows[int(job_id)]
            if row.status not in FINAL:
                raise JobManagementError(
                    f"Job {job_id} is {row.status}: only finished jobs (Done, Completed, Failed, "
                    "Killed) can be restarted")
            original = jobs_db.jdls_of(conn, [int(job_id)], processed=False).get(int(job_id))
            if original is None:
                raise JobManagementError(f"Job {job_id} has no JDL left to restart")
            who = submission.Submitter(row.owner, row.owner_group, row.vo)
            result = store_jobs(self.ctx, conn, [dataset_jobs.restart_jdl(original)], who,
                                utcnow(), parameters={"RestartOf": str(job_id)})
            new = result.job_ids[0]
            jobs_db.set_parameters(conn, {int(job_id): {"RestartedAs": str(new)}},
                                   {int(job_id): row.reschedule_counter})
        return Reply(new, {"JobID": new, "requireProxyUpload": False})
