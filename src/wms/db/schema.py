"""The WorkloadManagement schema: every WMS table module, one :class:`~core.db.Schema`.

Table modules define their tables on :data:`wms.db.tables.metadata`; importing them here makes
sure ``pilotwms db init`` creates all of them.

Migrations (version N is reached by running migration N-1):

0. events, subscriptions, notifications, releases, schedules and their runs
   (:mod:`wms.db.scheduling_tables`).

Example::

    >>> WMS_SCHEMA.system, "jobs" in WMS_SCHEMA.metadata.tables, WMS_SCHEMA.latest
    ('WorkloadManagement', True, 1)
"""

from __future__ import annotations

from sqlalchemy.engine import Connection

from core.db import Schema
from wms.db import (  # noqa: F401 - they register their tables
    pilot_tables,
    push_jobs,
    sandbox_tables,
    scheduling_tables,
    tables,
    tq_tables,
)


def _scheduling_tables(conn: Connection) -> None:
    """Migration 0 -> 1: the event and schedule tables."""
    for table in scheduling_tables.SCHEDULING_TABLES:
        table.create(conn, checkfirst=True)


WMS_SCHEMA = Schema("WorkloadManagement", tables.metadata, migrations=[_scheduling_tables])
