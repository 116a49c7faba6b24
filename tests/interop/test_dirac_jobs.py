"""Existing DIRAC users, unchanged: the real DIRAC 9 client (its ``Job``/``Dirac`` API and its
command-line tools, configured only by ``pilotwms dirac-config``) against a running instance
whose jobs are run by real local pilots (the zipapp under the system Python), on SQLite and
MariaDB.

* ``Job`` API workflow jobs: two ``setExecutable`` steps with a local input sandbox end Done
  and their output sandbox (std.out with both steps' output, the step logs) comes back; a
  second step exiting 3 ends Failed with DIRAC's minor status and the exit status in the
  application status, ``ApplicationError`` and the logging; a ``FailoverRequest`` module
  (not ``Script``) fails with a message naming it; an entity bomb is refused.
* ``dirac-wms-job-submit`` (a JDL), ``dirac-wms-job-status``, ``dirac-wms-job-get-output``,
  ``dirac-wms-job-kill``, ``dirac-dms-lfn-replicas`` and ``dirac-dms-find-lfns`` (metadata).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from core.cli.dbcmd import init_all
from core.cli.dirac_config import write_dirac_cfg
from core.cli.instance import Instance
from core.config.loader import load_config
from core.config.schema import Config
from core.rpc.runner import available_services
from pilot.build import build
from tests.interop.dirac_env import DiracClient
from tests.interop.test_dirac_client import dirac_python  # noqa: F401 - fixture
from tests.pilot.conftest import wait_for
from tests.pilot.test_dirac_workflow import BOMB
from tests.support.credentials import Creds
from tests.support.servers import ThreadedServer

pytestmark = [pytest.mark.dirac, pytest.mark.slow]
HOME = "/demo/user/a/alice"
SYSTEM_PYTHON = "/usr/bin/python3"


@pytest.fixture(scope="module")
def pyz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("pilot") / "pilot.pyz")


def instance_config(instance: Instance, db_url: str, tmp_path: Path) -> Config:
    data = load_config(instance.config, environ={}).model_dump(by_alias=True,
                                                                exclude_none=True)
    data["Database"] = db_url
    data["Systems"] = {"DataManagement": {}, "WorkloadManagement": {"Services": {
        "SandboxStore": {"Options": {"BasePath": str(tmp_path / "sandboxes")}}}}}
    data["Registry"]["Groups"]["demo_admin"]["Properties"].append("FileCatalogManagement")
    # jobs for a site with no queue stay Waiting, as DIRAC keeps them (the tests use such jobs
    # as ones no pilot will take)
    data.setdefault("Operations", {}).setdefault("JobScheduling", {})[
        "RefuseImpossibleJobs"] = False
    return Config.model_validate(data)


@pytest.fixture
def server(instance: Instance, db_url: str, tmp_path: Path) -> Iterator[ThreadedServer]:
    config = instance_config(instance, db_url, tmp_path)
    init_all(config)
    with ThreadedServer(config, available_services().values()) as srv:
        yield srv


def rpc(server: ThreadedServer, creds: Creds, service: str, method: str, *args: Any,
        cert: Any = None) -> Any:
    reply = requests.post(f"{server.url}/{service}", timeout=60, verify=str(creds.ca_dir),
                          cert=cert or tuple(map(str, creds.alice)),
                          data={"method": method, "args": json.dumps(list(args))}).json()
    assert reply["OK"], reply
    return reply["Value"]


def run_pilot(server: ThreadedServer, creds: Creds, pyz: Path, workdir: Path
              ) -> subprocess.Popen[bytes]:
    workdir.mkdir(parents=True, exist_ok=True)
    token = workdir / "token"
    token.write_text(creds.token("pilot", "demo_pilot"))
    log = (workdir / "pilot.out").open("wb")
    cmd = [SYSTEM_PYTHON, "-S", "-I", str(pyz), "--url", server.url, "--token-file",
           str(token), "--ca-dir", str(creds.ca_dir), "--site", "LCG.Pilot.test",
           "--ce", "ce.pilot.test", "--queue", "short", "--workdir", str(workdir),
           "--poll", "0.2", "--max-sleep", "0.5", "--max-failed-matches", "3",
           "--heartbeat", "2", "--watchdog-check", "0.5", "--retries", "1"]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603
    log.close()
    return proc


def test_dirac_users_jobs_and_tools(dirac_python: str,  # noqa: F811 - fixture
                                    server: ThreadedServer, creds: Creds, pyz: Path,
                                    tmp_path: Path) -> None:
    cfg = tmp_path / "dirac.cfg"
    write_dirac_cfg(server.config, cfg, url=server.url)
    proxy = creds.proxy(creds.alice, group="demo_user")
    dirac = DiracClient(dirac_python, server.url, cfg, proxy, creds.ca_dir, tmp_path / "dirac")
    dirac.workdir.mkdir()
    # catalog content for the data commands: a file with a replica and metadata
    admin = str(creds.proxy(creds.admin, group="demo_admin"))
    fc = "DataManagement/FileCatalog"
    rpc(server, creds, fc, "addMetadataField", "run", "INT", "-f", cert=admin)
    rpc(server, creds, fc, "addFile", {f"{HOME}/data/f1.txt": {
        "PFN": "", "Size": 5, "SE": "DIRAC-USER", "GUID": "G-1", "Checksum": "0badf00d"}})
    rpc(server, creds, fc, "setMetadata", f"{HOME}/data/f1.txt", {"run": 42})

    # submit: the Job API (3 workflow jobs) and two JDLs with dirac-wms-job-submit at once
    (dirac.workdir / "bomb").mkdir()
    (dirac.workdir / "bomb" / "jobDescription.xml").write_text(BOMB)
    (dirac.workdir / "bomb" / "bomb.jdl").write_text(
        '[ Executable = "dirac-jobexec"; Arguments = "jobDescription.xml -o LogLevel=INFO";\n'
        '  InputSandbox = {"jobDescription.xml"}; JobName = "bomb"; ]\n')
    (dirac.workdir / "waiting.jdl").write_text(
        '[ Executable = "/bin/echo"; Arguments = "never"; Site = "LCG.Nowhere.org"; ]\n')
    submitted = [dirac.start("dirac-wms-job-submit", "bomb.jdl", cwd=dirac.workdir / "bomb"),
                 dirac.start("dirac-wms-job-submit", "waiting.jdl")]
    api = dirac.script("submit_jobs.py", {"workdir": str(dirac.workdir)})
    outputs = [proc.communicate(timeout=180)[0] for proc in submitted]
    assert all(isinstance(api[k], int) for k in ("ok", "fails", "module")), api
    ids = {**api}
    for name, out in zip(("bomb", "waiting"), outputs, strict=True):
        assert "JobID = " in out, out
        ids[name] = int(out.split("JobID = ")[1].split()[0])

    pilot = run_pilot(server, creds, pyz, tmp_path / "pilot")
    killed, replicas, found = dirac.commands(
        ("dirac-wms-job-kill", ids["waiting"]),
        ("dirac-dms-lfn-replicas", f"{HOME}/data/f1.txt"),
        ("dirac-dms-find-lfns", f"Path={HOME}", "run=42"))
    assert killed[0] == 0 and f"Killed jobs {ids['waiting']}" in killed[1], killed
    assert replicas[0] == 0, replicas
    assert f"{HOME}/data/f1.txt DIRAC-USER" in replicas[1], replicas[1]
    assert found[0] == 0 and f"{HOME}/data/f1.txt" in found[1].splitlines(), found

    workflow_jobs = [ids[k] for k in ("ok", "fails", "module", "bomb")]

    def all_final() -> bool:
        states = rpc(server, creds, "WorkloadManagement/JobMonitoring", "getJobsStates",
                     workflow_jobs)
        return all(s["Status"] in ("Done", "Failed") for s in states.values())

    try:
        wait_for(all_final, 150, "the pilot to run the DIRAC jobs")
    finally:
        if pilot.poll() is None:
            pilot.kill()
        pilot.wait()
    out_dir = dirac.workdir / "out"
    out_dir.mkdir()
    status_cmd, get_output = dirac.commands(
        ("dirac-wms-job-status", *workflow_jobs, ids["waiting"]),
        ("dirac-wms-job-get-output", ids["ok"], {"cwd": out_dir}))
    checked = dirac.script("check_jobs.py", {
        "workdir": str(dirac.workdir / "api-out"), "outputs": ["ok", "fails"],
        "jobs": {k: ids[k] for k in ("ok", "fails", "module", "bomb")}})
    pilot_log = (tmp_path / "pilot" / "pilot.out").read_text(errors="replace")[-3000:]

    # the two-step job: Done, both steps' output in std.out, the step logs
    ok = checked["ok"]
    assert (ok["status"]["Status"], ok["status"]["MinorStatus"]) == (
        "Done", "Execution Complete"), (ok["status"], pilot_log)
    files = ok["files"]
    assert "hello from step one\n" in files["std.out"]
    assert "from the local input sandbox\n" in files["std.out"]
    assert files["echo.log"].startswith("<<<<<<<<<< echo Standard Output >>>>>>>>>>\n\n"
                                        "hello from step one\n")
    assert "from the local input sandbox" in files["cat.log"]
    applications = [row[2] for row in ok["logging"]]
    assert ["Executing RunScriptStep1", "echo successful", "Executing RunScriptStep2",
            "cat successful"] == [a for a in dict.fromkeys(applications)
                                  if a.startswith(("Executing", "echo", "cat"))]

    # the second step exits 3: Failed, DIRAC's minor status, the exit status visible
    fails = checked["fails"]
    assert fails["status"]["Status"] == "Failed", (fails, pilot_log)
    assert fails["status"]["MinorStatus"] == "Application Finished With Errors"
    assert fails["status"]["ApplicationStatus"] == "'sh' Exited With Status 3"
    assert fails["parameters"]["ApplicationError"] == "'sh' Exited With Status 3"
    assert ("Failed", "Application Finished With Errors", "'sh' Exited With Status 3") in [
        tuple(row[:3]) for row in fails["logging"]]
    assert "second step\n" in fails["files"]["std.out"]
    assert "third step never runs" not in fails["files"]["std.out"]

    # a VO module and an entity bomb: Failed, saying why
    module = checked["module"]
    assert module["status"]["Status"] == "Failed"
    assert module["status"]["MinorStatus"] == "Workflow module not supported"
    assert "'FailoverRequest'" in module["parameters"]["ApplicationError"]
    bomb = checked["bomb"]
    assert bomb["status"]["Status"] == "Failed"
    assert bomb["status"]["MinorStatus"] == "Invalid workflow description"
    assert "document type declarations are refused" in bomb["parameters"]["ApplicationError"]

    # DIRAC's own command-line tools read the same
    assert status_cmd[0] == 0, status_cmd
    lines = {line.split()[0]: line for line in status_cmd[1].splitlines()
             if line.startswith("JobID=")}
    assert "Status=Done;" in lines[f"JobID={ids['ok']}"]
    assert "Status=Killed;" in lines[f"JobID={ids['waiting']}"]
    assert get_output[0] == 0, get_output
    assert "hello from step one" in (out_dir / str(ids["ok"]) / "std.out").read_text()
