"""pilotwms on a real 3-node MariaDB Galera cluster (tests/support/galera.py).

* A certification conflict (error 1213 at COMMIT, or at the next statement after a brute-force
  abort) is recognised and the losing transaction re-run by ``core.db.retry_conflicts``.
* The matcher's claim stays exactly-once across nodes: a claim that loses to a claim of the same
  job on another node is rolled back and re-run, and takes another job.
* End to end: two ``pilotwms serve`` on different nodes, users submitting and pilots matching
  through both, one node SIGKILLed under that load and rejoining: 0 double matches, every
  accepted submission stored, every job matched once, the node back in sync.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from tests.support.credentials import Creds
from tests.support.galera import GaleraCluster, available
from tests.support.serve import ServeProcess, derived_config

from core.cli.instance import Instance
from core.db import (
    init_schema,
    is_conflict,
    make_engine,
    retry_conflicts,
    utcnow,
    write_transaction,
)
from core.exceptions import NoMatchError, PilotWMSError
from core.rpc.client import Credentials, RPCClient
from wms.db import jobs as jobs_db
from wms.db.schema import WMS_SCHEMA
from wms.logic.matching import MatchScope, MatchSettings, TQJob, enqueue_jobs, match_job

pytestmark = [pytest.mark.mariadb, pytest.mark.slow]

RESOURCE = {"Site": "LCG.Galera.test", "CPUTime": 86400, "VirtualOrganization": "demo"}


@pytest.fixture(scope="module")
def cluster() -> Iterator[GaleraCluster]:
    why = available()
    if why:
        pytest.fail(f"Galera cannot run here: {why} (scripts/test.sh installs it)")
    with GaleraCluster() as galera:
        yield galera


def _causal(engine: sa.Engine) -> sa.Connection:
    conn = engine.connect()
    conn.exec_driver_sql("SET SESSION wsrep_sync_wait=1")  # see every write made elsewhere
    return conn


def _queue_jobs(engine: sa.Engine, count: int) -> list[int]:
    now = utcnow()
    with write_transaction(engine) as conn:
        ids = jobs_db.insert_jobs(conn, [jobs_db.NewJob(
            owner="alice", owner_group="demo_user", vo="demo", status="Waiting",
            minor_status="Pilot Agent Submission", original_jdl="[]")] * count,
            now=now, source="test")
        enqueue_jobs(conn, [TQJob(j, "alice", "demo_user", "demo", 3600) for j in ids], now)
    return ids


def test_certification_conflict_is_retried(cluster: GaleraCluster) -> None:
    e1, e2 = make_engine(cluster.url(0)), make_engine(cluster.url(1))
    with e1.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE counters (id INT PRIMARY KEY, n INT NOT NULL)")
        conn.exec_driver_sql("INSERT INTO counters VALUES (1, 0)")
    attempts: list[int] = []

    @retry_conflicts()
    def increment() -> int:
        attempts.append(1)
        with write_transaction(e2) as conn:
            conn.exec_driver_sql("SET SESSION wsrep_sync_wait=1")
            n = conn.exec_driver_sql("SELECT n FROM counters WHERE id=1").scalar_one()
            conn.exec_driver_sql(f"UPDATE counters SET n={n + 1} WHERE id=1")  # noqa: S608
            if len(attempts) == 1:
                # another node commits a change of the same row first: row locks are per node,
                # so nothing blocks; our COMMIT (or next statement) loses certification
                with e1.begin() as other:
                    other.exec_driver_sql("UPDATE counters SET n=n+10 WHERE id=1")
        return int(n) + 1

    assert increment() == 11
    assert len(attempts) == 2
    with _causal(e1) as conn:
        assert conn.exec_driver_sql("SELECT n FROM counters WHERE id=1").scalar_one() == 11
    # the error itself, seen without the retry
    a, b = e1.connect(), e2.connect()
    a.exec_driver_sql("UPDATE counters SET n=0 WHERE id=1")
    b.exec_driver_sql("UPDATE counters SET n=1 WHERE id=1")
    a.commit()
    with pytest.raises(sa.exc.DBAPIError) as caught:
        b.commit()
    assert is_conflict(caught.value) and caught.value.orig.args[0] == 1213  # type: ignore[union-attr]
    b.rollback()
    a.close(), b.close()
    e1.dispose(), e2.dispose()


def test_matcher_claim_lost_on_another_node_is_rerun(cluster: GaleraCluster) -> None:
    url = [cluster.url(i, database="claims") for i in range(2)]
    cluster.sql(0, "CREATE DATABASE claims")
    e1, e2 = make_engine(url[0]), make_engine(url[1])
    init_schema(e1, WMS_SCHEMA)
    ids = _queue_jobs(e1, 3)
    settings, scope = MatchSettings(), MatchScope(vo="demo")
    with _causal(e2) as conn:  # node 2 has applied the jobs
        assert conn.exec_driver_sql("SELECT COUNT(*) FROM tq_jobs").scalar_one() == 3
    rival: dict[str, Any] = {}
    claims: list[int] = []

    def on_match(conn: sa.Connection, result: Any) -> None:
        claims.append(result.job_id)
        if len(claims) == 1:
            # while this claim is open on node 2, a matcher on node 1 claims the same head job
            # (SKIP LOCKED only skips rows locked on the same node) and commits first
            thread = threading.Thread(target=lambda: rival.update(result=match_job(
                e1, RESOURCE, settings=settings, scope=scope)))
            thread.start()
            thread.join(120)

    ours = match_job(e2, RESOURCE, settings=settings, scope=scope, on_match=on_match)
    theirs = rival["result"]
    assert claims[0] == theirs.job_id, "both nodes first picked the same head job"
    assert len(claims) >= 2 and ours.job_id != theirs.job_id
    assert {ours.job_id, theirs.job_id} <= set(ids)
    with _causal(e1) as conn:
        matched = conn.exec_driver_sql(
            "SELECT job_id, COUNT(*) FROM job_logging WHERE status='Matched' GROUP BY job_id"
        ).all()
    assert dict(matched) == {ours.job_id: 1, theirs.job_id: 1}
    e1.dispose(), e2.dispose()


class Load:
    """Users submitting through two servers and pilots matching through both."""

    def __init__(self, urls: list[str], creds: Creds, ca_dir: Path) -> None:
        self.urls, self.creds, self.ca_dir = urls, creds, ca_dir
        self.pilot_token = creds.token("pilot", "demo_pilot")
        self.accepted: dict[str, int] = {}
        self.submit_errors: list[str] = []
        self.matched: list[int] = []
        self.match_errors: list[str] = []
        self.stop_submitting = threading.Event()
        self.stop = threading.Event()
        self.lock = threading.Lock()

    def submitter(self, n: int, count: int) -> None:
        client = RPCClient("WorkloadManagement/JobManager", urls=[self.urls[n % 2]],
                           credentials=Credentials(cert=self.creds.alice[0],
                                                   key=self.creds.alice[1]),
                           ca_dir=self.ca_dir, timeout=(5, 60))
        with client:
            for i in range(count):
                if self.stop_submitting.is_set():
                    return
                name = f"galera-{n}-{i}"
                try:
                    job = client.call("submitJob",
                                      f'[Executable="/bin/true"; JobName="{name}";]')
                except PilotWMSError as exc:
                    with self.lock:
                        self.submit_errors.append(f"{name}: {exc}")
                    continue
                with self.lock:
                    self.accepted[name] = int(job)

    def pilot(self, n: int) -> None:
        client = RPCClient("WorkloadManagement/Matcher", urls=[self.urls[n % 2]],
                           credentials=Credentials(token=self.pilot_token), ca_dir=self.ca_dir,
                           timeout=(5, 60))
        with client:
            while not self.stop.is_set():
                try:
                    reply = client.call("requestJob", RESOURCE)
                except NoMatchError:
                    time.sleep(0.05)
                    continue
                except PilotWMSError as exc:
                    with self.lock:
                        self.match_errors.append(str(exc))
                    time.sleep(0.1)
                    continue
                with self.lock:
                    self.matched.append(int(reply["JobID"]))


def test_two_servers_on_two_nodes_one_node_killed(
        cluster: GaleraCluster, instance: Instance, creds: Creds, tmp_path: Path) -> None:
    per_submitter, submitters, pilots = 60, 4, 4
    total = per_submitter * submitters
    db = "e2e"
    cluster.sql(0, f"CREATE DATABASE {db}")
    urls = [cluster.url(i, failover=True, database=db) for i in range(3)]
    config = derived_config(instance.config, tmp_path / "config.yaml", {"Systems": {
        "WorkloadManagement": {"Services": {"SandboxStore": {"Options": {
            "BasePath": str(tmp_path / "sandboxes")}}}}}})
    proc = subprocess.run([sys.executable, "-m", "core.cli.admin", "db", "init", "--config",
                           str(config)], env={**os.environ, "PILOTWMS_DB": urls[0]},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    check = make_engine(cluster.url(2, database=db))

    def waiting() -> int:
        with _causal(check) as conn:
            return int(conn.exec_driver_sql(
                "SELECT COUNT(*) FROM jobs WHERE status='Waiting'").scalar_one())
    servers = [ServeProcess(config, env={"PILOTWMS_DB": urls[i]},
                            log=tmp_path / f"serve-{i}.log") for i in range(2)]
    for server in servers:
        server.start()
    load = Load([s.url for s in servers], creds, instance.ca_dir)
    threads = [threading.Thread(target=load.submitter, args=(n, per_submitter))
               for n in range(submitters)]
    threads += [threading.Thread(target=load.pilot, args=(n,)) for n in range(pilots)]
    for thread in threads:
        thread.start()

    def progress(target: int) -> None:
        while len(load.matched) < target and time.monotonic() < deadline:
            assert all(s.alive() for s in servers), [s.log.read_text()[-1000:] for s in servers]
            time.sleep(0.05)

    try:
        deadline = time.monotonic() + 200
        progress(total // 3)
        # node 1 dies under load: server 0 moves to node 2 or 3 (its URL's failover list)
        killed_at = len(load.matched)
        cluster.kill(0)
        cluster.wait_size(1, 2)
        progress(killed_at + total // 4)
        after_kill = len(load.matched) - killed_at
        transfer = cluster.restart(0)  # rejoins at its recovered position, while the load runs
        for thread in threads[:submitters]:
            thread.join(max(1.0, deadline - time.monotonic()))
        while waiting() and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        load.stop_submitting.set()
        load.stop.set()
        for thread in threads:
            thread.join(60)
        for server in servers:
            server.stop()

    with _causal(check) as conn:
        stored = dict(conn.exec_driver_sql(
            "SELECT job_name, job_id FROM jobs WHERE job_name LIKE 'galera-%%'").all())
        statuses = Counter(dict(conn.exec_driver_sql(
            "SELECT job_id, status FROM jobs WHERE job_name LIKE 'galera-%%'").all()).values())
        logged = dict(conn.exec_driver_sql(
            "SELECT job_id, COUNT(*) FROM job_logging WHERE status='Matched' "
            "GROUP BY job_id").all())
    doubles = [job for job, n in Counter(load.matched).items() if n > 1]
    conflicts = sum(int(cluster.status(i, name) or 0) for i in (1, 2)
                    for name in ("wsrep_local_cert_failures", "wsrep_local_bf_aborts"))
    print(f"\naccepted {len(load.accepted)}, submit errors {len(load.submit_errors)}, "
          f"matched {len(load.matched)} ({after_kill} after the kill), match errors "
          f"{len(load.match_errors)}, node 1 rejoined by {transfer}, statuses {dict(statuses)}, "
          f"certification conflicts / brute-force aborts on nodes 2-3: {conflicts}")
    for err in load.submit_errors[:5] + load.match_errors[:5]:
        print("  error:", err[:200])
    assert doubles == [], f"double matches: {doubles}"
    assert after_kill > 0, "no match went through after the node was killed"
    # nothing accepted is lost: every acknowledged job is stored, under its own name
    assert {n: stored.get(n) for n in load.accepted} == load.accepted
    # every stored job was matched exactly once (jobs whose reply was lost in the kill
    # included: stored and matched, never twice)
    assert set(load.matched) <= set(stored.values())
    assert all(n == 1 for n in logged.values()), {j: n for j, n in logged.items() if n > 1}
    assert statuses == Counter({"Matched": len(stored)}), statuses
    unreported = len(stored) - len(load.matched)
    assert unreported <= len(load.match_errors) + len(load.submit_errors)
    # the rejoined node has everything
    assert cluster.status(0, "wsrep_cluster_size") == "3"
    count = f"SELECT COUNT(*) FROM {db}.jobs WHERE job_name LIKE 'galera-%'"  # noqa: S608
    node1 = cluster.sql(0, "SET SESSION wsrep_sync_wait=1; " + count)
    assert int(node1) == len(stored)
    check.dispose()


def test_failover_url_skips_a_dead_node(cluster: GaleraCluster) -> None:
    engine = make_engine(cluster.url(1, failover=True))
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT @@port").scalar() == cluster.sql_ports[1]
    engine.dispose()
    cluster.kill(1)
    try:
        cluster.wait_size(0, 2)
        with engine.connect() as conn:
            port = conn.exec_driver_sql("SELECT @@port").scalar()
        assert port in (cluster.sql_ports[0], cluster.sql_ports[2])
    finally:
        cluster.restart(1)
        engine.dispose()


def test_random_other_statements_unaffected(cluster: GaleraCluster) -> None:
    """No conflict, no retry: the decorator returns the first result (and raises other
    errors at once)."""
    engine = make_engine(cluster.url(2))
    calls: list[int] = []

    @retry_conflicts()
    def boom() -> None:
        calls.append(1)
        with engine.connect() as conn:
            conn.exec_driver_sql(f"SELECT * FROM no_such_{random.randrange(10**6)}")  # noqa: S608

    with pytest.raises(sa.exc.ProgrammingError):
        boom()
    assert calls == [1]
    engine.dispose()
