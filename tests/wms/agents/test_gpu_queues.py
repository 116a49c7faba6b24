"""Capacity end to end on a real Slurm site declaring GPUs through gres (fake ``/dev/null``
devices, tests/support/slurm.py), on SQLite and MariaDB: a job asking for 2 GPUs gets pilots
only in the site's GPU queue (``--gres=gpu:2``), the pilot there reports the 2 GPUs Slurm
allocated (``CUDA_VISIBLE_DEVICES``) and runs it; ``dqueues``'s service lists both queues with
their capacity."""

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

from core.client_config import ClientConfig
from core.config.schema import Config
from core.db import init_schema, make_engine
from core.rpc.client import Credentials
from core.rpc.runner import available_services
from core.tables import FRAMEWORK_SCHEMA
from wms.agents.site_director import SiteDirector
from wms.client import WMSClient
from wms.db import pilots as pilots_db
from wms.db.schema import WMS_SCHEMA
from wms.scheduling_client import QueueClient

SITE = "LCG.Slurm.org"
CE = "slurm-ce"
ALL_PILOT = ["Submitted", "Waiting", "Running", "Done", "Failed", "Aborted", "Deleted"]


@pytest.fixture(scope="module")
def gpu_cluster() -> Iterator[SlurmCluster]:
    cluster = SlurmCluster(gpus=2)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def site(config: Config, db_url: str, gpu_cluster: SlurmCluster, tmp_path: Path
         ) -> Iterator[tuple[Config, ThreadedServer]]:
    limits = {"MaxCPUTime": 3600, "MaxWallTime": 3600, "MaxWaitingPilots": 1,
              "MaxTotalPilots": 1}
    data = config.model_dump(by_alias=True, exclude_none=True)
    data["Database"] = db_url
    data["Resources"] = {"Sites": {SITE: {"CEs": {CE: {
        "CEType": "Slurm",
        "Settings": {"WorkDir": str(gpu_cluster.base / "jobs" / uuid.uuid4().hex[:8]),
                     "Environment": gpu_cluster.env, "SacctCompletion": True},
        "Queues": {"debug": dict(limits),
                   "gpu": {**limits, "NumberOfGPUs": 2, "GPUModel": "A100"}}}}}}}
    data.setdefault("Systems", {})["WorkloadManagement"] = {"Services": {"SandboxStore": {
        "Options": {"BasePath": str(tmp_path / "sandboxes")}}}}
    engine = make_engine(db_url)
    init_schema(engine, WMS_SCHEMA)
    init_schema(engine, FRAMEWORK_SCHEMA)
    engine.dispose()
    cfg = Config.model_validate(data)
    with ThreadedServer(cfg, available_services().values()) as server:
        data["Operations"] = {"Pilot": {"URLs": [server.url], "MaxFailedMatches": 2,
                                        "Poll": 0.5, "Heartbeat": 1,
                                        "Python": "/usr/bin/python3"}}
        yield Config.model_validate(data), server


def test_a_gpu_job_runs_only_in_the_gpu_queue(site: tuple[Config, ThreadedServer],
                                             creds: Creds, tmp_path: Path) -> None:
    cfg, server = site
    wms = WMSClient(ClientConfig(urls=[server.url], ca_dir=creds.ca_dir),
                    Credentials(cert=creds.alice[0], key=creds.alice[1]))
    queues = {q["Queue"]: q for q in QueueClient(wms).all(site=SITE)}
    assert (queues["gpu"]["NumberOfGPUs"], queues["gpu"]["GPUModel"]) == (2, "A100")
    assert queues["debug"]["NumberOfGPUs"] == 0
    assert [q["Queue"] for q in QueueClient(wms).all(tag="GPU")] == ["gpu"]
    [job] = wms.submit('[Executable = "/bin/sh"; Arguments = "-c \'echo GPUS=$CUDA_VISIBLE_'
                       'DEVICES\'"; NumberOfGPUs = 2; GPUModel = "A100"; CPUTime = 600; '
                       'OutputSandbox = {"std.out"};]')
    assert QueueClient(wms).all(tag="GPU")[0]["WaitingJobs"] == 1
    assert queues["debug"]["WaitingJobs"] == 0
    director = SiteDirector(cfg, instance="gpu-test", period=1)
    director.beat()
    try:
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            director.run_once()
            if wms.status([job])[job] in ("Done", "Failed"):
                break
            time.sleep(0.5)
        pilots = {}
        with director.engine().connect() as conn:
            for queue in ("debug", "gpu"):
                pilots[queue] = pilots_db.pilots_of_queue(conn, SITE, CE, queue, ALL_PILOT)
        assert wms.status([job])[job] == "Done", (wms.summary([job]), report(director))
    finally:
        for site_name, ce_name, ce_conf, q_name, _q in director.queues():
            ce = director._ce(site_name, ce_name, ce_conf)
            with director.engine().connect() as conn:
                ce.kill(list(pilots_db.pilots_of_queue(conn, site_name, ce_name, q_name,
                                                       ALL_PILOT)))
        director.stop()
        director.run(once=True)
    assert pilots["debug"] == {} and len(pilots["gpu"]) >= 1
    assert wms.parameters([job])[job]["CEQueue"] == "gpu"
    wms.download_job_sandbox(job, "Output", tmp_path / "out")
    assert (tmp_path / "out" / "std.out").read_text().strip() == "GPUS=0,1"


def report(director: SiteDirector) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for site_name, ce_name, ce_conf, q_name, _q in director.queues():
        ce = director._ce(site_name, ce_name, ce_conf)
        with director.engine().connect() as conn:
            refs = pilots_db.pilots_of_queue(conn, site_name, ce_name, q_name, ALL_PILOT)
        for ref, status in refs.items():
            out[ref] = (q_name, status, ce.output(ref))
    return out
