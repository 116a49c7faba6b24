"""Periodic schedules: a JDL submitted at regular intervals (``dcron``).

A schedule has a *timing* — ``every`` N seconds from its start, or a standard 5-field cron
expression (croniter) evaluated in a time zone (zoneinfo; DST handled: "0 6 * * MON-FRI" in
Europe/Rome is 06:00 Rome time all year) — and *slots*, the instants it fires. Each slot gives
at most one *run*: a row of ``schedule_runs`` (unique per schedule and slot, so several
``ScheduleAgent`` copies never make two runs for one slot) and, usually, a job whose
``JobGroup`` is the schedule's name.

* **Overlap** when a slot comes while an earlier run's job is not final: ``skip`` (default:
  the slot is recorded as Skipped), ``queue`` (recorded as Queued, submitted as soon as the
  runs before it are final, one at a time), ``parallel`` (submitted anyway).
* **Catch-up** after downtime (slots missed while no agent ran): ``none`` (default: one run
  for the latest missed slot, not one per slot) or ``all`` (one run per missed slot, at most
  :data:`MAX_CATCH_UP` per cycle).
* ``max_runs`` ends the schedule after that many runs (queued ones included), ``until`` after
  that instant; it is then ``Finished``. ``Paused`` schedules make no runs; on resume, the
  catch-up policy applies to what was missed.

Example::

    >>> from datetime import datetime, timezone
    >>> t = Timing(every_seconds=3600)
    >>> start = datetime(2026, 1, 1, 12, tzinfo=timezone.utc)
    >>> t.next_after(datetime(2026, 1, 1, 13, 30, tzinfo=timezone.utc), start).hour
    14
    >>> c = Timing(cron="0 6 * * MON-FRI", timezone="Europe/Rome")
    >>> c.next_after(datetime(2026, 7, 3, 5, tzinfo=timezone.utc), start).isoformat()
    '2026-07-06T04:00:00+00:00'
    >>> parse_every("90m"), parse_every("2s")
    (5400, 2)
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa
from croniter import croniter
from sqlalchemy.engine import Connection, Engine, Row

from core.db import utcnow, write_transaction
from core.exceptions import (
    AlreadyExistsError,
    InvalidArgumentError,
    NotFoundError,
)
from core.ids import as_id
from wms.db import schedules as db
from wms.logic.jdl import JDL, parse_jdl
from wms.logic.states import FINAL, REALLY_FINAL

OVERLAPS = ("skip", "queue", "parallel")
CATCH_UPS = ("none", "all")
ACTIVE, PAUSED, FINISHED = "Active", "Paused", "Finished"
SUBMITTED, QUEUED, SKIPPED, FAILED = "Submitted", "Queued", "Skipped", "Failed"
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}")
MAX_EVERY = 366 * 86400
#: runs made per schedule and cycle at most when catching up everything
MAX_CATCH_UP = 100
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_FINAL = sorted(str(s) for s in FINAL | REALLY_FINAL)


class ScheduleNotFoundError(NotFoundError):
    """No such schedule."""


def parse_every(text: str | int) -> int:
    """``"30"``, ``"30s"``, ``"5m"``, ``"1h"``, ``"1d"``, ``"2w"`` -> seconds (> 0)."""
    if isinstance(text, bool):
        raise InvalidArgumentError("every: give a duration like 30s, 5m, 1h, 1d")
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", str(text).lower())
    if match is None:
        raise InvalidArgumentError(f"every: {text!r} is not a duration (30s, 5m, 1h, 1d, 2w)")
    seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"]
    if seconds < 1:
        raise InvalidArgumentError(f"every: {text!r} must be at least 1 second")
    if seconds > MAX_EVERY:
        raise InvalidArgumentError(f"every: {text!r} is more than a year")
    return int(math.ceil(seconds))


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidArgumentError(f"unknown time zone {name!r}") from None


def check_cron(expression: str) -> str:
    """A standard 5-field cron expression (minute hour day month weekday), or an error."""
    if not isinstance(expression, str) or len(expression.split()) != 5:
        raise InvalidArgumentError(
            f"cron expression {expression!r}: 5 fields expected (minute hour day month "
            "weekday)")
    if not croniter.is_valid(expression):
        raise InvalidArgumentError(f"cron expression {expression!r} does not parse")
    try:
        croniter(expression, datetime(2026, 1, 1, tzinfo=timezone.utc)).get_next(datetime)
    except Exception as exc:  # noqa: BLE001 - croniter raises several kinds
        raise InvalidArgumentError(f"cron expression {expression!r}: {exc}") from None
    return " ".join(expression.split())


@dataclass(frozen=True)
class Timing:
    every_seconds: int | None = None
    cron: str | None = None
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        if (self.every_seconds is None) == (self.cron is None):
            raise InvalidArgumentError("give either every or a cron expression")
        zone(self.timezone)

    def next_after(self, after: datetime, start: datetime) -> datetime:
        """The first slot strictly after ``after`` (``every``: start + k * every)."""
        if self.every_seconds is not None:
            if after < start:
                return start
            k = int((after - start).total_seconds() // self.every_seconds) + 1
            return start + timedelta(seconds=k * self.every_seconds)
        assert self.cron is not None  # noqa: S101 - checked in __post_init__
        local = after.astimezone(zone(self.timezone))
        nxt: datetime = croniter(self.cron, local).get_next(datetime)
        return nxt.astimezone(timezone.utc)

    def last_until(self, moment: datetime, start: datetime) -> datetime:
        """The latest slot at or before ``moment`` (``start`` if none)."""
        if moment <= start:
            return start
        if self.every_seconds is not None:
            k = int((moment - start).total_seconds() // self.every_seconds)
            return start + timedelta(seconds=k * self.every_seconds)
        assert self.cron is not None  # noqa: S101 - checked in __post_init__
        local = (moment + timedelta(seconds=1)).astimezone(zone(self.timezone))
        prev: datetime = croniter(self.cron, local).get_prev(datetime)
        return max(prev.astimezone(timezone.utc), start)

    def first(self, start: datetime) -> datetime:
        """The first slot at or after ``start``."""
        if self.every_seconds is not None:
            return start
        return self.next_after(start - timedelta(seconds=1), start)


@dataclass(frozen=True)
class Owner:
    user: str
    group: str
    vo: str
    admin: bool = False


def parse_until(value: str | None, tz: str) -> datetime | None:
    """``YYYY-mm-dd`` (end of that day) or an ISO datetime, in the schedule's time zone
    unless it carries its own offset."""
    if value in (None, ""):
        return None
    text = str(value).strip()
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            day = date.fromisoformat(text)
            moment = datetime(day.year, day.month, day.day, 23, 59, 59, tzinfo=zone(tz))
        else:
            moment = datetime.fromisoformat(text)  # noqa: DTZ007 - zone added below
    except ValueError:
        raise InvalidArgumentError(f"until: {text!r} is not a date (YYYY-mm-dd or ISO "
                                   "datetime)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone(tz))
    return moment.astimezone(timezone.utc)


def create_schedule(engine: Engine, owner: Owner, name: str, jdl_text: str, timing: Timing, *,
                    overlap: str = "skip", catch_up: str = "none", max_runs: int | None = None,
                    until: datetime | None = None, start: datetime | None = None,
                    check_jdl: Callable[[JDL], None] | None = None,
                    on_created: Callable[[Connection, int, JDL], None] | None = None,
                    now: datetime | None = None) -> int:
    """A new Active schedule; ``check_jdl`` validates the JDL as a submission would;
    ``on_created(conn, schedule_id, jdl)`` runs in the creating transaction (e.g. to keep the
    input sandboxes of all future runs)."""
    if not isinstance(name, str) or NAME.fullmatch(name) is None:
        raise InvalidArgumentError(f"bad schedule name {name!r}: 1-32 letters, digits, '_.-'")
    if overlap not in OVERLAPS:
        raise InvalidArgumentError(f"overlap must be one of {', '.join(OVERLAPS)}")
    if catch_up not in CATCH_UPS:
        raise InvalidArgumentError(f"catch-up must be one of {', '.join(CATCH_UPS)}")
    if max_runs is not None and (isinstance(max_runs, bool) or int(max_runs) < 1):
        raise InvalidArgumentError("max-runs must be at least 1")
    now = now or utcnow()
    jdl = parse_jdl(jdl_text)
    if check_jdl is not None:
        check_jdl(jdl)
    start = start or now
    first = timing.first(start)
    if until is not None and first > until:
        raise InvalidArgumentError(f"until ({until:%Y-%m-%d %H:%M:%S} UTC) is before the first "
                                   f"run ({first:%Y-%m-%d %H:%M:%S} UTC)")
    jdl["JobGroup"] = name
    values = {"name": name, "owner": owner.user, "owner_group": owner.group, "vo": owner.vo,
              "jdl": jdl.to_text(), "every_seconds": timing.every_seconds, "cron": timing.cron,
              "timezone": timing.timezone, "overlap": overlap, "catch_up": catch_up,
              "max_runs": max_runs, "until": until, "start": start, "next_slot": first,
              "status": ACTIVE, "runs": 0, "created": now}
    with write_transaction(engine) as conn:
        if db.schedule_by_name(conn, owner.user, name) is not None:
            raise AlreadyExistsError(f"you already have a schedule named {name!r}")
        try:
            schedule_id = db.insert_schedule(conn, values)
        except sa.exc.IntegrityError:
            raise AlreadyExistsError(f"you already have a schedule named {name!r}") from None
        if on_created is not None:
            on_created(conn, schedule_id, jdl)
        return schedule_id


def _find(conn: Connection, owner: Owner, ref: str | int, *, for_update: bool = False
          ) -> Row[Any]:
    """A schedule by ID or by the caller's name for it; others' only for admins."""
    row = None
    number = as_id(ref)
    if number is not None:
        row = db.schedule(conn, number, for_update=for_update)
    if row is None and isinstance(ref, str):
        row = db.schedule_by_name(conn, owner.user, ref)
        if row is not None and for_update:
            row = db.schedule(conn, row.schedule_id, for_update=True)
    if row is None or (row.owner != owner.user and not (owner.admin and row.vo == owner.vo)):
        raise ScheduleNotFoundError(f"no schedule {ref!r}")
    return row


def describe(row: Row[Any]) -> dict[str, Any]:
    timing = f"every {row.every_seconds} s" if row.every_seconds else \
        f"cron '{row.cron}' {row.timezone}"
    return {"ScheduleID": row.schedule_id, "Name": row.name, "Owner": row.owner,
            "OwnerGroup": row.owner_group, "Timing": timing, "Every": row.every_seconds,
            "Cron": row.cron, "TimeZone": row.timezone, "Overlap": row.overlap,
            "CatchUp": row.catch_up, "MaxRuns": row.max_runs, "Until": row.until,
            "Start": row.start, "NextRun": row.next_slot, "Status": row.status,
            "Runs": row.runs, "Created": row.created, "JDL": row.jdl}


def list_schedules(engine: Engine, owner: Owner, *, everyone: bool = False
                   ) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = db.list_schedules(conn, owner=None if everyone and owner.admin else owner.user,
                                 vo=owner.vo)
    return [describe(r) for r in rows]


def show(engine: Engine, owner: Owner, ref: str | int, *, limit: int = 50) -> dict[str, Any]:
    """The schedule and its latest runs (slot, state, job, the job's status)."""
    with engine.connect() as conn:
        row = _find(conn, owner, ref)
        runs = db.runs(conn, row.schedule_id, limit=limit)
    out = describe(row)
    out["History"] = [{"RunID": r.run_id, "Slot": r.slot, "State": r.state, "JobID": r.job_id,
                       "JobStatus": r.job_status or "", "MinorStatus": r.job_minor_status or "",
                       "Note": r.note} for r in runs]
    return out


def set_paused(engine: Engine, owner: Owner, ref: str | int, paused: bool, *,
               now: datetime | None = None) -> str:
    """Pause or resume; returns the new status. Resuming keeps the missed slots due, so the
    catch-up policy decides what runs."""
    with write_transaction(engine) as conn:
        row = _find(conn, owner, ref, for_update=True)
        if row.status == FINISHED:
            raise InvalidArgumentError(f"schedule {row.name} is finished")
        status = PAUSED if paused else ACTIVE
        db.update_schedule(conn, row.schedule_id, status=status)
    return status


def remove(engine: Engine, owner: Owner, ref: str | int, *,
           on_removed: Callable[[int], None] | None = None) -> int:
    """Delete the schedule and its run history (jobs already made stay). Returns its ID;
    ``on_removed(schedule_id)`` runs after the commit (e.g. to release its sandboxes)."""
    with write_transaction(engine) as conn:
        row = _find(conn, owner, ref, for_update=True)
        db.delete_schedule(conn, row.schedule_id)
    if on_removed is not None:
        on_removed(int(row.schedule_id))
    return int(row.schedule_id)


# -- the scheduler --------------------------------------------------------------------------

#: ``submit(conn, schedule row, slot, now) -> job_id``: stores the run's job in ``conn``'s
#: transaction (raises to make the run Failed: the error becomes its note)
SubmitRun = Callable[[Connection, Row[Any], datetime, datetime], int]


@dataclass
class CycleReport:
    submitted: list[int]
    skipped: int = 0
    queued: int = 0
    failed: int = 0
    conflicts: int = 0


def run_due(engine: Engine, submit: SubmitRun, *, now: datetime | None = None,
            mine: Callable[[int], bool] | None = None) -> CycleReport:
    """One scheduler cycle: queued runs whose turn came, then every due schedule (each in its
    own transaction)."""
    now = now or utcnow()
    report = CycleReport(submitted=[])
    with engine.connect() as conn:
        queued = db.with_queued_runs(conn)
        due = db.due(conn, now)
    for schedule_id in queued:
        if mine is None or mine(schedule_id):
            _guarded(engine, report, _start_queued, schedule_id, submit, now)
    for schedule_id in due:
        if mine is None or mine(schedule_id):
            _guarded(engine, report, _fire, schedule_id, submit, now)
    return report


Step = Callable[[Connection, int, SubmitRun, datetime, CycleReport], None]


def _guarded(engine: Engine, report: CycleReport, step: Step, schedule_id: int,
             submit: SubmitRun, now: datetime) -> None:
    try:
        with write_transaction(engine) as conn:
            step(conn, schedule_id, submit, now, report)
    except sa.exc.IntegrityError:
        report.conflicts += 1  # another scheduler made this slot's run first


def _busy(conn: Connection, schedule_id: int) -> list[Row[Any]]:
    return db.unfinished_runs(conn, schedule_id, _FINAL)


def _start_queued(conn: Connection, schedule_id: int, submit: SubmitRun, now: datetime,
                  report: CycleReport) -> None:
    sched = db.schedule(conn, schedule_id, for_update=True)
    if sched is None or sched.status == PAUSED or _busy(conn, schedule_id):
        return
    waiting = db.runs(conn, schedule_id, states=[QUEUED], limit=1, oldest_first=True)
    if waiting:
        _submit(conn, sched, waiting[0].slot, submit, now, report, run_id=waiting[0].run_id)


def _submit(conn: Connection, sched: Row[Any], slot: datetime, submit: SubmitRun,
            now: datetime, report: CycleReport, *, run_id: int | None = None) -> None:
    if run_id is None:  # the row first: a concurrent scheduler fails here, before a job
        run_id = db.add_run(conn, sched.schedule_id, slot, SUBMITTED, now)
    try:
        with conn.begin_nested():
            job_id = submit(conn, sched, slot, now)
    except sa.exc.IntegrityError:
        raise
    except Exception as exc:  # noqa: BLE001 - a bad run must not stop the schedule
        db.set_run(conn, run_id, state=FAILED, note=str(exc))
        report.failed += 1
        return
    db.set_run(conn, run_id, state=SUBMITTED, job_id=job_id)
    report.submitted.append(job_id)


def _fire(conn: Connection, schedule_id: int, submit: SubmitRun, now: datetime,
          report: CycleReport) -> None:
    sched = db.schedule(conn, schedule_id, for_update=True)
    if sched is None or sched.status != ACTIVE or sched.next_slot is None \
            or sched.next_slot > now:
        return  # another scheduler was here first, or it changed meanwhile
    timing = Timing(sched.every_seconds, sched.cron, sched.timezone)
    if sched.catch_up == "none":  # one run for the latest slot, however many were missed
        slots = [max(timing.last_until(now, sched.start), sched.next_slot)]
    else:
        slots = [sched.next_slot]
        while len(slots) < MAX_CATCH_UP:
            following = timing.next_after(slots[-1], sched.start)
            if following > now:
                break
            slots.append(following)
    runs = sched.runs
    finished = False
    for slot in slots:
        if sched.until is not None and slot > sched.until:
            finished = True
            break
        if sched.max_runs is not None and runs >= sched.max_runs:
            finished = True
            break
        busy = _busy(conn, schedule_id) or db.runs(conn, schedule_id, states=[QUEUED], limit=1)
        if busy and sched.overlap == "skip":
            what = (f"job {busy[0].job_id} still {busy[0].status}" if busy[0].job_id
                    else "a queued run is waiting")
            db.add_run(conn, schedule_id, slot, SKIPPED, now, note=f"skipped: {what}")
            report.skipped += 1
            continue
        if busy and sched.overlap == "queue":
            db.add_run(conn, schedule_id, slot, QUEUED, now, note="waiting for the runs "
                       "before it")
            report.queued += 1
        else:
            _submit(conn, sched, slot, submit, now, report)
        runs += 1
    following = timing.next_after(slots[-1], sched.start)
    if (sched.max_runs is not None and runs >= sched.max_runs) or \
            (sched.until is not None and following > sched.until):
        finished = True
    db.update_schedule(conn, schedule_id, runs=runs,
                       next_slot=None if finished else following,
                       status=FINISHED if finished else ACTIVE)
