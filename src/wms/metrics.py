"""Cached Prometheus gauges of the WMS (entry point ``pilotwms.metrics``): jobs by status,
jobs waiting in task queues, sandbox store bytes and files.

Computed from the database at most every ``Monitoring.Metrics.CacheSeconds`` by the process
answering a scrape (:class:`core.metrics.CachedSources`): one GROUP BY on the status index and
two aggregates, never per scrape.

Example::

    >>> from core.config.schema import Config
    >>> from core.rpc.context import ServerContext
    >>> ctx = ServerContext(Config.model_validate({"Database": "sqlite://"}))
    >>> collect(ctx)   # no WMS tables there: nothing to report
    []
"""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa
from prometheus_client.core import Metric

from core.exceptions import ConfigError
from core.metrics import gauge
from wms.db.sandbox_tables import sandboxes
from wms.db.tables import jobs
from wms.db.tq_tables import tq_jobs

log = logging.getLogger("pilotwms.metrics")


def collect(ctx: Any) -> list[Metric]:
    """``ctx``: anything with ``engine(system)`` (a ServerContext, an Agent)."""
    try:
        engine = ctx.engine("WorkloadManagement")
        with engine.connect() as conn:
            by_status = conn.execute(sa.select(jobs.c.status, sa.func.count())
                                     .group_by(jobs.c.status)).all()
            queued = conn.execute(sa.select(sa.func.count()).select_from(tq_jobs)).scalar()
            files, size = conn.execute(sa.select(sa.func.count(),
                                                 sa.func.coalesce(sa.func.sum(sandboxes.c.size),
                                                                  0))).one()
    except (ConfigError, sa.exc.SQLAlchemyError) as exc:
        log.debug("no WMS metrics: %s", exc)
        return []
    return [
        gauge("pilotwms_jobs", "Jobs by status", ["status"],
              [([str(status)], float(count)) for status, count in by_status]),
        gauge("pilotwms_task_queue_jobs", "Jobs waiting in task queues", [],
              [([], float(queued or 0))]),
        gauge("pilotwms_sandbox_store_bytes", "Bytes in the sandbox store", [],
              [([], float(size or 0))]),
        gauge("pilotwms_sandbox_store_files", "Sandboxes in the sandbox store", [],
              [([], float(files or 0))]),
    ]
