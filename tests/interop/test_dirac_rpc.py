"""Every method DIRAC's client classes expose, served or listed: the ``export_`` methods of the
installed DIRAC 9 handlers for JobManager, JobMonitoring, JobStateUpdate, SandboxStore,
Matcher, WMSAdministrator, PilotManager, FileCatalog and ReqManager are either served by our
service or listed with a reason in docs/interop-dirac.md; and a tour of them through DIRAC's own
client classes (two DIRAC processes: a user, then an administrator acting as a pilot too), with
the ResourceStatus reads DIRAC's ``StorageElement``/``SiteStatus`` make."""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from core.cli.dbcmd import init_all
from core.cli.dirac_config import write_dirac_cfg
from core.cli.instance import Instance
from core.config.schema import Config
from core.rpc.runner import available_services
from tests.interop.dirac_env import DiracClient
from tests.interop.test_dirac_client import dirac_python  # noqa: F401 - fixture
from tests.interop.test_dirac_jobs import instance_config
from tests.support.credentials import Creds
from tests.support.servers import ThreadedServer

pytestmark = pytest.mark.dirac
REPO = Path(__file__).resolve().parents[2]
HOME = "/demo/user/a/alice"
HANDLERS = {
    "WorkloadManagement/JobManager": "WorkloadManagementSystem/Service/JobManagerHandler.py",
    "WorkloadManagement/JobMonitoring": "WorkloadManagementSystem/Service/JobMonitoringHandler.py",
    "WorkloadManagement/JobStateUpdate":
        "WorkloadManagementSystem/Service/JobStateUpdateHandler.py",
    "WorkloadManagement/SandboxStore": "WorkloadManagementSystem/Service/SandboxStoreHandler.py",
    "WorkloadManagement/Matcher": "WorkloadManagementSystem/Service/MatcherHandler.py",
    "WorkloadManagement/WMSAdministrator":
        "WorkloadManagementSystem/Service/WMSAdministratorHandler.py",
    "WorkloadManagement/PilotManager": "WorkloadManagementSystem/Service/PilotManagerHandler.py",
    "DataManagement/FileCatalog": "DataManagementSystem/Service/FileCatalogHandler.py",
    "RequestManagement/ReqManager": "RequestManagementSystem/Service/ReqManagerHandler.py",
}


def dirac_exports(python: str) -> dict[str, set[str]]:
    """service -> the ``export_`` methods of its DIRAC handler (DISET and Tornado files)."""
    lib = Path(python).parent.parent / "lib"   # the venv (not the interpreter it links to)
    [package] = list(lib.glob("python3*/site-packages/DIRAC"))
    out = {}
    for service, rel in HANDLERS.items():
        names: set[str] = set()
        path = package / rel
        for source in (path, path.with_name("Tornado" + path.name)):
            if source.exists():
                tree = ast.parse(source.read_text())
                names |= {node.name[len("export_"):] for node in ast.walk(tree)
                          if isinstance(node, ast.FunctionDef)
                          and node.name.startswith("export_")}
        out[service] = names
    return out


def served(service: str) -> set[str]:
    cls = available_services()[service]
    return {spec[0] for attr in dir(cls)
            if (spec := getattr(getattr(cls, attr, None), "__rpc_export__", None))}


def listed_in_docs() -> dict[tuple[str, str], str]:
    """(service, method) -> reason, from docs/interop-dirac.md's table of unserved methods."""
    text = (REPO / "docs" / "interop-dirac.md").read_text()
    section = text.split("### DIRAC methods not served (yet)", 1)[1]
    found = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and "/" in cells[0] and not cells[0].startswith("-"):
            for method in re.split(r",\s*", cells[1]):
                found[(cells[0], method)] = cells[2]
    return found


