"""A small schema whose migration steps leave traces, for the tests of :mod:`core.migrations`
(kept light: copies of it start in subprocesses).

Version 1 adds an index (DDL: MariaDB commits it on its own), version 2 a column through
Alembic's ``op`` (reversible, batch mode on SQLite); each step logs itself in ``steps_log``.

Example::

    >>> demo(2).latest, [c.name for c in demo(2).metadata.tables["things"].columns]
    (2, ['id', 'name', 'note'])
"""

from __future__ import annotations

import time

import sqlalchemy as sa
from alembic import op
from sqlalchemy.engine import Connection

from core.db import Reversible, Schema

steps_log = sa.Table("steps_log", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True),
                     sa.Column("step", sa.Integer, nullable=False))


def _metadata(steps: int) -> sa.MetaData:
    """The tables as of version ``steps``: 1 adds an index, 2 a column."""
    md = sa.MetaData()
    things = sa.Table("things", md, sa.Column("id", sa.Integer, primary_key=True),
                      sa.Column("name", sa.String(32), nullable=False),
                      *([sa.Column("note", sa.String(64), nullable=True)] if steps >= 2 else []))
    if steps >= 1:
        sa.Index("ix_things_name", things.c.name)
    steps_log.to_metadata(md)
    return md


def _logged(step: int, conn: Connection) -> None:
    conn.execute(sa.insert(steps_log).values(step=step))


def _index_names(conn: Connection) -> None:
    """1: an index on things.name (DDL, committed on its own by MariaDB)."""
    time.sleep(0.3)  # widens the window in which unserialised upgraders would collide
    conn.exec_driver_sql("CREATE INDEX ix_things_name ON things (name)")
    _logged(1, conn)


def _add_note(conn: Connection) -> None:
    """2: things.note, through Alembic's op (batch mode on SQLite)."""
    assert op.get_bind() is conn
    op.add_column("things", sa.Column("note", sa.String(64), nullable=True))
    _logged(2, conn)


def _drop_note(conn: Connection) -> None:
    with op.batch_alter_table("things") as batch:  # SQLite: copy-and-move
        batch.drop_column("note")


def _broken(conn: Connection) -> None:
    """3: writes a row, then fails."""
    _logged(3, conn)
    conn.execute(sa.text("SELECT * FROM no_such_table"))


def demo(steps: int, broken: bool = False, reversible: bool = True) -> Schema:
    """Demo at version ``steps`` (0-2), with a failing third step when ``broken``."""
    second = Reversible(_add_note, _drop_note) if reversible else _add_note
    chain = [_index_names, second][:steps] + ([_broken] if broken else [])
    return Schema("DemoSteps", _metadata(steps), migrations=chain)
