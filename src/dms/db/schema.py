"""The DataManagement schema: the file catalog's tables, one :class:`~core.db.Schema`.

Example::

    >>> DMS_SCHEMA.system, "fc_files" in DMS_SCHEMA.metadata.tables
    ('DataManagement', True)
"""

from __future__ import annotations

from core.db import Schema
from dms.db import tables

DMS_SCHEMA = Schema("DataManagement", tables.metadata, migrations=[])
