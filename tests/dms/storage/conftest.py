"""Storage fixtures: a real xrootd server, an HTTPS disk SE service, and SE configurations.

* ``xrootd_server`` (session, tests/dms/conftest.py): Debian's xrootd on 127.0.0.1;
* ``se_config(config, db_url)``: the instance config plus users bob/admin (as the catalog tests
  have them) and four SEs: ``DISK-A``/``DISK-B`` (HTTPS, served by this test's server),
  ``XRD`` (the xrootd server), ``SHARED`` (a local directory); site ``LCG.Here.org`` has
  DISK-B and site ``LCG.There.org`` DISK-A;
* ``dms_server``: a server with FileCatalog, StorageElement and ReqManager on that config.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from core.config.schema import Config
from core.rpc.client import Credentials, RPCClient
from dms.catalog_client import FileCatalogClient
from dms.service.file_catalog import FileCatalogService
from dms.service.storage_element import StorageElementService
from dms.storage import StorageElements
from tests.dms.service.conftest import catalog_config
from tests.support.credentials import Creds
from tests.support.servers import ThreadedServer
from tests.support.xrootd import XRootDServer, free_port


@pytest.fixture(scope="module")
def proxies(creds: Creds) -> dict[str, Path]:
    return {"bob": creds.proxy(creds.stranger, group="demo_guest", name="bob"),
            "admin": creds.proxy(creds.admin, group="dm_admin", name="dmadmin")}


def with_storage(config: Config, db_url: str, base: Path, port: int, xrd_port: int,
                 extra: dict[str, Any] | None = None) -> Config:
    data = catalog_config(config, db_url).model_dump(by_alias=True, exclude_none=True)
    https = {"Plugin": "HTTPS", "Host": "127.0.0.1", "Port": port}
    data["Resources"]["StorageElements"] = {
        "DISK-A": {"Protocols": [dict(https, Path=str(base / "disk-a"))]},
        "DISK-B": {"Protocols": [dict(https, Path=str(base / "disk-b"))]},
        "XRD": {"Protocols": [{"Plugin": "XROOT", "Host": "127.0.0.1", "Port": xrd_port,
                               "Path": "/pilotwms"}]},
        "SHARED": {"Protocols": [{"Plugin": "File", "Path": str(base / "shared")}]},
        "DISK-SMALL": {"Protocols": [dict(https, Path=str(base / "disk-small"),
                                          MaxFileSizeMiB=1)]},
        **(extra or {}),
    }
    data["Resources"]["Sites"] = {"LCG.Here.org": {"SEs": ["DISK-B"]},
                                  "LCG.There.org": {"SEs": ["DISK-A", "XRD"]}}
    data["Server"]["Port"] = port
    return Config.model_validate(data)


@dataclass
class DMS:
    server: ThreadedServer
    config: Config
    creds: Creds
    proxies: dict[str, Path]
    base: Path

    def credentials(self, who: str) -> Credentials:
        if who == "alice":
            return Credentials(cert=self.creds.alice[0], key=self.creds.alice[1])
        if who == "host":
            return Credentials(cert=self.creds.host[0], key=self.creds.host[1])
        return Credentials(cert=self.proxies[who])

    def rpc(self, service: str, who: str = "alice") -> RPCClient:
        return RPCClient(service, urls=[self.server.url], credentials=self.credentials(who),
                         ca_dir=self.creds.ca_dir)

    def catalog(self, who: str = "alice") -> FileCatalogClient:
        return FileCatalogClient(self.rpc("DataManagement/FileCatalog", who))

    def ses(self, who: str = "alice") -> StorageElements:
        return StorageElements.from_config(self.config, credentials=self.credentials(who),
                                           ca_dir=self.creds.ca_dir)


def service_classes() -> list[type]:
    from dms.service.request_manager import ReqManagerService

    return [FileCatalogService, StorageElementService, ReqManagerService]


@pytest.fixture
def dms_server(config: Config, db_url: str, creds: Creds, proxies: dict[str, Path],
               tmp_path: Path, xrootd_server: XRootDServer) -> Iterator[DMS]:
    port = free_port()
    cfg = with_storage(config, db_url, tmp_path, port, xrootd_server.port)
    from core.db import init_schema, make_engine
    from dms.db.rms import REQUEST_SCHEMA

    engine = make_engine(db_url)
    init_schema(engine, REQUEST_SCHEMA)
    engine.dispose()
    with ThreadedServer(cfg, service_classes(), port=port) as srv:
        yield DMS(srv, cfg, creds, proxies, tmp_path)
