"""Stalled, failed, rescheduled and removed jobs, on both databases, through the real agent."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from core.config.schema import Config, StalledJobsConfig
from core.db import init_schema, make_engine
from wms.agents.stalled_jobs import StalledJobAgent
from wms.db import jobs as jobs_db
from wms.db.schema import WMS_SCHEMA
from wms.db.tables import jobs
from wms.logic import optimizer, stalled
from wms.logic.job_description import JobLimits
from wms.logic.submission import Submitter, submit
from wms.service.common import dequeue, enqueue

ALICE = Submitter("alice", "demo_user", "demo")


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url)
    init_schema(eng, WMS_SCHEMA)
    yield eng
    eng.dispose()


def new_jobs(engine: Engine, n: int) -> list[int]:
    ids = [submit(engine, '[Executable="x";]', ALICE, JobLimits()).job_ids[0] for _ in range(n)]
    optimizer.optimise(engine, ids, enqueue=enqueue)
    return ids


def force(engine: Engine, ids: list[int], *path: str) -> None:
    """Walk jobs through statuses as matcher and pilot would (each step allowed)."""
    for status in path:
        with engine.begin() as conn:
            rows = jobs_db.status_of(conn, ids)
            jobs_db.apply_status_changes(conn, [jobs_db.StatusChange(j, status, "test")
                                                for j in ids], rows,
                                         now=datetime.now(timezone.utc), source="test")


def status(engine: Engine, job_id: int) -> tuple[str, str]:
    with engine.connect() as conn:
        row = jobs_db.status_of(conn, [job_id])[job_id]
    return row.status, row.minor_status


def test_silent_running_job_stalls_then_fails(engine: Engine) -> None:
    [job, fresh] = new_jobs(engine, 2)
    force(engine, [job, fresh], "Matched", "Running")
    conf = StalledJobsConfig()
    now = datetime.now(timezone.utc)
    with engine.begin() as conn:
        jobs_db.update_jobs(conn, [job], heartbeat_time=now - timedelta(minutes=11))
        jobs_db.update_jobs(conn, [fresh], heartbeat_time=now)
    report = stalled.check_jobs(engine, conf, dequeue=dequeue, max_rescheduling=3, now=now)
    assert report.stalled == [job]
    assert status(engine, job) == ("Stalled", "Job stalled: pilot not running")
    assert status(engine, fresh)[0] == "Running"
    later = now + timedelta(minutes=21)
    report = stalled.check_jobs(engine, conf, dequeue=dequeue, max_rescheduling=3, now=later)
    assert report.failed == [job] and report.rescheduled == []
    assert status(engine, job) == ("Failed", "Job stalled: pilot not running")


def test_stalled_jobs_rescheduled_where_configured(engine: Engine) -> None:
    [job] = new_jobs(engine, 1)
    force(engine, [job], "Matched", "Running", "Stalled")
    conf = StalledJobsConfig(reschedule_stalled=True)
    later = datetime.now(timezone.utc) + timedelta(minutes=30)
    report = stalled.check_jobs(engine, conf, dequeue=dequeue, max_rescheduling=3, now=later)
    assert report.failed == [job] and report.rescheduled == [job]
    assert status(engine, job) == ("Rescheduled", "Job Rescheduled")
    with engine.connect() as conn:
        history = [h[0] for h in jobs_db.logging_of(conn, job)]
    assert history[-3:] == ["Stalled", "Failed", "Rescheduled"]


def test_stuck_matched_jobs_are_rescheduled(engine: Engine) -> None:
    [job] = new_jobs(engine, 1)
    force(engine, [job], "Matched")
    later = datetime.now(timezone.utc) + timedelta(minutes=16)
    report = stalled.check_jobs(engine, StalledJobsConfig(), dequeue=dequeue,
                                max_rescheduling=3, now=later)
    assert report.rescheduled == [job]
    assert status(engine, job)[0] == "Rescheduled"


def test_old_final_jobs_are_removed(engine: Engine) -> None:
    [old, recent] = new_jobs(engine, 2)
    force(engine, [old, recent], "Killed")
    removed: list[str] = []
    later = datetime.now(timezone.utc) + timedelta(days=31)
    with engine.begin() as conn:
        jobs_db.update_jobs(conn, [recent], last_update_time=later)
    report = stalled.check_jobs(engine, StalledJobsConfig(), dequeue=dequeue,
                                max_rescheduling=3, unassign=removed.extend, now=later)
    assert report.removed == [old] and removed == [f"Job:{old}"]
    with engine.connect() as conn:
        left = conn.execute(sa.select(jobs.c.job_id)).scalars().all()
    assert left == [recent]


def test_agent_cycle_and_work_split(config: Config, db_url: str) -> None:
    cfg = config.model_copy(update={"database": db_url})
    engine = make_engine(db_url)
    init_schema(engine, WMS_SCHEMA)
    ids = new_jobs(engine, 6)
    force(engine, ids, "Matched", "Running")
    with engine.begin() as conn:
        jobs_db.update_jobs(conn, ids, heartbeat_time=datetime.now(timezone.utc)
                            - timedelta(hours=1))
    first, second = StalledJobAgent(cfg, instance="a"), StalledJobAgent(cfg, instance="b")
    first.beat()
    assert second.beat() == ["a", "b"] and first.beat() == ["a", "b"]
    assert [j for j in ids if first.mine(j)] == [j for j in ids if j % 2 == 0]
    assert not any(first.mine(j) and second.mine(j) for j in ids)
    first.run(once=True)  # leaves its heartbeat row when done
    stalled_now = [j for j in ids if status(engine, j)[0] == "Stalled"]
    assert stalled_now == [j for j in ids if j % 2 == 0]
    assert second.beat() == ["b"]
    second.run(once=True)  # alone now: every job is its own
    # silent for an hour: the odd ones stall now; the even ones, already Stalled, fail
    assert {j: status(engine, j)[0] for j in ids} == {
        j: "Failed" if j % 2 == 0 else "Stalled" for j in ids}
    engine.dispose()
