"""``StalledJobAgent``: silent jobs become Stalled, then Failed (or Rescheduled); jobs stuck
in Matched are rescheduled; old final jobs are removed. The rules: :mod:`wms.logic.stalled`.

Run it with ``pilotwms agent StalledJobAgent --config config.yaml`` (``--once`` for one
cycle); several copies split the jobs between them.

Example::

    >>> StalledJobAgent.period
    60.0
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from sqlalchemy.engine import Connection

from core.agent import Agent
from wms.logic import matching, sandboxes, stalled

log = logging.getLogger("pilotwms.agents.stalled")


def _dequeue(conn: Connection, job_ids: Sequence[int]) -> None:
    matching.dequeue_jobs(conn, job_ids)


class StalledJobAgent(Agent):
    name = "StalledJobAgent"
    period = 60.0

    def run_once(self) -> bool:
        engine = self.engine()
        report = stalled.check_jobs(
            engine, self.config.operations.stalled_jobs, dequeue=_dequeue,
            max_rescheduling=self.config.operations.max_rescheduling,
            unassign=lambda entities: sandboxes.unassign(engine, entities), mine=self.mine)
        if any((report.stalled, report.failed, report.rescheduled, report.removed)):
            log.info("stalled %s failed %s rescheduled %s removed %d", report.stalled,
                     report.failed, report.rescheduled, len(report.removed))
        return True
