"""Accounting buckets and reports, on both backends."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from core.db import init_schema, make_engine
from core.exceptions import InvalidArgumentError
from monitoring.db.base import Aggregation, Backend
from monitoring.db.sql import SQLBackend
from monitoring.db.tables import MONITORING_SCHEMA, dirty_buckets
from monitoring.logic import accounting, cycles
from monitoring.logic.reports import ReportRequest, build_report, report_grid, report_rows
from monitoring.types import TYPES

T0 = datetime(2026, 12, 1, tzinfo=timezone.utc)
JOB = TYPES["Job"]


@pytest.fixture
def state(backend: Backend, tmp_path: Path) -> sa.engine.Engine:
    """The state tables: in the SQL backend's own database (SQLite or MariaDB), else in a
    SQLite file."""
    if isinstance(backend, SQLBackend):
        return backend.engine
    engine = make_engine(f"sqlite:///{tmp_path / 'state.db'}")
    init_schema(engine, MONITORING_SCHEMA)
    return engine


def record(job_id: int, site: str, user: str, status: str, cpu: float, wall: float,
           end: datetime) -> dict:
    return {"JobID": job_id, "User": user, "UserGroup": "g", "VO": "v", "Site": site,
            "FinalMajorStatus": status, "CPUTime": cpu, "ExecTime": wall,
            "WallClockTime": wall, "EndTime": end}


def day_report(backend: Backend, report: str, grouping: str = "Site", **filters: list[str]
               ) -> dict:
    return build_report(backend, ReportRequest("Job", report, T0, T0 + timedelta(days=2),
                                               grouping, filters))


def test_buckets_follow_the_records_and_reports_read_them(backend: Backend,
                                                          state: sa.engine.Engine) -> None:
    records = [record(1, "A", "alice", "Done", 50, 100, T0 + timedelta(minutes=10)),
               record(2, "A", "bob", "Failed", 10, 100, T0 + timedelta(minutes=20)),
               record(3, "B", "alice", "Done", 90, 100, T0 + timedelta(hours=25))]
    assert accounting.store(backend, state, JOB, records) == 3
    # the same records again (a retried cycle): nothing doubles
    assert accounting.store(backend, state, JOB, records) == 3
    buckets = backend.aggregate(TYPES["JobBuckets"], Aggregation(
        T0, T0 + timedelta(days=2), group_by=("Site",), sums=("Entries", "CPUTime")))
    assert sorted((r.keys[0], r.sums["Entries"], r.sums["CPUTime"]) for r in buckets) == [
        ("A", 2.0, 60.0), ("B", 1.0, 90.0)]
    with state.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(dirty_buckets)).scalar() == 0

    bars = day_report(backend, "NumberOfJobs")
    assert bars["kind"] == "bars" and bars["granularity"] == 3600
    assert bars["data"]["A"][int(T0.timestamp())] == 2.0
    assert bars["data"]["B"][int((T0 + timedelta(hours=25)).timestamp())] == 1.0
    assert sum(bars["data"]["A"].values()) == 2.0 and len(bars["data"]["A"]) == 48
    pie = day_report(backend, "TotalCPUUsed", "User")
    assert pie["data"] == {"alice": 140.0, "bob": 10.0}
    eff = day_report(backend, "CPUEfficiency")
    assert eff["totals"] == {"A": 30.0, "B": 90.0}
    cumulative = day_report(backend, "CumulativeNumberOfJobs", "")
    assert list(cumulative["data"]["Total"].values())[-1] == 3.0
    failed = day_report(backend, "NumberOfJobs", FinalMajorStatus=["Failed"])
    assert failed["totals"] == {"A": 1.0}
    headers, rows = report_rows(pie)
    assert headers == ["User", "TotalCPUUsed (s)"] and rows == [["alice", 140.0],
                                                                ["bob", 10.0]]
    headers, rows = report_grid(pie)
    assert rows == [["alice", 140.0, "93.3%"], ["bob", 10.0, "6.7%"]]
    headers, rows = report_grid(bars)
    assert headers == ["Time", "A", "B", "Total"] and len(rows) == 48
    assert rows[0] == [T0, 2.0, 0.0, 2.0] and sum(r[-1] for r in rows) == 3.0


def test_a_job_ending_again_moves_its_bucket(backend: Backend,
                                             state: sa.engine.Engine) -> None:
    accounting.store(backend, state, JOB, [record(5, "A", "al", "Failed", 1, 1, T0)])
    later = T0 + timedelta(hours=30)
    accounting.store(backend, state, JOB, [record(5, "A", "al", "Done", 7, 8, later)])
    report = day_report(backend, "NumberOfJobs", "FinalMajorStatus")
    assert report["totals"] == {"Done": 1.0}
    assert report["data"]["Done"][int(later.timestamp())] == 1.0


def test_bad_report_requests_are_refused(backend: Backend) -> None:
    with pytest.raises(InvalidArgumentError, match="unknown report"):
        day_report(backend, "Colours")
    with pytest.raises(InvalidArgumentError, match="cannot group"):
        day_report(backend, "NumberOfJobs", "Planet")
    with pytest.raises(InvalidArgumentError, match="cannot select"):
        day_report(backend, "NumberOfJobs", Planet=["x"])
    with pytest.raises(InvalidArgumentError, match="unknown monitoring type"):
        build_report(backend, ReportRequest("Nope", "x", T0, T0 + timedelta(1), ""))
    with pytest.raises(InvalidArgumentError, match="whole hours"):
        build_report(backend, ReportRequest("Job", "NumberOfJobs", T0, T0 + timedelta(1),
                                            "Site", granularity=600))


def bucket_totals(backend: Backend) -> dict[tuple[str, str], tuple[float, float]]:
    rows = backend.aggregate(TYPES["JobBuckets"], Aggregation(
        T0 - timedelta(days=3), T0 + timedelta(days=3), group_by=("Site", "FinalMajorStatus"),
        sums=("Entries", "CPUTime")))
    return {r.keys: (r.sums["Entries"], round(r.sums["CPUTime"], 6)) for r in rows}


def test_incremental_buckets_equal_a_rebuild_and_survive_a_crash(
        backend: Backend, state: sa.engine.Engine) -> None:
    batches = [
        [record(i, "AB"[i % 2], "u", "Done", i, 2 * i, T0 + timedelta(minutes=7 * i))
         for i in range(1, 40)],
        # rescheduled jobs end again, elsewhere in time and status; some unchanged repeats
        [record(i, "A", "u", "Failed", 100 + i, 1, T0 + timedelta(hours=20, minutes=i))
         for i in range(1, 10)] + [record(30, "A", "u", "Done", 30, 60,
                                          T0 + timedelta(minutes=210))],
    ]
    for batch in batches:
        accounting.store(backend, state, JOB, batch)
    incremental = bucket_totals(backend)
    assert sum(e for e, _ in incremental.values()) == 39.0
    # the same hours rebuilt from the records give the same buckets
    hours = {int(T0.timestamp()) + 3600 * h for h in range(-1, 26)}
    accounting._mark_dirty(state, JOB, hours)
    accounting.rebuild_buckets(backend, state, JOB)
    assert bucket_totals(backend) == incremental

    class Dies:
        def __init__(self, inner: Backend) -> None:
            self.inner = inner

        def __getattr__(self, name: str) -> object:
            return getattr(self.inner, name)

        def delete_ids(self, *args: object) -> int:
            raise KeyboardInterrupt("killed between the records and their buckets")

    moved = [record(1, "B", "u", "Killed", 5, 5, T0 + timedelta(hours=2))]
    with pytest.raises(KeyboardInterrupt):
        accounting.store(Dies(backend), state, JOB, moved)  # type: ignore[arg-type]
    assert bucket_totals(backend) == incremental  # records moved, buckets not yet
    assert accounting.rebuild_buckets(backend, state, JOB) > 0  # the next cycle repairs
    after = bucket_totals(backend)
    assert after[("B", "Killed")] == (1.0, 5.0)
    assert sum(e for e, _ in after.values()) == 39.0


def test_one_shipper_at_a_time(state: sa.engine.Engine) -> None:
    assert cycles.acquire(state, "lease:test", 1, 60)
    assert not cycles.acquire(state, "lease:test", 2, 60)
    assert cycles.acquire(state, "lease:test", 1, 60)  # renewed by its owner
    cycles.release(state, "lease:test", 1)
    assert cycles.acquire(state, "lease:test", 2, 0)   # free; held for 0 s ...
    assert cycles.acquire(state, "lease:test", 3, 60)  # ... so it has expired
