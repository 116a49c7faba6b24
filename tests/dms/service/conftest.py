"""A FileCatalog server on both databases, and clients for alice, bob and a catalog admin.

Users: ``alice`` (group demo_user, certificate), ``bob`` (group demo_guest: the registry's
``stranger`` certificate registered under that name), ``admin`` (proxy with group dm_admin,
which has the FileCatalogManagement property).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from core.config.schema import Config
from core.db import init_schema, make_engine
from core.rpc.client import Credentials, RPCClient
from dms.catalog_client import SERVICE, FileCatalogClient
from dms.db.schema import DMS_SCHEMA
from dms.service.file_catalog import FileCatalogService
from tests.support.credentials import Creds
from tests.support.servers import ThreadedServer

STRANGER_DN = "/O=pilotwms/OU=Users/CN=stranger"


def catalog_config(config: Config, db_url: str) -> Config:
    data = config.model_dump(by_alias=True, exclude_none=True)
    registry = data["Registry"]
    registry["Users"]["bob"] = {"DNs": [STRANGER_DN]}
    registry["Groups"]["demo_guest"] = {"VO": "demo", "Users": ["bob"],
                                        "Properties": ["NormalUser"]}
    registry["Groups"]["demo_analysis"] = {"VO": "demo", "Users": ["alice", "bob"],
                                           "Properties": ["NormalUser"]}
    registry["Groups"]["dm_admin"] = {"VO": "demo", "Users": ["admin"],
                                      "Properties": ["NormalUser", "FileCatalogManagement"]}
    data["Database"] = db_url
    engine = make_engine(db_url)
    init_schema(engine, DMS_SCHEMA)
    engine.dispose()
    return Config.model_validate(data)


@dataclass
class Catalog:
    server: ThreadedServer
    creds: Creds
    proxies: dict[str, Path]

    def client(self, who: str) -> FileCatalogClient:
        return FileCatalogClient(self.rpc(who))

    def rpc(self, who: str) -> RPCClient:
        if who == "alice":
            credentials = Credentials(cert=self.creds.alice[0], key=self.creds.alice[1])
        else:
            credentials = Credentials(cert=self.proxies[who])
        return RPCClient(SERVICE, urls=[self.server.url], credentials=credentials,
                         ca_dir=self.creds.ca_dir)


@pytest.fixture(scope="module")
def proxies(creds: Creds) -> dict[str, Path]:
    return {"bob": creds.proxy(creds.stranger, group="demo_guest", name="bob"),
            "admin": creds.proxy(creds.admin, group="dm_admin", name="dmadmin"),
            "alice2": creds.proxy(creds.alice, group="demo_analysis", name="alice2")}


@pytest.fixture
def catalog(config: Config, db_url: str, creds: Creds,
            proxies: dict[str, Path]) -> Iterator[Catalog]:
    with ThreadedServer(catalog_config(config, db_url), [FileCatalogService]) as srv:
        yield Catalog(srv, creds, proxies)


def entry(size: int = 10, se: str | None = "DISK-SE", guid: str | None = None,
          checksum: str = "0a0b0c0d", pfn: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {"Size": size, "Checksum": checksum, "ChecksumType": "Adler32",
                           "PFN": pfn}
    if se:
        out["SE"] = se
    if guid:
        out["GUID"] = guid
    return out
