"""The catalog commands as users run them: real subprocesses against ``pilotwms serve``
(SQLite), outputs compared exactly (COMDIRAC's formats)."""

from __future__ import annotations

import itertools
import os
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

PY = sys.executable
HOME = "/demo/user/a/alice"
_shells = itertools.count(1000)


@dataclass
class Served:
    directory: Path
    env: dict[str, str]
    admin_token: str

    def catalog(self) -> FileCatalogClient:
        return FileCatalogClient.from_config(load_client_config(self.env["PILOTWMS_CLIENT_CONFIG"]))


def admin(*args: str) -> str:
    proc = subprocess.run([PY, "-m", "core.cli.admin", *args], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    base = tmp_path_factory.mktemp("dcmds")
    directory = base / "inst"
    admin("init", str(directory), "--port", "0")
    config = directory / "config.yaml"
    data = yaml.safe_load(config.read_text())
    data["Registry"]["Groups"]["dm_admin"] = {
        "VO": "demo", "Users": ["admin"], "Properties": ["NormalUser", "FileCatalogManagement"]}
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    proc = subprocess.Popen([PY, "-m", "core.cli.admin", "serve", "--config", str(config),
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
    env = {"PILOTWMS_CLIENT_CONFIG": str(client), "X509_USER_PROXY": "", "BEARER_TOKEN": "",
           "BEARER_TOKEN_FILE": str(base / "no-token"),
           "PILOTWMS_SESSION_DIR": str(base / "sessions")}
    token = admin("token", "issue", "--config", str(config), "--user", "admin", "-g",
                  "dm_admin").strip().splitlines()[-1]
    try:
        yield Served(directory, env, token)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


@pytest.fixture(autouse=True)
def client_env(served: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in served.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("DCOMMANDS_PPID", str(next(_shells)))  # a fresh shell per test


def cmd(name: str, *args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if token:
        env["BEARER_TOKEN"] = token
    return subprocess.run([PY, "-m", f"dms.cli.{name}", *args], capture_output=True,
                          text=True, timeout=120, env=env)


def ok(name: str, *args: str, token: str | None = None) -> str:
    proc = cmd(name, *args, token=token)
    assert proc.returncode == 0 and proc.stderr == "", (proc.stdout, proc.stderr)
    return proc.stdout


def register(served: Served, files: dict[str, tuple[int, list[str]]]) -> None:
    with served.catalog() as fc:
        result = fc.add_file({lfn: {"Size": size, "SE": ses[0], "GUID": lfn,
                                    "Checksum": "01020304"} for lfn, (size, ses) in files.items()})
        assert result.failed == {}
        extra = {lfn: {"SE": se, "PFN": f"root://{se}{lfn}"}
                 for lfn, (_size, ses) in files.items() for se in ses[1:]}
        if extra:
            assert fc.add_replica(extra).failed == {}


def test_session_cd_pwd_mkdir(served: Served) -> None:
    assert ok("dpwd") == f"{HOME}\n"
    assert ok("dmkdir", "work/a", "work/b") == ""
    assert ok("dcd", "work") == ""
    assert ok("dpwd") == f"{HOME}/work\n"
    assert ok("dcd", "a") == "" and ok("dpwd") == f"{HOME}/work/a\n"
    assert ok("dcd", "..") == "" and ok("dpwd") == f"{HOME}/work\n"
    bad = cmd("dcd", "nowhere")
    assert (bad.returncode, bad.stdout) == (2, "")
    assert bad.stderr == f'Error: "{HOME}/work/nowhere" not a valid directory\n'
    assert ok("dpwd") == f"{HOME}/work\n"
    denied = cmd("dmkdir", "/demo/elsewhere")
    assert (denied.returncode, denied.stdout) == (
        2, 'ERROR - "/demo/elsewhere": Permission denied\n')
    assert ok("drmdir", "b") == ""
    gone = cmd("drmdir", "/demo")
    assert gone.stdout == 'ERROR - "/demo": Permission denied\n' and gone.returncode == 2
    assert ok("dcd") == "" and ok("dpwd") == f"{HOME}\n"


def test_dls_formats(served: Served) -> None:
    base = f"{HOME}/ls"
    register(served, {f"{base}/small": (5, ["DISK-SE"]),
                      f"{base}/big": (123456, ["DISK-SE", "TAPE-SE"])})
    ok("dmkdir", f"{base}/sub")
    with served.catalog() as fc:
        meta = fc.list_directory(base, verbose=True).successful[base]
    dates = {lfn.rsplit("/", 1)[1]: info["MetaData"]["ModificationDate"]
             for lfn, info in meta["Files"].items()}
    dates["sub"] = meta["SubDirs"][f"{base}/sub"]["ModificationDate"]
    text = {k: v.strftime("%Y-%m-%d %H:%M:%S") for k, v in dates.items()}
    assert ok("dls", base) == f"{base}:\nbig\nsmall\nsub\n"
    assert ok("dls", "-l", base) == (
        f"{base}:\n"
        f"-rw-r--r-- 2 alice demo_user 123456 {text['big']} big\n"
        f"-rw-r--r-- 1 alice demo_user      5 {text['small']} small\n"
        f"drwxr-xr-x 0 alice demo_user      0 {text['sub']} sub\n")
    assert ok("dls", "-lSr", base).splitlines()[1:] == [
        f"drwxr-xr-x 0 alice demo_user      0 {text['sub']} sub",
        f"-rw-r--r-- 1 alice demo_user      5 {text['small']} small",
        f"-rw-r--r-- 2 alice demo_user 123456 {text['big']} big"]
    assert ok("dls", "-lH", "-n", base).splitlines()[1] == (
        f"-rw-r--r-- 2 0 0 120.6KiB {text['big']} big")
    assert ok("dls", "-L", f"{base}/big") == (
        f"{base}/big:\n-rw-r--r-- 2 alice demo_user 123456 {text['big']} big\n"
        f"   DISK-SE         \n"
        f"   TAPE-SE         root://TAPE-SE{base}/big\n")
    missing = cmd("dls", f"{base}/nope")
    assert missing.returncode == 2
    assert missing.stdout == f"{base}/nope:\nError: \"{base}/nope\" doesn't exist\n"


def test_dreplicas_dsize(served: Served) -> None:
    base = f"{HOME}/sz"
    register(served, {f"{base}/a": (1000, ["DISK-SE", "TAPE-SE"]),
                      f"{base}/d/b": (234, ["DISK-SE"])})
    assert ok("dreplicas", f"{base}/a") == (
        f"{base}/a:\n   DISK-SE \n   TAPE-SE root://TAPE-SE{base}/a\n")
    bad = cmd("dreplicas", f"{base}/zz")
    assert bad.returncode == 2
    assert bad.stderr == f"ERROR: {base}/zz: No such file or directory\n"
    assert ok("dsize", f"{base}/a") == f"lfn: {base}/a\nSize: 1000\n"
    assert ok("dsize", base) == (
        f"directory: {base}\nLogical Size: 1,234 Files: 2 Directories: 1\n")
    assert ok("dsize", "-l", base) == (
        f"directory: {base}\nLogical Size: 1,234 Files: 2 Directories: 1\n\n"
        "   StorageElement Size  Replicas\n"
        "================================\n"
        " 1 DISK-SE        1,234        2\n"
        " 2 TAPE-SE        1,000        1\n"
        "   Total          2,234        3\n"
        "---------------------------------\n\n")


def test_dmeta_dfind(served: Served) -> None:
    token = served.admin_token
    assert ok("dmeta", "-i", "d", "run=int", "kind=string", token=token) == ""
    assert ok("dmeta", "-i", "f", "quality=float", token=token) == ""
    denied = cmd("dmeta", "-i", "d", "other=int")
    assert denied.returncode == 2 and "ERROR: only catalog administrators" in denied.stderr
    assert ok("dmeta", "-I") == ("                kind : VARCHAR(128)\n"
                                 "             quality : FLOAT\n"
                                 "                 run : INT\n")
    base = f"{HOME}/meta"
    register(served, {f"{base}/r{r}/f{i}": (10 * r + i, ["DISK-SE"])
                      for r in (1, 2, 3) for i in (1, 2)})
    for r in (1, 2, 3):
        ok("dmeta", "add", f"{base}/r{r}", f"run={r}", f"kind={'raw' if r < 3 else 'reco'}")
    ok("dmeta", "add", f"{base}/r2/f2", "quality=0.5")
    # DIRAC's dmeta prints "name = value" in the catalog's order (directory's, then file's)
    assert sorted(ok("dmeta", "ls", f"{base}/r2/f2").splitlines()) == [
        "kind = raw", "quality = 0.5", "run = 2"]
    assert ok("dmeta", "ls", f"{base}/r2/f2").splitlines()[-1] == "quality = 0.5"
    assert ok("dmeta", "ls", f"{base}/r2/f2", "run") == "run = 2\n"
    conflict = cmd("dmeta", "add", f"{base}/r2/f1", "run=7")
    assert conflict.returncode == 2 and conflict.stdout.startswith(
        "Error: Metadata conflict detected for run")
    assert ok("dfind", base, "run>=2", "kind=raw") == f"{base}/r2/f1\n{base}/r2/f2\n"
    assert ok("dfind", base, "run=1,3", "Size>10") == (
        f"{base}/r1/f1\n{base}/r1/f2\n{base}/r3/f1\n{base}/r3/f2\n")
    assert ok("dfind", base, "quality>0.1") == f"{base}/r2/f2\n"
    assert ok("dfind", base, '{"run": {"in": [3]}, "Size": {">": 31}}') == f"{base}/r3/f2\n"
    assert ok("dfind", base, "run>5") == ""
    ok("dcd", base)
    assert ok("dfind", "run<2") == f"{base}/r1/f1\n{base}/r1/f2\n"
    with served.catalog() as fc:
        assert fc.add_dataset({f"{base}/raw": {"kind": "raw"}}).failed == {}
        assert fc.freeze_dataset(f"{base}/raw").failed == {}
        info = fc.get_datasets(f"{base}/raw").successful[f"{base}/raw"]
    when = info["ModificationDate"].strftime("%Y-%m-%d %H:%M:%S")
    assert ok("dls", base) == f"{base}:\nr1\nr2\nr3\nraw\n"
    assert ok("dls", "-l", base).splitlines()[-1] == (
        f"srw-r--r-- 4 alice demo_user 66 {when} raw")
    bad = cmd("dfind", base, "run~1")
    assert bad.returncode == 2 and bad.stderr.startswith("Illegal metaQuery: run~1")
    assert ok("dmeta", "rm", f"{base}/r2/f2", "quality") == ""
    assert ok("dfind", base, "quality>0") == ""


def test_dchmod_dchown_dchgrp(served: Served) -> None:
    base = f"{HOME}/perm"
    register(served, {f"{base}/f": (1, ["DISK-SE"])})
    assert ok("dchmod", "750", base) == ""
    assert ok("dchmod", "-R", "700", base) == ""
    with served.catalog() as fc:
        assert fc.get_file_metadata(f"{base}/f").successful[f"{base}/f"]["Mode"] == 0o700
    denied = cmd("dchown", "admin", base)
    assert (denied.returncode, denied.stderr) == (2, f"Error: {base}: Permission denied\n")
    bad_group = cmd("dchgrp", "dm_admin", base)
    assert bad_group.stderr == f"Error: {base}: Permission denied\n"
    assert ok("dchown", "-R", "admin:dm_admin", base, token=served.admin_token) == ""
    listing = ok("dls", "-l", HOME)
    assert [line for line in listing.splitlines() if line.endswith(" perm")][0].startswith(
        "drwx------ 0 admin dm_admin ")
    # alice can no longer see inside
    assert cmd("dls", base).stdout == f"{base}:\nError: \"{base}\": Permission denied\n"
