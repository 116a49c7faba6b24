"""Tables of the ``Framework`` system, shared by every component.

``component_heartbeats``: one row per running agent or service instance, refreshed by its loop;
agents use it to see their live peers and split work between them.

Example::

    >>> from core.db import init_schema, make_engine
    >>> init_schema(make_engine("sqlite://"), FRAMEWORK_SCHEMA)
    0
"""

from __future__ import annotations

import sqlalchemy as sa

from core.db import Schema, UTCDateTime

metadata = sa.MetaData()

component_heartbeats = sa.Table(
    "component_heartbeats",
    metadata,
    sa.Column("component", sa.String(128), primary_key=True),
    sa.Column("instance", sa.String(128), primary_key=True),
    sa.Column("hostname", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("started", UTCDateTime, nullable=False),
    sa.Column("last_beat", UTCDateTime, nullable=False, index=True),
)

FRAMEWORK_SCHEMA = Schema("Framework", metadata, migrations=[])
