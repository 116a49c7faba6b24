"""Transformation system benchmark (logic and agents in process, no HTTPS in the figures).

Usage::

    python bench/transformation.py                      # SQLite, the issue's sizes
    python bench/transformation.py --start-mariadb --no-sqlite
    python bench/transformation.py --start-mariadb --no-sqlite --driver pymysql,mysqldb
    python bench/transformation.py --files 20000 --sizes 10000,100000   # quicker

Figures printed, for each database:

1. **Attach and group**: 5 active transformations (Standard, GroupSize 10) with different
   queries; ``--files`` files (default 100,000) registered in bulk with the real
   ``add_files`` (5,000 per call) into directories whose metadata the queries select; then
   the TransformationAgent (one copy) runs until every file is attached to every matching
   transformation and grouped. Printed: registration time (the catalog's, journal included)
   and the time from the end of the registration to "all grouped" (goal < 30 s).
2. **Bulk submission**: the WorkflowTaskAgent's claim / bulk submit (validation, one WMS
   transaction per 1,000 jobs, the optimiser with one bulk replica lookup per batch, task
   queues) / record cycle for 10,000 tasks of one transformation: jobs/s (goal >= 2,000).
3. **Event-driven cost per file against the catalog's size**: the catalog is filled to each
   of ``--sizes`` (default 10k, 100k, 1M files that match nothing), then 2,000 matching files
   are registered and the journal is followed: microseconds per file (goal: flat).

Wall and CPU time of this process are printed; on SQLite the database works in this process.
With a private MariaDB server (``--start-mariadb``) its CPU time is printed too. ``--driver``:
the MariaDB driver(s), pymysql and/or mysqlclient's mysqldb (one after the other, same server).
``--profile-sql`` adds, for steps 1 and 2, the per-statement profile of ``bench/sqlprof.py``
(statements, round trips, time waiting for the server).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from contextlib import ExitStack, nullcontext
from pathlib import Path
from typing import Any

import sqlalchemy as sa

# this file is called transformation.py: its own directory must not hide the package
_HERE = Path(__file__).resolve().parent
sys.path = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))
sys.path.insert(0, str(_HERE.parent / "src"))

from bench.machine import machine_line  # noqa: E402
from bench.sqlprof import SqlProfile, cpu_seconds  # noqa: E402
from core.config.schema import Config  # noqa: E402
from core.db import init_schema, make_engine  # noqa: E402
from dms.db.rms import REQUEST_SCHEMA  # noqa: E402
from dms.db.schema import DMS_SCHEMA  # noqa: E402
from dms.logic import metadata, namespace  # noqa: E402
from dms.logic.rights import CatalogSettings, Requester  # noqa: E402
from transformation.agents.task_agents import WorkflowTaskAgent  # noqa: E402
from transformation.agents.transformation_agent import TransformationAgent  # noqa: E402
from transformation.db.schema import TRANSFORMATION_SCHEMA  # noqa: E402
from transformation.db.tables import files as ts_files  # noqa: E402
from transformation.db.tables import tasks as ts_tasks  # noqa: E402
from transformation.logic import inputs  # noqa: E402
from transformation.logic import transformations as tlogic  # noqa: E402
from transformation.logic.catalog import CatalogView  # noqa: E402
from wms.db.schema import WMS_SCHEMA  # noqa: E402

CFG = CatalogSettings(vo_groups={"demo": "demo_user"})
ADMIN = Requester("admin", "dm_admin", "demo", admin=True)
MANAGER = tlogic.Actor("admin", "demo_prod", "demo", frozenset({"ProductionManagement"}))
PER_DIR = 1000
JDL = '[Executable = "/bin/true"; CPUTime = 600;]'
#: set by main(): the private MariaDB server's PID (its CPU is printed) and --profile-sql
SERVER_PID: int | None = None
PROFILE_SQL = False
QUERIES = [
    {"kind": "raw"},
    {"kind": "raw", "run": {">=": 0}},
    {"kind": {"in": ["raw", "calib"]}, "Size": {">": 0}},
    {"run": {"<": 1_000_000}, "kind": {"!=": "other"}},
    {"kind": "raw", "Path": "/demo/bench"},
]


def config(url: str) -> Config:
    return Config.model_validate({
        "Database": url, "Systems": {"DataManagement": {}},
        "Registry": {"VOs": {"demo": {"DefaultGroup": "demo_user"}},
                     "Users": {"admin": {"DNs": ["/CN=admin"]}},
                     "Groups": {"demo_user": {"VO": "demo", "Users": ["admin"]}}},
        "Resources": {"Sites": {"LCG.Bench.org": {"SEs": ["BENCH-DISK"]}}}})


def register(engine: sa.Engine, prefix: str, first: int, count: int, kind: str) -> float:
    """Directories of 1,000 files with ``kind``/``run`` metadata, then the files."""
    started = time.perf_counter()
    dirs = sorted({f"{prefix}/d{i // PER_DIR}" for i in range(first, first + count)})
    namespace.create_directories(engine, CFG, ADMIN, dirs)
    for d in dirs:
        metadata.set_metadata(engine, ADMIN, d, {"kind": kind, "run": int(d.rsplit("d", 1)[1])})
    for start in range(first, first + count, 5000):
        batch = {f"{prefix}/d{i // PER_DIR}/f{i}": {"Size": 100 + i % 1000, "SE": "BENCH-DISK",
                                                    "GUID": f"{prefix}-{i}"}
                 for i in range(start, min(first + count, start + 5000))}
        result = namespace.add_files(engine, CFG, ADMIN, batch)
        assert not result.failed, list(result.failed.items())[:3]  # noqa: S101
    return time.perf_counter() - started


def server_cpu(since: float | None = None) -> Any:
    """The private server's CPU seconds; with ``since``: a text for the figures."""
    if SERVER_PID is None:
        return 0.0 if since is None else ""
    now = cpu_seconds(SERVER_PID)
    return now if since is None else f", mariadbd CPU {now - since:.1f} s"


