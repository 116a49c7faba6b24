"""The ``pilotwms`` command as operators use it: real subprocesses, real servers."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from core.cli.instance import Instance

PILOTWMS = [sys.executable, "-m", "core.cli.admin"]


def run(*args: str, env: dict[str, str] | None = None,
        check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*PILOTWMS, *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})
    if check and proc.returncode != 0:
        raise AssertionError(f"pilotwms {' '.join(args)} failed: {proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Instance:
    directory = tmp_path_factory.mktemp("cli") / "inst"
    out = run("init", str(directory), "--user", "carol", "--port", "0").stdout
    assert "pilotwms instance ready" in out
    return Instance(directory)


def test_init_makes_a_complete_instance(fresh: Instance) -> None:
    d = fresh.directory
    for rel in ("config.yaml", "client.yaml", "ca/ca.pem", "host/hostcert.pem", "jwk.json",
                "users/carol/usercert.pem", "users/admin/userkey.pem", "pilotwms.db"):
        assert (d / rel).is_file(), rel
    for secret in ("ca/ca.key", "host/hostkey.pem", "users/carol/userkey.pem", "jwk.json"):
        assert stat.S_IMODE((d / secret).stat().st_mode) == 0o600, secret
    assert list((d / "ca/certificates").glob("*.0"))
    versions = run("db", "version", "--config", str(fresh.config)).stdout
    assert "Framework: version 0" in versions
    again = run("init", str(d), check=False)
    assert again.returncode == 2 and "is not empty" in again.stderr


@pytest.fixture(scope="module")
def served(fresh: Instance) -> Iterator[str]:
    proc = subprocess.Popen([*PILOTWMS, "serve", "--config", str(fresh.config), "--port", "0",
                             "--processes", "2"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert "pilotwms serving" in line, proc.stderr.read() if proc.stderr else line
    url = line.split(" at ")[1].split()[0]
    try:
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        # the workers are gone with the supervisor (polled: a loaded machine is slow)
        deadline = time.monotonic() + 30
        while True:
            leftover = subprocess.run(["pgrep", "-s", str(proc.pid)], capture_output=True)
            if leftover.stdout.strip() == b"" or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert leftover.stdout.strip() == b""


def _whoami(url: str, fresh: Instance, **kw: object) -> dict[str, object]:
    reply = requests.post(f"{url}/Framework/Registry", data={"method": "whoami"},
                          verify=str(fresh.ca_dir), timeout=30, **kw)  # type: ignore[arg-type]
    assert reply.status_code == 200, reply.text
    return reply.json()["Value"]  # type: ignore[no-any-return]


def test_serve_with_cert_proxy_and_token(fresh: Instance, served: str,
                                         tmp_path: Path) -> None:
    cert, key = fresh.user_cert("admin")
    who = _whoami(served, fresh, cert=(str(cert), str(key)))
    assert (who["username"], who["group"]) == ("admin", "demo_user")

    proxy = tmp_path / "x509up"
    out = run("proxy", "init", "--cert", str(cert), "--key", str(key), "-g", "demo_admin",
              "--out", str(proxy)).stdout
    assert "group          : demo_admin" in out
    assert stat.S_IMODE(proxy.stat().st_mode) == 0o600
    who = _whoami(served, fresh, cert=str(proxy))
    assert who["group"] == "demo_admin" and who["isProxy"] is True

    token_file = tmp_path / "bt"
    run("token", "issue", "--config", str(fresh.config), "--user", "carol", "--out",
        str(token_file))
    token = token_file.read_text().strip()
    who = _whoami(served, fresh, headers={"Authorization": f"Bearer {token}"})
    assert (who["username"], who["authMethod"]) == ("carol", "token")


def test_requests_spread_over_worker_processes(fresh: Instance, served: str) -> None:
    pids = set()
    for _ in range(40):
        reply = requests.post(f"{served}/Framework/Registry", data={"method": "ping"},
                              verify=str(fresh.ca_dir), timeout=30)
        pids.add(reply.json()["Value"]["pid"])
        if len(pids) == 2:
            break
    assert len(pids) == 2


def test_call_command_uses_the_client_config(fresh: Instance, served: str,
                                             tmp_path: Path) -> None:
    client = tmp_path / "client.yaml"
    text = fresh.client_config.read_text().replace("https://127.0.0.1:0", served)
    # relative paths in client.yaml are relative to the file: make them absolute here
    text = text.replace("CADir: ", f"CADir: {fresh.directory}/")
    text = text.replace("Cert: ", f"Cert: {fresh.directory}/")
    text = text.replace("Key: ", f"Key: {fresh.directory}/")
    client.write_text(text)
    env = {"PILOTWMS_CLIENT_CONFIG": str(client), "X509_USER_PROXY": "",
           "BEARER_TOKEN_FILE": str(tmp_path / "none")}
    out = run("call", "Framework/Registry", "getMyGroups", env=env).stdout
    assert '"demo_user"' in out
    bad = run("call", "Framework/Registry", "getGroupsForUser", "carol", env=env, check=False)
    assert bad.returncode == 2 and bad.stderr.startswith("ERROR: ")


def test_token_for_a_group_the_user_is_not_in(fresh: Instance) -> None:
    proc = run("token", "issue", "--config", str(fresh.config), "--user", "carol", "-g",
               "demo_admin", check=False)
    assert proc.returncode == 2 and "not a member of group demo_admin" in proc.stderr


def test_ca_and_cert_commands(tmp_path: Path) -> None:
    run("ca", "init", "--dir", str(tmp_path / "ca"))
    run("cert", "issue", "--host", "node1.example", "--ca", str(tmp_path / "ca"),
        "--out", str(tmp_path / "h"))
    check = subprocess.run(
        ["openssl", "verify", "-CApath", str(tmp_path / "ca/certificates"),
         str(tmp_path / "h/hostcert.pem")], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr


def test_db_commands_on_mariadb(fresh: Instance, mariadb_admin_url: str) -> None:
    from tests.support.mariadb import fresh_database

    with fresh_database(mariadb_admin_url) as url:
        env = {"PILOTWMS_DB": url}
        assert "not initialised" in run("db", "version", "--config", str(fresh.config),
                                        env=env).stdout
        run("db", "init", "--config", str(fresh.config), env=env)
        assert "Framework: version 0" in run("db", "upgrade", "--config", str(fresh.config),
                                             env=env).stdout


def test_config_errors_are_reported(tmp_path: Path) -> None:
    bad = tmp_path / "config.yaml"
    bad.write_text("Server: {Port: x}\n")
    proc = run("db", "init", "--config", str(bad), check=False)
    assert proc.returncode == 2 and "Server.Port" in proc.stderr
