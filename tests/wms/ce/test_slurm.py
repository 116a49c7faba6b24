"""Slurm CE against a real single-node Slurm (tests/support/slurm.py), locally and over SSH."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.slurm import SlurmCluster
from tests.support.sshd import SSHServer
from tests.wms.ce.helpers import live_processes_with, wait_file, wait_final, wait_status

from core.exceptions import ConfigError
from wms.ce.base import ComputingElement, PilotStatus
from wms.ce.slurm import SlurmCommands, SlurmComputingElement, slurm_status
from wms.ce.ssh import SSHComputingElement


@pytest.fixture(params=["local", "ssh"])
def ce(request: pytest.FixtureRequest,
       slurm_cluster: SlurmCluster) -> Iterator[ComputingElement]:
    work = str(slurm_cluster.base / "jobs" / uuid.uuid4().hex[:8])
    settings = {"WorkDir": work, "Environment": slurm_cluster.env, "SacctCompletion": True}
    slurm_ce: ComputingElement
    if request.param == "local":
        slurm_ce = SlurmComputingElement("slurm-ce", settings)
    else:
        server: SSHServer = request.getfixturevalue("sshd_server")
        slurm_ce = SSHComputingElement("ssh-slurm-ce",
                                       {**server.settings, **settings, "BatchSystem": "Slurm"})
    with slurm_ce:
        yield slurm_ce


def test_submit_runs_to_done_with_output(ce: ComputingElement) -> None:
    marker = f"/tmp/pw-slurm-marker-{uuid.uuid4().hex}"
    script = (f"#!/bin/sh\necho on $SLURM_JOB_PARTITION $GREETING\necho err >&2\n"
              f"touch {marker}\nsleep 1\n")
    refs = ce.submit(script, 2, queue="debug", wall_seconds=120, memory_mb=100,
                     env={"GREETING": "a,b c"})
    assert len(set(refs)) == 2 and all(r.startswith("slurm://") for r in refs)
    assert all(s in (PilotStatus.WAITING, PilotStatus.RUNNING, PilotStatus.DONE)
               for s in ce.status(refs).values())
    assert wait_final(ce, refs) == {ref: PilotStatus.DONE for ref in refs}
    assert ce.output(refs[0]) == ("on debug a,b c\n", "err\n")
    assert Path(marker).exists()
    Path(marker).unlink()
    ce.cleanup(refs)
    assert ce.output(refs[0]) == ("", "")


def test_failing_script_is_failed(ce: ComputingElement) -> None:
    [ref] = ce.submit("#!/bin/sh\necho broken >&2\nexit 3\n", queue="short")
    assert wait_final(ce, [ref]) == {ref: PilotStatus.FAILED}
    assert ce.output(ref)[1] == "broken\n"


def test_kill_is_aborted_and_processes_are_gone(ce: ComputingElement) -> None:
    tag = uuid.uuid4().hex
    ready = f"/tmp/pw-slurm-ready-{tag}"
    [ref] = ce.submit(f"#!/bin/sh\nsleep 300 &\ntouch {ready}\nsh -c 'sleep 301; echo {tag}'\n",
                      queue="debug")
    assert wait_status(ce, ref, PilotStatus.RUNNING) == PilotStatus.RUNNING
    assert wait_file(Path(ready))
    assert live_processes_with(tag)
    ce.kill([ref])
    assert wait_final(ce, [ref]) == {ref: PilotStatus.ABORTED}
    # slurmd signals the job's processes (proctrack/linuxproc), then SIGKILL after KillWait
    deadline = time.monotonic() + 15
    while live_processes_with(tag) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert live_processes_with(tag) == []
    Path(ready).unlink()
    ce.kill([ref])  # a finished job: harmless


def test_unknown_refs_are_deleted(ce: ComputingElement) -> None:
    host = ce.slurm.host if isinstance(ce, SSHComputingElement) and ce.slurm else getattr(
        ce, "host", "")
    refs = [f"slurm://{host}/999999", f"slurm://{host}/abc", "slurm://other-host/1",
            "local://x/1-2"]
    assert ce.status(refs) == {ref: PilotStatus.DELETED for ref in refs}


def test_finished_jobs_forgotten_by_the_controller_come_from_sacct(
        slurm_cluster: SlurmCluster) -> None:
    """``sacct -c`` (jobcomp/filetxt) answers for jobs squeue no longer knows."""
    settings = {"WorkDir": str(slurm_cluster.base / "jobs" / "sacct"),
                "Environment": slurm_cluster.env, "SacctCompletion": True}
    with SlurmComputingElement("slurm-ce", settings) as ce:
        [ref] = ce.submit("#!/bin/sh\ntrue\n", queue="debug")
        assert wait_final(ce, [ref]) == {ref: PilotStatus.DONE}
        job = ref.rsplit("/", 1)[1]
        res = ce.runner.run(ce.commands.sacct([job]), check=True)
        assert res.stdout.strip() == f"{job}|COMPLETED"


def test_command_lines_and_state_map() -> None:
    cmd = SlurmCommands("/w", account="vo")
    assert cmd.sbatch(queue="debug", job_name="p", processors=4, wall_seconds=90,
                      memory_mb=2000) == [
        "sbatch", "--parsable", "--partition=debug", "--job-name=p", "--ntasks=1",
        "--cpus-per-task=4", "--output=/w/%j.out", "--error=/w/%j.err", "--chdir=/w",
        "--time=2", "--mem=2000M", "--account=vo"]
    assert cmd.squeue(["1", "2"]) == ["squeue", "-h", "-t", "all", "-o", "%i %T", "-j", "1,2"]
    assert [slurm_status(s) for s in ("CONFIGURING", "COMPLETING", "OUT_OF_MEMORY",
                                      "NODE_FAIL", "BOOT_FAIL", "CANCELLED by 0", "")] == [
        "Waiting", "Running", "Failed", "Failed", "Failed", "Aborted", "Deleted"]
    with pytest.raises(ConfigError, match="WorkDir must be an absolute path"):
        SlurmComputingElement("s", {"WorkDir": "relative"})
    with pytest.raises(ConfigError, match="SacctCompletion must be true or false"):
        SlurmComputingElement("s", {"WorkDir": "/w", "SacctCompletion": "yes"})
