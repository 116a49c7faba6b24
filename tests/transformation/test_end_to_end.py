"""End to end on both databases, with the real HTTPS and xrootd SEs and real local pilots.

A two-step production (reco, then merge) and a replication transformation: 50 raw files are
put on the xrootd SE with ``dput`` and described with ``dmeta``; the catalog's journal brings
them to the reco step within seconds; the agents make tasks and bulk jobs, pilots at the site
holding the data run them, outputs land under ``/demo/prod/<transformation>/<task>/`` with
their ancestry; the merge step finds them by its query; the replication copies the merged
files to a second SE. One reco task fails once and is retried; a file of a fragile
transformation fails past the limit and ends MaxReset. Everything ends Processed at 100%.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from core.agent import Agent
from core.config.schema import Config
from core.db import init_schema, make_engine
from core.rpc.client import Credentials, RPCClient
from core.rpc.runner import available_services
from core.tables import FRAMEWORK_SCHEMA
from dms.agents.request_executing import RequestExecutingAgent
from dms.catalog_client import FileCatalogClient
from dms.db.rms import REQUEST_SCHEMA
from pilot.build import build
from tests.dms.conftest import xrootd_server  # noqa: F401 - the session's xrootd fixture
from tests.dms.storage.conftest import with_storage
from tests.support.credentials import Creds
from tests.support.servers import ThreadedServer
from tests.support.xrootd import XRootDServer, free_port
from transformation.agents.monitor import TransformationMonitor
from transformation.agents.task_agents import RequestTaskAgent, WorkflowTaskAgent
from transformation.agents.transformation_agent import TransformationAgent
from transformation.client import ProductionClient, TransformationClient
from transformation.db.schema import TRANSFORMATION_SCHEMA
from wms.db.schema import WMS_SCHEMA

SYSTEM_PYTHON = "/usr/bin/python3"
HOME = "/demo/user/a/alice"
THERE = "LCG.There.org"


def wait_for(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.5)
    return value


@pytest.fixture(scope="module")
def pyz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("pilot") / "pilot.pyz")


def production_yaml(mark: Path) -> dict[str, Any]:
    reco = ("[Executable = \"/bin/sh\"; Arguments = \"-c 'if [ -e flaky.dat ] && "
            f"[ ! -e {mark} ]; then touch {mark}; exit 3; fi; "
            "cat *.dat > reco_@{TaskID}.out'\"; OutputData = \"reco_@{TaskID}.out\"; "
            "OutputSE = \"DISK-A\"; CPUTime = 600;]")
    merge = ("[Executable = \"/bin/sh\"; Arguments = \"-c 'cat reco_*.out > "
             "merged_@{TaskID}.out'\"; OutputData = \"merged_@{TaskID}.out\"; "
             "OutputSE = \"DISK-A\"; CPUTime = 600;]")
    return {"Name": "e2e", "Description": "reco then merge", "Steps": [
        {"Name": "reco", "Transformation": {
            "Type": "Processing", "GroupSize": 5, "Body": reco,
            "InputMetaQuery": {"kind": "raw"}, "OutputMetadata": {"step": "reco"}}},
        {"Name": "merge", "Parents": ["reco"], "Transformation": {
            "Type": "Merge", "GroupSize": 5, "Body": merge,
            "InputMetaQuery": {"step": "reco"}, "OutputMetadata": {"step": "merged"}}}]}


@pytest.fixture
def stack(config: Config, db_url: str, creds: Creds, tmp_path: Path,
          xrootd_server: XRootDServer,  # noqa: F811 - fixture
          ) -> Iterator[tuple[ThreadedServer, Config]]:
    port = free_port()
    data = with_storage(config, db_url, tmp_path, port, xrootd_server.port).model_dump(
        by_alias=True, exclude_none=True)
    data["Registry"]["Groups"]["demo_prod"] = {
        "VO": "demo", "Users": ["alice"], "Properties": ["NormalUser", "ProductionManagement"]}
    data.setdefault("Systems", {}).update({
        "WorkloadManagement": {"Services": {"SandboxStore": {"Options": {
            "BasePath": str(tmp_path / "sandboxes")}}}},
        "DataManagement": {}})
    data.setdefault("Operations", {})["Transformations"] = {"FilesMaxResetCounter": 2}
    cfg = Config.model_validate(data)
    engine = make_engine(db_url)
    for schema in (WMS_SCHEMA, REQUEST_SCHEMA, TRANSFORMATION_SCHEMA, FRAMEWORK_SCHEMA):
        init_schema(engine, schema)
    engine.dispose()
    with ThreadedServer(cfg, available_services().values(), port=port) as server:
        yield server, cfg


def run_agents(config: Config) -> tuple[list[Agent], list[threading.Thread]]:
    agents: list[Agent] = [cls(config, instance=f"e2e-{cls.__name__}", period=0.5) for cls in (
        TransformationAgent, WorkflowTaskAgent, RequestTaskAgent, TransformationMonitor,
        RequestExecutingAgent)]
    threads = [threading.Thread(target=a.run, daemon=True) for a in agents]
    for t in threads:
        t.start()
    return agents, threads


def test_production_from_registration_to_replicated_merged_files(
        stack: tuple[ThreadedServer, Config], creds: Creds, tmp_path: Path, pyz: Path) -> None:
    server, cfg = stack
    prod_proxy = creds.proxy(creds.alice, group="demo_prod", name="alice-prod")
    admin_proxy = creds.proxy(creds.admin, group="dm_admin", name="dm-admin")
    client_yaml = tmp_path / "client.yaml"
    client_yaml.write_text(yaml.safe_dump({"URLs": [server.url],
                                           "CADir": str(creds.ca_dir), "VO": "demo"}))
    env = dict(os.environ, PILOTWMS_CLIENT_CONFIG=str(client_yaml),
               X509_USER_PROXY=str(prod_proxy), HOME=str(tmp_path),
               PILOTWMS_SESSION_DIR=str(tmp_path / "sessions"))
    for key in ("BEARER_TOKEN", "BEARER_TOKEN_FILE", "X509_USER_CERT", "X509_USER_KEY"):
        env.pop(key, None)

    def cli(*args: str, ok: bool = True) -> str:
        proc = subprocess.run([sys.executable, "-m", *args], env=env, capture_output=True,
                              text=True, timeout=180, check=False)
        if ok:
            assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
        return proc.stdout

    def rpc(service: str, proxy: Path) -> RPCClient:
        return RPCClient(service, urls=[server.url], credentials=Credentials(cert=proxy),
                         ca_dir=creds.ca_dir)

    admin_fc = FileCatalogClient(rpc("DataManagement/FileCatalog", admin_proxy))
    admin_fc.add_metadata_field("kind", "string")
    admin_fc.add_metadata_field("step", "string")
    (tmp_path / "prod.yaml").write_text(yaml.safe_dump(production_yaml(tmp_path / "MARK")))
    (tmp_path / "repl.yaml").write_text(yaml.safe_dump({
        "Name": "replicate-merged", "Type": "Replication", "Plugin": "Broadcast",
        "Body": "ReplicateAndRegister", "TargetSE": ["DISK-B"],
        "InputMetaQuery": {"step": "merged"}, "Status": "Active"}))
    (tmp_path / "fragile.yaml").write_text(yaml.safe_dump({
        "Name": "fragile", "Type": "Processing", "GroupSize": 1, "Status": "Active",
        "Body": '[Executable = "/bin/false"; CPUTime = 600;]',
        "InputMetaQuery": {"kind": "fragile"}}))
    pid = int(cli("transformation.cli.dprod", "create", str(tmp_path / "prod.yaml")))
    repl = int(cli("transformation.cli.dtrans", "create", str(tmp_path / "repl.yaml")))
    fragile = int(cli("transformation.cli.dtrans", "create", str(tmp_path / "fragile.yaml")))
    cli("transformation.cli.dprod", "start", str(pid))
    tc = TransformationClient(rpc("Transformation/TransformationManager", prod_proxy))
    pc = ProductionClient(rpc("Production/ProductionManager", prod_proxy))
    reco, merge = (s["TransformationID"] for s in pc.get(pid)["Steps"])

    agents, threads = run_agents(cfg)
    pilots: list[subprocess.Popen[bytes]] = []
    try:
        # 50 raw files: dput to the xrootd SE, then dmeta on their directory
        local = tmp_path / "raw"
        local.mkdir()
        names = [f"f{i:02d}.dat" for i in range(49)] + ["flaky.dat"]
        for name in names:
            (local / name).write_text(f"{name}\n")
        (tmp_path / "bad.dat").write_text("bad\n")
        cli("dms.cli.dput", "-D", "XRD", *(str(local / n) for n in sorted(names)),
            f"{HOME}/raw/")
        cli("dms.cli.dput", "-D", "XRD", str(tmp_path / "bad.dat"), f"{HOME}/fragile/")
        started = time.monotonic()
        cli("dms.cli.dmeta", "add", f"{HOME}/raw", "kind=raw")
        cli("dms.cli.dmeta", "add", f"{HOME}/fragile", "kind=fragile")
        wait_for(lambda: tc.task_stats(reco)["TotalCreated"] == 10, 60, "the reco tasks")
        assert time.monotonic() - started < 30
        for n in range(2):
            work = tmp_path / f"pilot{n}"
            work.mkdir()
            (work / "token").write_text(creds.token("pilot", "demo_pilot"))
            log = (work / "pilot.log").open("wb")
            pilots.append(subprocess.Popen(  # noqa: S603
                [SYSTEM_PYTHON, "-S", "-I", str(pyz), "--url", server.url,
                 "--token-file", str(work / "token"), "--ca-dir", str(creds.ca_dir),
                 "--site", THERE, "--ce", "ce.test", "--queue", "q", "--workdir", str(work),
                 "--poll", "0.2", "--max-sleep", "0.5", "--heartbeat", "2", "--retries", "1",
                 "--max-failed-matches", "100000"], stdout=log, stderr=subprocess.STDOUT))
            log.close()

        def finished() -> bool:
            steps = pc.summary(pid)
            repl_files = tc.stats(repl)
            return all(s["PercentDone"] == 100 for s in steps) and \
                steps[1]["Files_Total"] == 10 and repl_files.get("Processed") == 2 and \
                tc.stats(fragile).get("MaxReset") == 1
        try:
            wait_for(finished, 420, "the production, the replication and the fragile file")
        except AssertionError:
            logs = "\n".join((tmp_path / f"pilot{n}" / "pilot.log").read_text(errors="replace")
                             [-3000:] for n in range(2))
            raise AssertionError(f"{pc.summary(pid)}\n{tc.stats(repl)}\n"
                                 f"{tc.stats(fragile)}\n{logs}") from None
    finally:
        for agent in agents:
            agent.stop()
        for pilot in pilots:
            pilot.kill()
            pilot.wait(30)
        for t in threads:
            t.join(30)

    shown = json.loads(cli("transformation.cli.dprod", "-f", "json", "show", str(pid)))
    assert [(s["Step"], s["Done(%)"], s["Processed"]) for s in shown] == [
        ("reco", 100.0, 50), ("merge", 100.0, 10)]
    # the flaky task failed once and was retried: its files show one error, all Processed
    files = json.loads(cli("transformation.cli.dtrans", "-f", "json", "files", str(reco)))
    assert {f["Status"] for f in files} == {"Processed"} and len(files) == 50
    flaky = next(f for f in files if f["LFN"].endswith("/flaky.dat"))
    assert flaky["ErrorCount"] == 1
    assert sum(1 for f in files if f["ErrorCount"] == 1) == 5
    tasks = tc.tasks(reco)
    assert sorted(t["ExternalStatus"] for t in tasks) == ["Done"] * 10 + ["Failed"]
    maxed = json.loads(cli("transformation.cli.dtrans", "-f", "json", "files", str(fragile),
                           "--status", "MaxReset"))
    assert [(f["LFN"], f["ErrorCount"]) for f in maxed] == [(f"{HOME}/fragile/bad.dat", 2)]
    # outputs under /demo/prod/<transformation>/<task>/, with ancestry, merged on two SEs
    fc = FileCatalogClient(rpc("DataManagement/FileCatalog", prod_proxy))
    merged = fc.find_files_by_metadata({"step": "merged"}, "/demo/prod")
    assert len(merged) == 2 and all(m.startswith(f"/demo/prod/{merge:08d}/") for m in merged)
    replicas = fc.get_replicas(merged).successful
    assert all(sorted(replicas[m]) == ["DISK-A", "DISK-B"] for m in merged)
    parents = fc.get_file_ancestors(merged, [1]).successful
    reco_outputs = {p for m in merged for p in parents[m]}
    assert len(reco_outputs) == 10
    assert all(p.startswith(f"/demo/prod/{reco:08d}/") for p in reco_outputs)
    raw = fc.get_file_ancestors(sorted(reco_outputs), [1]).successful
    assert {p for r in raw.values() for p in r} == {f"{HOME}/raw/{n}" for n in names}
    assert tc.get(fragile)["Status"] == "Active"
    assert "Files_PercentProcessed" in tc.summary({"TransformationID": repl})[0]
