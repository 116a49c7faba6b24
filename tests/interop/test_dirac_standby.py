"""How the real DIRAC 9 client sees pilotwms's ``Standby`` status (docs/events.md).

* DIRAC's ``WMSClient.submitJob`` keeps an ``Event`` attribute: a DIRAC user subscribes a job
  with a plain JDL; ``JobMonitoringClient.getJobsStatus`` shows ``Standby`` as it is;
  ``WMSClient.killJob`` (no client-side filter) ends the chain.
* What DIRAC's own code does with a status it does not know, checked on the installed client:
  its ``dstat`` filters client-side by ``JOB_STATES`` (so it lists Standby jobs only with
  ``-S Standby``), and ``JobsStateMachine('Standby')`` has no transitions (so ``Dirac().killJob``,
  which filters through it, raises ``KeyError``: use ``dkill`` or ``WMSClient().killJob``).
"""

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
from core.rpc.runner import available_services
from tests.interop.test_dirac_client import dirac_call
from tests.interop.test_dirac_client import dirac_python as dirac_python  # noqa: F401
from tests.support.servers import ThreadedServer
from wms.db.schema import WMS_SCHEMA
from wms.logic import events

pytestmark = pytest.mark.dirac

ORACLE = """
import json
from DIRAC.Interfaces.scripts import dstat
from DIRACCommon.WorkloadManagementSystem.Client import JobStatus as J
shown = dstat.Params().getStatus()
try:
    J.JobsStateMachine("Standby").getNextState("Killed")
    kill = "ok"
except KeyError:
    kill = "KeyError"
print(json.dumps({"default": "standby" in shown,
                  "all": "standby" in [s.lower() for s in J.JOB_STATES], "kill": kill}))
"""


@pytest.fixture
def server(config: Config) -> Iterator[ThreadedServer]:
    engine = make_engine(config.database_url("WorkloadManagement"))
    init_schema(engine, WMS_SCHEMA)
    events.create_event(engine, events.Actor("admin", "demo_admin", "demo",
                                             frozenset({"EventManager"})), "an00h000")
    engine.dispose()
    with ThreadedServer(config, available_services().values()) as srv:
        yield srv


def test_dirac_client_and_standby(dirac_python: str, server: ThreadedServer,  # noqa: F811
                                  instance: Instance, tmp_path: Path) -> None:
    cert, key = instance.user_cert("alice")
    proxy = tmp_path / "proxy.pem"
    subprocess.run([sys.executable, "-m", "core.cli.admin", "proxy", "init", "--cert",
                    str(cert), "--key", str(key), "-g", "demo_user", "--out", str(proxy)],
                   check=True, capture_output=True, timeout=60)
    jdl = tmp_path / "job.jdl"
    jdl.write_text('[\n  Executable = "/bin/echo";\n  Arguments = "the analysis is there";\n'
                   '  Event = "an00h000";\n  CPUTime = 3600;\n]\n')
    submitted = dirac_call(dirac_python, server.url, proxy, instance.ca_dir,
                           "--wms-submit", str(jdl))
    assert submitted["OK"] is True, submitted
    job = int(submitted["Value"])
    status = dirac_call(dirac_python, server.url, proxy, instance.ca_dir, "--wms-status",
                        str(job))
    assert {int(k): v for k, v in status["Value"].items()} == {job: {"Status": "Standby"}}
    killed = dirac_call(dirac_python, server.url, proxy, instance.ca_dir, "--wms-kill",
                        str(job))
    assert killed["OK"] is True, killed
    status = dirac_call(dirac_python, server.url, proxy, instance.ca_dir, "--wms-status",
                        str(job))
    assert {int(k): v for k, v in status["Value"].items()} == {job: {"Status": "Killed"}}
    oracle = subprocess.run([dirac_python, "-c", ORACLE], capture_output=True, text=True,
                            timeout=120, env={"DIRAC_NO_CFG": "1", "PATH": "/usr/bin:/bin"})
    assert oracle.returncode == 0, oracle.stderr[-2000:]
    facts = json.loads(oracle.stdout.strip().splitlines()[-1])
    assert facts == {"default": False, "all": False, "kill": "KeyError"}
