"""Data-driven jobs end to end, on SQLite and MariaDB: a job whose input data sits on the real
xrootd server is scheduled for the site holding it, a real pilot there downloads the input
(checksum checked), runs the payload and uploads and registers its output data; a broken
output SE ends with the output safe on a failover SE and a request that the agent completes;
``doutput --Data`` fetches the outputs."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from core.client_config import ClientConfig
from core.config.schema import Config
from core.db import init_schema, make_engine
from core.rpc.client import Credentials
from core.rpc.runner import available_services
from dms.agents.request_executing import RequestExecutingAgent
from dms.catalog_client import FileCatalogClient
from dms.db.rms import REQUEST_SCHEMA
from dms.logic.data_manager import DataManager
from dms.request_client import ReqManagerClient
from dms.storage import StorageElements
from pilot.build import build
from tests.dms.storage.conftest import with_storage
from tests.support.credentials import Creds
from tests.support.servers import ThreadedServer
from tests.support.xrootd import XRootDServer, free_port
from wms.client import WMSClient
from wms.db.schema import WMS_SCHEMA

SYSTEM_PYTHON = "/usr/bin/python3"
HOME = "/demo/user/a/alice"
THERE, HERE = "LCG.There.org", "LCG.Here.org"  # There: DISK-A and XRD; Here: DISK-B


@dataclass
class Stack:
    server: ThreadedServer
    config: Config
    creds: Creds
    base: Path
    pyz: Path

    @property
    def alice(self) -> Credentials:
        return Credentials(cert=self.creds.alice[0], key=self.creds.alice[1])

    def wms(self) -> WMSClient:
        return WMSClient(ClientConfig(urls=[self.server.url], ca_dir=self.creds.ca_dir),
                         self.alice)

    def data_manager(self) -> DataManager:
        wms = self.wms()
        ses = StorageElements.from_config(self.config, credentials=self.alice,
                                          ca_dir=self.creds.ca_dir)
        return DataManager(FileCatalogClient(wms.rpc("DataManagement/FileCatalog")), ses)

    def pilot(self, site: str, name: str, *args: str) -> subprocess.Popen[bytes]:
        work = self.base / name
        work.mkdir(parents=True)
        token = work / "token"
        token.write_text(self.creds.token("pilot", "demo_pilot"))
        cmd = [SYSTEM_PYTHON, "-S", "-I", str(self.pyz), "--url", self.server.url,
               "--token-file", str(token), "--ca-dir", str(self.creds.ca_dir), "--site", site,
               "--ce", "ce.test", "--queue", "q", "--workdir", str(work), "--poll", "0.1",
               "--max-sleep", "0.3", "--heartbeat", "1", "--retries", "1",
               "--max-failed-matches", "2", *args]
        log = (work / "pilot.log").open("wb")
        try:
            return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603
        finally:
            log.close()


def wait_for(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)
    return value


@pytest.fixture(scope="module")
def pyz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("pilot") / "pilot.pyz")


@pytest.fixture
def stack(config: Config, db_url: str, creds: Creds, tmp_path: Path, pyz: Path,
          xrootd_server: XRootDServer) -> Iterator[Stack]:
    port = free_port()
    data = with_storage(config, db_url, tmp_path, port, xrootd_server.port).model_dump(
        by_alias=True, exclude_none=True)
    data.setdefault("Systems", {}).update({
        "WorkloadManagement": {"Services": {"SandboxStore": {"Options": {
            "BasePath": str(tmp_path / "sandboxes")}}}},
        "DataManagement": {}})
    cfg = Config.model_validate(data)
    engine = make_engine(db_url)
    init_schema(engine, WMS_SCHEMA)
    init_schema(engine, REQUEST_SCHEMA)
    engine.dispose()
    with ThreadedServer(cfg, available_services().values(), port=port) as server:
        yield Stack(server, cfg, creds, tmp_path, pyz)


def test_a_job_runs_where_its_data_is_and_registers_its_outputs(stack: Stack,
                                                                 tmp_path: Path) -> None:
    source = tmp_path / "in.dat"
    source.write_bytes(os.urandom(200_000))
    stack.data_manager().put_and_register(f"{HOME}/data/in.dat", source, "XRD")
    wms = stack.wms()
    [job] = wms.submit(
        f'[Executable = "/bin/sh"; Arguments = "-c \'cp in.dat out.dat && echo ok\'"; '
        f'InputData = "LFN:{HOME}/data/in.dat"; OutputData = "out.dat"; '
        f'OutputSE = "DISK-A"; OutputPath = "results"; CPUTime = 600;]')
    assert wms.summary([job])[job]["Site"] == THERE  # XRD belongs to LCG.There.org
    elsewhere = stack.pilot(HERE, "here")  # its site has none of the data: no match
    assert elsewhere.wait(60) == 0
    assert wms.status([job])[job] == "Waiting"
    pilot = stack.pilot(THERE, "there")
    wait_for(lambda: wms.status([job])[job] in ("Done", "Failed"), 90, "the job to end")
    pilot.kill()
    pilot.wait(30)
    summary = wms.summary([job])[job]
    log = (stack.base / "there" / "pilot.log").read_text(errors="replace")
    assert (summary["Status"], summary["MinorStatus"]) == ("Done", "Execution Complete"), log
    history = [record.minor_status for record in wms.logging_info(job)]
    assert "Input Data Resolution" in history and "Output Data Uploaded" in history
    lfn = f"{HOME}/results/out.dat"
    assert wms.parameters([job])[job]["UploadedOutputData"] == lfn
    catalog = FileCatalogClient(wms.rpc("DataManagement/FileCatalog"))
    assert list(catalog.get_replicas([lfn]).successful[lfn]) == ["DISK-A"]
    assert (tmp_path / "disk-a" / lfn.lstrip("/")).read_bytes() == source.read_bytes()

    # doutput --Data brings the output data back, checksums checked
    client = tmp_path / "client.yaml"
    client.write_text(yaml.safe_dump({"URLs": [stack.server.url],
                                      "CADir": str(stack.creds.ca_dir)}))
    env = dict(os.environ, PILOTWMS_CLIENT_CONFIG=str(client),
               X509_USER_CERT=str(stack.creds.alice[0]),
               X509_USER_KEY=str(stack.creds.alice[1]), HOME=str(tmp_path))
    env.pop("BEARER_TOKEN", None)
    env.pop("BEARER_TOKEN_FILE", None)
    fetched = subprocess.run(
        [sys.executable, "-m", "wms.cli.doutput", "--Data", "-D", str(tmp_path / "got"),
         str(job)], env=env, capture_output=True, text=True, timeout=120, check=False)
    assert fetched.returncode == 0, fetched.stderr
    assert (tmp_path / "got" / str(job) / "out.dat").read_bytes() == source.read_bytes()


def test_a_broken_output_se_leaves_the_output_safe_elsewhere(stack: Stack,
                                                              tmp_path: Path) -> None:
    (tmp_path / "disk-b").write_bytes(b"DISK-B is broken: a file where its directory goes")
    wms = stack.wms()
    [job] = wms.submit('[Executable = "/bin/sh"; Arguments = "-c \'echo result > r.txt\'"; '
                       'OutputData = "r.txt"; OutputSE = "DISK-B"; CPUTime = 600;]')
    pilot = stack.pilot(THERE, "there")
    wait_for(lambda: wms.status([job])[job] in ("Done", "Failed"), 90, "the job to end")
    pilot.kill()
    pilot.wait(30)
    log = (stack.base / "there" / "pilot.log").read_text(errors="replace")
    assert wms.status([job])[job] == "Done", log
    lfn = f"{HOME}/{job // 1000}/{job}/r.txt"
    catalog = FileCatalogClient(wms.rpc("DataManagement/FileCatalog"))
    assert list(catalog.get_replicas([lfn]).successful[lfn]) == ["DISK-A"]  # the site's SE
    requests = ReqManagerClient(wms.rpc("RequestManagement/ReqManager"))
    [request_id] = requests.get_request_ids_for_jobs([job]).values()
    (tmp_path / "disk-b").unlink()  # DISK-B repaired; the agent finishes the move
    RequestExecutingAgent(stack.config, instance="data-jobs-test").run(once=True)
    assert requests.get_request_status(request_id) == "Done"
    assert list(catalog.get_replicas([lfn]).successful[lfn]) == ["DISK-B"]
    assert (tmp_path / "disk-b" / lfn.lstrip("/")).read_text() == "result\n"


def test_input_data_lost_on_the_worker_node_reschedules_the_job(stack: Stack,
                                                                 tmp_path: Path) -> None:
    """As DIRAC's wrapper does: a node that cannot get the input data gives the job back."""
    source = tmp_path / "gone.dat"
    source.write_bytes(b"soon gone\n")
    lfn = f"{HOME}/data/gone.dat"
    stack.data_manager().put_and_register(lfn, source, "DISK-A")
    (tmp_path / "disk-a" / lfn.lstrip("/")).unlink()  # the replica is lost behind our back
    wms = stack.wms()
    [job] = wms.submit(f'[Executable = "/bin/cat"; Arguments = "gone.dat"; '
                       f'InputData = "LFN:{lfn}"; CPUTime = 600;]')
    pilot = stack.pilot(THERE, "there")
    wait_for(lambda: wms.status([job])[job] == "Rescheduled", 90, "the job to be rescheduled")
    pilot_log = stack.base / "there" / "pilot.log"
    # the wrapper logs once the server has answered: wait for that line, not just the status
    wait_for(lambda: "job rescheduled" in pilot_log.read_text(errors="replace"), 30,
             "the wrapper to log the rescheduling")
    pilot.kill()
    pilot.wait(30)
    summary = wms.summary([job])[job]
    assert (summary["MinorStatus"], summary["ApplicationStatus"]) == (
        "Job Rescheduled", "Input Data Resolution failed")
    log = pilot_log.read_text(errors="replace")
    assert "HTTP 404" in log and "job rescheduled" in log
