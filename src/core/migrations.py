"""Schema creation, upgrades and downgrades through Alembic, one revision chain per system.

Each :class:`~core.db.Schema` becomes an Alembic revision chain built in memory (no revision
files): revision ``<system>_0000`` is the baseline (the tables made from the metadata) and
revision ``<system>_000N`` runs the schema's migration N-1, so *version N is revision N*.
Every system keeps its own Alembic version table, ``alembic_version_<system>``, beside the
tables it describes; SQLite runs in batch mode (``render_as_batch``), so a migration may use
``alembic.op.batch_alter_table`` for the ALTERs SQLite lacks.

The step number of every system is also kept in ``pilotwms_schema`` (the table of the runner
Alembic replaced), written in the same transaction as Alembic's row. A pilotwms from before
the switch reads it, so an old process meeting a newer schema refuses to start instead of
running on it. When the two disagree, the ``pilotwms_schema`` row was written by something
else than this module (a database made or upgraded by that older runner, or an administrator
setting a version back to replay a step), so it is followed: Alembic's row is re-stamped to
the matching revision, then the missing steps run. This is how a database of the old runner
is adopted in place.

Every step runs in its own write transaction (``BEGIN IMMEDIATE`` on SQLite) that re-reads
the version first, and on MariaDB upgraders of a schema queue on a named lock, so processes
upgrading together run each step once; a step that fails leaves the version where it was.
MariaDB commits DDL statements on their own: a step that fails there after a DDL keeps that
DDL, which is why migrations are written to be re-runnable (``checkfirst``, "if missing").

Example::

    >>> import sqlalchemy as sa
    >>> from core.db import Schema, make_engine
    >>> md = sa.MetaData()
    >>> _ = sa.Table("t", md, sa.Column("id", sa.Integer, primary_key=True))
    >>> def add_index(conn):
    ...     "an index on t.id"
    ...     conn.exec_driver_sql("CREATE INDEX ix_t_id ON t (id)")
    >>> engine = make_engine("sqlite://")
    >>> init_schema(engine, Schema("Demo", md, migrations=[add_index]))
    1
    >>> status(engine, Schema("Demo", md, migrations=[add_index]))
    SchemaStatus(system='Demo', version=1, latest=1, revision='demo_0001', head='demo_0001')
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import sqlalchemy as sa
from alembic import op
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from alembic.script import Script, ScriptDirectory
from alembic.script.revision import RevisionMap
from alembic.util import CommandError
from sqlalchemy.engine import Connection, Engine

from core.db import (
    SCHEMA_TABLE,
    Migration,
    Schema,
    _error_code,
    schema_versions,
    utcnow,
    write_transaction,
)
from core.exceptions import DatabaseError, InvalidArgumentError

log = logging.getLogger("pilotwms.db")
# Alembic announces its dialect at INFO each time a context is made (every stamp); the steps
# are logged here instead
logging.getLogger("alembic.runtime.migration").setLevel(logging.WARNING)

#: Alembic's ``op`` is one proxy per process: steps run one at a time in a process (taken
#: before the transaction starts, so it never waits while holding database locks)
_op_lock = threading.Lock()


def slug(system: str) -> str:
    """``WorkloadManagement`` -> ``workload_management`` (version table and revision names)."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", system).lower()


def version_table(system: str) -> str:
    """The Alembic version table of ``system``."""
    return f"alembic_version_{slug(system)}"


def revision_id(system: str, version: int) -> str:
    """The Alembic revision of ``system``'s schema at ``version`` (0: the baseline)."""
    return f"{slug(system)}_{version:04d}"


def revision_number(system: str, revision: str) -> int:
    """The version a revision of :func:`revision_id` stands for."""
    prefix = f"{slug(system)}_"
    number = revision[len(prefix):]
    if not revision.startswith(prefix) or not number.isdigit():
        raise DatabaseError(f"{system}: {version_table(system)} holds {revision!r}, "
                            "not a pilotwms revision")
    return int(number)


@dataclass(frozen=True)
class SchemaStatus:
    """Where a system's schema stands: ``version`` None means never initialised."""

    system: str
    version: int | None
    latest: int
    #: Alembic's row (None before the first init, or in a database of the old runner)
    revision: str | None
    head: str


# -- the revision chain ------------------------------------------------------------------------


