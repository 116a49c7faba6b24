"""Schema management benchmark: what Alembic costs at start-up and what an upgrade takes.

Usage::

    python bench/schema.py                       # 100,000 jobs, SQLite file
    python bench/schema.py --jobs 1000000 --mysql-url mysql+pymysql://u:pw@127.0.0.1/bench

Figures printed:
* a fresh ``init_schema`` of every installed schema (ms, in-memory SQLite, mean of 20);
* ``init_schema`` of the WMS schema already at its head: what every agent start pays (ms,
  mean of 200);
* the upgrade of a WorkloadManagement schema of the former runner at version 0 (only
  ``pilotwms_schema``, no counters, outbox, events) holding ``--jobs`` jobs: adoption by
  Alembic and its 3 steps, the first of which backfills the job counters (s).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from tempfile import TemporaryDirectory

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine import machine_line  # noqa: E402
from core.cli.dbcmd import installed_schemas  # noqa: E402
from core.db import init_schema, make_engine, upgrade_schema, utcnow, write_transaction  # noqa: E402
from wms.db import counters, outbox, scheduling_tables  # noqa: E402
from wms.db import jobs as jobs_db  # noqa: E402
from wms.db.schema import WMS_SCHEMA  # noqa: E402


def start_costs() -> tuple[float, float]:
    schemas = installed_schemas()
    started = time.perf_counter()
    for _ in range(20):
        engine = make_engine("sqlite://")
        for schema in schemas:
            init_schema(engine, schema)
        engine.dispose()
    fresh = (time.perf_counter() - started) / 20
    engine = make_engine("sqlite://")
    init_schema(engine, WMS_SCHEMA)
    started = time.perf_counter()
    for _ in range(200):
        init_schema(engine, WMS_SCHEMA)
    return fresh, (time.perf_counter() - started) / 200


def old_database(url: str, count: int) -> sa.Engine:
    """WMS as the former runner left it at version 0, holding ``count`` jobs."""
    engine = make_engine(url)
    init_schema(engine, WMS_SCHEMA)
    now = utcnow()
    new = jobs_db.NewJob(owner="alice", owner_group="demo_user", vo="demo", status="Waiting",
                         minor_status="Pilot Agent Submission", original_jdl="[]")
    for start in range(0, count, 10_000):
        with write_transaction(engine) as conn:
            jobs_db.insert_jobs(conn, [new] * min(10_000, count - start), now=now,
                                source="bench")
    with engine.begin() as conn:
        for trigger in ("jobs_count_insert", "jobs_count_delete", "jobs_count_update"):
            conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {trigger}")
        for table in (*reversed(scheduling_tables.SCHEDULING_TABLES), outbox.monitoring_outbox,
                      counters.job_counters, counters.job_count_deltas,
                      counters.job_counter_fold):
            table.drop(conn)
        for index in jobs_db.jobs.indexes:
            if index.name in ("ix_jobs_owner_id", "ix_jobs_owner_status"):
                index.drop(conn)
        conn.exec_driver_sql("DROP TABLE alembic_version_workload_management")
        conn.exec_driver_sql("UPDATE pilotwms_schema SET version = 0 "
                             "WHERE system = 'WorkloadManagement'")
    return engine


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--mysql-url", help="an empty MariaDB database (instead of SQLite)")
    args = parser.parse_args()
    print(machine_line(), flush=True)
    fresh, at_head = start_costs()
    print(f"fresh init of {len(installed_schemas())} schemas (in-memory SQLite): "
          f"{fresh * 1000:.1f} ms")
    print(f"init_schema at head (WorkloadManagement): {at_head * 1000:.2f} ms")
    with TemporaryDirectory() as tmp:
        url = args.mysql_url or f"sqlite:///{tmp}/bench.db"
        engine = old_database(url, args.jobs)
        started, cpu = time.perf_counter(), time.process_time()
        assert upgrade_schema(engine, WMS_SCHEMA) == WMS_SCHEMA.latest
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
        with engine.connect() as conn:
            total = conn.execute(sa.select(sa.func.sum(counters.job_counters.c.n))).scalar()
        assert total == args.jobs, total
        print(f"upgrade of a version-0 WMS with {args.jobs:,} jobs "
              f"({engine.dialect.name}): {wall:.2f} s wall, {cpu:.2f} s CPU")
        if args.mysql_url:
            with engine.begin() as conn:
                conn.exec_driver_sql("SET FOREIGN_KEY_CHECKS=0")
                for name in sa.inspect(conn).get_table_names():
                    conn.exec_driver_sql(f"DROP TABLE IF EXISTS `{name}`")
        engine.dispose()
    print(f"load average: {os.getloadavg()[0]:.1f} (2 cores)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
