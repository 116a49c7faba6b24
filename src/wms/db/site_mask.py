"""Queries on the site mask (each site's status, ``Active`` or ``Banned``, and its history) and
on the per-site matching limits (running jobs per attribute value, matching delays).

Example::

    >>> from datetime import datetime, timezone
    >>> from core.db import init_schema, make_engine, write_transaction
    >>> from wms.db.schema import WMS_SCHEMA
    >>> engine = make_engine("sqlite://"); _ = init_schema(engine, WMS_SCHEMA)
    >>> now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    >>> with write_transaction(engine) as conn:
    ...     set_site_status(conn, "LCG.CERN.cern", "Banned", author="admin", comment="down",
    ...                     now=now)
    ...     site_statuses(conn)
    {'LCG.CERN.cern': 'Banned'}
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from core.in_values import in_values
from wms.db.tables import JOB_ATTRIBUTES, jobs
from wms.db.tq_tables import site_mask, site_mask_logging, tq_match_delays

ACTIVE = "Active"
BANNED = "Banned"


def set_site_status(conn: Connection, site: str, status: str, *, author: str, comment: str,
                    now: datetime) -> None:
    """Set a site's status (insert or update) and log the change."""
    values = {"status": status, "last_update": now, "author": author[:255], "comment": comment}
    updated = conn.execute(sa.update(site_mask).where(site_mask.c.site == site).values(**values))
    if updated.rowcount == 0:
        conn.execute(sa.insert(site_mask).values(site=site, **values))
    conn.execute(sa.insert(site_mask_logging).values(
        site=site, status=status, update_time=now, author=author[:255], comment=comment))


def site_statuses(conn: Connection, sites: Sequence[str] | None = None,
                  status: str | None = None) -> dict[str, str]:
    """site -> status, for the given sites (known ones only) or all, optionally one status."""
    query = sa.select(site_mask.c.site, site_mask.c.status).order_by(site_mask.c.site)
    if sites is not None:
        if not sites:
            return {}
        query = query.where(in_values(site_mask.c.site, sites))
    if status is not None:
        query = query.where(site_mask.c.status == status)
    return {site: st for site, st in conn.execute(query)}


def site_mask_entries(conn: Connection) -> dict[str, tuple[str, datetime, str]]:
    """site -> (status, last change, comment) of every site in the mask."""
    query = sa.select(site_mask.c.site, site_mask.c.status, site_mask.c.last_update,
                      site_mask.c.comment)
    return {site: (status, when, comment or "") for site, status, when, comment
            in conn.execute(query)}


def site_logging(conn: Connection, sites: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    """site -> its changes, oldest first: status, update_time, author, comment."""
    out: dict[str, list[dict[str, Any]]] = {site: [] for site in sites}
    if not sites:
        return out
    query = (sa.select(site_mask_logging.c.site, site_mask_logging.c.status,
                       site_mask_logging.c.update_time, site_mask_logging.c.author,
                       site_mask_logging.c.comment)
             .where(in_values(site_mask_logging.c.site, sites))
             .order_by(site_mask_logging.c.update_time, site_mask_logging.c.id))
    for row in conn.execute(query).mappings():
        out[row["site"]].append({k: row[k] for k in ("status", "update_time", "author",
                                                     "comment")})
    return out


# -- per-site matching limits ------------------------------------------------------------------


def running_counts(conn: Connection, site: str, attribute: str, values: Sequence[str],
                   statuses: Sequence[str]) -> dict[str, int]:
    """Jobs at ``site`` in ``statuses`` per value of ``attribute`` (only ``values``)."""
    column = JOB_ATTRIBUTES[attribute]
    query = (sa.select(column, sa.func.count())
             .where(jobs.c.site == site, jobs.c.status.in_(list(statuses)),
                    column.in_(list(values)))
             .group_by(column))
    return {str(value): int(count) for value, count in conn.execute(query)}


def active_delays(conn: Connection, site: str, now: datetime) -> dict[str, list[str]]:
    """attribute -> values that may not be matched at ``site`` yet."""
    out: dict[str, list[str]] = {}
    query = sa.select(tq_match_delays.c.attribute, tq_match_delays.c.value).where(
        tq_match_delays.c.site == site, tq_match_delays.c.until > now)
    for attribute, value in conn.execute(query):
        out.setdefault(attribute, []).append(value)
    return out


def set_delays(conn: Connection, site: str, delays: Sequence[tuple[str, str, datetime]]) -> None:
    """Record (attribute, value, until) delays at ``site`` (replacing older ones)."""
    for attribute, value, _ in delays:
        conn.execute(sa.delete(tq_match_delays).where(
            tq_match_delays.c.site == site, tq_match_delays.c.attribute == attribute,
            tq_match_delays.c.value == value))
    if delays:
        conn.execute(sa.insert(tq_match_delays), [
            {"site": site, "attribute": a, "value": v, "until": u} for a, v, u in delays])
