"""Event notification speed: N subscribed jobs released to Waiting (issue 13: 10,000 in < 5 s).

    python bench/events.py [--jobs 10000] [--users 10] [--mysql-url URL] [--sqlite-only]

Setup (not timed): one event and ``--jobs`` jobs in Standby subscribed to it, from ``--users``
users with two different JDLs each (so the release is not one description copied 10,000
times). Timed: ``notify`` (the record) and ``apply_notification`` with the real release hooks
of the service (optimiser and task queues), i.e. what ``EventManager.notifyEvent`` does in a
request: every job Standby -> Received -> Checking -> Waiting with the notification's
variables, queued for the matcher, and a fresh standby copy made per subscription. Then the
result is checked (all Waiting, all re-armed). On SQLite and on MariaDB (``--mysql-url``, or a
private server started with tests.support.mariadb).
"""

from __future__ import annotations

import argparse
import tempfile
import time

import sqlalchemy as sa

from bench.machine import machine_line
from core.config.schema import Config
from core.db import init_schema, make_engine, utcnow, write_transaction
from wms.db import events as events_db
from wms.db import jobs as jobs_db
from wms.db.schema import WMS_SCHEMA
from wms.db.tables import jobs
from wms.logic import events
from wms.logic.jdl import parse_jdl
from wms.logic.states import JobStatus
from wms.service.wiring import Wiring, release_hooks

OP = events.Actor("op", "demo_ops", "demo", frozenset({"EventManager"}))
JDLS = ['[Executable = "forecast.sh"; Arguments = "--member {u}"; CPUTime = 3600; '
        'Event = "an00h000"; OutputSandbox = {{"std.out", "std.err"}};]',
        '[Executable = "plot.py"; CPUTime = 600; Event = "an00h000"; JobGroup = "plots";'
        ' ExecutionEnvironment = "MODE=fast";]']


def setup(url: str, count: int, users: int) -> None:
    engine = make_engine(url)
    init_schema(engine, WMS_SCHEMA)
    events.create_event(engine, OP, "an00h000", "analysis at 00UTC")
    now = utcnow()
    per = count // (2 * users)
    with write_transaction(engine) as conn:
        event_id = events_db.event_by_name(conn, "an00h000").event_id  # type: ignore[union-attr]
        for user in range(users):
            for kind, template in enumerate(JDLS):
                text = parse_jdl(template.format(u=user)).to_text()
                n = per if (user, kind) != (users - 1, 1) else count - per * (2 * users - 1)
                ids = jobs_db.insert_jobs(conn, [jobs_db.NewJob(
                    owner=f"user{user}", owner_group="demo_user", vo="demo",
                    status=JobStatus.STANDBY, minor_status=events.standby_minor("an00h000"),
                    original_jdl=text)] * n, now=now, source="bench")
                events_db.add_subscriptions(conn, event_id, {j: text for j in ids},
                                            owner=f"user{user}", owner_group="demo_user",
                                            vo="demo", now=now)
    engine.dispose()


def run(url: str, count: int, users: int) -> float:
    setup(url, count, users)
    cfg = Config.model_validate({"Database": url})
    engines: dict[str, sa.engine.Engine] = {}

    def engine_of(system: str) -> sa.engine.Engine:
        return engines.setdefault(url, make_engine(url))

    wiring = Wiring(cfg, engine_of)
    engine = engine_of("WorkloadManagement")
    started, cpu = time.perf_counter(), time.process_time()
    note = events.notify(engine, OP, "an00h000", {"RUN_DATE": "20261203", "STEP": "240"})
    released = events.apply_notification(engine, note, release_hooks(wiring))
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    with engine.connect() as conn:
        states = dict(conn.execute(sa.select(jobs.c.status, sa.func.count())
                                   .group_by(jobs.c.status)).all())
    assert released == count, released
    assert states == {"Waiting": count, "Standby": count}, states
    print(f"  {engine.dialect.name:7s}: {count} jobs released to Waiting (and re-armed) in "
          f"{elapsed:5.2f} s = {count / elapsed:6.0f} jobs/s (this process's CPU: {cpu:5.2f} s)")
    engine.dispose()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--users", type=int, default=10)
    parser.add_argument("--mysql-url", help="admin URL of a MariaDB allowed to create databases")
    parser.add_argument("--sqlite-only", action="store_true")
    args = parser.parse_args()
    print(machine_line(), flush=True)
    load = open("/proc/loadavg").read().split()[:3]  # noqa: SIM115 - one read
    print(f"notify an event with {args.jobs} subscribed jobs (load average {' '.join(load)}):")
    with tempfile.TemporaryDirectory() as tmp:
        run(f"sqlite:///{tmp}/bench.db", args.jobs, args.users)
    if args.sqlite_only:
        return
    from tests.support.mariadb import MariaDBServer, fresh_database

    server = None
    admin = args.mysql_url
    if admin is None:
        server = MariaDBServer()
        server.start()
        admin = server.admin_url
    try:
        with fresh_database(admin) as url:
            run(url, args.jobs, args.users)
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
