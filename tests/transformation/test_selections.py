"""TransformationManager selections over HTTPS on SQLite and MariaDB: DIRAC's
``orderAttribute`` (``getTransformationTasks``, ``getTransformationFiles``,
``getTransformations``) and selections by lists of 40,000 values (more than SQLite's
32,766 bound parameters)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from core.config.schema import Config
from core.db import init_schema, make_engine
from core.exceptions import InvalidArgumentError
from core.rpc.client import Credentials, RPCClient
from dms.db.schema import DMS_SCHEMA
from tests.support.credentials import Creds
from tests.support.servers import ThreadedServer
from transformation.client import SERVICE
from transformation.db.schema import TRANSFORMATION_SCHEMA
from transformation.service.transformation_manager import TransformationManagerService

JDL = '[Executable = "/bin/true"; CPUTime = 600;]'
LONG = 40_000


@pytest.fixture
def rpc(config: Config, db_url: str, creds: Creds, tmp_path: Path) -> Iterator[RPCClient]:
    data = config.model_dump(by_alias=True, exclude_none=True)
    data["Database"] = db_url
    data["Registry"]["Groups"]["demo_prod"] = {
        "VO": "demo", "Users": ["alice"], "Properties": ["NormalUser", "ProductionManagement"]}
    cfg = Config.model_validate(data)
    engine = make_engine(db_url)
    init_schema(engine, DMS_SCHEMA)
    init_schema(engine, TRANSFORMATION_SCHEMA)
    engine.dispose()
    with ThreadedServer(cfg, [TransformationManagerService]) as srv:
        proxy = creds.proxy(creds.alice, group="demo_prod", name="sel")
        yield RPCClient(SERVICE, urls=[srv.url], credentials=Credentials(cert=proxy),
                        ca_dir=creds.ca_dir)


def _tasks(rpc: RPCClient, cond: dict, order: object = None) -> list[tuple[int, str]]:
    rows = rpc.call("getTransformationTasks", cond, None, None, "CreationTime", order)
    return [(r["TaskID"], r["ExternalStatus"]) for r in rows]


def test_task_order_attribute(rpc: RPCClient) -> None:
    tid = rpc.call("createTransformation", {"Name": "mc", "Type": "MCSimulation", "Body": JDL})
    tasks = rpc.call("extendTransformation", tid, 4)
    assert tasks == [1, 2, 3, 4]
    rpc.call("setTaskStatus", tid, [2, 4], "Submitted")
    cond = {"TransformationID": tid}
    assert _tasks(rpc, cond) == [(1, "Created"), (2, "Submitted"), (3, "Created"),
                                 (4, "Submitted")]
    assert [t for t, _ in _tasks(rpc, cond, "TaskID:DESC")] == [4, 3, 2, 1]
    assert [t for t, _ in _tasks(rpc, cond, "TaskID:asc")] == [1, 2, 3, 4]
    # a list: status first (Created < Submitted), then task ID descending within each
    assert _tasks(rpc, cond, ["ExternalStatus", "TaskID:DESC"]) == [
        (3, "Created"), (1, "Created"), (4, "Submitted"), (2, "Submitted")]
    assert [t for t, _ in _tasks(rpc, cond, "ExternalStatus:DESC")] == [2, 4, 1, 3]
    # with limit: the page follows the order
    rows = rpc.call("getTransformationTasks", cond, None, None, "CreationTime",
                    "TaskID:DESC", 2)
    assert [r["TaskID"] for r in rows] == [4, 3]
    for bad in ("Nope", "TaskID:SIDEWAYS", "TaskID; DROP TABLE x", ["TaskID", 7]):
        with pytest.raises(InvalidArgumentError, match="bad orderAttribute"):
            rpc.call("getTransformationTasks", cond, None, None, "CreationTime", bad)
    # the same orderAttribute forms on the other listings
    assert [t["TransformationID"] for t in rpc.call(
        "getTransformations", {}, None, None, "CreationDate", "TransformationID:DESC")] == [tid]
    with pytest.raises(InvalidArgumentError, match="bad orderAttribute 'Nope'"):
        rpc.call("getTransformations", {}, None, None, "CreationDate", "Nope")
    with pytest.raises(InvalidArgumentError, match="bad orderAttribute"):
        rpc.call("getTransformationFiles", {}, None, None, "LastUpdate", "FileID:UP")


def test_selections_by_40000_values(rpc: RPCClient) -> None:
    tid = rpc.call("createTransformation", {"Name": "mc", "Type": "MCSimulation", "Body": JDL})
    rpc.call("extendTransformation", tid, 3)
    many = list(range(1, LONG + 1))
    assert _tasks(rpc, {"TaskID": many, "TransformationID": [tid] + many}) == [
        (1, "Created"), (2, "Created"), (3, "Created")]
    assert _tasks(rpc, {"ExternalStatus": [f"S{i}" for i in range(LONG)] + ["Created"],
                        "TaskID": many[1:]}, "TaskID:DESC") == [(3, "Created"), (2, "Created")]
    found = rpc.call("getTransformations", {"TransformationID": many})
    assert [t["TransformationID"] for t in found] == [tid]
    assert rpc.call("getTransformationWithStatus", [f"S{i}" for i in range(LONG)] + ["New"]
                    ) == [tid]
    assert rpc.call("getTransformationFiles", {"TransformationID": tid, "FileID": many}
                    ) == '{"OK": true, "Value": []}'  # DIRAC's JEncoded text
