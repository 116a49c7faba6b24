"""``ScheduleAgent``: makes the runs of periodic schedules when their slots come.

Each cycle it submits the queued runs whose turn came and fires every due schedule, each in
its own transaction (:func:`wms.logic.schedules.run_due`). Several copies split the schedules
(:meth:`~core.agent.Agent.mine`); the unique (schedule, slot) key of ``schedule_runs`` and the
schedule row lock make a second run for one slot impossible anyway. After downtime the
schedule's catch-up policy decides what runs.

Run it with ``pilotwms agent ScheduleAgent --config config.yaml``; its period (default 5 s)
bounds how late a run starts.

Example::

    >>> ScheduleAgent.period
    5.0
"""

from __future__ import annotations

import logging

from core.agent import Agent
from wms.logic import schedules
from wms.service.wiring import Wiring, schedule_submitter

log = logging.getLogger("pilotwms.agents.schedules")


class ScheduleAgent(Agent):
    name = "ScheduleAgent"
    period = 5.0

    def run_once(self) -> bool:
        wiring = Wiring(self.config, self.engine)
        report = schedules.run_due(self.engine(), schedule_submitter(wiring), mine=self.mine)
        if report.submitted or report.skipped or report.queued or report.failed:
            log.info("runs: submitted %s, skipped %d, queued %d, failed %d, conflicts %d",
                     report.submitted, report.skipped, report.queued, report.failed,
                     report.conflicts)
        return True
