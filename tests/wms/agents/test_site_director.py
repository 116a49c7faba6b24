"""End to end on the embedded default: the site director sends local pilots (real processes,
the real pilot zipapp) that run submitted jobs to Done; pilot bookkeeping follows."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from tests.support.credentials import Creds
from tests.support.servers import ThreadedServer

from core.config.schema import Config
from core.db import init_schema, make_engine
from core.rpc.runner import available_services
from wms.agents.site_director import SiteDirector
from wms.db.schema import WMS_SCHEMA
from wms.logic.site_director import pilot_script, pilots_to_submit


@pytest.fixture
def server(config: Config) -> Iterator[ThreadedServer]:
    engine = make_engine(config.database_url("WorkloadManagement"))
    init_schema(engine, WMS_SCHEMA)
    engine.dispose()
    with ThreadedServer(config, available_services().values()) as srv:
        yield srv


def with_resources(config: Config, server: ThreadedServer, work: Path) -> Config:
    data = config.model_dump(by_alias=True, exclude_none=True)
    data["Resources"] = {"Sites": {"Demo.Local.site": {"CEs": {"localhost": {
        "CEType": "Local", "Settings": {"WorkDir": str(work)},
        "Queues": {"default": {"MaxCPUTime": 3600, "MaxWaitingPilots": 2,
                               "MaxTotalPilots": 2}}}}}}}
    data["Operations"] = {"Pilot": {"URLs": [server.url], "MaxFailedMatches": 2, "Poll": 0.5,
                                    "Heartbeat": 1}}
    return Config.model_validate(data)


def call(server: ThreadedServer, creds: Creds, service: str, method: str, *args: Any) -> Any:
    reply = requests.post(f"{server.url}/WorkloadManagement/{service}",
                          data={"method": method, "args": json.dumps(list(args))},
                          cert=tuple(map(str, creds.alice)), verify=str(creds.ca_dir),
                          timeout=60)
    body = reply.json()
    assert body["OK"], body
    return body["Value"]


def test_pilot_arithmetic() -> None:
    from core.config.schema import QueueConfig

    queue = QueueConfig(MaxWaitingPilots=3, MaxTotalPilots=5, MaxPilotsToSubmit=10)
    assert pilots_to_submit(queue, waiting_jobs=0, waiting_pilots=0, active_pilots=0) == 0
    assert pilots_to_submit(queue, waiting_jobs=9, waiting_pilots=0, active_pilots=0) == 3
    assert pilots_to_submit(queue, waiting_jobs=9, waiting_pilots=1, active_pilots=4) == 1
    assert pilots_to_submit(queue, waiting_jobs=1, waiting_pilots=1, active_pilots=1) == 0
    script = pilot_script(zipapp=b"PK", token="tok", cas=b"x", args=["--site=A B"])
    assert script.startswith("#!/bin/sh\n") and "'--site=A B'" in script


def test_local_pilots_run_jobs_to_done(config: Config, server: ThreadedServer, creds: Creds,
                                       tmp_path: Path) -> None:
    cfg = with_resources(config, server, tmp_path / "pilots")
    jobs = [call(server, creds, "JobManager", "submitJob",
                 f'[Executable = "/bin/echo"; Arguments = "job {i}"; CPUTime = 600;]')
            for i in range(3)]
    director = SiteDirector(cfg, instance="test", period=1)
    director.run_once()
    director.beat()
    deadline = time.monotonic() + 90
    states: dict[str, Any] = {}
    while time.monotonic() < deadline:
        states = call(server, creds, "JobMonitoring", "getJobsStatus", jobs)
        if all(v["Status"] == "Done" for v in states.values()):
            break
        director.run_once()
        time.sleep(1)
    assert {v["Status"] for v in states.values()} == {"Done"}, states
    pilots = {ref for job in jobs
              for ref in call(server, creds, "PilotManager", "getPilots", job)}
    assert 1 <= len(pilots) <= 2  # MaxTotalPilots
    # the pilots stop after 2 failed matches; the director then records them Done
    deadline = time.monotonic() + 60
    info: dict[str, Any] = {}
    while time.monotonic() < deadline:
        director.run_once()
        info = {ref: call(server, creds, "PilotManager", "getPilots", jobs[0])[ref]["Status"]
                for ref in call(server, creds, "PilotManager", "getPilots", jobs[0])}
        if all(s == "Done" for s in info.values()):
            break
        time.sleep(1)
    assert set(info.values()) == {"Done"}, info
    output = call(server, creds, "PilotManager", "getJobPilotOutput", jobs[0])
    assert "StdOut" in output
    director.stop()
    director.run(once=True)
