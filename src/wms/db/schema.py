"""The WorkloadManagement schema: every WMS table module, one :class:`~core.db.Schema`.

Table modules define their tables on :data:`wms.db.tables.metadata`; importing them here makes
sure ``pilotwms db init`` creates all of them.

Migrations (version N is reached by running migration N-1):

0. the owner indexes of the job monitor's searches and the live job counters;
1. the monitoring outbox (:mod:`wms.db.outbox`);
2. events, subscriptions, notifications, releases, schedules and their runs
   (:mod:`wms.db.scheduling_tables`);
3. the index (owner, status, submission_time) of the job monitor's "my jobs of this status,
   newest first" (bench/growth.py: without it MariaDB sorted all of a user's jobs of that
   status, 10-23x slower at 1M jobs than at 10k);
4. the index (owner, status, n) of the job counters: a user's totals and counts by status
   from the index alone (bench/growth.py: the counts read every counter row of the owner,
   thousands at 10M jobs);
5. one row per heartbeat: ``heartbeat_data`` (DIRAC's row per value) pivoted into
   ``job_heartbeats`` (:mod:`wms.db.heartbeats`; reversible);
6. ``job_jdls.scheduling``, the optimiser's record of a parametric child kept from its
   submission (:mod:`wms.logic.scheduling_record`; nullable, reversible).
7. the index (owner, job_group) of the job monitor's "my jobs of this job group" (a page of
   10,000 of 100,000 jobs in 10 groups read 10,000 index entries instead of walking the
   owner's 100,000 jobs: ~2x faster on SQLite, a page of 100 ~2.5x; reversible).

Example::

    >>> WMS_SCHEMA.system, "jobs" in WMS_SCHEMA.metadata.tables, WMS_SCHEMA.latest
    ('WorkloadManagement', True, 8)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Connection

from core.db import Reversible, Schema
from wms.db import (  # noqa: F401 - they register their tables
    counters,
    heartbeats,
    outbox,
    pilot_tables,
    push_jobs,
    sandbox_tables,
    scheduling_tables,
    tables,
    tq_tables,
)


def _job_counters(conn: Connection) -> None:
    """1: the owner indexes of the job monitor's searches, and the live job counters."""
    for name in ("ix_jobs_owner_id", "ix_jobs_owner_status"):
        index = next(ix for ix in tables.jobs.indexes if ix.name == name)
        if name not in {ix["name"] for ix in sa.inspect(conn).get_indexes("jobs")}:
            index.create(conn)
    for table in (counters.job_counters, counters.job_count_deltas, counters.job_counter_fold):
        table.create(conn, checkfirst=True)
    counters.backfill(conn)


def _scheduling_tables(conn: Connection) -> None:
    """3: the event and schedule tables."""
    for table in scheduling_tables.SCHEDULING_TABLES:
        table.create(conn, checkfirst=True)


def _owner_status_submission_index(conn: Connection) -> None:
    """4: the (owner, status, submission_time) index of the job monitor's searches (an online
    ``ALTER TABLE ... ADD INDEX`` on MariaDB: minutes for 10M jobs, writes go on)."""
    name = "ix_jobs_owner_status_submission"
    if name not in {ix["name"] for ix in sa.inspect(conn).get_indexes("jobs")}:
        next(ix for ix in tables.jobs.indexes if ix.name == name).create(conn)


def _drop_owner_status_submission_index(conn: Connection) -> None:
    """4 -> 3: drop the index again (``pilotwms db downgrade``)."""
    name = "ix_jobs_owner_status_submission"
    if name in {ix["name"] for ix in sa.inspect(conn).get_indexes("jobs")}:
        next(ix for ix in tables.jobs.indexes if ix.name == name).drop(conn)


def _counters_owner_status_index(conn: Connection) -> None:
    """The (owner, status, n) index of the job counters (small table: seconds)."""
    if COUNTERS_INDEX not in {ix["name"] for ix in sa.inspect(conn).get_indexes("job_counters")}:
        _counters_index().create(conn)


def _drop_counters_owner_status_index(conn: Connection) -> None:
    """Undo :func:`_counters_owner_status_index` (``pilotwms db downgrade``)."""
    if COUNTERS_INDEX in {ix["name"] for ix in sa.inspect(conn).get_indexes("job_counters")}:
        _counters_index().drop(conn)


