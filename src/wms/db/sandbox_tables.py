"""Tables of the sandbox store: one row per stored archive, one per (entity, sandbox, type).

* ``sandboxes``: a stored archive, keyed by its place (``se_name``, ``pfn``); the path holds the
  owner, group and md5, so the unique key is also the deduplication key (DIRAC's layout:
  ``/SandBox/<o>/<owner>.<group>/<md5[0:3]>/<md5[3:6]>/<md5>.<ext>``). ``last_access_time``
  moves on upload (also of an identical archive), assignment and unassignment; cleanup reads it
  with ``was_assigned``: never-assigned and no-longer-assigned sandboxes age differently.
* ``sandbox_entities``: which entity (``Job:<id>``) uses which sandbox as ``Input`` or
  ``Output``. The foreign key has no cascade on purpose: a cleanup may never silently take a
  mapping with it, and an assignment racing a cleanup fails instead of dangling.

Example::

    >>> sorted(c.name for c in sandbox_entities.c)
    ['entity_id', 'sb_id', 'sb_type']
"""

from __future__ import annotations

import sqlalchemy as sa

from core.db import UTCDateTime
from wms.db.tables import metadata

SandboxIdType = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # SQLite rowid: INTEGER

sandboxes = sa.Table(
    "sandboxes",
    metadata,
    sa.Column("sb_id", SandboxIdType, primary_key=True, autoincrement=True),
    sa.Column("owner", sa.String(64), nullable=False),
    sa.Column("owner_group", sa.String(128), nullable=False),
    sa.Column("vo", sa.String(64), nullable=False),
    sa.Column("se_name", sa.String(64), nullable=False),
    sa.Column("pfn", sa.String(400), nullable=False),
    sa.Column("checksum", sa.String(32), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("registered_time", UTCDateTime, nullable=False),
    sa.Column("last_access_time", UTCDateTime, nullable=False),
    sa.Column("was_assigned", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.UniqueConstraint("se_name", "pfn", name="uq_sandboxes_location"),
    sa.Index("ix_sandboxes_cleanup", "was_assigned", "last_access_time"),
)

sandbox_entities = sa.Table(
    "sandbox_entities",
    metadata,
    sa.Column("entity_id", sa.String(128), primary_key=True),
    sa.Column("sb_id", SandboxIdType, sa.ForeignKey("sandboxes.sb_id"), primary_key=True),
    sa.Column("sb_type", sa.String(16), primary_key=True),
    sa.Index("ix_sandbox_entities_sb", "sb_id"),
)

__all__ = ["metadata", "sandbox_entities", "sandboxes"]
