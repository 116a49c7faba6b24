"""WMSClient against real WMS services and a real SandboxStore over HTTPS, on both databases."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from tests.support.credentials import Creds
from tests.support.servers import ThreadedServer

from core.client_config import ClientConfig
from core.config.schema import Config
from core.db import init_schema, make_engine
from core.exceptions import (
    InvalidJDLError,
    JobManagementError,
    JobNotFoundError,
    NotFoundError,
)
from core.rpc.client import Credentials
from core.service.registry import RegistryService
from wms.client import LoggingRecord, WMSClient, job_ids, local_sandbox_files
from wms.db.schema import WMS_SCHEMA
from wms.logic.jdl import parse_jdl
from wms.service.job_manager import JobManagerService
from wms.service.job_monitoring import JobMonitoringService
from wms.service.job_state_update import JobStateUpdateService
from wms.service.sandbox_store import SandboxStoreService

SERVICES = [RegistryService, JobManagerService, JobMonitoringService, JobStateUpdateService,
            SandboxStoreService]
JDL = '[Executable = "/bin/echo"; Arguments = "hello"; JobName = "greeting"; CPUTime = 600;]'


@pytest.fixture
def wms_server(config: Config, db_url: str, tmp_path: Path) -> Iterator[ThreadedServer]:
    data = config.model_dump(by_alias=True, exclude_none=True)
    data["Database"] = db_url
    data["Systems"] = {"WorkloadManagement": {"Services": {"SandboxStore": {"Options": {
        "BasePath": str(tmp_path / "store")}}}}}
    engine = make_engine(db_url)
    init_schema(engine, WMS_SCHEMA)
    engine.dispose()
    with ThreadedServer(Config.model_validate(data), SERVICES) as server:
        yield server


def make_client(server: ThreadedServer, creds: Creds, who: str = "alice") -> WMSClient:
    cfg = ClientConfig.model_validate({"URLs": [server.url], "CADir": str(creds.ca_dir)})
    if who == "pilot":
        return WMSClient(cfg, Credentials(token=creds.token("pilot", "demo_pilot")))
    cert, key = creds.alice if who == "alice" else creds.admin
    return WMSClient(cfg, Credentials(cert=cert, key=key))


@pytest.fixture
def alice(wms_server: ThreadedServer, creds: Creds) -> Iterator[WMSClient]:
    with make_client(wms_server, creds) as client:
        yield client


@pytest.fixture
def pilot(wms_server: ThreadedServer, creds: Creds) -> Iterator[WMSClient]:
    with make_client(wms_server, creds, "pilot") as client:
        yield client


def finish(pilot: WMSClient, job: int, status: str = "Done") -> None:
    """Move a waiting job to ``status`` the way a pilot would report it."""
    update = pilot.rpc("JobStateUpdate")
    for step, minor in (("Matched", "Assigned"), ("Running", "Application"),
                        (status, "Execution Complete")):
        update.call("setJobStatus", job, step, minor, "Pilot")


def test_job_ids_forms() -> None:
    assert job_ids("1, 2,,3") == [1, 2, 3]
    assert job_ids(4) == [4] and job_ids(["5", 6]) == [5, 6]
    with pytest.raises(ValueError, match="not a job ID"):
        job_ids(["x"])
    with pytest.raises(ValueError, match="not a job ID"):
        job_ids([True])
    jdl = parse_jdl('InputSandbox = {"a.sh", "LFN:/x", "SB:SE|/p", "%(p)s", "b"}')
    assert local_sandbox_files(jdl) == ["a.sh", "b"]


def test_submit_follow_kill(alice: WMSClient) -> None:
    [job] = alice.submit(JDL)
    assert alice.status([job]) == {job: "Waiting"}
    assert alice.status(str(job)) == {job: "Waiting"}
    assert alice.states(job)[job]["MinorStatus"] == "Pilot Agent Submission"
    summary = alice.summary([job])[job]
    assert (summary["Owner"], summary["JobName"]) == ("alice", "greeting")
    assert alice.attributes(job, ["JobName"]) == {"JobName": "greeting"}
    history = alice.logging_info(job)
    assert [h.status for h in history] == ["Received", "Checking", "Waiting"]
    assert isinstance(history[0], LoggingRecord) and history[0].time.tzinfo is not None
    assert 'JobName = "greeting";' in alice.jdl(job, original=True)
    assert f"JobID = {job};" in alice.jdl(job)
    assert alice.parameters([job]) == {job: {}}
    assert alice.input_data(job) == []
    assert alice.kill(job) == [job]
    assert alice.status(job) == {job: "Killed"}
    with pytest.raises(JobManagementError) as failed:
        alice.kill([job])
    assert failed.value.extra["FailedJobIDs"] == [job]
    assert alice.delete([job]) == [job]
    assert alice.kill([]) == []


def test_unknown_job_and_bad_jdl(alice: WMSClient, tmp_path: Path) -> None:
    with pytest.raises(JobNotFoundError):
        alice.logging_info(999999)
    assert alice.status([999999]) == {}
    with pytest.raises(InvalidJDLError):
        alice.submit("[Executable = ")
    missing = tmp_path / "nope.sh"
    with pytest.raises(InvalidJDLError, match="Input Sandbox is not valid") as bad:
        alice.submit(f'[Executable = "nope.sh"; InputSandbox = {{"{missing}"}};]')
    assert bad.value.extra["BadFile"] == [str(missing)]
    assert alice.select() == []


def test_parametric_is_confirmed(alice: WMSClient) -> None:
    ids = alice.submit('[Executable = "/bin/echo"; Arguments = "%s"; '
                       'Parameters = {"a", "b", "c"};]')
    assert len(ids) == 3
    assert set(alice.status(ids).values()) == {"Waiting"}
    assert alice.select(status="Waiting") == sorted(ids)


def test_select_filters(alice: WMSClient) -> None:
    first = alice.submit(JDL.replace("]", 'JobGroup = "g1";]'))[0]
    second = alice.submit(JDL.replace("greeting", "other"))[0]
    alice.kill(second)
    assert alice.select() == [first, second]
    assert alice.select(job_group="g1") == [first]
    assert alice.select(status=["Killed", "Done"]) == [second]
    assert alice.select({"JobName": "other"}) == [second]
    assert alice.select(owner="alice", job_name="greeting") == [first]
    yesterday = datetime.now(timezone.utc) - timedelta(days=1)
    assert alice.select(cut_date=yesterday.date()) == [first, second]
    assert alice.select(cut_date=yesterday + timedelta(days=2)) == []
    assert alice.select(cut_date="2000-01-01") == [first, second]


def test_input_sandbox_is_uploaded_and_assigned(alice: WMSClient, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("run.sh").write_text("#!/bin/sh\necho run\n")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "in.txt").write_text("input")
    seen: list[tuple[int, int | None]] = []
    [job] = alice.submit('[Executable = "run.sh"; InputSandbox = {"run.sh", "data"};]',
                         progress=lambda done, total: seen.append((done, total)))
    assert seen[0][0] == 0 and seen[-1][0] == seen[-1][1] and seen[-1][0]
    boxes = alice.sandboxes(job)
    assert len(boxes["Input"]) == 1 and boxes["Output"] == []
    sb_url = boxes["Input"][0]
    assert sb_url.startswith("SB:") and sb_url in alice.jdl(job, original=True)
    out = alice.download_job_sandbox(job, "Input", tmp_path / "back")
    assert sorted(p.name for p in out) == ["data", "run.sh"]
    assert (tmp_path / "back" / "data" / "in.txt").read_text() == "input"
    with pytest.raises(NotFoundError, match=f"No Output sandbox found for job {job}"):
        alice.download_job_sandbox(job, "Output", tmp_path / "none")


def test_output_sandbox_download_with_progress(alice: WMSClient, pilot: WMSClient,
                                               tmp_path: Path) -> None:
    [job] = alice.submit(JDL)
    finish(pilot, job, "Failed")
    (tmp_path / "std.out").write_text("hello\n" * 1000)
    url = alice.upload_sandbox([tmp_path / "std.out"])
    alice.assign_sandboxes([job], url, "Output")
    seen: list[tuple[int, int | None]] = []
    out = alice.download_job_sandbox(job, "Output", tmp_path / "got",
                                     progress=lambda d, t: seen.append((d, t)))
    assert [p.name for p in out] == ["std.out"]
    assert (tmp_path / "got" / "std.out").read_text() == "hello\n" * 1000
    assert seen[-1][0] == seen[-1][1] and seen[-1][0] > 0
    assert alice.status(job) == {job: "Failed"}
    assert alice.reschedule(job) == [job]
    assert alice.status(job) == {job: "Rescheduled"}  # default back-off before Waiting


def test_download_without_progress(alice: WMSClient, tmp_path: Path) -> None:
    (tmp_path / "x.txt").write_bytes(b"payload")
    url = alice.upload_sandbox([tmp_path / "x.txt"])
    got = alice.download_sandbox(url, tmp_path / "ok")
    assert [p.name for p in got] == ["x.txt"]
    assert (tmp_path / "ok" / "x.txt").read_bytes() == b"payload"


def test_whoami(alice: WMSClient) -> None:
    me: dict[str, Any] = alice.whoami()
    assert (me["username"], me["group"]) == ("alice", "demo_user")
