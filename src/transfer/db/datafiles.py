"""Queries of the data push: data files, data movers, retrievals (``xfer_data_files``,
``xfer_movers``, ``xfer_retrievals``).

A data file's path: async files are Waiting until a mover is given them (:func:`assign`:
Retrieving, with a fresh ``lease``), then Done (stored), Forwarding (stored and handed to a
transfer towards an association) or back to Waiting for a retry; sync files are Uploading
from the ticket until their mover reports them. Only the holder of the current lease can
report a file, so a mover that lost its work (declared dead, file reassigned) can never
overwrite what the new holder does.

:func:`assign` runs under one lock (the ``xfer_locks`` row ``push``, ``SELECT ... FOR
UPDATE`` on MariaDB; SQLite's ``BEGIN IMMEDIATE`` already serialises writers), so the limits
per mover and per source host hold across any number of server processes.

Example::

    >>> from core.db import init_schema, make_engine
    >>> from transfer.db.tables import TRANSFER_SCHEMA
    >>> engine = make_engine("sqlite://"); _ = init_schema(engine, TRANSFER_SCHEMA)
    >>> ids = insert_async(engine, "alice", "demo_user", [NewDataFile(
    ...     "g1", "src-a", "ops", "/data/f1", 10, None, "DISK:/demo/push")])
    >>> register_mover(engine, "m1", "", 2, "host")
    0
    >>> [w.file_id for w in assign(engine, "m1", 4, lambda host: 1)]
    [1]
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from core.db import utcnow, write_transaction
from core.exceptions import NotFoundError
from core.in_values import in_values
from transfer.db.tables import data_files as f
from transfer.db.tables import locks, movers, retrievals

WAITING, UPLOADING, RETRIEVING = "Waiting", "Uploading", "Retrieving"
FORWARDING, DONE, FAILED = "Forwarding", "Done", "Failed"
ACTIVE_STATES = frozenset({WAITING, UPLOADING, RETRIEVING, FORWARDING})
PUSH_LOCK = "push"


@dataclass
class NewDataFile:
    group: str
    source_host: str
    source_user: str
    source_path: str
    size: int | None
    checksum: str | None
    destination: str


@dataclass
class DataFileRow:
    file_id: int
    owner: str
    owner_group: str
    group_name: str
    mode: str
    source_host: str
    source_user: str
    source_path: str
    size: int | None
    checksum: str | None
    destination: str
    location: str | None
    status: str
    mover: str | None
    lease: str | None
    attempts: int
    bytes_done: int
    error: str | None
    transfer_id: int | None
    created: datetime
    last_update: datetime
    not_before: datetime

    @classmethod
    def from_mapping(cls, r: Any) -> DataFileRow:
        return cls(**{k: r[k] for k in cls.__dataclass_fields__})


def _lock(conn: Connection) -> None:
    if conn.dialect.name != "sqlite":
        found = conn.execute(sa.select(locks.c.name).where(locks.c.name == PUSH_LOCK)
                             .with_for_update()).first()
        if found is None:
            conn.execute(sa.insert(locks).values(name=PUSH_LOCK))


def insert_async(engine: Engine, owner: str, group: str, files: Sequence[NewDataFile]
                 ) -> list[int]:
    """Store metadata-only data files (Waiting); their IDs, in order."""
    now = utcnow()
    ids: list[int] = []
    with write_transaction(engine) as conn:
        for new in files:  # one INSERT each: the IDs must come back in order on both backends
            ids.append(int(conn.execute(sa.insert(f).values(
                owner=owner, owner_group=group, group_name=new.group, mode="async",
                source_host=new.source_host, source_user=new.source_user,
                source_path=new.source_path, size=new.size, checksum=new.checksum,
                destination=new.destination, status=WAITING, attempts=0, created=now,
                last_update=now, not_before=now)).inserted_primary_key[0]))  # type: ignore[index]
    return ids


def insert_sync(engine: Engine, owner: str, group: str, new: NewDataFile, mover: str
                ) -> tuple[int, str]:
    """A data file a client is about to stream through ``mover``: (ID, upload ticket)."""
    now = utcnow()
    ticket = secrets.token_urlsafe(32)
    with write_transaction(engine) as conn:
        fid = conn.execute(sa.insert(f).values(
            owner=owner, owner_group=group, group_name=new.group, mode="sync",
            source_host=new.source_host, source_user=owner, source_path=new.source_path,
            size=new.size, checksum=new.checksum, destination=new.destination,
            status=UPLOADING, mover=mover, lease=ticket, attempts=1, created=now,
            last_update=now, not_before=now)).inserted_primary_key[0]  # type: ignore[index]
        conn.execute(sa.insert(retrievals).values(
            file_id=fid, mover=mover, source_host="", lease=ticket, assigned=now))
    return int(fid), ticket


def by_lease(engine: Engine, lease: str) -> DataFileRow:
    with engine.connect() as conn:
        r = conn.execute(sa.select(f).where(f.c.lease == lease)).mappings().first()
    if r is None:
        raise NotFoundError("unknown or expired ticket")
    return DataFileRow.from_mapping(r)


def get(engine: Engine, file_id: int) -> DataFileRow:
    with engine.connect() as conn:
        r = conn.execute(sa.select(f).where(f.c.file_id == file_id)).mappings().first()
    if r is None:
        raise NotFoundError(f"data file {file_id} does not exist")
    return DataFileRow.from_mapping(r)


def of_group(engine: Engine, owner: str | None, group: str) -> list[DataFileRow]:
    query = sa.select(f).where(f.c.group_name == group).order_by(f.c.file_id)
    if owner is not None:
        query = query.where(f.c.owner == owner)
    with engine.connect() as conn:
        return [DataFileRow.from_mapping(r) for r in conn.execute(query).mappings()]


def group_counts(engine: Engine, owner: str | None, group: str) -> dict[str, int]:
    query = sa.select(f.c.status, sa.func.count()).where(f.c.group_name == group) \
        .group_by(f.c.status)
    if owner is not None:
        query = query.where(f.c.owner == owner)
    with engine.connect() as conn:
        return {s: int(n) for s, n in conn.execute(query)}


# -- movers --------------------------------------------------------------------------------


def register_mover(engine: Engine, name: str, url: str, capacity: int, hostname: str) -> int:
    """Register (or re-register) a mover. A mover process that registers holds no work: files
    still assigned to its name (a previous process of the same name that died or was
    restarted) go back to Waiting at once. Returns how many did."""
    now = utcnow()
    with write_transaction(engine) as conn:
        released = _release(conn, [name], now, "its mover restarted")
        values = {"url": url, "capacity": capacity, "hostname": hostname, "last_beat": now,
                  "status": "Active"}
        if not conn.execute(sa.update(movers).where(movers.c.name == name)
                            .values(registered=now, **values)).rowcount:
            conn.execute(sa.insert(movers).values(name=name, registered=now, **values))
    return released


def unregister_mover(engine: Engine, name: str) -> int:
    """A mover leaving: its files go back to Waiting at once. Returns how many."""
    with write_transaction(engine) as conn:
        conn.execute(sa.update(movers).where(movers.c.name == name).values(status="Stopped"))
        return _release(conn, [name], utcnow(), "its mover stopped")


def beat(engine: Engine, name: str, leases: Sequence[str] | dict[str, int]) -> list[str]:
    """A mover's heartbeat with the leases it works on (and, as a dict, the bytes moved for
    each so far); returns the leases it no longer holds."""
    now = utcnow()
    progress = dict(leases) if isinstance(leases, dict) else {}
    leases = list(leases)
    with write_transaction(engine) as conn:
        if not conn.execute(sa.update(movers).where(movers.c.name == name, movers.c.status
                                                    == "Active").values(last_beat=now)
                            ).rowcount:
            raise NotFoundError(f"mover {name} is not registered (register again)")
        held: set[str] = set()
        if leases:
            # any number of leases (in_values): a list beyond SQLite's 32,766 bound
            # parameters was an HTTP 500
            held = set(conn.execute(sa.select(f.c.lease).where(
                in_values(f.c.lease, leases), f.c.mover == name,
                f.c.status.in_([RETRIEVING, UPLOADING]))).scalars())
            conn.execute(sa.update(f).where(in_values(f.c.lease, sorted(held))).values(
                last_update=now))
            for lease in held & set(progress):
                conn.execute(sa.update(f).where(f.c.lease == lease).values(
                    bytes_done=int(progress[lease])))
    return sorted(set(leases) - held)


def live_movers(engine: Engine, dead_after: timedelta) -> list[dict[str, Any]]:
    cutoff = utcnow() - dead_after
    with engine.connect() as conn:
        load: dict[str, int] = {m: int(n) for m, n in conn.execute(sa.select(
            f.c.mover, sa.func.count()).where(f.c.status.in_([RETRIEVING, UPLOADING]))
            .group_by(f.c.mover))}
        rows = conn.execute(sa.select(movers).where(movers.c.status == "Active",
                                                    movers.c.last_beat >= cutoff)
                            .order_by(movers.c.name)).mappings().all()
    return [{"Name": r["name"], "URL": r["url"], "Capacity": r["capacity"],
             "Running": int(load.get(r["name"], 0)), "Host": r["hostname"],
             "LastBeat": r["last_beat"]} for r in rows]


def _release(conn: Connection, names: Sequence[str], now: datetime, why: str) -> int:
    """Files of these movers back to Waiting (their attempt does not count); uploads fail."""
    if not names:
        return 0
    conn.execute(sa.update(f).where(f.c.mover.in_(list(names)), f.c.status == UPLOADING)
                 .values(status=FAILED, error=f"upload interrupted: {why}", lease=None,
                         last_update=now))
    conn.execute(sa.update(retrievals).where(
        retrievals.c.mover.in_(list(names)), retrievals.c.outcome.is_(None)).values(
        outcome="Lost", error=why))
    return int(conn.execute(sa.update(f).where(
        f.c.mover.in_(list(names)), f.c.status == RETRIEVING).values(
        status=WAITING, mover=None, lease=None, not_before=now, last_update=now,
        attempts=f.c.attempts - 1, error=f"reassigned: {why}")).rowcount)


def requeue_dead(engine: Engine, dead_after: timedelta) -> int:
    """Give the work of movers silent for ``dead_after`` to the others; returns how many
    files went back to Waiting."""
    now = utcnow()
    cutoff = now - dead_after
    with write_transaction(engine) as conn:
        dead = list(conn.execute(sa.select(movers.c.name).where(
            movers.c.last_beat < cutoff, movers.c.status == "Active")).scalars())
        if not dead:
            return 0
        busy = set(conn.execute(sa.select(f.c.mover).where(
            f.c.mover.in_(dead), f.c.status.in_([RETRIEVING, UPLOADING]))).scalars())
        conn.execute(sa.update(movers).where(movers.c.name.in_(dead)).values(status="Dead"))
        return _release(conn, sorted(busy), now, "its mover stopped answering")


@dataclass
class Work:
    file_id: int
    lease: str
    source_host: str
    source_user: str
    source_path: str
    size: int | None
    checksum: str | None
    destination: str


def assign(engine: Engine, mover: str, slots: int, limit_of: Callable[[str], int],
           now: datetime | None = None, max_per_mover: int = 0) -> list[Work]:
    """Give ``mover`` up to ``slots`` due async files, within its capacity (and
    ``max_per_mover`` when set) and each source host's limit (``limit_of(host)`` concurrent
    retrievals), hosts served in turn."""
    now = now or utcnow()
    out: list[Work] = []
    with write_transaction(engine) as conn:
        _lock(conn)
        row = conn.execute(sa.select(movers.c.capacity, movers.c.status).where(
            movers.c.name == mover)).first()
        if row is None or row[1] != "Active":
            raise NotFoundError(f"mover {mover} is not registered (register again)")
        active: dict[str, int] = {h: int(n) for h, n in conn.execute(sa.select(
            f.c.source_host, sa.func.count()).where(f.c.status == RETRIEVING)
            .group_by(f.c.source_host))}
        running = int(conn.execute(sa.select(sa.func.count()).where(
            f.c.mover == mover, f.c.status.in_([RETRIEVING, UPLOADING]))).scalar() or 0)
        capacity = min(int(row[0]), max_per_mover) if max_per_mover else int(row[0])
        slots = min(slots, capacity - running)
        if slots <= 0:
            return []
        due = sa.and_(f.c.status == WAITING, f.c.mode == "async", f.c.not_before <= now)
        hosts = list(conn.execute(sa.select(f.c.source_host).where(due).distinct()).scalars())
        room = {h: limit_of(h) - int(active.get(h, 0)) for h in hosts}
        queues: dict[str, list[Any]] = {}
        for host in sorted((h for h in hosts if room[h] > 0),
                           key=lambda h: (active.get(h, 0), h)):
            # in the order of the (status, source_host, not_before) index: no sort, however
            # many files wait
            queues[host] = list(conn.execute(sa.select(f).where(due, f.c.source_host == host)
                                             .order_by(f.c.not_before, f.c.file_id)
                                             .limit(min(room[host], slots))).mappings())
        picked: list[Any] = []
        while len(picked) < slots and any(queues.values()):
            for host in list(queues):
                if queues[host] and len(picked) < slots:
                    picked.append(queues[host].pop(0))
        for r in picked:
            lease = secrets.token_hex(16)
            if not conn.execute(sa.update(f).where(f.c.file_id == r["file_id"],
                                                   f.c.status == WAITING).values(
                status=RETRIEVING, mover=mover, lease=lease, attempts=f.c.attempts + 1,
                bytes_done=0, last_update=now)).rowcount:
                continue
            conn.execute(sa.insert(retrievals).values(
                file_id=r["file_id"], mover=mover, source_host=r["source_host"], lease=lease,
                assigned=now))
            out.append(Work(r["file_id"], lease, r["source_host"], r["source_user"],
                            r["source_path"], r["size"], r["checksum"], r["destination"]))
    return out


def report(engine: Engine, mover: str, lease: str, *, ok: bool, error: str | None,
           location: str | None, permanent: bool, max_attempts: int, retry_delay: float,
           started_us: int | None, ended_us: int | None) -> DataFileRow:
    """The outcome of a retrieval or reception by the lease holder; the file's new row
    (Forwarding when stored for an ``assoc:`` destination)."""
    now = utcnow()
    with write_transaction(engine) as conn:
        r = conn.execute(sa.select(f).where(f.c.lease == lease, f.c.mover == mover)
                         ).mappings().first()
        if r is None or r["status"] not in (RETRIEVING, UPLOADING):
            raise NotFoundError("this mover no longer holds that file (it was reassigned)")
        row = DataFileRow.from_mapping(r)
        conn.execute(sa.update(retrievals).where(retrievals.c.lease == lease).values(
            started_us=started_us, ended_us=ended_us, outcome="OK" if ok else "Failed",
            error=error))
        values: dict[str, Any] = {"lease": None, "last_update": now}
        forward = row.destination.startswith("assoc:")
        if ok:
            values.update(status=FORWARDING if forward else DONE, error=None,
                          location=location, bytes_done=row.size or row.bytes_done)
        elif permanent or row.mode == "sync" or row.attempts >= max_attempts:
            values.update(status=FAILED, error=error if permanent or row.mode == "sync"
                          else f"{error} (gave up after {row.attempts} attempts)")
        else:
            values.update(status=WAITING, mover=None, error=error,
                          not_before=now + timedelta(seconds=retry_delay))
        conn.execute(sa.update(f).where(f.c.file_id == row.file_id).values(**values))
    for key, value in values.items():
        setattr(row, key, value)
    return row


class _TakenError(Exception):
    """Another server process started this forwarding first (rolls the insert back)."""


def start_forward(engine: Engine, file_id: int, new_transfer: dict[str, Any]) -> int | None:
    """Create the transfer forwarding a stored data file, once: the transfer row and the data
    file's link are written in one transaction that only commits when no other process
    linked a transfer first. Returns the new transfer's ID, or None."""
    from transfer.db.tables import transfers

    now = utcnow()
    try:
        with write_transaction(engine) as conn:
            tid = conn.execute(sa.insert(transfers).values(
                **new_transfer, status="Waiting", attempts=0, bytes_done=0, created=now,
                last_update=now, not_before=now)).inserted_primary_key[0]  # type: ignore[index]
            if not conn.execute(sa.update(f).where(
                    f.c.file_id == file_id, f.c.status == FORWARDING,
                    f.c.transfer_id.is_(None)).values(transfer_id=tid, last_update=now)
                    ).rowcount:
                raise _TakenError
    except _TakenError:
        return None
    return int(tid)


