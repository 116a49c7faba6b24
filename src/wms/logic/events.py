"""Events: jobs that wait in ``Standby`` until an operator says "the data is there".

ECaccess's "time-critical option 1". An *event* (``an00h000``: "the analysis at 00 UTC is
complete") belongs to a user, or to a group whose ``EventManager`` members all may notify it.
A job submitted with ``Event = "an00h000"`` in its JDL is a *subscription*: it is stored in
``Standby`` (never queued, never matched) and waits. A *notification* (optionally carrying
environment variables) releases every subscription at once:

* the standby job becomes a normal job: ``Standby -> Received -> Checking -> Waiting``, its
  ``ExecutionEnvironment`` completed with the notification's variables (they win over the
  JDL's), its ``Event`` attribute dropped;
* a fresh copy of the subscribed JDL is stored in ``Standby``: the subscription now points to
  it and waits for the next notification.

**Exactly once.** Releases are made in chunks, each one transaction over jobs, task queues,
subscriptions and a ``event_releases`` row whose primary key is (notification, subscription):
a crash leaves every subscription released-and-re-armed or untouched, and a notification can
never be applied twice to a subscription, whoever applies it (the service right away, an
``EventAgent`` copy finishing what a crash left ``Pending``). Killing (or deleting) the
standby job, or :func:`unsubscribe`, ends the chain; a released job's own fate does not.

Example::

    >>> from datetime import datetime, timezone
    >>> from core.db import init_schema, make_engine
    >>> from wms.db.schema import WMS_SCHEMA
    >>> engine = make_engine("sqlite://"); _ = init_schema(engine, WMS_SCHEMA)
    >>> op = Actor("op", "ops", "demo", frozenset({"EventManager"}))
    >>> create_event(engine, op, "an00h000", "analysis 00UTC") > 0
    True
    >>> [e["Name"] for e in list_events(engine, op)]
    ['an00h000']
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, Row

from core.db import utcnow, write_transaction
from core.exceptions import (
    AlreadyExistsError,
    InvalidArgumentError,
    NotAuthorizedError,
    NotFoundError,
)
from core.security.identity import Identity
from wms.db import events as db
from wms.db import jobs as jobs_db
from wms.logic.jdl import JDL, parse_jdl
from wms.logic.job_description import JobDescription, JobLimits, describe_job, processed_jdl
from wms.logic.optimizer import OptimiseResult
from wms.logic.states import JobStatus, MinorStatus

SOURCE = "EventManager"
MANAGER = "EventManager"
ADMIN = "JobAdministrator"
EVENT_ATTRIBUTE = "Event"
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,99}")
MAX_VARIABLES = 100
MAX_VALUE = 1024
#: subscriptions released per transaction
CHUNK = 1000


class EventNotFoundError(NotFoundError):
    """No such event."""


@dataclass(frozen=True)
class Actor:
    """Who acts on events: user, group, VO and the group's properties."""

    user: str
    group: str
    vo: str
    properties: frozenset[str] = frozenset()

    @classmethod
    def from_identity(cls, ident: Identity) -> Actor:
        return cls(ident.username or "", ident.group or "", ident.vo or "",
                   frozenset(ident.properties))

    @property
    def admin(self) -> bool:
        return ADMIN in self.properties


def standby_minor(event: str) -> str:
    """The minor status of a job waiting for ``event``.

    >>> standby_minor("an00h000")
    'Waiting for event an00h000'
    """
    return f"Waiting for event {event}"


def event_of(jdl: JDL) -> str | None:
    """The event a JDL subscribes to (its ``Event`` attribute), checked for form."""
    if EVENT_ATTRIBUTE not in jdl:
        return None
    name = jdl.get_str(EVENT_ATTRIBUTE, "").strip()
    check_name(name)
    return name


def check_name(name: str) -> str:
    """An event name: letters, digits, ``_.-``, 1-64 characters, starting alphanumeric."""
    if not isinstance(name, str) or NAME.fullmatch(name) is None:
        raise InvalidArgumentError(
            f"bad event name {name!r}: 1-64 letters, digits, '_', '.', '-', starting with a "
            "letter or digit")
    return name