def test_every_dirac_client_method_is_served_or_listed(
        dirac_python: str) -> None:  # noqa: F811 - fixture
    exports = dirac_exports(dirac_python)
    assert sum(map(len, exports.values())) >= 120, exports
    listed = listed_in_docs()
    missing, stale = [], []
    for service, names in exports.items():
        ours = served(service)
        for name in sorted(names):
            if name not in ours and (service, name) not in listed:
                missing.append(f"{service}.{name}")
            if name in ours and (service, name) in listed:
                stale.append(f"{service}.{name}")
    assert missing == [], "serve these or list them in docs/interop-dirac.md"
    assert stale == [], "served now: remove them from the docs' list"
    assert all(listed.values()) and all((s, m) for s, m in listed if m in exports.get(s, ()))


@pytest.fixture
def server(instance: Instance, tmp_path: Path) -> Iterator[ThreadedServer]:
    config = instance_config(instance, f"sqlite:///{tmp_path / 'rpc.db'}", tmp_path)
    data = config.model_dump(by_alias=True, exclude_none=True)
    data["Registry"]["Groups"]["demo_admin"]["Properties"].append("GenericPilot")
    data["Resources"]["StorageElements"]["CLOSED-SE"] = {
        "Protocols": [{"Plugin": "File", "Path": str(tmp_path / "closed")}],
        "ReadAccess": False}
    config = Config.model_validate(data)
    init_all(config)
    with ThreadedServer(config, available_services().values()) as srv:
        yield srv


def _admin_call(server: ThreadedServer, creds: Creds, proxy: Path, service: str,
                method: str, *args: Any) -> Any:
    reply = requests.post(f"{server.url}/{service}", verify=str(creds.ca_dir), timeout=60,
                          cert=str(proxy), data={"method": method,
                                                 "args": json.dumps(list(args))}).json()
    assert reply["OK"], reply
    return reply["Value"]


