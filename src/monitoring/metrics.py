"""Cached Prometheus gauges of monitoring (entry point ``pilotwms.metrics``): the accounting
outbox backlog and the age of its oldest row (a growing lag means the backend is down or the
agent is not running).

Example::

    >>> from core.config.schema import Config
    >>> from core.rpc.context import ServerContext
    >>> collect(ServerContext(Config.model_validate({"Database": "sqlite://"})))
    []
"""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa
from prometheus_client.core import Metric

from core.exceptions import ConfigError
from core.metrics import gauge
from monitoring.logic.accounting import backlog, lag

log = logging.getLogger("pilotwms.metrics")


def collect(ctx: Any) -> list[Metric]:
    try:
        engine = ctx.engine("WorkloadManagement")
        rows, _ = backlog(engine)
        waited = lag(engine).total_seconds()
    except (ConfigError, sa.exc.SQLAlchemyError) as exc:
        log.debug("no monitoring metrics: %s", exc)
        return []
    return [gauge("pilotwms_accounting_outbox_rows",
                  "Finished jobs and pilots waiting for their accounting record", [],
                  [([], float(rows))]),
            gauge("pilotwms_accounting_outbox_lag_seconds",
                  "Age of the oldest waiting outbox row", [], [([], waited)])]
