"""The ``Transformation`` schema (transformations, their files and tasks, productions).

Example::

    >>> TRANSFORMATION_SCHEMA.system, "ts_files" in TRANSFORMATION_SCHEMA.metadata.tables
    ('Transformation', True)
"""

from __future__ import annotations

from core.db import Schema
from transformation.db import tables

SYSTEM = "Transformation"
TRANSFORMATION_SCHEMA = Schema(SYSTEM, tables.metadata, migrations=[])