def test_tour_of_dirac_client_methods(dirac_python: str,  # noqa: F811 - fixture
                                      server: ThreadedServer, creds: Creds,
                                      tmp_path: Path) -> None:
    cfg = tmp_path / "dirac.cfg"
    write_dirac_cfg(server.config, cfg, url=server.url)
    admin_proxy = creds.proxy(creds.admin, group="demo_admin")
    _admin_call(server, creds, admin_proxy, "DataManagement/FileCatalog", "addMetadataField",
                "run", "INT", "-f")
    user = DiracClient(dirac_python, server.url, cfg, creds.proxy(creds.alice,
                                                                  group="demo_user"),
                       creds.ca_dir, tmp_path / "user")
    user.workdir.mkdir()
    got = user.script("rpc_user.py", {"workdir": str(user.workdir), "home": HOME})
    failed = {k: v for k, v in got.items() if isinstance(v, dict) and v.get("OK") is False}
    # the only refusals: no pilot ran the job (no pilot output), a deleted request
    assert set(failed) == {"WMSAdministrator.getJobPilotOutput",
                           "ReqManager.getRequestStatus(deleted)"}, failed
    assert "no pilot output" in failed["WMSAdministrator.getJobPilotOutput"]["Message"]
    value = {k: v["Value"] for k, v in got.items() if isinstance(v, dict) and "Value" in v}
    one = got["ids"]["one"]
    assert value["JobMonitoring.getJobAttribute"] == "g1"
    assert value["JobMonitoring.getJobParameter"] == {}
    assert value["JobMonitoring.getJobs"] == [one]
    assert [x.removeprefix("LFN:") for x in value["JobMonitoring.getInputData"]] == ["/demo/in1"]
    # no such input file in the catalog: the optimiser fails the job at once, as DIRAC does
    assert value["JobMonitoring.getJobsStatus"][str(one)]["Status"] == "Failed"
    assert value["JobMonitoring.getJobsMinorStatus"][str(one)]["MinorStatus"] == \
        "Input Data Not Available"
    assert got["downloaded"] == "sandbox content\n"
    f1 = f"{HOME}/tour/f1"
    assert value["FileCatalog.getPathPermissions"]["Successful"] == {
        f1: {"Read": True, "Write": True, "Execute": False},
        f"{HOME}/tour/new": {"Read": True, "Write": True, "Execute": True}}
    assert value["FileCatalog.hasAccess"]["Successful"] == {f1: True, "/demo": False}
    assert value["FileCatalog.getLFNForGUID"] == {"Successful": {"TOUR-GUID-1": f1},
                                                  "Failed": {"NO-SUCH-GUID": "GUID not found"}}
    assert value["FileCatalog.getFileDetails"]["Successful"][f1]["MetaData"] == {"run": 7}
    assert list(value["FileCatalog.findFilesByMetadataDetailed"]["Successful"]) == [f1]
    assert value["FileCatalog.findFilesByMetadata"] == [f1]
    assert value["FileCatalog.getReplicaStatus"]["Successful"] == {f1: "AprioriGood"}
    assert value["FileCatalog.setFileStatus"]["Successful"] == {f1: True}
    dump = value["FileCatalog.getDirectoryDump"]["Successful"][HOME]
    assert f"{HOME}/tour" in dump["SubDirs"] and dump["Files"][f1]["Size"] == 3
    assert value["FileCatalog.getReplicas"]["Successful"][f1].keys() == {"DIRAC-USER",
                                                                         "OTHER-SE"}
    assert value["ReqManager.getRequestStatus"] == "Waiting"
    assert value["ReqManager.getRequestFileStatus"] == {f"{HOME}/tour/gone": "Waiting"}
    assert value["ReqManager.getDigest"].startswith("Name:tour-request\nRemoveFile:")
    assert value["ReqManager.getRequest"] == "tour-request"
    info = value["ReqManager.getRequestInfo"]
    assert info[:6] == [value["ReqManager.putRequest"], "Waiting", "tour-request", one, "alice",
                        "demo_user"]
    assert value["ReqManager.getRequestIDForName"] == value["ReqManager.putRequest"]
    assert list(value["ReqManager.readRequestsForJobs"]["Successful"]) == [str(one)]

    # the site mask and the SE configuration as DIRAC's RSS clients see them
    _admin_call(server, creds, admin_proxy, "WorkloadManagement/WMSAdministrator", "banSite",
                "Demo.Local.site", "tour")
    admin = DiracClient(dirac_python, server.url, cfg, admin_proxy, creds.ca_dir,
                        tmp_path / "admin")
    admin.workdir.mkdir()
    ids = got["ids"]
    got = admin.script("rpc_admin.py", {"ids": ids})
    failed = {k: v for k, v in got.items() if isinstance(v, dict) and v.get("OK") is False}
    assert set(failed) == {"JobStateUpdate.setJobAttribute(refused)",
                           "ResourceStatusClient.addOrModifyStatusElement"}, failed
    assert "cannot be modified" in failed["JobStateUpdate.setJobAttribute(refused)"]["Message"]
    assert "read-only" in failed["ResourceStatusClient.addOrModifyStatusElement"]["Message"]
    value = {k: v["Value"] for k, v in got.items() if isinstance(v, dict) and "Value" in v}
    assert int(value["Matcher.requestJob"]["JobID"]) == got["job"] == ids["three"]
    assert value["PilotManager.selectPilots"] == ["tour://p1"]
    assert value["PilotManager.getPilotSummary"]["Total"]["Running"] == 1
    ses = value["ResourceStatus.getElementStatus"]
    assert ses["CLOSED-SE"] == {"ReadAccess": "Banned", "WriteAccess": "Active",
                                "CheckAccess": "Banned", "RemoveAccess": "Active"}
    assert set(ses["ProductionSandboxSE"].values()) == {"Active"}
    assert value["ResourceStatus.getElementStatus(CE)"] == {"localhost": {"all": "Banned"}}
    assert value["SiteStatus.getSiteStatuses"] == {"Demo.Local.site": "Banned"}
    states = _admin_call(server, creds, admin_proxy, "WorkloadManagement/JobMonitoring",
                         "getJobsStates", [got["job"]])[str(got["job"])]
    assert states["Status"] == "Done" and states["ApplicationStatus"] == "attr"
