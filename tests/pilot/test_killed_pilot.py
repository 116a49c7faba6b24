"""A pilot killed with SIGKILL: its job falls silent, the StalledJobAgent (real agent, short
thresholds in the config) declares it Stalled, then Failed, or Rescheduled where configured."""

from __future__ import annotations

import os
import signal
import uuid

import pytest

from core.config.schema import Config
from tests.pilot.conftest import Env, wait_for
from tests.wms.ce.helpers import live_processes_with
from wms.agents.stalled_jobs import StalledJobAgent


@pytest.mark.parametrize("reschedule", [False, True])
def test_sigkilled_pilot_leaves_its_job_stalled_then_failed(env: Env, reschedule: bool) -> None:
    tag = uuid.uuid4().hex
    job = env.submit(f'[Executable = "/bin/sh"; Arguments = "-c \'sleep 300; echo {tag}\'";'
                     ' CPUTime = 600;]')
    pilot = env.pilot("--max-failed-matches", "1")
    try:
        wait_for(lambda: env.status(job)["MinorStatus"] == "Application"
                 and live_processes_with(tag), 60, "the payload")
        wait_for(lambda: env.call("alice", "WorkloadManagement/JobMonitoring",
                                  "getJobHeartBeatData", job), 30, "a heartbeat")
        os.kill(pilot.proc.pid, signal.SIGKILL)
        assert pilot.proc.wait(10) == -signal.SIGKILL
        data = env.server.config.model_dump(by_alias=True, exclude_none=True)
        data["Operations"] = {"StalledJobs": {"StalledAfterMinutes": 0.05,  # 3 s
                                              "FailAfterMinutes": 0.05,
                                              "RescheduleStalled": reschedule}}
        agent = StalledJobAgent(Config.model_validate(data), instance="stalled", period=1)

        def after_cycle(wanted: str) -> bool:
            agent.run(once=True)
            return env.status(job)["Status"] == wanted

        wait_for(lambda: after_cycle("Stalled"), 30, "Stalled")
        assert env.status(job)["MinorStatus"] == "Job stalled: pilot not running"
        if reschedule:
            wait_for(lambda: after_cycle("Rescheduled"), 30, "Rescheduled")
            steps = [row[0] for row in env.logging(job)]
            assert steps[-2:] == ["Failed", "Rescheduled"], steps
        else:
            wait_for(lambda: after_cycle("Failed"), 30, "Failed")
            assert env.status(job) == {"Status": "Failed",
                                       "MinorStatus": "Job stalled: pilot not running",
                                       "ApplicationStatus": "Unknown"}
    finally:
        if pilot.proc.poll() is None:
            pilot.proc.kill()
        for pid in live_processes_with(tag):  # the orphaned payload of the killed pilot
            os.kill(pid, signal.SIGKILL)
