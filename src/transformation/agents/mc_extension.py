"""``MCExtensionAgent``: transformations without input (``MCSimulation``) keep
``TasksInFlight`` (additional parameter; default 10) tasks open until ``MaxNumberOfTasks``
tasks were made; when every task is final after that, the transformation is Completed.

Run: ``pilotwms agent MCExtensionAgent --config server.yaml``.

Example::

    >>> MCExtensionAgent.name, MCExtensionAgent.period
    ('MCExtensionAgent', 30.0)
"""

from __future__ import annotations

import logging

from transformation.agents.base import TransformationAgentBase
from transformation.logic import states
from transformation.logic.transformations import (
    change_status,
    extend_in_flight,
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
            made = extend_in_flight(engine, tid, in_flight, self.name)
            if made:
                log.info("transformation %d extended by %d tasks", tid, made)
                busy = True
                continue
            counts = task_stats(engine, tid)
            total = counts.pop("TotalCreated")
            if total >= trans.max_tasks and not any(
                    n for s, n in counts.items() if s not in states.TASK_FINAL):
                change_status(engine, tid, states.COMPLETED, self.name,
                              f"All {total} tasks final: Completed")
        return not busy
