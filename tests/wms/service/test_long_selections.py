"""Selections with 40,000 values over real HTTPS, on SQLite and MariaDB.

SQLite takes at most 32,766 bound parameters per statement (``core.db`` sets that limit on
every connection, whatever the build allows); a list of job IDs, sites or statuses longer than
that must still select (``core.in_values``), never end as an HTTP 500.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from tests.core.rpc.conftest import Creds
from tests.support.servers import ThreadedServer

from core.config.schema import Config
from core.db import init_schema, make_engine
from core.in_values import MAX_VALUES
from wms.db.schema import WMS_SCHEMA
from wms.service.job_manager import JobManagerService
from wms.service.job_monitoring import JobMonitoringService
from wms.service.pilot_manager import PilotManagerService
from wms.service.wms_administrator import WMSAdministratorService

LONG = 40_000
JDL = '[ Executable = "/bin/echo"; JobName = "j"; CPUTime = 600; ]'


@pytest.fixture
def wms(config: Config, db_url: str) -> Iterator[ThreadedServer]:
    cfg = config.model_copy(update={"database": db_url})
    engine = make_engine(db_url)
    init_schema(engine, WMS_SCHEMA)
    engine.dispose()
    with ThreadedServer(cfg, [JobManagerService, JobMonitoringService, PilotManagerService,
                              WMSAdministratorService]) as server:
        yield server


def call(server: ThreadedServer, creds: Creds, service: str, method: str, *args: Any,
         admin: bool = False) -> dict[str, Any]:
    cert: Any = (str(creds.proxy(creds.admin, group="demo_admin")) if admin
                 else tuple(map(str, creds.alice)))
    reply = requests.post(f"{server.url}/WorkloadManagement/{service}",
                          data={"method": method, "args": json.dumps(list(args))},
                          verify=str(creds.ca_dir), cert=cert, timeout=300)
    assert reply.status_code == 200, reply.text[:500]
    body = reply.json()
    return body  # type: ignore[no-any-return]


def test_job_status_and_searches_with_40000_ids(wms: ThreadedServer, creds: Creds) -> None:
    jobs = [call(wms, creds, "JobManager", "submitJob", JDL)["Value"] for _ in range(3)]
    wanted = sorted(set(range(1, LONG + 1)) | set(jobs))
    assert len(wanted) >= LONG
    status = call(wms, creds, "JobMonitoring", "getJobsStatus", wanted)
    assert status["OK"] is True, status
    assert status["Value"] == {str(j): {"Status": "Waiting"} for j in jobs}
    found = call(wms, creds, "JobMonitoring", "getJobs", {"JobID": wanted})
    assert found == {"OK": True, "Value": jobs}, str(found)[:300]
    found = call(wms, creds, "JobMonitoring", "getJobs",
                 {"JobID": wanted, "Status": ["Waiting"] + [f"S{i}" for i in range(LONG)]})
    assert found["Value"] == jobs
    page = call(wms, creds, "JobMonitoring", "search", ["JobID", "Status"],
                [{"parameter": "JobID", "operator": "in", "values": wanted},
                 {"parameter": "Site", "operator": "not in",
                  "values": [f"LCG.X{i}.org" for i in range(LONG)]}],
                [{"parameter": "JobID", "direction": "desc"}], 1, 2)
    assert page["OK"] is True, str(page)[:300]
    assert page["Value"]["Total"] == 3
    assert [r["JobID"] for r in page["Value"]["Records"]] == [jobs[2], jobs[1]]
    page = call(wms, creds, "JobMonitoring", "search", ["JobID"],
                [{"parameter": "JobID", "operator": "not in", "values": wanted[1:]}])
    assert [r["JobID"] for r in page["Value"]["Records"]] == [wanted[0]] if wanted[0] in jobs \
        else page["Value"]["Records"] == []
    counters = call(wms, creds, "JobMonitoring", "getCounters", ["Status"], {"JobID": wanted})
    assert counters["Value"] == [[{"Status": "Waiting"}, 3]]


def test_site_mask_and_pilots_with_40000_names(wms: ThreadedServer, creds: Creds) -> None:
    sites = [f"LCG.S{i}.org" for i in range(LONG)]
    mask = call(wms, creds, "WMSAdministrator", "getSiteMaskStatus", sites)
    assert mask["OK"] is True and mask["Value"] == {}, str(mask)[:300]
    history = call(wms, creds, "WMSAdministrator", "getSiteMaskLogging", sites)
    assert history["OK"] is True, str(history)[:300]
    refs = [f"https://ce.example.org/p{i}" for i in range(LONG)]
    added = call(wms, creds, "PilotManager", "addPilotReferences", refs, "demo_user",
                 admin=True)
    assert added["OK"] is True, str(added)[:300]
    info = call(wms, creds, "PilotManager", "getPilotInfo", refs, admin=True)
    assert info["OK"] is True and len(info["Value"]) == LONG, str(info)[:300]


def test_longer_than_the_limit_is_refused(wms: ThreadedServer, creds: Creds) -> None:
    too_many = list(range(1, MAX_VALUES + 2))
    reply = call(wms, creds, "JobMonitoring", "getJobs", {"JobID": too_many})
    assert reply["OK"] is False and reply["Errno"] == 22
    assert f"at most {MAX_VALUES:,}" in reply["Message"]
