"""End to end through real sites: the site director sends pilots (the real zipapp) through the
SSH CE (a real sshd, pilots run as another user), the Slurm CE (a real single-node Slurm,
local ``sbatch``) and Slurm over SSH; submitted jobs reach Done and the pilots are followed to
their end with their output stored."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.support.credentials import Creds
from tests.support.servers import ThreadedServer
from tests.support.slurm import SlurmCluster
from tests.support.sshd import SSHServer
from tests.wms.agents.test_site_director import call
from tests.wms.agents.test_site_director import server as server  # noqa: F401 - fixture

from core.config.schema import Config
from wms.agents.site_director import SiteDirector
from wms.db import pilots as pilots_db

SITE = "Demo.Remote.site"
ALL_PILOT = ["Submitted", "Waiting", "Running", "Done", "Failed", "Aborted", "Deleted"]


def ce_settings(kind: str, request: pytest.FixtureRequest) -> tuple[str, dict[str, Any], str]:
    """(CEType, Settings, queue) of one kind of real site."""
    if kind == "ssh":
        sshd: SSHServer = request.getfixturevalue("sshd_server")
        return "SSH", {**sshd.settings, "WorkDir": f"{sshd.home}/pilots-{uuid.uuid4().hex[:8]}"}, \
            "default"
    cluster: SlurmCluster = request.getfixturevalue("slurm_cluster")
    settings: dict[str, Any] = {
        "WorkDir": str(cluster.base / "jobs" / uuid.uuid4().hex[:8]),
        "Environment": cluster.env, "SacctCompletion": True}
    if kind == "slurm":
        return "Slurm", settings, "debug"
    sshd = request.getfixturevalue("sshd_server")
    return "SSH", {**sshd.settings, **settings, "BatchSystem": "Slurm"}, "debug"


@pytest.fixture(params=["ssh", "slurm", "slurm-over-ssh"])
def site_config(request: pytest.FixtureRequest, config: Config,
                server: ThreadedServer) -> Iterator[tuple[Config, str]]:  # noqa: F811
    ce_type, settings, queue = ce_settings(request.param, request)
    data = config.model_dump(by_alias=True, exclude_none=True)
    data["Resources"] = {"Sites": {SITE: {"CEs": {"remote-ce": {
        "CEType": ce_type, "Settings": settings,
        "Queues": {queue: {"MaxCPUTime": 3600, "MaxWallTime": 3600, "MaxWaitingPilots": 1,
                           "MaxTotalPilots": 1}}}}}}}
    data["Operations"] = {"Pilot": {"URLs": [server.url], "MaxFailedMatches": 2, "Poll": 0.5,
                                    "Heartbeat": 1, "Python": "/usr/bin/python3"}}
    yield Config.model_validate(data), request.param


def pilot_report(director: SiteDirector) -> dict[str, Any]:
    """Every pilot of the director's queue with its status and output (for failures)."""
    report: dict[str, Any] = {}
    for site, ce_name, ce_conf, q_name, _queue in director.queues():
        ce = director._ce(site, ce_name, ce_conf)
        with director.engine().connect() as conn:
            refs = pilots_db.pilots_of_queue(conn, site, ce_name, q_name, ALL_PILOT)
        for ref, status in refs.items():
            report[ref] = (status, ce.status([ref]), ce.output(ref))
    return report


def kill_pilots(director: SiteDirector) -> None:
    """No pilot outlives the test (a pilot of the SSH user would keep the user alive)."""
    for site, ce_name, ce_conf, q_name, _queue in director.queues():
        ce = director._ce(site, ce_name, ce_conf)
        with director.engine().connect() as conn:
            refs = pilots_db.pilots_of_queue(conn, site, ce_name, q_name, ALL_PILOT)
        ce.kill(list(refs))


def wait_until(check: Any, limit: float, every: Any) -> Any:
    deadline = time.monotonic() + limit
    value = check()
    while not value and time.monotonic() < deadline:
        every()
        time.sleep(0.5)
        value = check()
    return value


def test_pilots_run_jobs_to_done(site_config: tuple[Config, str], server: ThreadedServer,  # noqa: F811
                                 creds: Creds, tmp_path: Path) -> None:
    cfg, kind = site_config
    jobs = [call(server, creds, "JobManager", "submitJob",
                 f'[Executable = "/bin/sh"; Arguments = "-c \'echo job {i} on $(id -un)\'";'
                 ' CPUTime = 600;]') for i in range(2)]
    director = SiteDirector(cfg, instance=f"test-{kind}", period=1)
    director.beat()
    try:
        def states() -> dict[str, Any]:
            return call(server, creds, "JobMonitoring", "getJobsStatus", jobs)

        done = wait_until(lambda: all(v["Status"] == "Done" for v in states().values()), 120,
                          director.run_once)
        assert done, (states(), pilot_report(director))
        sites = call(server, creds, "JobMonitoring", "getJobsSites", jobs)
        assert {v["Site"] for v in sites.values()} == {SITE}
        pilots = call(server, creds, "PilotManager", "getPilots", jobs[0])
        [ref] = list(pilots)
        assert ref.startswith("ssh://" if kind == "ssh" else "slurm://"), ref
        # one pilot (MaxTotalPilots 1) ran both jobs, then stopped after 2 failed matches
        assert list(call(server, creds, "PilotManager", "getPilots", jobs[1])) == [ref]

        def pilot_status() -> str:
            return str(call(server, creds, "PilotManager", "getPilots", jobs[0])[ref]["Status"])

        assert wait_until(lambda: pilot_status() == "Done", 60, director.run_once), \
            pilot_status()
        output = call(server, creds, "PilotManager", "getJobPilotOutput", jobs[0])
        assert "StdOut" in output
    finally:
        kill_pilots(director)
        director.stop()
        director.run(once=True)
