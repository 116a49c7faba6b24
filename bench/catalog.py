"""File catalog benchmark: fill a catalog, then time bulk replica lookups and a 3-term metadata
query, on SQLite and/or MariaDB (logic layer, in process: no HTTPS or JSON in the figures).

Usage::

    python bench/catalog.py                          # 200,000 files, 2 replicas each, SQLite
    python bench/catalog.py --files 1000000 --start-mariadb --no-sqlite
    python bench/catalog.py --mysql-url mysql+pymysql://root:pw@127.0.0.1/mysql

Layout: ``/demo/user/a/alice/prod/run<r>/f<i>``, 1,000 files per run directory, replicas on
two of four SEs. Directory metadata ``run`` (int) and ``kind`` (string: half ``raw``, half
``reco``), file metadata ``quality`` (int). Files are registered with the real bulk
``add_files`` (5,000 per call); the per-file ``quality`` values are inserted directly.

Figures printed:
* fill rate (files/s through ``add_files``);
* bulk replica lookups: ``get_replicas`` of 10,000 random LFNs per call, LFNs/s (goal >=
  20,000);
* the query ``{"run": {">=": 0, "<": R}, "kind": "raw", "quality": {">": 0}}`` returning half
  the files (100,000 for the default size): seconds, best of 3 (goal: < 1 s for 100k);
* statements per bulk call (a constant, whatever the number of LFNs).

Wall times and the CPU time of this process are both printed: on SQLite the database works
inside this process, so CPU time is the figure that does not depend on other load; on
MariaDB the server's own CPU is not in it.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.machine import machine_line  # noqa: E402
from core.db import init_schema, make_engine, write_transaction  # noqa: E402
from dms.db.catalog import chunks  # noqa: E402
from dms.db.schema import DMS_SCHEMA  # noqa: E402
from dms.db.tables import file_meta, files  # noqa: E402
from dms.logic import metadata, namespace  # noqa: E402
from dms.logic.replicas import add_replicas, get_replicas  # noqa: E402
from dms.logic.rights import CatalogSettings, Requester  # noqa: E402

CFG = CatalogSettings(vo_groups={"demo": "demo_user"})
ADMIN = Requester("admin", "dm_admin", "demo", admin=True)
ALICE = Requester("alice", "demo_user", "demo")
BASE = "/demo/user/a/alice/prod"
PER_DIR = 1000
SES = ["CERN-DISK", "IN2P3-DISK", "RAL-TAPE", "PIC-DISK"]


def lfn(i: int) -> str:
    return f"{BASE}/run{i // PER_DIR}/f{i}"


def fill(url: str, n_files: int) -> float:
    engine = make_engine(url)
    init_schema(engine, DMS_SCHEMA)
    for name, kind in (("run", "int"), ("kind", "string"), ("quality", "int")):
        metadata.add_field(engine, ADMIN, name, kind)
    started = time.perf_counter()
    for start in range(0, n_files, 5000):
        batch = {lfn(i): {"Size": 1000 + i, "SE": SES[i % 4], "GUID": f"G{i:012d}",
                          "Checksum": f"{i:08x}"} for i in range(start, min(n_files,
                                                                            start + 5000))}
        result = namespace.add_files(engine, CFG, ALICE, batch)
        assert not result.failed, list(result.failed.items())[:3]  # noqa: S101
        second = add_replicas(engine, ALICE, {k: {"SE": SES[(i + 1) % 4]} for i, k
                                                        in enumerate(batch, start)})
        assert not second.failed  # noqa: S101
    rate = n_files / (time.perf_counter() - started)
    for run in range((n_files + PER_DIR - 1) // PER_DIR):
        metadata.set_metadata(engine, ALICE, f"{BASE}/run{run}",
                              {"run": run, "kind": "raw" if run % 2 == 0 else "reco"})
    with write_transaction(engine) as conn:
        ids = list(conn.execute(sa.select(files.c.file_id)).scalars())
        for part in chunks(ids, 5000):
            conn.execute(file_meta.insert(), [{"file_id": i, "field": "quality",
                                               "v_int": 1 + i % 5} for i in part])
    engine.dispose()
    return rate


def measure(url: str, n_files: int) -> dict[str, float]:
    engine = make_engine(url)
    rng = random.Random(42)  # noqa: S311 - benchmark sampling
    statements = [0]

    def count(*_args: object) -> None:
        statements[0] += 1

    lookups = 0
    started, cpu_started = time.perf_counter(), time.process_time()
    sa.event.listen(engine, "before_cursor_execute", count)
    for _ in range(10):
        wanted = [lfn(rng.randrange(n_files)) for _ in range(10_000)]
        result = get_replicas(engine, ALICE, wanted)
        assert not result.failed and len(result.successful) == len(set(wanted))  # noqa: S101
        lookups += len(wanted)
    sa.event.remove(engine, "before_cursor_execute", count)
    lookup_rate = lookups / (time.perf_counter() - started)
    lookup_cpu_rate = lookups / (time.process_time() - cpu_started)
    runs = (n_files + PER_DIR - 1) // PER_DIR
    query = {"run": {">=": 0, "<": runs}, "kind": "raw", "quality": {">": 0}}
    times, cpu_times = [], []
    found = 0
    for _ in range(3):
        t0, c0 = time.perf_counter(), time.process_time()
        found = len(metadata.find_files(engine, ALICE, query, "/demo"))
        times.append(time.perf_counter() - t0)
        cpu_times.append(time.process_time() - c0)
    engine.dispose()
    return {"lookups_per_s": lookup_rate, "lookups_per_cpu_s": lookup_cpu_rate,
            "query_s": min(times), "query_cpu_s": min(cpu_times), "query_lfns": found,
            "statements_per_lookup_call": statements[0] / 10}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=200_000)
    parser.add_argument("--mysql-url", help="admin URL of a MariaDB server")
    parser.add_argument("--start-mariadb", action="store_true",
                        help="start a private MariaDB server (tests/support/mariadb.py)")
    parser.add_argument("--no-sqlite", action="store_true")
    args = parser.parse_args()
    print(machine_line(), flush=True)
    with ExitStack() as stack:
        targets: list[tuple[str, str]] = []
        if not args.no_sqlite:
            tmp = stack.enter_context(tempfile.TemporaryDirectory())
            targets.append(("SQLite", f"sqlite:///{tmp}/catalog.db"))
        admin = args.mysql_url
        if args.start_mariadb and not admin:
            from tests.support.mariadb import MariaDBServer

            server = MariaDBServer()
            server.start()
            stack.callback(server.stop)
            admin = server.admin_url
        if admin:
            from tests.support.mariadb import fresh_database

            targets.append(("MariaDB", stack.enter_context(fresh_database(admin))))
        for label, url in targets:
            rate = fill(url, args.files)
            figures = measure(url, args.files)
            print(f"{label}: {args.files:,} files, {2 * args.files:,} replicas; "
                  f"fill {rate:,.0f} files/s (add_files + add_replicas)")
            print(f"  getReplicas, 10,000 LFNs per call: {figures['lookups_per_s']:,.0f} LFNs/s "
                  f"wall, {figures['lookups_per_cpu_s']:,.0f} per CPU second of this process "
                  f"({figures['statements_per_lookup_call']:.0f} statements per call)")
            print(f"  3-term metadata query: {figures['query_lfns']:,} LFNs in "
                  f"{figures['query_s']:.2f} s wall, {figures['query_cpu_s']:.2f} s CPU of this "
                  "process (best of 3)")
            print(f"  load average: {os.getloadavg()[0]:.1f} (2 cores)")


if __name__ == "__main__":
    main()
