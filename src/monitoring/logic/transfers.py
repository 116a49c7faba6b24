"""Data-operation records (DIRAC's ``DataOperation`` accounting): one per file of each finished
``ReplicateAndRegister`` / ``PutAndRegister`` data-management request (:func:`ship`), and one
per attempt of the transfer system's transfers, with its duration (:func:`ship_xfer`).

The RequestManagement tables are read incrementally, in (last update, request id) order after
a stored watermark (``mon_watermarks``), skipping requests finished less than
:data:`SETTLE_SECONDS` ago so that a transaction committing late is not passed over. Each
record's id is the RMS file id, so a re-read never doubles a record. Other components (a
transfer service) may send their own records through ``Monitoring/Monitoring.put``.

``TransferTime`` is unknown for these requests (the RMS keeps no per-file timing) and stays 0;
``Protocol`` is the first protocol configured for the destination storage element.

Example::

    >>> sorted(TRANSFERS)
    ['PutAndRegister', 'ReplicateAndRegister']
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from core.config.schema import Config
from core.db import utcnow, write_transaction
from dms.db.rms import DONE, FINAL, rms_files, rms_operations, rms_requests
from monitoring.db.base import Backend, epoch, from_epoch
from monitoring.db.tables import watermarks
from monitoring.logic import accounting
from monitoring.types import TYPES

log = logging.getLogger("pilotwms.monitoring.transfers")
TRANSFERS = frozenset({"ReplicateAndRegister", "PutAndRegister"})
SETTLE_SECONDS = 30
NAME = "rms"


def _watermark_of(state: Engine, name: str) -> tuple[int, int]:
    with state.connect() as conn:
        row = conn.execute(sa.select(watermarks.c.ts, watermarks.c.ref)
                           .where(watermarks.c.name == name)).first()
    return (int(row[0]), int(row[1])) if row else (0, 0)


def _advance_to(state: Engine, name: str, ts: int, ref: int) -> None:
    with write_transaction(state) as conn:
        if not conn.execute(sa.update(watermarks).where(watermarks.c.name == name)
                            .values(ts=ts, ref=ref)).rowcount:
            conn.execute(sa.insert(watermarks).values(name=name, ts=ts, ref=ref))


def _protocol(config: Config, se: str) -> str:
    conf = config.resources.storage_elements.get(se)
    return conf.protocols[0].plugin if conf is not None and conf.protocols else ""


def ship(backend: Backend, state: Engine, rms: Engine, config: Config, *,
         batch: int = 1000) -> int:
    """Records of the next finished requests; returns how many were stored."""
    ts, ref = _watermark_of(state, NAME)
    last = from_epoch(ts)
    until = utcnow() - timedelta(seconds=SETTLE_SECONDS)
    r, o, f = rms_requests, rms_operations, rms_files
    with rms.connect() as conn:
        requests = conn.execute(
            sa.select(r.c.request_id, r.c.owner, r.c.owner_group, r.c.last_update)
            .where(r.c.status.in_(list(FINAL)), r.c.last_update <= until,
                   sa.or_(r.c.last_update > last,
                          sa.and_(r.c.last_update == last, r.c.request_id > ref)))
            .order_by(r.c.last_update, r.c.request_id).limit(batch)).all()
        if not requests:
            return 0
        by_id = {row.request_id: row for row in requests}
        files = conn.execute(
            sa.select(o.c.request_id, o.c.type, o.c.source_se, o.c.target_se, f.c.file_id,
                      f.c.size, f.c.status)
            .select_from(o.join(f, f.c.operation_id == o.c.operation_id))
            .where(o.c.request_id.in_(list(by_id)), o.c.type.in_(list(TRANSFERS)))).all()
    records: list[dict[str, Any]] = []
    for row in files:
        req = by_id[row.request_id]
        ok = row.status == DONE
        records.append({
            "OperationID": f"rms-{row.file_id}", "OperationType": row.type,
            "User": req.owner, "UserGroup": req.owner_group, "Source": row.source_se,
            "Destination": row.target_se, "Protocol": _protocol(config, row.target_se),
            "FinalStatus": row.status, "TransferSize": (row.size or 0) if ok else 0,
            "TransferOK": int(ok), "TransferTotal": 1, "RegistrationOK": int(ok),
            "RegistrationTotal": 1, "EndTime": req.last_update})
    stored = accounting.store(backend, state, TYPES["DataOperation"], records)
    newest = requests[-1]
    _advance_to(state, NAME, epoch(newest.last_update), int(newest.request_id))
    if stored:
        log.info("accounting: %d data operation record(s) stored", stored)
    return stored


XFER = "xfer"


def ship_xfer(backend: Backend, state: Engine, xfer: Engine, *, batch: int = 1000) -> int:
    """Records of the transfer system's attempts (``xfer_attempts``, append-only), read in id
    order after the watermark; reading stops at the first attempt that ended less than
    :data:`SETTLE_SECONDS` ago, so none committed late is passed over."""
    from transfer.db.tables import associations, attempts, transfers

    _, last = _watermark_of(state, XFER)
    cutoff = utcnow() - timedelta(seconds=SETTLE_SECONDS)
    a, t, assoc = attempts, transfers, associations
    with xfer.connect() as conn:
        rows = conn.execute(
            sa.select(a.c.attempt_id, a.c.started, a.c.ended, a.c.ok, a.c.bytes,
                      t.c.owner, t.c.owner_group, t.c.direction, t.c.source_kind,
                      t.c.association, assoc.c.protocol)
            .select_from(a.join(t, t.c.transfer_id == a.c.transfer_id)
                         .outerjoin(assoc, assoc.c.association_id == t.c.association_id))
            .where(a.c.attempt_id > last).order_by(a.c.attempt_id).limit(batch)).all()
    settled = []
    for row in rows:
        if row.ended > cutoff:
            break
        settled.append(row)
    if not settled:
        return 0
    records = []
    for row in settled:
        put = row.direction == "put"
        records.append({
            "OperationID": f"xfer-{row.attempt_id}", "OperationType": f"Transfer-{row.direction}",
            "User": row.owner, "UserGroup": row.owner_group,
            "Source": row.source_kind if put else row.association,
            "Destination": row.association if put else "spool",
            "Protocol": row.protocol or "", "FinalStatus": "Done" if row.ok else "Failed",
            "TransferSize": row.bytes or 0,
            "TransferTime": max(0.0, (row.ended - row.started).total_seconds()),
            "TransferOK": int(bool(row.ok)), "TransferTotal": 1, "EndTime": row.ended})
    stored = accounting.store(backend, state, TYPES["DataOperation"], records)
    _advance_to(state, XFER, 0, int(settled[-1].attempt_id))
    log.info("accounting: %d transfer attempt record(s) stored", stored)
    return stored
