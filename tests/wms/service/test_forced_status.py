"""Status reports and the task queues over HTTPS, on SQLite and MariaDB: a job leaving
``Waiting`` by ``setJobStatus``/``setJobStatusBulk``/``setJobAttribute``, forced or not,
leaves its task queue; no report (forced or not) puts a job into ``Waiting`` (it would sit in
no queue) or ``Standby`` (it would wait for no event)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import sqlalchemy as sa
from tests.core.rpc.conftest import Creds
from tests.support.servers import ThreadedServer

from core.config.schema import Config
from core.db import init_schema, make_engine
from wms.db.schema import WMS_SCHEMA
from wms.db.tq_tables import tq_jobs
from wms.service.job_manager import JobManagerService
from wms.service.job_monitoring import JobMonitoringService
from wms.service.job_state_update import JobStateUpdateService
from wms.service.matcher import MatcherService

JDL = '[ Executable = "/bin/echo"; JobName = "q"; CPUTime = 600; ]'


@pytest.fixture
def wms(config: Config, db_url: str) -> Iterator[ThreadedServer]:
    cfg = config.model_copy(update={"database": db_url})
    engine = make_engine(db_url)
    init_schema(engine, WMS_SCHEMA)
    engine.dispose()
    with ThreadedServer(cfg, [JobManagerService, JobMonitoringService, JobStateUpdateService,
                              MatcherService]) as server:
        yield server


class Caller:
    def __init__(self, server: ThreadedServer, creds: Creds, who: str) -> None:
        self.server, self.creds = server, creds
        self.cert: Any = (str(creds.proxy(creds.admin, group="demo_admin")) if who == "admin"
                          else tuple(map(str, creds.alice)) if who == "alice" else None)
        self.headers = ({"Authorization": f"Bearer {creds.token('pilot', 'demo_pilot')}"}
                        if who == "pilot" else {})

    def __call__(self, service: str, method: str, *args: Any) -> dict[str, Any]:
        reply = requests.post(f"{self.server.url}/WorkloadManagement/{service}",
                              data={"method": method, "args": json.dumps(list(args))},
                              verify=str(self.creds.ca_dir), cert=self.cert,
                              headers=self.headers, timeout=60)
        assert reply.status_code == 200, reply.text
        return reply.json()  # type: ignore[no-any-return]


def queued(db_url: str) -> set[int]:
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            return set(conn.execute(sa.select(tq_jobs.c.job_id)).scalars())
    finally:
        engine.dispose()


def status(alice: Caller, job: int) -> str:
    return str(alice("JobMonitoring", "getJobsStatus", [job])["Value"][str(job)]["Status"])


def test_leaving_waiting_leaves_the_task_queue(wms: ThreadedServer, creds: Creds,
                                                db_url: str) -> None:
    alice, admin = Caller(wms, creds, "alice"), Caller(wms, creds, "admin")
    jobs = [alice("JobManager", "submitJob", JDL)["Value"] for _ in range(4)]
    assert queued(db_url) == set(jobs)
    # forced, by an administrator: Waiting -> Running is not in the table
    assert admin("JobStateUpdate", "setJobStatus", jobs[0], "Running", "repair", "Admin",
                 None, True)["OK"] is True
    assert status(alice, jobs[0]) == "Running" and jobs[0] not in queued(db_url)
    # allowed by the table, not forced: Waiting -> Killed by a report
    assert admin("JobStateUpdate", "setJobStatus", jobs[1], "Killed", "by hand",
                 "Admin")["OK"] is True
    assert status(alice, jobs[1]) == "Killed" and jobs[1] not in queued(db_url)
    # the bulk form, forced
    assert admin("JobStateUpdate", "setJobStatusBulk", jobs[2],
                 {"2026-01-02 03:04:05": {"Status": "Done", "MinorStatus": "by hand",
                                          "Source": "Admin"}}, True)["OK"] is True
    assert status(alice, jobs[2]) == "Done"
    assert queued(db_url) == {jobs[3]}
    # a minor status alone keeps the job Waiting, in its queue
    assert admin("JobStateUpdate", "setJobStatus", jobs[3], "", "still here", "Admin")["OK"]
    assert queued(db_url) == {jobs[3]}
    # what is still queued is what the matcher gives: only the Waiting job, then nothing
    pilot, resource = Caller(wms, creds, "pilot"), {"Site": "LCG.Any.org", "CPUTime": 86400}
    match = pilot("Matcher", "requestJob", resource)
    assert match["OK"] is True and match["Value"]["JobID"] == jobs[3], match
    assert pilot("Matcher", "requestJob", resource)["Errno"] == 1510


def test_no_report_puts_a_job_into_waiting_or_standby(wms: ThreadedServer, creds: Creds,
                                                       db_url: str) -> None:
    alice, admin = Caller(wms, creds, "alice"), Caller(wms, creds, "admin")
    waiting, other = (alice("JobManager", "submitJob", JDL)["Value"] for _ in range(2))
    refused = admin("JobStateUpdate", "setJobStatus", waiting, "Standby", "park", "Admin",
                    None, True)
    assert refused["OK"] is False and refused["Errno"] != 0
    assert "Waiting -> Standby is not set by a status report" in refused["Message"]
    assert status(alice, waiting) == "Waiting" and waiting in queued(db_url)
    assert admin("JobStateUpdate", "setJobStatus", other, "Running", "repair", "Admin",
                 None, True)["OK"] is True
    for force in (True, False):
        refused = admin("JobStateUpdate", "setJobStatus", other, "Waiting", "back", "Admin",
                        None, force)
        assert refused["OK"] is False
        assert "Running -> Waiting" in refused["Message"]
        assert "use rescheduleJob" in refused["Message"] or not force
    refused = admin("JobStateUpdate", "setJobStatusBulk", other,
                    {"2026-01-02 03:04:05": {"Status": "Waiting"}}, True)
    assert refused["OK"] is False and "use rescheduleJob" in refused["Message"]
    assert status(alice, other) == "Running" and other not in queued(db_url)
    # the way back into a queue: rescheduling (then the optimiser queues it again)
    assert alice("JobManager", "rescheduleJob", other)["OK"] is True
    assert status(alice, other) in ("Rescheduled", "Waiting")
