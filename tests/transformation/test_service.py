"""TransformationManager and ProductionManager over HTTPS with the typed clients and the
commands: rights (ProductionManagement creates and changes, owners stop their own, the VO
reads), errors that keep their class and name the field, plain/CSV/JSON output, exit codes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from core.config.schema import Config
from core.db import init_schema, make_engine
from core.exceptions import (
    AlreadyExistsError,
    InvalidArgumentError,
    InvalidTransitionError,
    NotAuthorizedError,
    NotFoundError,
)
from core.rpc.client import Credentials, RPCClient
from dms.db.schema import DMS_SCHEMA
from dms.service.file_catalog import FileCatalogService
from tests.support.credentials import Creds
from tests.support.servers import ThreadedServer
from transformation.client import (
    PRODUCTION_SERVICE,
    SERVICE,
    ProductionClient,
    TransformationClient,
)
from transformation.db.schema import TRANSFORMATION_SCHEMA
from transformation.service.production_manager import ProductionManagerService
from transformation.service.transformation_manager import TransformationManagerService

JDL = '[Executable = "/bin/true"; CPUTime = 600;]'


@pytest.fixture
def server(config: Config, tmp_path: Path) -> Iterator[ThreadedServer]:
    data = config.model_dump(by_alias=True, exclude_none=True)
    data["Registry"]["Groups"]["demo_prod"] = {
        "VO": "demo", "Users": ["alice", "admin"],
        "Properties": ["NormalUser", "ProductionManagement"]}
    data.setdefault("Systems", {})["DataManagement"] = {}
    cfg = Config.model_validate(data)
    engine = make_engine(cfg.database_url("Transformation"))
    init_schema(engine, DMS_SCHEMA)
    init_schema(engine, TRANSFORMATION_SCHEMA)
    engine.dispose()
    services = [TransformationManagerService, ProductionManagerService, FileCatalogService]
    with ThreadedServer(cfg, services) as srv:
        yield srv


class Who:
    def __init__(self, server: ThreadedServer, creds: Creds) -> None:
        self.server, self.creds = server, creds
        self.proxies = {
            "alice-prod": creds.proxy(creds.alice, group="demo_prod", name="ap"),
            "alice": creds.proxy(creds.alice, group="demo_user", name="au"),
            "admin-prod": creds.proxy(creds.admin, group="demo_prod", name="dp")}

    def rpc(self, service: str, who: str) -> RPCClient:
        return RPCClient(service, urls=[self.server.url],
                         credentials=Credentials(cert=self.proxies[who]),
                         ca_dir=self.creds.ca_dir)

    def tc(self, who: str) -> TransformationClient:
        return TransformationClient(self.rpc(SERVICE, who))

    def pc(self, who: str) -> ProductionClient:
        return ProductionClient(self.rpc(PRODUCTION_SERVICE, who))


def test_rights_and_errors_over_https(server: ThreadedServer, creds: Creds) -> None:
    who = Who(server, creds)
    with pytest.raises(NotAuthorizedError):
        who.tc("alice").create({"Name": "x", "Type": "Processing", "Body": JDL})
    with pytest.raises(InvalidArgumentError, match="GroupSize"):
        who.tc("alice-prod").create({"Name": "x", "Type": "Processing", "Body": JDL,
                                     "GroupSize": 0})
    with pytest.raises(InvalidArgumentError, match="InputMetaQuery: unknown metadata field"):
        who.tc("alice-prod").create({"Name": "x", "Type": "Processing", "Body": JDL,
                                     "InputMetaQuery": {"nofield": 1}})
    tid = who.tc("alice-prod").create({"Name": "mine", "Type": "Processing", "Body": JDL})
    other = who.tc("admin-prod").create({"Name": "theirs", "Type": "Processing", "Body": JDL})
    with pytest.raises(AlreadyExistsError, match="'mine'"):
        who.tc("admin-prod").create({"Name": "mine", "Type": "Processing", "Body": JDL})
    # every member of the VO reads
    assert [t["TransformationName"] for t in who.tc("alice").transformations()] == \
        ["mine", "theirs"]
    assert who.tc("alice").get("mine")["TransformationID"] == tid
    with pytest.raises(NotFoundError):
        who.tc("alice").get(999)
    # the owner may stop (not start) their own; a manager does anything
    who.tc("admin-prod").start(tid)
    who.tc("alice").stop(tid)
    with pytest.raises(NotAuthorizedError):
        who.tc("alice").start(tid)
    with pytest.raises(NotAuthorizedError):
        who.tc("alice").stop(other)
    with pytest.raises(InvalidTransitionError, match="from Stopped to New"):
        who.tc("admin-prod").set_status(tid, "New")
    log = who.tc("alice").logging(tid)
    assert [(r["Author"], r["Message"]) for r in log[-2:]] == [
        ("admin", "Status changed from New to Active"),
        ("alice", "Status changed from Active to Stopped")]
    with pytest.raises(NotAuthorizedError):
        who.pc("alice").create({"Name": "p", "Steps": []})
    with pytest.raises(InvalidArgumentError, match="Steps must be a non-empty list"):
        who.pc("alice-prod").create({"Name": "p", "Steps": []})


class Cli:
    """The commands run in this process (their ``main``), output captured."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys

    def __call__(self, command: str, *args: str) -> tuple[int, str, str]:
        from transformation.cli import dprod, dtrans

        main = {"dtrans": dtrans.main, "dprod": dprod.main}[command]
        self.capsys.readouterr()
        code = main(list(args))
        out, err = self.capsys.readouterr()
        return code, out, err


