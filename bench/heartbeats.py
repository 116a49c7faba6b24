"""Heartbeat and wrapper status-report ingestion through JobStateUpdate's write-behind queue.

Usage::

    python bench/heartbeats.py                          # in process, SQLite and a private MariaDB
    python bench/heartbeats.py --https --processes 2    # also over HTTPS (pilotwms serve, MariaDB)
    python bench/heartbeats.py --mysql-url mysql+pymysql://root:pw@127.0.0.1:3306/mysql
    python bench/heartbeats.py --https --driver pymysql,mysqldb   # both MariaDB drivers

``--driver``: the MariaDB driver(s) of the services, pymysql and/or mysqlclient's ``mysqldb``
(comma-separated: measured one after the other in the same run, on the same server).

**In process** (``wms.logic.reports.committer``, the queue each server process runs):
``--producers`` asyncio producers, each owning its slice of ``--jobs`` Running jobs, send
reports one after the other for ``--seconds`` and wait for each acknowledgement (the future
resolving once the transaction committed). Kinds: ``heartbeat`` (``sendHeartBeat`` with the
seven dynamic values the pilot's watchdog sends and the ``StandardOutput`` static parameter),
``status`` (``setJobStatus`` changing the minor status, so each writes a logging row).
``--stages``: first, the client CPU per heartbeat of ``apply_reports`` itself (batches of 40,
no queue), by statement. Printed: reports/s, p50/p99 acknowledgement latency, transactions
and mean batch size,
InnoDB deadlocks during the run (``Innodb_deadlocks``; target 0) and lost rows (heartbeat
data and logging rows in the database minus those acknowledged; target 0).

**Over HTTPS** (``--https``): ``pilotwms serve --processes N`` on 127.0.0.1 over the same
MariaDB; ``--clients`` kept-alive connections with a pilot token send ``sendHeartBeat`` calls
(one job each) for ``--seconds``, then ``sendHeartBeats`` calls of ``--bulk`` jobs; printed:
calls/s, heartbeats/s, p50/p99 per call, server CPU (of the worker processes) per call,
MariaDB's and this load generator's CPU, deadlocks and lost rows, load average.

**Profile** (``--profile``, alone): a one-process server in a thread of this process (SQLite,
or ``--profile-mariadb`` / ``--mysql-url`` with ``--driver``), single ``sendHeartBeat`` calls
or, with ``--bulk N``, ``sendHeartBeats`` of N jobs; the IOLoop thread's and the flusher
thread's CPU per heartbeat, first without then under cProfile, and their top functions
(``--profile-sort cumulative``, ``--profile-top``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import ssl
import sys
import tempfile
import time
import urllib.parse
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# the repository root, not bench/ (whose monitoring.py would hide the monitoring package)
_HERE = Path(__file__).resolve().parent
sys.path[:] = [str(_HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import sqlalchemy as sa  # noqa: E402

from bench.machine import machine_line  # noqa: E402
from core.db import init_schema, make_engine, utcnow  # noqa: E402
from core.security.identity import Identity  # noqa: E402
from wms.db import jobs as jobs_db  # noqa: E402
from wms.db.schema import WMS_SCHEMA  # noqa: E402
from wms.db.tables import job_heartbeats, job_logging  # noqa: E402
from wms.logic import reports  # noqa: E402

PILOT = Identity(auth_method="token", username="pilot", group="demo_pilot", vo="demo",
                 valid_dn=True, valid_group=True, properties=frozenset({"GenericPilot"}))
STATE = "WorkloadManagement/JobStateUpdate"
OUTPUT = "".join(f"event {i} processed\n" for i in range(20))  # the watchdog's peek


def dynamic(n: int) -> dict[str, Any]:
    """What pilot.watchdog samples."""
    return {"CPUConsumed": 12.5 + n, "RSS": 204800, "Vsize": 409600, "MemoryUsed": 204800,
            "WallClockTime": 60.0 * n, "AvailableDiskSpace": 51200, "LoadAverage": 1.5}


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def make_jobs(engine: sa.engine.Engine, count: int, owner: str = "loaduser00",
              group: str = "load_a") -> list[int]:
    with engine.begin() as conn:
        return jobs_db.insert_jobs(conn, [jobs_db.NewJob(
            owner=owner, owner_group=group, vo="demo", status="Running",
            minor_status="Application", original_jdl="[]")] * count, now=utcnow(),
            source="bench")


def deadlocks(engine: sa.engine.Engine) -> int:
    if engine.dialect.name == "sqlite":
        return 0
    with engine.connect() as conn:
        return int(conn.execute(sa.text("SHOW GLOBAL STATUS LIKE 'Innodb_deadlocks'")).one()[1])


def rows(engine: sa.engine.Engine) -> tuple[int, int]:
    """(heartbeat data rows, logging rows written by status reports)."""
    with engine.connect() as conn:
        beats = conn.execute(sa.select(sa.func.count()).select_from(job_heartbeats)).scalar_one()
        logged = conn.execute(sa.select(sa.func.count()).select_from(job_logging)
                              .where(job_logging.c.source == "JobWrapper")).scalar_one()
    return int(beats), int(logged)


# -- in process ---------------------------------------------------------------------------------


@dataclass
class Result:
    label: str
    acked: int = 0
    seconds: float = 0.0
    latency: list[float] = field(default_factory=list)
    batches: int = 0
    deadlocks: int = 0
    lost: int = 0
    errors: int = 0
    cpu: float = 0.0

    def line(self) -> str:
        rate = self.acked / self.seconds if self.seconds else 0.0
        mean = self.acked / self.batches if self.batches else 0.0
        return (f"  {self.label:36s} {rate:8.0f}/s  p50 {percentile(self.latency, .5) * 1e3:6.1f}"
                f" ms  p99 {percentile(self.latency, .99) * 1e3:6.1f} ms  {self.batches:6d} "
                f"transactions (mean {mean:5.0f})  CPU {self.cpu / max(self.acked, 1) * 1e6:5.0f}"
                f" us/report  deadlocks {self.deadlocks}  lost {self.lost}  errors "
                f"{self.errors}")


def in_process(url: str, label: str, kind: str, *, jobs: int, producers: int,
               seconds: float, linger_ms: float, writers: int = 1) -> Result:
    """``writers`` processes (as ``serve --processes``), each with its queue and its share of
    the producers and jobs."""
    engine = make_engine(url)
    init_schema(engine, WMS_SCHEMA)
    ids = make_jobs(engine, jobs)
    before_rows, before_locks = rows(engine), deadlocks(engine)
    engine.dispose()
    result = Result(f"{label} {kind}" + (f", {writers} processes" if writers > 1 else ""))
    share = len(ids) // writers
    parts = [ids[i * share:(i + 1) * share] for i in range(writers)]
    with multiprocessing.get_context("fork").Pool(writers) as pool:
        found = pool.starmap(_writer, [(url, kind, part, max(1, producers // writers), seconds,
                                        linger_ms) for part in parts])
    for part in found:
        result.acked += part.acked
        result.seconds = max(result.seconds, part.seconds)
        result.latency += part.latency
        result.batches += part.batches
        result.errors += part.errors
        result.cpu += part.cpu
    engine = make_engine(url)
    result.deadlocks = deadlocks(engine) - before_locks
    after = rows(engine)
    written = after[0] - before_rows[0] if kind == "heartbeat" else after[1] - before_rows[1]
    result.lost = result.acked - written
    engine.dispose()
    return result


def _writer(url: str, kind: str, ids: list[int], producers: int, seconds: float,
            linger_ms: float) -> Result:
    """One process: its queue and its producers."""
    engine = make_engine(url)
    committer = reports.committer(engine, settings=reports.GroupCommitSettings(
        linger_ms=linger_ms))
    result = Result(kind)
    per = max(1, len(ids) // producers)

    async def producer(index: int, stop_at: float) -> None:
        mine = ids[index * per:(index + 1) * per] or ids[:1]
        n = 0
        while time.perf_counter() < stop_at:
            job = mine[n % len(mine)]
            report: Any = (reports.Heartbeat(PILOT, job, dynamic(n), {"StandardOutput": OUTPUT})
                           if kind == "heartbeat" else
                           reports.StatusReport(PILOT, job, minor=f"Step {n}",
                                                source="JobWrapper"))
            began = time.perf_counter()
            try:
                await committer.run(report)
            except Exception:  # noqa: BLE001 - counted
                result.errors += 1
            else:
                result.latency.append(time.perf_counter() - began)
                result.acked += 1
            n += 1

    async def main() -> None:
        stop_at = time.perf_counter() + seconds
        await asyncio.gather(*(producer(i, stop_at) for i in range(producers)))

    cpu0, began = time.process_time(), time.perf_counter()
    asyncio.run(main())
    result.seconds = time.perf_counter() - began
    result.cpu = time.process_time() - cpu0
    committer.close()
    result.batches = committer.stats.batches
    engine.dispose()
    return result


def stages(url: str, label: str, *, batch: int = 40, batches: int = 50) -> list[str]:
    """Client CPU and wall per heartbeat of ``apply_reports`` (batches of ``batch`` watchdog
    heartbeats, no queue), split by statement: what one flush costs the server process."""
    from wms.db import reports as reports_db

    engine = make_engine(url)
    init_schema(engine, WMS_SCHEMA)
    ids = make_jobs(engine, 2000)
    wall: dict[str, float] = {}
    cpu: dict[str, float] = {}
    saved = []

    def timed(module: Any, name: str) -> None:
        inner = getattr(module, name)
        saved.append((module, name, inner))

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            c0, w0 = time.process_time(), time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                wall[name] = wall.get(name, 0.0) + time.perf_counter() - w0
                cpu[name] = cpu.get(name, 0.0) + time.process_time() - c0
        setattr(module, name, wrapper)

    for name in ("set_heartbeat_times", "add_heartbeat_rows", "upsert_parameters",
                 "take_commands_of"):
        timed(reports_db, name)
    timed(jobs_db, "status_of")
    try:
        n = 0
        for rep in range(batches + 10):  # 10 to warm up
            if rep == 10:
                wall.clear()
                cpu.clear()
                c0, w0 = time.process_time(), time.perf_counter()
            reports.apply_reports(engine, [
                reports.Heartbeat(PILOT, ids[(n + i) % len(ids)], dynamic(n + i),
                                  {"StandardOutput": OUTPUT}) for i in range(batch)])
            n += batch
        total_cpu, total_wall = time.process_time() - c0, time.perf_counter() - w0
    finally:
        for module, name, inner in saved:
            setattr(module, name, inner)
        engine.dispose()
    count = batch * batches
    lines = [f"  {label} apply_reports, batches of {batch}: {total_cpu / count * 1e6:.0f} us "
             f"client CPU, {total_wall / count * 1e6:.0f} us wall per heartbeat"]
    lines += [f"    {name:22s} CPU {cpu[name] / count * 1e6:5.0f} us  wall "
              f"{wall[name] / count * 1e6:5.0f} us" for name in wall]
    return lines


# -- over HTTPS ---------------------------------------------------------------------------------


async def _https(port: int, ca_dir: Path, token: str, ids: list[int], *, clients: int,
                 seconds: float, bulk: int) -> dict[str, Any]:
    from bench.load import Connection

    context = ssl.create_default_context(capath=str(ca_dir))
    headers = {"Authorization": f"Bearer {token}"}
    out: dict[str, Any] = {"latency": [], "calls": 0, "beats": 0, "errors": 0}
    per = max(1, len(ids) // clients)

    async def client(index: int, stop_at: float) -> None:
        conn = Connection(port, context)
        mine = ids[index * per:(index + 1) * per] or ids[:1]
        n = 0
        while time.perf_counter() < stop_at:
            if bulk > 1:
                chosen = [mine[(n * bulk + k) % len(mine)] for k in range(min(bulk, len(mine)))]
                args: list[Any] = [[{"JobID": j, "Dynamic": dynamic(n),
                                     "Static": {"StandardOutput": OUTPUT}} for j in chosen]]
                method = "sendHeartBeats"
            else:
                chosen = [mine[n % len(mine)]]
                args, method = [chosen[0], dynamic(n), {"StandardOutput": OUTPUT}], "sendHeartBeat"
            body = urllib.parse.urlencode({"method": method, "args": json.dumps(args)}).encode()
            began = time.perf_counter()
            try:
                status, data = await conn.post(f"/{STATE}", body, headers)
                reply = json.loads(data)
                ok = status == 200 and reply.get("OK") and (
                    bulk <= 1 or not reply["Value"]["Failed"])
            except (OSError, ssl.SSLError, asyncio.IncompleteReadError, ValueError):
                ok = False
                await conn.close()
            if ok:
                out["latency"].append(time.perf_counter() - began)
                out["calls"] += 1
                out["beats"] += len(chosen)
            else:
                out["errors"] += 1
            n += 1
        await conn.close()

    stop_at = time.perf_counter() + seconds
    began = time.perf_counter()
    await asyncio.gather(*(client(i, stop_at) for i in range(clients)))
    out["seconds"] = time.perf_counter() - began
    return out


def over_https(admin_url: str, *, processes: int, clients: int, seconds: float, bulk: int,
               jobs: int, base: Path, mariadb_pid: int | None,
               group_commit: bool = True, driver: str = "pymysql") -> list[str]:
    from tests.support.mariadb import free_port, fresh_database, with_driver

    from bench.load_server import prepare, proc_stat, serve, tree
    from core.security.tokens import TokenIssuer

    lines = []
    with fresh_database(admin_url) as fresh:
        url = with_driver(fresh, driver)
        config_path, config, _ = prepare(base, users=1, shares=(70, 30), processes=processes,
                                         database=url)
        assert config.auth.signing is not None
        token = TokenIssuer(config.auth.signing).issue("pilot", group="demo_pilot", vo="demo",
                                                       lifetime=3600)
        if not group_commit:  # each report in its own transaction, as before the queue
            import yaml

            data = yaml.safe_load(config_path.read_text())
            data["Systems"]["WorkloadManagement"]["Services"]["JobStateUpdate"] = {
                "Options": {"GroupCommit": False}}
            config_path.write_text(yaml.safe_dump(data))
        engine = make_engine(url)
        ids = make_jobs(engine, jobs)
        port = free_port()
        server = serve(config_path, port, processes, base / "serve.log",
                       config.server.ca_dir or base)
        try:
            workers = tree(server.pid)
            # a client's batch holds at most its own slice of the jobs (one heartbeat each)
            carried = min(bulk, max(1, jobs // clients))
            for label, size in (("sendHeartBeat", 1), (f"sendHeartBeats x{carried}", bulk)):
                rows0, locks0 = rows(engine), deadlocks(engine)
                cpu0 = sum(proc_stat(p)[0] for p in workers)
                db0 = proc_stat(mariadb_pid)[0] if mariadb_pid else 0.0
                load0 = os.getloadavg()[0]
                client0 = time.process_time()
                got = asyncio.run(_https(port, config.server.ca_dir or base, token, ids,
                                         clients=clients, seconds=seconds, bulk=size))
                cpu = sum(proc_stat(p)[0] for p in workers) - cpu0
                client_cpu = time.process_time() - client0
                db_cpu = (proc_stat(mariadb_pid)[0] - db0) if mariadb_pid else 0.0
                written = rows(engine)[0] - rows0[0]
                wall = got["seconds"]
                lat = got["latency"]
                lines.append(
                    f"  {driver:7s} {label:22s} {got['calls'] / wall:7.0f} calls/s "
                    f"{got['beats'] / wall:7.0f}"
                    f" heartbeats/s  p50 {percentile(lat, .5) * 1e3:6.1f} ms  p99 "
                    f"{percentile(lat, .99) * 1e3:6.1f} ms  server CPU "
                    f"{cpu / max(got['calls'], 1) * 1e3:5.2f} ms/call "
                    f"({cpu / wall * 100:.0f} % of a core), MariaDB {db_cpu / wall * 100:.0f} %"
                    f", client {client_cpu / wall * 100:.0f} %"
                    f"  errors {got['errors']}  deadlocks {deadlocks(engine) - locks0}  lost "
                    f"{got['beats'] - written}  load {load0:.1f}->{os.getloadavg()[0]:.1f}")
        finally:
            server.terminate()
            server.wait(60)
            engine.dispose()
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--producers", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--linger-ms", type=float, default=2.0)
    parser.add_argument("--writers", default="1,2",
                        help="processes writing in process (comma-separated runs)")
    parser.add_argument("--mysql-url", help="admin URL of a MariaDB server")
    parser.add_argument("--driver", default="pymysql",
                        help="MariaDB driver(s): pymysql, mysqldb or both comma-separated")
    parser.add_argument("--no-mariadb", action="store_true", help="SQLite only")
    parser.add_argument("--no-in-process", action="store_true")
    parser.add_argument("--https", action="store_true", help="also over HTTPS (MariaDB)")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--bulk", type=int, default=100)
    parser.add_argument("--no-group-commit", action="store_true",
                        help="over HTTPS: the server writes each report in its own transaction")
    parser.add_argument("--stages", action="store_true",
                        help="also: client CPU per heartbeat of one flush, by statement")
    parser.add_argument("--profile-sort", default="tottime",
                        help="--profile: pstats order (tottime, cumulative)")
    parser.add_argument("--profile-top", type=int, default=18)
    parser.add_argument("--profile-mariadb", action="store_true",
                        help="--profile on a private MariaDB (with --driver)")
    parser.add_argument("--profile", action="store_true",
                        help="only: cProfile of the server's IOLoop and flusher threads "
                        "under single calls (with --bulk N > 1: sendHeartBeats of N jobs; "
                        "--mysql-url: on that MariaDB, with --driver)")
    args = parser.parse_args()
    print(machine_line(), flush=True)
    args.bulk_set = any(a == "--bulk" or a.startswith("--bulk=") for a in sys.argv[1:])
    drivers = [d.strip() for d in args.driver.split(",") if d.strip()]
    if not drivers or set(drivers) - {"pymysql", "mysqldb"}:
        parser.error("--driver: pymysql, mysqldb or both (comma-separated)")
    if args.profile:
        with ExitStack() as stack:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            database, admin = None, args.mysql_url
            if args.profile_mariadb and not admin:
                from tests.support.mariadb import MariaDBServer

                mariadb = MariaDBServer(buffer_pool="256M")
                mariadb.start()
                stack.callback(mariadb.stop)
                admin = mariadb.admin_url
            if admin:
                from tests.support.mariadb import fresh_database, with_driver

                database = with_driver(stack.enter_context(fresh_database(admin)),
                                       drivers[0])
            bulk = args.bulk if args.bulk_set else 1
            print(f"profile: load average {os.getloadavg()[0]:.1f}", flush=True)
            from bench.heartbeat_profile import profile_server

            print("\n".join(profile_server(3000, 8, tmp, bulk=bulk, database=database,
                                           top=args.profile_top, sort=args.profile_sort)))
        return
    print(f"heartbeats: load average {os.getloadavg()[0]:.1f} at start, "
          f"{os.cpu_count()} CPUs")
    with ExitStack() as stack:
        base = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        admin, pid = args.mysql_url, None
        if not admin and not args.no_mariadb:
            from tests.support.mariadb import MariaDBServer

            mariadb = MariaDBServer(buffer_pool="256M")
            mariadb.start()
            stack.callback(mariadb.stop)
            admin = mariadb.admin_url
            pid = int((mariadb.base / "mariadbd.pid").read_text())
        if not args.no_in_process:
            print(f"in process: {args.producers} producers, {args.jobs} jobs, "
                  f"{args.seconds:.0f} s each, linger {args.linger_ms} ms")
            targets = [(f"sqlite:///{base / 'bench.db'}", "SQLite")]
            if admin:
                from tests.support.mariadb import fresh_database, with_driver

                for driver in drivers:
                    targets.append((with_driver(stack.enter_context(fresh_database(admin)),
                                                driver), f"MariaDB/{driver}"))
            for url, label in targets:
                if args.stages:
                    print("\n".join(stages(url, label)), flush=True)
                for writers in (int(w) for w in args.writers.split(",")):
                    for kind in ("heartbeat", "status"):
                        print(in_process(url, label, kind, jobs=args.jobs,
                                         producers=args.producers, seconds=args.seconds,
                                         linger_ms=args.linger_ms, writers=writers).line(),
                              flush=True)
        if args.https:
            if not admin:
                sys.exit("--https needs MariaDB")
            print(f"over HTTPS: pilotwms serve --processes {args.processes}, MariaDB, "
                  f"{args.clients} kept-alive connections, {args.seconds:.0f} s each"
                  + (", GroupCommit off" if args.no_group_commit else ""))
            for driver in drivers:
                for line in over_https(admin, processes=args.processes, clients=args.clients,
                                       seconds=args.seconds, bulk=args.bulk, jobs=args.jobs,
                                       base=base / f"https-{driver}", mariadb_pid=pid,
                                       group_commit=not args.no_group_commit, driver=driver):
                    print(line, flush=True)


if __name__ == "__main__":
    main()
