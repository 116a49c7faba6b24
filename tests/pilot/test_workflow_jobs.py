"""DIRAC workflow jobs (``Executable = "dirac-jobexec"``) run by the real pilot zipapp under the
system Python, without the DIRAC client: the workflow's Script steps, the relayed application
statuses, a kill reaching the steps, a VO module handed to a real ``dirac-jobexec`` found on the
node's PATH (a stand-in script here), and refusals. The same jobs made by DIRAC's own ``Job``
API are in tests/interop/test_dirac_jobs.py."""

from __future__ import annotations

import os
from pathlib import Path

from tests.pilot.conftest import Env, wait_for
from tests.pilot.test_dirac_workflow import BOMB, param, workflow
from tests.pilot.test_pilot import final, sandbox_bytes, upload_as_alice

JOBEXEC = 'Executable = "dirac-jobexec"; Arguments = "jobDescription.xml -o LogLevel=INFO";'


def submit_workflow(env: Env, xml: str, extra: str = "", files: dict[str, bytes] | None = None
                    ) -> int:
    sb = upload_as_alice(env, sandbox_bytes({"jobDescription.xml": xml.encode(),
                                             **(files or {})}))
    return env.submit(f'[{JOBEXEC} InputSandbox = {{"{sb}"}}; CPUTime = 600; {extra}'
                      ' OutputSandbox = {"std.out", "std.err", "*.log"};]')


def test_workflow_steps_statuses_and_refusals(env: Env) -> None:
    ok = submit_workflow(env, workflow(("/bin/echo", "first", "one.log"),
                                       ("run.sh", "@{word}", "two.log"),
                                       wf_params=param("word", "second")),
                         files={"run.sh": b"#!/bin/sh\necho \"$1 from $DIRACJOBID\"\n"})
    module = submit_workflow(env, workflow(("/bin/true", "", "l"), module="LHCbApp",
                                           body="from LHCbDIRAC.Workflow import LHCbApp"))
    bomb = submit_workflow(env, BOMB)
    pilot = env.pilot("--max-failed-matches", "2")
    assert pilot.wait(120) == 0, pilot.log()
    state = final(env, ok)
    assert state == {"Status": "Done", "MinorStatus": "Execution Complete",
                     "ApplicationStatus": "run.sh successful"}, pilot.log()
    apps = [row[2] for row in env.logging(ok)]
    assert [a for a in dict.fromkeys(apps) if a != "Unknown"] == [
        "Executing RunScriptStep1", "echo successful", "Executing RunScriptStep2",
        "run.sh successful"]
    state = final(env, module)
    assert (state["Status"], state["MinorStatus"]) == ("Failed", "Workflow module not supported")
    assert "'LHCbApp' (step RunScriptStep1)" in state["ApplicationStatus"]
    state = final(env, bomb)
    assert (state["Status"], state["MinorStatus"]) == ("Failed", "Invalid workflow description")
    params = env.call("alice", "WorkloadManagement/JobMonitoring", "getJobParameters", bomb)
    params = params.get(str(bomb), params)
    assert "document type declarations are refused" in params["ApplicationError"]


def test_kill_reaches_the_steps_and_real_jobexec_runs_vo_modules(env: Env, tmp_path: Path
                                                                 ) -> None:
    fake = tmp_path / "bin" / "dirac-jobexec"
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\necho "real dirac-jobexec $*"\n')
    fake.chmod(0o755)
    vo = submit_workflow(env, workflow(("/bin/true", "", "l"), module="GaudiApplication",
                                       body="from LHCbDIRAC import GaudiApplication"))
    slow = submit_workflow(env, workflow(("/bin/sh", "-c 'echo $$ > step.pid; sleep 300'",
                                          "s.log")))
    os.environ["PATH"] = f"{fake.parent}:{os.environ['PATH']}"
    try:
        pilot = env.pilot("--max-failed-matches", "2", "--keep-jobdirs")
    finally:
        os.environ["PATH"] = os.environ["PATH"].split(":", 1)[1]
    wait_for(lambda: env.status(slow)["ApplicationStatus"] == "Executing RunScriptStep1",
             90, "the slow step")
    pid_file = pilot.workdir / str(slow) / "step.pid"
    wait_for(pid_file.exists, 30, "the step's pid")
    step = int(pid_file.read_text())
    env.call("alice", "WorkloadManagement/JobManager", "killJob", [slow])
    wait_for(lambda: not Path(f"/proc/{step}").exists()
             or Path(f"/proc/{step}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z",
             30, "the step to die")
    assert pilot.wait(120) == 0, pilot.log()
    assert final(env, slow)["Status"] == "Killed"
    state = final(env, vo)
    assert (state["Status"], state["MinorStatus"]) == ("Done", "Execution Complete"), \
        pilot.log()
    out = (pilot.workdir / str(vo) / "std.out").read_text()
    assert out == "real dirac-jobexec jobDescription.xml -o LogLevel=INFO\n"