def check_environment(env: Mapping[str, Any]) -> dict[str, str]:
    """Notification variables: valid shell names, string values, bounded in count and size.

    >>> check_environment({"RUN_DATE": "20261203", "STEP": 240})
    {'RUN_DATE': '20261203', 'STEP': '240'}
    """
    if not isinstance(env, Mapping):
        raise InvalidArgumentError("the environment must be a NAME -> value mapping")
    if len(env) > MAX_VARIABLES:
        raise InvalidArgumentError(f"at most {MAX_VARIABLES} variables per notification")
    out: dict[str, str] = {}
    for name, value in env.items():
        if not isinstance(name, str) or ENV_NAME.fullmatch(name) is None:
            raise InvalidArgumentError(f"bad variable name {name!r}")
        if isinstance(value, (dict, list)) or value is None:
            raise InvalidArgumentError(f"variable {name}: the value must be a string")
        text = str(value)
        if len(text) > MAX_VALUE or "\n" in text or "\0" in text:
            raise InvalidArgumentError(
                f"variable {name}: at most {MAX_VALUE} characters, no newline")
        out[name] = text
    return out


def _event(conn: Connection, name: str, *, for_update: bool = False) -> Row[Any]:
    row = db.event_by_name(conn, check_name(name), for_update=for_update)
    if row is None:
        raise EventNotFoundError(f"unknown event {name!r}")
    return row


def may_notify(actor: Actor, event: Row[Any]) -> bool:
    """The owner; with a group-owned event any EventManager of its group; administrators."""
    if actor.admin and actor.vo == event.vo:
        return True
    if event.group_owned:
        return actor.group == event.owner_group and MANAGER in actor.properties
    return actor.user == event.owner and actor.vo == event.vo


def may_subscribe(actor: Actor, event: Row[Any]) -> bool:
    groups = json.loads(event.subscriber_groups)
    return actor.vo == event.vo and (not groups or actor.group in groups)


# -- events -------------------------------------------------------------------------------------


def create_event(engine: Engine, actor: Actor, name: str, description: str = "", *,
                 group_owned: bool = False, subscriber_groups: Sequence[str] = (),
                 known_groups: Sequence[str] | None = None, now: datetime | None = None
                 ) -> int:
    """A new event owned by ``actor`` (or, ``group_owned``, by its group); only an
    ``EventManager`` (or ``JobAdministrator``) creates events. ``subscriber_groups`` limits who
    may subscribe (default: any group of the VO); ``known_groups`` checks their names."""
    if MANAGER not in actor.properties and not actor.admin:
        raise NotAuthorizedError(f"creating events needs the {MANAGER} property")
    check_name(name)
    if not isinstance(description, str) or len(description) > 255:
        raise InvalidArgumentError("the description must be a string of at most 255 characters")
    groups = sorted(set(subscriber_groups))
    if known_groups is not None:
        unknown = [g for g in groups if g not in known_groups]
        if unknown:
            raise InvalidArgumentError(f"unknown groups: {', '.join(unknown)}")
    now = now or utcnow()
    with write_transaction(engine) as conn:
        if db.event_by_name(conn, name) is not None:
            raise AlreadyExistsError(f"event {name!r} already exists")
        try:
            return db.insert_event(conn, name=name, description=description, owner=actor.user,
                                   owner_group=actor.group, vo=actor.vo, group_owned=group_owned,
                                   subscriber_groups=groups, now=now)
        except sa.exc.IntegrityError:
            raise AlreadyExistsError(f"event {name!r} already exists") from None


