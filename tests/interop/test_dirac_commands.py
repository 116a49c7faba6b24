"""COMDIRAC's formats with DIRAC's own code as the oracle: DIRAC 9 ships COMDIRAC's commands
(``dls``, ``dsize``, ``dreplicas``, ``dfind``, ``dmeta``, ``dstat``, ``dlogging``); run them and
ours against the same server and data, and compare what they print, byte for byte."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from core.cli.dbcmd import init_all
from core.cli.dirac_config import write_dirac_cfg
from core.cli.instance import Instance
from core.rpc.runner import available_services
from tests.interop.dirac_env import DiracClient
from tests.interop.test_dirac_client import dirac_python  # noqa: F401 - fixture
from tests.interop.test_dirac_jobs import instance_config
from tests.support.credentials import Creds
from tests.support.servers import ThreadedServer

pytestmark = pytest.mark.dirac
HOME = "/demo/user/a/alice"
BASE = f"{HOME}/fmt"
PY = sys.executable
OURS = {"dls": "dms.cli.dls", "dsize": "dms.cli.dsize", "dreplicas": "dms.cli.dreplicas",
        "dfind": "dms.cli.dfind", "dmeta": "dms.cli.dmeta", "dstat": "wms.cli.dstat",
        "dlogging": "wms.cli.dlogging"}
NOISE = "Running without remote configuration\n"


@pytest.fixture
def server(instance: Instance, tmp_path: Path) -> Iterator[ThreadedServer]:
    config = instance_config(instance, f"sqlite:///{tmp_path / 'fmt.db'}", tmp_path)
    init_all(config)
    with ThreadedServer(config, available_services().values()) as srv:
        yield srv


def _rpc(server: ThreadedServer, creds: Creds, cert: Any, service: str, method: str,
         *args: Any) -> Any:
    reply = requests.post(f"{server.url}/{service}", verify=str(creds.ca_dir), timeout=60,
                          cert=cert, data={"method": method,
                                           "args": json.dumps(list(args))}).json()
    assert reply["OK"], reply
    return reply["Value"]


def _populate(server: ThreadedServer, creds: Creds) -> list[int]:
    alice = tuple(map(str, creds.alice))
    admin = str(creds.proxy(creds.admin, group="demo_admin"))
    fc = "DataManagement/FileCatalog"
    _rpc(server, creds, admin, fc, "addMetadataField", "run", "INT", "-d")
    _rpc(server, creds, admin, fc, "addMetadataField", "quality", "FLOAT", "-f")
    files = {f"{BASE}/r1/small": (5, ["DIRAC-USER"]),
             f"{BASE}/r1/big": (123456, ["DIRAC-USER", "TAPE-SE"]),
             f"{BASE}/r2/f": (1000, ["TAPE-SE"])}
    _rpc(server, creds, alice, fc, "addFile", {
        lfn: {"PFN": f"root://{ses[0]}{lfn}", "Size": size, "SE": ses[0], "GUID": lfn,
              "Checksum": "01020304"} for lfn, (size, ses) in files.items()})
    _rpc(server, creds, alice, fc, "addReplica", {
        f"{BASE}/r1/big": {"PFN": f"root://TAPE-SE{BASE}/r1/big", "SE": "TAPE-SE"}})
    _rpc(server, creds, alice, fc, "createDirectory", f"{BASE}/empty")
    _rpc(server, creds, alice, fc, "setMetadata", f"{BASE}/r1", {"run": 1})
    _rpc(server, creds, alice, fc, "setMetadata", f"{BASE}/r2", {"run": 2})
    _rpc(server, creds, alice, fc, "setMetadata", f"{BASE}/r1/big", {"quality": 0.5})
    jm = "WorkloadManagement/JobManager"
    jobs = [int(_rpc(server, creds, alice, jm, "submitJob",
                     f'[ Executable = "/bin/echo"; JobName = "fmt-{i}"; JobGroup = "g{i}";'
                     ' Site = "LCG.Nowhere.org"; ]')) for i in (1, 2, 3)]
    _rpc(server, creds, alice, jm, "killJob", jobs[1])
    return jobs


def test_comdirac_commands_print_what_diracs_print(
        dirac_python: str,  # noqa: F811 - fixture
        server: ThreadedServer, creds: Creds, tmp_path: Path) -> None:
    jobs = _populate(server, creds)
    cfg = tmp_path / "dirac.cfg"
    write_dirac_cfg(server.config, cfg, url=server.url)
    proxy = creds.proxy(creds.alice, group="demo_user")
    dirac = DiracClient(dirac_python, server.url, cfg, proxy, creds.ca_dir, tmp_path / "dirac")
    dirac.workdir.mkdir()
    dirac.commands(("dpwd",))  # the first DIRAC d-command writes dcommands.conf, then fails
    client = tmp_path / "client.yaml"
    client.write_text(f"URLs: [{server.url}]\nCADir: {creds.ca_dir}\nGroup: demo_user\n"
                      "VO: demo\n")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("BEARER", "X509"))},
           "PILOTWMS_CLIENT_CONFIG": str(client), "X509_USER_PROXY": str(proxy),
           "BEARER_TOKEN_FILE": str(tmp_path / "no-token"), "HOME": str(tmp_path / "ours"),
           "PILOTWMS_SESSION_DIR": str(tmp_path / "sessions")}
    cases = [
        ("dls", BASE), ("dls", "-lSr", f"{BASE}/r1"), ("dls", "-ltnH", f"{BASE}/r1"),
        ("dsize", f"{BASE}/r1/big"), ("dsize", "-l", BASE),
        ("dreplicas", f"{BASE}/r1/big"),
        ("dfind", BASE, "run>=1"), ("dfind", BASE, "quality>0.1"),
        ("dmeta", "ls", f"{BASE}/r1/big"),
        ("dstat", "-a", "-S", "Killed"), ("dstat", str(jobs[0])),
        ("dstat", "-a", "-f", "csv", "-F", "JobName,Status"),
        ("dlogging", str(jobs[1])),
    ]  # (DIRAC's dstat -f json fails on the SubmissionTime datetime: ours prints the text)
    theirs: list[tuple[int, str]] = []
    ours: list[tuple[int, str, str]] = []
    for start in range(0, len(cases), 5):  # DIRAC needs ~1 s of CPU to start: 5 at a time
        batch = cases[start:start + 5]
        mine = [subprocess.Popen([PY, "-m", OURS[c[0]], *c[1:]], env=env, text=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                for c in batch]
        theirs += dirac.commands(*batch)
        for proc in mine:
            out, err = proc.communicate(timeout=120)
            ours.append((proc.returncode, out, err))
    differences = []
    for case, (code, out), (our_code, our_out, our_err) in zip(cases, theirs, ours,
                                                                strict=True):
        expected = out.replace(NOISE, "", 1)
        if (our_code, our_out) != (code, expected):
            differences.append(f"{' '.join(case)}:\n DIRAC ({code}):\n{expected}\n ours "
                               f"({our_code}):\n{our_out}{our_err}")
    assert differences == [], "\n".join(differences)
    # and they printed something real
    assert dict(zip([" ".join(c) for c in cases], theirs, strict=True))[
        f"dls -lSr {BASE}/r1"][1].count("alice demo_user") == 2
