"""Submission speed: bulk parametric jobs/s to Waiting, and single submissions over HTTPS.

    python bench/submission.py [--jobs 10000] [--singles 600] [--mysql-url URL] [--singles-only]
                               [--bulk-only] [--profile-sql] [--driver pymysql,mysqldb]

Bulk: one parametric JDL of ``--jobs`` children, stored, then confirmed and optimised into
task queues in one transaction as ``confirmBulkSubmission`` does it (the real matcher code),
directly against the database, on SQLite and on MariaDB (``--mysql-url``, or a private
server started with tests.support.mariadb), with the MariaDB driver(s) of ``--driver``
(pymysql and/or mysqlclient's mysqldb, one after the other on the same server: side by side).
Singles: ``--singles`` submitJob calls over HTTPS from 4 client processes to a
``pilotwms serve --processes 2`` on SQLite. Targets (issue 3): >= 2,000 jobs/s bulk,
>= 300/s single. The CPU time of this process (and of the private MariaDB server) is printed
beside the wall time; ``--profile-sql`` adds the per-statement profile (``bench/sqlprof.py``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import requests
from sqlalchemy.engine import Connection

from bench.machine import machine_line
from bench.sqlprof import SqlProfile, cpu_seconds
from core.db import init_schema, make_engine
from core.exceptions import PilotWMSError
from wms.db.jobs import StatusRow
from wms.db.schema import WMS_SCHEMA
from wms.logic import optimizer
from wms.logic.job_description import JobLimits
from wms.logic.submission import Submitter, confirm_bulk, submit
from wms.service.common import enqueue

PARAMETRIC = ('[Executable = "analysis.sh"; Arguments = "--seed %s --index %n"; '
              'JobName = "scan_%n"; CPUTime = 3600; Site = {"LCG.CERN.cern", "LCG.CNAF.it"};'
              ' Parameters = {N}; ParameterStart = 1000; ParameterStep = 7;]')


def bulk(url: str, count: int, server_pid: int | None = None, profile: bool = False) -> None:
    engine = make_engine(url)
    init_schema(engine, WMS_SCHEMA)
    jdl = PARAMETRIC.replace("{N}", str(count))
    server = cpu_seconds(server_pid) if server_pid else 0.0
    cpu = time.process_time()
    started = time.perf_counter()
    with SqlProfile(server_pid) if profile else contextlib.nullcontext() as prof:
        ids = submit(engine, jdl, Submitter("alice", "demo_user", "demo"),
                     JobLimits(max_parametric_jobs=count)).job_ids
        stored = time.perf_counter()
        # as confirmBulkSubmission does it: confirmed and optimised in one transaction
        result = optimizer.OptimiseResult()

        def optimise(conn: Connection, todo: list[int], now: datetime,
                     rows: dict[int, StatusRow]) -> None:
            nonlocal result
            result = optimizer.optimise_in(conn, todo, enqueue=enqueue, now=now, current=rows)

        confirm_bulk(engine, ids, optimise=optimise)
    done = time.perf_counter()
    cpu = time.process_time() - cpu
    assert len(result.waiting) == count, result.failed
    server_text = f", mariadbd CPU {cpu_seconds(server_pid) - server:.2f} s" if server_pid else ""
    where = engine.dialect.name if engine.dialect.name == "sqlite" else \
        f"{engine.dialect.name}/{engine.dialect.driver}"
    print(f"  bulk {count} jobs on {where:15s}: stored in {stored - started:5.2f} s,"
          f" Waiting after {done - started:5.2f} s = {count / (done - started):7.0f} jobs/s"
          f" (CPU of this process {cpu:.2f} s = {count / cpu:,.0f} jobs per CPU second"
          f"{server_text})")
    if prof is not None:
        prof.report(f"bulk submission on {where}")
    engine.dispose()


def single_client(url: str, ca: str, cert: tuple[str, str], n: int,
                  out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    session = requests.Session()
    jdl = json.dumps(['[Executable = "/bin/true"; JobName = "single";]'])
    for _ in range(n):
        reply = session.post(url, data={"method": "submitJob", "args": jdl}, cert=cert,
                             verify=ca, timeout=60)
        assert reply.json()["OK"], reply.text
    out.put(n)


def singles(total: int) -> None:
    pilotwms = [sys.executable, "-m", "core.cli.admin"]
    with tempfile.TemporaryDirectory() as tmp:
        inst = Path(tmp) / "inst"
        subprocess.run([*pilotwms, "init", str(inst), "--port", "0"], check=True,
                       capture_output=True)
        server = subprocess.Popen([*pilotwms, "serve", "--config", str(inst / "config.yaml"),
                                   "--processes", "2", "--log-level", "WARNING"],
                                  stdout=subprocess.PIPE, text=True)
        try:
            assert server.stdout is not None
            base = server.stdout.readline().split(" at ")[1].split()[0]
            url = f"{base}/WorkloadManagement/JobManager"
            ca = str(inst / "ca/certificates")
            cert = (str(inst / "users/alice/usercert.pem"), str(inst / "users/alice/userkey.pem"))
            queue: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
            procs = [multiprocessing.Process(target=single_client,
                                             args=(url, ca, cert, total // 4, queue))
                     for _ in range(4)]
            started = time.perf_counter()
            for proc in procs:
                proc.start()
            count = sum(queue.get(timeout=600) for _ in procs)
            elapsed = time.perf_counter() - started
            for proc in procs:
                proc.join()
            print(f"  single submissions over HTTPS (SQLite, 2 server processes, 4 clients): "
                  f"{count} in {elapsed:5.2f} s = {count / elapsed:6.0f} jobs/s (each to Waiting)")
        finally:
            server.terminate()
            server.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--singles", type=int, default=600)
    parser.add_argument("--mysql-url", help="admin URL of a MariaDB allowed to create databases")
    parser.add_argument("--singles-only", action="store_true", help="skip the bulk runs")
    parser.add_argument("--bulk-only", action="store_true", help="skip the singles")
    parser.add_argument("--no-sqlite", action="store_true", help="bulk on MariaDB only")
    parser.add_argument("--profile-sql", action="store_true",
                        help="per-statement profile of the bulk runs (bench/sqlprof.py)")
    parser.add_argument("--driver", default="pymysql",
                        help="MariaDB driver(s): pymysql, mysqldb or both comma-separated")
    args = parser.parse_args()
    print(machine_line(), flush=True)
    drivers = [d.strip() for d in args.driver.split(",") if d.strip()]
    if not drivers or set(drivers) - {"pymysql", "mysqldb"}:
        parser.error("--driver: pymysql, mysqldb or both (comma-separated)")
    if args.singles_only:
        singles(args.singles)
        return
    print("bulk parametric submission, to Waiting:")
    if not args.no_sqlite:
        with tempfile.TemporaryDirectory() as tmp:
            bulk(f"sqlite:///{tmp}/bench.db", args.jobs, profile=args.profile_sql)
    from tests.support.mariadb import MariaDBServer, fresh_database, with_driver

    server = None
    admin = args.mysql_url
    if admin is None:
        server = MariaDBServer()
        server.start()
        admin = server.admin_url
    try:
        for driver in drivers:
            with fresh_database(admin) as url:
                bulk(with_driver(url, driver), args.jobs,
                     server.proc.pid if server and server.proc else None, args.profile_sql)
    except PilotWMSError as exc:
        print("  MariaDB run failed:", exc)
    finally:
        if server is not None:
            server.stop()
    if not args.bulk_only:
        singles(args.singles)


if __name__ == "__main__":
    main()
