"""devent, dcron, dqueues and the new dsub options as users run them: real subprocesses against
``pilotwms serve`` (SQLite), with an operators' group holding ``EventManager``."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

PY = sys.executable


@dataclass
class Served:
    env: dict[str, str]
    ops_env: dict[str, str]
    base: Path

    def run(self, *args: str, ops: bool = False, code: int = 0) -> subprocess.CompletedProcess[str]:
        env = {**self.ops_env} if ops else {**self.env}
        proc = subprocess.run([PY, "-c", f"import sys; from {_MODULES[args[0]]} import main; "
                               "sys.exit(main())", *args[1:]], capture_output=True, text=True,
                              timeout=120, env={**_base_env(), **env}, cwd=self.base)
        assert proc.returncode == code, (args, proc.stdout, proc.stderr)
        return proc


_MODULES = {"dsub": "wms.cli.dsub", "dstat": "wms.cli.dstat", "dkill": "wms.cli.dkill",
            "devent": "wms.cli.devent", "dcron": "wms.cli.dcron", "dqueues": "wms.cli.dqueues"}


def _base_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items()
            if not k.startswith(("X509_", "BEARER_TOKEN", "PILOTWMS_"))}


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
    config = directory / "config.yaml"
    data = yaml.safe_load(config.read_text())
    data["Registry"]["Groups"]["demo_ops"] = {"VO": "demo", "Users": ["admin"],
                                              "Properties": ["NormalUser", "EventManager"]}
    config.write_text(yaml.safe_dump(data))
    proc = subprocess.Popen([PY, "-m", "core.cli.admin", "serve", "--config", str(config),
                             "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert "pilotwms serving" in line, proc.stderr.read() if proc.stderr else line
    url = line.split(" at ")[1].split()[0]
    common = f"URLs: [{url}]\nCADir: {directory}/ca/certificates\nVO: demo\n"
    client = base / "client.yaml"
    client.write_text(common + f"Cert: {directory}/users/alice/usercert.pem\n"
                      f"Key: {directory}/users/alice/userkey.pem\nGroup: demo_user\n")
    proxy = base / "ops-proxy.pem"
    admin("proxy", "init", "--cert", str(directory / "users/admin/usercert.pem"), "--key",
          str(directory / "users/admin/userkey.pem"), "-g", "demo_ops", "--out", str(proxy))
    ops_client = base / "ops.yaml"
    ops_client.write_text(common + "Group: demo_ops\n")
    none = str(base / "no-token")
    env = {"PILOTWMS_CLIENT_CONFIG": str(client), "BEARER_TOKEN_FILE": none,
           "X509_USER_PROXY": ""}
    ops_env = {"PILOTWMS_CLIENT_CONFIG": str(ops_client), "BEARER_TOKEN_FILE": none,
               "X509_USER_PROXY": str(proxy)}
    (base / "job.jdl").write_text('[Executable = "/bin/echo"; Arguments = "$RUN_DATE";]\n')
    try:
        yield Served(env, ops_env, base)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


def test_devent(served: Served) -> None:
    assert served.run("devent", "create", "an00h000", "-d", "analysis 00UTC",
                      ops=True).stdout.strip().isdigit()
    err = served.run("devent", "create", "mine", code=2).stderr
    assert err.strip() == "ERROR: alice@demo_user may not call createEvent"
    job = int(served.run("dsub", "--event", "an00h000", "job.jdl").stdout.strip())
    table = served.run("dstat").stdout
    assert "Standby" in table and "Waiting for event an00h000" in table
    [event] = json.loads(served.run("devent", "list", "-f", "json").stdout)
    assert (event["Name"], event["Subscribers"], event["LastNotified"]) == (
        "an00h000", 1, "-")
    err = served.run("devent", "notify", "an00h000", "--env", "RUN_DATE=1", code=2).stderr
    assert err.strip() == "ERROR: only admin may notify event 'an00h000'"
    assert "unknown event 'nosuch'" in served.run("devent", "notify", "nosuch", ops=True,
                                                  code=2).stderr
    assert "expected NAME=VALUE" in served.run("devent", "notify", "an00h000", "--env", "X",
                                               ops=True, code=2).stderr
    out = served.run("devent", "notify", "an00h000", "--env", "RUN_DATE=20261203",
                     ops=True).stdout
    assert out.strip() == "notification 1: 1 job(s) released"
    [note] = json.loads(served.run("devent", "history", "an00h000", "-f", "json").stdout)
    assert (note["Variables"], note["Released"], note["Jobs"]) == (
        "RUN_DATE=20261203", 1, str(job))
    subs = json.loads(served.run("devent", "subscriptions", "an00h000", "-f", "json").stdout)
    standby = subs[0]["JobID"]
    assert standby != job and subs[0]["JobStatus"] == "Standby"
    out = served.run("devent", "unsubscribe", str(job)).stdout
    assert out.strip() == f"job {standby} no longer waits for event an00h000"
    assert "event an00h000 deleted" in served.run("devent", "delete", "an00h000",
                                                  ops=True).stdout


def test_dcron(served: Served) -> None:
    assert "at least 1 second" in served.run("dcron", "add", "--every", "0", "job.jdl",
                                             code=2).stderr
    assert "does not parse" in served.run("dcron", "add", "--cron", "0 6 * * FOO", "job.jdl",
                                          code=2).stderr
    assert "no such JDL file" in served.run("dcron", "add", "--every", "1h", "nojob.jdl",
                                            code=2).stderr
    sid = served.run("dcron", "add", "--cron", "0 6 * * MON-FRI", "--tz", "Europe/Rome",
                     "--name", "morning", "--max-runs", "5", "job.jdl").stdout.strip()
    [listed] = json.loads(served.run("dcron", "list", "-f", "json").stdout)
    assert (str(listed["ID"]), listed["Name"], listed["Timing"], listed["Status"]) == (
        sid, "morning", "cron '0 6 * * MON-FRI' Europe/Rome", "Active")
    shown = served.run("dcron", "show", "morning").stdout
    assert "Overlap: skip" in shown and "No output" in shown
    assert served.run("dcron", "pause", "morning").stdout.strip() == "Paused"
    assert served.run("dcron", "resume", sid).stdout.strip() == "Active"
    assert served.run("dcron", "rm", "morning").stdout.strip() == sid
    assert "no schedule 'morning'" in served.run("dcron", "show", "morning", code=2).stderr


def test_dqueues_capacity_and_restart(served: Served) -> None:
    [queue] = json.loads(served.run("dqueues", "-f", "json").stdout)
    assert (queue["Site"], queue["Queue"], queue["NumberOfGPUs"]) == (
        "Demo.Local.site", "default", 0)
    assert served.run("dqueues", "--tag", "GPU").stdout.strip() == "No output"
    pretty = served.run("dqueues").stdout.splitlines()
    assert pretty[0].split()[:5] == ["Site", "CE", "Queue", "Mask", "Procs"]
    err = served.run("dsub", "--NumberOfGPUs", "2", "--MinRAM", "16000", "/bin/true",
                     code=2).stderr
    assert "no queue offers 2 GPUs with 16000 MB" in err
    job = served.run("dsub", "--NumberOfGPUs", "2", "--wait-for-resources",
                     "/bin/true").stdout.strip()
    assert "only finished jobs" in served.run("dsub", "--restart", job, code=2).stderr
    served.run("dkill", job)
    new = served.run("dsub", "--restart", job).stdout.strip()
    assert new.isdigit() and new != job
    assert "--files-per-job goes with" in served.run("dsub", "--files-per-job", "2",
                                                     "/bin/true", code=2).stderr
