"""Push mode end to end: a real server, a real sshd and a real single-node Slurm.

The PushJobAgent matches jobs for a closed site, ships them to Slurm over SSH (as the SSH test
user: nothing on the batch side talks to the server), follows them and brings statuses and
outputs back; a second agent copy splits the work and carries on after the first one "crashes";
Kill is scancel; the CPU limit is enforced on the worker node."""

from __future__ import annotations

import io
import json
import os
import pwd
import subprocess
import tarfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import requests
from tests.pilot.conftest import Env
from tests.pilot.test_pilot import sandbox_bytes, upload_as_alice
from tests.support.credentials import Creds
from tests.support.servers import ThreadedServer
from tests.support.slurm import SlurmCluster
from tests.support.sshd import SSHServer
from tests.wms.ce.helpers import live_processes_with

from core.config.schema import Config
from core.db import init_schema, make_engine
from core.exceptions import ConfigError
from core.rpc.runner import available_services
from pilot import batch_wrapper
from wms.agents.push_jobs import PushJobAgent
from wms.agents.site_director import SiteDirector
from wms.db.push_jobs import push_jobs
from wms.db.schema import WMS_SCHEMA
from wms.logic.push import batch_script, pack_dir, unpack

SITE = "HPC.Closed.site"
FINAL = ("Done", "Failed", "Killed")


@pytest.fixture
def env(config: Config, creds: Creds, tmp_path: Path) -> Iterator[Env]:
    data = config.model_dump(by_alias=True, exclude_none=True)
    data["Systems"] = {"WorkloadManagement": {"Services": {"SandboxStore": {"Options": {
        "BasePath": str(tmp_path / "sandboxes")}}}}}
    cfg = Config.model_validate(data)
    assert cfg.database
    engine = make_engine(cfg.database)
    init_schema(engine, WMS_SCHEMA)
    engine.dispose()
    with ThreadedServer(cfg, available_services().values()) as server:
        yield Env(server, creds, Path(), tmp_path)


@pytest.fixture(params=["slurm-over-ssh", "slurm"])
def push_config(request: pytest.FixtureRequest, env: Env, slurm_cluster: SlurmCluster,
                tmp_path: Path) -> Config:
    """A push-mode site: Slurm over SSH (as the SSH test user), or the local Slurm."""
    work = str(slurm_cluster.base / "jobs" / uuid.uuid4().hex[:8])
    settings: dict[str, Any] = {"WorkDir": work, "Environment": slurm_cluster.env,
                                "SacctCompletion": True}
    ce_type = "Slurm"
    if request.param == "slurm-over-ssh":
        sshd: SSHServer = request.getfixturevalue("sshd_server")
        settings.update(sshd.settings, BatchSystem="Slurm")
        ce_type = "SSH"
    data = env.server.config.model_dump(by_alias=True, exclude_none=True)
    data["Resources"] = {"Sites": {SITE: {"CEs": {"hpc-login": {
        "CEType": ce_type, "PushMode": True, "Settings": settings,
        "Queues": {"debug": {"MaxCPUTime": 3600, "MaxWaitingPilots": 4,
                             "MaxTotalPilots": 4}}}}}}}
    data["Operations"] = {"Pilot": {"URLs": [env.server.url]},
                          "PushMode": {"Heartbeat": 1, "StagingDir": str(tmp_path / "staging"),
                                       "Python": "/usr/bin/python3"}}
    return Config.model_validate(data)


def cycle_until(agents: list[PushJobAgent], check: Callable[[], Any],
                limit: float = 90.0) -> Any:
    """Run agent cycles until ``check()`` is true (bounded)."""
    deadline = time.monotonic() + limit
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        for agent in agents:
            agent.beat()
            agent.run_once()
        time.sleep(0.3)


def statuses(env: Env, jobs: list[int]) -> dict[int, dict[str, str]]:
    return {job: env.status(job) for job in jobs}


def push_rows(cfg: Config) -> list[Any]:
    engine = make_engine(cfg.database_url("WorkloadManagement"))
    try:
        with engine.connect() as conn:
            return list(conn.execute(push_jobs.select()))
    finally:
        engine.dispose()


def output_sandbox(env: Env, job: int) -> dict[str, bytes]:
    urls = env.call("alice", "WorkloadManagement/SandboxStore",
                    "getSandboxesAssignedToEntity", f"Job:{job}")["Output"]
    assert len(urls) == 1, urls
    raw = requests.post(f"{env.server.url}/WorkloadManagement/SandboxStore",
                        data={"method": "streamToClient", "args": json.dumps([urls[0], ""]),
                              "rawContent": "true"},
                        cert=env.alice(), verify=str(env.creds.ca_dir), timeout=60).content
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:bz2") as tar:
        return {m.name: tar.extractfile(m).read()  # type: ignore[union-attr]
                for m in tar.getmembers() if m.isfile()}


