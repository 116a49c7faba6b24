"""Matcher and WMSAdministrator over real HTTPS (pilot tokens, user and admin certificates), on
SQLite and MariaDB, with DIRAC's envelope as DIRAC's pilots see it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import pytest
import requests
import sqlalchemy as sa
from tests.core.rpc.conftest import Creds
from tests.support.servers import ThreadedServer

from core.config.schema import Config
from core.db import init_schema, make_engine, write_transaction
from wms.db import jobs as jobs_db
from wms.db.schema import WMS_SCHEMA
from wms.db.tables import job_jdls
from wms.logic.matching import TQJob, enqueue_jobs
from wms.service.matcher import MatcherService
from wms.service.wms_administrator import WMSAdministratorService

SITE = "LCG.CERN.cern"
RESOURCE = {"Site": SITE, "CPUTime": 86400, "GridCE": "ce1.cern.ch", "Tag": ["GPU"],
            "PilotReference": "https://ce1.cern.ch/pilot/1", "ReleaseVersion": "v9.0.0"}


@pytest.fixture
def server(config: Config, db_url: str) -> Iterator[ThreadedServer]:
    engine = make_engine(db_url)
    init_schema(engine, WMS_SCHEMA)
    engine.dispose()
    with ThreadedServer(config.model_copy(update={"database": db_url}),
                        [MatcherService, WMSAdministratorService]) as srv:
        yield srv


def add_waiting(db_url: str, groups: list[tuple[str, str]]) -> list[int]:
    """Waiting jobs of (owner, group) in the task queues."""
    engine = make_engine(db_url)
    now = datetime.now(timezone.utc)
    with write_transaction(engine) as conn:
        ids = jobs_db.insert_jobs(conn, [jobs_db.NewJob(
            owner=owner, owner_group=group, vo="demo", status="Waiting",
            minor_status="Pilot Agent Submission", original_jdl="[Executable = \"ls\";]")
            for owner, group in groups], now=now, source="JobManager")
        conn.execute(sa.update(job_jdls).where(job_jdls.c.job_id.in_(ids))
                     .values(processed_jdl=job_jdls.c.original_jdl))
        enqueue_jobs(conn, [TQJob(job_id=j, owner=o, owner_group=g, vo="demo", cpu_time=3600)
                            for j, (o, g) in zip(ids, groups, strict=True)], now)
    engine.dispose()
    return ids


def call(server: ThreadedServer, creds: Creds, who: str, service: str, method: str,
         *args: Any, scopes: list[str] | None = None) -> tuple[int, dict[str, Any]]:
    kwargs: dict[str, Any] = {}
    if who == "pilot":
        token = creds.token("pilot", "demo_pilot", scopes=scopes)
        kwargs["headers"] = {"Authorization": f"Bearer {token}"}
    elif who == "alice":
        kwargs["cert"] = tuple(map(str, creds.alice))
    elif who == "admin":
        kwargs["cert"] = str(creds.proxy(creds.admin, group="demo_admin"))
    reply = requests.post(f"{server.url}/WorkloadManagement/{service}",
                          data={"method": method, "args": json.dumps(list(args))},
                          verify=str(creds.ca_dir), timeout=60, **kwargs)
    return reply.status_code, reply.json()


def test_request_job_replies_like_dirac(server: ThreadedServer, creds: Creds,
                                        db_url: str) -> None:
    [job_id] = add_waiting(db_url, [("alice", "demo_user")])
    status, reply = call(server, creds, "pilot", "Matcher", "requestJob", RESOURCE)
    assert status == 200 and reply["OK"], reply
    value = dict(reply["Value"])
    assert value.pop("JobToken").count(".") == 2  # a job-scoped JWT, tested with the pilots
    assert value == {"JDL": "[Executable = \"ls\";]", "JobID": job_id,
                     "Owner": "alice", "Group": "demo_user", "PilotInfoReportedFlag": True}
    status, reply = call(server, creds, "pilot", "Matcher", "requestJob", RESOURCE)
    assert status == 200 and not reply["OK"] and reply["Errno"] == 1510, reply
    assert reply["Message"] == "No match found ( 1510 : No match found)"
    # old pilots send a JDL text
    add_waiting(db_url, [("alice", "demo_user")])
    status, reply = call(server, creds, "pilot", "Matcher", "requestJob",
                         f'[ Site = "{SITE}"; CPUTime = 86400; ]')
    assert reply["OK"], reply


def test_request_job_rights_and_scopes(server: ThreadedServer, creds: Creds,
                                       db_url: str) -> None:
    add_waiting(db_url, [("alice", "demo_user")])
    assert call(server, creds, "alice", "Matcher", "requestJob", RESOURCE)[0] == 401
    assert call(server, creds, "admin", "Matcher", "requestJob", RESOURCE)[0] == 401
    status, reply = call(server, creds, "pilot", "Matcher", "requestJob", RESOURCE,
                         scopes=["match:group:demo_admin"])
    assert reply.get("Errno") == 1510, reply
    status, reply = call(server, creds, "pilot", "Matcher", "requestJob",
                         {**RESOURCE, "OwnerGroup": "demo_user"},
                         scopes=["match:owner:alice"])
    assert reply["OK"], reply
    status, reply = call(server, creds, "pilot", "Matcher", "requestJob", {"CPUTime": 10})
    assert not reply["OK"] and "Site" in reply["Message"]


def test_task_queue_views(server: ThreadedServer, creds: Creds, db_url: str) -> None:
    add_waiting(db_url, [("alice", "demo_user"), ("alice", "demo_user"),
                         ("admin", "demo_admin")])
    assert call(server, creds, "alice", "Matcher", "getActiveTaskQueues")[0] == 401
    assert call(server, creds, "pilot", "Matcher", "getActiveTaskQueues")[0] == 401
    status, reply = call(server, creds, "admin", "Matcher", "getActiveTaskQueues")
    assert status == 200 and reply["OK"], reply
    queues = sorted(reply["Value"].values(), key=lambda q: q["OwnerGroup"])
    assert [(q["OwnerGroup"], q["Jobs"], q["CPUTime"]) for q in queues] == [
        ("demo_admin", 1, 3600), ("demo_user", 2, 3600)]
    assert all(q["Priority"] == 1000 and q["JobTypes"] == ["User"] for q in queues)
    status, reply = call(server, creds, "admin", "Matcher", "getMatchingTaskQueues",
                         {"Site": SITE, "CPUTime": 3600, "OwnerGroup": "demo_user"})
    assert [q["Owner"] for q in reply["Value"].values()] == ["alice"], reply
    status, reply = call(server, creds, "pilot", "Matcher", "getMatchingTaskQueues",
                         {"Site": SITE, "CPUTime": 60})
    assert reply == {"OK": True, "Value": {}}


def test_site_mask(server: ThreadedServer, creds: Creds, db_url: str) -> None:
    add_waiting(db_url, [("alice", "demo_user")])
    assert call(server, creds, "alice", "WMSAdministrator", "banSite", SITE, "no")[0] == 401
    assert call(server, creds, "pilot", "WMSAdministrator", "allowSite", SITE, "no")[0] == 401
    assert call(server, creds, "admin", "WMSAdministrator", "banSite", SITE, "downtime") == (
        200, {"OK": True, "Value": None})
    assert call(server, creds, "pilot", "Matcher", "requestJob", RESOURCE)[1]["Errno"] == 1510
    assert call(server, creds, "alice", "WMSAdministrator", "getSiteMask", "Banned")[1][
        "Value"] == [SITE]
    assert call(server, creds, "alice", "WMSAdministrator", "getSiteMask")[1]["Value"] == []
    assert call(server, creds, "alice", "WMSAdministrator", "getSiteMaskStatus", SITE)[1][
        "Value"] == "Banned"
    assert call(server, creds, "admin", "WMSAdministrator", "allowSite", SITE, "back")[1]["OK"]
    assert call(server, creds, "alice", "WMSAdministrator", "getSiteMaskStatus")[1][
        "Value"] == {SITE: "Active"}
    assert call(server, creds, "alice", "WMSAdministrator", "getSiteMaskStatus",
                "LCG.None.org")[1]["Value"] == "Unknown"
    logging = call(server, creds, "alice", "WMSAdministrator", "getSiteMaskLogging",
                   [SITE])[1]["Value"][SITE]
    assert [(r[0], r[2], r[3]) for r in logging] == [("Banned", "admin", "downtime"),
                                                     ("Active", "admin", "back")]
    assert logging[0][1]["__dCls"] == "dt"
    assert call(server, creds, "pilot", "Matcher", "requestJob", RESOURCE)[1]["OK"]
    assert call(server, creds, "pilot", "WMSAdministrator", "getSiteMask")[1]["OK"]
    assert call(server, creds, "admin", "WMSAdministrator", "banSite", " ", "x")[1][
        "Errno"] == 22