def profiled() -> Any:
    return SqlProfile(SERVER_PID) if PROFILE_SQL else nullcontext()


def count(engine: sa.Engine, table: sa.Table, *where: object) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table).where(*where))
                   .scalar_one())


def attach_and_group(url: str, n_files: int, submission: bool = True) -> None:
    engine = make_engine(url)
    cfg = config(url)
    view = CatalogView(engine, CFG)
    for name, kind in (("kind", "string"), ("run", "int")):
        metadata.add_field(engine, ADMIN, name, kind)
    tids = [tlogic.create(engine, view, cfg.operations.transformations, MANAGER, {
        "Name": f"t{n}", "Type": "Processing", "GroupSize": 10, "Body": JDL,
        "InputMetaQuery": query, "Status": "Active"}) for n, query in enumerate(QUERIES)]
    agent = TransformationAgent(cfg, instance="bench", period=0.1)
    agent.run(once=True)  # watermark and reconciliation stamps set on an empty catalog
    reg = register(engine, "/demo/bench", 0, n_files, "raw")
    started, cpu, server = time.perf_counter(), time.process_time(), server_cpu()
    target = n_files * len(tids)
    with profiled() as prof:
        while count(engine, ts_files, ts_files.c.status == "Assigned") < target:
            agent.run(once=True)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    tasks = count(engine, ts_tasks)
    print(f"  register {n_files:,} files: {reg:.1f} s ({n_files / reg:,.0f} files/s, journal "
          "included)")
    print(f"  attach to {len(tids)} transformations and group into {tasks:,} tasks: "
          f"{wall:.1f} s wall, {cpu:.1f} s CPU of this process{server_cpu(server)} "
          "(goal < 30 s)")
    if prof is not None:
        prof.report("attach and group")
    if not submission:
        engine.dispose()
        return

    # 2. bulk submission of 10,000 tasks of the first transformation
    wta = WorkflowTaskAgent(cfg, instance="bench", period=0.1)
    wta.beat()
    trans = tlogic.find(engine, tids[0], "demo")
    started, cpu, server = time.perf_counter(), time.process_time(), server_cpu()
    with profiled() as prof:  # the agent's claim / prepare / store / record batches
        n_jobs = wta.submit_tasks(trans)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    print(f"  bulk submission: {n_jobs:,} tasks -> Waiting jobs in {wall:.1f} s: "
          f"{n_jobs / wall:,.0f} jobs/s wall, {n_jobs / cpu:,.0f} per CPU second"
          f"{server_cpu(server)} (goal >= 2,000/s)")
    if prof is not None:
        prof.report("bulk submission")
    engine.dispose()


