"""``pilotwms db init|upgrade|version|history|downgrade|repair``: manage the schemas.

Schemas are found through the ``pilotwms.schemas`` entry points (``System = module:SCHEMA``);
each goes to its system's database (``Systems.<S>.Database``, else ``Database``). A schema may
offer named repairs (``Schema.repairs``), e.g. ``pilotwms db repair job-counters``.
Upgrades and downgrades run through Alembic (:mod:`core.migrations`); every command prints
each system's version with its current and head Alembic revision.

Example::

    pilotwms db init --config /srv/pilotwms/config.yaml
    pilotwms db downgrade --system WorkloadManagement --to 2
"""

from __future__ import annotations

from importlib.metadata import entry_points

from core import migrations
from core.config.schema import Config
from core.db import Schema, init_schema, make_engine, schema_version, upgrade_schema
from core.exceptions import ConfigError
from core.migrations import SchemaStatus

ENTRY_POINT_GROUP = "pilotwms.schemas"


def installed_schemas() -> list[Schema]:
    schemas = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        schema = ep.load()
        if not isinstance(schema, Schema):
            raise ConfigError(f"entry point {ep.name} is not a Schema")
        schemas.append(schema)
    return sorted(schemas, key=lambda s: s.system)


def _each(config: Config, action: str) -> dict[str, int | None]:
    results: dict[str, int | None] = {}
    for schema in installed_schemas():
        engine = make_engine(config.database_url(schema.system))
        try:
            if action == "init":
                results[schema.system] = init_schema(engine, schema)
            elif action == "upgrade":
                results[schema.system] = upgrade_schema(engine, schema)
            else:
                results[schema.system] = schema_version(engine, schema.system)
        finally:
            engine.dispose()
    return results


def repairs() -> list[tuple[str, str, str]]:
    """(system, repair name, first line of its docstring) of every installed repair."""
    return [(schema.system, name, (func.__doc__ or "").strip().splitlines()[0])
            for schema in installed_schemas() for name, func in sorted(schema.repairs.items())]


def repair(config: Config, name: str) -> str:
    """Run the repair ``name`` on its system's database; returns what it reports."""
    for schema in installed_schemas():
        if name in schema.repairs:
            engine = make_engine(config.database_url(schema.system))
            try:
                return schema.repairs[name](engine)
            finally:
                engine.dispose()
    known = ", ".join(r[1] for r in repairs()) or "none"
    raise ConfigError(f"no repair named {name!r}; known: {known}")


def init_all(config: Config) -> dict[str, int | None]:
    return _each(config, "init")


def upgrade_all(config: Config) -> dict[str, int | None]:
    return _each(config, "upgrade")


def versions(config: Config) -> dict[str, int | None]:
    return _each(config, "version")


def statuses(config: Config) -> list[SchemaStatus]:
    """Version, current and head Alembic revision of every installed schema."""
    found = []
    for schema in installed_schemas():
        engine = make_engine(config.database_url(schema.system))
        try:
            found.append(migrations.status(engine, schema))
        finally:
            engine.dispose()
    return found


def describe(status: SchemaStatus) -> str:
    """One line for ``pilotwms db``: version, Alembic revision and head."""
    if status.version is None:
        return f"{status.system}: not initialised (head {status.head})"
    line = (f"{status.system}: version {status.version}, revision {status.revision or '-'} "
            f"(head {status.head})")
    if status.version < status.latest:
        line += ": run 'pilotwms db upgrade'"
    elif status.version > status.latest:
        line += ": newer than this pilotwms"
    return line


def _schema(system: str) -> Schema:
    for schema in installed_schemas():
        if schema.system == system:
            return schema
    known = ", ".join(s.system for s in installed_schemas())
    raise ConfigError(f"no schema for system {system!r}; known: {known}")


def history(system: str) -> list[tuple[str, str, bool]]:
    """(revision, what it does, has a downgrade) of ``system``'s schema, oldest first."""
    return migrations.history(_schema(system))


def downgrade(config: Config, system: str, target: int) -> int:
    """Downgrade ``system``'s schema to version ``target`` (every step undone must define
    a downgrade, else restore the backup taken before the upgrade)."""
    schema = _schema(system)
    engine = make_engine(config.database_url(system))
    try:
        return migrations.downgrade_schema(engine, schema, target)
    finally:
        engine.dispose()