def _doc(fn: Callable[..., Any]) -> str:
    fn = getattr(fn, "upgrade", fn)  # a core.db.Reversible
    doc = (getattr(fn, "__doc__", None) or "").strip()
    return doc.splitlines()[0] if doc else getattr(fn, "__name__", repr(fn))


def _revision_module(system: str, number: int, migration: Migration | None) -> ModuleType:
    """A revision "file" made in memory: ``upgrade()`` calls the migration with Alembic's
    connection, ``downgrade()`` its ``downgrade`` when it has one."""
    rev = revision_id(system, number)
    doc = "baseline: the tables made from the metadata" if migration is None else _doc(migration)
    module = ModuleType(f"pilotwms_revisions.{rev}", doc)
    backward = getattr(migration, "downgrade", None)

    def upgrade() -> None:
        if migration is not None:
            migration(op.get_bind())

    def downgrade() -> None:
        if backward is None:
            raise DatabaseError(f"{system}: revision {rev} defines no downgrade")
        backward(op.get_bind())

    module.__dict__.update(revision=rev, down_revision=revision_id(system, number - 1)
                           if number else None, branch_labels=None, depends_on=None,
                           upgrade=upgrade, downgrade=downgrade)
    return module


def _scripts(system: str, migrations: tuple[Migration, ...]) -> ScriptDirectory:
    steps: list[Migration | None] = [None, *migrations]
    scripts = [Script(_revision_module(system, n, m), revision_id(system, n),
                      f"<{system} migration {n}>") for n, m in enumerate(steps)]
    directory = ScriptDirectory(str(Path(__file__).parent))
    directory.revision_map = RevisionMap(lambda: iter(scripts))
    return directory


_cached_scripts = functools.lru_cache(maxsize=128)(_scripts)


def revisions(schema: Schema) -> ScriptDirectory:
    """The Alembic revisions of ``schema`` (cached per system and migration list)."""
    steps = tuple(schema.migrations)
    try:
        hash(steps)
    except TypeError:  # a migration that is an unhashable callable object
        return _scripts(schema.system, steps)
    return _cached_scripts(schema.system, steps)


def history(schema: Schema) -> list[tuple[str, str, bool]]:
    """(revision, first docstring line, has a downgrade) from the baseline to the head."""
    return [(revision_id(schema.system, n),
             "baseline: the tables made from the metadata" if n == 0
             else _doc(schema.migrations[n - 1]),
             n > 0 and getattr(schema.migrations[n - 1], "downgrade", None) is not None)
            for n in range(schema.latest + 1)]


def _context(conn: Connection, schema: Schema, fn: Callable[..., Iterable[Any]],
             purge: bool = False) -> MigrationContext:
    return MigrationContext.configure(conn, opts={
        "version_table": version_table(schema.system),
        "render_as_batch": conn.dialect.name == "sqlite",
        "target_metadata": schema.metadata,
        "script": revisions(schema),
        "purge": purge,
        "fn": fn,
    })


# -- reading and stamping ----------------------------------------------------------------------


def _read(conn: Connection, system: str) -> tuple[int | None, str | None]:
    """(the ``pilotwms_schema`` version, Alembic's revision) of ``system``; None when absent."""
    inspector = sa.inspect(conn)
    legacy = None
    if inspector.has_table(SCHEMA_TABLE):
        row = conn.execute(sa.select(schema_versions.c.version)
                           .where(schema_versions.c.system == system)).first()
        legacy = None if row is None else int(row[0])
    revision = None
    if inspector.has_table(version_table(system)):
        table = sa.table(version_table(system), sa.column("version_num", sa.String))
        rows = [str(rev) for rev in conn.execute(sa.select(table.c.version_num)).scalars()]
        if len(rows) > 1:
            raise DatabaseError(f"{system}: several heads in {version_table(system)}: {rows}")
        revision = rows[0] if rows else None
    return legacy, revision


def _effective(system: str, legacy: int | None, revision: str | None) -> int | None:
    if legacy is not None:
        return legacy
    return None if revision is None else revision_number(system, revision)


def _set_legacy(conn: Connection, system: str, version: int, exists: bool) -> None:
    values = {"version": version, "updated": utcnow()}
    if exists:
        conn.execute(sa.update(schema_versions)
                     .where(schema_versions.c.system == system).values(**values))
    else:
        conn.execute(sa.insert(schema_versions).values(system=system, **values))


