"""The DIRAC-compatible ``Dirac``/``Job`` facade: JDLs it writes, and DIRAC's result shapes
against real services (both databases)."""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.credentials import Creds
from tests.support.servers import ThreadedServer
from tests.wms.test_client import finish, make_client, wms_server  # noqa: F401

from wms.client import WMSClient
from wms.dirac_api import S_ERROR, S_OK, BadJobParameterError, Dirac, Job
from wms.logic.jdl import parse_jdl


@pytest.fixture
def dirac(wms_server: ThreadedServer, creds: Creds) -> Iterator[Dirac]:  # noqa: F811
    with make_client(wms_server, creds) as client:
        yield Dirac(client=client)


@pytest.fixture
def pilot(wms_server: ThreadedServer, creds: Creds) -> Iterator[WMSClient]:  # noqa: F811
    with make_client(wms_server, creds, "pilot") as client:
        yield client


def hello_job(name: str = "hello") -> Job:
    job = Job()
    job.setName(name)
    job.setExecutable("/bin/echo", arguments="hello world")
    job.setCPUTime(600)
    return job


# -- JDL writing (no server) ------------------------------------------------------------------


def test_results() -> None:
    assert S_OK(3) == {"OK": True, "Value": 3}
    assert S_OK() == {"OK": True, "Value": None}
    assert S_ERROR("bad") == {"OK": False, "Message": "bad", "Errno": 0}
    assert S_ERROR(22, "bad") == {"OK": False, "Message": "bad", "Errno": 22}


def test_simple_job_has_a_real_executable() -> None:
    job = hello_job()
    job.setDestination("LCG.CERN.cern, ANY")
    job.setBannedSites(["A.b.c", "D.e.f"])
    job.setTag("GPU")
    job.setPriority(3)
    job.setOutputSandbox(["out.txt"])
    job.setOutputData(["a.root"], outputSE="SE-X", outputPath="/sub/dir")
    job.setInputData(["/vo/f1", "LFN:/vo/f2"])
    job.setExecutionEnv({"MODE": "a b"})
    job.setPlatform("ANY")
    job.setLogLevel("debug")
    job.setJobGroup("grp")
    job.setType("Test")
    jdl = parse_jdl(job._toJDL())
    assert dict(jdl) == {
        "Executable": "/bin/echo", "Arguments": "hello world", "JobName": "hello",
        "CPUTime": 600, "JobType": "Test", "Priority": 3, "LogLevel": "debug",
        "StdOutput": "std.out", "StdError": "std.err", "Site": "LCG.CERN.cern",
        "BannedSites": ["A.b.c", "D.e.f"], "Tags": "GPU",
        "OutputSandbox": ["out.txt", "std.err", "std.out"], "OutputData": "a.root",
        "OutputSE": "SE-X", "OutputPath": "sub/dir",
        "InputData": ["LFN:/vo/f1", "LFN:/vo/f2"], "ExecutionEnvironment": "MODE=a%20b",
        "JobGroup": "grp"}
    assert job.errorDict == {}


def test_local_script_and_steps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("run.sh").write_text("#!/bin/sh\necho $1\n")
    one = Job()
    one.setExecutable("run.sh", arguments="x")
    jdl = parse_jdl(one._toJDL())
    assert (jdl["Executable"], jdl["Arguments"], jdl["InputSandbox"]) == ("run.sh", "x",
                                                                         ["run.sh"])
    two = Job()
    two.setExecutable("run.sh", arguments="first")
    two.setExecutable("/bin/echo", arguments="second", logFile="echo.log")
    jdl = parse_jdl(two._toJDL())
    assert jdl["Executable"] == "/bin/sh" and jdl["InputSandbox"] == ["run.sh"]
    command = shlex.split(str(jdl["Arguments"]))
    assert command == ["-c", "./run.sh first && ( /bin/echo second ) > echo.log 2>&1"]
    assert jdl["OutputSandbox"] == ["echo.log", "std.err", "std.out"]


