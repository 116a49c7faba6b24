"""``WorkloadManagement/ScheduleManager``: periodic schedules (``dcron``).

The ``ScheduleAgent`` makes the runs (:mod:`wms.logic.schedules`); this service keeps the
schedules.

| method | arguments | value |
|---|---|---|
| ``addSchedule`` | name, JDL, timing, options | ScheduleID |
| ``getSchedules`` | all (bool, administrators) | list |
| ``getSchedule`` | ID or name, history length | the schedule and its latest runs |
| ``pauseSchedule`` / ``resumeSchedule`` | ID or name | the new status |
| ``removeSchedule`` | ID or name | ScheduleID |

``timing``: ``{"Every": "1h"}`` or ``{"Cron": "0 6 * * MON-FRI", "TimeZone": "Europe/Rome"}``.
``options``: ``Overlap`` (skip, queue, parallel), ``CatchUp`` (none, all), ``MaxRuns``,
``Until`` (``YYYY-mm-dd`` or ISO datetime, in the schedule's time zone without offset),
``Start`` (ISO datetime: the anchor of ``Every``; default now).

Example (wire)::

    args = '["nightly", "[Executable=\\"run.sh\\";]", {"Cron": "0 2 * * *"}, {}]'
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy.engine import Connection

from core.db import utcnow
from core.exceptions import InvalidArgumentError, InvalidJDLError
from core.rpc.service import Call, Service, rpc_method
from wms.logic import capacity, events, sandboxes, schedules, submission
from wms.logic.jdl import JDL
from wms.logic.parametric import is_parametric
from wms.service.common import SYSTEM, limits_from, sandbox_settings
from wms.service.wiring import engine

USERS = ["NormalUser", "JobAdministrator", "ProductionManagement"]
_OPTIONS = {"Overlap", "CatchUp", "MaxRuns", "Until", "Start"}


def _owner(call: Call) -> schedules.Owner:
    ident = call.identity
    return schedules.Owner(ident.username or "", ident.group or "", ident.vo or "",
                           "JobAdministrator" in ident.properties)


def _ref(value: Any) -> str | int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise InvalidArgumentError("give a schedule ID or name")
    return value


class ScheduleManagerService(Service):
    system = SYSTEM
    name = "ScheduleManager"

    @rpc_method("addSchedule", rights=USERS)
    def add_schedule(self, call: Call, name: str, jdl: str, timing: dict[str, Any],
                     options: dict[str, Any] | None = None) -> int:
        opts = dict(options or {})
        unknown = set(opts) - _OPTIONS
        if unknown:
            raise InvalidArgumentError(f"unknown options: {', '.join(sorted(unknown))}")
        bad = set(timing) - {"Every", "Cron", "TimeZone"}
        if bad:
            raise InvalidArgumentError(f"unknown timing keys: {', '.join(sorted(bad))}")
        tz = str(timing.get("TimeZone") or "UTC")
        every = timing.get("Every")
        cron = timing.get("Cron")
        when = schedules.Timing(
            every_seconds=schedules.parse_every(every) if every is not None else None,
            cron=schedules.check_cron(str(cron)) if cron is not None else None, timezone=tz)
        owner = _owner(call)
        who = submission.Submitter(owner.user, owner.group, owner.vo)
        config = self.ctx.config

        def check(parsed: JDL) -> None:
            if is_parametric(parsed):
                raise InvalidJDLError("a schedule runs one job per slot: no parametric JDL")
            if events.event_of(parsed) is not None:
                raise InvalidJDLError("a scheduled job cannot subscribe to an event")
            capacity.check_jobs(config, [submission.describe(parsed, who,
                                                             limits_from(config))])

        start = None
        if opts.get("Start"):
            try:
                start = datetime.fromisoformat(str(opts["Start"]))
            except ValueError:
                raise InvalidArgumentError(f"Start: {opts['Start']!r} is not an ISO "
                                           "datetime") from None
            if start.tzinfo is None:
                start = start.replace(tzinfo=schedules.zone(tz))
            start = start.astimezone(timezone.utc)
        max_runs = opts.get("MaxRuns")
        if max_runs is not None and (isinstance(max_runs, bool) or not isinstance(max_runs, int)):
            raise InvalidArgumentError("MaxRuns must be an integer")
        requester = sandboxes.Requester.from_identity(call.identity)
        settings = sandbox_settings(self.ctx)

        def keep_sandboxes(conn: Connection, schedule_id: int, parsed: JDL) -> None:
            # assigned to the schedule itself: the cleanup keeps them for every future run
            refs = [str(x) for x in parsed.get_list("InputSandbox") if str(x).startswith("SB:")]
            if refs:
                sandboxes.assign_in(conn, settings, requester,
                                    {f"Schedule:{schedule_id}": refs}, "Input", utcnow())

        return schedules.create_schedule(
            engine(self.ctx), owner, name, jdl, when,
            overlap=str(opts.get("Overlap") or "skip"),
            catch_up=str(opts.get("CatchUp") or "none"), max_runs=max_runs,
            until=schedules.parse_until(opts.get("Until"), tz), start=start, check_jdl=check,
            on_created=keep_sandboxes)

    @rpc_method("getSchedules", rights="authenticated")
    def get_schedules(self, call: Call, everyone: bool = False) -> list[dict[str, Any]]:
        return schedules.list_schedules(engine(self.ctx), _owner(call), everyone=everyone)

    @rpc_method("getSchedule", rights="authenticated")
    def get_schedule(self, call: Call, ref: int | str, limit: int = 50) -> dict[str, Any]:
        if not 1 <= int(limit) <= 10_000:
            raise InvalidArgumentError("limit must be between 1 and 10000")
        return schedules.show(engine(self.ctx), _owner(call), _ref(ref), limit=int(limit))

    @rpc_method("pauseSchedule", rights="authenticated")
    def pause_schedule(self, call: Call, ref: int | str) -> str:
        return schedules.set_paused(engine(self.ctx), _owner(call), _ref(ref), True)

    @rpc_method("resumeSchedule", rights="authenticated")
    def resume_schedule(self, call: Call, ref: int | str) -> str:
        return schedules.set_paused(engine(self.ctx), _owner(call), _ref(ref), False)

    @rpc_method("removeSchedule", rights="authenticated")
    def remove_schedule(self, call: Call, ref: int | str) -> int:
        eng = engine(self.ctx)

        def release(schedule_id: int) -> None:
            sandboxes.unassign(eng, [f"Schedule:{schedule_id}"])

        return schedules.remove(eng, _owner(call), _ref(ref), on_removed=release)
