"""Queries of the sandbox store (tables in :mod:`wms.db.sandbox_tables`); no rules here.

Every function takes an open :class:`~sqlalchemy.engine.Connection`; the caller owns the
transaction (``core.db.write_transaction`` for anything that reads then writes).

Example::

    >>> from core.db import init_schema, make_engine, utcnow, write_transaction
    >>> from wms.db.schema import WMS_SCHEMA
    >>> engine = make_engine("sqlite://")
    >>> _ = init_schema(engine, WMS_SCHEMA)
    >>> with write_transaction(engine) as conn:
    ...     sb_id = insert_sandbox(conn, owner="alice", owner_group="demo_user", vo="demo",
    ...                            se_name="SE", pfn="/SandBox/a/x.tar.bz2", checksum="0" * 32,
    ...                            size=3, now=utcnow())
    ...     get_by_location(conn, "SE", "/SandBox/a/x.tar.bz2").owner
    'alice'
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from core.in_values import in_values
from wms.db.sandbox_tables import sandbox_entities, sandboxes


@dataclass(frozen=True)
class SandboxRecord:
    """One row of ``sandboxes``."""

    sb_id: int
    owner: str
    owner_group: str
    vo: str
    se_name: str
    pfn: str
    checksum: str
    size: int
    registered_time: datetime
    last_access_time: datetime
    was_assigned: bool

    @classmethod
    def from_row(cls, row: Any) -> SandboxRecord:
        m = row._mapping
        return cls(
            sb_id=int(m["sb_id"]), owner=m["owner"], owner_group=m["owner_group"], vo=m["vo"],
            se_name=m["se_name"], pfn=m["pfn"], checksum=m["checksum"], size=int(m["size"]),
            registered_time=m["registered_time"], last_access_time=m["last_access_time"],
            was_assigned=bool(m["was_assigned"]),
        )


def _unused() -> sa.ColumnElement[bool]:
    """No entity maps to the sandbox of the current ``sandboxes`` row."""
    return ~sa.exists().where(sandbox_entities.c.sb_id == sandboxes.c.sb_id)


def get_by_location(conn: Connection, se_name: str, pfn: str, *,
                    lock: bool = False) -> SandboxRecord | None:
    """The sandbox stored at ``pfn`` on ``se_name``; ``lock`` takes a row lock (MariaDB)."""
    found = get_by_locations(conn, se_name, [pfn], lock=lock)
    return found.get(pfn)


def get_by_locations(conn: Connection, se_name: str, pfns: Collection[str], *,
                     lock: bool = False) -> dict[str, SandboxRecord]:
    """pfn -> sandbox for those of ``pfns`` that exist on ``se_name``."""
    if not pfns:
        return {}
    query = sa.select(sandboxes).where(sandboxes.c.se_name == se_name,
                                       in_values(sandboxes.c.pfn, sorted(set(pfns))))
    if lock:
        query = query.with_for_update()
    return {r.pfn: r for r in map(SandboxRecord.from_row, conn.execute(query))}


def insert_sandbox(conn: Connection, *, owner: str, owner_group: str, vo: str, se_name: str,
                   pfn: str, checksum: str, size: int, now: datetime) -> int:
    """Register a stored archive; returns its id."""
    result = conn.execute(sa.insert(sandboxes).values(
        owner=owner, owner_group=owner_group, vo=vo, se_name=se_name, pfn=pfn,
        checksum=checksum, size=size, registered_time=now, last_access_time=now,
        was_assigned=False,
    ))
    key = result.inserted_primary_key
    assert key is not None  # noqa: S101 - an INSERT of one row has a key
    return int(key[0])


def touch(conn: Connection, sb_id: int, now: datetime) -> bool:
    """Move the last access time; False when the row is gone."""
    result = conn.execute(sa.update(sandboxes).where(sandboxes.c.sb_id == sb_id)
                          .values(last_access_time=now))
    return result.rowcount > 0


def existing_mappings(conn: Connection, entity_ids: Collection[str]) -> set[tuple[str, int, str]]:
    """(entity, sandbox id, type) already recorded for ``entity_ids``."""
    if not entity_ids:
        return set()
    rows = conn.execute(sa.select(sandbox_entities.c.entity_id, sandbox_entities.c.sb_id,
                                  sandbox_entities.c.sb_type)
                        .where(in_values(sandbox_entities.c.entity_id, sorted(set(entity_ids)))))
    return {(r.entity_id, int(r.sb_id), r.sb_type) for r in rows}


def insert_mappings(conn: Connection, rows: Iterable[tuple[str, int, str]]) -> int:
    """Record (entity, sandbox id, type) rows; returns how many."""
    values = [{"entity_id": e, "sb_id": s, "sb_type": t} for e, s, t in rows]
    if values:
        conn.execute(sa.insert(sandbox_entities), values)
    return len(values)


def mark_assigned(conn: Connection, sb_ids: Collection[int], now: datetime) -> None:
    if sb_ids:
        conn.execute(sa.update(sandboxes).where(in_values(sandboxes.c.sb_id, sorted(set(sb_ids))))
                     .values(was_assigned=True, last_access_time=now))


def sandboxes_of_entity(conn: Connection, entity_id: str) -> list[tuple[str, SandboxRecord]]:
    """(type, sandbox) pairs assigned to ``entity_id``, oldest sandbox first."""
    rows = conn.execute(
        sa.select(sandbox_entities.c.sb_type, sandboxes)
        .join(sandboxes, sandboxes.c.sb_id == sandbox_entities.c.sb_id)
        .where(sandbox_entities.c.entity_id == entity_id)
        .order_by(sandboxes.c.sb_id, sandbox_entities.c.sb_type)
    )
    return [(r.sb_type, SandboxRecord.from_row(r)) for r in rows]


def sandbox_ids_of_entities(conn: Connection, entity_ids: Collection[str]) -> set[int]:
    if not entity_ids:
        return set()
    rows = conn.execute(sa.select(sandbox_entities.c.sb_id).distinct()
                        .where(in_values(sandbox_entities.c.entity_id, sorted(set(entity_ids)))))
    return {int(r.sb_id) for r in rows}


def delete_entities(conn: Connection, entity_ids: Collection[str]) -> int:
    """Forget every mapping of ``entity_ids``; returns the number of mappings removed."""
    if not entity_ids:
        return 0
    result = conn.execute(sa.delete(sandbox_entities)
                          .where(in_values(sandbox_entities.c.entity_id, sorted(set(entity_ids)))))
    return result.rowcount


def mark_unassigned_if_unused(conn: Connection, sb_ids: Collection[int], now: datetime) -> None:
    """Start the grace period of those of ``sb_ids`` no entity uses any more."""
    if sb_ids:
        conn.execute(sa.update(sandboxes)
                     .where(in_values(sandboxes.c.sb_id, sorted(set(sb_ids))), _unused())
                     .values(last_access_time=now))


def _deletable(unassigned_before: datetime, never_assigned_before: datetime
               ) -> sa.ColumnElement[bool]:
    return sa.and_(
        _unused(),
        sa.or_(
            sa.and_(sandboxes.c.was_assigned.is_(True),
                    sandboxes.c.last_access_time < unassigned_before),
            sa.and_(sandboxes.c.was_assigned.is_(False),
                    sandboxes.c.last_access_time < never_assigned_before),
        ),
    )


def cleanup_candidates(conn: Connection, *, unassigned_before: datetime,
                       never_assigned_before: datetime, limit: int) -> list[int]:
    """Ids of sandboxes that look deletable (to be re-checked under a lock)."""
    rows = conn.execute(sa.select(sandboxes.c.sb_id)
                        .where(_deletable(unassigned_before, never_assigned_before))
                        .order_by(sandboxes.c.sb_id).limit(limit))
    return [int(r.sb_id) for r in rows]


def lock_sandboxes(conn: Connection, sb_ids: Collection[int]) -> None:
    """Row-lock ``sb_ids`` (MariaDB; SQLite's write transaction already excludes writers).

    Kept as its own statement: under READ COMMITTED the next statement then sees every
    assignment committed before the lock was granted, and later ones wait for the lock.
    """
    if sb_ids:
        conn.execute(sa.select(sandboxes.c.sb_id)
                     .where(in_values(sandboxes.c.sb_id, sorted(set(sb_ids)))).with_for_update())


def still_deletable(conn: Connection, sb_ids: Collection[int], *, unassigned_before: datetime,
                    never_assigned_before: datetime) -> list[SandboxRecord]:
    """Those of ``sb_ids`` that are still deletable (call after :func:`lock_sandboxes`)."""
    if not sb_ids:
        return []
    rows = conn.execute(sa.select(sandboxes)
                        .where(in_values(sandboxes.c.sb_id, sorted(set(sb_ids))),
                               _deletable(unassigned_before, never_assigned_before)))
    return [SandboxRecord.from_row(r) for r in rows]


def delete_sandboxes(conn: Connection, sb_ids: Collection[int]) -> int:
    if not sb_ids:
        return 0
    result = conn.execute(sa.delete(sandboxes)
                          .where(in_values(sandboxes.c.sb_id, sorted(set(sb_ids)))))
    return result.rowcount
