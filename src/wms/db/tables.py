"""Tables of the WorkloadManagement system.

Column names are snake_case; :data:`JOB_ATTRIBUTES` maps DIRAC's attribute names (the wire
surface: ``JobID``, ``Status``, ``MinorStatus``, ...) to columns.

Design notes:

* ``job_logging`` has an auto-increment id and no per-job sequence number: DIRAC's trigger-made
  ``SeqNum`` makes concurrent bulk inserts deadlock on MariaDB; ordering by (time, id) is
  enough.
* ``job_parameters`` keys on the attempt (``reschedule_counter``), so the parameters of earlier
  attempts survive a rescheduling.
* ``job_heartbeats`` holds ONE row per heartbeat, its values in one JSON text column, not
  DIRAC's row per value (``HeartBeatLoggingInfo``): a heartbeat is one row to write instead
  of seven (:mod:`wms.db.heartbeats`).
* Indexes follow the hot queries: status counts, "my jobs of the last N days", site views,
  heartbeat sweeps.

Example::

    >>> sorted(JOB_ATTRIBUTES)[:3]
    ['ApplicationStatus', 'EndExecTime', 'HeartBeatTime']
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from core.db import UTCDateTime

metadata = sa.MetaData()

#: long text: MEDIUMTEXT on MariaDB (JDLs of parametric jobs exceed TEXT's 64 KB)
LongText = sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")
JobIdType = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # SQLite rowid needs INTEGER

jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("job_id", JobIdType, primary_key=True, autoincrement=True),
    sa.Column("job_type", sa.String(32), nullable=False, server_default="User"),
    sa.Column("job_group", sa.String(128), nullable=False, server_default=""),
    sa.Column("site", sa.String(128), nullable=False, server_default="ANY"),
    sa.Column("job_name", sa.String(128), nullable=False, server_default="Name"),
    sa.Column("owner", sa.String(64), nullable=False),
    sa.Column("owner_group", sa.String(128), nullable=False),
    sa.Column("vo", sa.String(64), nullable=False),
    sa.Column("submission_time", UTCDateTime, nullable=False),
    sa.Column("reschedule_time", UTCDateTime, nullable=True),
    sa.Column("last_update_time", UTCDateTime, nullable=False),
    sa.Column("start_exec_time", UTCDateTime, nullable=True),
    sa.Column("heartbeat_time", UTCDateTime, nullable=True),
    sa.Column("end_exec_time", UTCDateTime, nullable=True),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("minor_status", sa.String(128), nullable=False, server_default="Unknown"),
    sa.Column("application_status", sa.String(255), nullable=False, server_default="Unknown"),
    sa.Column("user_priority", sa.Integer, nullable=False, server_default="1"),
    sa.Column("reschedule_counter", sa.Integer, nullable=False, server_default="0"),
    sa.Column("parametric_parent", JobIdType, nullable=True),
    sa.Index("ix_jobs_status_site", "status", "site"),
    sa.Index("ix_jobs_owner_submission", "owner", "submission_time"),
    sa.Index("ix_jobs_owner_id", "owner", "job_id"),
    sa.Index("ix_jobs_owner_status", "owner", "status"),
    # a user's jobs of one status, newest first, read in index order (no sort of all of them)
    sa.Index("ix_jobs_owner_status_submission", "owner", "status", "submission_time"),
    sa.Index("ix_jobs_group_status", "owner_group", "status"),
    sa.Index("ix_jobs_submission", "submission_time"),
    sa.Index("ix_jobs_job_group", "job_group"),
    # a user's jobs of one job group in JobID order (the job ID follows in the index)
    sa.Index("ix_jobs_owner_job_group", "owner", "job_group"),
    sa.Index("ix_jobs_status_heartbeat", "status", "heartbeat_time"),
    sa.Index("ix_jobs_last_update", "last_update_time"),
)

job_jdls = sa.Table(
    "job_jdls",
    metadata,
    sa.Column("job_id", JobIdType, sa.ForeignKey("jobs.job_id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("original_jdl", LongText, nullable=False),
    sa.Column("processed_jdl", LongText, nullable=True),
    #: what the optimiser needs of a parametric child, kept from its submission (JSON,
    #: :mod:`wms.logic.scheduling_record`): its confirmation parses no JDL again
    sa.Column("scheduling", LongText, nullable=True),
)

input_data = sa.Table(
    "input_data",
    metadata,
    sa.Column("job_id", JobIdType, sa.ForeignKey("jobs.job_id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("lfn", sa.String(255), primary_key=True),
    sa.Column("status", sa.String(32), nullable=False, server_default="AprioriGood"),
)

job_parameters = sa.Table(
    "job_parameters",
    metadata,
    sa.Column("job_id", JobIdType, sa.ForeignKey("jobs.job_id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("attempt", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("value", LongText, nullable=False),
)

job_logging = sa.Table(
    "job_logging",
    metadata,
    sa.Column("id", JobIdType, primary_key=True, autoincrement=True),
    sa.Column("job_id", JobIdType, sa.ForeignKey("jobs.job_id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("minor_status", sa.String(128), nullable=False),
    sa.Column("application_status", sa.String(255), nullable=False),
    sa.Column("status_time", UTCDateTime, nullable=False),
    sa.Column("source", sa.String(32), nullable=False),
    sa.Index("ix_job_logging_job", "job_id", "status_time"),
)

job_heartbeats = sa.Table(
    "job_heartbeats",
    metadata,
    sa.Column("id", JobIdType, primary_key=True, autoincrement=True),
    sa.Column("job_id", JobIdType, sa.ForeignKey("jobs.job_id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("heartbeat_time", UTCDateTime, nullable=False),
    #: the heartbeat's dynamic data, a JSON object of texts in the order sent
    #: (:mod:`wms.db.heartbeats`)
    sa.Column("data", LongText, nullable=False),
    sa.Index("ix_job_heartbeats_job", "job_id", "heartbeat_time"),
)

job_commands = sa.Table(
    "job_commands",
    metadata,
    sa.Column("id", JobIdType, primary_key=True, autoincrement=True),
    sa.Column("job_id", JobIdType, sa.ForeignKey("jobs.job_id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("command", sa.String(32), nullable=False),
    sa.Column("arguments", sa.Text, nullable=False, server_default=""),
    sa.Column("status", sa.String(16), nullable=False, server_default="Received"),
    sa.Column("reception_time", UTCDateTime, nullable=False),
    sa.Column("execution_time", UTCDateTime, nullable=True),
    sa.Index("ix_job_commands_job_status", "job_id", "status"),
)

#: DIRAC attribute name -> column, for getJobAttributes, getJobs filters and sorting
JOB_ATTRIBUTES: dict[str, sa.Column[object]] = {
    "JobID": jobs.c.job_id,
    "JobType": jobs.c.job_type,
    "JobGroup": jobs.c.job_group,
    "Site": jobs.c.site,
    "JobName": jobs.c.job_name,
    "Owner": jobs.c.owner,
    "OwnerGroup": jobs.c.owner_group,
    "VO": jobs.c.vo,
    "SubmissionTime": jobs.c.submission_time,
    "RescheduleTime": jobs.c.reschedule_time,
    "LastUpdateTime": jobs.c.last_update_time,
    "StartExecTime": jobs.c.start_exec_time,
    "HeartBeatTime": jobs.c.heartbeat_time,
    "EndExecTime": jobs.c.end_exec_time,
    "Status": jobs.c.status,
    "MinorStatus": jobs.c.minor_status,
    "ApplicationStatus": jobs.c.application_status,
    "UserPriority": jobs.c.user_priority,
    "RescheduleCounter": jobs.c.reschedule_counter,
}