def test_parameter_sequences() -> None:
    job = hello_job()
    job.setExecutable("/bin/echo", arguments="%(value)s")
    job.setInputData(["/vo/base"])
    assert job.setParameterSequence("value", ["a", "b"])["OK"]
    assert job.setParameterSequence("InputData", ["/vo/1", "/vo/2"])["OK"]
    bad = job.setParameterSequence("other", [1, 2, 3])
    assert bad["OK"] is False and "different length" in bad["Message"]
    jdl = parse_jdl(job._toJDL())
    assert jdl["Parameters"] == 2 and jdl["Parameters.value"] == ["a", "b"]
    assert jdl["InputData"] == "%(InputData)s"
    assert jdl["Parameters.InputData"] == [["LFN:/vo/base", "/vo/1"],
                                           ["LFN:/vo/base", "/vo/2"]]


def test_processors_follow_dirac_rules() -> None:
    exact = Job()
    exact.setNumberOfProcessors(4)
    assert (exact.attributes["NumberOfProcessors"], exact.attributes["MaxNumberOfProcessors"]
            ) == (4, 4)
    ranged = Job()
    ranged.setNumberOfProcessors(maxNumberOfProcessors=8)
    assert (ranged.attributes["MinNumberOfProcessors"],
            ranged.attributes["MaxNumberOfProcessors"]) == (1, 8)
    same = Job()
    same.setNumberOfProcessors(minNumberOfProcessors=2, maxNumberOfProcessors=2)
    assert same.attributes["NumberOfProcessors"] == 2
    with pytest.raises(BadJobParameterError):
        Job().setNumberOfProcessors(3, maxNumberOfProcessors=4)
    with pytest.raises(BadJobParameterError):
        Job().setNumberOfProcessors(minNumberOfProcessors=6, maxNumberOfProcessors=4)


def test_setter_errors_stop_the_submission() -> None:
    job = hello_job()
    assert job.setPriority("high")["OK"] is False
    assert job.setCPUTime("lots")["OK"] is False
    assert job.setLogLevel("LOUD")["OK"] is False
    result = Dirac(client=None).submitJob(job)  # refused before any call
    assert result["OK"] is False
    assert "setPriority: Expected int for priority" in result["Message"]
    assert Dirac().submitJob(Job())["OK"] is False  # no executable
    assert Dirac().submitJob("[X = 1;]", mode="local")["OK"] is False


# -- against the services ---------------------------------------------------------------------


def test_submit_and_monitor(dirac: Dirac) -> None:
    result = dirac.submitJob(hello_job())
    assert result["OK"] is True, result
    job = result["Value"]
    assert isinstance(job, int) and result["JobID"] == job
    status = dirac.getJobStatus(job)
    assert status == {"OK": True, "Value": {job: {
        "Status": "Waiting", "MinorStatus": "Pilot Agent Submission",
        "ApplicationStatus": "Unknown", "Site": "ANY"}}}
    summary = dirac.getJobSummary([job, 999999])["Value"]
    assert summary[job]["Owner"] == "alice" and summary[job]["Status"] == "Waiting"
    assert summary[999999] == {key: "None" for key in summary[job]}
    assert dirac.getJobAttributes(str(job))["Value"]["JobName"] == "hello"
    assert dirac.getJobAttributes([job])["OK"] is False  # one job only, as DIRAC
    assert dirac.getJobParameters(job) == {"OK": True, "Value": {}}
    logging = dirac.getJobLoggingInfo(job)["Value"]
    assert [row[0] for row in logging] == ["Received", "Checking", "Waiting"]
    assert isinstance(logging[0], tuple) and logging[0][4] == "JobManager"
    assert dirac.peekJob(job) == {"OK": True, "Value": "Not available yet."}
    jdl = dirac.getJobJDL(job, original=True)["Value"]
    assert jdl["Executable"] == "/bin/echo" and jdl["OutputSandbox"] == ["std.err", "std.out"]
    assert dirac.getJobJDL(job)["Value"]["JobID"] == str(job)
    assert dirac.getJobInputData(job) == {"OK": True, "Value": {job: []}}
    assert dirac.selectJobs(owner="alice") == {"OK": True, "Value": [str(job)]}
    assert dirac.selectJobs(status="Done") == S_ERROR("No jobs selected")
    assert dirac.selectJobs(status="Done", printErrors=False) == {"OK": True, "Value": []}
    assert dirac.selectJobs(jobGroup="none", date="2000-01-01", printErrors=False)["Value"] \
        == []


