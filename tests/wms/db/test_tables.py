"""The WMS schema is created on both backends and keeps timezone-aware times and long JDLs."""

from __future__ import annotations

from datetime import datetime, timezone

import sqlalchemy as sa

from core import migrations
from core.db import init_schema, make_engine, schema_version, upgrade_schema
from wms.db import counters
from wms.db.filters import Scope
from wms.db.schema import (
    COUNTERS_INDEX,
    COUNTERS_INDEX_STEP,
    OWNER_JOB_GROUP_INDEX,
    OWNER_JOB_GROUP_STEP,
    WMS_SCHEMA,
)
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
    assert upgrade_schema(engine, WMS_SCHEMA) == WMS_SCHEMA.latest  # at its head: no step
    engine.dispose()


def test_migration_adds_the_counters_owner_status_index_and_downgrade_drops_it(
        db_url: str) -> None:
    """The (owner, status, n) index of the job counters (issue 17, bench/growth.py): added to a
    database made before it, counts kept; ``pilotwms db downgrade`` drops it again."""
    engine = make_engine(db_url)
    init_schema(engine, WMS_SCHEMA)
    step = WMS_SCHEMA.migrations.index(COUNTERS_INDEX_STEP)  # its number may change on merges
    now = datetime.now(timezone.utc).replace(microsecond=0)
    with engine.begin() as conn:
        conn.execute(sa.insert(jobs).values(
            owner="alice", owner_group="demo_user", vo="demo", submission_time=now,
            last_update_time=now, status="Done", minor_status="Execution Complete"))
        counters.fold(conn)
    assert migrations.downgrade_schema(engine, WMS_SCHEMA, step) == step
    with engine.connect() as conn:
        assert COUNTERS_INDEX not in _index_columns(conn, "job_counters")
    assert schema_version(engine, "WorkloadManagement") == step
    assert upgrade_schema(engine, WMS_SCHEMA) == WMS_SCHEMA.latest
    with engine.connect() as conn:
        assert _index_columns(conn, "job_counters")[COUNTERS_INDEX] == ["owner", "status", "n"]
        assert counters.count(conn, [("Status", "eq", "Done")], Scope(owner="alice")) == 1
    engine.dispose()


def _index_columns(conn: sa.engine.Connection, table: str) -> dict[str, list[str]]:
    return {str(ix["name"]): [str(c) for c in ix["column_names"]]
            for ix in sa.inspect(conn).get_indexes(table)}


def test_migration_adds_the_owner_job_group_index_and_downgrade_drops_it(db_url: str) -> None:
    """The (owner, job_group) index of the searches by job group (issue 17): added to a
    database made before it, jobs kept; ``pilotwms db downgrade`` drops it again."""
    engine = make_engine(db_url)
    init_schema(engine, WMS_SCHEMA)
    step = WMS_SCHEMA.migrations.index(OWNER_JOB_GROUP_STEP)  # its number may change on merges
    now = datetime.now(timezone.utc).replace(microsecond=0)
    with engine.begin() as conn:
        conn.execute(sa.insert(jobs).values(
            owner="alice", owner_group="demo_user", vo="demo", submission_time=now,
            last_update_time=now, status="Done", minor_status="Execution Complete",
            job_group="g1"))
        assert _index_columns(conn, "jobs")[OWNER_JOB_GROUP_INDEX] == ["owner", "job_group"]
    assert migrations.downgrade_schema(engine, WMS_SCHEMA, step) == step
    with engine.connect() as conn:
        assert OWNER_JOB_GROUP_INDEX not in _index_columns(conn, "jobs")
    assert upgrade_schema(engine, WMS_SCHEMA) == WMS_SCHEMA.latest
    with engine.connect() as conn:
        assert _index_columns(conn, "jobs")[OWNER_JOB_GROUP_INDEX] == ["owner", "job_group"]
        assert conn.execute(sa.select(sa.func.count()).select_from(jobs)).scalar() == 1
    engine.dispose()