COUNTERS_INDEX = "ix_job_counters_owner_status"


def _counters_index() -> sa.Index:
    return next(ix for ix in counters.job_counters.indexes if ix.name == COUNTERS_INDEX)


#: the step adding :data:`COUNTERS_INDEX` (tests find its place in the list by it)
COUNTERS_INDEX_STEP = Reversible(_counters_owner_status_index,
                                 _drop_counters_owner_status_index)


def _one_row_per_heartbeat(conn: Connection) -> None:
    """One row per heartbeat: ``heartbeat_data`` (a row per value) pivoted into
    ``job_heartbeats``, in batches; the answers of ``getJobHeartBeatData`` do not change."""
    heartbeats.pivot(conn)


def _one_row_per_heartbeat_value(conn: Connection) -> None:
    """Back to ``heartbeat_data``, a row per value (``pilotwms db downgrade``)."""
    heartbeats.unpivot(conn)


def _scheduling_column(conn: Connection) -> None:
    """``job_jdls.scheduling``: the optimiser's record of a parametric child (nullable, so
    instant on MariaDB; rows without one are described from their JDL as before)."""
    if "scheduling" not in {c["name"] for c in sa.inspect(conn).get_columns("job_jdls")}:
        Operations(MigrationContext.configure(conn)).add_column(
            "job_jdls", sa.Column("scheduling", tables.LongText, nullable=True))


def _drop_scheduling_column(conn: Connection) -> None:
    """Undo :func:`_scheduling_column` (``pilotwms db downgrade``)."""
    if "scheduling" in {c["name"] for c in sa.inspect(conn).get_columns("job_jdls")}:
        with Operations(MigrationContext.configure(conn)).batch_alter_table(
                "job_jdls") as batch:
            batch.drop_column("scheduling")


#: the step adding ``job_jdls.scheduling`` (tests find its place in the list by it)
SCHEDULING_STEP = Reversible(_scheduling_column, _drop_scheduling_column)


OWNER_JOB_GROUP_INDEX = "ix_jobs_owner_job_group"


def _owner_job_group_index(conn: Connection) -> None:
    """The (owner, job_group) index of the job monitor's searches by job group (an online
    ``ALTER TABLE ... ADD INDEX`` on MariaDB, writes go on; 0.5 s for 200,000 jobs on
    SQLite)."""
    if OWNER_JOB_GROUP_INDEX not in {ix["name"] for ix in sa.inspect(conn).get_indexes("jobs")}:
        next(ix for ix in tables.jobs.indexes if ix.name == OWNER_JOB_GROUP_INDEX).create(conn)


def _drop_owner_job_group_index(conn: Connection) -> None:
    """Undo :func:`_owner_job_group_index` (``pilotwms db downgrade``)."""
    if OWNER_JOB_GROUP_INDEX in {ix["name"] for ix in sa.inspect(conn).get_indexes("jobs")}:
        next(ix for ix in tables.jobs.indexes if ix.name == OWNER_JOB_GROUP_INDEX).drop(conn)


#: the step adding :data:`OWNER_JOB_GROUP_INDEX` (tests find its place in the list by it)
OWNER_JOB_GROUP_STEP = Reversible(_owner_job_group_index, _drop_owner_job_group_index)


WMS_SCHEMA = Schema("WorkloadManagement", tables.metadata, migrations=[
    _job_counters,
    outbox.create_table,  # 1 -> 2: monitoring_outbox (monitoring issue)
    _scheduling_tables,  # 2 -> 3: events and schedules
    # 3 -> 4: search by owner + status, newest first
    Reversible(_owner_status_submission_index, _drop_owner_status_submission_index),
    COUNTERS_INDEX_STEP,  # job counters by owner and status, from the index alone
    # one row per heartbeat instead of one per value (issues 16, 17: heartbeat ingestion)
    Reversible(_one_row_per_heartbeat, _one_row_per_heartbeat_value),
    SCHEDULING_STEP,  # the optimiser's record of a parametric child (issue 17: bulk once)
    OWNER_JOB_GROUP_STEP,  # a user's jobs of one job group (issue 17: search pages)
], repairs={"job-counters": counters.repair})
