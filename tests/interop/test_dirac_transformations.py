"""The real DIRAC 9 ``TransformationClient`` against Transformation/TransformationManager:
DIRAC's argument order for addTransformation, listing, parameters (its status path reads the
transformation first), files (its JSON-in-JEncode reply and its file state machine), tasks,
extension and the change log."""

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
from dms.logic import namespace
from dms.logic.rights import CatalogSettings, Requester
from tests.interop.test_dirac_client import dirac_call, dirac_python  # noqa: F401 - fixture
from tests.support.servers import ThreadedServer
from transformation.db.schema import TRANSFORMATION_SCHEMA
from transformation.service.transformation_manager import TransformationManagerService

pytestmark = pytest.mark.dirac
LFNS = [f"/demo/data/raw/f{i}" for i in range(3)]
JDL = '[Executable = "/bin/true"; CPUTime = 600;]'


@pytest.fixture
def ts_server(config: Config) -> Iterator[ThreadedServer]:
    data = config.model_dump(by_alias=True, exclude_none=True)
    data["Registry"]["Groups"]["demo_prod"] = {
        "VO": "demo", "Users": ["admin"], "Properties": ["NormalUser", "ProductionManagement"]}
    data.setdefault("Systems", {})["DataManagement"] = {}
    cfg = Config.model_validate(data)
    engine = make_engine(cfg.database_url("Transformation"))
    init_schema(engine, DMS_SCHEMA)
    init_schema(engine, TRANSFORMATION_SCHEMA)
    admin = Requester("admin", "demo_admin", "demo", admin=True)
    assert not namespace.add_files(engine, CatalogSettings(vo_groups={"demo": "demo_user"}),
                                   admin, {x: {"Size": 1, "SE": "DISK-A", "GUID": x}
                                           for x in LFNS}).failed
    engine.dispose()
    with ThreadedServer(cfg, [TransformationManagerService]) as srv:
        yield srv


def test_dirac_transformation_client(dirac_python: str,  # noqa: F811 - fixture
                                     ts_server: ThreadedServer, instance: Instance,
                                     tmp_path: Path) -> None:
    cert, key = instance.user_cert("admin")
    proxy = tmp_path / "proxy.pem"
    subprocess.run([sys.executable, "-m", "core.cli.admin", "proxy", "init", "--cert",
                    str(cert), "--key", str(key), "-g", "demo_prod", "--out", str(proxy)],
                   check=True, capture_output=True, timeout=60)
    url = f"{ts_server.url}/Transformation/TransformationManager"
    calls = [
        ["addTransformation", ["reco", "short", "long", "Processing", "Standard", "Manual", ""],
         {"groupSize": 2, "body": JDL, "maxTasks": 7}],
        ["addTransformation", ["reco", "again", "", "Processing", "Standard", "Manual", ""],
         {"body": JDL}],
        ["addTransformation", ["bad", "", "", "Processing", "Nope", "Manual", ""],
         {"body": JDL}],
        ["getTransformations", [{"Status": "New"}]],
        ["getTransformation", ["reco"]],
        ["startTransformation", [1]],
        ["getTransformationParameters", [1, "Status"]],
        ["setTransformationParameter", [1, "Status", "New"]],
        ["addFilesToTransformation", [1, LFNS + ["/demo/data/none"]]],
        ["getTransformationFiles", [{"TransformationID": 1}]],
        ["setFileStatusForTransformation", [1, "Problematic", [LFNS[0]]]],
        ["getTransformationFiles", [{"TransformationID": 1, "Status": "Problematic"}]],
        ["getTransformationStats", [1]],
        ["extendTransformation", [1, 2]],
        ["getTransformationTasks", [{"TransformationID": 1}]],
        ["getTransformationLogging", [1]],
        ["stopTransformation", [1]],
    ]
    reply = dirac_call(dirac_python, url, proxy, instance.ca_dir, "--ts-calls",
                       json.dumps(calls))
    assert reply["OK"] is True, reply
    for result in reply["Value"]:
        result.pop("rpcStub", None)  # DIRAC's client adds how it made the call
    (added, twice, bad, listed, got, started, status, back, files_added, files, problem,
     problematic, stats, extended, tasks, logging, stopped) = reply["Value"]
    assert added == {"OK": True, "Value": 1}
    assert twice["OK"] is False and "TransformationName 'reco' is already used" in \
        twice["Message"]
    assert bad["OK"] is False and "Plugin" in bad["Message"]
    assert [t["TransformationName"] for t in listed["Value"]] == ["reco"]
    info = got["Value"]
    assert (info["Description"], info["LongDescription"], info["Type"], info["AgentType"],
            info["GroupSize"], info["MaxNumberOfTasks"], info["Author"], info["AuthorGroup"]) \
        == ("short", "long", "Processing", "Manual", 2, 7, "admin", "demo_prod")
    assert started["OK"] is True, started
    assert status == {"OK": True, "Value": "Active"}
    assert back["OK"] is False and "from Active to New" in back["Message"]
    assert files_added["Value"] == {"Successful": {x: "Added" for x in LFNS},
                                    "Failed": {"/demo/data/none": "File not in the catalog"}}
    assert sorted(f["LFN"] for f in files["Value"]) == LFNS
    assert {f["Status"] for f in files["Value"]} == {"Unused"}
    assert problem == {"OK": True, "Value": {LFNS[0]: "Problematic"}}
    assert [f["LFN"] for f in problematic["Value"]] == [LFNS[0]]
    assert stats["Value"] == {"Problematic": 1, "Unused": 2, "Total": 3}
    assert extended == {"OK": True, "Value": [1, 2]}
    assert [(t["TaskID"], t["ExternalStatus"]) for t in tasks["Value"]] == \
        [(1, "Created"), (2, "Created")]
    messages = [r["Message"] for r in logging["Value"]]
    assert messages[0] == "Transformation created" and "Added 3 files" in messages
    assert stopped["OK"] is True
