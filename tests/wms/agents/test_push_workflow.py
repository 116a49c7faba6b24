"""DIRAC ``Job`` API workflows on a push-mode site (real server, real single-node Slurm): the
pilot's workflow runner travels with the batch wrapper, its application statuses come back with
the job directory, a refused workflow never reaches the batch system."""

from __future__ import annotations

import pytest
from tests.pilot.conftest import Env
from tests.pilot.test_dirac_workflow import BOMB, workflow
from tests.pilot.test_workflow_jobs import submit_workflow
from tests.wms.agents.test_push_mode import (  # noqa: F401 - fixtures
    FINAL,
    cycle_until,
    env,
    push_config,
    push_rows,
    statuses,
)

from core.config.schema import Config
from wms.agents.push_jobs import PushJobAgent


@pytest.mark.parametrize("push_config", ["slurm"], indirect=True)
def test_push_mode_runs_dirac_workflows(env: Env, push_config: Config) -> None:  # noqa: F811
    ok = submit_workflow(env, workflow(("/bin/echo", "pushed", "one.log"),
                                       ("/bin/sh", "-c 'exit 4'", "two.log")))
    bomb = submit_workflow(env, BOMB)
    agent = PushJobAgent(push_config, instance="push-wf", period=1)
    agent.beat()
    agent.run_once()
    assert len(agent.submitted) == 1  # the refused workflow never reaches Slurm
    ended = cycle_until([agent], lambda: all(
        s["Status"] in FINAL for s in statuses(env, [ok, bomb]).values()))
    assert ended, statuses(env, [ok, bomb])
    assert env.status(ok) == {"Status": "Failed",
                              "MinorStatus": "Application Finished With Errors",
                              "ApplicationStatus": "'sh' Exited With Status 4"}
    apps = [row[2] for row in env.logging(ok)]
    assert [a for a in dict.fromkeys(apps) if a != "Unknown"] == [
        "Executing RunScriptStep1", "echo successful", "Executing RunScriptStep2",
        "'sh' Exited With Status 4"]
    state = env.status(bomb)
    assert (state["Status"], state["MinorStatus"]) == ("Failed", "Invalid workflow description")
    assert push_rows(push_config) == []
    agent.stop()
    agent.run(once=True)
