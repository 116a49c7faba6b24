"""Server CPU per call over HTTPS: ``whoami``, single ``submitJob``, bulk parametric ``submitJob``.

    PYTHONPATH=. python -m bench.server_cpu [--calls 1000] [--bulk 10000] [--bulk-calls 3]
                                           [--processes 1] [--mysql-url URL]
                                           [--profile single|bulk]

A ``pilotwms init`` instance (SQLite file, or a fresh MariaDB database with ``--mysql-url``)
served by ``pilotwms serve --processes N``; one client with a kept-alive HTTPS connection
(user proxy, TLS client auth) calls sequentially. The server's CPU is read from /proc (user +
system seconds of the supervisor and its workers) before and after each series, so the figure
per call is what the server spent, whatever else shares the machine; the wall rate is printed
beside it with the load average (the client and the server share the cores).

Series: ``whoami`` (the RPC floor: TLS, HTTP, envelope, identity, rights), ``submitJob`` of a
one-line JDL (stored, optimised, Waiting on return), and ``submitJob`` of a parametric JDL of
``--bulk`` children then ``confirmBulkSubmission`` of its IDs, as DIRAC's client does (issue
17: >= 10,000 jobs/s; server CPU per single job <= 1 ms). Every job is checked Waiting
afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import requests
import sqlalchemy as sa

from bench.load_server import prepare, proc_stat, serve, tree
from bench.machine import machine_line
from core.db import make_engine
from wms.db.tables import jobs

PARAMETRIC = ('[Executable = "analysis.sh"; Arguments = "--seed %s --index %n"; '
              'JobName = "scan_%n"; CPUTime = 3600; Parameters = {N}; ParameterStart = 1000; '
              'ParameterStep = 7;]')


def series(label: str, calls: int, call: Callable[[], int], workers: list[int]) -> None:
    """Run ``call`` ``calls`` times; print wall rate, latency and server CPU per unit."""
    load0 = os.getloadavg()[0]
    cpu0 = sum(proc_stat(p)[0] for p in workers)
    latencies: list[float] = []
    units = 0
    began = time.perf_counter()
    for _ in range(calls):
        t0 = time.perf_counter()
        units += call()
        latencies.append(time.perf_counter() - t0)
    wall = time.perf_counter() - began
    cpu = sum(proc_stat(p)[0] for p in workers) - cpu0
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    print(f"  {label:34s} {units / wall:8.0f} /s  p50 {statistics.median(latencies) * 1e3:7.2f}"
          f" ms  p99 {p99 * 1e3:7.2f} ms  server CPU {cpu / units * 1e3:6.3f} ms per "
          f"{'job' if 'submit' in label else 'call'}  load {load0:.1f}->{os.getloadavg()[0]:.1f}",
          flush=True)


def run(base: Path, *, database: str | None, processes: int, calls: int, bulk: int,
        bulk_calls: int) -> None:
    config_path, config, users = prepare(base, users=1, shares=(50, 50), processes=processes,
                                         database=database)
    if bulk > config.operations.max_parametric_jobs:
        raise SystemExit(f"--bulk {bulk} is above Operations.MaxParametricJobs")
    from tests.support.mariadb import free_port

    port = free_port()
    ca = str(base / "inst" / "ca" / "ca.pem")  # the instance CA (the server certificate's)
    server = serve(config_path, port, processes, base / "serve.log", config.server.ca_dir or base)
    proxy = str(users[0][0])
    session = requests.Session()  # verify/cert per call: REQUESTS_CA_BUNDLE beats a session's
    origin = f"https://127.0.0.1:{port}"

    def rpc(path: str, method: str, *args: object) -> object:
        reply = session.post(f"{origin}/{path}", timeout=600, verify=ca, cert=proxy,
                             data={"method": method, "args": json.dumps(list(args))})
        body = reply.json()
        assert body["OK"], body
        return body["Value"]

    def whoami() -> int:
        rpc("Framework/Registry", "whoami")
        return 1

    def single() -> int:
        rpc("WorkloadManagement/JobManager", "submitJob", '[Executable = "/bin/true";]')
        return 1

    parametric = PARAMETRIC.replace("{N}", str(bulk))

    def parametric_call() -> int:  # DIRAC's bulk: stored Submitting, then confirmed
        ids = rpc("WorkloadManagement/JobManager", "submitJob", parametric)
        assert isinstance(ids, list) and len(ids) == bulk, ids
        rpc("WorkloadManagement/JobManager", "confirmBulkSubmission", ids)
        return bulk

    try:
        workers = tree(server.pid)
        backend = "MariaDB" if database else "SQLite"
        print(f"{backend}, pilotwms serve --processes {processes}, one kept-alive client:")
        for _ in range(50):  # warm-up: imports, compiled statements, TLS session
            whoami()
            single()
        series("whoami", calls, whoami, workers)
        series("submitJob, one job", calls, single, workers)
        series(f"submitJob, parametric x{bulk}", bulk_calls, parametric_call, workers)
        engine = make_engine(str(config.database_url("WorkloadManagement")))
        with engine.connect() as conn:
            counts = dict(conn.execute(sa.select(jobs.c.status, sa.func.count())
                                       .group_by(jobs.c.status)).all())
        engine.dispose()
        print(f"  job statuses after the run: {counts}")
        assert set(counts) == {"Waiting"}, counts
    finally:
        server.terminate()
        server.wait(60)


def profile_calls(base: Path, calls: int, bulk: int) -> None:
    """Where ``submitJob`` spends the server's CPU outside the IOLoop: the JobManager in a
    thread of this process (SQLite), each call's blocking part (handler, logic, database,
    reply encoding) under cProfile on thread CPU time; one kept-alive client. ``bulk`` > 1:
    ``calls`` parametric submissions of ``bulk`` jobs, each confirmed."""
    import cProfile
    import pstats

    from tests.support.servers import ThreadedServer

    from core.rpc.server import RPCHandler
    from wms.service.job_manager import JobManagerService

    _, config, users = prepare(base, users=1, shares=(50, 50), processes=1, database=None)
    profiler = cProfile.Profile(time.thread_time)
    original = RPCHandler._run_blocking
    spent = {"cpu": 0.0, "on": 0.0}

    def profiled(self: RPCHandler, *args: object) -> bytes:
        if not spent["on"]:
            return original(self, *args)  # type: ignore[arg-type]
        t0 = time.thread_time()
        try:
            return profiler.runcall(original, self, *args)  # type: ignore[arg-type]
        finally:
            spent["cpu"] += time.thread_time() - t0

    RPCHandler._run_blocking = profiled  # type: ignore[method-assign]
    try:
        with ThreadedServer(config, [JobManagerService]) as server:
            session = requests.Session()
            ca, proxy = str(base / "inst" / "ca" / "ca.pem"), str(users[0][0])

            def rpc(method: str, arg: object) -> object:
                reply = session.post(f"{server.url}/WorkloadManagement/JobManager",
                                     data={"method": method, "args": json.dumps([arg])},
                                     verify=ca, cert=proxy, timeout=600)
                body = reply.json()
                assert body["OK"], body
                return body["Value"]

            def submit(size: int) -> None:
                if size == 1:
                    rpc("submitJob", '[Executable = "/bin/true";]')
                else:
                    rpc("confirmBulkSubmission",
                        rpc("submitJob", PARAMETRIC.replace("{N}", str(size))))

            for _ in range(50):
                submit(1)
            submit(min(bulk, 100))
            spent["on"] = 1.0
            for _ in range(calls):
                submit(bulk)
    finally:
        RPCHandler._run_blocking = original  # type: ignore[method-assign]
    jobs_done = calls * bulk
    print(f"  blocking part of submitJob x{bulk}: {spent['cpu'] / jobs_done * 1e3:.3f} ms of "
          f"thread CPU per job (profiler overhead included), top functions by cumulative time:")
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(45)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=1000, help="calls per single series")
    parser.add_argument("--bulk", type=int, default=10_000, help="children per parametric call")
    parser.add_argument("--bulk-calls", type=int, default=3)
    parser.add_argument("--processes", type=int, default=1, help="server worker processes")
    parser.add_argument("--mysql-url", help="admin URL of a MariaDB allowed to create databases")
    parser.add_argument("--profile", choices=("single", "bulk"),
                        help="profile --calls single submissions, or --bulk-calls parametric "
                             "ones of --bulk jobs, in process instead (SQLite)")
    args = parser.parse_args()
    print(machine_line(), flush=True)
    if args.profile:
        with tempfile.TemporaryDirectory() as tmp:
            if args.profile == "single":
                profile_calls(Path(tmp), args.calls, 1)
            else:
                profile_calls(Path(tmp), args.bulk_calls, args.bulk)
        return
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as tmp:
        if args.mysql_url:
            from tests.support.mariadb import fresh_database

            with fresh_database(args.mysql_url) as url:
                run(Path(tmp), database=url, processes=args.processes, calls=args.calls,
                    bulk=args.bulk, bulk_calls=args.bulk_calls)
        else:
            run(Path(tmp), database=None, processes=args.processes, calls=args.calls,
                bulk=args.bulk, bulk_calls=args.bulk_calls)


if __name__ == "__main__":
    main()
