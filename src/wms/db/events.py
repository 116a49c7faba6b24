"""Queries on the event tables (:mod:`wms.db.scheduling_tables`). No rules here.

Example::

    >>> from datetime import datetime, timezone
    >>> from core.db import init_schema, make_engine
    >>> from wms.db.schema import WMS_SCHEMA
    >>> engine = make_engine("sqlite://"); _ = init_schema(engine, WMS_SCHEMA)
    >>> now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    >>> with engine.begin() as conn:
    ...     eid = insert_event(conn, name="an00h000", description="analysis 00UTC",
    ...                        owner="op", owner_group="ops", vo="demo", group_owned=False,
    ...                        subscriber_groups=[], now=now)
    ...     event_by_name(conn, "an00h000").event_id == eid
    True
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, CursorResult, Row

from wms.db.scheduling_tables import (
    event_notifications,
    event_releases,
    event_subscriptions,
    events,
)
from wms.db.tables import jobs

PENDING, DONE = "Pending", "Done"


def _pk(result: CursorResult[Any]) -> int:
    key = result.inserted_primary_key
    if key is None:  # pragma: no cover - INSERT of one row always has it
        raise RuntimeError("no primary key returned")
    return int(key[0])


def insert_event(conn: Connection, *, name: str, description: str, owner: str,
                 owner_group: str, vo: str, group_owned: bool, subscriber_groups: Sequence[str],
                 now: datetime) -> int:
    result = conn.execute(sa.insert(events).values(
        name=name, description=description, owner=owner, owner_group=owner_group, vo=vo,
        group_owned=group_owned, subscriber_groups=json.dumps(sorted(subscriber_groups)),
        created=now, notifications=0))
    return _pk(result)


def event_by_name(conn: Connection, name: str, *, for_update: bool = False) -> Row[Any] | None:
    query = sa.select(events).where(events.c.name == name)
    if for_update and conn.dialect.name != "sqlite":
        query = query.with_for_update()
    return conn.execute(query).first()


def event_by_id(conn: Connection, event_id: int) -> Row[Any] | None:
    return conn.execute(sa.select(events).where(events.c.event_id == event_id)).first()


def delete_event(conn: Connection, event_id: int) -> None:
    """The event and everything attached (explicit, not only ON DELETE CASCADE)."""
    notes = sa.select(event_notifications.c.notification_id).where(
        event_notifications.c.event_id == event_id)
    conn.execute(sa.delete(event_releases).where(event_releases.c.notification_id.in_(notes)))
    conn.execute(sa.delete(event_notifications).where(event_notifications.c.event_id == event_id))
    conn.execute(sa.delete(event_subscriptions).where(event_subscriptions.c.event_id == event_id))
    conn.execute(sa.delete(events).where(events.c.event_id == event_id))


def list_events(conn: Connection, vo: str | None) -> list[Row[Any]]:
    query = sa.select(events).order_by(events.c.name)
    if vo is not None:
        query = query.where(events.c.vo == vo)
    return list(conn.execute(query))


def standby_counts(conn: Connection, event_ids: Sequence[int]) -> dict[int, int]:
    """event_id -> subscriptions whose job is in Standby now (the live subscribers)."""
    if not event_ids:
        return {}
    subs = event_subscriptions
    query = (sa.select(subs.c.event_id, sa.func.count())
             .select_from(subs.join(jobs, jobs.c.job_id == subs.c.job_id))
             .where(subs.c.event_id.in_(list(event_ids)), subs.c.active.is_(True),
                    jobs.c.status == "Standby")
             .group_by(subs.c.event_id))
    return {int(e): int(n) for e, n in conn.execute(query)}


def add_subscriptions(conn: Connection, event_id: int, templates: Mapping[int, str], *,
                      owner: str, owner_group: str, vo: str, now: datetime) -> None:
    """One subscription per standby job (job_id -> the JDL its copies are made from)."""
    if templates:
        conn.execute(sa.insert(event_subscriptions), [
            {"event_id": event_id, "job_id": job_id, "jdl": jdl, "owner": owner,
             "owner_group": owner_group, "vo": vo, "active": True, "created": now,
             "releases": 0} for job_id, jdl in templates.items()])


def subscription_of_job(conn: Connection, job_id: int) -> Row[Any] | None:
    """The subscription whose standby job, or one of whose released jobs, is ``job_id``."""
    subs = event_subscriptions
    row = conn.execute(sa.select(subs).where(subs.c.job_id == job_id)).first()
    if row is not None:
        return row
    released = sa.select(event_releases.c.sub_id).where(event_releases.c.released_job == job_id)
    return conn.execute(sa.select(subs).where(subs.c.sub_id.in_(released))).first()


def end_subscriptions(conn: Connection, reasons: Mapping[int, str], now: datetime) -> None:
    """Deactivate subscriptions (sub_id -> why); one statement for the lot."""
    if not reasons:
        return
    subs = event_subscriptions
    statement = (sa.update(subs).where(subs.c.sub_id == sa.bindparam("b_sub"))
                 .values(active=False, ended=now, end_reason=sa.bindparam("b_reason")))
    conn.execute(statement, [{"b_sub": sub, "b_reason": reason[:255]}
                             for sub, reason in reasons.items()])


def max_sub_id(conn: Connection, event_id: int) -> int:
    subs = event_subscriptions
    value = conn.execute(sa.select(sa.func.max(subs.c.sub_id))
                         .where(subs.c.event_id == event_id)).scalar()
    return int(value or 0)


def insert_notification(conn: Connection, *, event_id: int, sender: str, sender_group: str,
                        environment: Mapping[str, str], max_sub: int, now: datetime) -> int:
    result = conn.execute(sa.insert(event_notifications).values(
        event_id=event_id, sender=sender, sender_group=sender_group, time=now,
        environment=json.dumps(dict(environment), sort_keys=True), max_sub_id=max_sub,
        status=PENDING, released=0))
    conn.execute(sa.update(events).where(events.c.event_id == event_id).values(
        last_notified=now, notifications=events.c.notifications + 1))
    return _pk(result)


def notification(conn: Connection, notification_id: int) -> Row[Any] | None:
    return conn.execute(sa.select(event_notifications).where(
        event_notifications.c.notification_id == notification_id)).first()


def unreleased_subscriptions(conn: Connection, note: Row[Any], limit: int) -> list[Row[Any]]:
    """Active subscriptions the notification concerns and has not released yet, locked
    (``SKIP LOCKED`` on MariaDB: another worker's rows are left to it)."""
    subs = event_subscriptions
    done = sa.select(event_releases.c.sub_id).where(
        event_releases.c.notification_id == note.notification_id,
        event_releases.c.sub_id == subs.c.sub_id)
    query = (sa.select(subs.c.sub_id, subs.c.job_id, subs.c.jdl, subs.c.owner,
                       subs.c.owner_group, subs.c.vo)
             .where(subs.c.event_id == note.event_id, subs.c.active.is_(True),
                    subs.c.sub_id <= note.max_sub_id, ~sa.exists(done))
             .order_by(subs.c.sub_id).limit(limit))
    if conn.dialect.name != "sqlite":
        query = query.with_for_update(skip_locked=True)
    return list(conn.execute(query))


def add_releases(conn: Connection, notification_id: int,
                 rows: Sequence[tuple[int, int, int]], now: datetime) -> None:
    """(sub_id, released job, new standby job) records; the primary key refuses a second
    release of a subscription by the same notification (IntegrityError)."""
    if rows:
        conn.execute(sa.insert(event_releases), [
            {"notification_id": notification_id, "sub_id": sub, "released_job": released,
             "standby_job": standby, "time": now} for sub, released, standby in rows])


def rearm(conn: Connection, new_jobs: Mapping[int, int]) -> None:
    """sub_id -> its new standby job; the release counter goes up. On MariaDB one
    UPDATE ... CASE per 1000 subscriptions (an UPDATE per row costs a round trip each)."""
    subs = event_subscriptions
    pairs = list(new_jobs.items())
    if conn.dialect.name == "sqlite":  # in-process: executemany is cheaper than a big CASE
        statement = (sa.update(subs).where(subs.c.sub_id == sa.bindparam("b_sub"))
                     .values(job_id=sa.bindparam("b_job"), releases=subs.c.releases + 1))
        conn.execute(statement, [{"b_sub": s, "b_job": j} for s, j in pairs])
        return
    for start in range(0, len(pairs), 1000):
        chunk = dict(pairs[start:start + 1000])
        conn.execute(sa.update(subs).where(subs.c.sub_id.in_(list(chunk)))
                     .values(job_id=sa.case(chunk, value=subs.c.sub_id),
                             releases=subs.c.releases + 1))


def finish_notification(conn: Connection, notification_id: int, now: datetime) -> int:
    """Mark it Done with its release count; returns the count."""
    count = int(conn.execute(sa.select(sa.func.count()).select_from(event_releases).where(
        event_releases.c.notification_id == notification_id)).scalar_one())
    conn.execute(sa.update(event_notifications)
                 .where(event_notifications.c.notification_id == notification_id)
                 .values(status=DONE, released=count, finished=now))
    return count


def pending_notifications(conn: Connection, before: datetime) -> list[int]:
    """Notifications still Pending that were made before ``before``, oldest first."""
    query = (sa.select(event_notifications.c.notification_id)
             .where(event_notifications.c.status == PENDING,
                    event_notifications.c.time <= before)
             .order_by(event_notifications.c.notification_id))
    return [int(x) for x in conn.execute(query).scalars()]


def history(conn: Connection, event_id: int, limit: int) -> list[Row[Any]]:
    query = (sa.select(event_notifications)
             .where(event_notifications.c.event_id == event_id)
             .order_by(event_notifications.c.notification_id.desc()).limit(limit))
    return list(conn.execute(query))


def released_jobs(conn: Connection, notification_ids: Sequence[int]) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    if notification_ids:
        query = (sa.select(event_releases.c.notification_id, event_releases.c.released_job)
                 .where(event_releases.c.notification_id.in_(list(notification_ids)))
                 .order_by(event_releases.c.released_job))
        for note, job in conn.execute(query):
            out.setdefault(int(note), []).append(int(job))
    return out


def subscriptions(conn: Connection, event_id: int, *, owner: str | None = None
                  ) -> list[Row[Any]]:
    subs = event_subscriptions
    query = (sa.select(subs.c.sub_id, subs.c.job_id, subs.c.owner, subs.c.owner_group,
                       subs.c.active, subs.c.created, subs.c.ended, subs.c.end_reason,
                       subs.c.releases, jobs.c.status)
             .select_from(subs.outerjoin(jobs, jobs.c.job_id == subs.c.job_id))
             .where(subs.c.event_id == event_id).order_by(subs.c.sub_id))
    if owner is not None:
        query = query.where(subs.c.owner == owner)
    return list(conn.execute(query))
