"""A real WMS (every installed service, SQLite) and the pilot zipapp run by the system
``/usr/bin/python3 -S -I`` (no site-packages: the pilot must be standard library only)."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from core.config.schema import Config
from core.db import init_schema, make_engine
from core.rpc.runner import available_services
from pilot.build import build
from tests.support.credentials import Creds
from tests.support.servers import ThreadedServer
from wms.db.schema import WMS_SCHEMA

SYSTEM_PYTHON = "/usr/bin/python3"
SITE = "LCG.Pilot.test"


@pytest.fixture(scope="session")
def pyz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("pilot") / "pilot.pyz")


@pytest.fixture
def wms(config: Config, tmp_path: Path) -> Iterator[ThreadedServer]:
    data = config.model_dump(by_alias=True, exclude_none=True)
    data["Systems"] = {"WorkloadManagement": {"Services": {"SandboxStore": {"Options": {
        "BasePath": str(tmp_path / "sandboxes"), "MaxSizeMiB": 2}}}}}
    cfg = Config.model_validate(data)
    assert cfg.database
    engine = make_engine(cfg.database)
    init_schema(engine, WMS_SCHEMA)
    engine.dispose()
    with ThreadedServer(cfg, available_services().values()) as server:
        yield server


def wait_for(check: Callable[[], Any], timeout: float = 60.0, what: str = "") -> Any:
    """Poll ``check`` until it returns something true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        time.sleep(0.1)


@dataclass
class Env:
    server: ThreadedServer
    creds: Creds
    pyz: Path
    base: Path

    def alice(self) -> tuple[str, str]:
        return str(self.creds.alice[0]), str(self.creds.alice[1])

    def call(self, who: str, service: str, method: str, *args: Any) -> Any:
        kwargs: dict[str, Any] = {}
        if who == "alice":
            kwargs["cert"] = self.alice()
        elif who == "admin":
            kwargs["cert"] = str(self.creds.proxy(self.creds.admin, group="demo_admin"))
        else:
            kwargs["headers"] = {
                "Authorization": f"Bearer {self.creds.token('pilot', 'demo_pilot')}"}
        reply = requests.post(f"{self.server.url}/{service}",
                              data={"method": method, "args": json.dumps(list(args))},
                              verify=str(self.creds.ca_dir), timeout=60, **kwargs)
        body = reply.json()
        assert body["OK"], body
        return body["Value"]

    def submit(self, jdl: str) -> int:
        return int(self.call("alice", "WorkloadManagement/JobManager", "submitJob", jdl))

    def status(self, job: int) -> dict[str, str]:
        states = self.call("alice", "WorkloadManagement/JobMonitoring", "getJobsStates", [job])
        return states[str(job)]

    def logging(self, job: int) -> list[list[str]]:
        return self.call(
            "alice", "WorkloadManagement/JobMonitoring", "getJobLoggingInfo", job)

    def pilot(self, *args: str, name: str = "pilot", url: str = "") -> Pilot:
        workdir = self.base / name
        workdir.mkdir(parents=True, exist_ok=True)
        token = workdir / "token"
        token.write_text(self.creds.token("pilot", "demo_pilot"))
        out = (workdir / "stderr.txt").open("wb")
        cmd = [SYSTEM_PYTHON, "-S", "-I", str(self.pyz), "--url", url or self.server.url,
               "--token-file", str(token), "--ca-dir", str(self.creds.ca_dir),
               "--site", SITE, "--ce", "ce.pilot.test", "--queue", "short",
               "--workdir", str(workdir), "--poll", "0.1", "--max-sleep", "0.3",
               "--heartbeat", "1", "--watchdog-check", "0.2", "--retries", "1", *args]
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)  # noqa: S603
        out.close()
        return Pilot(proc, workdir)


@dataclass
class Pilot:
    proc: subprocess.Popen[bytes]
    workdir: Path

    def wait(self, timeout: float = 60.0) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(f"pilot still running:\n{self.log()[-6000:]}") from None

    def log(self) -> str:
        return (self.workdir / "stderr.txt").read_text(errors="replace")


@pytest.fixture
def env(wms: ThreadedServer, creds: Creds, pyz: Path, tmp_path: Path) -> Iterator[Env]:
    yield Env(wms, creds, pyz, tmp_path / "pilots")
