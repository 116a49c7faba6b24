"""Queries of ``xfer_associations``: one row per (owner, name), the secret as a Fernet token.

Example::

    >>> from core.db import init_schema, make_engine
    >>> from transfer.db.tables import TRANSFER_SCHEMA
    >>> engine = make_engine("sqlite://"); _ = init_schema(engine, TRANSFER_SCHEMA)
    >>> row = AssociationRow(0, "alice", "ftp1", "ftp", "h", 21, "u", "/in", {}, None, "")
    >>> put(engine, row)
    True
    >>> get(engine, "alice", "ftp1").host
    'h'
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from core.db import utcnow, write_transaction
from core.exceptions import NotFoundError
from transfer.db.tables import associations as t


@dataclass
class AssociationRow:
    association_id: int
    owner: str
    name: str
    protocol: str
    host: str
    port: int | None
    username: str
    directory: str
    options: dict[str, Any] = field(default_factory=dict)
    secret: bytes | None = None
    secret_kinds: str = ""

    @classmethod
    def from_mapping(cls, r: Any) -> AssociationRow:
        return cls(r["association_id"], r["owner"], r["name"], r["protocol"], r["host"],
                   r["port"], r["username"], r["directory"], json.loads(r["options"] or "{}"),
                   r["secret"], r["secret_kinds"])


def put(engine: Engine, row: AssociationRow) -> bool:
    """Create or replace ``row`` (by owner and name); True when it was created."""
    now = utcnow()
    values = {"protocol": row.protocol, "host": row.host, "port": row.port,
              "username": row.username, "directory": row.directory,
              "options": json.dumps(row.options, sort_keys=True), "secret": row.secret,
              "secret_kinds": row.secret_kinds, "updated": now}
    with write_transaction(engine) as conn:
        done = conn.execute(sa.update(t).where(t.c.owner == row.owner, t.c.name == row.name)
                            .values(**values)).rowcount
        if done:
            return False
        conn.execute(sa.insert(t).values(owner=row.owner, name=row.name, created=now, **values))
        return True


def get(engine: Engine, owner: str, name: str) -> AssociationRow:
    with engine.connect() as conn:
        r = conn.execute(sa.select(t).where(t.c.owner == owner, t.c.name == name)
                         ).mappings().first()
    if r is None:
        raise NotFoundError(f"no association {name!r} for {owner}")
    return AssociationRow.from_mapping(r)


def list_of(engine: Engine, owner: str) -> list[AssociationRow]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(t).where(t.c.owner == owner).order_by(t.c.name)
                            ).mappings().all()
    return [AssociationRow.from_mapping(r) for r in rows]


def delete(engine: Engine, owner: str, name: str) -> bool:
    with write_transaction(engine) as conn:
        return bool(conn.execute(sa.delete(t).where(t.c.owner == owner, t.c.name == name)
                                 ).rowcount)


def secrets(engine: Engine, batch: int = 500) -> Iterator[list[tuple[int, bytes]]]:
    """Every stored secret as (association_id, token), in batches (for key rotation)."""
    last = 0
    while True:
        with engine.connect() as conn:
            rows = conn.execute(sa.select(t.c.association_id, t.c.secret).where(
                t.c.association_id > last, t.c.secret.is_not(None))
                .order_by(t.c.association_id).limit(batch)).all()
        if not rows:
            return
        last = rows[-1][0]
        yield [(int(r[0]), bytes(r[1])) for r in rows]


def replace_secrets(engine: Engine, pairs: list[tuple[int, bytes, bytes]]) -> int:
    """Store re-encrypted secrets: (id, old token, new token); a row changed meanwhile (its
    token is no longer the old one) is left alone. Returns how many were replaced."""
    count = 0
    with write_transaction(engine) as conn:
        for aid, old, new in pairs:
            count += conn.execute(sa.update(t).where(
                t.c.association_id == aid, t.c.secret == old).values(secret=new)).rowcount
    return count


def learn_host_key(engine: Engine, association_id: int, key: str) -> bool:
    """Keep ``key`` as the association's ``host_key`` unless it has one (trust on first
    use); only that option changes, whatever else was edited meanwhile."""
    with write_transaction(engine) as conn:
        text = conn.execute(sa.select(t.c.options).where(
            t.c.association_id == association_id)).scalar()
        if text is None:
            return False
        options = json.loads(text or "{}")
        if options.get("host_key"):
            return False
        options["host_key"] = key
        conn.execute(sa.update(t).where(t.c.association_id == association_id).values(
            options=json.dumps(options, sort_keys=True)))
    return True
