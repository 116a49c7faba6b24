"""The WorkloadManagement schema: every WMS table module, one :class:`~core.db.Schema`.

Table modules define their tables on :data:`wms.db.tables.metadata`; importing them here makes
sure ``pilotwms db init`` creates all of them.

Example::

    >>> WMS_SCHEMA.system, "jobs" in WMS_SCHEMA.metadata.tables
    ('WorkloadManagement', True)
"""

from __future__ import annotations

from core.db import Schema
from wms.db import (  # noqa: F401 - they register their tables
    outbox,
    pilot_tables,
    push_jobs,
    sandbox_tables,
    tables,
    tq_tables,
)

WMS_SCHEMA = Schema("WorkloadManagement", tables.metadata, migrations=[
    outbox.create_table,  # 0 -> 1: monitoring_outbox (monitoring issue)
])
