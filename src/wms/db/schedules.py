"""Queries on the schedule tables (:mod:`wms.db.scheduling_tables`). No rules here.

Example::

    >>> from datetime import datetime, timezone
    >>> from core.db import init_schema, make_engine
    >>> from wms.db.schema import WMS_SCHEMA
    >>> engine = make_engine("sqlite://"); _ = init_schema(engine, WMS_SCHEMA)
    >>> now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    >>> with engine.begin() as conn:
    ...     sid = insert_schedule(conn, dict(name="daily", owner="al", owner_group="g",
    ...         vo="v", jdl="[]", every_seconds=60, cron=None, timezone="UTC",
    ...         overlap="skip", catch_up="none", max_runs=None, until=None, start=now,
    ...         next_slot=now, status="Active", runs=0, created=now))
    ...     schedule(conn, sid).name
    'daily'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, CursorResult, Row

from wms.db.scheduling_tables import schedule_runs, schedules
from wms.db.tables import jobs


def _pk(result: CursorResult[Any]) -> int:
    key = result.inserted_primary_key
    if key is None:  # pragma: no cover - INSERT of one row always has it
        raise RuntimeError("no primary key returned")
    return int(key[0])


def insert_schedule(conn: Connection, values: Mapping[str, Any]) -> int:
    result = conn.execute(sa.insert(schedules).values(**values))
    return _pk(result)


def schedule(conn: Connection, schedule_id: int, *, for_update: bool = False
             ) -> Row[Any] | None:
    query = sa.select(schedules).where(schedules.c.schedule_id == schedule_id)
    if for_update and conn.dialect.name != "sqlite":
        query = query.with_for_update()
    return conn.execute(query).first()


def schedule_by_name(conn: Connection, owner: str, name: str) -> Row[Any] | None:
    return conn.execute(sa.select(schedules).where(schedules.c.owner == owner,
                                                   schedules.c.name == name)).first()


def list_schedules(conn: Connection, *, owner: str | None = None,
                   vo: str | None = None) -> list[Row[Any]]:
    query = sa.select(schedules).order_by(schedules.c.owner, schedules.c.name)
    if owner is not None:
        query = query.where(schedules.c.owner == owner)
    if vo is not None:
        query = query.where(schedules.c.vo == vo)
    return list(conn.execute(query))


def update_schedule(conn: Connection, schedule_id: int, **values: Any) -> None:
    conn.execute(sa.update(schedules).where(schedules.c.schedule_id == schedule_id)
                 .values(**values))


def delete_schedule(conn: Connection, schedule_id: int) -> None:
    conn.execute(sa.delete(schedule_runs).where(schedule_runs.c.schedule_id == schedule_id))
    conn.execute(sa.delete(schedules).where(schedules.c.schedule_id == schedule_id))


def due(conn: Connection, now: datetime, limit: int = 1000) -> list[int]:
    """Active schedules whose next slot has come."""
    query = (sa.select(schedules.c.schedule_id)
             .where(schedules.c.status == "Active", schedules.c.next_slot <= now)
             .order_by(schedules.c.next_slot).limit(limit))
    return [int(x) for x in conn.execute(query).scalars()]


def with_queued_runs(conn: Connection, limit: int = 1000) -> list[int]:
    query = (sa.select(schedule_runs.c.schedule_id).distinct()
             .where(schedule_runs.c.state == "Queued").limit(limit))
    return [int(x) for x in conn.execute(query).scalars()]


def add_run(conn: Connection, schedule_id: int, slot: datetime, state: str, now: datetime, *,
            job_id: int | None = None, note: str = "") -> int:
    """A run row; the unique key (schedule, slot) refuses a second one (IntegrityError)."""
    result = conn.execute(sa.insert(schedule_runs).values(
        schedule_id=schedule_id, slot=slot, state=state, job_id=job_id, note=note[:255],
        created=now))
    return _pk(result)


def set_run(conn: Connection, run_id: int, **values: Any) -> None:
    conn.execute(sa.update(schedule_runs).where(schedule_runs.c.run_id == run_id)
                 .values(**values))


def runs(conn: Connection, schedule_id: int, *, limit: int | None = None,
         states: Sequence[str] | None = None, oldest_first: bool = False) -> list[Row[Any]]:
    """Runs with their job's status (newest first unless ``oldest_first``)."""
    order = schedule_runs.c.slot if oldest_first else schedule_runs.c.slot.desc()
    query = (sa.select(schedule_runs, jobs.c.status.label("job_status"),
                       jobs.c.minor_status.label("job_minor_status"))
             .select_from(schedule_runs.outerjoin(jobs, jobs.c.job_id == schedule_runs.c.job_id))
             .where(schedule_runs.c.schedule_id == schedule_id).order_by(order))
    if states is not None:
        query = query.where(schedule_runs.c.state.in_(list(states)))
    if limit is not None:
        query = query.limit(limit)
    return list(conn.execute(query))


def unfinished_runs(conn: Connection, schedule_id: int, final: Sequence[str]) -> list[Row[Any]]:
    """Submitted runs whose job is not final (a removed job counts as final)."""
    query = (sa.select(schedule_runs.c.run_id, schedule_runs.c.job_id, jobs.c.status)
             .select_from(schedule_runs.join(jobs, jobs.c.job_id == schedule_runs.c.job_id))
             .where(schedule_runs.c.schedule_id == schedule_id,
                    schedule_runs.c.state == "Submitted", jobs.c.status.not_in(list(final))))
    return list(conn.execute(query))
