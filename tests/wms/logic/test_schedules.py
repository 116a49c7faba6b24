"""Periodic schedules: timing (every, cron with time zones and DST), the scheduler's overlap and
catch-up policies, limits, concurrent schedulers (never two runs for one slot) and bad input,
on SQLite and MariaDB; the jobs are real WMS jobs stored by the scheduler's submit hook."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, Row

from core.db import init_schema, make_engine
from core.exceptions import AlreadyExistsError, InvalidArgumentError, NotFoundError
from wms.db import jobs as jobs_db
from wms.db.scheduling_tables import schedule_runs
from wms.db.schema import WMS_SCHEMA
from wms.logic import schedules
from wms.logic.jdl import parse_jdl
from wms.logic.submission import DEFAULT_LIMITS, Submitter, describe, store_in

UTC = timezone.utc
T0 = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
AL = schedules.Owner("alice", "demo_user", "demo")
JDL = '[Executable = "/bin/true"; JobGroup = "mine";]'


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url)
    init_schema(eng, WMS_SCHEMA)
    yield eng
    eng.dispose()


def submit(conn: Connection, sched: Row[Any], slot: datetime, now: datetime) -> int:
    who = Submitter(sched.owner, sched.owner_group, sched.vo)
    jdl = parse_jdl(sched.jdl)
    return store_in(conn, [jdl], [describe(jdl, who, DEFAULT_LIMITS)], who, DEFAULT_LIMITS,
                    now).job_ids[0]


def finish(engine: Engine, job_ids: list[int], status: str = "Done") -> None:
    with engine.begin() as conn:
        jobs_db.update_jobs(conn, job_ids, status=status)


def runs(engine: Engine, sid: int) -> list[tuple[datetime, str, int | None]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(schedule_runs.c.slot, schedule_runs.c.state,
                                      schedule_runs.c.job_id)
                            .where(schedule_runs.c.schedule_id == sid)
                            .order_by(schedule_runs.c.slot)).all()
    return [tuple(r) for r in rows]  # type: ignore[misc]


def test_timings() -> None:
    every = schedules.Timing(every_seconds=2)
    assert every.first(T0) == T0
    assert every.next_after(T0, T0) == T0 + timedelta(seconds=2)
    assert every.next_after(T0 + timedelta(seconds=3), T0) == T0 + timedelta(seconds=4)
    assert every.last_until(T0 + timedelta(seconds=7), T0) == T0 + timedelta(seconds=6)
    rome = schedules.Timing(cron="0 6 * * MON-FRI", timezone="Europe/Rome")
    # Friday 27 March 2026 06:00 CET is 05:00 UTC; Monday 30 March (after DST) 04:00 UTC
    friday = datetime(2026, 3, 27, 5, 0, tzinfo=UTC)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    assert rome.next_after(friday - timedelta(minutes=1), start) == friday
    assert rome.next_after(friday, start) == datetime(2026, 3, 30, 4, 0, tzinfo=UTC)
    assert rome.last_until(datetime(2026, 3, 29, 12, tzinfo=UTC), start) == friday
    assert [schedules.parse_every(x) for x in ("2", "2s", "5m", "1.5h", "1d", "1w")] == [
        2, 2, 300, 5400, 86400, 604800]


@pytest.mark.parametrize("bad", ["0", "0s", "0.2s", "-1", "abc", "1y", "", "400d"])
def test_bad_every(bad: str) -> None:
    with pytest.raises(InvalidArgumentError, match="every"):
        schedules.parse_every(bad)


@pytest.mark.parametrize("bad", ["* * *", "61 * * * *", "0 6 * * FOO", "0 0 30 2 *x",
                                 "0 6 * * MON-FRI *", "banana"])
def test_bad_cron(bad: str) -> None:
    with pytest.raises(InvalidArgumentError, match="cron expression"):
        schedules.check_cron(bad)


def test_skip_overlap_and_catch_up_none(engine: Engine) -> None:
    sid = schedules.create_schedule(engine, AL, "every2", JDL, schedules.Timing(2), now=T0)
    assert schedules.run_due(engine, submit, now=T0).submitted != []
    [(slot, state, job)] = runs(engine, sid)
    assert (slot, state) == (T0, "Submitted") and job is not None
    with engine.connect() as conn:  # runs carry the schedule's name as JobGroup
        assert jobs_db.status_of(conn, [job])[job].status == "Received"  # (no optimiser here)
        assert parse_jdl(jobs_db.jdls_of(conn, [job])[job]).get_str("JobGroup") == "every2"
    report = schedules.run_due(engine, submit, now=T0 + timedelta(seconds=2))
    assert (report.submitted, report.skipped) == ([], 1)  # the first run is not final
    finish(engine, [job])
    # downtime: 10 slots missed, one run only (catch-up none), for the latest slot
    report = schedules.run_due(engine, submit, now=T0 + timedelta(seconds=23))
    assert len(report.submitted) == 1
    assert runs(engine, sid)[-1][:2] == (T0 + timedelta(seconds=22), "Submitted")
    info = schedules.show(engine, AL, "every2")
    assert info["Runs"] == 2 and info["NextRun"] == T0 + timedelta(seconds=24)
    assert [h["State"] for h in info["History"]] == ["Submitted", "Skipped", "Submitted"]
    assert info["History"][1]["Note"].startswith(f"skipped: job {job} still")


def test_queue_parallel_catch_up_all_and_limits(engine: Engine) -> None:
    q = schedules.create_schedule(engine, AL, "q", JDL, schedules.Timing(10), now=T0,
                                  overlap="queue", catch_up="all")
    p = schedules.create_schedule(engine, AL, "p", JDL, schedules.Timing(10), now=T0,
                                  overlap="parallel", catch_up="all", max_runs=3)
    schedules.run_due(engine, submit, now=T0)
    report = schedules.run_due(engine, submit, now=T0 + timedelta(seconds=25))
    assert report.queued == 2  # q: slots 10 and 20 wait for the first run
    assert [r[1] for r in runs(engine, p)] == ["Submitted"] * 3  # caught up, in parallel
    assert schedules.show(engine, AL, "p")["Status"] == "Finished"
    first_q = runs(engine, q)[0][2]
    assert first_q is not None
    assert schedules.run_due(engine, submit, now=T0 + timedelta(seconds=26)).submitted == []
    finish(engine, [first_q], "Failed")
    report = schedules.run_due(engine, submit, now=T0 + timedelta(seconds=27))
    assert len(report.submitted) == 1  # one queued run at a time
    assert [r[1] for r in runs(engine, q)] == ["Submitted", "Submitted", "Queued"]
    until = schedules.create_schedule(
        engine, AL, "u", JDL, schedules.Timing(10), now=T0,
        until=T0 + timedelta(seconds=15))
    schedules.run_due(engine, submit, now=T0)
    finish(engine, [r[2] for r in runs(engine, until) if r[2]])
    schedules.run_due(engine, submit, now=T0 + timedelta(seconds=10))
    assert len(runs(engine, until)) == 2
    assert schedules.show(engine, AL, until)["Status"] == "Finished"


def test_pause_resume_remove_and_bad_input(engine: Engine) -> None:
    sid = schedules.create_schedule(engine, AL, "pz", JDL, schedules.Timing(5), now=T0)
    assert schedules.set_paused(engine, AL, "pz", True) == "Paused"
    assert schedules.run_due(engine, submit, now=T0 + timedelta(seconds=30)).submitted == []
    assert schedules.set_paused(engine, AL, sid, False) == "Active"
    assert len(schedules.run_due(engine, submit, now=T0 + timedelta(seconds=31)).submitted) == 1
    other = schedules.Owner("bob", "demo_user", "demo")
    with pytest.raises(NotFoundError):
        schedules.show(engine, other, sid)  # not bob's
    with pytest.raises(AlreadyExistsError):
        schedules.create_schedule(engine, AL, "pz", JDL, schedules.Timing(5), now=T0)
    for kwargs in ({"overlap": "sometimes"}, {"catch_up": "some"}, {"max_runs": 0},
                   {"until": T0 - timedelta(days=1)}):
        with pytest.raises(InvalidArgumentError):
            schedules.create_schedule(engine, AL, "bad", JDL, schedules.Timing(5), now=T0,
                                      **kwargs)
    with pytest.raises(InvalidArgumentError, match="schedule name"):
        schedules.create_schedule(engine, AL, "a b", JDL, schedules.Timing(5), now=T0)
    with pytest.raises(InvalidArgumentError, match="either every or a cron"):
        schedules.Timing()
    with pytest.raises(InvalidArgumentError, match="time zone"):
        schedules.Timing(cron="0 6 * * *", timezone="Mars/Olympus")
    assert schedules.remove(engine, AL, "pz") == sid
    assert [s["Name"] for s in schedules.list_schedules(engine, AL)] == []


def test_two_schedulers_never_make_two_runs_for_one_slot(engine: Engine) -> None:
    ids = [schedules.create_schedule(engine, AL, f"s{i}", JDL, schedules.Timing(1), now=T0,
                                     overlap="parallel") for i in range(5)]
    made: list[int] = []
    errors: list[BaseException] = []

    def scheduler(offset: int) -> None:
        try:
            for k in range(6):  # both see every slot; they race for each one
                now = T0 + timedelta(seconds=k, milliseconds=offset)
                made.extend(schedules.run_due(engine, submit, now=now).submitted)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=scheduler, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert len(made) == len(set(made))
    for sid in ids:
        slots = [r[0] for r in runs(engine, sid)]
        assert len(slots) == len(set(slots)) == 6
    assert len(made) == 30


@pytest.mark.parametrize("ref", ["²", "9" * 19, "1" * 25, -1, 2**63 - 1, "٣"])
def test_a_reference_that_is_no_id_is_not_found(engine: Engine, ref: str | int) -> None:
    """Found by the RPC fuzzer: ``getSchedule("²")`` was an HTTP 500 (``"²".isdigit()`` is
    true, ``int("²")`` fails) and ``"9" * 19`` overflowed the ID column."""
    schedules.create_schedule(engine, AL, "ok", JDL, schedules.Timing(5), now=T0)
    with pytest.raises(NotFoundError, match="no schedule"):
        schedules.show(engine, AL, ref)
    with pytest.raises(NotFoundError, match="no schedule"):
        schedules.set_paused(engine, AL, ref, True)
