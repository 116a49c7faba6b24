"""Queries of ``xfer_transfers`` and ``xfer_attempts``.

Statuses are the request management's: Waiting -> Assigned (an agent runs it) -> Done |
Failed | Canceled; a failed attempt with retries left goes back to Waiting with a later
``not_before``. :func:`claim` takes due transfers (or those of a dead agent) with a
compare-and-set per row, so two agents never run the same transfer.

Example::

    >>> from core.db import init_schema, make_engine
    >>> from transfer.db.tables import TRANSFER_SCHEMA
    >>> engine = make_engine("sqlite://"); _ = init_schema(engine, TRANSFER_SCHEMA)
    >>> tid = insert(engine, NewTransfer("alice", "demo_user", "demo", 1, "ftp1", "put",
    ...                                  "spool", "t1", "f.dat", "/spool/t1", 5, "062c0215",
    ...                                  False, False, 3, 60, None, False, False))
    >>> [t.transfer_id for t in claim(engine, "agent-1", 10, timedelta(minutes=5))]
    [1]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from core.db import utcnow, write_transaction
from core.exceptions import NotFoundError
from core.in_values import in_values
from transfer.db.tables import attempts as a
from transfer.db.tables import transfers as t

WAITING, ASSIGNED, DONE, FAILED, CANCELED = "Waiting", "Assigned", "Done", "Failed", "Canceled"
FINAL = frozenset({DONE, FAILED, CANCELED})


@dataclass
class NewTransfer:
    owner: str
    owner_group: str
    vo: str | None
    association_id: int | None
    association: str
    direction: str
    source_kind: str
    source: str
    target: str
    spool_path: str | None
    size: int | None
    checksum: str | None
    overwrite: bool
    sync: bool
    retry_count: int
    retry_frequency: int
    mail_to: str | None
    on_success: bool
    on_failure: bool


@dataclass
class TransferRow(NewTransfer):
    transfer_id: int = 0
    status: str = WAITING
    attempts: int = 0
    bytes_done: int = 0
    error: str | None = None
    created: datetime | None = None
    last_update: datetime | None = None
    not_before: datetime | None = None
    claimed_by: str | None = None

    @classmethod
    def from_mapping(cls, r: Any) -> TransferRow:
        return cls(**{k: r[k] for k in cls.__dataclass_fields__})


@dataclass
class AttemptRow:
    attempt: int
    started: datetime
    ended: datetime
    ok: bool
    bytes: int
    error: str | None
    agent: str


def insert(engine: Engine, new: NewTransfer, not_before: datetime | None = None) -> int:
    now = utcnow()
    with write_transaction(engine) as conn:
        tid = conn.execute(sa.insert(t).values(
            **asdict(new), status=WAITING, attempts=0, bytes_done=0, created=now,
            last_update=now, not_before=not_before or now)).inserted_primary_key[0]  # type: ignore[index]
    return int(tid)


def get(engine: Engine, transfer_id: int) -> TransferRow:
    with engine.connect() as conn:
        r = conn.execute(sa.select(t).where(t.c.transfer_id == transfer_id)).mappings().first()
    if r is None:
        raise NotFoundError(f"transfer {transfer_id} does not exist")
    return TransferRow.from_mapping(r)


def list_of(engine: Engine, owner: str | None, *, status: str | None = None,
            limit: int = 1000) -> list[TransferRow]:
    query = sa.select(t).order_by(t.c.transfer_id.desc()).limit(limit)
    if owner is not None:
        query = query.where(t.c.owner == owner)
    if status is not None:
        query = query.where(t.c.status == status)
    with engine.connect() as conn:
        return [TransferRow.from_mapping(r) for r in conn.execute(query).mappings()]


def attempts_of(engine: Engine, transfer_id: int) -> list[AttemptRow]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(a).where(a.c.transfer_id == transfer_id)
                            .order_by(a.c.attempt_id)).mappings().all()
    return [AttemptRow(r["attempt"], r["started"], r["ended"], bool(r["ok"]), r["bytes"],
                       r["error"], r["agent"]) for r in rows]


def claim(engine: Engine, instance: str, limit: int, stale_after: timedelta,
          now: datetime | None = None) -> list[TransferRow]:
    """Up to ``limit`` due transfers (Waiting past ``not_before``, or Assigned and not saved
    for ``stale_after``), each taken with a compare-and-set."""
    now = now or utcnow()
    c = t.c
    due = sa.or_(sa.and_(c.status == WAITING, c.not_before <= now),
                 sa.and_(c.status == ASSIGNED, c.last_update <= now - stale_after))
    taken: list[int] = []
    with write_transaction(engine) as conn:
        candidates = conn.execute(sa.select(c.transfer_id, c.status).where(due)
                                  .order_by(c.not_before, c.transfer_id).limit(limit)).all()
        for tid, status in candidates:
            if conn.execute(sa.update(t).where(c.transfer_id == tid, c.status == status, due)
                            .values(status=ASSIGNED, claimed_by=instance, last_update=now)
                            ).rowcount:
                taken.append(tid)
        if not taken:
            return []
        rows = conn.execute(sa.select(t).where(c.transfer_id.in_(taken))
                            .order_by(c.transfer_id)).mappings().all()
    return [TransferRow.from_mapping(r) for r in rows]


def record_attempt(engine: Engine, row: TransferRow, started: datetime, ok: bool,
                   nbytes: int, error: str | None, agent: str) -> bool:
    """Store one attempt and the transfer's new state (unless it was cancelled meanwhile, or
    claimed by another agent): True when stored."""
    now = utcnow()
    with write_transaction(engine) as conn:
        done = conn.execute(sa.update(t).where(
            t.c.transfer_id == row.transfer_id, t.c.status == ASSIGNED,
            t.c.claimed_by == agent).values(
            status=row.status, attempts=row.attempts, error=row.error,
            not_before=row.not_before, bytes_done=row.bytes_done, last_update=now,
            claimed_by=None)).rowcount
        exists = done or conn.execute(sa.select(t.c.transfer_id).where(
            t.c.transfer_id == row.transfer_id)).first() is not None
        if exists:  # a deleted transfer keeps no attempts
            conn.execute(sa.insert(a).values(
                transfer_id=row.transfer_id, attempt=row.attempts, started=started, ended=now,
                ok=ok, bytes=nbytes, error=error, agent=agent))
    return bool(done)


def give_back(engine: Engine, transfer_id: int, agent: str) -> None:
    """An agent stopping returns a claimed transfer untouched."""
    with write_transaction(engine) as conn:
        conn.execute(sa.update(t).where(t.c.transfer_id == transfer_id,
                                        t.c.claimed_by == agent, t.c.status == ASSIGNED)
                     .values(status=WAITING, claimed_by=None, last_update=utcnow()))


def touch(engine: Engine, transfer_id: int, agent: str, bytes_done: int) -> None:
    """Progress of a running transfer (also keeps it from looking stale)."""
    with write_transaction(engine) as conn:
        conn.execute(sa.update(t).where(t.c.transfer_id == transfer_id,
                                        t.c.claimed_by == agent)
                     .values(bytes_done=bytes_done, last_update=utcnow()))


def restart(engine: Engine, transfer_id: int) -> bool:
    """A Failed or Canceled transfer goes back to Waiting with its retries renewed."""
    now = utcnow()
    with write_transaction(engine) as conn:
        return bool(conn.execute(sa.update(t).where(
            t.c.transfer_id == transfer_id, t.c.status.in_([FAILED, CANCELED])).values(
            status=WAITING, attempts=0, error=None, not_before=now, last_update=now,
            bytes_done=0)).rowcount)


def cancel(engine: Engine, transfer_id: int) -> bool:
    """Cancel a transfer that is not final (an attempt in progress finishes but its outcome
    is not stored); False when it already was final."""
    with write_transaction(engine) as conn:
        return bool(conn.execute(sa.update(t).where(
            t.c.transfer_id == transfer_id, t.c.status.not_in(list(FINAL))).values(
            status=CANCELED, claimed_by=None, last_update=utcnow())).rowcount)


def remove(engine: Engine, transfer_ids: Sequence[int]) -> int:
    with write_transaction(engine) as conn:
        conn.execute(sa.delete(a).where(in_values(a.c.transfer_id, transfer_ids)))
        return int(conn.execute(sa.delete(t).where(in_values(t.c.transfer_id, transfer_ids))
                                ).rowcount)


def expired(engine: Engine, before: datetime, limit: int = 500) -> list[TransferRow]:
    """Final transfers last changed before ``before`` (housekeeping)."""
    with engine.connect() as conn:
        rows = conn.execute(sa.select(t).where(t.c.status.in_(list(FINAL)),
                                               t.c.last_update < before)
                            .limit(limit)).mappings().all()
    return [TransferRow.from_mapping(r) for r in rows]


def spool_paths_in_use(engine: Engine, paths: Sequence[str]) -> set[str]:
    """Which of these spool paths a transfer still references."""
    found: set[str] = set()
    with engine.connect() as conn:
        for start in range(0, len(paths), 500):
            found.update(conn.execute(sa.select(t.c.spool_path).where(
                t.c.spool_path.in_(list(paths[start:start + 500])))).scalars())
    return found
