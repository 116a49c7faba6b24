"""Pilots (the real zipapp, run by the system Python) facing faults: the server gone for a
while, the stalled limit passed meanwhile, SIGTERM.

* Cut off for :data:`OUTAGE` seconds (the server stopped, then started again on the same port
  and database; ``PILOTWMS_TEST_OUTAGE`` sets it, 60 s by default so that the suite stays
  short; 120 s passes too): the pilot keeps its running payload, resumes heartbeats and
  uploads its outputs once the server is back, and the job ends Done.
* Beyond the stalled limit (the StalledJobAgent's logic run with short, configurable limits
  while the server is away): the job is Stalled, then Failed; when the late pilot comes back
  its heartbeat is refused (``JobNotActiveError``), it stops the payload and reports nothing
  more. (A rescheduled job matched again refuses the earlier attempt's token:
  tests/wms/logic/test_late_reports.py.)
* SIGTERM: the pilot exits within a few seconds, with the server up (the job is reported
  Failed / "Received Kill signal") and with the server unreachable (its last calls share a
  short grace period instead of retrying).
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.config.schema import Config, StalledJobsConfig
from core.db import init_schema, make_engine
from core.rpc.runner import available_services
from pilot.build import build
from tests.pilot.conftest import Env, Pilot, wait_for
from tests.support.credentials import Creds
from tests.support.mariadb import free_port
from tests.support.servers import ThreadedServer
from tests.wms.ce.helpers import live_processes_with
from wms.db.schema import WMS_SCHEMA
from wms.logic.stalled import check_jobs
from wms.service.common import dequeue

OUTAGE = float(os.environ.get("PILOTWMS_TEST_OUTAGE", "60"))


@pytest.fixture(scope="module")
def pyz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("pilot") / "pilot.pyz")


class Restartable:
    """A WMS on a fixed port that can be stopped and started again (same database)."""

    def __init__(self, config: Config, base: Path) -> None:
        data = config.model_dump(by_alias=True, exclude_none=True)
        data["Systems"] = {"WorkloadManagement": {"Services": {"SandboxStore": {"Options": {
            "BasePath": str(base / "sandboxes"), "MaxSizeMiB": 2}}}}}
        self.port = free_port()
        data["Server"]["Port"] = self.port
        self.config = Config.model_validate(data)
        assert self.config.database
        engine = make_engine(self.config.database)
        init_schema(engine, WMS_SCHEMA)
        engine.dispose()
        self.server: ThreadedServer | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self) -> ThreadedServer:
        self.server = ThreadedServer(self.config, available_services().values(),
                                     port=self.port).start()
        return self.server

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None


@pytest.fixture
def wms(config: Config, tmp_path: Path) -> Iterator[Restartable]:
    wms = Restartable(config, tmp_path)
    wms.start()
    try:
        yield wms
    finally:
        wms.stop()


@pytest.fixture
def env(wms: Restartable, creds: Creds, pyz: Path, tmp_path: Path) -> Env:
    assert wms.server is not None
    return Env(wms.server, creds, pyz, tmp_path / "pilots")


def heartbeats(env: Env, job: int) -> int:
    return len(env.call("alice", "WorkloadManagement/JobMonitoring", "getJobHeartBeatData",
                        job))


def start_pilot(env: Env, name: str, *extra: str) -> Pilot:
    return env.pilot("--max-failed-matches", "1", "--processors", "1",
                     "--outage-tolerance", "300", *extra, name=name)


def test_pilot_cut_off_keeps_its_job_and_a_late_pilot_is_refused(
        env: Env, wms: Restartable) -> None:
    keep, late = uuid.uuid4().hex, uuid.uuid4().hex
    job1 = env.submit(f'[Executable = "/bin/sh"; Arguments = "-c \'sleep {OUTAGE + 8:.0f}; '
                      f'echo {keep}\'"; CPUTime = 600; OutputSandbox = {{"std.out"}};]')
    pilot1 = start_pilot(env, "keeps")
    wait_for(lambda: live_processes_with(keep), 60, "the first payload")
    job2 = env.submit(f'[Executable = "/bin/sh"; Arguments = "-c \'sleep 600; echo {late}\'";'
                      ' CPUTime = 600;]')
    pilot2 = start_pilot(env, "late")
    try:
        wait_for(lambda: live_processes_with(late), 60, "the second payload")
        wait_for(lambda: heartbeats(env, job1) and heartbeats(env, job2), 30, "heartbeats")
        assert env.status(job1)["Status"] == env.status(job2)["Status"] == "Running"

        # the server goes away; meanwhile the stalled-job logic gives the second job up
        wms.stop()
        cut = time.monotonic()
        conf = StalledJobsConfig.model_validate({"StalledAfterMinutes": 0.2,  # 12 s
                                                 "FailAfterMinutes": 0.2})
        assert env.server.config.database
        engine = make_engine(env.server.config.database)
        seen: list[str] = []

        def given_up() -> bool:
            report = check_jobs(engine, conf, dequeue=dequeue, max_rescheduling=3,
                                mine=lambda job: job == job2)
            seen.extend(f"{k}:{v}" for k, v in vars(report).items() if v)
            return bool(report.failed)

        wait_for(given_up, OUTAGE - 5, "the stalled job to fail")
        engine.dispose()
        assert any(s.startswith("stalled") for s in seen), seen
        assert live_processes_with(keep) and live_processes_with(late), "a payload died"
        time.sleep(max(0.0, OUTAGE - (time.monotonic() - cut)))
        assert pilot1.proc.poll() is None and pilot2.proc.poll() is None
        env.server = wms.start()
        heartbeats_before = heartbeats(env, job1)

        # the first pilot: heartbeats resume, the payload ends, outputs are uploaded: Done
        wait_for(lambda: heartbeats(env, job1) > heartbeats_before, 30, "heartbeats again")
        assert pilot1.wait(120) == 0, pilot1.log()
        assert env.status(job1) == {"Status": "Done", "MinorStatus": "Execution Complete",
                                    "ApplicationStatus": "Exit code 0"}, pilot1.log()
        steps = [row[1] for row in env.logging(job1)]
        assert "Output Sandbox Uploaded" in steps, steps
        assert "Job stalled: pilot not running" not in steps, steps

        # the late pilot: refused, stops its payload, reports nothing more
        assert pilot2.wait(120) == 0, pilot2.log()
        log = pilot2.log()
        assert "heartbeat refused" in log and "no longer" in log, log
        wait_for(lambda: not live_processes_with(late), 15, "the late payload to stop")
        history = env.logging(job2)
        statuses = [row[0] for row in history]
        assert statuses[-2:] == ["Stalled", "Failed"], history
        assert env.status(job2) == {"Status": "Failed",
                                    "MinorStatus": "Job stalled: pilot not running",
                                    "ApplicationStatus": "Unknown"}, env.status(job2)
    finally:
        for pilot in (pilot1, pilot2):
            if pilot.proc.poll() is None:
                pilot.proc.kill()
        for tag in (keep, late):
            for pid in live_processes_with(tag):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("server_up", [True, False])
def test_sigterm_exits_within_seconds(env: Env, wms: Restartable, server_up: bool) -> None:
    tag = uuid.uuid4().hex
    job = env.submit(f'[Executable = "/bin/sh"; Arguments = "-c \'sleep 300; echo {tag}\'";'
                     ' CPUTime = 600;]')
    pilot = start_pilot(env, "sigterm", "--stop-grace", "3", "--retries", "5")  # the default
    try:
        wait_for(lambda: live_processes_with(tag) and env.status(job)["Status"] == "Running",
                 60, "the payload")
        if not server_up:
            wms.stop()
        sent = time.monotonic()
        pilot.proc.send_signal(signal.SIGTERM)
        code = pilot.wait(30)
        took = time.monotonic() - sent
        assert code == 0, pilot.log()
        # the payload is killed (2 s grace), then the last reports: a few seconds in all,
        # never the RPC retries (31 s) nor the outage tolerance (300 s here)
        assert took < 10, (took, pilot.log())
        assert not live_processes_with(tag)
        if server_up:
            assert env.status(job) == {"Status": "Failed", "MinorStatus": "Received Kill signal",
                                       "ApplicationStatus": "Exit code -15"}, pilot.log()
        else:
            assert "the pilot is stopping" in pilot.log() or "no server answered" in \
                pilot.log(), pilot.log()
        print(f"\nSIGTERM with the server {'up' if server_up else 'down'}: exit after "
              f"{took:.1f} s")
    finally:
        if pilot.proc.poll() is None:
            pilot.proc.kill()
        for pid in live_processes_with(tag):
            os.kill(pid, signal.SIGKILL)
