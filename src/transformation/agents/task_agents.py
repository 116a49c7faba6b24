"""``WorkflowTaskAgent`` (tasks -> WMS jobs) and ``RequestTaskAgent`` (tasks -> RMS
requests): claim, submit in bulk, record; recover what a crashed copy left Reserved.

Jobs are stored in the WMS database in one transaction per batch (``SubmitBatch`` tasks) and
optimised to Waiting in it, as ``submitJob`` would (input data resolved in the catalog, so
the matcher places them by their data). Requests go to the RMS database, owned by the
transformation's author, and the RequestExecutingAgent runs them. Several copies split the
transformations; each task is claimed by exactly one (see :mod:`transformation.logic.submit`).
On MariaDB (``SubmitOverlap``) the WorkflowTaskAgent prepares the next batch (claim, JDLs,
validation, input data) while a writer thread stores the previous one
(:meth:`_TaskAgent.submit_tasks`).

Run: ``pilotwms agent WorkflowTaskAgent --config server.yaml`` (and ``RequestTaskAgent``).

Example::

    >>> WorkflowTaskAgent.name, WorkflowTaskAgent.period
    ('WorkflowTaskAgent', 10.0)
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from sqlalchemy.engine import Engine, Row

from core.ids import as_id
from core.security.identity import Identity
from dms.db import catalog as cat_db
from dms.db import rms as rms_db
from transformation.agents.base import TransformationAgentBase
from transformation.logic import states, submit
from transformation.logic.catalog import ensure_output_dir
from transformation.logic.definition import job_limits
from transformation.logic.tasks import files_by_task
from wms.db.schema import WMS_SCHEMA
from wms.logic import input_data, job_manager, optimizer
from wms.logic.input_data import InputDataCheck, InputDataVerdict
from wms.service.common import dequeue, enqueue_new, limits_from

log = logging.getLogger("pilotwms.agents.tasks")
#: who deletes a duplicate job (a job administrator of no VO: the agent itself)
TASK_ADMIN = Identity(auth_method="x509", username="TransformationTaskAgent", group="",
                      properties=frozenset({"JobAdministrator"}), valid_dn=True,
                      valid_group=True)


class _TaskAgent(TransformationAgentBase):
    kind = "Job"
    target_system = "WorkloadManagement"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._target_ready = False

    def target(self) -> Engine:
        return self.engine(self.target_system)

    def types(self) -> tuple[str, ...]:
        return self.settings.all_job_types if self.kind == "Job" else \
            self.settings.all_data_types

    def lookup(self, tid: int, names: list[str]) -> dict[str, str]:
        raise NotImplementedError

    def submit(self, trans: Row[Any], tasks: list[Row[Any]]) -> dict[int, int]:
        raise NotImplementedError

    def withdraw(self, external_ids: list[str]) -> None:
        """Remove jobs/requests this copy made for tasks a peer has since served."""
        raise NotImplementedError

    def _settle(self, tid: int, made: dict[int, str], kept: int) -> None:
        adopted, duplicates = submit.settle_lost(self.ts(), tid, made)
        if duplicates:
            self.withdraw(duplicates)
        log.error("transformation %d: %d of %d submitted tasks were no longer claimed by %s "
                  "(a peer took this copy for dead): %d adopted back, %d duplicates withdrawn",
                  tid, len(made) - kept, len(made), self.instance, adopted, len(duplicates))

    def prepare(self, trans: Row[Any], tasks: list[Row[Any]]) -> Any:
        """The batch's work before anything is written to the target (default: none)."""
        return tasks

    def store(self, trans: Row[Any], prepared: Any) -> dict[int, int]:
        """Write a :meth:`prepare`'d batch to the target; task ID -> external ID."""
        return self.submit(trans, prepared)

    def overlap(self) -> bool:
        """Whether the next batch is prepared while the previous one is stored."""
        return False

    def run_once(self) -> bool:
        busy = False
        for trans in self.transformations(states.SUBMITTING, self.types()):
            submit.recover_reserved(self.ts(), trans.transformation_id,
                                    self.settings.reserved_timeout, self.lookup,
                                    alive=set(self._peers))
            if self.submit_tasks(trans):
                busy = True
        return not busy

    def submit_tasks(self, trans: Row[Any]) -> int:
        """Claim, prepare, store and record batches of the transformation's Created tasks
        until none is left; returns the number of tasks submitted.

        With :meth:`overlap`, a writer thread with its own connection stores batch N while
        this thread records batch N-1 and claims and prepares batch N+1 (reads and client
        work only); batch N+1 is stored only once batch N is. If storing a batch fails, its
        claims and those of the batch prepared meanwhile are released: every batch is all
        or nothing, as without overlap. A failure to record a batch leaves its tasks
        Reserved with their jobs stored, as a crash between the two always could
        (:func:`~transformation.logic.submit.recover_reserved` finds the jobs by name)."""
        engine = self.ts()
        tid = trans.transformation_id
        writer = (ThreadPoolExecutor(1, thread_name_prefix=f"{self.name}-writer")
                  if self.overlap() else None)
        pending: tuple[str, Future[dict[int, int]]] | None = None  # batch N being stored
        done = 0
        try:
            while not self.stopping:
                token, claimed = submit.claim(engine, tid, self.instance,
                                              self.settings.submit_batch)
                if not claimed:
                    break
                stored: tuple[str, dict[int, int]] | None = None
                try:
                    prepared = self.prepare(trans, claimed)
                    if pending is not None:  # batch N is stored before batch N+1
                        (previous, future), pending = pending, None
                        stored = previous, future.result()
                except Exception:
                    submit.release(engine, tid, token, [t.task_id for t in claimed])
                    raise
                if writer is None:
                    done += self._record(tid, token,
                                         self._store_batch(trans, token, claimed, prepared))
                else:
                    pending = token, writer.submit(self._store_batch, trans, token, claimed,
                                                   prepared)
                if stored is not None:  # recorded while the next batch is being stored
                    done += self._record(tid, *stored)
                if len(claimed) < self.settings.submit_batch:
                    break
            if pending is not None:
                (previous, future), pending = pending, None
                done += self._record(tid, previous, future.result())
        finally:
            if writer is not None:
                writer.shutdown(wait=True)  # a batch being stored ends (and releases on error)
            if pending is not None and pending[1].exception() is not None:
                log.error("transformation %d: storing a batch failed too", tid,
                          exc_info=pending[1].exception())
        return done

    def _store_batch(self, trans: Row[Any], token: str, claimed: list[Row[Any]],
                     prepared: Any) -> dict[int, int]:
        """Store one claimed batch (its claims released if that fails)."""
        try:
            return self.store(trans, prepared)
        except Exception:
            submit.release(self.ts(), trans.transformation_id, token,
                           [t.task_id for t in claimed])
            raise

    def _record(self, tid: int, token: str, made: dict[int, int]) -> int:
        """Record a stored batch's external IDs on its tasks (settling lost claims)."""
        ids = {t: str(e) for t, e in made.items()}
        kept = submit.record(self.ts(), tid, token, ids)
        if kept < len(made):  # a peer took claims over: this copy looked dead
            self._settle(tid, ids, kept)
        log.info("transformation %d: %d tasks submitted", tid, len(made))
        return len(made)


