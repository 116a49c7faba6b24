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
from core.exceptions import InvalidArgumentError, NotFoundError
from wms.db import pilots as pilots_db

PILOT_STATUSES = ("Submitted", "Waiting", "Running", "Done", "Failed", "Aborted", "Deleted")
FINAL_PILOT = frozenset({"Done", "Failed", "Aborted", "Deleted"})
ACTIVE_PILOT = ("Submitted", "Waiting", "Running")


def check_status(status: str) -> str:
    if status not in PILOT_STATUSES:
        raise InvalidArgumentError(
            f"unknown pilot status {status!r}; use one of {', '.join(PILOT_STATUSES)}")
    return status


@retry_conflicts()
def add_pilots(engine: Engine, refs: Sequence[str], *, vo: str, owner_group: str,
               grid_type: str, site: str = "Unknown", ce: str = "Unknown",
               queue: str = "Unknown", stamps: Mapping[str, str] | None = None,
               now: datetime | None = None) -> None:
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
    return sorted(todo)


@retry_conflicts()
def register(engine: Engine, ref: str, info: Mapping[str, Any], *, vo: str, owner_group: str,
             now: datetime | None = None) -> None:
    """A pilot reports from its worker node: it is Running at Site/CE/Queue on Host."""
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
