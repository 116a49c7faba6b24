"""``TransformationAgent``: catalog files reach transformations, and become tasks.

Each cycle: (1) follow the catalog's change journal (new and re-described files matched
against every active input query, within seconds; the files of Active transformations are
grouped into tasks as they are attached); (2) reconcile the queries that are due
(new transformations at once, then every ``ReconcilePeriod``); (3) for this copy's share of
the active transformations, group the unused files into tasks with the plugin. Several copies
split the transformations (:meth:`Agent.mine`); the journal is followed by one copy at a time
(the watermark row) and tasks are stored under the transformation's row lock, so no file
ever lands in two tasks.

Run: ``pilotwms agent TransformationAgent --config server.yaml`` (``--once``, ``--period``).

Example::

    >>> TransformationAgent.name, TransformationAgent.period
    ('TransformationAgent', 5.0)
"""

from __future__ import annotations

import logging

from transformation.agents.base import TransformationAgentBase
from transformation.logic import inputs, states, tasks

log = logging.getLogger("pilotwms.agents.transformation")


class TransformationAgent(TransformationAgentBase):
    name = "TransformationAgent"
    period = 5.0

    def run_once(self) -> bool:
        engine = self.ts()
        catalog = self.catalog()
        busy = False
        se_sites = self.se_sites()
        report = inputs.follow_journal(engine, catalog, batch=self.settings.journal_batch,
                                       grouper=tasks.Grouper(catalog, se_sites))
        if report.attached or report.removed:
            log.info("journal: %d changes, %d files attached %s, %d removed", report.changes,
                     sum(report.attached.values()), report.attached, report.removed)
            busy = True
        for tid in inputs.due_for_reconciliation(engine, self.settings.reconcile_period):
            if self.mine(tid):
                added, gone = inputs.reconcile(engine, catalog, tid)
                busy = busy or bool(added or gone)
        for row in self.transformations(states.PROCESSING):
            if self.stopping:
                break
            made = tasks.make_tasks(engine, catalog, row.transformation_id, se_sites)
            if made:
                log.info("transformation %d: %d tasks", row.transformation_id, made)
                busy = True
        return not busy
