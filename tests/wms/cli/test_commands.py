"""dsub, dstat, dkill, dlogging, doutput and dinput as users run them: real subprocesses
against ``pilotwms serve`` (SQLite), outputs compared exactly.

Jobs do not run yet: statuses are moved on with the pilot's token (JobStateUpdate) and output
sandboxes are uploaded by the test itself, as the job wrapper will do.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from core.client_config import load_client_config
from core.rpc.client import Credentials, RPCClient
from wms.client import WMSClient
from wms.logic.jdl import parse_jdl

PY = sys.executable


@dataclass
class Served:
    directory: Path
    url: str
    env: dict[str, str]
    pilot_token: str

    def wms(self) -> WMSClient:
        return WMSClient(load_client_config(self.env["PILOTWMS_CLIENT_CONFIG"]))

    def pilot(self) -> RPCClient:
        cfg = load_client_config(self.env["PILOTWMS_CLIENT_CONFIG"])
        return RPCClient("WorkloadManagement/JobStateUpdate", urls=[self.url],
                         credentials=Credentials(token=self.pilot_token), ca_dir=cfg.ca_dir)


def admin(*args: str) -> str:
    proc = subprocess.run([PY, "-m", "core.cli.admin", *args], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    base = tmp_path_factory.mktemp("cmds")
    directory = base / "inst"
    admin("init", str(directory), "--port", "0")
    config = str(directory / "config.yaml")
    proc = subprocess.Popen([PY, "-m", "core.cli.admin", "serve", "--config", config,
                             "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert "pilotwms serving" in line, proc.stderr.read() if proc.stderr else line
    url = line.split(" at ")[1].split()[0]
    client = base / "client.yaml"
    client.write_text(
        f"URLs: [{url}]\nCADir: {directory}/ca/certificates\n"
        f"Cert: {directory}/users/alice/usercert.pem\n"
        f"Key: {directory}/users/alice/userkey.pem\nGroup: demo_user\nVO: demo\n")
    env = {"PILOTWMS_CLIENT_CONFIG": str(client), "X509_USER_PROXY": "",
           "BEARER_TOKEN": "", "BEARER_TOKEN_FILE": str(base / "no-token")}
    token = admin("token", "issue", "--config", config, "--user", "pilot", "-g",
                  "demo_pilot").strip().splitlines()[-1]
    try:
        yield Served(directory, url, env, token)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


@pytest.fixture(autouse=True)
def client_env(served: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in served.env.items():
        monkeypatch.setenv(key, value)


def cmd(name: str, *args: str, cwd: Path | None = None,
        stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PY, "-m", f"wms.cli.{name}", *args], capture_output=True,
                          text=True, timeout=120, cwd=cwd, input=stdin if stdin is not None
                          else "", env=dict(os.environ))


def submit(*args: str, cwd: Path | None = None, stdin: str | None = None) -> list[int]:
    proc = cmd("dsub", *args, cwd=cwd, stdin=stdin)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    return [int(x) for x in proc.stdout.strip().split(",")]


def finish(served: Served, job: int, status: str = "Done") -> None:
    with served.pilot() as pilot:
        for step, minor in (("Matched", "Assigned"), ("Running", "Application"),
                            (status, "Execution Complete")):
            pilot.call("setJobStatus", job, step, minor, "Pilot")


# -- dsub -------------------------------------------------------------------------------------


def test_dsub_prints_ids_and_verbose_jdl(served: Served) -> None:
    proc = cmd("dsub", "-v", "-N", "verbose", "--CPUTime", "600", "/bin/echo", "a", "-n")
    assert proc.returncode == 0, proc.stderr
    job = int(proc.stdout.splitlines()[-1])
    assert proc.stdout == (
        'JDL:\n[\n    Arguments = "a -n";\n    CPUTime = 600;\n    Executable = "/bin/echo";\n'
        '    JobName = "verbose";\n    OutputSandbox =\n        {\n            "std.out",\n'
        f'            "std.err"\n        }};\n]\nJobID:\n{job}\n')
    with served.wms() as wms:
        summary = wms.summary([job])[job]
        assert (summary["JobName"], summary["Status"]) == ("verbose", "Waiting")
        original = wms.jdl(job, original=True)
    assert 'Arguments = "a -n";' in original and "InputSandbox" not in original


def test_dsub_keeps_each_argument_whole(served: Served) -> None:
    """The wrapper splits Arguments like a shell: an argument with spaces stays one."""
    proc = cmd("dsub", "/bin/sh", "-c", "exit 3", "it's")
    assert proc.returncode == 0, proc.stderr
    job = int(proc.stdout.split()[-1])
    with served.wms() as wms:
        jdl = parse_jdl(wms.jdl(job, original=True))
    assert shlex.split(str(jdl["Arguments"])) == ["-c", "exit 3", "it's"]


def test_dsub_data_options(served: Served) -> None:
    proc = cmd("dsub", "--InputData", "/demo/user/a/alice/in1,/demo/user/a/alice/in2",
               "--OutputData", "out.dat", "--OutputSE", "DISK-A", "--OutputPath", "run1",
               "/bin/true")
    assert proc.returncode == 0, proc.stderr
    job = int(proc.stdout.split()[-1])
    with served.wms() as wms:
        jdl = parse_jdl(wms.jdl(job))
    assert jdl.get_list("InputData") == ["LFN:/demo/user/a/alice/in1",
                                         "LFN:/demo/user/a/alice/in2"]
    assert (jdl.get_list("OutputData"), jdl.get_list("OutputSE"), jdl["OutputPath"]) == (
        ["out.dat"], ["DISK-A"], "run1")


def test_dsub_relative_script_with_directives(served: Served, tmp_path: Path) -> None:
    script = tmp_path / "job.sh"
    script.write_text('#!/bin/sh\n#JDL CPUTime = 1234\n#JDL JobGroup = "fromscript"\necho hi\n')
    script.chmod(0o755)
    [job] = submit("--JobGroup", "fromoption", "job.sh", "x", cwd=tmp_path)
    with served.wms() as wms:
        summary = wms.summary([job])[job]
        jdl = wms.jdl(job, original=True)
    assert (summary["JobName"], summary["JobGroup"]) == ("job.sh", "fromoption")
    assert "CPUTime = 1234;" in jdl and 'Executable = "job.sh";' in jdl
    assert 'Arguments = "x";' in jdl and '"SB:' in jdl
    got = cmd("dinput", str(job), cwd=tmp_path / "..")
    assert got.returncode == 0 and got.stdout == "", got.stderr
    fetched = tmp_path.parent / str(job) / "job.sh"
    assert fetched.read_text() == script.read_text() and os.access(fetched, os.X_OK)
    again = cmd("dinput", str(job), cwd=tmp_path / "..")
    assert again.stdout == (f"Input for job {job} already retrieved, remove the input "
                            "directory to redownload\n")


def test_dsub_script_from_stdin(served: Served, tmp_path: Path) -> None:
    [job] = submit(cwd=tmp_path, stdin="#JDL Priority = 4\necho from stdin\n")
    with served.wms() as wms:
        summary = wms.summary([job])[job]
        jdl = wms.jdl(job, original=True)
    assert summary["JobName"] == "STDIN" and "Priority = 4;" in jdl
    got = cmd("dinput", "-D", str(tmp_path / "in"), str(job))
    assert got.returncode == 0, got.stderr
    [script] = list((tmp_path / "in" / str(job)).iterdir())
    assert script.read_text() == "#JDL Priority = 4\necho from stdin\n"


def test_dsub_parametric(served: Served) -> None:
    ids = submit("--Parametric", "x,y,1:10:1:2", "-N", "param", "/bin/echo", "%s")
    assert len(ids) == 5 and ids == sorted(ids)  # x, y; then 1, 3, 7 (stop exclusive)
    with served.wms() as wms:
        states = wms.status(ids)
        args = [wms.jdl(j) for j in ids]
    assert set(states.values()) == {"Waiting"}
    assert ['Arguments = "x";' in args[0], 'Arguments = "y";' in args[1]] == [True, True]
    assert ['Arguments = "%s";' % v in a for v, a in zip("137", args[2:], strict=True)] == [
        True] * 3


def test_dsub_errors(served: Served, tmp_path: Path) -> None:
    bad = cmd("dsub", "-J", '[Owner = "bob";]', "/bin/true")
    assert (bad.returncode, bad.stdout) == (2, "")
    assert bad.stderr == ('ERROR [\n    Executable = "/bin/true";\n    Owner = "bob";\n]: '
                          "Wrong Owner in JDL: Owner is 'bob', the submitter's 'alice'\n")
    missing = cmd("dsub", "nope.sh", cwd=tmp_path)
    assert (missing.returncode, missing.stderr) == (2, 'ERROR: Executable file "nope.sh" '
                                                       "not found\n")
    loop = cmd("dsub", "--Parametric", "5:1:1", "/bin/true")
    assert loop.returncode == 2
    assert loop.stderr == "ERROR: Error in parametric specification: 5:1:1:1\n"


# -- dstat ------------------------------------------------------------------------------------


def test_dstat_formats(served: Served) -> None:
    group = "dstatgrp"
    first = submit("-N", "first", "--JobGroup", group, "/bin/true")[0]
    second = submit("-N", "second-job", "--JobGroup", group, "/bin/true")[0]
    killed = submit("-N", "gone", "--JobGroup", group, "/bin/true")[0]
    assert cmd("dkill", str(killed)).returncode == 0
    fields = ["-g", group, "-F", "JobName,Status,MinorStatus,Owner"]
    pretty = cmd("dstat", *fields)
    assert pretty.returncode == 0, pretty.stderr
    assert pretty.stdout == (
        "JobID  JobName     Status   MinorStatus             Owner\n"
        + "=" * 59 + "\n"
        f"{first:>5}  first       Waiting  Pilot Agent Submission  alice\n"
        f"{second:>5}  second-job  Waiting  Pilot Agent Submission  alice\n\n")
    csv = cmd("dstat", *fields, "-S", "all", "-f", "csv")
    assert csv.stdout == (
        "JobID,JobName,Status,MinorStatus,Owner,\n"
        f"{first},first,Waiting,Pilot Agent Submission,alice,\n"
        f"{second},second-job,Waiting,Pilot Agent Submission,alice,\n"
        f"{killed},gone,Killed,Marked for termination,alice,\n\n")
    rows = [{"JobID": killed, "JobName": "gone", "Status": "Killed",
             "MinorStatus": "Marked for termination", "Owner": "alice"}]
    as_json = cmd("dstat", *fields, "-S", "killed", "-f", "json")
    assert as_json.stdout == json.dumps(rows) + "\n"
    listed = cmd("dstat", "-a", "-F", "JobName", "-f", "json", f"{killed},{first}")
    assert json.loads(listed.stdout) == [{"JobID": first, "JobName": "first"},
                                         {"JobID": killed, "JobName": "gone"}]
    hidden = cmd("dstat", "-F", "JobName", "-f", "json", str(killed))
    assert hidden.stdout == "[]\n"  # the status filter applies to listed jobs too
    default = json.loads(cmd("dstat", "-f", "json", "-g", group).stdout)
    assert list(default[0]) == ["JobID", "Owner", "JobName", "OwnerGroup", "JobGroup", "Site",
                                "Status", "MinorStatus", "SubmissionTime"]
    assert default[0]["SubmissionTime"][:2] == "20" and len(default[0]["SubmissionTime"]) == 19
    empty = cmd("dstat", "-g", "no-such-group")
    assert (empty.returncode, empty.stdout) == (0, "No output\n")
    old = cmd("dstat", "-g", group, "-D", "-1")  # jobs updated since tomorrow: none
    assert old.stdout == "No output\n"
    bad = cmd("dstat", "-f", "xml")
    assert bad.returncode == 2
    assert bad.stderr == "ERROR: Output format not supported: xml not in pretty, csv, json\n"


# -- dkill, dlogging --------------------------------------------------------------------------


def test_dkill(served: Served) -> None:
    one, two = submit("/bin/true")[0], submit("/bin/true")[0]
    quiet = cmd("dkill", str(one))
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "", "")
    again = cmd("dkill", str(one))
    assert again.returncode == 2 and again.stdout == ""
    assert again.stderr == f"ERROR: Some jobs failed killing: Job {one} is already Killed\n"
    verbose = cmd("dkill", "-v", str(two))
    assert verbose.stdout == f"killed job {two}\n"
    deleted = cmd("dkill", "-D", "-v", f"{one},{two}")
    assert deleted.stdout == f"deleted job {one}\ndeleted job {two}\n"
    three = submit("/bin/true")[0]
    everything = cmd("dkill", "-a", "-v")
    assert everything.returncode == 0, everything.stderr
    assert f"killed job {three}\n" in everything.stdout
    with served.wms() as wms:
        assert wms.select(status=["Waiting"]) == []


def test_dlogging(served: Served) -> None:
    [job] = submit("/bin/true")
    proc = cmd("dlogging", str(job))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == ("Status    MinorStatus             ApplicationStatus  Time"
                        "                 Source")
    assert lines[1] == "=" * 86
    assert lines[-1] == ""  # DIRAC's dlogging logs the table, which ends with a newline
    assert [line.split("  ")[0] for line in lines[2:-1]] == ["Received", "Checking",
                                                             "Waiting"]
    assert lines[2].endswith("  JobManager") and lines[4].endswith("  Optimizer")
    csv = cmd("dlogging", "-f", "csv", str(job), "999999")
    assert csv.returncode == 2 and csv.stderr == "ERROR: Job 999999 not found\n"
    assert csv.stdout.splitlines()[0] == "Status,MinorStatus,ApplicationStatus,Time,Source,"
    assert csv.stdout.splitlines()[1].startswith("Received,Job accepted,Unknown,20")


# -- doutput ----------------------------------------------------------------------------------


def test_doutput(served: Served, tmp_path: Path) -> None:
    group = "outgrp"
    done, failed, waiting = (submit("--JobGroup", group, "/bin/true")[0] for _ in range(3))
    finish(served, done)
    finish(served, failed, "Failed")
    with served.wms() as wms:
        for job in (done, failed):
            produced = tmp_path / "made" / str(job)
            produced.mkdir(parents=True)
            (produced / "std.out").write_text(f"output of {job}\n")
            (produced / "std.err").write_text("")
            url = wms.upload_sandbox([produced / "std.out", produced / "std.err"])
            wms.assign_sandboxes([job], url, "Output")
    work = tmp_path / "work"
    work.mkdir()
    first = cmd("doutput", str(done), cwd=work)
    assert (first.returncode, first.stdout, first.stderr) == (0, "", "")
    assert (work / str(done) / "std.out").read_text() == f"output of {done}\n"
    second = cmd("doutput", str(done), cwd=work)
    assert second.stdout == (f"Output for job {done} already retrieved, remove the output "
                             "directory to redownload\n")
    by_group = cmd("doutput", "-g", group, "-D", str(tmp_path / "grp"), "-v")
    assert by_group.returncode == 0, by_group.stderr
    assert by_group.stdout == (f"{done}: OutputSandbox {tmp_path / 'grp' / str(done)}\n"
                               f"{failed}: OutputSandbox {tmp_path / 'grp' / str(failed)}\n")
    assert sorted(p.name for p in (tmp_path / "grp").iterdir()) == sorted(
        [str(done), str(failed)])
    nothing = cmd("doutput", str(waiting), cwd=work)
    assert nothing.returncode == 2
    assert nothing.stderr.startswith(f"ERROR: No Output sandbox found for job {waiting}.")
    assert not (work / str(waiting)).exists()  # a retry is not skipped
    data = cmd("doutput", "--Data", str(done), cwd=work / str(done))
    assert data.returncode == 2 and data.stderr == f"ERROR: No output data found for job {done}\n"
