"""The schema runner of pilotwms before Alembic, frozen as ``main`` had it (commit 3cc6991).

Tests use it to make databases exactly as a pilotwms release before the switch to Alembic
made them (tables from the metadata, one ``pilotwms_schema`` row per system), and to play an
older pilotwms process meeting a database upgraded by the current one. Kept as it was: do not
modernise it. Its ``Schema`` is the project's own (same fields then and now).

Example::

    >>> import sqlalchemy as sa
    >>> from core.db import Schema, make_engine
    >>> md = sa.MetaData()
    >>> _ = sa.Table("t", md, sa.Column("id", sa.Integer, primary_key=True))
    >>> engine = make_engine("sqlite://")
    >>> init_schema(engine, Schema("Demo", md, migrations=[]))
    0
    >>> schema_version(engine, "Demo")
    0
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from core.db import Schema, UTCDateTime, utcnow, write_transaction
from core.exceptions import DatabaseError

SCHEMA_TABLE = "pilotwms_schema"
_schema_md = sa.MetaData()
schema_versions = sa.Table(
    SCHEMA_TABLE,
    _schema_md,
    sa.Column("system", sa.String(64), primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("updated", UTCDateTime, nullable=False),
)


def schema_version(engine: Engine, system: str) -> int | None:
    """The stamped version of ``system``'s schema, None when never initialised."""
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table(SCHEMA_TABLE):
            return None
        return _version(conn, system)


def _version(conn: Connection, system: str) -> int | None:
    row = conn.execute(
        sa.select(schema_versions.c.version).where(schema_versions.c.system == system)
    ).first()
    return None if row is None else int(row[0])


def _stamp(conn: Connection, system: str, version: int, exists: bool) -> None:
    values = {"version": version, "updated": utcnow()}
    if exists:
        conn.execute(
            sa.update(schema_versions).where(schema_versions.c.system == system).values(**values)
        )
    else:
        conn.execute(sa.insert(schema_versions).values(system=system, **values))


def init_schema(engine: Engine, schema: Schema) -> int:
    """Create what is missing; a new schema is stamped at its latest version. Returns it.

    Safe when several processes start at once: on SQLite the check and the creation are one
    ``BEGIN IMMEDIATE`` transaction (a second creator waits for the first instead of failing
    with "database is locked" when its read snapshot went stale); elsewhere a creator that
    loses the race to stamp the version upgrades instead.
    """
    try:
        with write_transaction(engine) as conn:
            _schema_md.create_all(conn)
            current = _version(conn, schema.system)
            if current is None:
                schema.metadata.create_all(conn)
                _stamp(conn, schema.system, schema.latest, exists=False)
                return schema.latest
    except sa.exc.IntegrityError:
        pass  # another process stamped it first (MariaDB: DDL commits on its own)
    except sa.exc.SQLAlchemyError as exc:
        raise DatabaseError(f"cannot create the {schema.system} schema: {exc}") from exc
    return upgrade_schema(engine, schema)


def upgrade_schema(engine: Engine, schema: Schema) -> int:
    """Run pending migrations in order; each one commits with its new version stamp."""
    current = schema_version(engine, schema.system)
    if current is None:
        return init_schema(engine, schema)
    if current > schema.latest:
        raise DatabaseError(
            f"{schema.system} schema is at version {current}, newer than this pilotwms "
            f"({schema.latest}): upgrade the software first"
        )
    for version in range(current, schema.latest):
        try:
            with write_transaction(engine) as conn:
                reached = _version(conn, schema.system)
                if reached is not None and reached > version:
                    continue  # another process ran it meanwhile
                schema.migrations[version](conn)
                _stamp(conn, schema.system, version + 1, exists=True)
        except sa.exc.SQLAlchemyError as exc:
            raise DatabaseError(
                f"{schema.system} migration {version} -> {version + 1} failed: {exc}"
            ) from exc
    # tables added to the metadata without a migration (new tables) are created too
    with write_transaction(engine) as conn:
        schema.metadata.create_all(conn)
    return schema.latest
