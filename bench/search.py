"""The paged job ``search``: server time in-process and round trips over HTTPS.

    python bench/search.py [--jobs 100000] [--db sqlite|mariadb] [--calls 200]
        [--page-size 10000] [--as-lists] [--no-https] [--compare-plans ROUNDS]

Fills a fresh database with ``--jobs`` jobs of one owner (a realistic status mix: 1% Waiting,
1% Running, 8% Failed, the rest Done, four sites, ten job groups) plus as many jobs of 9 other
owners, then times the monitoring service's ``search`` for the queries a job monitor makes:

* in-process (``JobMonitoringService.search`` called directly: what the server spends per call,
  reply encoding included), and
* over HTTPS (``pilotwms serve``, one client on a kept-alive connection, JEncode both ways).

Each query is a page of 100 with its total, sorted by JobID descending unless said otherwise;
``--page-size 10000`` times the large page, ``--as-lists`` records as lists of values (what
``dstat`` asks for) instead of DIRAC's dicts. Prints p50/p99 in milliseconds per query.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import yaml

from bench.machine import machine_line
from core.config.loader import load_config
from core.db import init_schema, make_engine, utcnow, write_transaction
from core.rpc.jencode import encode
from core.rpc.service import Call
from core.security.identity import Identity
from wms.db import jobs as jobs_db
from wms.db.schema import WMS_SCHEMA
from wms.logic.monitoring import fold_counters

OWNERS = ["alice"] + [f"user{i}" for i in range(9)]
SITES = ["DIRAC.Demo.org", "LCG.CERN.cern", "LCG.IN2P3.fr", "HPC.Ciemat.es"]

QUERIES: dict[str, tuple[list[dict[str, Any]], list[dict[str, str]]]] = {
    "owner only": ([], [{"parameter": "JobID", "direction": "desc"}]),
    "status eq": ([{"parameter": "Status", "operator": "eq", "value": "Done"}],
                  [{"parameter": "JobID", "direction": "desc"}]),
    "status in (3)": ([{"parameter": "Status", "operator": "in",
                        "values": ["Waiting", "Running", "Failed"]}],
                      [{"parameter": "JobID", "direction": "desc"}]),
    "site + status": ([{"parameter": "Site", "operator": "eq", "value": SITES[1]},
                       {"parameter": "Status", "operator": "eq", "value": "Done"}],
                      [{"parameter": "JobID", "direction": "desc"}]),
    "job group": ([{"parameter": "JobGroup", "operator": "eq", "value": "group3"}],
                  [{"parameter": "JobID", "direction": "desc"}]),
    "status, by submission": ([{"parameter": "Status", "operator": "eq", "value": "Done"}],
                              [{"parameter": "SubmissionTime", "direction": "desc"}]),
}


def status_of(i: int) -> tuple[str, str]:
    k = i % 100
    if k == 0:
        return "Waiting", "Pilot Agent Submission"
    if k == 1:
        return "Running", "Application"
    if k < 10:
        return "Failed", "Application Finished With Errors"
    return "Done", "Execution Complete"


def fill(url: str, per_owner: int) -> None:
    engine = make_engine(url)
    init_schema(engine, WMS_SCHEMA)
    now = utcnow()
    batch = 5000
    for owner in OWNERS:
        count = per_owner if owner == "alice" else max(1, per_owner // len(OWNERS))
        for start in range(0, count, batch):
            rows = []
            for i in range(start, min(count, start + batch)):
                status, minor = status_of(i)
                rows.append(jobs_db.NewJob(
                    owner=owner, owner_group="demo_user", vo="demo", status=status,
                    minor_status=minor, original_jdl='[Executable="x";]', job_name=f"job{i}",
                    site=SITES[i % len(SITES)], job_group=f"group{i % 10}"))
            with write_transaction(engine) as conn:
                jobs_db.insert_jobs(conn, rows, now=now, source="bench")
    fold_counters(engine, batches=100)  # as the server's periodic task does within seconds
    engine.dispose()


def percentiles(samples: list[float]) -> str:
    samples = sorted(samples)
    p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
    return f"p50 {statistics.median(samples) * 1e3:6.2f} ms  p99 {p99 * 1e3:6.2f} ms"


def measure(label: str, fn: Callable[[], Any], calls: int) -> None:
    for _ in range(min(10, calls)):
        fn()
    samples = []
    for _ in range(calls):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    print(f"  {label:24s} {percentiles(samples)}", flush=True)


def in_process(config_path: Path, calls: int, per_page: int, as_lists: bool = False) -> None:
    from core.rpc.context import ServerContext
    from wms.service.job_monitoring import JobMonitoringService

    config = load_config(config_path)
    service = JobMonitoringService(ServerContext(config))
    gc.collect()  # as `pilotwms serve` does once started (core.rpc.runner)
    gc.freeze()
    ident = Identity(auth_method="x509", username="alice", group="demo_user",
                     properties=frozenset({"NormalUser"}), valid_dn=True, valid_group=True)
    call = Call(identity=ident, request_id="bench")
    columns = ["JobID", "Status", "MinorStatus", "Site", "JobName", "LastUpdateTime"]
    shape = " (records as lists)" if as_lists else ""
    print(f"in-process (server time, reply encoded), page of {per_page}{shape}:")
    for label, (search, sort) in QUERIES.items():
        def run(search: Any = search, sort: Any = sort) -> Any:
            reply = service.search(call, columns, search, sort, 1, per_page, True, as_lists)
            return encode({"OK": True, "Value": reply})
        measure(label, run, calls)


def compare_plans(url: str, calls: int, per_page: int, rounds: int) -> None:
    """The searches as ``JobMonitoring.search`` makes them (records as dicts, encoded), with
    the code before the counted search plans (the database's plan; counts read without the
    counters' (owner, status) index) and after them, alternately on the same database."""
    from itertools import product, repeat

    from core.rpc.jencode import mark_datetimes
    from wms.db import counters, job_queries
    from wms.db.filters import Scope
    from wms.logic.monitoring import filters_from_search

    engine = make_engine(url)
    columns = ["JobID", "Status", "MinorStatus", "Site", "JobName", "LastUpdateTime"]
    index = next(ix for ix in counters.job_counters.indexes
                 if ix.name == "ix_job_counters_owner_status")
    results: dict[tuple[str, str], list[float]] = {}
    print(f"before/after the search plans, page of {per_page}, p50 of {calls} per round:")
    for _ in range(rounds):
        for (label, (search, sort)), (variant, plan) in product(
                QUERIES.items(), (("before", "database"), ("after", "counted"))):
            with write_transaction(engine) as conn:  # 1,700 counter rows: a few ms
                present = index.name in {
                    ix["name"] for ix in sa.inspect(conn).get_indexes("job_counters")}
                if variant == "before" and present:
                    index.drop(conn)
                elif variant == "after" and not present:
                    index.create(conn)
            filters = filters_from_search(search)
            order = [(s["parameter"], s["direction"]) for s in sort]

            def run(filters: Any = filters, order: Any = order, plan: str = plan) -> Any:
                with engine.connect() as conn:
                    total, rows = job_queries.search_jobs(
                        conn, filters, columns=columns, sort=order,
                        scope=Scope(owner="alice"), limit=per_page,
                        datetimes_as_text=True, plan=plan)
                rows = mark_datetimes(rows, job_queries.datetime_positions(columns))
                records = list(map(dict, map(zip, repeat(columns), rows)))
                return encode({"OK": True, "Value": {"Total": total, "Records": records}})
            for _ in range(3):
                run()
            samples = []
            for _ in range(calls):
                t0 = time.perf_counter()
                run()
                samples.append(time.perf_counter() - t0)
            results.setdefault((label, variant), []).append(statistics.median(samples))
    for (label, variant), p50s in sorted(results.items()):
        ratio = statistics.median(a / b for a, b in zip(
            p50s, results[(label, "before")], strict=True))
        print(f"  {label:24s} {variant:6s} {' '.join(f'{x * 1e3:6.2f}' for x in p50s)} ms, "
              f"best {min(p50s) * 1e3:6.2f} ms, x{ratio:.2f} of before (median of rounds)",
              flush=True)
    print(f"  (load avg {os.getloadavg()[0]:.1f})")
    engine.dispose()


def over_https(inst: Path, calls: int, per_page: int, as_lists: bool = False) -> None:
    from core.client_config import load_client_config, make_client

    server = subprocess.Popen(
        [sys.executable, "-m", "core.cli.admin", "serve", "--config", str(inst / "config.yaml"),
         "--log-level", "WARNING"], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        base = server.stdout.readline().split(" at ")[1].split()[0]
        client_conf = yaml.safe_load((inst / "client.yaml").read_text())
        client_conf["URLs"] = [base]
        (inst / "client.yaml").write_text(yaml.safe_dump(client_conf))
        os.environ["X509_USER_PROXY"] = ""
        settings = load_client_config(inst / "client.yaml", session=False)
        client = make_client("WorkloadManagement/JobMonitoring", settings)
        columns = ["JobID", "Status", "MinorStatus", "Site", "JobName", "LastUpdateTime"]
        shape = " (records as lists)" if as_lists else ""
        print(f"over HTTPS (one client, keep-alive), page of {per_page}{shape}:")
        measure("ping", lambda: client.call("ping"), calls)
        for label, (search, sort) in QUERIES.items():
            def run(search: Any = search, sort: Any = sort) -> Any:
                return client.call("search", columns, search, sort, 1, per_page, True,
                                   as_lists)
            measure(label, run, calls)
    finally:
        server.terminate()
        server.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=100_000, help="jobs of the searching owner")
    parser.add_argument("--db", choices=("sqlite", "mariadb"), default="sqlite")
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--page-size", type=int, default=100)
    parser.add_argument("--no-https", action="store_true")
    parser.add_argument("--compare-plans", type=int, default=0, metavar="ROUNDS",
                        help="only time the searches before/after the counted search plans, "
                             "alternately, ROUNDS times each (compare_plans)")
    parser.add_argument("--as-lists", action="store_true",
                        help="records as lists of values (dstat's shape) instead of dicts")
    args = parser.parse_args()
    print(machine_line(), flush=True)
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        inst = Path(tmp) / "inst"
        subprocess.run([sys.executable, "-m", "core.cli.admin", "init", str(inst),
                        "--port", "0"], check=True, capture_output=True)
        config = yaml.safe_load((inst / "config.yaml").read_text())
        if args.db == "mariadb":
            from tests.support.mariadb import MariaDBServer, fresh_database

            server = MariaDBServer()
            server.start()
            stack.callback(server.stop)
            url = stack.enter_context(fresh_database(server.admin_url))
            config["Database"] = url
            (inst / "config.yaml").write_text(yaml.safe_dump(config))
        t0 = time.perf_counter()
        fill(config["Database"], args.jobs)
        print(f"filled {args.jobs} jobs of alice (+{args.jobs} of 9 others) on {args.db} "
              f"in {time.perf_counter() - t0:.1f} s; load avg {os.getloadavg()[0]:.1f}")
        if args.compare_plans:
            compare_plans(config["Database"], args.calls, args.page_size, args.compare_plans)
            return
        in_process(inst / "config.yaml", args.calls, args.page_size, args.as_lists)
        if not args.no_https:
            over_https(inst, args.calls, args.page_size, args.as_lists)


if __name__ == "__main__":
    main()
