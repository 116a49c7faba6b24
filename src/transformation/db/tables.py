"""Tables of the transformation and production systems (the ``Transformation`` schema).

* ``ts_transformations``: one row per transformation; ``(vo, name)`` unique; the next task
  number lives in the row (``next_task``), so making tasks takes the row's lock first and two
  agents never number (or fill) tasks of one transformation at the same time.
* ``ts_files``: the files of each transformation, keyed by ``(transformation, catalog file
  id)``. There is no global table of every LFN ever seen (DIRAC's DataFiles, issue #7752):
  a row lives as long as its transformation, and LFNs are read from the catalog when shown.
  ``task_id`` (the file's current task) is not indexed: grouping would move each file's entry
  in such an index; the files of a task are found through ``ts_task_files``.
* ``ts_tasks`` and ``ts_task_files``: tasks, their input files (a file may feed several tasks:
  ``Broadcast`` makes one per target SE), their external job/request ID; ``input_vector``
  keeps the task's LFNs so a task can be submitted and shown without the catalog.
* ``ts_parameters`` (additional parameters), ``ts_log`` (every change: who, when, what),
  ``ts_state`` (the catalog journal watermark and the last reconciliation).
* ``ts_productions`` and ``ts_production_steps``: productions and their linked steps.

Example::

    >>> sorted(t for t in metadata.tables if t.startswith("ts_t"))
    ['ts_task_files', 'ts_tasks', 'ts_transformations']
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from core.db import UTCDateTime

metadata = sa.MetaData()

IdType = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
LongText = sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")

transformations = sa.Table(
    "ts_transformations", metadata,
    sa.Column("transformation_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("vo", sa.String(64), nullable=False),
    sa.Column("description", sa.String(255), nullable=False, default=""),
    sa.Column("long_description", sa.Text, nullable=False, default=""),
    sa.Column("author", sa.String(64), nullable=False),
    sa.Column("author_group", sa.String(64), nullable=False),
    sa.Column("type", sa.String(32), nullable=False),
    sa.Column("plugin", sa.String(64), nullable=False),
    sa.Column("plugin_params", sa.Text, nullable=False, default="{}"),
    sa.Column("agent_type", sa.String(32), nullable=False, default="Automatic"),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("file_mask", sa.String(255), nullable=False, default=""),
    sa.Column("transformation_group", sa.String(255), nullable=False, default="General"),
    sa.Column("group_size", sa.Float, nullable=False, default=1),
    sa.Column("inherited_from", sa.Integer, nullable=False, default=0),
    sa.Column("body", LongText, nullable=False, default=""),
    sa.Column("max_tasks", sa.Integer, nullable=False, default=0),
    sa.Column("max_files_per_task", sa.Integer, nullable=False, default=0),
    sa.Column("events_per_task", sa.Integer, nullable=False, default=0),
    sa.Column("input_query", sa.Text, nullable=True),
    sa.Column("output_query", sa.Text, nullable=True),
    sa.Column("target_ses", sa.String(1024), nullable=False, default=""),
    sa.Column("production_id", sa.Integer, nullable=True, index=True),
    sa.Column("next_task", sa.Integer, nullable=False, default=1),
    sa.Column("created", UTCDateTime, nullable=False),
    sa.Column("last_update", UTCDateTime, nullable=False),
    sa.UniqueConstraint("vo", "name", name="uq_ts_transformations_vo_name"),
    sa.Index("ix_ts_transformations_status", "status"),
    mysql_engine="InnoDB", mysql_charset="utf8mb4",
)

parameters = sa.Table(
    "ts_parameters", metadata,
    sa.Column("transformation_id", sa.Integer,
              sa.ForeignKey("ts_transformations.transformation_id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", LongText, nullable=False),
    sa.Column("type", sa.String(32), nullable=False, default="StringType"),
    mysql_engine="InnoDB", mysql_charset="utf8mb4",
)

log = sa.Table(
    "ts_log", metadata,
    sa.Column("record_id", IdType, primary_key=True, autoincrement=True),
    sa.Column("transformation_id", sa.Integer,
              sa.ForeignKey("ts_transformations.transformation_id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("author", sa.String(64), nullable=False),
    sa.Column("date", UTCDateTime, nullable=False),
    sa.Index("ix_ts_log_transformation", "transformation_id", "record_id"),
    mysql_engine="InnoDB", mysql_charset="utf8mb4",
)

files = sa.Table(
    "ts_files", metadata,
    sa.Column("transformation_id", sa.Integer,
              sa.ForeignKey("ts_transformations.transformation_id", ondelete="CASCADE"),
              primary_key=True, autoincrement=False),
    sa.Column("file_id", IdType, primary_key=True, autoincrement=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("task_id", sa.Integer, nullable=True),
    sa.Column("error_count", sa.Integer, nullable=False, default=0),
    sa.Column("target_se", sa.String(255), nullable=False, default=""),
    sa.Column("used_se", sa.String(255), nullable=False, default=""),
    sa.Column("last_update", UTCDateTime, nullable=False),
    sa.Column("inserted", UTCDateTime, nullable=False),
    sa.Index("ix_ts_files_status", "transformation_id", "status", "file_id"),
    sa.Index("ix_ts_files_file", "file_id"),
    mysql_engine="InnoDB", mysql_charset="utf8mb4",
)

tasks = sa.Table(
    "ts_tasks", metadata,
    sa.Column("transformation_id", sa.Integer,
              sa.ForeignKey("ts_transformations.transformation_id", ondelete="CASCADE"),
              primary_key=True, autoincrement=False),
    sa.Column("task_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("external_id", sa.String(32), nullable=False, default=""),
    sa.Column("target_se", sa.String(255), nullable=False, default=""),
    sa.Column("site", sa.String(128), nullable=False, default=""),
    sa.Column("input_vector", LongText, nullable=False, default=""),
    sa.Column("parameters", sa.Text, nullable=False, default="{}"),
    sa.Column("claimed_by", sa.String(64), nullable=True),
    sa.Column("created", UTCDateTime, nullable=False),
    sa.Column("last_update", UTCDateTime, nullable=False),
    sa.Index("ix_ts_tasks_status", "transformation_id", "status", "task_id"),
    sa.Index("ix_ts_tasks_claim", "claimed_by"),
    mysql_engine="InnoDB", mysql_charset="utf8mb4",
)

task_files = sa.Table(
    "ts_task_files", metadata,
    sa.Column("transformation_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("task_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("file_id", IdType, primary_key=True, autoincrement=False),
    sa.ForeignKeyConstraint(["transformation_id", "task_id"],
                            ["ts_tasks.transformation_id", "ts_tasks.task_id"],
                            ondelete="CASCADE"),
    sa.Index("ix_ts_task_files_file", "transformation_id", "file_id"),
    mysql_engine="InnoDB", mysql_charset="utf8mb4",
)

state = sa.Table(
    "ts_state", metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.BigInteger, nullable=False, default=0),
    sa.Column("updated", UTCDateTime, nullable=False),
    mysql_engine="InnoDB", mysql_charset="utf8mb4",
)

productions = sa.Table(
    "ts_productions", metadata,
    sa.Column("production_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("vo", sa.String(64), nullable=False),
    sa.Column("description", sa.Text, nullable=False, default=""),
    sa.Column("author", sa.String(64), nullable=False),
    sa.Column("author_group", sa.String(64), nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("created", UTCDateTime, nullable=False),
    sa.Column("last_update", UTCDateTime, nullable=False),
    sa.UniqueConstraint("vo", "name", name="uq_ts_productions_vo_name"),
    mysql_engine="InnoDB", mysql_charset="utf8mb4",
)

production_steps = sa.Table(
    "ts_production_steps", metadata,
    sa.Column("production_id", sa.Integer,
              sa.ForeignKey("ts_productions.production_id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("position", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("parents", sa.String(1024), nullable=False, default=""),
    sa.Column("transformation_id", sa.Integer, nullable=False),
    mysql_engine="InnoDB", mysql_charset="utf8mb4",
)
