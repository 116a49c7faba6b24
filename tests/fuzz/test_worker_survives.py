"""No hostile request kills a worker: a real ``pilotwms serve --processes 2`` (every service),
hit with the requests that crashed or could crash handlers, keeps the same two worker
processes (the supervisor would restart a dead one, with a new pid) and still answers.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests.fuzz.conftest import fuzz_config

PILOTWMS = [sys.executable, "-m", "core.cli.admin"]


def children(pid: int) -> set[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as stream:
        return {int(x) for x in stream.read().split()}


@pytest.fixture(scope="module")
def served(instance: Any, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[subprocess.Popen[str], str, str]]:
    base = tmp_path_factory.mktemp("workers")
    cfg = fuzz_config(instance, base)
    path = base / "config.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump(by_alias=True, exclude_none=True,
                                                  mode="json")))
    proc = subprocess.Popen([*PILOTWMS, "serve", "--config", str(path), "--processes", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            start_new_session=True, cwd=Path(__file__).resolve().parents[2])
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert "pilotwms serving" in line, line
    url = line.split(" at ")[1].split()[0]
    ca_dir = str(cfg.server.ca_dir)
    try:
        yield proc, url, ca_dir
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0


HOSTILE_FORMS: list[tuple[str, dict[str, str]]] = [
    ("WorkloadManagement/JobMonitoring",
     {"method": "getJobsStatus", "args": "[" * 100_000 + "]" * 100_000}),
    ("WorkloadManagement/JobMonitoring",
     {"method": "getJobsStatus", "args": json.dumps([[2**70]])}),
    ("WorkloadManagement/JobMonitoring", {"method": "getJobSummary", "args": "[" + "9" * 5000
                                          + "]"}),
    ("WorkloadManagement/JobStateUpdate",
     {"method": "setJobApplicationStatus", "args": '["9223372036854775808", "", ""]'}),
    ("DataManagement/FileCatalog", {"method": "getFileAncestors", "args": "[[], [null]]"}),
    ("DataManagement/FileCatalog", {"method": "removeMetadata", "args": '[{"/": true}]'}),
    ("WorkloadManagement/JobManager",
     {"method": "submitJob", "args": json.dumps(["A = " + "{" * 5000])}),
    ("Framework/Registry", {"method": "echo", "args": "[NaN, Infinity]"}),
    ("Framework/Registry", {"method": "echo", "args": '[{"__dCls": "dt", "obj": 5}]'}),
    ("Framework/Registry", {"method": "whoami", "extraCredentials": "[" * 3000}),
]


def test_hostile_requests_do_not_kill_workers(served: tuple[subprocess.Popen[str], str, str],
                                              creds: Any) -> None:
    proc, url, ca_dir = served
    deadline = time.monotonic() + 60          # the supervisor forks after printing its URL
    while len(workers := children(proc.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(workers) == 2
    cert = tuple(map(str, creds.alice))
    for _round in range(3):
        for path, form in HOSTILE_FORMS:
            reply = requests.post(f"{url}/{path}", data=form, cert=cert, verify=ca_dir,
                                  timeout=120)
            assert reply.status_code in (200, 400, 401), (path, form["method"], reply.text)
        raw = requests.post(f"{url}/Framework/Registry", data=os.urandom(4096), verify=ca_dir,
                            headers={"Content-Type": "application/x-www-form-urlencoded"},
                            timeout=60)
        assert raw.status_code in (200, 400), raw.text
    assert proc.poll() is None
    assert children(proc.pid) == workers, "a worker died and was restarted"
    seen = set()
    for _ in range(20):
        pong = requests.post(f"{url}/Framework/Registry", data={"method": "ping"},
                             verify=ca_dir, timeout=60)
        assert pong.json()["OK"] is True
        seen.add(pong.json()["Value"]["pid"])
    assert seen <= workers
