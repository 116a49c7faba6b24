"""``EventAgent``: finishes notifications that a crash or a stopped server left Pending.

A notification is normally applied by ``EventManager.notifyEvent`` itself, within the
request. If the server process dies half-way, the notification stays ``Pending`` with some
subscriptions released (each one completely) and others untouched; this agent applies it
again, which releases exactly the untouched ones (:mod:`wms.logic.events`). Several copies
split the notifications (:meth:`~core.agent.Agent.mine`); should two apply the same one
anyway, the (notification, subscription) key keeps every release single.

Run it with ``pilotwms agent EventAgent --config config.yaml`` (``--once`` for one cycle).

Example::

    >>> EventAgent.period
    10.0
"""

from __future__ import annotations

import logging

from core.agent import Agent
from wms.logic import events
from wms.service.wiring import Wiring, release_hooks

log = logging.getLogger("pilotwms.agents.events")


class EventAgent(Agent):
    name = "EventAgent"
    period = 10.0
    #: seconds a notification may stay Pending before the agent takes it over
    grace = 10.0

    def run_once(self) -> bool:
        wiring = Wiring(self.config, self.engine)
        engine = self.engine()
        for note in events.pending_notifications(engine, older_than=self.grace):
            if not self.mine(note) or self.stopping:
                continue
            released = events.apply_notification(engine, note, release_hooks(wiring))
            log.info("notification %d finished: %d job(s) released", note, released)
        return True
