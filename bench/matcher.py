"""Matcher benchmark: matches per second and match_job latency (p50/p99) with N waiting jobs
in M pilot processes, on SQLite and on MariaDB.

Usage::

    python bench/matcher.py                      # 10000 jobs, 4 processes, SQLite only
    python bench/matcher.py --jobs 2000 --processes 8 --start-mariadb
    python bench/matcher.py --mysql-url mysql+pymysql://root:pw@127.0.0.1/mysql

``--mysql-url`` is an admin URL: a fresh database is created on that server and dropped after.
The jobs are spread over 6 owners in 2 groups and a few requirement variants (about 30 task
queues); every pilot matches all of them. Each process times every ``match_job`` call with
``time.perf_counter``; throughput is all matches divided by the wall time of the matching phase.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.machine import machine_line  # noqa: E402
from core.db import init_schema, make_engine, write_transaction  # noqa: E402
from core.exceptions import NoMatchError  # noqa: E402
from wms.db import jobs as jobs_db  # noqa: E402
from wms.db.schema import WMS_SCHEMA  # noqa: E402
from wms.db.tables import job_jdls  # noqa: E402
from wms.logic.matching import (  # noqa: E402
    MatchScope,
    MatchSettings,
    TQJob,
    enqueue_jobs,
    match_job,
)

SITE = "LCG.CERN.cern"
RESOURCE = {"Site": SITE, "CPUTime": 86400 * 2, "GridCE": "ce1.cern.ch", "Platform": "EL9",
            "NumberOfProcessors": 4, "MaxRAM": 8000, "Tag": ["GPU"]}


def fill(url: str, n_jobs: int) -> None:
    engine = make_engine(url)
    init_schema(engine, WMS_SCHEMA)
    now = datetime.now(timezone.utc)
    variants = [{}, {"sites": [SITE]}, {"tags": ["GPU"]}, {"platforms": ["EL9"]},
                {"tags": ["4Processors", "MultiProcessor"]}]
    for start in range(0, n_jobs, 1000):
        count = min(1000, n_jobs - start)
        owners = [(f"user{i % 6}", "prod" if i % 6 < 2 else "users") for i in range(count)]
        with write_transaction(engine) as conn:
            ids = jobs_db.insert_jobs(conn, [jobs_db.NewJob(
                owner=o, owner_group=g, vo="demo", status="Waiting",
                minor_status="Pilot Agent Submission", original_jdl="[Executable = \"x\";]")
                for o, g in owners], now=now, source="bench")
            conn.execute(sa.update(job_jdls).where(job_jdls.c.job_id.in_(ids))
                         .values(processed_jdl=job_jdls.c.original_jdl))
            enqueue_jobs(conn, [TQJob(job_id=j, owner=o, owner_group=g, vo="demo",
                                      cpu_time=3600 * (1 + i % 3),
                                      **variants[i % len(variants)])  # type: ignore[arg-type]
                                for i, (j, (o, g)) in enumerate(zip(ids, owners, strict=True))],
                         now)
    engine.dispose()


def pilot_loop(url: str, start: Any, out: Any, limit: int) -> None:
    """Match until ``limit`` matches or 3 misses in a row; put (job IDs, latencies) on ``out``."""
    engine = make_engine(url)
    settings, scope = MatchSettings(candidate_cache_seconds=1.0), MatchScope("demo")
    got: list[int] = []
    latencies: list[float] = []
    misses = 0
    start.wait()
    while misses < 3 and len(got) < limit:
        began = time.perf_counter()
        try:
            got.append(match_job(engine, RESOURCE, settings=settings, scope=scope).job_id)
            latencies.append(time.perf_counter() - began)
            misses = 0
        except NoMatchError:
            misses += 1
    engine.dispose()
    out.put((got, latencies))


def run(url: str, label: str, n_jobs: int, processes: int, limit: int) -> None:
    began = time.perf_counter()
    fill(url, n_jobs)
    print(f"{label}: {n_jobs} waiting jobs queued in {time.perf_counter() - began:.1f} s")
    ctx = multiprocessing.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=pilot_loop, args=(url, start, out, limit))
             for _ in range(processes)]
    for proc in procs:
        proc.start()
    time.sleep(3)  # let every process import and connect
    began = time.perf_counter()
    start.set()
    ids: list[int] = []
    latencies: list[float] = []
    for _ in procs:
        got, lat = out.get()
        ids += got
        latencies += lat
    wall = time.perf_counter() - began
    for proc in procs:
        proc.join()
    assert len(ids) == len(set(ids)), "double match"
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    print(f"{label}: {len(ids)} matches by {processes} processes in {wall:.2f} s = "
          f"{len(ids) / wall:.0f} matches/s; latency p50 "
          f"{statistics.median(latencies) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--limit", type=int, default=0,
                        help="matches per process (default: until the jobs run out)")
    parser.add_argument("--mysql-url", help="admin URL of a MariaDB server")
    parser.add_argument("--start-mariadb", action="store_true",
                        help="start a private MariaDB (tests.support.mariadb)")
    parser.add_argument("--buffer-pool", default="128M",
                        help="InnoDB buffer pool of the private MariaDB (default 128M)")
    parser.add_argument("--no-sqlite", action="store_true")
    args = parser.parse_args()
    print(machine_line(), flush=True)
    limit = args.limit or args.jobs
    with ExitStack() as stack:
        if not args.no_sqlite:
            tmp = stack.enter_context(tempfile.TemporaryDirectory())
            run(f"sqlite:///{tmp}/bench.db", "SQLite", args.jobs, args.processes, limit)
        admin = args.mysql_url
        if args.start_mariadb and not admin:
            from tests.support.mariadb import MariaDBServer

            server = MariaDBServer(buffer_pool=args.buffer_pool)
            server.start()
            stack.callback(server.stop)
            admin = server.admin_url
        if admin:
            from tests.support.mariadb import fresh_database

            url = stack.enter_context(fresh_database(admin))
            run(url, "MariaDB", args.jobs, args.processes, limit)


if __name__ == "__main__":
    main()
