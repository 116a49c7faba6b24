"""The WMS schema is created on both backends and keeps timezone-aware times and long JDLs."""

from __future__ import annotations

from datetime import datetime, timezone

import sqlalchemy as sa

from core.db import init_schema, make_engine, schema_version, upgrade_schema
from wms.db.schema import WMS_SCHEMA
from wms.db.tables import job_jdls, job_logging, jobs


def test_schema_on_both_backends(db_url: str) -> None:
    engine = make_engine(db_url)
    assert init_schema(engine, WMS_SCHEMA) == WMS_SCHEMA.latest
    assert schema_version(engine, "WorkloadManagement") == WMS_SCHEMA.latest
    now = datetime.now(timezone.utc).replace(microsecond=0)
    big_jdl = "[ Arguments = \"" + "x" * 200_000 + "\"; ]"  # beyond TEXT's 64 KB on MariaDB
    with engine.begin() as conn:
        result = conn.execute(sa.insert(jobs).values(
            owner="alice", owner_group="demo_user", vo="demo", submission_time=now,
            last_update_time=now, status="Received", minor_status="Job accepted"))
        job_id = result.inserted_primary_key[0]
        conn.execute(sa.insert(job_jdls).values(job_id=job_id, original_jdl=big_jdl))
        conn.execute(sa.insert(job_logging).values(
            job_id=job_id, status="Received", minor_status="Job accepted",
            application_status="Unknown", status_time=now, source="JobManager"))
    with engine.connect() as conn:
        row = conn.execute(sa.select(jobs).where(jobs.c.job_id == job_id)).one()
        jdl = conn.execute(sa.select(job_jdls.c.original_jdl)).scalar_one()
    assert row.site == "ANY" and row.user_priority == 1 and row.reschedule_counter == 0
    assert row.submission_time == now
    assert len(jdl) == len(big_jdl)
    engine.dispose()


def test_migration_adds_the_owner_status_submission_index(db_url: str) -> None:
    """Version 3 -> 4 (issue 17, bench/growth.py): a database made before the index gets it,
    its jobs kept; a search by owner and status, newest first, can then read it in order."""
    engine = make_engine(db_url)
    init_schema(engine, WMS_SCHEMA)
    name = "ix_jobs_owner_status_submission"
    now = datetime.now(timezone.utc).replace(microsecond=0)
    with engine.begin() as conn:
        conn.execute(sa.insert(jobs).values(
            owner="alice", owner_group="demo_user", vo="demo", submission_time=now,
            last_update_time=now, status="Done", minor_status="Execution Complete"))
        next(ix for ix in jobs.indexes if ix.name == name).drop(conn)
        conn.execute(sa.text("UPDATE pilotwms_schema SET version = 3 "
                             "WHERE system = 'WorkloadManagement'"))
    assert schema_version(engine, "WorkloadManagement") == 3
    assert upgrade_schema(engine, WMS_SCHEMA) == WMS_SCHEMA.latest
    with engine.connect() as conn:
        indexes = {ix["name"]: ix["column_names"] for ix in sa.inspect(conn).get_indexes("jobs")}
        assert indexes[name] == ["owner", "status", "submission_time"]
        assert conn.execute(sa.select(sa.func.count()).select_from(jobs)).scalar() == 1
    assert upgrade_schema(engine, WMS_SCHEMA) == WMS_SCHEMA.latest  # at its head: nothing to do
    engine.dispose()
