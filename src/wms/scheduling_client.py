"""Typed clients of events, schedules and queues (``EventManager``, ``ScheduleManager``,
``QueueMonitoring``), sharing a :class:`~wms.client.WMSClient`'s connections and credentials.

Example::

    from wms.client import WMSClient
    from wms.scheduling_client import EventClient
    with WMSClient() as wms:
        events = EventClient(wms)
        events.create("an00h000", "the analysis at 00UTC is complete")
        [job] = wms.submit('[Executable = "run.sh"; Event = "an00h000";]')   # Standby
        events.notify("an00h000", {"RUN_DATE": "20261203"})   # {"Released": 1, ...}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from wms.client import WMSClient


class EventClient:
    def __init__(self, wms: WMSClient) -> None:
        self.rpc = wms.rpc("EventManager")

    def create(self, name: str, description: str = "", *, group_owned: bool = False,
               subscriber_groups: Sequence[str] = ()) -> int:
        return int(self.rpc.call("createEvent", name, description, {
            "GroupOwned": group_owned, "SubscriberGroups": list(subscriber_groups)}))

    def delete(self, name: str) -> list[int]:
        """Delete an event; returns the standby jobs killed with it."""
        return [int(x) for x in self.rpc.call("deleteEvent", name)]

    def all(self) -> list[dict[str, Any]]:
        return list(self.rpc.call("getEvents"))

    def get(self, name: str) -> dict[str, Any]:
        return dict(self.rpc.call("getEvent", name))

    def notify(self, name: str, environment: Mapping[str, str] | None = None
               ) -> dict[str, Any]:
        """Release every standby job of the event; ``{"NotificationID", "Released"}``."""
        return dict(self.rpc.call("notifyEvent", name, dict(environment or {})))

    def unsubscribe(self, job_id: int) -> dict[str, Any]:
        return dict(self.rpc.call("unsubscribeJob", int(job_id)))

    def history(self, name: str, limit: int = 50) -> list[dict[str, Any]]:
        return list(self.rpc.call("getEventHistory", name, int(limit)))

    def subscriptions(self, name: str) -> list[dict[str, Any]]:
        return list(self.rpc.call("getEventSubscriptions", name))


class ScheduleClient:
    def __init__(self, wms: WMSClient) -> None:
        self.rpc = wms.rpc("ScheduleManager")

    def add(self, name: str, jdl: str, *, every: str | int | None = None,
            cron: str | None = None, timezone: str = "UTC", overlap: str = "skip",
            catch_up: str = "none", max_runs: int | None = None, until: str | None = None,
            start: str | None = None) -> int:
        timing: dict[str, Any] = {"TimeZone": timezone}
        if every is not None:
            timing["Every"] = str(every)
        if cron is not None:
            timing["Cron"] = cron
        options: dict[str, Any] = {"Overlap": overlap, "CatchUp": catch_up}
        for key, value in (("MaxRuns", max_runs), ("Until", until), ("Start", start)):
            if value is not None:
                options[key] = value
        return int(self.rpc.call("addSchedule", name, jdl, timing, options))

    def all(self, everyone: bool = False) -> list[dict[str, Any]]:
        return list(self.rpc.call("getSchedules", everyone))

    def show(self, ref: int | str, limit: int = 50) -> dict[str, Any]:
        return dict(self.rpc.call("getSchedule", ref, int(limit)))

    def pause(self, ref: int | str) -> str:
        return str(self.rpc.call("pauseSchedule", ref))

    def resume(self, ref: int | str) -> str:
        return str(self.rpc.call("resumeSchedule", ref))

    def remove(self, ref: int | str) -> int:
        return int(self.rpc.call("removeSchedule", ref))


class QueueClient:
    def __init__(self, wms: WMSClient) -> None:
        self.rpc = wms.rpc("QueueMonitoring")

    def all(self, *, site: str | None = None, tag: str | None = None
            ) -> list[dict[str, Any]]:
        filters = {k: v for k, v in (("Site", site), ("Tag", tag)) if v}
        return list(self.rpc.call("getQueues", filters))
