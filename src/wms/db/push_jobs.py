"""Push mode's own table: one row per job a push agent matched and has not finished with.

The row is the agent's memory (a restarted agent carries on from it): where the job is in its
push life (``phase``: ``New`` matched, ``Submitted`` in the batch queue, ``Running``, ``Killed``
waiting for the batch job to go), which site/CE/queue it was matched for, the batch reference,
the remote job directory and when the next heartbeat is due. Phase changes are compare-and-set
(:func:`set_phase` with the phase the caller saw), so two agents never both act on one step.

Example::

    >>> push_jobs.name, [c.name for c in push_jobs.primary_key]
    ('push_jobs', ['job_id'])
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from core.db import UTCDateTime
from wms.db.tables import JobIdType, metadata

__all__ = ["PushRow", "add_job", "count_attempt", "forget", "in_flight", "push_jobs", "rows",
           "set_next_beat", "set_phase"]

PHASES = ("New", "Submitted", "Running", "Killed")

push_jobs = sa.Table(
    "push_jobs",
    metadata,
    sa.Column("job_id", JobIdType, primary_key=True, autoincrement=False),
    sa.Column("site", sa.String(128), nullable=False),
    sa.Column("ce", sa.String(128), nullable=False),
    sa.Column("queue", sa.String(128), nullable=False),
    sa.Column("phase", sa.String(16), nullable=False, server_default="New"),
    sa.Column("batch_ref", sa.String(255), nullable=False, server_default=""),
    sa.Column("remote_dir", sa.String(1024), nullable=False, server_default=""),
    sa.Column("agent", sa.String(255), nullable=False, server_default=""),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_beat", UTCDateTime, nullable=False),
    sa.Column("created", UTCDateTime, nullable=False),
    sa.Column("updated", UTCDateTime, nullable=False),
    sa.Index("ix_push_jobs_queue", "site", "ce", "queue"),
)


@dataclass(frozen=True)
class PushRow:
    job_id: int
    site: str
    ce: str
    queue: str
    phase: str
    batch_ref: str
    remote_dir: str
    next_beat: datetime
    #: the agent instance that matched it (New) or submitted it
    agent: str = ""
    #: shipping attempts so far
    attempts: int = 0


def add_job(conn: Connection, job_id: int, site: str, ce: str, queue: str, *, agent: str,
            now: datetime) -> None:
    conn.execute(sa.insert(push_jobs).values(job_id=job_id, site=site, ce=ce, queue=queue,
                                             phase="New", agent=agent, next_beat=now,
                                             created=now, updated=now))


def set_phase(conn: Connection, job_id: int, seen: str, phase: str, *, now: datetime,
              **values: Any) -> bool:
    """Move ``job_id`` from phase ``seen`` to ``phase`` (with column ``values``); False when
    another agent moved it first."""
    if phase not in PHASES:
        raise ValueError(f"unknown push phase {phase!r}")
    done = conn.execute(sa.update(push_jobs).where(
        push_jobs.c.job_id == job_id, push_jobs.c.phase == seen).values(
        phase=phase, updated=now, **values)).rowcount
    return bool(done)


def set_next_beat(conn: Connection, job_id: int, when: datetime) -> None:
    conn.execute(sa.update(push_jobs).where(push_jobs.c.job_id == job_id).values(
        next_beat=when))


def forget(conn: Connection, job_id: int) -> None:
    conn.execute(sa.delete(push_jobs).where(push_jobs.c.job_id == job_id))


def rows(conn: Connection, site: str, ce: str, queue: str) -> list[PushRow]:
    """The queue's jobs, oldest first."""
    t = push_jobs
    result = conn.execute(sa.select(
        t.c.job_id, t.c.site, t.c.ce, t.c.queue, t.c.phase, t.c.batch_ref, t.c.remote_dir,
        t.c.next_beat, t.c.agent, t.c.attempts).where(
            t.c.site == site, t.c.ce == ce, t.c.queue == queue).order_by(t.c.job_id))
    return [PushRow(int(r.job_id), r.site, r.ce, r.queue, r.phase, r.batch_ref, r.remote_dir,
                    r.next_beat, r.agent, int(r.attempts)) for r in result]


def count_attempt(conn: Connection, job_id: int) -> int:
    """One more shipping attempt of ``job_id``; the attempts so far (this one included)."""
    t = push_jobs
    conn.execute(sa.update(t).where(t.c.job_id == job_id).values(attempts=t.c.attempts + 1))
    return int(conn.execute(sa.select(t.c.attempts).where(t.c.job_id == job_id)).scalar() or 0)


def in_flight(conn: Connection, site: str, ce: str, queue: str) -> dict[str, int]:
    """Jobs of the queue per phase."""
    t = push_jobs
    result = conn.execute(sa.select(t.c.phase, sa.func.count()).where(
        t.c.site == site, t.c.ce == ce, t.c.queue == queue).group_by(t.c.phase))
    return {str(phase): int(n) for phase, n in result}
