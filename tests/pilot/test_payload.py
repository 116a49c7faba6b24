"""What a matched job runs (pilot.payload): the JDL's command, the plan of a DIRAC workflow
and its refusals, and the application statuses relayed from the workflow runner."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest

from pilot import payload
from pilot.payload import (
    INVALID_WORKFLOW,
    UNSUPPORTED_MODULE,
    WORKFLOW_STATUS,
    PayloadRefusedError,
    StatusReader,
)
from tests.pilot.test_dirac_workflow import workflow

JOBEXEC = {"Executable": "dirac-jobexec", "Arguments": "jobDescription.xml -o LogLevel=info"}


def test_a_shipped_executable_is_made_executable_and_named_by_path(tmp_path: Path) -> None:
    script = tmp_path / "run.sh"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o644)
    cmd = payload.command({"Executable": "run.sh", "Arguments": "-n 'two words'"}, str(tmp_path))
    assert cmd == [str(script), "-n", "two words"]
    assert script.stat().st_mode & stat.S_IXUSR
    # not in the sandbox: left to the node's PATH, as written
    assert payload.command({"Executable": "ls"}, str(tmp_path)) == ["ls"]


def test_script_steps_run_with_the_pilots_runner(tmp_path: Path) -> None:
    (tmp_path / "jobDescription.xml").write_text(workflow(("echo", "hi", "echo.log")))
    assert payload.workflow_plan({"Executable": "/bin/echo"}, str(tmp_path)) is None
    args, unsupported = payload.workflow_plan(JOBEXEC, str(tmp_path)) or ([], [])
    assert args == ["jobDescription.xml", "-o", "LogLevel=info"] and unsupported == []
    cmd, runner = payload.payload_command(JOBEXEC, str(tmp_path), print)
    assert runner is True and cmd[0] == sys.executable
    assert cmd[-5:] == ["--status-file", os.path.join(str(tmp_path), WORKFLOW_STATUS),
                        "jobDescription.xml", "-o", "LogLevel=info"]


def test_other_modules_need_the_nodes_dirac_jobexec(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "jobDescription.xml").write_text(
        workflow(("gaudirun", "", ""), module="GaudiApplication", body="import os"))
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    with pytest.raises(PayloadRefusedError) as refused:
        payload.payload_command(JOBEXEC, str(tmp_path), print)
    assert refused.value.minor == UNSUPPORTED_MODULE
    assert "'GaudiApplication' (step RunScriptStep1)" in str(refused.value)

    real = tmp_path / "bin" / "dirac-jobexec"
    real.parent.mkdir()
    real.write_text("#!/bin/sh\n")
    real.chmod(0o755)
    said: list[str] = []
    cmd, runner = payload.payload_command(JOBEXEC, str(tmp_path), said.append)
    assert (cmd, runner) == ([str(real), "jobDescription.xml", "-o", "LogLevel=info"], False)
    assert said == [f"workflow modules ['GaudiApplication']: running {real}"]


@pytest.mark.parametrize(("arguments", "content", "reason"), [
    ("../outside.xml", None, "not in the job directory"),
    ("missing.xml", None, "No such file"),
    ("jobDescription.xml", "<Workflow><name>x</name>", "jobDescription"),
])
def test_refused_workflow_descriptions(tmp_path: Path, arguments: str, content: str | None,
                                       reason: str) -> None:
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    (tmp_path / "outside.xml").write_text(workflow(("echo", "", "")))
    if content is not None:
        (job_dir / "jobDescription.xml").write_text(content)
    with pytest.raises(PayloadRefusedError) as refused:
        payload.workflow_plan({"Executable": "dirac-jobexec", "Arguments": arguments},
                              str(job_dir))
    assert refused.value.minor == INVALID_WORKFLOW
    message = str(refused.value)
    assert message.startswith(f"{INVALID_WORKFLOW}: ")
    if content is None:
        assert reason in message


def test_statuses_are_read_once_in_order_and_partial_lines_wait(tmp_path: Path) -> None:
    reader = StatusReader(str(tmp_path / WORKFLOW_STATUS))
    assert reader.read() == []  # no file yet
    with open(reader.path, "ab") as out:
        out.write(b'{"ApplicationStatus": "one"}\nnot json\n{"Other": 1}\n'
                  b'{"ApplicationStatus": ""}\n["a list"]\n{"ApplicationStatus": "tw')
    assert reader.read() == ["one"]
    assert reader.read() == []
    with open(reader.path, "ab") as out:
        out.write(b'o"}\n{"ApplicationStatus": "three"}\n')
    assert reader.read() == ["two", "three"]
    assert reader.read() == []