def delete_event(engine: Engine, actor: Actor, name: str, *,
                 now: datetime | None = None) -> list[int]:
    """Delete an event (who may notify it may delete it): its standby jobs are killed (the
    chains end), its history goes. Returns the killed standby jobs."""
    now = now or utcnow()
    with write_transaction(engine) as conn:
        event = _event(conn, name, for_update=True)
        if not may_notify(actor, event):
            raise NotAuthorizedError(f"only the owner of event {name!r} may delete it")
        standby = [row.job_id for row in db.subscriptions(conn, event.event_id)
                   if row.active and row.status == JobStatus.STANDBY]
        _kill_standby(conn, standby, f"Event {name} deleted", now)
        db.delete_event(conn, event.event_id)
    return standby


def _kill_standby(conn: Connection, job_ids: Sequence[int], minor: str, now: datetime) -> None:
    rows = {j: r for j, r in jobs_db.status_of(conn, job_ids, for_update=True).items()
            if r.status == JobStatus.STANDBY}
    jobs_db.apply_status_changes(
        conn, [jobs_db.StatusChange(j, JobStatus.KILLED, minor[:128]) for j in rows], rows,
        now=now, source=SOURCE, extra={"end_exec_time": now})


def _describe_event(row: Row[Any], live: int) -> dict[str, Any]:
    return {"EventID": row.event_id, "Name": row.name, "Description": row.description,
            "Owner": row.owner, "OwnerGroup": row.owner_group, "VO": row.vo,
            "GroupOwned": bool(row.group_owned),
            "SubscriberGroups": json.loads(row.subscriber_groups), "Created": row.created,
            "LastNotified": row.last_notified, "Notifications": row.notifications,
            "Subscribers": live}


def list_events(engine: Engine, actor: Actor) -> list[dict[str, Any]]:
    """The events of the actor's VO with their live subscriber counts (all VOs for admins)."""
    with engine.connect() as conn:
        rows = db.list_events(conn, None if actor.admin else actor.vo)
        counts = db.standby_counts(conn, [r.event_id for r in rows])
    return [_describe_event(r, counts.get(r.event_id, 0)) for r in rows]


def get_event(engine: Engine, actor: Actor, name: str) -> dict[str, Any]:
    with engine.connect() as conn:
        row = _event(conn, name)
        if row.vo != actor.vo and not actor.admin:
            raise EventNotFoundError(f"unknown event {name!r}")
        return _describe_event(row, db.standby_counts(conn, [row.event_id]).get(row.event_id, 0))


# -- subscriptions ------------------------------------------------------------------------------


def subscribe_in(conn: Connection, actor: Actor, name: str, templates: Mapping[int, str],
                 now: datetime) -> int:
    """Record subscriptions for jobs just stored in Standby in the caller's transaction
    (job_id -> the JDL to copy). Raises (so nothing is stored) for an unknown event or one the
    actor may not subscribe to. Returns the event ID."""
    event = _event(conn, name)
    if not may_subscribe(actor, event):
        raise NotAuthorizedError(f"{actor.user}@{actor.group} may not subscribe to event "
                                 f"{name!r}")
    db.add_subscriptions(conn, event.event_id, templates, owner=actor.user,
                         owner_group=actor.group, vo=actor.vo, now=now)
    return int(event.event_id)


def unsubscribe(engine: Engine, actor: Actor, job_id: int, *, now: datetime | None = None
                ) -> dict[str, Any]:
    """End the chain of the subscription whose standby job (or one of whose released jobs) is
    ``job_id``: its standby job is killed, no copy is made any more."""
    now = now or utcnow()
    with write_transaction(engine) as conn:
        sub = db.subscription_of_job(conn, job_id)
        if sub is None:
            raise NotFoundError(f"job {job_id} belongs to no event subscription")
        if sub.owner != actor.user and not (actor.admin and actor.vo == sub.vo):
            raise NotAuthorizedError(f"job {job_id} is not yours")
        if not sub.active:
            raise InvalidArgumentError(f"the subscription of job {job_id} has already ended "
                                       f"({sub.end_reason})")
        event = db.event_by_id(conn, sub.event_id)
        name = event.name if event is not None else "?"
        db.end_subscriptions(conn, {sub.sub_id: f"unsubscribed by {actor.user}"}, now)
        _kill_standby(conn, [sub.job_id], f"Unsubscribed from event {name}", now)
    return {"Event": name, "StandbyJob": int(sub.job_id), "Releases": int(sub.releases)}


