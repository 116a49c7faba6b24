"""The pilot end to end: real server, real subprocesses, the zipapp under the system Python."""

from __future__ import annotations

import bz2
import hashlib
import io
import json
import os
import signal
import subprocess
import tarfile
import zipfile
from pathlib import Path

import requests

from tests.pilot.conftest import SYSTEM_PYTHON, Env, wait_for


def sandbox_bytes(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:bz2") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def upload_as_alice(env: Env, data: bytes) -> str:
    md5 = hashlib.md5(data).hexdigest()  # noqa: S324 - DIRAC's key
    reply = requests.post(
        f"{env.server.url}/WorkloadManagement/SandboxStore",
        data={"method": "streamFromClient", "args": json.dumps(
            [[f"{md5}.tar.bz2", {}], "", len(data),
             {"__dCls": "b64", "obj": __import__("base64").b64encode(data).decode()}])},
        cert=env.alice(), verify=str(env.creds.ca_dir), timeout=60)
    assert reply.json()["OK"], reply.text
    return str(reply.json()["Value"])


def final(env: Env, job: int, timeout: float = 60.0) -> dict[str, str]:
    return wait_for(lambda: (s := env.status(job))["Status"] in ("Done", "Failed", "Killed")
                    and s, timeout, f"job {job} to end")


def test_zipapp_is_one_stdlib_file(pyz: Path) -> None:
    with zipfile.ZipFile(pyz) as archive:
        names = sorted(archive.namelist())
    assert "__main__.py" in names and all(n == "__main__.py" or n.startswith("pilot/")
                                          for n in names)
    done = subprocess.run([SYSTEM_PYTHON, "-S", "-I", str(pyz), "--help"],  # noqa: S603
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0 and "--token-file" in done.stdout, done.stderr
    probe = ("import sys; sys.path.insert(0, sys.argv[1]); import pilot.agent, pilot.wrapper;"
             "print(sorted(m for m in sys.modules if m.split('.')[0] in "
             "('requests', 'core', 'wms', 'tornado', 'sqlalchemy')))")
    done = subprocess.run([SYSTEM_PYTHON, "-S", "-I", "-c", probe, str(pyz)],  # noqa: S603
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.stdout.strip() == "[]", done.stderr


def test_echo_job_is_done_with_its_sandboxes(env: Env) -> None:
    sb = upload_as_alice(env, sandbox_bytes({"data.txt": b"from the input sandbox\n"}))
    job = env.submit(f'[Executable = "/bin/echo"; Arguments = "hello \\"pilot world\\"";'
                     f' InputSandbox = {{"{sb}"}}; CPUTime = 600;'
                     f' OutputSandbox = {{"std.out", "std.err", "data.txt", "missing.txt"}};]')
    # a dead URL first: the pilot fails over to the live one
    pilot = env.pilot("--max-failed-matches", "1",
                      url=f"https://127.0.0.1:9,{env.server.url}")
    assert pilot.wait() == 0, pilot.log()
    state = final(env, job)
    assert state["Status"] == "Done", (state, pilot.log())
    assert state["MinorStatus"] == "Execution Complete"
    assert state["ApplicationStatus"] == "Exit code 0"
    steps = [(row[0], row[1]) for row in env.logging(job)]
    expected = [("Matched", "Assigned"), ("Running", "Job Initialization"),
                ("Running", "Downloading InputSandbox"), ("Running", "Application"),
                ("Running", "Application Finished Successfully"),
                ("Running", "Uploading Output Sandbox"), ("Running", "Output Sandbox Uploaded"),
                ("Done", "Execution Complete")]
    # the application status change logs one more ("Running", "Application") row
    assert list(dict.fromkeys(s for s in steps if s in expected)) == expected, steps
    assert "Exit code 0" in [row[2] for row in env.logging(job)]
    # uploaded with the job's token, the output sandbox belongs to the job's owner
    urls = env.call("alice", "WorkloadManagement/SandboxStore", "getSandboxesAssignedToEntity",
                    f"Job:{job}")["Output"]
    assert len(urls) == 1
    raw = requests.post(
        f"{env.server.url}/WorkloadManagement/SandboxStore",
        data={"method": "streamToClient", "args": json.dumps([urls[0], ""]),
              "rawContent": "true"},
        cert=env.alice(), verify=str(env.creds.ca_dir), timeout=60).content
    bz2.decompress(raw)  # DIRAC's format: tar.bz2
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:bz2") as tar:
        names = sorted(tar.getnames())
        out = tar.extractfile("std.out")
        assert out is not None and out.read() == b"hello pilot world\n"  # shell-like split
    assert names == ["data.txt", "std.err", "std.out"]
    params = env.call("alice", "WorkloadManagement/JobMonitoring", "getJobParameters", job)
    params = params.get(str(job), params)
    assert "Pilot_Reference" in params and "JobWrapperLog" in params, params
    assert "registered as" in pilot.log() and "storePilotOutput failed" not in pilot.log()
    pilots = env.call("alice", "WorkloadManagement/PilotManager", "getPilots", job)
    [ref] = list(pilots) if isinstance(pilots, dict) else [p["PilotJobReference"]
                                                            for p in pilots]
    output = env.call("admin", "WorkloadManagement/PilotManager", "getPilotOutput", ref)
    assert f"job {job} ended Done" in output["StdOut"], output


def test_failing_job(env: Env) -> None:
    job = env.submit('[Executable = "/bin/sh"; Arguments = "-c \'echo bad >&2; exit 3\'";'
                     ' CPUTime = 600;]')
    pilot = env.pilot("--max-failed-matches", "1")
    assert pilot.wait() == 0, pilot.log()
    state = final(env, job)
    assert state == {"Status": "Failed", "MinorStatus": "Application Finished With Errors",
                     "ApplicationStatus": "Exit code 3"}, pilot.log()


def _pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stream:
            return stream.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_killed_job_loses_its_whole_tree(env: Env) -> None:
    job = env.submit('[Executable = "/bin/sh"; Arguments = "-c \'sleep 300 & echo $! > '
                     'child.pid; echo $$ > parent.pid; wait\'"; CPUTime = 600;]')
    pilot = env.pilot("--max-failed-matches", "1", "--keep-jobdirs")
    jobdir = pilot.workdir / str(job)
    wait_for(lambda: (jobdir / "child.pid").exists() and (jobdir / "parent.pid").exists()
             and env.status(job)["Status"] == "Running", 30, "the payload")
    pids = [int((jobdir / n).read_text()) for n in ("child.pid", "parent.pid")]
    assert all(_pid_alive(p) for p in pids)
    env.call("alice", "WorkloadManagement/JobManager", "killJob", [job])
    wait_for(lambda: not any(_pid_alive(p) for p in pids), 30, "the payload to die")
    assert pilot.wait() == 0, pilot.log()
    assert env.status(job)["Status"] == "Killed"
    assert "killing payload" in pilot.log()


def test_cpu_and_wall_limits(env: Env) -> None:
    busy = env.submit('[Executable = "/bin/sh"; Arguments = "-c \'while :; do :; done\'";'
                      ' CPUTime = 100;]')
    # CPUTime 100 s is the JDL minimum: a factor of 0.01 makes the limit 1 CPU second
    pilot = env.pilot("--max-failed-matches", "1", "--cpu-limit-factor", "0.01")
    assert pilot.wait() == 0, pilot.log()
    assert final(env, busy)["MinorStatus"] == "Job has reached the CPU limit of the queue"
    assert env.status(busy)["Status"] == "Failed"
    slow = env.submit('[Executable = "/bin/sleep"; Arguments = "300"; CPUTime = 600;]')
    pilot = env.pilot("--max-failed-matches", "1", "--max-wall", "1", name="wall")
    assert pilot.wait() == 0, pilot.log()
    assert final(env, slow) == {"Status": "Failed",
                                "MinorStatus": "Job has exceeded maximum wall clock time",
                                "ApplicationStatus": "Exit code -15"}


def test_stops_after_failed_matches_and_on_drain(env: Env) -> None:
    pilot = env.pilot("--max-failed-matches", "3")
    assert pilot.wait() == 0
    assert "stopping: 3 failed matches" in pilot.log()
    pilot = env.pilot("--max-failed-matches", "100000", name="drained")
    wait_for(lambda: "node:" in pilot.log(), 30, "the pilot to start")
    (pilot.workdir / ".drain").touch()
    assert pilot.wait(30) == 0
    assert "stopping: drain file" in pilot.log()


def test_two_processors_run_two_jobs_at_once(env: Env) -> None:
    script = '-c \'date +%s.%N > start; sleep 2; date +%s.%N > end\''
    jobs = [env.submit(f'[Executable = "/bin/sh"; Arguments = "{script}"; CPUTime = 600;]')
            for _ in range(2)]
    pilot = env.pilot("--processors", "2", "--max-failed-matches", "1", "--keep-jobdirs")
    assert pilot.wait() == 0, pilot.log()
    assert [final(env, j)["Status"] for j in jobs] == ["Done", "Done"]
    times = [[float((pilot.workdir / str(j) / n).read_text()) for n in ("start", "end")]
             for j in jobs]
    (s1, e1), (s2, e2) = times
    assert s1 < e2 and s2 < e1, times  # the runs overlap


def test_node_and_jdl_helpers() -> None:
    from pilot.jdl import parse_jdl
    from pilot.node import check_node, parse_slurm_time

    jdl = parse_jdl('[ A = "x;y"; B = { "1", "2" }; C = [ D = 3; ]; E = true; ]')
    assert jdl == {"A": "x;y", "B": ["1", "2"], "C": {"D": 3}, "E": "true"}
    assert parse_slurm_time("2:03:04") == 7384
    os.environ["SLURM_JOB_END_TIME"] = "0"
    try:
        assert check_node(".").time_left == 0
    finally:
        del os.environ["SLURM_JOB_END_TIME"]
    assert Path(".").exists()


def test_sigterm_fails_the_job_with_kill_signal(env: Env) -> None:
    job = env.submit('[Executable = "/bin/sleep"; Arguments = "300"; CPUTime = 600;]')
    pilot = env.pilot("--max-failed-matches", "1")
    wait_for(lambda: env.status(job)["Status"] == "Running"
             and "running ['/bin/sleep'" in pilot.log(), 30, "the payload")
    pilot.proc.send_signal(signal.SIGTERM)
    assert pilot.wait(30) == 0, pilot.log()
    assert final(env, job)["MinorStatus"] == "Received Kill signal"
    assert env.status(job)["Status"] == "Failed"


def test_too_big_output_sandbox(env: Env) -> None:
    job = env.submit('[Executable = "/bin/sh"; Arguments = "-c \'head -c 200000 /dev/urandom\'";'
                     ' CPUTime = 600;]')
    pilot = env.pilot("--max-failed-matches", "1", "--max-sandbox-mib", "0.05")
    assert pilot.wait() == 0, pilot.log()
    assert final(env, job) == {"Status": "Failed", "MinorStatus": "Uploading Output Sandbox",
                               "ApplicationStatus": "Exit code 0"}
    params = env.call("alice", "WorkloadManagement/JobMonitoring", "getJobParameters", job)
    params = params.get(str(job), params)
    assert params["OutputSandbox"] == ("Sandbox is too big. Please upload it to a grid storage "
                                       "element")