def flat_cost(url: str, sizes: list[int]) -> None:
    engine = make_engine(url)
    cfg = config(url)
    view = CatalogView(engine, CFG)
    for name, kind in (("kind", "string"), ("run", "int")):
        metadata.add_field(engine, ADMIN, name, kind)
    for n, query in enumerate(QUERIES):
        tlogic.create(engine, view, cfg.operations.transformations, MANAGER, {
            "Name": f"t{n}", "Type": "Processing", "GroupSize": 10, "Body": JDL,
            "InputMetaQuery": {**query, "Path": "/demo/new"} if n == 4 else query,
            "Status": "Active"})
    TransformationAgent(cfg, instance="bench", period=0.1).run(once=True)
    filled = 0
    new = 0
    for size in sizes:
        if size > filled:
            register(engine, "/demo/fill", filled, size - filled, "other")
            inputs.follow_journal(engine, view)  # the filler matches nothing
            filled = size
        register(engine, "/demo/new", new, 2000, "raw")
        new += 2000
        started, cpu = time.perf_counter(), time.process_time()
        report = inputs.follow_journal(engine, view)
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
        assert sum(report.attached.values()) == 2000 * len(QUERIES), report  # noqa: S101
        print(f"  catalog of {size + new:>9,} files: 2,000 new files matched against "
              f"{len(QUERIES)} queries in {wall * 1000:.0f} ms: "
              f"{wall / 2000 * 1e6:.0f} us per file wall, {cpu / 2000 * 1e6:.0f} us CPU")
    engine.dispose()


def prepare(url: str) -> None:
    engine = make_engine(url)
    for schema in (DMS_SCHEMA, WMS_SCHEMA, REQUEST_SCHEMA, TRANSFORMATION_SCHEMA):
        init_schema(engine, schema)
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--mysql-url", help="admin URL of a MariaDB server")
    parser.add_argument("--start-mariadb", action="store_true",
                        help="start a private MariaDB server (tests/support/mariadb.py)")
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument("--skip", default="",
                        help="comma list: attach,submit,flat (submit: step 2)")
    parser.add_argument("--buffer-pool", default="128M",
                        help="InnoDB buffer pool of the private MariaDB server")
    parser.add_argument("--profile-sql", action="store_true",
                        help="per-statement profile of steps 1 and 2 (bench/sqlprof.py)")
    parser.add_argument("--driver", default="pymysql",
                        help="MariaDB driver(s): pymysql, mysqldb or both comma-separated")
    args = parser.parse_args()
    print(machine_line(), flush=True)
    drivers = [d.strip() for d in args.driver.split(",") if d.strip()]
    if not drivers or set(drivers) - {"pymysql", "mysqldb"}:
        parser.error("--driver: pymysql, mysqldb or both (comma-separated)")
    global SERVER_PID, PROFILE_SQL
    PROFILE_SQL = args.profile_sql
    skip = set(args.skip.split(","))
    sizes = [int(x) for x in args.sizes.split(",") if x]
    with ExitStack() as stack:
        targets: list[tuple[str, object]] = []
        if not args.no_sqlite:
            tmp = stack.enter_context(tempfile.TemporaryDirectory())
            targets.append(("SQLite", lambda n, t=tmp: f"sqlite:///{t}/bench{n}.db"))
        admin = args.mysql_url
        if args.start_mariadb and not admin:
            from tests.support.mariadb import MariaDBServer

            server = MariaDBServer(buffer_pool=args.buffer_pool)
            server.start()
            stack.callback(server.stop)
            admin = server.admin_url
            SERVER_PID = server.proc.pid if server.proc is not None else None
        if admin:
            from tests.support.mariadb import fresh_database, with_driver

            for driver in drivers:
                targets.append((f"MariaDB/{driver}", lambda n, d=driver: with_driver(
                    stack.enter_context(fresh_database(admin)), d)))
        for label, url_for in targets:
            print(f"{label} (load average {os.getloadavg()[0]:.1f} on "
                  f"{os.cpu_count()} cores):")
            if "attach" not in skip:
                url = url_for(1)  # type: ignore[operator]
                prepare(url)
                attach_and_group(url, args.files, "submit" not in skip)
            if "flat" not in skip:
                url = url_for(2)  # type: ignore[operator]
                prepare(url)
                flat_cost(url, sizes)


if __name__ == "__main__":
    main()
