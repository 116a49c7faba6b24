"""The WorkloadManagement schema: every WMS table module, one :class:`~core.db.Schema`.

Table modules define their tables on :data:`wms.db.tables.metadata`; importing them here makes
sure ``pilotwms db init`` creates all of them.

Example::

    >>> WMS_SCHEMA.system, "jobs" in WMS_SCHEMA.metadata.tables
    ('WorkloadManagement', True)
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from core.db import Schema
from wms.db import (  # noqa: F401 - they register their tables
    counters,
    pilot_tables,
    push_jobs,
    sandbox_tables,
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


WMS_SCHEMA = Schema("WorkloadManagement", tables.metadata, migrations=[_job_counters],
                    repairs={"job-counters": counters.repair})
