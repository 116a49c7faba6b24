"""Events on SQLite and MariaDB: subscriptions, notifications released exactly once (also by
concurrent appliers and after a crash), chains ended by kill and unsubscribe, and bad input."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from datetime import datetime

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from core.db import init_schema, make_engine, utcnow
from core.exceptions import (
    AlreadyExistsError,
    InvalidArgumentError,
    NotAuthorizedError,
    NotFoundError,
)
from wms.db import jobs as jobs_db
from wms.db.scheduling_tables import event_releases, event_subscriptions
from wms.db.schema import WMS_SCHEMA
from wms.db.tq_tables import tq_jobs
from wms.logic import events, optimizer
from wms.logic.jdl import parse_jdl
from wms.logic.job_description import JobDescription
from wms.logic.states import JobStatus
from wms.logic.submission import DEFAULT_LIMITS, Submitter, submit
from wms.service.common import enqueue

OP = events.Actor("op", "demo_ops", "demo", frozenset({"EventManager", "NormalUser"}))
ALICE = events.Actor("alice", "demo_user", "demo", frozenset({"NormalUser"}))
BOB = events.Actor("bob", "demo_user", "demo", frozenset({"NormalUser"}))


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url)
    init_schema(eng, WMS_SCHEMA)
    yield eng
    eng.dispose()


def _optimise(conn: Connection, described: Mapping[int, JobDescription], now: datetime
              ) -> optimizer.OptimiseResult:
    return optimizer.optimise_new(conn, described, enqueue=enqueue, now=now)


HOOKS = events.ReleaseHooks(optimise_new=_optimise)


def subscribe(engine: Engine, who: events.Actor, event: str, jdl: str) -> int:
    text = parse_jdl(jdl)
    text["Event"] = event

    def stored(conn: Connection, result: object, now: datetime) -> None:
        ids = result.job_ids  # type: ignore[attr-defined]
        events.subscribe_in(conn, who, event, {j: text.to_text() for j in ids}, now)

    return submit(engine, text.to_text(), Submitter(who.user, who.group, who.vo),
                  DEFAULT_LIMITS, on_stored=stored,
                  initial=(JobStatus.STANDBY, events.standby_minor(event))).job_ids[0]


def standby_jobs(engine: Engine) -> list[int]:
    with engine.connect() as conn:
        return sorted(conn.execute(sa.select(event_subscriptions.c.job_id).where(
            event_subscriptions.c.active.is_(True))).scalars())


def statuses(engine: Engine, ids: list[int]) -> dict[int, str]:
    with engine.connect() as conn:
        return {j: r.status for j, r in jobs_db.status_of(conn, ids).items()}


def test_subscribe_notify_twice(engine: Engine) -> None:
    events.create_event(engine, OP, "an00h000", "analysis 00UTC")
    jdl = '[Executable = "run.sh"; ExecutionEnvironment = {"KEEP=1", "STEP=0"};]'
    first = [subscribe(engine, ALICE, "an00h000", jdl) for _ in range(3)]
    assert set(statuses(engine, first).values()) == {"Standby"}
    with engine.connect() as conn:  # never queued, never matched
        assert not conn.execute(sa.select(tq_jobs.c.job_id)).all()
    note = events.notify(engine, OP, "an00h000", {"RUN_DATE": "20261203", "STEP": "240"})
    assert events.apply_notification(engine, note, HOOKS) == 3
    assert set(statuses(engine, first).values()) == {"Waiting"}
    second = standby_jobs(engine)
    assert len(second) == 3 and not set(second) & set(first)
    assert set(statuses(engine, second).values()) == {"Standby"}
    with engine.connect() as conn:
        released = jobs_db.jdls_of(conn, first, processed=False)
        queued = set(conn.execute(sa.select(tq_jobs.c.job_id)).scalars())
        params = jobs_db.parameters_of(conn, first)
        history = jobs_db.logging_of(conn, first[0])
    assert queued == set(first)
    for text in released.values():
        env = parse_jdl(text).get_str_list("ExecutionEnvironment")
        assert sorted(env) == ["KEEP=1", "RUN_DATE=20261203", "STEP=240"]  # notification wins
        assert "Event" not in parse_jdl(text)
    assert params[first[0]] == {"Event": "an00h000", "EventNotification": str(note)}
    assert [h[0] for h in history] == ["Standby", "Received", "Checking", "Waiting"]
    # the second notification releases the copies with its own variables
    note2 = events.notify(engine, OP, "an00h000", {"RUN_DATE": "20261204"})
    assert events.apply_notification(engine, note2, HOOKS) == 3
    with engine.connect() as conn:
        texts = jobs_db.jdls_of(conn, second, processed=False)
    assert all("RUN_DATE=20261204" in t and "STEP=0" in t for t in texts.values())
    assert len(standby_jobs(engine)) == 3
    # applying a finished notification again changes nothing
    assert events.apply_notification(engine, note2, HOOKS) == 0
    hist = events.history(engine, ALICE, "an00h000")
    assert [(h["Released"], h["Status"]) for h in hist] == [(3, "Done"), (3, "Done")]
    assert hist[0]["Environment"] == {"RUN_DATE": "20261204"}
    assert sorted(hist[1]["JobIDs"]) == first
    listed = events.list_events(engine, ALICE)
    assert [(e["Name"], e["Subscribers"], e["Notifications"]) for e in listed] == [
        ("an00h000", 3, 2)]


def test_concurrent_appliers_release_each_subscription_once(engine: Engine) -> None:
    events.create_event(engine, OP, "ev1")
    subs = [subscribe(engine, ALICE, "ev1", '[Executable = "x";]') for _ in range(30)]
    note = events.notify(engine, OP, "ev1", {"A": "1"})
    counts: list[int] = []
    errors: list[BaseException] = []

    def apply() -> None:
        try:
            counts.append(events.apply_notification(engine, note, HOOKS, chunk=4))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=apply) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert sum(counts) == 30
    with engine.connect() as conn:
        rows = conn.execute(sa.select(event_releases.c.sub_id)).scalars().all()
    assert len(rows) == len(set(rows)) == 30
    assert set(statuses(engine, subs).values()) == {"Waiting"}
    assert len(standby_jobs(engine)) == 30


def test_a_crash_half_way_leaves_each_subscription_released_or_untouched(
        engine: Engine) -> None:
    events.create_event(engine, OP, "ev2")
    subs = [subscribe(engine, ALICE, "ev2", '[Executable = "x";]') for _ in range(10)]
    note = events.notify(engine, OP, "ev2")
    calls = 0

    def crashing(conn: Connection, described: Mapping[int, JobDescription], now: datetime
                 ) -> optimizer.OptimiseResult:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("the server died")
        return _optimise(conn, described, now)

    with pytest.raises(RuntimeError):
        events.apply_notification(engine, note, events.ReleaseHooks(optimise_new=crashing),
                                  chunk=4)
    now = statuses(engine, subs)
    assert sorted(now.values()).count("Waiting") == 4  # the first chunk, complete
    assert sorted(now.values()).count("Standby") == 6  # the second rolled back entirely
    assert events.pending_notifications(engine, older_than=0) == [note]
    assert events.apply_notification(engine, note, HOOKS) == 6
    assert set(statuses(engine, subs).values()) == {"Waiting"}
    assert len(standby_jobs(engine)) == 10
    assert events.pending_notifications(engine, older_than=0) == []


def test_kill_and_unsubscribe_end_the_chain(engine: Engine) -> None:
    events.create_event(engine, OP, "ev3")
    killed = subscribe(engine, ALICE, "ev3", '[Executable = "x";]')
    kept = subscribe(engine, ALICE, "ev3", '[Executable = "x";]')
    gone = subscribe(engine, BOB, "ev3", '[Executable = "x";]')
    with engine.begin() as conn:
        rows = jobs_db.status_of(conn, [killed])
        jobs_db.apply_status_changes(conn, [jobs_db.StatusChange(killed, "Killed", "x")], rows,
                                     now=utcnow(),
                                     source="test")
    with pytest.raises(NotAuthorizedError):
        events.unsubscribe(engine, ALICE, gone)
    assert events.unsubscribe(engine, BOB, gone)["StandbyJob"] == gone
    assert statuses(engine, [gone]) == {gone: "Killed"}
    with pytest.raises(InvalidArgumentError, match="already ended"):
        events.unsubscribe(engine, BOB, gone)
    note = events.notify(engine, OP, "ev3")
    assert events.apply_notification(engine, note, HOOKS) == 1
    assert statuses(engine, [kept, killed]) == {kept: "Waiting", killed: "Killed"}
    subs = {s["JobID"]: s for s in events.subscriptions(engine, OP, "ev3")}
    assert [s["Active"] for s in subs.values()].count(True) == 1
    assert subs[killed]["EndReason"] == f"job {killed} is Killed"
    # unsubscribing through a released job ends its subscription's chain
    standby = standby_jobs(engine)
    assert events.unsubscribe(engine, ALICE, kept)["StandbyJob"] == standby[0]
    assert standby_jobs(engine) == []


def test_bad_input_creates_nothing(engine: Engine) -> None:
    with pytest.raises(NotAuthorizedError, match="EventManager"):
        events.create_event(engine, ALICE, "mine")
    for name in ("", "a b", "-x", "x" * 65, "é"):
        with pytest.raises(InvalidArgumentError, match="bad event name"):
            events.create_event(engine, OP, name)
    events.create_event(engine, OP, "ev4", subscriber_groups=["demo_ops"])
    with pytest.raises(AlreadyExistsError):
        events.create_event(engine, OP, "ev4")
    with pytest.raises(InvalidArgumentError, match="unknown groups: nope"):
        events.create_event(engine, OP, "ev5", subscriber_groups=["nope"],
                            known_groups=["demo_ops"])
    with pytest.raises(NotFoundError, match="unknown event 'nosuch'"):
        subscribe(engine, OP, "nosuch", '[Executable = "x";]')
    with pytest.raises(NotAuthorizedError, match="may not subscribe"):
        subscribe(engine, ALICE, "ev4", '[Executable = "x";]')
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(
            jobs_db.jobs)).scalar_one() == 0  # the refused subscriptions stored no job
    with pytest.raises(NotAuthorizedError, match="only op may notify"):
        events.notify(engine, ALICE, "ev4")
    with pytest.raises(NotFoundError):
        events.notify(engine, OP, "nosuch")
    for env in ({"1X": "a"}, {"A-B": "a"}, {"A": "x\ny"}, {"A": ["x"]},
                {f"V{i}": "x" for i in range(101)}):
        with pytest.raises(InvalidArgumentError):
            events.notify(engine, OP, "ev4", env)
    assert events.history(engine, OP, "ev4") == []
    with pytest.raises(NotAuthorizedError):
        events.delete_event(engine, ALICE, "ev4")


def test_group_owned_event_and_delete(engine: Engine) -> None:
    events.create_event(engine, OP, "grp", group_owned=True)
    colleague = events.Actor("carol", "demo_ops", "demo", frozenset({"EventManager"}))
    job = subscribe(engine, ALICE, "grp", '[Executable = "x";]')
    events.apply_notification(engine, events.notify(engine, colleague, "grp"), HOOKS)
    with pytest.raises(NotAuthorizedError, match="EventManagers of group demo_ops"):
        events.notify(engine, events.Actor("dave", "demo_user", "demo",
                                           frozenset({"EventManager"})), "grp")
    [standby] = standby_jobs(engine)
    assert events.delete_event(engine, colleague, "grp") == [standby]
    assert statuses(engine, [job, standby]) == {job: "Waiting", standby: "Killed"}
    assert events.list_events(engine, OP) == []
