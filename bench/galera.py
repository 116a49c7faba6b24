"""Exactly-once matching on a 3-node MariaDB Galera cluster through two servers.

A real Galera cluster (tests/support/galera.py) on 127.0.0.1; two ``pilotwms serve`` processes,
the first on node 1 and the second on node 2 (each with the other nodes as failover hosts);
N waiting jobs in one task queue (every pilot wants the same head job: the worst case for
certification conflicts); P pilot threads per server calling ``Matcher.requestJob`` over HTTPS
until every job is matched. Optionally node 1 is SIGKILLed half-way and rejoins.

Printed: matches per second, double matches (replies naming a job twice; must be 0), jobs with
more than one Matched logging record (must be 0), jobs left Waiting, certification conflicts
and brute-force aborts counted by the nodes, and the time the kill cost.

Usage::

    python bench/galera.py                         # 10000 jobs, 4 pilots per server
    python bench/galera.py --jobs 2000 --pilots 8 --kill
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.galera import GaleraCluster  # noqa: E402
from tests.support.serve import ServeProcess, derived_config  # noqa: E402

from bench.machine import machine_line  # noqa: E402
from core.db import make_engine, write_transaction  # noqa: E402
from core.exceptions import NoMatchError, PilotWMSError  # noqa: E402
from core.rpc.client import Credentials, RPCClient  # noqa: E402
from core.security.tokens import TokenIssuer  # noqa: E402
from wms.db import jobs as jobs_db  # noqa: E402
from wms.logic.matching import TQJob, enqueue_jobs  # noqa: E402

RESOURCE = {"Site": "LCG.Bench.org", "CPUTime": 86400, "VirtualOrganization": "demo"}


def fill(url: str, count: int) -> None:
    engine = make_engine(url)
    now = datetime.now(timezone.utc).replace(microsecond=0)
    for start in range(0, count, 1000):
        n = min(1000, count - start)
        with write_transaction(engine) as conn:
            ids = jobs_db.insert_jobs(conn, [jobs_db.NewJob(
                owner="alice", owner_group="demo_user", vo="demo", status="Waiting",
                minor_status="Pilot Agent Submission", original_jdl="[Executable=\"/bin/true\";]")
                for _ in range(n)], now=now, source="bench")
            enqueue_jobs(conn, [TQJob(j, "alice", "demo_user", "demo", 3600) for j in ids], now)
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=10000)
    parser.add_argument("--pilots", type=int, default=4, help="pilot threads per server")
    parser.add_argument("--kill", action="store_true", help="SIGKILL node 1 half-way")
    args = parser.parse_args()
    print(machine_line(), flush=True)
    print(f"load average before: {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as tmp, GaleraCluster() as cluster:
        base = Path(tmp)
        subprocess.run([sys.executable, "-m", "core.cli.admin", "init", str(base / "inst"),
                        "--port", "0"], check=True, capture_output=True)
        config = derived_config(base / "inst" / "config.yaml", base / "config.yaml", {
            "Systems": {"WorkloadManagement": {"Services": {"SandboxStore": {"Options": {
                "BasePath": str(base / "sandboxes")}}}}}})
        urls = [cluster.url(i, failover=True) for i in range(3)]
        subprocess.run([sys.executable, "-m", "core.cli.admin", "db", "init", "--config",
                        str(config)], check=True, env={**os.environ, "PILOTWMS_DB": urls[0]})
        t = time.perf_counter()
        fill(urls[0], args.jobs)
        print(f"{args.jobs} waiting jobs stored in {time.perf_counter() - t:.1f} s")
        from core.config.loader import load_config

        signing = load_config(config).auth.signing
        assert signing is not None
        token = TokenIssuer(signing).issue("pilot", group="demo_pilot", vo="demo")
        servers = [ServeProcess(config, env={"PILOTWMS_DB": urls[i]},
                                log=base / f"serve-{i}.log").start() for i in range(2)]
        matched: list[int] = []
        errors: list[str] = []
        no_match = [0]
        probe = make_engine(cluster.url(2))

        def none_waiting() -> bool:
            with probe.connect() as conn:
                conn.exec_driver_sql("SET SESSION wsrep_sync_wait=1")
                return not conn.exec_driver_sql(
                    "SELECT COUNT(*) FROM jobs WHERE status='Waiting'").scalar_one()

        lock = threading.Lock()
        done = threading.Event()

        def pilot(n: int) -> None:
            client = RPCClient("WorkloadManagement/Matcher", urls=[servers[n % 2].url],
                               credentials=Credentials(token=token),
                               ca_dir=base / "inst" / "ca" / "certificates", timeout=(5, 60))
            with client:
                while not done.is_set():
                    try:
                        job = int(client.call("requestJob", RESOURCE)["JobID"])
                    except NoMatchError:
                        # "No match" while jobs wait: every candidate row was being written
                        # (a claim elsewhere, a replicated write set); a pilot asks again
                        if none_waiting():
                            done.set()
                            return
                        with lock:
                            no_match[0] += 1
                        time.sleep(0.05)
                        continue
                    except PilotWMSError as exc:
                        with lock:
                            errors.append(str(exc)[:200])
                        time.sleep(0.1)
                        continue
                    with lock:
                        matched.append(job)

        threads = [threading.Thread(target=pilot, args=(n,)) for n in range(2 * args.pilots)]
        t = time.perf_counter()
        for thread in threads:
            thread.start()
        kill_info = ""
        if args.kill:
            while len(matched) < args.jobs // 2 and not done.is_set():
                time.sleep(0.05)
            before, k = len(matched), time.perf_counter()
            cluster.kill(0)
            cluster.wait_size(1, 2)
            evicted = time.perf_counter() - k
            transfer = cluster.restart(0)
            kill_info = (f"node 1 killed at {before} matches: evicted after {evicted:.1f} s, "
                         f"rejoined by {transfer} after {time.perf_counter() - k:.1f} s, "
                         f"{len(matched) - before} matches meanwhile")
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - t
        for server in servers:
            server.stop()
            causes = Counter(line.strip()[:160] for line in server.log.read_text().splitlines()
                             if "Error:" in line or "Error)" in line)
            for cause, n in causes.most_common(3):
                print(f"  server {server.url}: {n} x {cause}")
        probe.dispose()
        check = make_engine(cluster.url(2))
        with check.connect() as conn:
            conn.exec_driver_sql("SET SESSION wsrep_sync_wait=1")
            logged = Counter(dict(conn.exec_driver_sql(
                "SELECT job_id, COUNT(*) FROM job_logging WHERE status='Matched' "
                "GROUP BY job_id").all()).values())
            waiting = conn.exec_driver_sql(
                "SELECT COUNT(*) FROM jobs WHERE status='Waiting'").scalar_one()
        check.dispose()
        conflicts = {name: sum(int(cluster.status(i, name) or 0) for i in range(3))
                     for name in ("wsrep_local_cert_failures", "wsrep_local_bf_aborts")}
        doubles = sum(1 for n in Counter(matched).values() if n > 1)
        print(f"{len(matched)} matches in {elapsed:.1f} s through 2 servers on 2 nodes, "
              f"{2 * args.pilots} pilot threads: {len(matched) / elapsed:.0f} matches/s")
        print(f"double matches: {doubles}; jobs with >1 Matched record: "
              f"{sum(n for k, n in logged.items() if k > 1)}; jobs matched once: "
              f"{logged.get(1, 0)}; still Waiting: {waiting}; errors: {len(errors)}; 'no match' "
              f"answers while jobs waited: {no_match[0]}")
        print(f"conflicts seen by the nodes: {conflicts} (each one a claim retried)")
        if kill_info:
            print(kill_info)
        for err in errors[:5]:
            print("  error:", err)
        print(f"load average after: {os.getloadavg()}")
        if doubles or any(k > 1 for k in logged):
            sys.exit("DOUBLE MATCHES")


if __name__ == "__main__":
    main()
