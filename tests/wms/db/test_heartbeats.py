"""One row per heartbeat (``job_heartbeats``) and the WMS migration from DIRAC's row per value.

The oracle for "answers as before" is the old layout itself: the same heartbeats written as
the row-per-value code wrote them (``heartbeat_data``: a row per value, names cut at 100,
``str(value)``) and read back by its query (time, then row id).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from core import migrations
from core.db import Schema, init_schema, make_engine, schema_version, upgrade_schema
from core.security.identity import Identity
from monitoring.logic import accounting
from wms.db import heartbeats
from wms.db import jobs as jobs_db
from wms.db import schema as wms_schema
from wms.db.heartbeats import legacy_heartbeat_data as legacy
from wms.db.schema import WMS_SCHEMA
from wms.db.tables import job_heartbeats
from wms.logic import reports, state_update


@pytest.fixture
def db_url(db_url_all_drivers: str) -> str:
    """SQLite, and MariaDB with both drivers (pymysql, mysqlclient): driver-specific code."""
    return db_url_all_drivers


PILOT = Identity(auth_method="token", username="pilot", group="demo_pilot", vo="demo",
                 valid_dn=True, valid_group=True, properties=frozenset({"GenericPilot"}))
T0 = datetime(2026, 12, 3, 12, 0, tzinfo=timezone.utc)

#: the migration's position in the list (the coordinator may renumber: never hard-coded)
STEP = next(i for i, m in enumerate(WMS_SCHEMA.migrations)
            if getattr(m, "upgrade", None) is wms_schema._one_row_per_heartbeat)
#: the WMS schema up to this migration (later ones, if any, are not this test's business)
UPTO = Schema(WMS_SCHEMA.system, WMS_SCHEMA.metadata,
              migrations=list(WMS_SCHEMA.migrations)[:STEP + 1])


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url)
    init_schema(engine, WMS_SCHEMA)
    yield engine
    engine.dispose()


def make_jobs(engine: Engine, count: int) -> list[int]:
    with engine.begin() as conn:
        return jobs_db.insert_jobs(conn, [jobs_db.NewJob(
            owner="alice", owner_group="demo_user", vo="demo", status="Running",
            minor_status="Application", original_jdl="[]")] * count, now=T0, source="test")


def old_write(conn: Connection, job_id: int, dynamic: dict[Any, Any], when: datetime) -> None:
    """What the row-per-value code wrote for one heartbeat."""
    if dynamic:
        conn.execute(sa.insert(legacy), [
            {"job_id": job_id, "name": str(k)[:100], "value": str(v), "heartbeat_time": when}
            for k, v in dynamic.items()])


def old_read(conn: Connection, job_id: int) -> list[tuple[str, str, datetime]]:
    """What the row-per-value code answered."""
    return [tuple(row) for row in conn.execute(  # type: ignore[misc]
        sa.select(legacy.c.name, legacy.c.value, legacy.c.heartbeat_time)
        .where(legacy.c.job_id == job_id).order_by(legacy.c.heartbeat_time, legacy.c.id))]


LONG = "N" * 130
#: (job index, seconds after T0, dynamic data): two heartbeats in one second, a clock that
#: went back (a later row with an earlier time), long names sharing their first 100
#: characters, texts that need JSON escaping, values of every type a client sends
BEATS: list[tuple[int, int, dict[Any, Any]]] = [
    (0, 0, {"CPUConsumed": 12.5, "RSS": 204800, "Vsize": 409600.0, "MemoryUsed": 204800,
            "WallClockTime": 60.0, "AvailableDiskSpace": 51200, "LoadAverage": 1.5}),
    (1, 0, {"CPUConsumed": 1}),
    (0, 30, {"CPUConsumed": 13.5, "RSS": 204801}),
    (0, 30, {"CPUConsumed": 14.5, "RSS": 204802}),  # the same second
    (0, 30, {"LoadAverage": "n/a"}),  # the same second, other names: merged, same answer
    (1, 60, {LONG + "a": "x", LONG + "b": 'quo"te\\ \u00e9 \n {"json": [1]}', "": "empty"}),
    (1, 20, {"CPUConsumed": None, "Flag": True}),  # an earlier time, inserted later
    (2, 5, {"CPUConsumed": 0}),
]


def test_one_row_per_heartbeat_answers_as_the_row_per_value_layout(engine: Engine) -> None:
    jobs = make_jobs(engine, 3)
    with engine.begin() as conn:
        legacy.create(conn)
    for i, seconds, dynamic in BEATS:
        when = T0 + timedelta(seconds=seconds)
        # the write-behind path and the per-call path both store one row
        if seconds % 2:
            state_update.heartbeat(engine, PILOT, jobs[i], dynamic, {}, now=when)
        else:
            [result] = reports.apply_reports(engine, [reports.Heartbeat(
                PILOT, jobs[i], dynamic, {}, when=when)])
            assert result == {}
        with engine.begin() as conn:
            old_write(conn, jobs[i], dynamic, when)
    with engine.connect() as conn:
        rows = conn.execute(sa.select(sa.func.count()).select_from(job_heartbeats)).scalar()
        assert rows == len(BEATS)  # one row per heartbeat, not one per value
        for job in jobs:
            assert jobs_db.heartbeats_of(conn, job) == old_read(conn, job), job
        assert [v for n, v, _ in jobs_db.heartbeats_of(conn, jobs[0])][:3] == [
            "12.5", "204800", "409600.0"]  # texts as sent, not numbers
        assert len({n for n, _, _ in jobs_db.heartbeats_of(conn, jobs[1])} & {
            LONG[:100]}) == 1


def test_a_heartbeat_without_dynamic_data_writes_no_row(engine: Engine) -> None:
    [job] = make_jobs(engine, 1)
    assert reports.apply_reports(engine, [reports.Heartbeat(PILOT, job, {}, {})]) == [{}]
    state_update.heartbeat(engine, PILOT, job, {}, {}, now=T0)
    with engine.connect() as conn:
        assert jobs_db.heartbeats_of(conn, job) == []
        assert jobs_db.status_of(conn, [job])[job].status == "Running"


def test_latest_values_and_accounting_fallback(engine: Engine) -> None:
    jobs = make_jobs(engine, 3)
    with engine.begin() as conn:
        heartbeats.add(conn, [
            (jobs[0], heartbeats.encode({"CPUConsumed": 1, "MemoryUsed": 100}), T0),
            (jobs[0], heartbeats.encode({"CPUConsumed": 2}), T0 + timedelta(seconds=9)),
            (jobs[0], heartbeats.encode({"CPUConsumed": 3}), T0 + timedelta(seconds=9)),
            (jobs[1], heartbeats.encode({"RSS": 5}), T0)])
        # the last of each name wins; a name the newest heartbeat lacks keeps its earlier value
        assert heartbeats.latest_values(conn, jobs, ["CPUConsumed", "MemoryUsed"]) == {
            jobs[0]: {"CPUConsumed": "3", "MemoryUsed": "100"}}
        assert accounting._last_heartbeats(conn, jobs) == {
            jobs[0]: {"CPUConsumed": "3", "MemoryUsed": "100"}}


def test_deleting_a_job_deletes_its_heartbeats(engine: Engine) -> None:
    jobs = make_jobs(engine, 2)
    with engine.begin() as conn:
        for job in jobs:
            jobs_db.add_heartbeat(conn, job, {"CPUConsumed": 1}, T0)
        jobs_db.delete_jobs(conn, [jobs[0]])
    with engine.connect() as conn:
        left = conn.execute(sa.select(job_heartbeats.c.job_id)).scalars().all()
    assert left == [jobs[1]]


def _as_before_the_migration(engine: Engine) -> list[int]:
    """A database at the version before the migration, holding row-per-value heartbeats
    (and a stray row of a run stopped half-way in the new table)."""
    jobs = make_jobs(engine, 3)
    with engine.begin() as conn:
        legacy.create(conn)
        for i, seconds, dynamic in BEATS:
            old_write(conn, jobs[i], dynamic, T0 + timedelta(seconds=seconds))
        for n in range(40):  # a long history, across several read batches
            old_write(conn, jobs[2], {"CPUConsumed": n, "RSS": 2 * n},
                      T0 + timedelta(seconds=100 + n // 3))
        conn.execute(sa.insert(job_heartbeats).values(job_id=jobs[0], heartbeat_time=T0,
                                                      data='{"stray":"1"}'))
        conn.execute(sa.text("UPDATE pilotwms_schema SET version = :v "
                             "WHERE system = 'WorkloadManagement'"), {"v": STEP})
    return jobs


def test_migration_pivots_rows_and_its_downgrade_restores_them(
        db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(heartbeats, "MIGRATION_BATCH", 7)  # batch edges everywhere
    engine = make_engine(db_url)
    try:
        init_schema(engine, UPTO)
        with engine.begin() as conn:
            job_heartbeats.drop(conn)  # as the release before made it
            job_heartbeats.create(conn)  # ... plus a half-done earlier run
        jobs = _as_before_the_migration(engine)
        with engine.connect() as conn:
            before = {job: old_read(conn, job) for job in jobs}
            values = conn.execute(sa.select(sa.func.count()).select_from(legacy)).scalar()
        assert schema_version(engine, WMS_SCHEMA.system) == STEP
        assert upgrade_schema(engine, UPTO) == STEP + 1
        with engine.connect() as conn:
            assert not sa.inspect(conn).has_table("heartbeat_data")
            for job in jobs:
                assert jobs_db.heartbeats_of(conn, job) == before[job], job
            rows = conn.execute(sa.select(sa.func.count()).select_from(job_heartbeats)).scalar()
        # BEATS: 8 heartbeats; the two of job 0 at 30 s with distinct names became one, the
        # two long names of job 1 (the same 100 characters in the old rows) two; + 40
        assert rows == 8 - 1 + 1 + 40 < values
        # the write path goes on after the upgrade
        reports.apply_reports(engine, [reports.Heartbeat(PILOT, jobs[1], {"CPUConsumed": 9},
                                                         {}, when=T0 + timedelta(hours=1))])
        with engine.connect() as conn:
            after = jobs_db.heartbeats_of(conn, jobs[1])
        assert after[:-1] == before[jobs[1]] and after[-1][:2] == ("CPUConsumed", "9")

        assert migrations.downgrade_schema(engine, UPTO, STEP) == STEP
        with engine.connect() as conn:
            assert not sa.inspect(conn).has_table("job_heartbeats")
            assert old_read(conn, jobs[0]) == before[jobs[0]]
            assert old_read(conn, jobs[1]) == after
            assert old_read(conn, jobs[2]) == before[jobs[2]]
        assert upgrade_schema(engine, UPTO) == STEP + 1  # and up again
        with engine.connect() as conn:
            assert jobs_db.heartbeats_of(conn, jobs[1]) == after
            assert jobs_db.heartbeats_of(conn, jobs[2]) == before[jobs[2]]
    finally:
        engine.dispose()


def test_the_migration_on_a_database_without_the_old_table(db_url: str) -> None:
    """A database whose tables were made from the current metadata (``heartbeat_data``
    never existed) and stamped older: the step only makes sure the new table exists."""
    engine = make_engine(db_url)
    try:
        init_schema(engine, UPTO)
        [job] = make_jobs(engine, 1)
        with engine.begin() as conn:
            jobs_db.add_heartbeat(conn, job, {"CPUConsumed": 1}, T0)
            conn.execute(sa.text("UPDATE pilotwms_schema SET version = :v "
                                 "WHERE system = 'WorkloadManagement'"), {"v": STEP})
        assert upgrade_schema(engine, UPTO) == STEP + 1
        with engine.connect() as conn:
            assert [n for n, _, _ in jobs_db.heartbeats_of(conn, job)] == ["CPUConsumed"]
    finally:
        engine.dispose()
