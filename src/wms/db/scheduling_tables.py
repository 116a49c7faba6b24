"""Tables of events (time-critical jobs) and periodic schedules, in the WMS database.

They live beside the job tables on purpose: releasing a subscribed job, re-arming its
subscription and recording the release is one transaction over jobs and subscriptions, and a
schedule's run row commits with the job it made. A separate database would lose that.

* ``event_releases`` has the primary key (notification, subscription): a notification can never
  be applied twice to one subscription, whoever (service, agent copies) applies it.
* ``schedule_runs`` has the unique key (schedule, slot): two scheduler copies can never make two
  runs for one slot.

Example::

    >>> sorted(t for t in metadata.tables if t.startswith(("event", "schedule")))[:3]
    ['event_notifications', 'event_releases', 'event_subscriptions']
"""

from __future__ import annotations

import sqlalchemy as sa

from core.db import UTCDateTime
from wms.db.tables import JobIdType, LongText, metadata

IdType = JobIdType

events = sa.Table(
    "events",
    metadata,
    sa.Column("event_id", IdType, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(64), nullable=False, unique=True),
    sa.Column("description", sa.String(255), nullable=False, server_default=""),
    sa.Column("owner", sa.String(64), nullable=False),
    sa.Column("owner_group", sa.String(128), nullable=False),
    sa.Column("vo", sa.String(64), nullable=False),
    #: True: every EventManager of owner_group may notify; False: the owner only
    sa.Column("group_owned", sa.Boolean, nullable=False, server_default=sa.false()),
    #: JSON list of the groups that may subscribe; [] = any group of the VO
    sa.Column("subscriber_groups", sa.Text, nullable=False),
    sa.Column("created", UTCDateTime, nullable=False),
    sa.Column("last_notified", UTCDateTime, nullable=True),
    sa.Column("notifications", sa.Integer, nullable=False, server_default="0"),
    sa.Index("ix_events_vo", "vo"),
)

event_subscriptions = sa.Table(
    "event_subscriptions",
    metadata,
    sa.Column("sub_id", IdType, primary_key=True, autoincrement=True),
    sa.Column("event_id", IdType, sa.ForeignKey("events.event_id", ondelete="CASCADE"),
              nullable=False),
    #: the job now in Standby for this subscription (a new one after each release)
    sa.Column("job_id", IdType, nullable=False, unique=True),
    #: the JDL each copy is made from (the user's, as submitted)
    sa.Column("jdl", LongText, nullable=False),
    sa.Column("owner", sa.String(64), nullable=False),
    sa.Column("owner_group", sa.String(128), nullable=False),
    sa.Column("vo", sa.String(64), nullable=False),
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("created", UTCDateTime, nullable=False),
    sa.Column("ended", UTCDateTime, nullable=True),
    sa.Column("end_reason", sa.String(255), nullable=False, server_default=""),
    sa.Column("releases", sa.Integer, nullable=False, server_default="0"),
    sa.Index("ix_event_subscriptions_event", "event_id", "active", "sub_id"),
)

event_notifications = sa.Table(
    "event_notifications",
    metadata,
    sa.Column("notification_id", IdType, primary_key=True, autoincrement=True),
    sa.Column("event_id", IdType, sa.ForeignKey("events.event_id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("sender", sa.String(64), nullable=False),
    sa.Column("sender_group", sa.String(128), nullable=False),
    sa.Column("time", UTCDateTime, nullable=False),
    #: JSON object NAME -> value given to every released job
    sa.Column("environment", sa.Text, nullable=False),
    #: subscriptions up to this ID existed when the notification was made: those it releases
    sa.Column("max_sub_id", IdType, nullable=False),
    #: Pending until every subscription it concerns is released (or found ended), then Done
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("released", sa.Integer, nullable=False, server_default="0"),
    sa.Column("finished", UTCDateTime, nullable=True),
    sa.Index("ix_event_notifications_event", "event_id", "time"),
    sa.Index("ix_event_notifications_status", "status"),
)

event_releases = sa.Table(
    "event_releases",
    metadata,
    sa.Column("notification_id", IdType,
              sa.ForeignKey("event_notifications.notification_id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("sub_id", IdType, sa.ForeignKey("event_subscriptions.sub_id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("released_job", IdType, nullable=False),
    sa.Column("standby_job", IdType, nullable=False),
    sa.Column("time", UTCDateTime, nullable=False),
    sa.Index("ix_event_releases_job", "released_job"),
)

schedules = sa.Table(
    "schedules",
    metadata,
    sa.Column("schedule_id", IdType, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(32), nullable=False),
    sa.Column("owner", sa.String(64), nullable=False),
    sa.Column("owner_group", sa.String(128), nullable=False),
    sa.Column("vo", sa.String(64), nullable=False),
    sa.Column("jdl", LongText, nullable=False),
    sa.Column("every_seconds", sa.Integer, nullable=True),
    sa.Column("cron", sa.String(128), nullable=True),
    sa.Column("timezone", sa.String(64), nullable=False, server_default="UTC"),
    sa.Column("overlap", sa.String(16), nullable=False),
    sa.Column("catch_up", sa.String(16), nullable=False),
    sa.Column("max_runs", sa.Integer, nullable=True),
    sa.Column("until", UTCDateTime, nullable=True),
    sa.Column("start", UTCDateTime, nullable=False),
    #: the next slot to consider; NULL once the schedule is over
    sa.Column("next_slot", UTCDateTime, nullable=True),
    #: Active, Paused or Finished
    sa.Column("status", sa.String(16), nullable=False),
    #: runs made (jobs submitted, queued runs included)
    sa.Column("runs", sa.Integer, nullable=False, server_default="0"),
    sa.Column("created", UTCDateTime, nullable=False),
    sa.UniqueConstraint("owner", "name", name="uq_schedules_owner_name"),
    sa.Index("ix_schedules_due", "status", "next_slot"),
)

schedule_runs = sa.Table(
    "schedule_runs",
    metadata,
    sa.Column("run_id", IdType, primary_key=True, autoincrement=True),
    sa.Column("schedule_id", IdType, sa.ForeignKey("schedules.schedule_id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("slot", UTCDateTime, nullable=False),
    #: Submitted (job_id set), Queued (waiting for the previous run), Skipped, Failed
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("job_id", IdType, nullable=True),
    sa.Column("note", sa.String(255), nullable=False, server_default=""),
    sa.Column("created", UTCDateTime, nullable=False),
    sa.UniqueConstraint("schedule_id", "slot", name="uq_schedule_runs_slot"),
)

SCHEDULING_TABLES = (events, event_subscriptions, event_notifications, event_releases,
                     schedules, schedule_runs)