def test_errors_have_dirac_shape(dirac: Dirac) -> None:
    missing = dirac.getJobLoggingInfo(999999)
    assert missing["OK"] is False and missing["Errno"] == 2
    assert missing["Message"].endswith(": Job 999999 not found)")
    assert dirac.getJobParameters(999999) == S_ERROR("Failed to get job parameters for 999999")
    bad = dirac.submitJob("[Executable = ")
    assert bad["OK"] is False and bad["Errno"] == 1501
    assert dirac.getJobStatus("x")["OK"] is False


def test_actions_filter_like_dirac(dirac: Dirac, pilot: WMSClient) -> None:
    first, second = (dirac.submitJob(hello_job())["Value"] for _ in range(2))
    assert dirac.killJob([first, 999999]) == {"OK": True, "Value": [first]}
    assert dirac.getJobStatus(first)["Value"][first]["Status"] == "Killed"
    assert dirac.deleteJob(first) == {"OK": True, "Value": [first]}
    assert dirac.killJob(first) == {"OK": True, "Value": []}  # Deleted: nothing to do
    assert dirac.rescheduleJob(second) == {"OK": True, "Value": [second]}
    finish(pilot, dirac.submitJob(hello_job())["Value"], "Done")
    third = dirac.selectJobs(status="Done")["Value"][0]
    assert dirac.rescheduleJob(third) == {"OK": True, "Value": []}  # Done is not reschedulable


def test_parametric_job(dirac: Dirac) -> None:
    job = hello_job()
    job.setParameterSequence("word", ["a", "b", "c"])
    job.setExecutable("/bin/echo", arguments="%(word)s")
    result = dirac.submitJob(job)
    assert result["OK"] is True, result
    ids = result["Value"]
    assert isinstance(ids, list) and len(ids) == 3 and result["JobID"] == ids
    statuses = dirac.getJobStatus(ids)["Value"]
    assert {v["Status"] for v in statuses.values()} == {"Waiting"}
    second = dirac.getJobJDL(ids[1])["Value"]
    assert second["Arguments"].endswith("b'") and second["word"] == "b"


def test_sandboxes(dirac: Dirac, pilot: WMSClient, tmp_path: Path,
                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("run.sh").write_text("#!/bin/sh\necho ok\n")
    job = Job()
    job.setExecutable("run.sh")
    job.setInputSandbox(["*.sh"])
    job_id = dirac.submitJob(job)["Value"]
    got = dirac.getInputSandbox(job_id, outputDir=str(tmp_path / "in"))
    assert got["OK"] is True and got["Value"] == [len("#!/bin/sh\necho ok\n")]
    assert (tmp_path / "in" / f"InputSandbox{job_id}" / "run.sh").is_file()
    again = dirac.getInputSandbox(job_id, outputDir=str(tmp_path / "in"))
    assert again["OK"] is False and "already exists" in again["Message"]

    none = dirac.getOutputSandbox(job_id)
    assert none["OK"] is False and "No Output sandbox found" in none["Message"]
    assert not (tmp_path / str(job_id)).exists()  # no empty directory left behind
    finish(pilot, job_id)
    Path("std.out").write_text("ok\n")
    client = dirac.wms
    client.assign_sandboxes([job_id], client.upload_sandbox(["std.out"]), "Output")
    out = dirac.getOutputSandbox(job_id)
    assert out == {"OK": True, "Value": [3]}
    assert (tmp_path / str(job_id) / "std.out").read_text() == "ok\n"
    assert dirac.getOutputSandbox(job_id)["OK"] is False  # cwd/<id> exists: DIRAC refuses
    flat = dirac.getOutputSandbox(job_id, outputDir=str(tmp_path / "flat"), noJobDir=True)
    assert flat["OK"] and (tmp_path / "flat" / "std.out").is_file()
