"""The RequestManagement schema: failover requests, their operations and files (DIRAC's RMS).

A request (owner, optional job) holds ordered operations (``ReplicateAndRegister``,
``RegisterFile``, ...), each with its files. The request executing agent claims Waiting
requests whose ``not_before`` has passed (:func:`claim`), runs them, and stores the outcome
(:func:`save_outcome`): Done, Failed, or Waiting again with a later ``not_before`` (back-off).

Example::

    >>> from core.db import init_schema, make_engine
    >>> engine = make_engine("sqlite://")
    >>> init_schema(engine, REQUEST_SCHEMA)
    0
    >>> rid = insert_request(engine, NewRequest("r1", "alice", "demo_user", "demo", None, [
    ...     NewOperation("RemoveFile", "", "", [{"LFN": "/demo/f"}])]))
    >>> get_request(engine, rid).operations[0].files[0].lfn
    '/demo/f'
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from core.db import Schema, UTCDateTime, utcnow, write_transaction
from core.exceptions import InvalidArgumentError, NotFoundError
from core.in_values import in_values

metadata = sa.MetaData()

rms_requests = sa.Table(
    "rms_requests", metadata,
    sa.Column("request_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("owner", sa.String(64), nullable=False),
    sa.Column("owner_group", sa.String(64), nullable=False),
    sa.Column("vo", sa.String(64), nullable=True),
    sa.Column("job_id", sa.Integer, nullable=True, index=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("created", UTCDateTime, nullable=False),
    sa.Column("last_update", UTCDateTime, nullable=False),
    sa.Column("not_before", UTCDateTime, nullable=False),
    sa.Column("claimed_by", sa.String(128), nullable=True),
    sa.Index("ix_rms_requests_status_not_before", "status", "not_before"),
    mysql_engine="InnoDB", mysql_charset="utf8mb4",
)

rms_operations = sa.Table(
    "rms_operations", metadata,
    sa.Column("operation_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("request_id", sa.Integer,
              sa.ForeignKey("rms_requests.request_id", ondelete="CASCADE"), nullable=False,
              index=True),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("type", sa.String(32), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("target_se", sa.String(1024), nullable=False, default=""),
    sa.Column("source_se", sa.String(255), nullable=False, default=""),
    sa.Column("error", sa.Text, nullable=True),
    mysql_engine="InnoDB", mysql_charset="utf8mb4",
)

rms_files = sa.Table(
    "rms_files", metadata,
    sa.Column("file_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("operation_id", sa.Integer,
              sa.ForeignKey("rms_operations.operation_id", ondelete="CASCADE"),
              nullable=False, index=True),
    sa.Column("lfn", sa.String(1024), nullable=False),
    sa.Column("pfn", sa.String(2048), nullable=False, default=""),
    sa.Column("size", sa.BigInteger, nullable=True),
    sa.Column("checksum", sa.String(16), nullable=True),
    sa.Column("guid", sa.String(64), nullable=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("error", sa.Text, nullable=True),
    mysql_engine="InnoDB", mysql_charset="utf8mb4",
)

REQUEST_SCHEMA = Schema("RequestManagement", metadata, migrations=[])

WAITING, ASSIGNED, DONE, FAILED, CANCELED = "Waiting", "Assigned", "Done", "Failed", "Canceled"
FINAL = frozenset({DONE, FAILED, CANCELED})


@dataclass
class NewOperation:
    type: str
    target_se: str
    source_se: str
    #: ``[{"LFN", "PFN", "Size", "Checksum", "GUID"}]``
    files: list[dict[str, Any]]


@dataclass
class NewRequest:
    name: str
    owner: str
    owner_group: str
    vo: str | None
    job_id: int | None
    operations: list[NewOperation]


@dataclass
class FileRow:
    file_id: int
    lfn: str
    pfn: str
    size: int | None
    checksum: str | None
    guid: str | None
    status: str
    attempts: int
    error: str | None


@dataclass
class OperationRow:
    operation_id: int
    type: str
    status: str
    target_se: str
    source_se: str
    error: str | None
    files: list[FileRow] = field(default_factory=list)

    @property
    def target_ses(self) -> list[str]:
        return [s for s in self.target_se.split(",") if s]


@dataclass
class RequestRow:
    request_id: int
    name: str
    owner: str
    owner_group: str
    vo: str | None
    job_id: int | None
    status: str
    attempts: int
    error: str | None
    created: datetime
    last_update: datetime
    not_before: datetime
    operations: list[OperationRow] = field(default_factory=list)


def insert_request(engine: Engine, req: NewRequest, not_before: datetime | None = None) -> int:
    """Store a request and its operations and files in one transaction; returns its ID."""
    now = utcnow()
    with write_transaction(engine) as conn:
        rid = conn.execute(sa.insert(rms_requests).values(
            name=req.name, owner=req.owner, owner_group=req.owner_group, vo=req.vo,
            job_id=req.job_id, status=WAITING, attempts=0, created=now, last_update=now,
            not_before=not_before or now)).inserted_primary_key[0]  # type: ignore[index]
        for position, op in enumerate(req.operations):
            oid = conn.execute(sa.insert(rms_operations).values(
                request_id=rid, position=position, type=op.type, status=WAITING,
                target_se=op.target_se, source_se=op.source_se)).inserted_primary_key[0]  # type: ignore[index]
            if op.files:
                conn.execute(sa.insert(rms_files), [
                    {"operation_id": oid, "lfn": f["LFN"], "pfn": f.get("PFN") or "",
                     "size": f.get("Size"), "checksum": f.get("Checksum"),
                     "guid": f.get("GUID"), "status": WAITING, "attempts": 0}
                    for f in op.files])
    return int(rid)


def _load(conn: sa.Connection, ids: Sequence[int]) -> list[RequestRow]:
    if not ids:
        return []
    rows = conn.execute(sa.select(rms_requests).where(in_values(rms_requests.c.request_id, ids))
                        .order_by(rms_requests.c.request_id)).mappings().all()
    requests = {r["request_id"]: RequestRow(
        r["request_id"], r["name"], r["owner"], r["owner_group"], r["vo"], r["job_id"],
        r["status"], r["attempts"], r["error"], r["created"], r["last_update"],
        r["not_before"]) for r in rows}
    ops = conn.execute(sa.select(rms_operations)
                       .where(in_values(rms_operations.c.request_id, requests))
                       .order_by(rms_operations.c.request_id, rms_operations.c.position)
                       ).mappings().all()
    by_op: dict[int, OperationRow] = {}
    for o in ops:
        op = OperationRow(o["operation_id"], o["type"], o["status"], o["target_se"],
                          o["source_se"], o["error"])
        by_op[op.operation_id] = op
        requests[o["request_id"]].operations.append(op)
    if by_op:
        for f in conn.execute(sa.select(rms_files)
                              .where(in_values(rms_files.c.operation_id, by_op))
                              .order_by(rms_files.c.file_id)).mappings():
            by_op[f["operation_id"]].files.append(FileRow(
                f["file_id"], f["lfn"], f["pfn"], f["size"], f["checksum"], f["guid"],
                f["status"], f["attempts"], f["error"]))
    return list(requests.values())


def get_request(engine: Engine, request_id: int) -> RequestRow:
    with engine.connect() as conn:
        found = _load(conn, [request_id])
    if not found:
        raise NotFoundError(f"request {request_id} does not exist")
    return found[0]


def find_requests(engine: Engine, *, owner: str | None = None, job_ids: Sequence[int] = (),
                  status: str | None = None, limit: int = 1000) -> list[RequestRow]:
    query = sa.select(rms_requests.c.request_id).order_by(rms_requests.c.request_id)
    if owner is not None:
        query = query.where(rms_requests.c.owner == owner)
    if job_ids:
        query = query.where(in_values(rms_requests.c.job_id, job_ids))
    if status is not None:
        query = query.where(rms_requests.c.status == status)
    with engine.connect() as conn:
        ids = conn.execute(query.limit(limit)).scalars().all()
        return _load(conn, list(ids))


def claim(engine: Engine, instance: str, limit: int, stale_after: timedelta,
          now: datetime | None = None) -> list[RequestRow]:
    """Take up to ``limit`` due requests: Waiting with ``not_before`` passed, or Assigned to
    an agent that has not saved them for ``stale_after`` (it died). Each is re-checked in the
    UPDATE, so two agents never take the same request."""
    now = now or utcnow()
    r = rms_requests.c
    due = sa.or_(sa.and_(r.status == WAITING, r.not_before <= now),
                 sa.and_(r.status == ASSIGNED, r.last_update <= now - stale_after))
    taken: list[int] = []
    with write_transaction(engine) as conn:
        candidates = conn.execute(sa.select(r.request_id, r.status).where(due)
                                  .order_by(r.not_before, r.request_id).limit(limit)).all()
        for rid, status in candidates:
            done = conn.execute(sa.update(rms_requests).where(
                r.request_id == rid, r.status == status, due).values(
                status=ASSIGNED, claimed_by=instance, last_update=now)).rowcount
            if done:
                taken.append(rid)
        return _load(conn, taken)


def save_outcome(engine: Engine, request: RequestRow) -> None:
    """Store the statuses, errors and attempts of ``request``, its operations and files."""
    now = utcnow()
    with write_transaction(engine) as conn:
        conn.execute(sa.update(rms_requests).where(
            rms_requests.c.request_id == request.request_id,
            rms_requests.c.status != CANCELED).values(
            status=request.status, attempts=request.attempts, error=request.error,
            not_before=request.not_before, last_update=now, claimed_by=None))
        for op in request.operations:
            conn.execute(sa.update(rms_operations).where(
                rms_operations.c.operation_id == op.operation_id).values(
                status=op.status, error=op.error))
            for f in op.files:
                conn.execute(sa.update(rms_files).where(
                    rms_files.c.file_id == f.file_id).values(
                    status=f.status, attempts=f.attempts, error=f.error))


def cancel(engine: Engine, request_id: int) -> bool:
    """Cancel a request that is not final; False when it already was."""
    r = rms_requests.c
    with write_transaction(engine) as conn:
        return bool(conn.execute(sa.update(rms_requests).where(
            r.request_id == request_id, r.status.not_in(list(FINAL))).values(
            status=CANCELED, last_update=utcnow())).rowcount)


def request_ids_named(engine: Engine, name: str, owner: str | None = None) -> list[int]:
    """IDs of the requests called ``name`` (of ``owner`` when given)."""
    query = sa.select(rms_requests.c.request_id).where(rms_requests.c.name == name)
    if owner is not None:
        query = query.where(rms_requests.c.owner == owner)
    with engine.connect() as conn:
        return list(conn.execute(query.order_by(rms_requests.c.request_id)).scalars())


def delete_request(engine: Engine, request_id: int) -> bool:
    """Remove a request with its operations and files; False when there was none. A request
    an agent is executing (Assigned) is not removed (cancel it first)."""
    with write_transaction(engine) as conn:
        status = conn.execute(sa.select(rms_requests.c.status).where(
            rms_requests.c.request_id == request_id)).scalar()
        if status is None:
            return False
        if status == ASSIGNED:
            raise InvalidArgumentError(f"request {request_id} is being executed: cancel it "
                                       "first")
        ops = sa.select(rms_operations.c.operation_id).where(
            rms_operations.c.request_id == request_id)
        conn.execute(sa.delete(rms_files).where(rms_files.c.operation_id.in_(ops)))
        conn.execute(sa.delete(rms_operations).where(rms_operations.c.request_id == request_id))
        conn.execute(sa.delete(rms_requests).where(rms_requests.c.request_id == request_id))
    return True
