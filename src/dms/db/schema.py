"""The DataManagement schema: the file catalog's tables, one :class:`~core.db.Schema`.

Migrations: 0 -> 1 adds the change journal ``fc_changes`` (:mod:`dms.db.changes`).

Example::

    >>> DMS_SCHEMA.system, "fc_files" in DMS_SCHEMA.metadata.tables
    ('DataManagement', True)
    >>> "fc_changes" in DMS_SCHEMA.metadata.tables, DMS_SCHEMA.latest
    (True, 1)
"""

from __future__ import annotations

from sqlalchemy.engine import Connection

from core.db import Schema
from dms.db import changes, tables


def _add_change_journal(conn: Connection) -> None:
    changes.changes.create(conn, checkfirst=True)


DMS_SCHEMA = Schema("DataManagement", tables.metadata, migrations=[_add_change_journal])
