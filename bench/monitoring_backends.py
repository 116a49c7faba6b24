"""Monitoring and accounting figures (issue 11).

    python -m bench.monitoring_backends [--backend sql|opensearch|both] [--records 100000]
                               [--report-records 1000000] [--scrapes 50]

(``-m`` from the repository root: run as a file, this module would hide the ``monitoring``
package.)

1. **accounting write**: ``--records`` finished-job records stored through
   ``monitoring.logic.accounting.store`` (upsert of the records, then the hourly buckets of
   every hour they touch rebuilt), in batches of ``--batch`` (default: all at once, as one
   shipping cycle with ``Monitoring.BatchSize`` = 100000). Target: 100,000 in < 10 s per
   backend. (With smaller batches each one rebuilds the buckets of all the hours it touches:
   records spread over 30 days make that cost grow with the table.)
2. **30-day report**: ``CPUUsage`` grouped by site, daily, over 30 days holding
   ``--report-records`` records (written as in 1.), median of 5 runs of
   ``monitoring.logic.reports.build_report``. Target: 1M records in < 1 s (search backend),
   < 2 s (SQL).
3. **scrape**: ``GET /metrics`` of ``pilotwms serve --processes 2`` (token access), after 200
   RPC calls, median and 95th percentile of ``--scrapes`` scrapes. Target: < 50 ms.

Records are realistic rather than uniform: 20 sites (one CE each), 40 users in 4 groups,
3 job types, 4 final statuses with a few minor statuses each, end times spread over 30 days.
The OpenSearch backend runs against ``osmem-server`` (the in-memory stand-in the tests use): its
figures are the stand-in's, not a cluster's.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import requests
import yaml
from tests.support.osmem import OsmemServer

from bench.machine import machine_line
from core.db import init_schema, make_engine
from monitoring.db.base import Backend
from monitoring.db.search import OpenSearchBackend
from monitoring.db.sql import SQLBackend
from monitoring.db.tables import MONITORING_SCHEMA
from monitoring.logic import accounting
from monitoring.logic.reports import ReportRequest, build_report
from monitoring.types import TYPES

JOB = TYPES["Job"]
END = datetime(2026, 12, 1, tzinfo=timezone.utc)
SITES = [f"LCG.Site{i:02d}.org" for i in range(20)]
USERS = [f"user{i:02d}" for i in range(40)]
STATUSES = {"Done": ["Execution Complete"],
            "Failed": ["Application Finished With Errors", "Job stalled: pilot not running",
                       "Job has reached the CPU limit of the queue"],
            "Killed": ["Marked for termination"], "Completed": ["Pending Requests"]}


def records(count: int, first_id: int, rng: random.Random) -> list[dict[str, Any]]:
    out = []
    for i in range(count):
        site = rng.choice(SITES)
        user = rng.choice(USERS)
        status = rng.choices(list(STATUSES), weights=[80, 15, 4, 1])[0]
        cpu = rng.uniform(10, 20_000)
        wall = cpu / rng.uniform(0.5, 0.99)
        end = END - timedelta(seconds=rng.uniform(0, 30 * 86400))
        out.append({
            "JobID": first_id + i, "User": user, "UserGroup": f"group{int(user[4:]) % 4}",
            "VO": "bench", "Site": site, "GridCE": f"ce.{site.lower()}",
            "JobType": rng.choice(["User", "MCSimulation", "Reconstruction"]),
            "JobGroup": "", "FinalMajorStatus": status,
            "FinalMinorStatus": rng.choice(STATUSES[status]), "CPUTime": cpu,
            "NormCPUTime": cpu * 14.5, "WallClockTime": wall, "ExecTime": wall,
            "MemoryPeak": rng.uniform(1e5, 4e6), "Processors": 1,
            "SubmissionTime": end - timedelta(seconds=wall + 600),
            "StartTime": end - timedelta(seconds=wall), "EndTime": end})
    return out


def write(backend: Backend, state: Any, total: int, *, first_id: int = 1,
          batch: int = 100_000) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) to store ``total`` records."""
    rng = random.Random(first_id)  # noqa: S311 - test data
    elapsed = cpu = 0.0
    for start in range(0, total, batch):
        chunk = records(min(batch, total - start), first_id + start, rng)
        began, began_cpu = time.perf_counter(), time.process_time()
        accounting.store(backend, state, JOB, chunk)
        elapsed += time.perf_counter() - began
        cpu += time.process_time() - began_cpu
    return elapsed, cpu


