"""JobStateUpdate's write-behind queue and ``sendHeartBeats`` over real HTTPS, on SQLite and
MariaDB: per-job rights of the bulk call (caller's credential or each job's own token), Kill
commands in bulk replies, concurrent calls sharing transactions, the queue switched off, and
a graceful stop of a real ``pilotwms serve`` while reports are queued: each is written and
answered, none lost."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa
from tests.support.credentials import Creds
from tests.support.serve import ServeProcess, derived_config
from tests.support.servers import ThreadedServer

from core.cli.instance import Instance
from core.config.schema import Config
from core.db import init_schema, make_engine, utcnow
from wms.db import jobs as jobs_db
from wms.db.schema import WMS_SCHEMA
from wms.db.tables import job_heartbeats
from wms.service.job_manager import JobManagerService
from wms.service.job_monitoring import JobMonitoringService
from wms.service.job_state_update import JobStateUpdateService

SERVICES = [JobManagerService, JobMonitoringService, JobStateUpdateService]
STATE = "WorkloadManagement/JobStateUpdate"


def options(**values: Any) -> dict[str, Any]:
    return {"Systems": {"WorkloadManagement": {"Services": {"JobStateUpdate": {
        "Options": values}}}}}


def serve_config(config: Config, db_url: str, **opts: Any) -> Config:
    data = config.model_dump(by_alias=True, exclude_none=True, mode="json")
    data["Database"] = db_url
    data.setdefault("Systems", {}).update(options(**opts)["Systems"])
    return Config.model_validate(data)


def make_jobs(db_url: str, statuses: list[str], owner: str = "alice") -> list[int]:
    engine = make_engine(db_url)
    init_schema(engine, WMS_SCHEMA)
    try:
        with engine.begin() as conn:
            return jobs_db.insert_jobs(conn, [jobs_db.NewJob(
                owner=owner, owner_group="demo_user", vo="demo", status=s,
                minor_status="Made", original_jdl="[]") for s in statuses],
                now=utcnow(), source="test")
    finally:
        engine.dispose()


def beats(db_url: str) -> dict[int, int]:
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            return {int(j): int(n) for j, n in conn.execute(
                sa.select(job_heartbeats.c.job_id, sa.func.count())
                .group_by(job_heartbeats.c.job_id))}
    finally:
        engine.dispose()


class Caller:
    def __init__(self, url: str, creds: Creds, who: str) -> None:
        self.url, self.creds = url, creds
        self.session = requests.Session()
        self.kwargs: dict[str, Any] = {}
        if who == "alice":
            self.kwargs["cert"] = tuple(map(str, creds.alice))
        elif who == "admin-user":  # another user of alice's group, no JobSharing
            self.kwargs["cert"] = tuple(map(str, creds.admin))
        elif who == "pilot":
            self.kwargs["headers"] = {
                "Authorization": f"Bearer {creds.token('pilot', 'demo_pilot')}"}

    def __call__(self, method: str, *args: Any, service: str = STATE) -> dict[str, Any]:
        reply = self.session.post(f"{self.url}/{service}",
                                  data={"method": method, "args": json.dumps(list(args))},
                                  verify=str(self.creds.ca_dir), timeout=120, **self.kwargs)
        assert reply.status_code in (200, 401), reply.text
        return reply.json()  # type: ignore[no-any-return]


@pytest.fixture
def wms(config: Config, db_url: str) -> Iterator[ThreadedServer]:
    make_jobs(db_url, [])  # the schema
    with ThreadedServer(serve_config(config, db_url, GroupCommitLingerMs=5), SERVICES) as srv:
        yield srv


def queue_of(server: ThreadedServer) -> Any:
    assert server.ctx is not None
    [service] = [s for s in server.ctx.services if isinstance(s, JobStateUpdateService)]
    return service.reports_queue()


def test_bulk_heartbeats_check_each_job(wms: ThreadedServer, creds: Creds,
                                        db_url: str) -> None:
    mine = make_jobs(db_url, ["Running", "Matched", "Running"])
    [foreign] = make_jobs(db_url, ["Running"], owner="carol")
    alice = Caller(wms.url, creds, "alice")
    assert alice("killJob", mine[2], service="WorkloadManagement/JobManager")["OK"]
    pilot = Caller(wms.url, creds, "pilot")
    reply = pilot("sendHeartBeats", [{"JobID": j, "Dynamic": {"CPUConsumed": 1.5}}
                                     for j in [*mine, foreign, 10**9]])
    assert reply["OK"], reply
    value = reply["Value"]
    # a pilot credential reports on any job, as with sendHeartBeat (DIRAC's GenericPilot)
    assert value["Successful"] == {str(mine[0]): {}, str(mine[1]): {},
                                   str(mine[2]): {"Kill": ""}, str(foreign): {}}
    assert value["Failed"][str(10**9)]["ExceptionClass"] == "JobNotFoundError"
    status = alice("getJobsStatus", mine, service="WorkloadManagement/JobMonitoring")
    assert status["Value"][str(mine[1])]["Status"] == "Running"  # Matched -> Running

    # a user: her own jobs only
    reply = alice("sendHeartBeats", [{"JobID": mine[0], "Dynamic": {"A": 1}},
                                     {"JobID": foreign, "Dynamic": {"A": 1}}])
    assert list(reply["Value"]["Successful"]) == [str(mine[0])]
    assert reply["Value"]["Failed"][str(foreign)]["ExceptionClass"] == "NotAuthorizedError"
    other = Caller(wms.url, creds, "admin-user")
    reply = other("sendHeartBeats", [{"JobID": mine[0], "Dynamic": {"B": 1}}])
    assert reply["Value"]["Failed"][str(mine[0])]["Errno"] == 1  # EPERM
    assert reply["Value"]["Successful"] == {}

    # each job's own token: its job only, its attempt only
    token = creds.job_token(creds.issuer, mine[0], "alice", "demo_user")
    expired = Creds.expired_token(creds.issuer, "alice", "demo_user")
    reply = pilot("sendHeartBeats", [
        {"JobID": mine[0], "Dynamic": {"T": 1}, "Static": {"StandardOutput": "hi"},
         "Token": token},
        {"JobID": mine[1], "Dynamic": {"T": 1}, "Token": token},
        {"JobID": foreign, "Dynamic": {"T": 1}, "Token": expired}])
    value = reply["Value"]
    assert value["Successful"] == {str(mine[0]): {}}
    assert value["Failed"][str(mine[1])]["ExceptionClass"] == "NotAuthorizedError"
    assert value["Failed"][str(foreign)]["ExceptionClass"] == "NotAuthenticatedError"
    params = alice("getJobParameters", mine[0], service="WorkloadManagement/JobMonitoring")
    assert params["Value"][str(mine[0])]["StandardOutput"] == "hi"
    # nothing written for what was refused
    assert beats(db_url) == {mine[0]: 3, mine[1]: 1, mine[2]: 1, foreign: 1}

    # malformed calls fail as a whole
    for bad in ([{"JobID": mine[0]}, {"JobID": mine[0]}], [{"Dynamic": {}}],
                [{"JobID": mine[0], "Dynamic": []}], [{"JobID": mine[0], "Token": 3}],
                [{"JobID": True}], [{"JobID": 1.5}], [{"JobID": "12a"}],
                [{"JobID": mine[0]}, {"JobID": str(mine[0])}]):
        reply = pilot("sendHeartBeats", bad)
        assert reply["OK"] is False and reply["Errno"] == 22, (bad, reply)
    anonymous = requests.post(f"{wms.url}/{STATE}", data={"method": "sendHeartBeats",
                                                          "args": "[[]]"},
                              verify=str(creds.ca_dir), timeout=60)
    assert anonymous.status_code == 401


def test_concurrent_calls_share_transactions(config: Config, creds: Creds,
                                             db_url: str) -> None:
    jobs = make_jobs(db_url, ["Running"] * 24)
    cfg = serve_config(config, db_url, GroupCommitLingerMs=300)
    with ThreadedServer(cfg, SERVICES) as server:
        callers = [Caller(server.url, creds, "pilot") for _ in jobs]
        for caller in callers:  # connections made before the burst
            assert caller("ping")["OK"]
        start = threading.Barrier(len(jobs))
        replies: dict[int, Any] = {}

        def beat(job: int, caller: Caller) -> None:
            start.wait(60)
            replies[job] = caller("sendHeartBeat", job, {"CPUConsumed": 1}, {})

        threads = [threading.Thread(target=beat, args=pair)
                   for pair in zip(jobs, callers, strict=True)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        stats = queue_of(server).stats
        assert all(r == {"OK": True, "Value": {}} for r in replies.values()), replies
        assert len(replies) == 24 and stats.items == 24
        assert stats.batches <= 12, stats  # grouped (one or two batches when not starved)
    assert beats(db_url) == {j: 1 for j in jobs}


def test_queue_switched_off(config: Config, creds: Creds, db_url: str) -> None:
    [job] = make_jobs(db_url, ["Stalled"])
    with ThreadedServer(serve_config(config, db_url, GroupCommit=False), SERVICES) as server:
        pilot = Caller(server.url, creds, "pilot")
        assert pilot("sendHeartBeat", job, {"CPUConsumed": 1}, {}) == {"OK": True, "Value": {}}
        # the bulk call without the queue: each heartbeat in its own transaction
        reply = pilot("sendHeartBeats", [{"JobID": job, "Dynamic": {"CPUConsumed": 2}},
                                         {"JobID": 10**9, "Dynamic": {"CPUConsumed": 2}}])
        assert reply["Value"]["Successful"] == {str(job): {}}, reply
        assert reply["Value"]["Failed"][str(10**9)]["ExceptionClass"] == "JobNotFoundError"
        assert pilot("setJobParameters", job, [["A", "1"]])["OK"]
        refused = pilot("setJobStatus", job, "Waiting", "back?", "Pilot")
        assert refused["OK"] is False and "Running -> Waiting" in refused["Message"]
        assert queue_of(server) is None
    assert beats(db_url) == {job: 2}


def test_bulk_call_spread_over_several_transactions(config: Config, creds: Creds,
                                                    db_url: str) -> None:
    """A ``sendHeartBeats`` larger than ``GroupCommitMaxBatch`` is written in several
    transactions and answered once, for every job, after the last; a refused job and a
    killed one keep their own answers wherever their transaction falls."""
    jobs = make_jobs(db_url, ["Running"] * 10 + ["Done"])
    cfg = serve_config(config, db_url, GroupCommitMaxBatch=3, GroupCommitLingerMs=0)
    with ThreadedServer(cfg, SERVICES) as server:
        alice = Caller(server.url, creds, "alice")
        assert alice("killJob", jobs[7], service="WorkloadManagement/JobManager")["OK"]
        token = creds.job_token(creds.issuer, jobs[10], "alice", "demo_user")
        pilot = Caller(server.url, creds, "pilot")
        items: list[dict[str, Any]] = [{"JobID": j, "Dynamic": {"CPUConsumed": n}}
                                       for n, j in enumerate(jobs[:10])]
        items[2]["JobID"] = str(jobs[2])  # DIRAC clients may send digit strings
        items.insert(4, {"JobID": jobs[10], "Dynamic": {"CPUConsumed": 1}, "Token": token})
        items.insert(6, {"JobID": 10**9, "Dynamic": {}})
        before = queue_of(server).stats.batches
        reply = pilot("sendHeartBeats", items)
        assert reply["OK"], reply
        value = reply["Value"]
        assert value["Successful"] == {str(j): ({"Kill": ""} if j == jobs[7] else {})
                                       for j in jobs[:10]}
        assert value["Failed"][str(jobs[10])]["ExceptionClass"] == "JobNotActiveError"
        assert value["Failed"][str(10**9)]["ExceptionClass"] == "JobNotFoundError"
        assert set(value["Failed"]) == {str(jobs[10]), str(10**9)}
        assert queue_of(server).stats.batches - before >= 4  # 12 reports, 3 per transaction
    assert beats(db_url) == {j: 1 for j in jobs[:10]}


def test_graceful_stop_writes_and_answers_queued_reports(
        instance: Instance, creds: Creds, db_url: str, tmp_path: Path) -> None:
    """Reports wait in the queue (a 20 s linger); SIGTERM: the server writes them and answers
    each before it exits, long before the linger would have ended."""
    jobs = make_jobs(db_url, ["Running"] * 12)
    warm = make_jobs(db_url, ["Running"] * 2)
    path = derived_config(instance.config, tmp_path / "config.yaml",
                          {"Database": db_url, "Server": {"Services": [STATE]},
                           "Monitoring": {"Metrics": {"Authorization": ["all"]}},
                           **options(GroupCommitLingerMs=20_000, GroupCommitMaxBatch=1000)})
    server = ServeProcess(path, log=tmp_path / "serve.log").start()
    try:
        callers = [Caller(server.url, creds, "pilot") for _ in jobs]
        for caller in callers:
            assert caller("ping")["OK"]
        # concurrent traffic first: a bulk call's two reports are flushed together, so the
        # queue lingers for company from then on (a lone report is written at once)
        reply = callers[0]("sendHeartBeats", [{"JobID": j, "Dynamic": {"N": 1}} for j in warm])
        assert reply["OK"] and set(reply["Value"]["Successful"]) == {str(j) for j in warm}
        answers: dict[int, tuple[float, Any]] = {}

        def beat(job: int, caller: Caller) -> None:
            try:
                reply: Any = caller("sendHeartBeat", job, {"CPUConsumed": 2}, {})
            except requests.RequestException as exc:  # not answered: must not count as OK
                reply = repr(exc)
            answers[job] = (time.monotonic(), reply)

        threads = [threading.Thread(target=beat, args=pair)
                   for pair in zip(jobs, callers, strict=True)]
        sent = time.monotonic()
        for t in threads:
            t.start()
        # queued, not written: the linger holds them (poll until every call reached the queue)
        deadline = time.monotonic() + 15
        while _queued(server, creds) < len(jobs):
            assert time.monotonic() < deadline, "the reports did not reach the queue"
            time.sleep(0.05)
        assert set(beats(db_url)).isdisjoint(jobs) and answers == {}
        assert server.proc is not None
        stopped = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        for t in threads:
            t.join(60)
        assert server.proc.wait(60) == 0
    finally:
        server.stop()
    acked = {j for j, (_, reply) in answers.items() if reply == {"OK": True, "Value": {}}}
    assert acked == set(jobs), answers
    assert all(at - sent < 18 for at, _ in answers.values())  # not after the linger
    assert all(at >= stopped for at, _ in answers.values())  # answered by the stop
    assert {j: n for j, n in beats(db_url).items() if j in jobs} == {j: 1 for j in jobs}


def _queued(server: ServeProcess, creds: Creds) -> float:
    """``pilotwms_job_reports_queued`` of the server (its /metrics is open in this test)."""
    text = requests.get(f"{server.url}/metrics", verify=str(creds.ca_dir), timeout=30).text
    for line in text.splitlines():
        if line.startswith("pilotwms_job_reports_queued "):
            return float(line.split()[1])
    return 0.0

