"""Pilot bookkeeping: statuses, registration, the jobs a pilot ran, pilot output.

Pilot statuses are DIRAC's: Submitted, Waiting, Running, Done, Failed, Aborted, Deleted. A pilot
that registers (from the worker node) becomes Running; the site director updates the others from
its computing element. Final statuses are not left again (a late report cannot resurrect a
pilot).

Example::

    >>> sorted(FINAL_PILOT)
    ['Aborted', 'Deleted', 'Done', 'Failed']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine

from core.db import retry_conflicts, utcnow, write_transaction
from core.exceptions import InvalidArgumentError, NotAuthorizedError, NotFoundError
from core.security.identity import Identity
from wms.db import jobs as jobs_db
from wms.db import outbox
from wms.db import pilots as pilots_db
from wms.logic.job_policy import may_manage

PILOT_STATUSES = ("Submitted", "Waiting", "Running", "Done", "Failed", "Aborted", "Deleted")
FINAL_PILOT = frozenset({"Done", "Failed", "Aborted", "Deleted"})
ACTIVE_PILOT = ("Submitted", "Waiting", "Running")


def check_status(status: str) -> str:
    if status not in PILOT_STATUSES:
        raise InvalidArgumentError(
            f"unknown pilot status {status!r}; use one of {', '.join(PILOT_STATUSES)}")
    return status


#: the length of the pilot_reference column
MAX_REFERENCE = 255


def check_reference(ref: object) -> str:
    """A pilot reference: non-empty printable text of at most 255 characters."""
    if not isinstance(ref, str) or not ref.strip() or not ref.isprintable() \
            or len(ref) > MAX_REFERENCE:
        raise InvalidArgumentError(f"not a pilot reference: {str(ref)[:80]!r}")
    return ref


@retry_conflicts()
def add_pilots(engine: Engine, refs: Sequence[str], *, vo: str, owner_group: str,
               grid_type: str, site: str = "Unknown", ce: str = "Unknown",
               queue: str = "Unknown", stamps: Mapping[str, str] | None = None,
               now: datetime | None = None) -> None:
    for ref in refs:
        check_reference(ref)
    with write_transaction(engine) as conn:
        known = pilots_db.pilot_ids(conn, refs)
        new = [ref for ref in dict.fromkeys(refs) if ref not in known]
        pilots_db.add_pilots(conn, new, vo=vo, owner_group=owner_group, grid_type=grid_type,
                             site=site, ce=ce, queue=queue, now=now or utcnow(),
                             stamps=dict(stamps or {}))


@retry_conflicts()
def set_status(engine: Engine, refs: Sequence[str], status: str, *, reason: str = "",
               now: datetime | None = None, **where: str) -> list[str]:
    """Set the status of the pilots not yet final; returns the references changed."""
    check_status(status)
    now = now or utcnow()
    with write_transaction(engine) as conn:
        info = pilots_db.pilot_info(conn, refs)
        missing = sorted(set(refs) - set(info))
        if missing:
            raise NotFoundError(f"unknown pilot(s) {', '.join(missing)}")
        todo = [ref for ref, row in info.items()
                if row["Status"] not in FINAL_PILOT or row["Status"] == status]
        values: dict[str, Any] = {"status": status, "last_update_time": now}
        if reason:
            values["status_reason"] = reason[:255]
        values.update({k: v for k, v in where.items() if v})
        pilots_db.update_pilots(conn, todo, **values)
        if status in outbox.FINAL_PILOT_STATUSES:  # a pilot record for accounting
            outbox.add(conn, "pilot", [(int(info[ref]["PilotID"]), status) for ref in todo
                                       if info[ref]["Status"] != status], now)
    return sorted(todo)


@retry_conflicts()
def register(engine: Engine, ref: str, info: Mapping[str, Any], *, vo: str, owner_group: str,
             now: datetime | None = None) -> None:
    """A pilot reports from its worker node: it is Running at Site/CE/Queue on Host."""
    check_reference(ref)
    now = now or utcnow()
    where = {"site": str(info.get("Site") or ""), "ce": str(info.get("CE") or ""),
             "queue": str(info.get("Queue") or ""), "host": str(info.get("Host") or "")[:255]}
    with write_transaction(engine) as conn:
        if ref not in pilots_db.pilot_ids(conn, [ref]):  # started outside a site director
            pilots_db.add_pilots(conn, [ref], vo=vo, owner_group=owner_group,
                                 grid_type=str(info.get("GridType") or "Unknown"),
                                 site=where["site"] or "Unknown", ce=where["ce"] or "Unknown",
                                 queue=where["queue"] or "Unknown", now=now)
        pilots_db.update_pilots(conn, [ref], status="Running", last_update_time=now,
                                **{k: v for k, v in where.items() if v})


def owned_job(engine: Engine, ident: Identity, job_id: int) -> int:
    """``job_id`` when ``ident`` may read that job's pilots (its owner, or an administrator)."""
    with engine.connect() as conn:
        row = jobs_db.status_of(conn, [job_id]).get(job_id)
    if row is None:
        raise NotFoundError(f"Job {job_id} not found")
    if not may_manage(ident, owner=row.owner, owner_group=row.owner_group):
        raise NotAuthorizedError(f"{ident.username} may not read job {job_id}")
    return job_id


def job_pilot_output(engine: Engine, ident: Identity, job_id: int) -> dict[str, str]:
    """The output of the last pilot that ran the job: ``{"StdOut": ..., "StdErr": ...}``."""
    owned_job(engine, ident, job_id)
    with engine.connect() as conn:
        refs = pilots_db.pilots_of_job(conn, job_id)
        found = pilots_db.output_of(conn, refs[-1]) if refs else None
    if found is None:
        raise NotFoundError(f"no pilot output for job {job_id} yet")
    return {"StdOut": found[0], "StdErr": found[1]}
