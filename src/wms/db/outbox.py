"""The monitoring outbox: one row per job (or pilot) that reached a final status, written in
the same transaction as the status change.

The WMS does not call monitoring: an accounting agent (``monitoring.agents.accounting``) reads
these rows, builds the accounting records, stores them under an idempotent key and only then
deletes the rows. A status change therefore costs one extra INSERT, and a monitoring outage
never fails or slows a job: rows wait here until the backend is back.

Example::

    >>> from core.db import init_schema, make_engine, utcnow
    >>> from wms.db.schema import WMS_SCHEMA
    >>> engine = make_engine("sqlite://"); _ = init_schema(engine, WMS_SCHEMA)
    >>> with engine.begin() as conn:
    ...     add(conn, "job", [(12, "Done")], utcnow())
    ...     [(row.kind, row.ref, row.status) for row in pending(conn, 10)]
    [('job', 12, 'Done')]
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from core.db import UTCDateTime
from wms.db.tables import JobIdType, metadata

#: job statuses that make an accounting record (DIRAC's JOB_FINAL_STATES)
FINAL_JOB_STATUSES = frozenset({"Done", "Completed", "Failed", "Killed"})
#: pilot statuses that make a pilot record
FINAL_PILOT_STATUSES = frozenset({"Done", "Failed", "Aborted"})

monitoring_outbox = sa.Table(
    "monitoring_outbox",
    metadata,
    sa.Column("id", JobIdType, primary_key=True, autoincrement=True),
    #: "job" (ref: job id) or "pilot" (ref: pilot id)
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("ref", JobIdType, nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("created", UTCDateTime, nullable=False),
)


def create_table(conn: Connection) -> None:
    """WMS migration 1 -> 2: the outbox."""
    monitoring_outbox.create(conn, checkfirst=True)


def add(conn: Connection, kind: str, items: Sequence[tuple[int, str]], now: datetime) -> None:
    """One INSERT for all of ``items`` ((ref, final status) pairs)."""
    if items:
        conn.execute(sa.insert(monitoring_outbox), [
            {"kind": kind, "ref": ref, "status": status, "created": now}
            for ref, status in items])


def pending(conn: Connection, limit: int) -> list[Any]:
    """The oldest rows, at most ``limit``."""
    return list(conn.execute(sa.select(monitoring_outbox)
                             .order_by(monitoring_outbox.c.id).limit(limit)))


def remove(conn: Connection, ids: Sequence[int]) -> None:
    for start in range(0, len(ids), 1000):
        conn.execute(sa.delete(monitoring_outbox).where(
            monitoring_outbox.c.id.in_(list(ids[start:start + 1000]))))


def count(conn: Connection) -> int:
    return int(conn.execute(sa.select(sa.func.count()).select_from(monitoring_outbox))
               .scalar_one())