def transfer_finished(engine: Engine, transfer_id: int, status: str, error: str | None) -> None:
    """A forwarding transfer ended: its data files are Done or Failed with it."""
    with write_transaction(engine) as conn:
        conn.execute(sa.update(f).where(f.c.transfer_id == transfer_id,
                                        f.c.status == FORWARDING).values(
            status=DONE if status == "Done" else FAILED,
            error=None if status == "Done" else f"forwarding failed: {error}",
            last_update=utcnow()))


def expire_tickets(engine: Engine, older_than: timedelta) -> int:
    """Sync tickets never used within ``older_than`` fail (nothing was accepted)."""
    now = utcnow()
    with write_transaction(engine) as conn:
        return int(conn.execute(sa.update(f).where(
            f.c.status == UPLOADING, f.c.last_update < now - older_than).values(
            status=FAILED, lease=None, error="the upload never came", last_update=now)
        ).rowcount)


def retrieval_intervals(engine: Engine, file_ids: Sequence[int] | None = None
                        ) -> list[tuple[str, str, int, int]]:
    """(mover, source host, start µs, end µs) of finished retrievals (measurements)."""
    query = sa.select(retrievals.c.mover, retrievals.c.source_host, retrievals.c.started_us,
                      retrievals.c.ended_us).where(retrievals.c.started_us.is_not(None),
                                                   retrievals.c.ended_us.is_not(None))
    if file_ids is not None:
        query = query.where(in_values(retrievals.c.file_id, file_ids))
    with engine.connect() as conn:
        return [(m, h, int(s), int(e)) for m, h, s, e in conn.execute(query)]


def report_forward_failed(engine: Engine, file_id: int, error: str) -> None:
    with write_transaction(engine) as conn:
        conn.execute(sa.update(f).where(f.c.file_id == file_id, f.c.status == FORWARDING)
                     .values(status=FAILED, error=error, last_update=utcnow()))
