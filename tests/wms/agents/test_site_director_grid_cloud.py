"""End to end through the cloud CE: the site director sends real pilots (the real zipapp) to
the OpenStack stand-in (run by a "VM"'s user data); they match submitted jobs and run them to
Done. (ARC: against a real A-REX, tests/wms/ce/test_arex.py.)"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from tests.support.credentials import Creds
from tests.support.openstack import OpenStackStandIn
from tests.support.servers import ThreadedServer

from core.config.schema import Config
from core.db import init_schema, make_engine
from core.rpc.runner import available_services
from wms.agents.site_director import SiteDirector
from wms.db.schema import WMS_SCHEMA


@pytest.fixture
def server(config: Config) -> Iterator[ThreadedServer]:
    engine = make_engine(config.database_url("WorkloadManagement"))
    init_schema(engine, WMS_SCHEMA)
    engine.dispose()
    with ThreadedServer(config, available_services().values()) as srv:
        yield srv


def call(server: ThreadedServer, creds: Creds, service: str, method: str, *args: Any) -> Any:
    reply = requests.post(f"{server.url}/WorkloadManagement/{service}",
                          data={"method": method, "args": json.dumps(list(args))},
                          cert=tuple(map(str, creds.alice)), verify=str(creds.ca_dir),
                          timeout=60)
    body = reply.json()
    assert body["OK"], body
    return body["Value"]


def with_ce(config: Config, server: ThreadedServer, ce_type: str,
            settings: dict[str, Any]) -> Config:
    data = config.model_dump(by_alias=True, exclude_none=True)
    data["Resources"] = {"Sites": {"Grid.Test.site": {"CEs": {"the-ce": {
        "CEType": ce_type, "Settings": settings,
        "Queues": {"default": {"MaxCPUTime": 3600, "MaxWallTime": 3600,
                               "MaxWaitingPilots": 1, "MaxTotalPilots": 1}}}}}}}
    data["Operations"] = {"Pilot": {"URLs": [server.url], "MaxFailedMatches": 2, "Poll": 0.5,
                                    "Heartbeat": 1}}
    return Config.model_validate(data)


def run_jobs_to_done(cfg: Config, server: ThreadedServer, creds: Creds) -> None:
    jobs = [call(server, creds, "JobManager", "submitJob",
                 f'[Executable = "/bin/echo"; Arguments = "grid job {i}"; CPUTime = 600;]')
            for i in range(2)]
    director = SiteDirector(cfg, instance="test", period=1)
    deadline = time.monotonic() + 90
    states: dict[str, Any] = {}
    while time.monotonic() < deadline:
        director.run_once()
        states = call(server, creds, "JobMonitoring", "getJobsStatus", jobs)
        if all(v["Status"] == "Done" for v in states.values()):
            break
        time.sleep(1)
    assert {v["Status"] for v in states.values()} == {"Done"}, states
    pilots = call(server, creds, "PilotManager", "getPilots", jobs[0])
    assert len(pilots) == 1  # MaxTotalPilots: one pilot ran both jobs
    # the pilot stops after 2 failed matches; the director records it Done with its output
    deadline = time.monotonic() + 60
    info: dict[str, Any] = {}
    while time.monotonic() < deadline:
        director.run_once()
        info = call(server, creds, "PilotManager", "getPilots", jobs[0])
        if all(p["Status"] == "Done" for p in info.values()):
            break
        time.sleep(1)
    assert {p["Status"] for p in info.values()} == {"Done"}, info
    output = call(server, creds, "PilotManager", "getJobPilotOutput", jobs[0])
    assert output["StdOut"] or output["StdErr"], output
    director.stop()
    director.run(once=True)


def test_cloud_pilots_run_jobs_to_done(config: Config, server: ThreadedServer, creds: Creds,
                                       tmp_path: Path) -> None:
    with OpenStackStandIn(tmp_path / "cloud", host_cert=creds.host[0],
                          host_key=creds.host[1]) as cloud:
        cfg = with_ce(config, server, "Cloud", {
            "AuthURL": cloud.auth_url, "Username": "pilots", "Password": "s3cret",
            "Project": "pilotproject", "Image": "img-debian", "Flavor": "m1.small",
            "CADir": str(creds.ca_dir)})
        run_jobs_to_done(cfg, server, creds)
        assert cloud.servers == {}  # the powered-off VM was deleted
        assert cloud.last_user_data.startswith(b"#!/bin/sh\n")