def test_batch_wrapper_and_job_dir_helpers(tmp_path: Path) -> None:
    job = tmp_path / "job"
    (job / ".pw").mkdir(parents=True)
    spec = {"Command": ["/bin/sh", "-c", "echo out; echo err >&2; exit 4"],
            "Environment": {"GREETING": "x y"}, "StdOutput": "o.txt", "StdError": "e.txt"}
    (job / ".pw" / "job.json").write_text(json.dumps(spec))
    assert batch_wrapper.main([str(job / ".pw" / "job.json")]) == 0
    result = json.loads((job / ".pw" / "result.json").read_text())
    assert result["ExitCode"] == 4 and result["Reason"] is None and result["Wall"] >= 0
    assert (job / "o.txt").read_text() == "out\n" and (job / "e.txt").read_text() == "err\n"
    copy = tmp_path / "copy"
    unpack(pack_dir(str(job)), str(copy))
    assert (copy / "o.txt").read_text() == "out\n"
    script = batch_script("/a b/1", "python3")
    assert "cd '/a b/1' || exit 1" in script
    # a payload that cannot start: no exit code, the wrapper still reports
    (job / ".pw" / "job.json").write_text(json.dumps({"Command": ["/nonexistent/x"]}))
    assert batch_wrapper.main([str(job / ".pw" / "job.json")]) == 0
    assert json.loads((job / ".pw" / "result.json").read_text())["ExitCode"] is None


def test_push_mode_needs_slurm(env: Env) -> None:
    data = env.server.config.model_dump(by_alias=True, exclude_none=True)
    data["Resources"] = {"Sites": {SITE: {"CEs": {"local": {
        "CEType": "Local", "PushMode": True, "Settings": {"WorkDir": "/tmp/x"},
        "Queues": {"default": {}}}}}}}
    with pytest.raises(ConfigError, match="push mode needs a Slurm CE"):
        PushJobAgent(Config.model_validate(data), instance="bad")


def test_push_mode_runs_jobs_to_done_across_agent_copies(env: Env,
                                                         push_config: Config) -> None:
    sb = upload_as_alice(env, sandbox_bytes({
        "run.sh": b'echo "as $(id -un)"; cat data.txt; echo result > out.txt\n',
        "data.txt": b"input data\n"}))
    good = env.submit(f'[Executable = "/bin/sh"; Arguments = "run.sh"; InputSandbox = {{"{sb}"}};'
                      ' OutputSandbox = {"std.out", "std.err", "out.txt"}; CPUTime = 600;]')
    bad = env.submit('[Executable = "/bin/sh"; Arguments = "-c \'echo bad >&2; exit 3\'";'
                     ' CPUTime = 600;]')
    # pilots are never sent to a push-mode CE
    assert SiteDirector(push_config, instance="sd").queues() == []
    first = PushJobAgent(push_config, instance="push-1", period=1)
    second = PushJobAgent(push_config, instance="push-2", period=1)
    first.beat()
    assert second.beat() == ["push-1", "push-2"]
    for agent in (first, second):
        agent.run_once()
    # matched and shipped by the queue's owner only: each job once
    assert len(first.submitted) + len(second.submitted) == 2
    assert {r.phase for r in push_rows(push_config)} <= {"Submitted", "Running"}
    # "push-1" crashes: "push-2" takes over its batch jobs once push-1's heartbeat is old
    before = list(second.submitted)
    ended = cycle_until([second], lambda: all(
        s["Status"] in FINAL for s in statuses(env, [good, bad]).values()))
    assert ended, statuses(env, [good, bad])
    assert second.submitted == before  # picked up, not submitted again
    assert env.status(good) == {"Status": "Done", "MinorStatus": "Execution Complete",
                                "ApplicationStatus": "Exit code 0"}
    assert env.status(bad) == {"Status": "Failed",
                               "MinorStatus": "Application Finished With Errors",
                               "ApplicationStatus": "Exit code 3"}
    steps = list(dict.fromkeys((row[0], row[1]) for row in env.logging(good)))
    expected = [("Matched", "Assigned"), ("Running", "Job Initialization"),
                ("Running", "Downloading InputSandbox"), ("Running", "Application"),
                ("Completing", "Retrieving Outputs From Batch System"),
                ("Completing", "Application Finished Successfully"),
                ("Completing", "Uploading Output Sandbox"),
                ("Completing", "Output Sandbox Uploaded"), ("Done", "Execution Complete")]
    assert [s for s in steps if s in expected] == expected, steps
    files = output_sandbox(env, good)
    settings = push_config.resources.sites[SITE].ces["hpc-login"].settings
    user = settings.get("User") or pwd.getpwuid(os.getuid()).pw_name
    assert files["std.out"] == f"as {user}\ninput data\n".encode()  # as the site's user
    assert files["out.txt"] == b"result\n" and "std.err" in files
    params = env.call("alice", "WorkloadManagement/JobMonitoring", "getJobParameters", good)
    params = params.get(str(good), params)
    assert params["BatchJobReference"].startswith("slurm://"), params
    assert float(params["TotalCPUTime(s)"]) >= 0 and "payload ended" in params["JobWrapperLog"]
    assert push_rows(push_config) == []
    work = Path(settings["WorkDir"])
    assert list((work / "push").iterdir()) == []  # job directories removed
    second.stop()
    second.run(once=True)


