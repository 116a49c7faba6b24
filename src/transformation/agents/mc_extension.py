"""``MCExtensionAgent``: transformations without input (``MCSimulation``) keep
``TasksInFlight`` (additional parameter; default 10) tasks open until ``MaxNumberOfTasks``
tasks were made; when every task is final after that, the transformation is Completed.

Run: ``pilotwms agent MCExtensionAgent --config server.yaml``.
"""

from __future__ import annotations

import logging

from transformation.agents.base import TransformationAgentBase
from transformation.logic import states
from transformation.logic.transformations import (
    change_status,
    make_empty_tasks,
    parameters_of,
    task_stats,
)

log = logging.getLogger("pilotwms.agents.mcextension")
DEFAULT_IN_FLIGHT = 10


class MCExtensionAgent(TransformationAgentBase):
    name = "MCExtensionAgent"
    period = 30.0

    def run_once(self) -> bool:
        busy = False
        engine = self.ts()
        for trans in self.transformations({states.ACTIVE}):
            if trans.input_query or not trans.max_tasks:
                continue
            tid = trans.transformation_id
            in_flight = int(parameters_of(engine, tid).get("TasksInFlight",
                                                           DEFAULT_IN_FLIGHT))
            counts = task_stats(engine, tid)
            made = counts.pop("TotalCreated")
            open_now = sum(n for s, n in counts.items() if s not in states.TASK_FINAL)
            room = min(in_flight - open_now, trans.max_tasks - made)
            if room > 0:
                make_empty_tasks(engine, tid, room, self.name)
                log.info("transformation %d extended by %d tasks", tid, room)
                busy = True
            elif made >= trans.max_tasks and not open_now:
                change_status(engine, tid, states.COMPLETED, self.name,
                              f"All {made} tasks final: Completed")
        return not busy
