"""Tables of pilots: one row per pilot the site director submitted (or that registered), the
jobs each pilot ran, and the pilot's output once retrieved.

>>> "pilot_agents" in metadata.tables
True
"""

from __future__ import annotations

import sqlalchemy as sa

from core.db import UTCDateTime
from wms.db.tables import JobIdType, LongText, metadata

pilot_agents = sa.Table(
    "pilot_agents",
    metadata,
    sa.Column("pilot_id", JobIdType, primary_key=True, autoincrement=True),
    sa.Column("pilot_reference", sa.String(255), nullable=False, unique=True),
    sa.Column("pilot_stamp", sa.String(64), nullable=False, server_default=""),
    sa.Column("vo", sa.String(64), nullable=False, server_default=""),
    sa.Column("owner_group", sa.String(128), nullable=False, server_default=""),
    sa.Column("grid_type", sa.String(32), nullable=False, server_default=""),
    sa.Column("site", sa.String(128), nullable=False, server_default="Unknown"),
    sa.Column("ce", sa.String(128), nullable=False, server_default="Unknown"),
    sa.Column("queue", sa.String(128), nullable=False, server_default="Unknown"),
    sa.Column("status", sa.String(32), nullable=False, server_default="Submitted"),
    sa.Column("status_reason", sa.String(255), nullable=False, server_default=""),
    sa.Column("submission_time", UTCDateTime, nullable=False),
    sa.Column("last_update_time", UTCDateTime, nullable=False),
    sa.Column("host", sa.String(255), nullable=False, server_default=""),
    sa.Column("output_ready", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Index("ix_pilots_queue_status", "site", "ce", "queue", "status"),
    sa.Index("ix_pilots_status_update", "status", "last_update_time"),
)

pilot_jobs = sa.Table(
    "pilot_jobs",
    metadata,
    sa.Column("pilot_id", JobIdType,
              sa.ForeignKey("pilot_agents.pilot_id", ondelete="CASCADE"), primary_key=True),
    sa.Column("job_id", JobIdType, primary_key=True),
    sa.Column("start_time", UTCDateTime, nullable=False),
    sa.Index("ix_pilot_jobs_job", "job_id"),
)

pilot_output = sa.Table(
    "pilot_output",
    metadata,
    sa.Column("pilot_id", JobIdType,
              sa.ForeignKey("pilot_agents.pilot_id", ondelete="CASCADE"), primary_key=True),
    sa.Column("std_output", LongText, nullable=False),
    sa.Column("std_error", LongText, nullable=False),
)