def test_push_mode_kill_is_scancel_and_cpu_limit_holds(env: Env, push_config: Config) -> None:
    tag = uuid.uuid4().hex
    sleeper = env.submit(f'[Executable = "/bin/sh"; Arguments = "-c \'sleep 300; echo {tag}\'";'
                         ' CPUTime = 600;]')
    data = push_config.model_dump(by_alias=True, exclude_none=True)
    data["Operations"]["PushMode"]["CPULimitFactor"] = 0.01  # CPUTime 100 -> 1 CPU second
    data["Operations"]["Pilot"]["FailingQueueBackoffMinutes"] = 0  # after the "crash" below
    cfg = Config.model_validate(data)
    agent = PushJobAgent(cfg, instance="push-k", period=1)
    # the agent "crashes" between the match and the sbatch: the row stays New...
    ship = agent.ship
    agent.ship = mock.Mock(side_effect=OSError("crash"))  # type: ignore[method-assign]
    agent.run_once()
    assert [r.phase for r in push_rows(cfg)] == ["New"]
    assert env.status(sleeper)["Status"] == "Matched"
    agent.ship = ship  # type: ignore[method-assign]
    # ... and the next cycle (or a restarted agent) ships it
    running = cycle_until([agent], lambda: env.status(sleeper)["MinorStatus"] == "Application"
                          and live_processes_with(tag))
    assert running, (env.status(sleeper), push_rows(cfg))
    # heartbeats are sent on the job's behalf while it runs
    assert cycle_until([agent], lambda: env.call(
        "alice", "WorkloadManagement/JobMonitoring", "getJobHeartBeatData", sleeper))
    env.call("alice", "WorkloadManagement/JobManager", "killJob", [sleeper])
    assert cycle_until([agent], lambda: not live_processes_with(tag), 30), "payload alive"
    assert cycle_until([agent], lambda: push_rows(cfg) == [], 30)
    assert env.status(sleeper)["Status"] == "Killed"
    busy = env.submit('[Executable = "/bin/sh"; Arguments = "-c \'while :; do :; done\'";'
                      ' CPUTime = 100;]')
    assert cycle_until([agent], lambda: env.status(busy)["Status"] in FINAL)
    assert env.status(busy)["Status"] == "Failed"
    assert env.status(busy)["MinorStatus"] == "Job has reached the CPU limit of the queue"
    agent.stop()
    agent.run(once=True)
    deadline = time.monotonic() + 30  # the processes go, on a loaded machine not at once
    while (res := subprocess.run(["pgrep", "-f", tag], capture_output=True, text=True,
                                 check=False)).stdout.strip() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert res.stdout.strip() == ""


@pytest.mark.parametrize("push_config", ["slurm"], indirect=True)
def test_unshippable_jobs_fail_and_the_queue_backs_off(env: Env, push_config: Config) -> None:
    data = push_config.model_dump(by_alias=True, exclude_none=True)
    ce = data["Resources"]["Sites"][SITE]["CEs"]["hpc-login"]
    ce["Queues"] = {"nosuchpartition": ce["Queues"]["debug"]}  # sbatch refuses it
    cfg = Config.model_validate(data)
    first = env.submit('[Executable = "/bin/true"; CPUTime = 600;]')
    agent = PushJobAgent(cfg, instance="push-f", period=1)
    agent.beat()
    agent.run_once()
    [row] = push_rows(cfg)
    assert (row.phase, row.attempts, row.agent) == ("New", 1, "push-f")
    second = env.submit('[Executable = "/bin/true"; CPUTime = 600;]')
    assert cycle_until([agent], lambda: env.status(first)["Status"] == "Failed", 60)
    assert env.status(first)["MinorStatus"] == "Submission To Batch System Failed"
    assert push_rows(cfg) == [] and agent.submitted == []
    assert env.status(second)["Status"] == "Waiting"  # the failing queue is left alone