def test_commands(server: ThreadedServer, creds: Creds, tmp_path: Path,
                  monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    who = Who(server, creds)
    client = tmp_path / "client.yaml"
    client.write_text(yaml.safe_dump({"URLs": [server.url], "CADir": str(creds.ca_dir)}))
    monkeypatch.setenv("PILOTWMS_CLIENT_CONFIG", str(client))
    monkeypatch.setenv("X509_USER_PROXY", str(who.proxies["alice-prod"]))
    for key in ("BEARER_TOKEN", "BEARER_TOKEN_FILE", "X509_USER_CERT", "X509_USER_KEY"):
        monkeypatch.delenv(key, raising=False)
    cli = Cli(capsys)
    good: dict[str, Any] = {"Name": "sim", "Type": "MCSimulation", "Body": JDL,
                            "Parameters": {"Campaign": "c1"}}
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(good))
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({**good, "Name": "b", "Plugin": "No"}))
    (tmp_path / "broken.yaml").write_text("Name: [unclosed")
    code, out, err = cli("dtrans", "create", str(tmp_path / "t.yaml"))
    assert (code, out.strip()) == (0, "1"), err
    code, out, err = cli("dtrans", "create", str(tmp_path / "bad.yaml"))
    assert code == 2 and "ERROR: Plugin: unknown plugin 'No'" in err
    code, out, err = cli("dtrans", "create", str(tmp_path / "broken.yaml"))
    assert code == 2 and "not valid YAML" in err
    assert cli("dtrans", "start", "sim")[0] == 0
    assert cli("dtrans", "extend", "1", "3")[1].split() == ["1", "2", "3"]
    lines = cli("dtrans", "list")[1].splitlines()
    assert lines[0].split() == ["TransformationID", "Name", "Type", "Status", "Files",
                                "Processed(%)", "Tasks"]
    assert lines[2].split() == ["1", "sim", "MCSimulation", "Active", "0", "0.0", "3"]
    csv = cli("dtrans", "-f", "csv", "tasks", "1")[1].splitlines()
    assert csv[0] == "TaskID,Status,ExternalID,TargetSE,Site,LastUpdate,"
    assert csv[1].startswith("1,Created,,Unknown,,")
    shown = json.loads(cli("dtrans", "-f", "json", "show", "1")[1])
    assert (shown["Status"], shown["Campaign"], shown["TasksTotalCreated"]) == \
        ("Active", "c1", 3)
    log = cli("dtrans", "log", "1")[1]
    assert "Extended by 3 tasks" in log and "Status changed from New to Active" in log
    assert cli("dtrans", "show", "1", "--wait", "0.1")[0] == 1  # not finished in time
    assert cli("dtrans", "files", "77")[1].strip() == "No output"
    code, out, err = cli("dtrans", "stop", "77")
    assert code == 2 and "Transformation 77 does not exist" in err
    assert cli("dprod", "list")[1].strip() == "No output"


def test_bad_listing_arguments_are_clear_errors_over_https(server: ThreadedServer,
                                                           creds: Creds) -> None:
    """Found by the RPC fuzzer: each of these was an HTTP 500
    (tests/transformation/test_bad_arguments.py has the logic's cases)."""
    rpc = Who(server, creds).rpc(SERVICE, "alice")
    with pytest.raises(InvalidArgumentError, match="newer must be a date .*not list"):
        rpc.call("getTransformationTasks", {}, None, [], "")
    with pytest.raises(InvalidArgumentError, match="older: bad date 'soon'"):
        rpc.call("getTransformationFiles", {}, "soon")
    with pytest.raises(InvalidArgumentError, match="limit must be a whole number >= 0"):
        rpc.call("getTransformations", {}, None, None, "CreationDate", None, -1)
    assert rpc.call("getTransformationTasks", {}, None, "2026-01-02", "") == []
    # transName that is no ID: "²".isdigit() is true, 19 nines overflow the ID column
    for ident in ("²", "9" * 19):
        with pytest.raises(NotFoundError, match="does not exist"):
            rpc.call("getTransformation", ident)
    with pytest.raises(InvalidArgumentError, match="selection 'Status'"):
        rpc.call("getTransformationWithStatus", [False, -1])
    with pytest.raises(InvalidArgumentError, match="sort must be"):
        rpc.call("getTransformationSummaryWeb", None, [[]])
    with pytest.raises(InvalidArgumentError, match="bad FileID '²'"):
        Who(server, creds).rpc(SERVICE, "admin-prod").call(
            "setFileStatusForTransformation", 1, {"²": ["Unused", False]})