def report_time(backend: Backend, runs: int = 5) -> tuple[float, float, int]:
    """(median wall seconds, median CPU seconds of this process, groups) of the report."""
    request = ReportRequest("Job", "CPUUsage", END - timedelta(days=30), END, "Site",
                            granularity=86400)
    times, cpus, groups = [], [], 0
    for _ in range(runs):
        began, began_cpu = time.perf_counter(), time.process_time()
        report = build_report(backend, request)
        times.append(time.perf_counter() - began)
        cpus.append(time.process_time() - began_cpu)
        groups = len(report["data"])
    return statistics.median(times), statistics.median(cpus), groups


def bucket_docs(backend: Backend) -> int:
    from monitoring.db.base import Aggregation

    rows = backend.aggregate(TYPES["JobBuckets"], Aggregation(END - timedelta(days=31), END,
                                                              sums=("Entries",)))
    return rows[0].count if rows else 0


def bench_backend(name: str, make: Any, state: Any, args: argparse.Namespace) -> None:
    backend = make()
    backend.setup()
    seconds, cpu = write(backend, state, args.records, batch=args.batch)
    print(f"[{name}] accounting write: {args.records:,} records in {seconds:.2f} s "
          f"({args.records / seconds:,.0f} records/s, buckets included; "
          f"{cpu:.2f} s CPU in this process)", flush=True)
    backend = make()
    backend.setup()
    if args.report_records:
        seconds, _ = write(backend, state, args.report_records, first_id=10_000_000,
                           batch=args.batch)
        median, cpu, groups = report_time(backend)
        print(f"[{name}] 30-day report by site over {args.report_records:,} records "
              f"({bucket_docs(backend):,} hourly buckets; written in {seconds:.1f} s): "
              f"median {median * 1000:.0f} ms ({cpu * 1000:.0f} ms CPU in this process), "
              f"{groups} sites", flush=True)
    backend.close()


def bench_scrape(args: argparse.Namespace, base: Path) -> None:
    directory = base / "inst"
    subprocess.run([sys.executable, "-m", "core.cli.admin", "init", str(directory), "--port",
                    "0"], check=True, capture_output=True)
    config = directory / "config.yaml"
    data = yaml.safe_load(config.read_text())
    data["Monitoring"] = {"RunInServer": False, "ComponentPeriod": 0}
    config.write_text(yaml.safe_dump(data))
    token = uuid.uuid4().hex
    proc = subprocess.Popen([sys.executable, "-m", "core.cli.admin", "serve", "--config",
                             str(config), "--port", "0", "--processes", "2", "--log-level",
                             "WARNING"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, start_new_session=True,
                            env={**os.environ, "PILOTWMS_METRICS_TOKEN": token})
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().split(" at ")[1].split()[0]
        ca = str(directory / "ca" / "certificates")
        session = requests.Session()
        for i in range(200):
            session.post(f"{url}/Framework/Registry", data={"method": "ping" if i % 2
                                                              else "echo"}, verify=ca)
        headers = {"Authorization": f"Bearer {token}"}
        times, size = [], 0
        for _ in range(args.scrapes):
            began = time.perf_counter()
            reply = requests.get(f"{url}/metrics", headers=headers, verify=ca, timeout=30)
            times.append(time.perf_counter() - began)
            size = len(reply.content)
            assert reply.status_code == 200
        times.sort()
        p95 = times[int(len(times) * 0.95) - 1]
        print(f"[scrape] /metrics of a 2-process server ({size:,} bytes, new TLS connection "
              f"each): median {statistics.median(times) * 1000:.1f} ms, "
              f"p95 {p95 * 1000:.1f} ms", flush=True)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", choices=["sql", "opensearch", "both"], default="both")
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--report-records", type=int, default=1_000_000)
    parser.add_argument("--scrapes", type=int, default=50)
    parser.add_argument("--batch", type=int, default=100_000)
    args = parser.parse_args()
    print(machine_line(), flush=True)
    print(f"load average before: {os.getloadavg()[0]:.2f}", flush=True)
    with tempfile.TemporaryDirectory(prefix="pilotwms-bench-mon-") as tmp:
        base = Path(tmp)
        state = make_engine(f"sqlite:///{base / 'state.db'}")
        init_schema(state, MONITORING_SCHEMA)
        if args.backend in ("sql", "both"):
            counter = iter(range(100))

            def sql() -> Backend:
                return SQLBackend(make_engine(f"sqlite:///{base / f'mon{next(counter)}.db'}"))

            bench_backend("SQL/SQLite", sql, state, args)
        if args.backend in ("opensearch", "both"):
            with OsmemServer(base / "osmem") as server:
                def search() -> Backend:
                    return OpenSearchBackend([server.url], prefix=f"b{uuid.uuid4().hex[:8]}",
                                             timeout=600)

                bench_backend("OpenSearch/osmem", search, state, args)
        if args.scrapes:
            bench_scrape(args, base)
    print(f"load average after: {os.getloadavg()[0]:.2f}", flush=True)


if __name__ == "__main__":
    main()
