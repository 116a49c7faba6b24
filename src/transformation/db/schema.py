"""The ``Transformation`` schema (transformations, their files and tasks, productions).

Migrations (version N is reached by running migration N-1):

0. drop ``ix_ts_files_task`` (``ts_files (transformation_id, task_id)``): grouping moved
   each file's entry in it when the file went Unused -> Assigned, and nothing reads files by
   task through it (the files of a task are read from ``ts_task_files``, whose primary key
   starts with (transformation, task)); reversible.

Example::

    >>> TRANSFORMATION_SCHEMA.system, "ts_files" in TRANSFORMATION_SCHEMA.metadata.tables
    ('Transformation', True)
    >>> TRANSFORMATION_SCHEMA.latest
    1
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Connection

from core.db import Reversible, Schema
from transformation.db import tables

SYSTEM = "Transformation"
FILES_TASK_INDEX = "ix_ts_files_task"


def _file_indexes(conn: Connection) -> set[str]:
    return {ix["name"] for ix in sa.inspect(conn).get_indexes("ts_files") if ix["name"]}


def _drop_files_task_index(conn: Connection) -> None:
    """1: drop ``ix_ts_files_task`` (one index entry less to move per file grouped)."""
    if FILES_TASK_INDEX in _file_indexes(conn):
        Operations(MigrationContext.configure(conn)).drop_index(
            FILES_TASK_INDEX, table_name="ts_files")


def _add_files_task_index(conn: Connection) -> None:
    """1 -> 0: the index again (``pilotwms db downgrade``)."""
    if FILES_TASK_INDEX not in _file_indexes(conn):
        Operations(MigrationContext.configure(conn)).create_index(
            FILES_TASK_INDEX, "ts_files", ["transformation_id", "task_id"])


#: the step dropping :data:`FILES_TASK_INDEX` (tests find its place in the list by it)
FILES_TASK_INDEX_STEP = Reversible(_drop_files_task_index, _add_files_task_index)

TRANSFORMATION_SCHEMA = Schema(SYSTEM, tables.metadata, migrations=[FILES_TASK_INDEX_STEP])
