"""The backend interface, the same assertions on SQL and on the OpenSearch stand-in."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from core.exceptions import InvalidArgumentError
from monitoring.db.base import Aggregation, Backend
from monitoring.types import TYPES, doc_id, normalise

T0 = datetime(2026, 11, 30, 22, 0, tzinfo=timezone.utc)
JOB = TYPES["Job"]


def job(job_id: int, site: str, status: str, cpu: float, end: datetime) -> dict:
    doc = normalise(JOB, {"JobID": job_id, "User": "alice", "Site": site,
                          "FinalMajorStatus": status, "CPUTime": cpu, "ExecTime": 2 * cpu,
                          "EndTime": end, "SubmissionTime": end - timedelta(hours=1)})
    return {**doc, "_id": doc_id(JOB, doc)}


def test_put_is_an_upsert_and_aggregates_group_and_bucket(backend: Backend) -> None:
    docs = [job(1, "A", "Done", 10, T0), job(2, "A", "Failed", 5, T0 + timedelta(minutes=30)),
            job(3, "B", "Done", 7, T0 + timedelta(hours=3))]
    assert backend.put(JOB, docs) == 3
    assert backend.put(JOB, docs[:1]) == 1  # again: replaces, never duplicates
    everything = Aggregation(T0 - timedelta(days=1), T0 + timedelta(days=1),
                             sums=("CPUTime", "ExecTime"))
    [total] = backend.aggregate(JOB, everything)
    assert (total.count, total.sums) == (3, {"CPUTime": 22.0, "ExecTime": 44.0})
    by_site = backend.aggregate(JOB, Aggregation(
        everything.start, everything.end, group_by=("Site",), sums=("CPUTime",),
        interval=3600))
    assert sorted((r.keys, r.time, r.count, r.sums["CPUTime"]) for r in by_site) == [
        (("A",), T0, 2, 15.0), (("B",), T0 + timedelta(hours=3), 1, 7.0)]
    done = backend.aggregate(JOB, Aggregation(everything.start, everything.end,
                                              filters={"FinalMajorStatus": ["Done"]},
                                              sums=("CPUTime",)))
    assert [r.sums["CPUTime"] for r in done] == [17.0]
    assert backend.aggregate(JOB, Aggregation(T0 + timedelta(days=2),
                                              T0 + timedelta(days=3))) == []


def test_a_record_moving_to_another_month_is_not_duplicated(backend: Backend) -> None:
    backend.put(JOB, [job(7, "A", "Failed", 1, T0)])               # November
    backend.put(JOB, [job(7, "A", "Done", 3, T0 + timedelta(days=2))])  # December
    rows = backend.aggregate(JOB, Aggregation(T0 - timedelta(days=40), T0 + timedelta(days=40),
                                              group_by=("FinalMajorStatus",), sums=("CPUTime",)))
    assert [(r.keys, r.count, r.sums["CPUTime"]) for r in rows] == [(("Done",), 1, 3.0)]
    stored = backend.get(JOB, ["7", "8"])
    assert list(stored) == ["7"] and stored["7"]["FinalMajorStatus"] == "Done"
    assert stored["7"]["SubmissionTime"] == T0 + timedelta(days=2) - timedelta(hours=1)


def test_times_records_key_values_delete_and_retention(backend: Backend) -> None:
    hist = TYPES["WMSHistory"]
    docs = []
    for day in range(3):
        for status, n in (("Running", 2), ("Waiting", 5)):
            doc = normalise(hist, {"Status": status, "Site": "S", "Jobs": n + day,
                                   "timestamp": T0 + timedelta(days=day)})
            docs.append({**doc, "_id": doc_id(hist, doc)})
    backend.put(hist, docs)
    span = (T0 - timedelta(days=1), T0 + timedelta(days=5))
    assert backend.times(hist, *span) == [T0 + timedelta(days=d) for d in range(3)]
    newest = backend.records(hist, *span, filters={"Status": ["Waiting"]}, limit=2)
    assert [(r["Jobs"], r["timestamp"]) for r in newest] == [
        (7.0, T0 + timedelta(days=2)), (6.0, T0 + timedelta(days=1))]
    assert backend.key_values(hist)["Status"] == ["Running", "Waiting"]
    assert backend.delete_range(hist, T0 + timedelta(days=2), T0 + timedelta(days=3)) == 2
    assert len(backend.times(hist, *span)) == 2
    dropped = backend.drop_before(hist, T0 + timedelta(days=1))
    assert dropped >= 1  # rows on SQL, whole daily indices on OpenSearch
    assert backend.times(hist, *span) == [T0 + timedelta(days=1)]


def test_bad_records_are_refused() -> None:
    with pytest.raises(InvalidArgumentError, match="unknown field"):
        normalise(JOB, {"JobID": 1, "EndTime": T0, "Colour": "red"})
    with pytest.raises(InvalidArgumentError, match="not a number"):
        normalise(JOB, {"JobID": 1, "EndTime": T0, "CPUTime": "lots"})
    with pytest.raises(InvalidArgumentError, match="EndTime is required"):
        normalise(JOB, {"JobID": 1})
