"""Two copies of the EventAgent and of the ScheduleAgent on one database (SQLite and MariaDB):
a notification left Pending (as by a server that died) is finished with every subscription
released exactly once; every slot of several schedules gets exactly one run, whose job is
optimised to Waiting."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from core.config.schema import Config
from core.db import init_schema, make_engine, utcnow
from core.tables import FRAMEWORK_SCHEMA
from wms.agents.events import EventAgent
from wms.agents.schedules import ScheduleAgent
from wms.db import jobs as jobs_db
from wms.db.scheduling_tables import event_releases, schedule_runs
from wms.db.schema import WMS_SCHEMA
from wms.logic import events, schedules
from wms.logic.jdl import parse_jdl
from wms.logic.states import JobStatus
from wms.logic.submission import DEFAULT_LIMITS, Submitter, submit

OP = events.Actor("admin", "demo_ops", "demo", frozenset({"EventManager"}))
ALICE = events.Actor("alice", "demo_user", "demo", frozenset({"NormalUser"}))


@pytest.fixture
def setup(config: Config, db_url: str, tmp_path: Path) -> Iterator[tuple[Config, Engine]]:
    cfg = config.model_copy(update={"database": db_url, "systems": {}})
    engine = make_engine(db_url)
    init_schema(engine, WMS_SCHEMA)
    init_schema(engine, FRAMEWORK_SCHEMA)
    yield cfg, engine
    engine.dispose()


def run_together(agents: list[EventAgent] | list[ScheduleAgent], cycles: int) -> None:
    errors: list[BaseException] = []

    def loop(agent: EventAgent | ScheduleAgent) -> None:
        try:
            for _ in range(cycles):
                agent.beat()
                agent.run_once()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=loop, args=(a,)) for a in agents]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    assert not errors, errors


def test_two_event_agents_finish_a_pending_notification_once(
        setup: tuple[Config, Engine]) -> None:
    cfg, engine = setup
    events.create_event(engine, OP, "an00h000")
    jdl = parse_jdl('[Executable = "x"; Event = "an00h000";]').to_text()

    def stored(conn: Connection, result: object, now: datetime) -> None:
        ids = result.job_ids  # type: ignore[attr-defined]
        events.subscribe_in(conn, ALICE, "an00h000", {j: jdl for j in ids}, now)

    jobs = [submit(engine, jdl, Submitter("alice", "demo_user", "demo"), DEFAULT_LIMITS,
                   on_stored=stored,
                   initial=(JobStatus.STANDBY, events.standby_minor("an00h000"))).job_ids[0]
            for _ in range(40)]
    # the server recorded the notification and died before releasing anything
    note = events.notify(engine, OP, "an00h000", {"STEP": "6"},
                         now=utcnow() - timedelta(minutes=5))
    agents = [EventAgent(cfg, instance=f"ev-{i}", period=0.1) for i in range(2)]
    for agent in agents:
        agent.grace = 0
    run_together(agents, 3)
    with engine.connect() as conn:
        released = conn.execute(sa.select(event_releases.c.released_job)).scalars().all()
        states = {j: r.status for j, r in jobs_db.status_of(conn, jobs).items()}
    assert sorted(released) == jobs  # each once
    assert set(states.values()) == {"Waiting"}
    assert events.history(engine, OP, "an00h000")[0]["Status"] == "Done"
    assert events.pending_notifications(engine, older_than=0) == []
    assert note


def test_two_schedule_agents_make_one_run_per_slot(setup: tuple[Config, Engine]) -> None:
    cfg, engine = setup
    owner = schedules.Owner("alice", "demo_user", "demo")
    start = utcnow() - timedelta(seconds=9)
    ids = [schedules.create_schedule(engine, owner, f"s{i}", '[Executable = "x";]',
                                     schedules.Timing(every_seconds=1), overlap="parallel",
                                     catch_up="all", start=start, now=start)
           for i in range(4)]
    agents = [ScheduleAgent(cfg, instance=f"sc-{i}", period=0.1) for i in range(2)]
    run_together(agents, 3)
    with engine.connect() as conn:
        rows = conn.execute(sa.select(schedule_runs.c.schedule_id, schedule_runs.c.slot,
                                      schedule_runs.c.job_id)).all()
        states = {r.status for r in jobs_db.status_of(conn, [r.job_id for r in rows]).values()}
    for sid in ids:
        slots = [r.slot for r in rows if r.schedule_id == sid]
        assert len(slots) == len(set(slots)) >= 10  # the 10 slots since start, once each
    assert states == {"Waiting"}
    assert len({r.job_id for r in rows}) == len(rows)


def test_agent_copies_starting_together_on_a_fresh_database(tmp_path: Path) -> None:
    """Copies racing to create the heartbeat and WMS tables all run their cycle."""
    cfg = Config.model_validate({"Database": f"sqlite:///{tmp_path / 'fresh.db'}"})
    cycles: list[str] = []

    class Counting(ScheduleAgent):
        def run_once(self) -> bool:
            init_schema(self.engine(), WMS_SCHEMA)
            cycles.append(self.instance)
            return super().run_once()

    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def start(i: int) -> None:
        try:
            agent = Counting(cfg, instance=f"c{i}", period=0.1)
            barrier.wait(30)
            agent.run(once=True)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors and sorted(cycles) == ["c0", "c1", "c2", "c3"], (errors, cycles)