def subscriptions(engine: Engine, actor: Actor, name: str) -> list[dict[str, Any]]:
    """The subscriptions of an event (owners and admins see all, others their own)."""
    with engine.connect() as conn:
        event = _event(conn, name)
        if event.vo != actor.vo and not actor.admin:
            raise EventNotFoundError(f"unknown event {name!r}")
        mine = None if (may_notify(actor, event) or actor.admin) else actor.user
        rows = db.subscriptions(conn, event.event_id, owner=mine)
    return [{"SubscriptionID": r.sub_id, "JobID": r.job_id, "JobStatus": r.status,
             "Owner": r.owner, "OwnerGroup": r.owner_group, "Active": bool(r.active),
             "Created": r.created, "Ended": r.ended, "EndReason": r.end_reason,
             "Releases": r.releases} for r in rows]


# -- notifications ------------------------------------------------------------------------------


def notify(engine: Engine, actor: Actor, name: str, env: Mapping[str, Any] | None = None, *,
           now: datetime | None = None) -> int:
    """Record a notification (owner only); :func:`apply_notification` releases its jobs."""
    variables = check_environment(env or {})
    now = now or utcnow()
    with write_transaction(engine) as conn:
        event = _event(conn, name, for_update=True)
        if not may_notify(actor, event):
            who = (f"the {MANAGER}s of group {event.owner_group}" if event.group_owned
                   else event.owner)
            raise NotAuthorizedError(f"only {who} may notify event {name!r}")
        return db.insert_notification(conn, event_id=event.event_id, sender=actor.user,
                                      sender_group=actor.group, environment=variables,
                                      max_sub=db.max_sub_id(conn, event.event_id), now=now)


@dataclass(frozen=True)
class ReleaseHooks:
    """What releasing needs from the WMS around it (wired by the service and the agent)."""

    #: Received -> Checking -> Waiting and into the task queues, in the caller's transaction
    optimise_new: Callable[[Connection, Mapping[int, JobDescription], datetime], OptimiseResult]
    #: give the new standby copies the sandboxes of their subscription: (conn, owner, group,
    #: vo, {job_id: [SB: refs]}, now)
    assign_sandboxes: Callable[[Connection, str, str, str, Mapping[int, list[str]], datetime],
                               None] | None = None
    limits: JobLimits = JobLimits()


def apply_notification(engine: Engine, notification_id: int, hooks: ReleaseHooks, *,
                       chunk: int = CHUNK, now: datetime | None = None) -> int:
    """Release every subscription the notification concerns that it has not released yet,
    ``chunk`` per transaction; then mark it Done. Returns the jobs released by this call.
    Safe to run concurrently and again after a crash (see the module docstring)."""
    released = 0
    conflicts = 0
    while True:
        try:
            count, more = _release_chunk(engine, notification_id, hooks, chunk, now or utcnow())
        except sa.exc.IntegrityError:
            conflicts += 1  # another worker released some of these first: re-select
            if conflicts > 20:
                raise
            continue
        released += count
        if not more:
            break
    with write_transaction(engine) as conn:
        note = db.notification(conn, notification_id)
        if note is not None and note.status == db.PENDING:
            db.finish_notification(conn, notification_id, now or utcnow())
    return released


