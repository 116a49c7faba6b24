"""A page of one owner's jobs of one job group reads the (owner, job_group) index (WMS
migration 7 -> 8), not the owner's whole walk in JobID order; same records either way."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from core.db import init_schema, make_engine, utcnow
from core.db import write_transaction as write
from wms.db import job_queries
from wms.db import jobs as jobs_db
from wms.db.filters import Scope
from wms.db.schema import OWNER_JOB_GROUP_INDEX, WMS_SCHEMA


def test_a_job_group_page_reads_the_owner_job_group_index() -> None:
    engine = make_engine("sqlite://")
    init_schema(engine, WMS_SCHEMA)
    with write(engine) as conn:
        jobs_db.insert_jobs(conn, [
            jobs_db.NewJob(owner=("alice", "bob")[i % 2], owner_group="demo_user", vo="demo",
                           status="Done", minor_status="Execution Complete",
                           original_jdl="[]", job_group=f"g{i % 5}")
            for i in range(200)], now=utcnow(), source="test")
    statements: list[tuple[str, Any]] = []

    @sa.event.listens_for(engine, "before_cursor_execute")
    def _seen(conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
        statements.append((statement, params))

    with engine.connect() as conn:
        _, rows = job_queries.search_jobs(
            conn, [("JobGroup", "eq", "g2")], columns=["JobID", "JobGroup"],
            sort=[("JobID", "desc")], scope=Scope(owner="alice"), limit=10,
            with_total=False, datetimes_as_text=True)
        statement, params = statements[-1]
        plan = " ".join(str(r) for r in conn.exec_driver_sql(
            "EXPLAIN QUERY PLAN " + statement, params).all())
        expected = conn.exec_driver_sql(
            "SELECT job_id, job_group FROM jobs NOT INDEXED WHERE owner = 'alice' "
            "AND job_group = 'g2' ORDER BY job_id DESC LIMIT 10").all()
    assert OWNER_JOB_GROUP_INDEX in plan and "TEMP B-TREE" not in plan
    assert rows == [tuple(r) for r in expected] and len(rows) == 10
    engine.dispose()
