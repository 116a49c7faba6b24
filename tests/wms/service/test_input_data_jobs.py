"""Jobs with input data over real HTTPS: the optimiser reads the real file catalog, and a job
is queued only for the sites whose SEs hold its files (or fails as DIRAC says), on SQLite and
MariaDB."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.dms.service.conftest import catalog_config
from tests.support.credentials import Creds
from tests.support.servers import ThreadedServer

from core.client_config import ClientConfig
from core.config.schema import Config
from core.db import init_schema, make_engine
from core.rpc.client import Credentials
from dms.catalog_client import FileCatalogClient
from dms.service.file_catalog import FileCatalogService
from wms.client import WMSClient
from wms.db.schema import WMS_SCHEMA
from wms.logic.input_data import IMPOSSIBLE, NO_SITE_WITH_ALL, NOT_AVAILABLE
from wms.service.job_manager import JobManagerService
from wms.service.job_monitoring import JobMonitoringService

HOME = "/demo/user/a/alice"


@pytest.fixture
def served(config: Config, db_url: str) -> Iterator[ThreadedServer]:
    data = catalog_config(config, db_url).model_dump(by_alias=True, exclude_none=True)
    data.setdefault("Systems", {}).setdefault("DataManagement", {})
    data["Resources"] = {"Sites": {"Site.A": {"SEs": ["SE-A", "SE-SHARED"]},
                                   "Site.B": {"SEs": ["SE-B", "SE-SHARED"]},
                                   "Site.C": {"SEs": ["SE-C"]}}}
    engine = make_engine(db_url)
    init_schema(engine, WMS_SCHEMA)
    engine.dispose()
    services = [JobManagerService, JobMonitoringService, FileCatalogService]
    with ThreadedServer(Config.model_validate(data), services) as server:
        yield server


def test_jobs_go_where_their_input_data_is(served: ThreadedServer, creds: Creds) -> None:
    alice = Credentials(cert=creds.alice[0], key=creds.alice[1])
    wms = WMSClient(ClientConfig(urls=[served.url], ca_dir=creds.ca_dir), alice)
    catalog = FileCatalogClient(wms.rpc("DataManagement/FileCatalog"))
    placed = catalog.add_file({
        f"{HOME}/f1": {"PFN": "", "Size": 1, "SE": "SE-A", "GUID": "G1",
                       "Checksum": "00000001", "ChecksumType": "Adler32"},
        f"{HOME}/f2": {"PFN": "", "Size": 1, "SE": "SE-B", "GUID": "G2",
                       "Checksum": "00000001", "ChecksumType": "Adler32"},
        f"{HOME}/both": {"PFN": "", "Size": 1, "SE": "SE-SHARED", "GUID": "G3",
                         "Checksum": "00000001", "ChecksumType": "Adler32"}})
    assert not placed.failed, placed.failed
    assert not catalog.add_replica({f"{HOME}/f1": {"SE": "SE-B", "PFN": ""}}).failed

    def submit(data: str, extra: str = "") -> int:
        [job] = wms.submit(f'[Executable = "/bin/true"; InputData = {data}; {extra}]')
        return job

    at_b = submit(f'{{"LFN:{HOME}/f1", "LFN:{HOME}/f2"}}')
    anywhere = submit(f'"LFN:{HOME}/both"')
    missing = submit(f'{{"LFN:{HOME}/f1", "LFN:{HOME}/nothere"}}')
    split = submit(f'{{"LFN:{HOME}/f2", "LFN:{HOME}/both"}}', 'Site = "Site.A";')
    apart = submit(f'{{"LFN:{HOME}/f1"}}', 'BannedSites = {"Site.A", "Site.B"};')
    summary = wms.summary([at_b, anywhere, missing, split, apart])
    seen = {job: (s["Status"], s["MinorStatus"], s["Site"]) for job, s in summary.items()}
    assert seen[at_b] == ("Waiting", "Pilot Agent Submission", "Site.B")
    assert seen[anywhere] == ("Waiting", "Pilot Agent Submission", "Multiple")
    assert seen[missing][:2] == ("Failed", NOT_AVAILABLE)
    assert seen[split][:2] == ("Failed", IMPOSSIBLE)
    assert seen[apart][:2] == ("Failed", IMPOSSIBLE)
    # no single site holds both f2 (SE-B) and a file only at SE-C
    assert not catalog.add_file({f"{HOME}/c1": {
        "PFN": "", "Size": 1, "SE": "SE-C", "GUID": "G4", "Checksum": "00000001",
        "ChecksumType": "Adler32"}}).failed
    lonely = submit(f'{{"LFN:{HOME}/f2", "LFN:{HOME}/c1"}}')
    assert wms.summary([lonely])[lonely]["MinorStatus"] == NO_SITE_WITH_ALL
