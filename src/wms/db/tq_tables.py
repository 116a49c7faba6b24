"""Tables of the task queues, the matcher and the site mask (on :data:`wms.db.tables.metadata`).

* ``tq_task_queues``: one row per distinct set of job requirements. ``req_hash`` (SHA-256 of the
  canonical requirements, see :mod:`wms.logic.task_queues`) is unique, so concurrent enqueuers
  find-or-create the same queue. The user priority is part of the key, so a queue's
  ``job_priority`` never changes after creation and enqueuing never updates a queue row.
* ``tq_requirements``: the multi-valued requirements, one row per (queue, kind, value); kinds are
  ``Site``, ``BannedSite``, ``GridCE``, ``Platform``, ``JobType`` and ``Tag``. Deleted with their
  queue (cascade).
* ``tq_jobs``: queue membership. ``pick_key`` is a random key drawn at enqueue time
  (``-ln(U) / priority``): taking the smallest key first is weighted sampling by priority. A job
  leaves with its row in ``jobs`` (cascade); a queue with member jobs cannot be deleted
  (restrict), which makes removing empty queues race-safe.
* ``tq_match_delays``: per site, (attribute, value) pairs that may not be matched before
  ``until`` (``Operations.JobScheduling.MatchingDelay``).
* ``site_mask`` and ``site_mask_logging``: the current status of each site (``Active`` or
  ``Banned``) and every change with its author and comment.

Example::

    >>> for name in sorted(t for t in metadata.tables if t.startswith(("tq_", "site_"))):
    ...     print(name)
    site_mask
    site_mask_logging
    tq_jobs
    tq_match_delays
    tq_requirements
    tq_task_queues
"""

from __future__ import annotations

import sqlalchemy as sa

from core.db import UTCDateTime
from wms.db.tables import JobIdType, metadata

__all__ = [
    "REQUIREMENT_KINDS",
    "metadata",
    "site_mask",
    "site_mask_logging",
    "task_queues",
    "tq_jobs",
    "tq_match_delays",
    "tq_requirements",
]

#: the kinds of multi-valued requirement a task queue may have
REQUIREMENT_KINDS = ("Site", "BannedSite", "GridCE", "Platform", "JobType", "Tag")

task_queues = sa.Table(
    "tq_task_queues",
    metadata,
    sa.Column("tq_id", JobIdType, primary_key=True, autoincrement=True),
    sa.Column("req_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("owner", sa.String(64), nullable=False),
    sa.Column("owner_group", sa.String(128), nullable=False),
    sa.Column("vo", sa.String(64), nullable=False),
    sa.Column("cpu_time", sa.BigInteger, nullable=False),
    sa.Column("job_priority", sa.Integer, nullable=False),
    sa.Column("created", UTCDateTime, nullable=False),
    sa.Index("ix_tq_group_owner", "owner_group", "owner"),
    sa.Index("ix_tq_vo_cpu", "vo", "cpu_time"),
)

tq_requirements = sa.Table(
    "tq_requirements",
    metadata,
    sa.Column("tq_id", JobIdType, sa.ForeignKey("tq_task_queues.tq_id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("kind", sa.String(16), primary_key=True),
    sa.Column("value", sa.String(128), primary_key=True),
    sa.Index("ix_tq_requirements_kind_value", "kind", "value"),
)

tq_jobs = sa.Table(
    "tq_jobs",
    metadata,
    sa.Column("job_id", JobIdType, sa.ForeignKey("jobs.job_id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("tq_id", JobIdType, sa.ForeignKey("tq_task_queues.tq_id", ondelete="RESTRICT"),
              nullable=False),
    sa.Column("priority", sa.Integer, nullable=False),
    sa.Column("pick_key", sa.Double, nullable=False),
    sa.Index("ix_tq_jobs_tq_key", "tq_id", "pick_key"),
)

tq_match_delays = sa.Table(
    "tq_match_delays",
    metadata,
    sa.Column("site", sa.String(128), primary_key=True),
    sa.Column("attribute", sa.String(32), primary_key=True),
    sa.Column("value", sa.String(255), primary_key=True),
    sa.Column("until", UTCDateTime, nullable=False),
)

site_mask = sa.Table(
    "site_mask",
    metadata,
    sa.Column("site", sa.String(128), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("last_update", UTCDateTime, nullable=False),
    sa.Column("author", sa.String(255), nullable=False),
    sa.Column("comment", sa.Text, nullable=False),
)

site_mask_logging = sa.Table(
    "site_mask_logging",
    metadata,
    sa.Column("id", JobIdType, primary_key=True, autoincrement=True),
    sa.Column("site", sa.String(128), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("update_time", UTCDateTime, nullable=False),
    sa.Column("author", sa.String(255), nullable=False),
    sa.Column("comment", sa.Text, nullable=False),
    sa.Index("ix_site_mask_logging_site", "site", "update_time"),
)