def _stamp(conn: Connection, schema: Schema, version: int) -> None:
    """Alembic's row := the revision of ``version`` (``alembic stamp --purge``)."""
    target = revision_id(schema.system, version)
    ctx = _context(conn, schema, purge=True,
                   fn=lambda _heads, _ctx: revisions(schema)._stamp_revs(target, ()))
    ctx.run_migrations()


def _reconcile(conn: Connection, schema: Schema) -> int:
    """Make Alembic's row and ``pilotwms_schema`` agree (the latter wins); the version."""
    legacy, revision = _read(conn, schema.system)
    version = _effective(schema.system, legacy, revision)
    if version is None:
        raise DatabaseError(f"{schema.system} schema is not initialised")
    if version > schema.latest:
        raise DatabaseError(
            f"{schema.system} schema is at version {version}, newer than this pilotwms "
            f"({schema.latest}): upgrade the software first")
    if revision != revision_id(schema.system, version):
        log.info("%s: Alembic revision %s -> %s (pilotwms_schema says version %d)",
                 schema.system, revision, revision_id(schema.system, version), version)
        _stamp(conn, schema, version)
    if legacy is None:
        schema_versions.create(conn, checkfirst=True)
        _set_legacy(conn, schema.system, version, exists=False)
    return version


# -- one upgrader at a time --------------------------------------------------------------------

#: seconds a process waits for another one's upgrade of the same schema (MariaDB)
LOCK_TIMEOUT = 600
#: MariaDB's answer to GET_LOCK in a Galera cluster (MDEV-30473): not supported
_NOT_SUPPORTED = 1235


@contextmanager
def _schema_lock(engine: Engine, system: str) -> Iterator[None]:
    """On MariaDB, a named lock per database and system held while a schema is created or
    migrated: DDL commits on its own there, so without it two processes starting together
    could both run a step. Galera refuses named locks: there the documented procedure (one
    ``pilotwms db upgrade`` before the services start) is what serialises. SQLite needs none:
    each step is one ``BEGIN IMMEDIATE`` transaction that re-reads the version."""
    if engine.dialect.name not in ("mysql", "mariadb"):
        yield
        return
    with engine.connect() as conn:
        database = conn.exec_driver_sql("SELECT DATABASE()").scalar() or ""
        digest = hashlib.sha256(f"{database}/{system}".encode()).hexdigest()[:24]
        name = f"pilotwms_schema_{digest}"
        try:
            got = conn.execute(sa.select(sa.func.get_lock(name, LOCK_TIMEOUT))).scalar()
        except sa.exc.DBAPIError as exc:
            if _error_code(exc.orig) != _NOT_SUPPORTED:
                raise DatabaseError(f"{system}: cannot lock the schema: {exc}") from exc
            conn.rollback()
            log.debug("%s: named locks unsupported (Galera), upgrading unlocked", system)
            yield
            return
        conn.commit()
        if got != 1:
            raise DatabaseError(f"{system}: another process has been migrating the schema "
                                f"for {LOCK_TIMEOUT} s; try again when it is done")
        try:
            yield
        finally:
            conn.execute(sa.select(sa.func.release_lock(name)))
            conn.commit()


# -- the public operations -----------------------------------------------------------------


def schema_version(engine: Engine, system: str) -> int | None:
    """The version ``system``'s schema is at, None when never initialised."""
    with engine.connect() as conn:
        return _effective(system, *_read(conn, system))


def status(engine: Engine, schema: Schema) -> SchemaStatus:
    """Version, Alembic revision and head of ``schema`` in ``engine``'s database."""
    with engine.connect() as conn:
        legacy, revision = _read(conn, schema.system)
    return SchemaStatus(schema.system, _effective(schema.system, legacy, revision),
                        schema.latest, revision, revision_id(schema.system, schema.latest))


def init_schema(engine: Engine, schema: Schema) -> int:
    """Create a new schema from its metadata, stamped at its head; an existing one is
    upgraded. Returns the version reached.

    Safe when several processes start at once: on SQLite the check, the tables and both
    stamps are one ``BEGIN IMMEDIATE`` transaction (a second creator waits for the first);
    on MariaDB, whose DDL commits on its own, creators and upgraders of a system queue on
    a named lock (see :func:`_schema_lock`).
    """
    with _schema_lock(engine, schema.system):
        if _create(engine, schema):
            return schema.latest
        return _upgrade(engine, schema)


