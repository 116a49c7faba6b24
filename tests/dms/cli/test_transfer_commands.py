"""dput, dget, drepl and drm as users run them: real subprocesses against ``pilotwms serve``
(its HTTPS disk SEs and the real xrootd server), outputs compared exactly (COMDIRAC's
formats), the progress bar only on a terminal."""

from __future__ import annotations

import itertools
import os
import pty
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from core.client_config import load_client_config
from dms.catalog_client import FileCatalogClient
from tests.support.xrootd import XRootDServer, free_port

PY = sys.executable
HOME = "/demo/user/a/alice"
_shells = itertools.count(5000)


@dataclass
class Served:
    directory: Path
    env: dict[str, str]
    xrd: XRootDServer

    def catalog(self) -> FileCatalogClient:
        return FileCatalogClient.from_config(load_client_config(self.env["PILOTWMS_CLIENT_CONFIG"]))

    def disk(self, se: str) -> Path:
        return self.directory / "se" / se


def admin(*args: str) -> str:
    proc = subprocess.run([PY, "-m", "core.cli.admin", *args], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory,
           xrootd_server: XRootDServer) -> Iterator[Served]:
    base = tmp_path_factory.mktemp("dtransfer")
    directory = base / "inst"
    port = free_port()
    admin("init", str(directory), "--port", str(port))
    config = directory / "config.yaml"
    data = yaml.safe_load(config.read_text())
    https = {"Plugin": "HTTPS", "Host": "127.0.0.1", "Port": port}
    data.setdefault("Resources", {})["StorageElements"] = {
        "DIRAC-USER": {"Protocols": [dict(https, Path=str(directory / "se" / "DIRAC-USER"))]},
        "DISK-B": {"Protocols": [dict(https, Path=str(directory / "se" / "DISK-B"))]},
        "XRD": {"Protocols": [{"Plugin": "XROOT", "Host": "127.0.0.1",
                               "Port": xrootd_server.port, "Path": "/cmds"}]}}
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    proc = subprocess.Popen([PY, "-m", "core.cli.admin", "serve", "--config", str(config)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert "pilotwms serving" in line, proc.stderr.read() if proc.stderr else line
    client = base / "client.yaml"
    client.write_text(
        f"URLs: [https://127.0.0.1:{port}]\nCADir: {directory}/ca/certificates\n"
        f"Cert: {directory}/users/alice/usercert.pem\n"
        f"Key: {directory}/users/alice/userkey.pem\nGroup: demo_user\nVO: demo\n")
    env = {"PILOTWMS_CLIENT_CONFIG": str(client), "X509_USER_PROXY": "", "BEARER_TOKEN": "",
           "BEARER_TOKEN_FILE": str(base / "no-token"),
           "PILOTWMS_SESSION_DIR": str(base / "sessions"), "PILOTWMS_DEFAULT_SE": ""}
    try:
        yield Served(directory, env, xrootd_server)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


@pytest.fixture(autouse=True)
def client_env(served: Served, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key, value in served.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("DCOMMANDS_PPID", str(next(_shells)))
    monkeypatch.chdir(tmp_path)


def cmd(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PY, "-m", f"dms.cli.{name}", *args], capture_output=True,
                          text=True, timeout=120)


def ok(name: str, *args: str) -> str:
    proc = cmd(name, *args)
    assert proc.returncode == 0 and proc.stderr == "", (proc.stdout, proc.stderr)
    return proc.stdout


def local(path: Path, size: int = 100_000) -> bytes:
    data = os.urandom(size)
    path.write_bytes(data)
    return data


def test_dput_dget_round_trip(served: Served, tmp_path: Path) -> None:
    data = local(tmp_path / "one.dat")
    assert ok("dput", "one.dat") == ""
    lfn = f"{HOME}/one.dat"
    with served.catalog() as fc:
        assert list(fc.get_replicas(lfn).successful[lfn]) == ["DIRAC-USER"]
    assert (served.disk("DIRAC-USER") / lfn.lstrip("/")).read_bytes() == data
    # again: refused, nothing overwritten
    again = cmd("dput", "one.dat")
    assert (again.returncode, again.stdout) == (2, "")
    assert again.stderr == f"{lfn}: {lfn} is registered already\n"
    out = tmp_path / "out"
    out.mkdir()
    assert ok("dget", "one.dat", str(out)) == ""
    assert (out / "one.dat").read_bytes() == data
    (tmp_path / "one.dat").unlink()
    assert ok("dget", lfn) == ""  # into the current directory
    assert (tmp_path / "one.dat").read_bytes() == data
    bad = cmd("dget", "one.dat", "two.dat", str(tmp_path / "nodir"))
    assert (bad.returncode, bad.stdout, bad.stderr) == (
        2, "", "Error: Destination local path must be a directory\n")
    missing = cmd("dget", "nothing.dat")
    assert missing.returncode == 2 and missing.stdout == ""
    assert missing.stderr == f"ERROR: {HOME}/nothing.dat: No such file or directory\n"


def test_dput_to_directories_and_trees(served: Served, tmp_path: Path) -> None:
    for name in ("a.dat", "b.dat", "c.dat"):
        local(tmp_path / name, 1000)
    assert ok("dput", "-D", "DISK-B", "a.dat", "b.dat", "batch/") == ""
    wrong = cmd("dput", "a.dat", "b.dat", "batch/single")
    assert (wrong.returncode, wrong.stdout, wrong.stderr) == (
        2, "", "Error: Destination LFN must be a directory when registering multiple local "
               "files\n")
    assert ok("dput", "c.dat", "batch") == ""  # batch is a directory now: batch/c.dat
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    local(tree / "x", 10)
    local(tree / "sub" / "y", 20)
    assert ok("dput", "-r", "-D", "XRD", "tree", "trees/t1") == ""
    with served.catalog() as fc:
        reps = fc.get_replicas([f"{HOME}/batch/a.dat", f"{HOME}/batch/b.dat",
                                f"{HOME}/batch/c.dat",
                                f"{HOME}/trees/t1/x", f"{HOME}/trees/t1/sub/y"])
    assert reps.failed == {}
    assert {lfn: list(r) for lfn, r in reps.successful.items()} == {
        f"{HOME}/batch/a.dat": ["DISK-B"], f"{HOME}/batch/b.dat": ["DISK-B"],
        f"{HOME}/batch/c.dat": ["DIRAC-USER"],
        f"{HOME}/trees/t1/x": ["XRD"], f"{HOME}/trees/t1/sub/y": ["XRD"]}
    assert (served.xrd.data / "cmds" / HOME.lstrip("/") / "trees/t1/sub/y").stat().st_size \
        == 20
    fetched = tmp_path / "fetched"
    fetched.mkdir()
    assert ok("dget", "-r", "trees/t1", str(fetched)) == ""
    assert (fetched / "t1" / "sub" / "y").read_bytes() == (tree / "sub" / "y").read_bytes()
    assert (fetched / "t1" / "x").read_bytes() == (tree / "x").read_bytes()


def test_drepl_and_drm(served: Served, tmp_path: Path) -> None:
    data = local(tmp_path / "r.dat")
    local(tmp_path / "s.dat")
    ok("dput", "r.dat")
    ok("dput", "s.dat")
    lfn = f"{HOME}/r.dat"
    assert ok("drepl", "-D", "XRD,DISK-B", "r.dat") == ""
    assert ok("drepl", "-D", "XRD", "r.dat") == ""  # already there: nothing to do
    with served.catalog() as fc:
        assert sorted(fc.get_replicas(lfn).successful[lfn]) == ["DIRAC-USER", "DISK-B",
                                                                 "XRD"]
    bad = cmd("drepl", "-D", "NOWHERE", "r.dat")
    assert (bad.returncode, bad.stdout) == (2, "")
    assert bad.stderr == f"{lfn}->NOWHERE: unknown storage element 'NOWHERE'\n"
    # the damaged DIRAC-USER copy is not used as a source: the XRD copy is
    (served.disk("DIRAC-USER") / lfn.lstrip("/")).write_bytes(b"damaged")
    assert ok("drm", "-D", "DISK-B", "r.dat") == "\n1 object(s) removed in total\n"
    assert not (served.disk("DISK-B") / lfn.lstrip("/")).exists()
    assert ok("drepl", "-D", "DISK-B", "r.dat") == ""
    assert (served.disk("DISK-B") / lfn.lstrip("/")).read_bytes() == data
    assert ok("drm", "r.dat", "s.dat", "t.dat") == (
        f"Removing 3 objects\n{HOME}/t.dat: no such file\n\n2 object(s) removed in total\n")
    assert not (served.disk("DISK-B") / lfn.lstrip("/")).exists()
    assert not (served.xrd.data / "cmds" / lfn.lstrip("/")).exists()
    with served.catalog() as fc:
        assert fc.get_replicas(lfn).failed == {lfn: "No such file or directory"}


def test_drm_recursive(served: Served, tmp_path: Path) -> None:
    tree = tmp_path / "gone"
    (tree / "deep").mkdir(parents=True)
    local(tree / "f1", 10)
    local(tree / "deep" / "f2", 10)
    ok("dput", "-r", "gone", "gone")
    assert ok("drm", "-r", "gone") == "\n1 object(s) removed in total\n"
    with served.catalog() as fc:
        assert fc.exists(f"{HOME}/gone").successful == {f"{HOME}/gone": False}
    assert not list((served.disk("DIRAC-USER") / HOME.lstrip("/") / "gone").rglob("f*"))


def test_progress_bar_only_on_a_terminal(served: Served, tmp_path: Path) -> None:
    local(tmp_path / "big.dat", 3 * 1024 * 1024)
    master, slave = pty.openpty()
    try:
        proc = subprocess.run([PY, "-m", "dms.cli.dput", "big.dat"], stderr=slave,
                              stdout=subprocess.PIPE, text=True, timeout=120)
        os.close(slave)
        chunks = []
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(master)
    shown = b"".join(chunks).decode()
    assert proc.returncode == 0 and proc.stdout == ""
    assert "\rbig.dat [" in shown and "] 100%" in shown and "3.0/3.0 MiB" in shown
    assert shown.endswith("\r\n") or shown.endswith("\n")
    # not a terminal: nothing at all (ok() checks stderr is empty)
    assert ok("dget", "big.dat", str(tmp_path / "..")) == ""


def test_request_agent_from_the_command_line(served: Served, tmp_path: Path) -> None:
    """A request filed through the service is executed by ``pilotwms agent ... --once``,
    which reaches the HTTPS SE with the server's host certificate."""
    from core.client_config import make_client
    from dms.request_client import ReqManagerClient

    data = local(tmp_path / "q.dat", 5000)
    ok("dput", "q.dat")
    lfn = f"{HOME}/q.dat"
    cfg = load_client_config(served.env["PILOTWMS_CLIENT_CONFIG"])
    with make_client("RequestManagement/ReqManager", cfg) as rpc:
        rm = ReqManagerClient(rpc)
        rid = rm.put_request({"RequestName": "cli", "Operations": [
            {"Type": "ReplicateAndRegister", "TargetSE": "DISK-B",
             "Files": [{"LFN": lfn}]}]})
        agent = subprocess.run(
            [PY, "-m", "core.cli.admin", "agent", "RequestExecutingAgent", "--config",
             str(served.directory / "config.yaml"), "--once"],
            capture_output=True, text=True, timeout=120)
        assert agent.returncode == 0, agent.stderr
        assert rm.get_request_status(rid) == "Done"
    assert (served.disk("DISK-B") / lfn.lstrip("/")).read_bytes() == data
    with served.catalog() as fc:
        assert sorted(fc.get_replicas(lfn).successful[lfn]) == ["DIRAC-USER", "DISK-B"]
