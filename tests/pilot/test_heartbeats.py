"""pilot.heartbeats: the heartbeats of a pilot's concurrent jobs leave in one
``sendHeartBeats`` call, each job answered on its own (Kill, refusals), with single calls when
one job runs or the server is older; and a real multi-slot pilot uses it end to end."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.config.schema import Config
from core.db import init_schema, make_engine, utcnow
from core.metrics import metrics
from core.rpc.service import Call, Service, rpc_method
from pilot.heartbeats import HeartbeatBatcher
from pilot.rpc import RpcClient, RpcError
from pilot.watchdog import Watchdog
from tests.pilot.conftest import Env, wait_for
from tests.support.credentials import Creds
from tests.support.servers import ThreadedServer
from wms.db import jobs as jobs_db
from wms.db.schema import WMS_SCHEMA
from wms.service.job_manager import JobManagerService
from wms.service.job_state_update import JobStateUpdateService

STATE = "WorkloadManagement/JobStateUpdate"


def make_jobs(url: str, statuses: list[str]) -> list[int]:
    engine = make_engine(url)
    init_schema(engine, WMS_SCHEMA)
    try:
        with engine.begin() as conn:
            return jobs_db.insert_jobs(conn, [jobs_db.NewJob(
                owner="alice", owner_group="demo_user", vo="demo", status=s,
                minor_status="Made", original_jdl="[]") for s in statuses],
                now=utcnow(), source="test")
    finally:
        engine.dispose()


@pytest.fixture
def server(config: Config, db_url: str) -> Iterator[ThreadedServer]:
    make_jobs(db_url, [])
    cfg = config.model_copy(update={"database": db_url})
    with ThreadedServer(cfg, [JobManagerService, JobStateUpdateService]) as srv:
        yield srv


def pilot_rpc(server: ThreadedServer, creds: Creds) -> RpcClient:
    return RpcClient([server.url], token=creds.token("pilot", "demo_pilot"),
                     ca_dir=str(creds.ca_dir), retries=0)


def calls(method: str) -> float:
    return metrics().rpc_requests.labels(STATE, method, "200")._value.get()


def beat_all(batcher: HeartbeatBatcher, items: list[tuple[int, str | None]],
             single: Any) -> dict[int, Any]:
    """Every job's heartbeat from its own thread (as the watchdogs do)."""
    out: dict[int, Any] = {}

    def one(job: int, token: str | None) -> None:
        try:
            out[job] = batcher.send(job, {"CPUConsumed": 1.0}, {"StandardOutput": "x"},
                                    token=token, single=lambda: single(job))
        except RpcError as exc:
            out[job] = exc

    threads = [threading.Thread(target=one, args=item) for item in items]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return out


def test_concurrent_heartbeats_leave_in_one_call(server: ThreadedServer, creds: Creds,
                                                 db_url: str) -> None:
    jobs = make_jobs(db_url, ["Running", "Running", "Matched", "Running"])
    rpc = pilot_rpc(server, creds)
    # a Kill for jobs[0], as its owner's killJob leaves it
    alice = RpcClient([server.url], proxy=None, ca_dir=str(creds.ca_dir), retries=0,
                      token=creds.token("alice", "demo_user"))
    alice.call("WorkloadManagement/JobManager", "killJob", jobs[0])
    batcher = HeartbeatBatcher(rpc, window=30.0)  # sent once all four have beaten
    tokens: list[str | None] = [creds.job_token(creds.issuer, j, "alice", "demo_user")
                                for j in jobs]
    tokens[0] = None  # the pilot's own credential gets the Kill (so does a job token)
    tokens[3] = tokens[2]  # a token of another job: refused for job 3 only
    singles: list[int] = []
    before = calls("sendHeartBeats"), calls("sendHeartBeat")
    with batcher.running(), batcher.running(), batcher.running(), batcher.running():
        out = beat_all(batcher, list(zip(jobs, tokens, strict=True)), singles.append)
    assert batcher.calls == 1 and batcher.sent == 4 and singles == []
    # the server counts a call after its reply is written (Tornado's log_function): wait
    wait_for(lambda: calls("sendHeartBeats") - before[0] >= 1, 10, "the call counted")
    assert (calls("sendHeartBeats") - before[0], calls("sendHeartBeat") - before[1]) == (1, 0)
    assert out[jobs[0]] == {"Kill": ""} and out[jobs[1]] == {} and out[jobs[2]] == {}
    assert isinstance(out[jobs[3]], RpcError) and out[jobs[3]].errno == 1  # EPERM

    # one job running: its heartbeat goes on its own
    with batcher.running():
        assert batcher.send(jobs[1], {}, {}, single=lambda: {"Single": ""}) == {"Single": ""}
    assert batcher.calls == 1


class OldJobStateUpdate(Service):
    """A server of before sendHeartBeats."""

    system, name = "WorkloadManagement", "JobStateUpdate"

    @rpc_method("sendHeartBeat", rights=["GenericPilot"])
    def send_heartbeat(self, call: Call, job_id: int, dynamic: dict, static: dict) -> dict:
        return {}


def test_an_older_server_gets_single_calls(config: Config, creds: Creds,
                                           tmp_path: Path) -> None:
    with ThreadedServer(config, [OldJobStateUpdate]) as server:
        rpc = pilot_rpc(server, creds)
        batcher = HeartbeatBatcher(rpc, window=30.0)
        with batcher.running(), batcher.running():
            out = beat_all(batcher, [(1, None), (2, None)],
                           lambda job: rpc.call(STATE, "sendHeartBeat", job, {}, {}))
            assert out == {1: {}, 2: {}} and batcher.supported is False
            # remembered: no more bulk attempts
            assert batcher.send(3, {}, {}, single=lambda: {"Single": ""}) == {"Single": ""}
        assert batcher.calls == 1


def test_aligned_watchdogs_beat_at_multiples_of_the_period() -> None:
    aligned = Watchdog(1, heartbeat=lambda d, s: {}, workdir=".", period=60.0, align=True)
    assert aligned._next_beat(125.0) == 180.0 and aligned._next_beat(180.0) == 240.0
    free = Watchdog(1, heartbeat=lambda d, s: {}, workdir=".", period=60.0)
    assert free._next_beat(125.0) == 185.0


def test_a_multi_slot_pilot_sends_its_heartbeats_together(env: Env) -> None:
    script = "-c 'sleep 6'"
    jobs = [env.submit(f'[Executable = "/bin/sh"; Arguments = "{script}"; CPUTime = 600;]')
            for _ in range(3)]
    before = calls("sendHeartBeats"), calls("sendHeartBeat")
    pilot = env.pilot("--processors", "3", "--max-failed-matches", "1")
    assert pilot.wait(120) == 0, pilot.log()
    for job in jobs:
        wait_for(lambda job=job: env.status(job)["Status"] == "Done", 60, f"job {job} Done")
        beats = env.call("alice", "WorkloadManagement/JobMonitoring", "getJobHeartBeatData",
                         job)
        assert beats, f"no heartbeat of job {job}"
    bulk, single = calls("sendHeartBeats") - before[0], calls("sendHeartBeat") - before[1]
    assert bulk >= 1, pilot.log()[-3000:]
    # the three jobs beat together: fewer calls than heartbeats (single calls only while
    # fewer than two jobs run, at the start or the end)
    assert single <= bulk * 3, (bulk, single)