def upgrade_schema(engine: Engine, schema: Schema) -> int:
    """Run the Alembic revisions from the database's version to the head, each step in its
    own transaction with its version stamps; a new schema is created. Returns the version
    reached."""
    with _schema_lock(engine, schema.system):
        if schema_version(engine, schema.system) is None and _create(engine, schema):
            return schema.latest
        return _upgrade(engine, schema)


def _create(engine: Engine, schema: Schema) -> bool:
    """Tables, Alembic stamp and ``pilotwms_schema`` row of a schema never initialised, in one
    write transaction; False when it exists (or another process created it meanwhile)."""
    try:
        with write_transaction(engine) as conn:
            legacy, revision = _read(conn, schema.system)
            if _effective(schema.system, legacy, revision) is not None:
                return False
            schema_versions.create(conn, checkfirst=True)
            schema.metadata.create_all(conn)
            _stamp(conn, schema, schema.latest)
            _set_legacy(conn, schema.system, schema.latest, exists=False)
            log.info("%s schema created at version %d", schema.system, schema.latest)
            return True
    except sa.exc.IntegrityError:
        return False  # another process stamped it first (MariaDB: DDL commits on its own)
    except (sa.exc.SQLAlchemyError, CommandError) as exc:
        raise DatabaseError(f"cannot create the {schema.system} schema: {exc}") from exc


def _upgrade(engine: Engine, schema: Schema) -> int:
    current = schema_version(engine, schema.system)
    if current is not None and current > schema.latest:
        raise DatabaseError(
            f"{schema.system} schema is at version {current}, newer than this pilotwms "
            f"({schema.latest}): upgrade the software first")
    for version in range(current or 0, schema.latest):
        _step(engine, schema, version, version + 1)
    # tables added to the metadata without a migration (new tables) are created too
    try:
        with write_transaction(engine) as conn:
            _reconcile(conn, schema)
            schema.metadata.create_all(conn)
    except (sa.exc.SQLAlchemyError, CommandError) as exc:
        raise DatabaseError(f"cannot complete the {schema.system} schema: {exc}") from exc
    return schema.latest


def downgrade_schema(engine: Engine, schema: Schema, target: int) -> int:
    """Undo the steps above ``target``, newest first, each with its ``downgrade``; refused
    before anything runs when one of them has none (then restore the backup taken before
    the upgrade). Returns ``target``."""
    with _schema_lock(engine, schema.system):
        return _downgrade(engine, schema, target)


def _downgrade(engine: Engine, schema: Schema, target: int) -> int:
    current = schema_version(engine, schema.system)
    if current is None:
        raise DatabaseError(f"{schema.system} schema is not initialised")
    if not 0 <= target <= current:
        raise InvalidArgumentError(f"{schema.system}: cannot downgrade from version {current} "
                         f"to {target}")
    if current > schema.latest:
        raise DatabaseError(f"{schema.system} schema is at version {current}, newer than "
                            f"this pilotwms ({schema.latest}): downgrade with that release")
    missing = [n for n in range(target + 1, current + 1)
               if getattr(schema.migrations[n - 1], "downgrade", None) is None]
    if missing:
        raise DatabaseError(
            f"{schema.system}: step(s) {', '.join(map(str, missing))} define no downgrade; "
            "restore the backup taken before the upgrade instead")
    for version in range(current, target, -1):
        _step(engine, schema, version, version - 1)
    return target


def _step(engine: Engine, schema: Schema, start: int, end: int) -> None:
    """One revision from ``start`` to ``end`` (= start +/- 1) in one write transaction;
    nothing when another process already moved the version away from ``start``."""
    scripts = revisions(schema)
    target = revision_id(schema.system, end)
    try:
        with _op_lock, write_transaction(engine) as conn:
            if _reconcile(conn, schema) != start:
                return  # another process ran it meanwhile
            if end > start:
                def steps(heads: Sequence[str], _ctx: Any) -> list[Any]:
                    return scripts._upgrade_revs(target, heads[0])
            else:
                def steps(heads: Sequence[str], _ctx: Any) -> list[Any]:
                    return scripts._downgrade_revs(target, heads[0])
            ctx = _context(conn, schema, fn=steps)
            with Operations.context(ctx):
                ctx.run_migrations()
            _set_legacy(conn, schema.system, end, exists=True)
            log.info("%s schema: version %d -> %d (%s)", schema.system, start, end, target)
    except (sa.exc.SQLAlchemyError, CommandError) as exc:
        raise DatabaseError(
            f"{schema.system} migration {start} -> {end} failed: {exc}") from exc
