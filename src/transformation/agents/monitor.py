"""``TransformationMonitor``: task and file statuses follow the jobs and requests.

For this copy's share of the transformations with submitted tasks: one bulk status read per
transformation (jobs from the WMS database, requests from the RMS database), then
:func:`transformation.logic.monitor.follow`. Before a job task becomes Done, the outputs its
job uploaded (job parameter ``UploadedOutputData``) are registered in the catalog with the
task's input files as ancestors. Transformations whose work is all done move on: Flush/Active
ones stay; ``Completing`` ones become ``Completed`` when no file is left to process.

Run: ``pilotwms agent TransformationMonitor --config server.yaml``.

Example::

    >>> TransformationMonitor.name, TransformationMonitor.period
    ('TransformationMonitor', 10.0)
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.engine import Row

from dms.logic.ancestry import add_ancestors
from transformation.agents.base import TransformationAgentBase
from transformation.logic import monitor, states
from transformation.logic.catalog import CATALOG_ADMIN
from transformation.logic.tasks import task_inputs
from transformation.logic.transformations import change_status, file_stats, task_stats

log = logging.getLogger("pilotwms.agents.monitor")

FOLLOWED = states.SUBMITTING | {states.COMPLETING, states.COMPLETED, states.CLEANING}


class TransformationMonitor(TransformationAgentBase):
    name = "TransformationMonitor"
    period = 10.0

    def run_once(self) -> bool:
        engine = self.ts()
        busy = False
        max_reset = self.settings.files_max_reset_counter
        jobs = monitor.job_statuses(self.engine("WorkloadManagement"))
        requests = None
        for trans in self.transformations(FOLLOWED):
            tid = trans.transformation_id
            if self.settings.kind_of(trans.type) == "Request":
                requests = requests or monitor.request_statuses(
                    self.engine("RequestManagement"))
                report = monitor.follow(engine, tid, requests, max_reset=max_reset)
            else:
                report = monitor.follow(engine, tid, jobs, max_reset=max_reset,
                                        before_final=lambda done: self._ancestry(done))
            if report.updated:
                busy = True
                log.info("transformation %d: %d tasks updated, %d done, %d failed", tid,
                         report.updated, len(report.done), len(report.failed))
            if trans.status == states.COMPLETING:
                self._complete(tid)
        return not busy

    def _ancestry(self, done: list[Row[Any]]) -> None:
        if "DataManagement" not in self.config.systems:
            return
        outputs = monitor.outputs_of(self.engine("WorkloadManagement"), done)
        entries = monitor.ancestry(outputs, {t.task_id: task_inputs(t) for t in done})
        if entries:
            result = add_ancestors(self.engine("DataManagement"), CATALOG_ADMIN, entries)
            if result.failed:
                log.warning("ancestry not registered for %s", result.failed)

    def _complete(self, tid: int) -> None:
        files = file_stats(self.ts(), tid)
        tasks = task_stats(self.ts(), tid)
        pending = files.get(states.UNUSED, 0) + files.get(states.ASSIGNED, 0)
        running = sum(n for s, n in tasks.items()
                      if s != "TotalCreated" and s not in states.TASK_FINAL)
        if not pending and not running:
            change_status(self.ts(), tid, states.COMPLETED, self.name,
                          "Completing: every file and task is final: Completed")