class WorkflowTaskAgent(_TaskAgent):
    name = "WorkflowTaskAgent"
    kind = "Job"
    target_system = "WorkloadManagement"
    period = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._outputs_ready: set[int] = set()

    def target(self) -> Engine:
        engine = self.engine(self.target_system)
        if not self._target_ready:
            from core.db import init_schema

            init_schema(engine, WMS_SCHEMA)
            self._target_ready = True
        return engine

    def lookup(self, tid: int, names: list[str]) -> dict[str, str]:
        return submit.find_jobs(self.target(), tid, names)

    def withdraw(self, external_ids: list[str]) -> None:
        numbers = [n for n in map(as_id, external_ids) if n is not None]
        for start in range(0, len(numbers), 1000):
            job_manager.delete_jobs(self.target(), TASK_ADMIN, numbers[start:start + 1000],
                                    dequeue=dequeue)

    def _prepare_outputs(self, trans: Row[Any]) -> None:
        """The output directory belongs to the author and carries ``OutputMetadata``."""
        tid = trans.transformation_id
        if tid in self._outputs_ready or "DataManagement" not in self.config.systems:
            return
        from transformation.logic.transformations import parameters_of

        meta = parameters_of(self.ts(), tid).get("OutputMetadata") or {}
        if isinstance(meta, str):
            meta = json.loads(meta)
        base = submit.output_base(self.settings, trans.vo, tid)
        ensure_output_dir(self.catalog(), base, trans.author, trans.author_group, meta)
        self._outputs_ready.add(tid)

    def _input_check(self, trans: Row[Any], tasks: list[Row[Any]]) -> InputDataCheck:
        """The optimiser's input data check, from the task's catalog file IDs: replicas by
        ID (one indexed read per 1,000 files) instead of resolving every LFN's path."""
        by_task = files_by_task(self.ts(), trans.transformation_id,
                                [t.task_id for t in tasks])
        ids = sorted({f for fs in by_task.values() for f in fs})
        se_sites = input_data.sites_by_se({name: site.ses for name, site in
                                           self.config.resources.sites.items()})

        def check(wanted: dict[int, list[str]]) -> dict[int, InputDataVerdict]:
            with self.engine("DataManagement").connect() as conn:
                replicas = cat_db.good_replica_ses(conn, ids)
            return input_data.decide(wanted, replicas=replicas, se_sites=se_sites)
        return check

    def prepare(self, trans: Row[Any], tasks: list[Row[Any]]) -> submit.PreparedTasks:
        """The batch's JDLs, validated and optimised (input data resolved): reads only."""
        self._prepare_outputs(trans)
        check = None
        if "DataManagement" in self.config.systems:
            check = self._input_check(trans, tasks) if trans.input_query or any(
                t.input_vector for t in tasks) else None
        # optimised in the storing transaction, the jobs to be Waiting inserted Waiting; they
        # are new there, so they have no task queue membership to remove first
        optimise = optimizer.NewJobsOptimiser(enqueue_new, check)
        limits = job_limits(self.settings, limits_from(self.config))
        return submit.prepare_jobs(trans, tasks, self.settings, limits, optimise=optimise)

    def store(self, trans: Row[Any], prepared: submit.PreparedTasks) -> dict[int, int]:
        return submit.store_jobs(self.target(), prepared)

    def submit(self, trans: Row[Any], tasks: list[Row[Any]]) -> dict[int, int]:
        return self.store(trans, self.prepare(trans, tasks))

    def overlap(self) -> bool:
        return bool(self.settings.submit_overlap) and all(
            engine.dialect.name != "sqlite" for engine in (self.ts(), self.target()))


class RequestTaskAgent(_TaskAgent):
    name = "RequestTaskAgent"
    kind = "Request"
    target_system = "RequestManagement"
    period = 10.0

    def target(self) -> Engine:
        engine = self.engine(self.target_system)
        if not self._target_ready:
            from core.db import init_schema
            from dms.db.rms import REQUEST_SCHEMA

            init_schema(engine, REQUEST_SCHEMA)
            self._target_ready = True
        return engine

    def lookup(self, tid: int, names: list[str]) -> dict[str, str]:
        return submit.find_requests(self.target(), tid, names)

    def withdraw(self, external_ids: list[str]) -> None:
        for number in map(as_id, external_ids):
            if number is not None:
                rms_db.cancel(self.target(), number)

    def submit(self, trans: Row[Any], tasks: list[Row[Any]]) -> dict[int, int]:
        return submit.submit_requests(self.target(), trans, tasks)
