"""The real DIRAC 9 client calls DataManagement/FileCatalog (DIRAC's TornadoClient, our
proxy): DIRAC's method names, argument shapes and {Successful, Failed} replies."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.cli.instance import Instance
from core.config.schema import Config
from core.db import init_schema, make_engine
from dms.db.schema import DMS_SCHEMA
from dms.service.file_catalog import FileCatalogService
from tests.interop.test_dirac_client import dirac_call, dirac_python  # noqa: F401 - fixture
from tests.support.servers import ThreadedServer

pytestmark = pytest.mark.dirac
HOME = "/demo/user/a/admin"


@pytest.fixture
def fc_server(config: Config) -> Iterator[ThreadedServer]:
    engine = make_engine(config.database_url("DataManagement"))
    init_schema(engine, DMS_SCHEMA)
    engine.dispose()
    with ThreadedServer(config, [FileCatalogService]) as srv:
        yield srv


def test_dirac_client_uses_the_catalog(dirac_python: str,  # noqa: F811 - fixture
                                       fc_server: ThreadedServer, instance: Instance,
                                       tmp_path: Path) -> None:
    cert, key = instance.user_cert("admin")
    proxy = tmp_path / "proxy.pem"
    subprocess.run([sys.executable, "-m", "core.cli.admin", "proxy", "init", "--cert",
                    str(cert), "--key", str(key), "-g", "demo_user", "--out", str(proxy)],
                   check=True, capture_output=True, timeout=60)
    url = f"{fc_server.url}/DataManagement/FileCatalog"

    def call(method: str, *args: object) -> dict:
        reply = dirac_call(dirac_python, url, proxy, instance.ca_dir, "--method", method,
                           "--args", json.dumps(list(args)))
        reply.pop("rpcStub", None)  # DIRAC's client adds how it made the call
        return reply

    added = call("addFile", {f"{HOME}/f1": {"PFN": "root://se/f1", "Size": 42, "SE": "DISK-SE",
                                            "GUID": "AB-1", "Checksum": "0badf00d"}})
    assert added == {"OK": True, "Value": {"Successful": {f"{HOME}/f1": True}, "Failed": {}}}
    reps = call("getReplicas", [f"{HOME}/f1", f"{HOME}/nope"], False)
    assert reps["Value"] == {"Successful": {f"{HOME}/f1": {"DISK-SE": "root://se/f1"}},
                             "Failed": {f"{HOME}/nope": "No such file or directory"}}
    meta = call("getFileMetadata", f"{HOME}/f1")["Value"]["Successful"][f"{HOME}/f1"]
    assert (meta["Size"], meta["GUID"], meta["Owner"]) == (42, "AB-1", "admin")
    found = call("findFilesByMetadata", {"Size": {">": 40}}, HOME)
    assert found == {"OK": True, "Value": [f"{HOME}/f1"]}
    listing = call("listDirectory", [HOME], True)["Value"]["Successful"][HOME]
    assert list(listing["Files"]) == [f"{HOME}/f1"]
