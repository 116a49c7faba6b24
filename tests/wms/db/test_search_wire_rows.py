"""The search's fast path (datetimes written by the database, rows straight from the driver,
marked for the wire once) encodes to the very bytes of the general path (datetime objects read
through SQLAlchemy, encoded by the JEncode callback), on SQLite and MariaDB, for every column
type and the awkward values: None, unicode, microseconds, pages and keyset filters."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from core.db import init_schema, make_engine, utcnow
from core.db import write_transaction as write
from core.rpc.jencode import Records, encode, mark_datetimes
from wms.db import job_queries
from wms.db import jobs as jobs_db
from wms.db.filters import Scope
from wms.db.schema import WMS_SCHEMA
from wms.db.tables import JOB_ATTRIBUTES, jobs

UTC = timezone.utc
NAMES = ["plain", "héllo ☃", "𝔘𝔫𝔦", 'quote " and \\ back', "", "tab\tand\nnewline", "x" * 128]


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url)
    init_schema(eng, WMS_SCHEMA)
    now = utcnow()
    with write(eng) as conn:
        ids = jobs_db.insert_jobs(conn, [
            jobs_db.NewJob(owner="alice" if i % 3 else "bob", owner_group="demo_user",
                           vo="demo", status="Done" if i % 2 else "Waiting",
                           minor_status=NAMES[(i + 1) % len(NAMES)], original_jdl="[]",
                           job_name=NAMES[i % len(NAMES)], job_group=f"g{i % 4}",
                           user_priority=i)
            for i in range(40)], now=now, source="test")
        for n, job_id in enumerate(ids):  # some times set (with microseconds), some None
            if n % 3 == 0:
                continue
            conn.execute(sa.update(jobs).where(jobs.c.job_id == job_id).values(
                start_exec_time=datetime(2026, 1, 2, 3, 4, 5, 999_999, tzinfo=UTC)
                + timedelta(seconds=n),
                end_exec_time=datetime(1999, 12, 31, 23, 59, 59, tzinfo=UTC) if n % 2 else None,
                heartbeat_time=now - timedelta(days=n)))
    yield eng
    eng.dispose()


COLUMN_SETS = [
    list(JOB_ATTRIBUTES),
    ["JobID", "Status", "MinorStatus", "Site", "JobName", "LastUpdateTime"],
    ["StartExecTime", "JobName", "EndExecTime"],
    ["UserPriority"],
]


@pytest.mark.parametrize("columns", COLUMN_SETS)
@pytest.mark.parametrize(("filters", "sort", "scope", "limit", "offset"), [
    ([], [("JobID", "asc")], None, None, 0),
    ([("Status", "eq", "Done")], [("JobID", "desc")], Scope(owner="alice"), 7, 3),
    ([("JobID", "gt", 10), ("JobName", "like", "%☃%")], [("StartExecTime", "desc"),
                                                         ("JobID", "asc")], None, 100, 0),
    ([("Status", "in", ["Nope"])], [("JobID", "asc")], None, 10, 0),
])
def test_wire_rows_encode_as_the_general_path(engine: Engine, columns: list[str],
                                               filters: list, sort: list, scope: Scope | None,
                                               limit: int | None, offset: int) -> None:
    with engine.connect() as conn:
        total, general = job_queries.search_jobs(conn, filters, columns=columns, sort=sort,
                                                 scope=scope, limit=limit, offset=offset,
                                                 as_tuples=True)
        total2, texts = job_queries.search_jobs(conn, filters, columns=columns, sort=sort,
                                                scope=scope, limit=limit, offset=offset,
                                                datetimes_as_text=True)
        _, dicts = job_queries.search_jobs(conn, filters, columns=columns, sort=sort,
                                           scope=scope, limit=limit, offset=offset)
    assert total == total2
    if "Nope" not in str(filters):
        assert general, "the case must have rows to compare"
    assert all(type(row) is tuple for row in texts)
    marked = mark_datetimes(texts, job_queries.datetime_positions(columns))
    assert encode(marked) == encode(general)
    assert encode([dict(zip(columns, r, strict=True)) for r in marked]) == encode(dicts)
    # the service's form: the cursor's rows written by Records, no dict per record
    positions = job_queries.datetime_positions(columns)
    assert encode(Records(columns, texts, positions)) == encode(dicts)
    assert encode(Records(columns, texts, positions, as_lists=True)) == encode(general)


def test_datetime_positions() -> None:
    assert job_queries.datetime_positions(["JobID", "LastUpdateTime", "Status",
                                           "EndExecTime"]) == [1, 3]
    with pytest.raises(job_queries.InvalidArgumentError):
        job_queries.datetime_positions(["Nope"])