def _release_chunk(engine: Engine, notification_id: int, hooks: ReleaseHooks, chunk: int,
                   now: datetime) -> tuple[int, bool]:
    with write_transaction(engine) as conn:
        note = db.notification(conn, notification_id)
        if note is None or note.status != db.PENDING:
            return 0, False
        subs = db.unreleased_subscriptions(conn, note, chunk)
        if not subs:
            return 0, False
        event = db.event_by_id(conn, note.event_id)
        assert event is not None  # noqa: S101 - the notification references it
        rows = jobs_db.status_of(conn, [s.job_id for s in subs], for_update=True)
        live = [s for s in subs if s.job_id in rows
                and rows[s.job_id].status == JobStatus.STANDBY]
        alive = {s.sub_id for s in live}
        ended = {s.sub_id: (f"job {s.job_id} is {rows[s.job_id].status}" if s.job_id in rows
                            else f"job {s.job_id} was removed")
                 for s in subs if s.sub_id not in alive}
        db.end_subscriptions(conn, ended, now)
        if live:
            _release(conn, note, event.name, live, rows, hooks, now)
        return len(live), True


def _release(conn: Connection, note: Row[Any], event: str, live: Sequence[Row[Any]],
             rows: Mapping[int, jobs_db.StatusRow], hooks: ReleaseHooks, now: datetime) -> None:
    env = json.loads(note.environment)
    descs: dict[tuple[str, str, str, str], JobDescription] = {}
    released_text: dict[str, str] = {}
    # per distinct subscription (JDL and owner): its description, and the processed JDLs of
    # its copies and of its released jobs rendered once, the job ID put in per job
    renders: dict[tuple[tuple[str, str, str, str], bool], Callable[[int], str]] = {}

    keys: dict[int, tuple[str, str, str, str]] = {}

    def key_of(sub: Row[Any]) -> tuple[str, str, str, str]:
        key = keys.get(sub.sub_id)
        if key is None:
            key = keys[sub.sub_id] = (sub.jdl, sub.owner, sub.owner_group, sub.vo)
        return key

    def template_desc(sub: Row[Any]) -> JobDescription:
        key = key_of(sub)
        if key not in descs:
            descs[key] = describe_job(parse_jdl(sub.jdl), owner=sub.owner,
                                      owner_group=sub.owner_group, vo=sub.vo,
                                      limits=hooks.limits)
        return descs[key]

    def released_desc(sub: Row[Any]) -> JobDescription:
        base = template_desc(sub)
        extra = base.extra.copy()
        extra.pop(EVENT_ATTRIBUTE, None)
        return replace(base, execution_environment={**base.execution_environment, **env},
                       extra=extra)

    def render(sub: Row[Any], released: bool) -> Callable[[int], str]:
        key = (key_of(sub), released)
        if key not in renders:
            renders[key] = processed_renderer(released_desc(sub) if released
                                              else template_desc(sub))
        return renders[key]

    # 1. the fresh standby copies
    new = []
    for sub in live:
        desc = template_desc(sub)
        new.append(jobs_db.NewJob(
            owner=sub.owner, owner_group=sub.owner_group, vo=sub.vo, status=JobStatus.STANDBY,
            minor_status=standby_minor(event), original_jdl=sub.jdl, job_type=desc.job_type,
            job_group=desc.job_group, job_name=desc.job_name, site=desc.site_summary,
            user_priority=desc.priority, input_data=desc.input_data))
    copies = jobs_db.insert_jobs(conn, new, now=now, source=SOURCE,
                                 processed=lambda i, job_id: render(live[i], False)(job_id))
    # 2. the release records: a second application of this notification fails right here
    db.add_releases(conn, note.notification_id,
                    [(s.sub_id, s.job_id, c) for s, c in zip(live, copies, strict=True)], now)
    # 3. the released jobs: the notification's variables, no Event; Standby -> Received
    originals: dict[int, str] = {}
    processed: dict[int, str] = {}
    described: dict[int, JobDescription] = {}
    descs_released: dict[tuple[str, str, str, str], JobDescription] = {}
    for sub in live:
        base = template_desc(sub)
        if sub.jdl not in released_text:
            jdl = parse_jdl(sub.jdl)
            jdl.pop(EVENT_ATTRIBUTE, None)
            merged = {**base.execution_environment, **env}
            if merged:
                jdl["ExecutionEnvironment"] = [f"{k}={v}" for k, v in merged.items()]
            released_text[sub.jdl] = jdl.to_text()
        key = key_of(sub)
        if key not in descs_released:
            descs_released[key] = released_desc(sub)
        described[sub.job_id] = descs_released[key]
        originals[sub.job_id] = released_text[sub.jdl]
        processed[sub.job_id] = render(sub, True)(sub.job_id)
    jobs_db.replace_jdls(conn, {job_id: (originals[job_id], text)
                                for job_id, text in processed.items()})
    changes = [jobs_db.StatusChange(s.job_id, JobStatus.RECEIVED, MinorStatus.JOB_ACCEPTED)
               for s in live]
    jobs_db.apply_status_changes(conn, changes, dict(rows), now=now, source=SOURCE)
    # a standby job never had parameters: insert them (no per-job delete as set_parameters)
    jobs_db.insert_parameters(conn, [
        (s.job_id, rows[s.job_id].reschedule_counter, name, value) for s in live
        for name, value in (("Event", event), ("EventNotification", str(note.notification_id)))])
    hooks.optimise_new(conn, described, now)
    # 4. the subscriptions point to their new standby jobs, which get the sandboxes
    db.rearm(conn, {s.sub_id: c for s, c in zip(live, copies, strict=True)})
    if hooks.assign_sandboxes is not None:
        by_owner: dict[tuple[str, str, str], dict[int, list[str]]] = {}
        for sub, copy in zip(live, copies, strict=True):
            refs = [x for x in template_desc(sub).input_sandbox if x.startswith("SB:")]
            if refs:
                by_owner.setdefault((sub.owner, sub.owner_group, sub.vo), {})[copy] = refs
        for (owner, group, vo), refs_of in by_owner.items():
            hooks.assign_sandboxes(conn, owner, group, vo, refs_of, now)


