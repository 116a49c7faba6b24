"""``WorkloadManagement/EventManager``: events, their notifications and subscriptions.

Subscribing is submitting: a JDL with ``Event = "<name>"`` sent to ``JobManager.submitJob``
makes a job in ``Standby`` (docs/events.md). This service does the rest.

| method | rights | arguments | value |
|---|---|---|---|
| ``createEvent`` | EventManager, JobAdministrator | name, description, options | EventID |
| ``deleteEvent`` | owner | name | the standby jobs killed |
| ``getEvents`` | authenticated | | list of events of the caller's VO |
| ``getEvent`` | authenticated | name | one event |
| ``notifyEvent`` | owner | name, {NAME: value} | {NotificationID, Released} |
| ``unsubscribeJob`` | the job's owner | job ID | {Event, StandbyJob, Releases} |
| ``getEventHistory`` | authenticated | name, limit | notifications, newest first |
| ``getEventSubscriptions`` | authenticated | name | subscriptions |

``createEvent`` options: ``GroupOwned`` (bool: every EventManager of the caller's group may
notify), ``SubscriberGroups`` (list: who may subscribe; default any group of the VO).

Example (wire)::

    requests.post(url + "/WorkloadManagement/EventManager",
                  data={"method": "notifyEvent", "args": '["an00h000", {"STEP": "240"}]'})
    # {"OK": true, "Value": {"NotificationID": 7, "Released": 312}}
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from core.exceptions import InvalidArgumentError
from core.rpc.service import Call, Service, rpc_method
from wms.logic import events
from wms.service.common import SYSTEM
from wms.service.wiring import engine, known_groups, release_hooks

log = logging.getLogger("pilotwms.events")
MANAGERS = ["EventManager", "JobAdministrator"]


class EventManagerService(Service):
    system = SYSTEM
    name = "EventManager"

    #: seconds between sweeps for notifications a crash left Pending
    SWEEP_PERIOD = 30.0

    def background_tasks(self) -> list[tuple[float, Callable[[], None]]]:
        return [(self.SWEEP_PERIOD, self._sweep)]

    def _sweep(self) -> None:
        for note in events.pending_notifications(engine(self.ctx), older_than=60.0):
            events.apply_notification(engine(self.ctx), note, release_hooks(self.ctx))

    @rpc_method("createEvent", rights=MANAGERS)
    def create_event(self, call: Call, name: str, description: str = "",
                     options: dict[str, Any] | None = None) -> int:
        opts = dict(options or {})
        unknown = set(opts) - {"GroupOwned", "SubscriberGroups"}
        if unknown:
            raise InvalidArgumentError(f"unknown options: {', '.join(sorted(unknown))}")
        groups = opts.get("SubscriberGroups") or []
        if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
            raise InvalidArgumentError("SubscriberGroups must be a list of group names")
        return events.create_event(
            engine(self.ctx), events.Actor.from_identity(call.identity), name, description,
            group_owned=bool(opts.get("GroupOwned", False)), subscriber_groups=groups,
            known_groups=known_groups(self.ctx))

    @rpc_method("deleteEvent", rights="authenticated")
    def delete_event(self, call: Call, name: str) -> list[int]:
        return events.delete_event(engine(self.ctx), events.Actor.from_identity(call.identity),
                                   name)

    @rpc_method("getEvents", rights="authenticated")
    def get_events(self, call: Call) -> list[dict[str, Any]]:
        return events.list_events(engine(self.ctx), events.Actor.from_identity(call.identity))

    @rpc_method("getEvent", rights="authenticated")
    def get_event(self, call: Call, name: str) -> dict[str, Any]:
        return events.get_event(engine(self.ctx), events.Actor.from_identity(call.identity),
                                name)

    @rpc_method("notifyEvent", rights="authenticated")
    def notify_event(self, call: Call, name: str,
                     environment: dict[str, Any] | None = None) -> dict[str, Any]:
        """Record the notification, then release its jobs at once (an EventAgent, or this
        service's sweep, finishes the work if this process dies half-way)."""
        eng = engine(self.ctx)
        note = events.notify(eng, events.Actor.from_identity(call.identity), name, environment)
        released = events.apply_notification(eng, note, release_hooks(self.ctx))
        log.info("event %s notified by %s: %d job(s) released", name, call.identity.username,
                 released)
        return {"NotificationID": note, "Released": released}

    @rpc_method("unsubscribeJob", rights="authenticated")
    def unsubscribe_job(self, call: Call, job_id: int) -> dict[str, Any]:
        return events.unsubscribe(engine(self.ctx), events.Actor.from_identity(call.identity),
                                  int(job_id))

    @rpc_method("getEventHistory", rights="authenticated")
    def get_event_history(self, call: Call, name: str, limit: int = 50
                          ) -> list[dict[str, Any]]:
        return events.history(engine(self.ctx), events.Actor.from_identity(call.identity),
                              name, int(limit))

    @rpc_method("getEventSubscriptions", rights="authenticated")
    def get_event_subscriptions(self, call: Call, name: str) -> list[dict[str, Any]]:
        return events.subscriptions(engine(self.ctx),
                                    events.Actor.from_identity(call.identity), name)
