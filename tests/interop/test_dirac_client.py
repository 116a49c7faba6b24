"""The real DIRAC 9 client calls pilotwms through DIRAC's own HTTPS client.

The DIRAC client lives in its own venv (``scripts/install-dirac-client.sh``; the test command
runs it first, and this test runs it if needed: idempotent, about 45 s the first time).
``tests/interop/dirac_call.py`` runs inside that venv and prints DIRAC's result as JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.cli.instance import Instance
from core.config.schema import Config
from core.rpc.runner import available_services
from tests.support.servers import ThreadedServer

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.dirac


@pytest.fixture(scope="module")
def dirac_python() -> str:
    python = os.environ.get("PILOTWMS_DIRAC_CLIENT_PYTHON")
    if python:
        return python
    proc = subprocess.run(["bash", str(REPO / "scripts/install-dirac-client.sh")],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip().splitlines()[-1]


@pytest.fixture
def server(config: Config) -> Iterator[ThreadedServer]:
    with ThreadedServer(config, available_services().values()) as srv:
        yield srv


def dirac_call(python: str, url: str, proxy: Path, ca_dir: Path, *args: str) -> dict[str, Any]:
    proc = subprocess.run(
        [python, str(REPO / "tests/interop/dirac_call.py"), "--url", url, "--proxy", str(proxy),
         "--ca-dir", str(ca_dir), *args],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_dirac_client_ping_and_whoami_with_our_proxy(
        dirac_python: str, server: ThreadedServer, instance: Instance, tmp_path: Path) -> None:
    cert, key = instance.user_cert("admin")
    proxy = tmp_path / "proxy.pem"
    subprocess.run([sys.executable, "-m", "core.cli.admin", "proxy", "init", "--cert",
                    str(cert), "--key", str(key), "-g", "demo_admin", "--out", str(proxy)],
                   check=True, capture_output=True, timeout=60)
    url = f"{server.url}/Framework/Registry"

    ping = dirac_call(dirac_python, url, proxy, instance.ca_dir, "--method", "ping")
    assert ping["OK"] is True, ping
    assert ping["Value"]["name"] == "Framework/Registry"

    who = dirac_call(dirac_python, url, proxy, instance.ca_dir, "--method", "whoami")
    assert who["OK"] is True, who
    value = who["Value"]
    assert value["DN"] == "/O=pilotwms/OU=Users/CN=admin"
    assert value["group"] == "demo_admin"
    assert value["isProxy"] is True
    assert "JobAdministrator" in value["properties"]

    echo = dirac_call(dirac_python, url, proxy, instance.ca_dir, "--method", "echo",
                      "--args", '[{"a": [1, 2]}]')
    assert echo["Value"] == {"a": [1, 2]}

    missing = dirac_call(dirac_python, url, proxy, instance.ca_dir, "--method", "nothing")
    assert missing["OK"] is False and "is not implemented" in missing["Message"]


@pytest.fixture
def wms_server(config: Config) -> Iterator[ThreadedServer]:
    from core.db import init_schema, make_engine
    from wms.db.schema import WMS_SCHEMA

    engine = make_engine(config.database_url("WorkloadManagement"))
    init_schema(engine, WMS_SCHEMA)
    engine.dispose()
    with ThreadedServer(config, available_services().values()) as srv:
        yield srv


def test_dirac_wms_client_submits_reads_and_kills(
        dirac_python: str, wms_server: ThreadedServer, instance: Instance,
        tmp_path: Path) -> None:
    """The issue's "done when": DIRAC's own WMSClient and JobMonitoringClient."""
    cert, key = instance.user_cert("alice")
    proxy = tmp_path / "proxy.pem"
    subprocess.run([sys.executable, "-m", "core.cli.admin", "proxy", "init", "--cert",
                    str(cert), "--key", str(key), "-g", "demo_user", "--out", str(proxy)],
                   check=True, capture_output=True, timeout=60)
    jdl = tmp_path / "job.jdl"
    jdl.write_text('[\n  Executable = "/bin/echo";\n  Arguments = "hello from DIRAC";\n'
                   '  JobName = "dirac-client-job";\n  CPUTime = 3600;\n]\n')
    submitted = dirac_call(dirac_python, wms_server.url, proxy, instance.ca_dir,
                           "--wms-submit", str(jdl))
    assert submitted["OK"] is True, submitted
    job_id = int(submitted["Value"])

    status = dirac_call(dirac_python, wms_server.url, proxy, instance.ca_dir,
                        "--wms-status", str(job_id))
    assert status["OK"] is True, status
    assert {int(k): v for k, v in status["Value"].items()} == {job_id: {"Status": "Waiting"}}

    killed = dirac_call(dirac_python, wms_server.url, proxy, instance.ca_dir,
                        "--wms-kill", str(job_id))
    assert killed["OK"] is True, killed
    status = dirac_call(dirac_python, wms_server.url, proxy, instance.ca_dir,
                        "--wms-status", str(job_id))
    assert {int(k): v for k, v in status["Value"].items()} == {job_id: {"Status": "Killed"}}