_SENTINEL = 987654320123456789


def processed_renderer(desc: JobDescription) -> Callable[[int], str]:
    """``job_id -> processed JDL text`` of ``desc``, rendered once (the JobID written in per
    job): 10,000 releases of one subscription cost one rendering, not 10,000.

    >>> from wms.logic.jdl import JDL
    >>> desc = describe_job(JDL({"Executable": "ls"}), owner="u", owner_group="g", vo="v")
    >>> processed_renderer(desc)(42) == processed_jdl(desc, 42).to_text()
    True
    """
    text = processed_jdl(desc, _SENTINEL).to_text()
    marker = f"JobID = {_SENTINEL};"
    if text.count(str(_SENTINEL)) != 1 or marker not in text:
        return lambda job_id: processed_jdl(desc, job_id).to_text()
    head, tail = text.split(marker)
    return lambda job_id: f"{head}JobID = {int(job_id)};{tail}"


def pending_notifications(engine: Engine, *, older_than: float = 10.0,
                          now: datetime | None = None) -> list[int]:
    """Notifications still Pending ``older_than`` seconds after they were made (a crash, or
    a server stopped mid-way): for the EventAgent."""
    from datetime import timedelta

    now = now or utcnow()
    with engine.connect() as conn:
        return db.pending_notifications(conn, now - timedelta(seconds=older_than))


def history(engine: Engine, actor: Actor, name: str, limit: int = 50) -> list[dict[str, Any]]:
    """The latest notifications of an event: who, when, variables, jobs released."""
    if not 1 <= limit <= 10_000:
        raise InvalidArgumentError("limit must be between 1 and 10000")
    with engine.connect() as conn:
        event = _event(conn, name)
        if event.vo != actor.vo and not actor.admin:
            raise EventNotFoundError(f"unknown event {name!r}")
        rows = db.history(conn, event.event_id, limit)
        jobs = db.released_jobs(conn, [r.notification_id for r in rows])
    return [{"NotificationID": r.notification_id, "Sender": r.sender,
             "SenderGroup": r.sender_group, "Time": r.time,
             "Environment": json.loads(r.environment), "Status": r.status,
             "Released": len(jobs.get(r.notification_id, [])),
             "JobIDs": jobs.get(r.notification_id, []), "Finished": r.finished}
            for r in rows]
