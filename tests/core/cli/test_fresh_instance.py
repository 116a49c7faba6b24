"""A fresh ``pilotwms init`` + ``pilotwms serve``: the login server is on (discovery with the
device, token and JWKS endpoints), ``dlogin`` without an identity provider says what to do, a
proxy exchanged for a token (``dlogin --proxy``) works with ``dsub``/``dstat``, and the
instance carries a ``dirac.cfg`` for the real DIRAC client."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.support.mariadb import free_port

PY = sys.executable


@dataclass
class Fresh:
    directory: Path
    url: str
    env: dict[str, str]

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([PY, "-m", *args], capture_output=True, text=True,
                              env=self.env, timeout=120, check=False)


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fresh]:
    base = tmp_path_factory.mktemp("fresh")
    directory = base / "inst"
    port = free_port()
    init = subprocess.run([PY, "-m", "core.cli.admin", "init", str(directory), "--port",
                           str(port)], capture_output=True, text=True, timeout=120,
                          check=False)
    assert init.returncode == 0, init.stderr
    assert "login server: on" in init.stdout and "Auth.Server.IdPs" in init.stdout
    assert "DIRAC_ROOT_PATH" in init.stdout
    proc = subprocess.Popen([PY, "-m", "core.cli.admin", "serve", "--config",
                             str(directory / "config.yaml")], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert "pilotwms serving" in line, proc.stderr.read() if proc.stderr else line
    home = base / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home),
           "PILOTWMS_CLIENT_CONFIG": str(directory / "client.yaml"),
           "BEARER_TOKEN": "", "BEARER_TOKEN_FILE": str(base / "bt"),
           "X509_USER_PROXY": str(base / "x509up"), "PILOTWMS_SESSION": "fresh-tests"}
    env.pop("BEARER_TOKEN")
    try:
        yield Fresh(directory, f"https://127.0.0.1:{port}", env)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


def test_discovery_and_keys_on_a_fresh_instance(fresh: Fresh) -> None:
    ca = str(fresh.directory / "ca" / "certificates")
    meta = requests.get(f"{fresh.url}/.well-known/openid-configuration", verify=ca,
                        timeout=30).json()
    assert meta["issuer"] == fresh.url
    for key, path in (("device_authorization_endpoint", "/auth/device"),
                      ("token_endpoint", "/auth/token"), ("jwks_uri", "/auth/jwks")):
        assert meta[key] == fresh.url + path
    keys = requests.get(meta["jwks_uri"], verify=ca, timeout=30).json()["keys"]
    assert keys and all(k["kty"] == "RSA" and "d" not in k for k in keys)
    cfg = (fresh.directory / "dirac" / "etc" / "dirac.cfg").read_text()
    assert f"JobManager = {fresh.url}/WorkloadManagement/JobManager" in cfg
    assert f"CALocation = {ca}" in cfg


def test_dlogin_without_an_idp_explains(fresh: Fresh) -> None:
    started = time.monotonic()
    run = fresh.run("core.cli.login")
    assert run.returncode != 0
    assert time.monotonic() - started < 60  # no waiting for a code nobody can approve
    text = run.stdout + run.stderr
    assert "has no identity provider configured" in text, text
    assert "dlogin --proxy" in text and "Auth.Server.IdPs" in text


def test_proxy_exchanged_token_works_with_dstat(fresh: Fresh) -> None:
    made = fresh.run("core.cli.admin", "proxy", "init", "-g", "demo_user", "--out",
                     fresh.env["X509_USER_PROXY"])
    assert made.returncode == 0, made.stderr
    login = fresh.run("core.cli.login", "--proxy")
    assert login.returncode == 0, login.stderr
    assert f"Token saved in {fresh.env['BEARER_TOKEN_FILE']}" in login.stdout
    assert "username   : alice" in login.stdout and "group      : demo_user" in login.stdout
    # from now on the token, not the proxy: remove the proxy to be sure
    os.remove(fresh.env["X509_USER_PROXY"])
    env = {k: v for k, v in fresh.env.items() if k != "X509_USER_PROXY"}
    submit = subprocess.run([PY, "-m", "wms.cli.dsub", "/bin/echo", "hello"], env=env,
                            capture_output=True, text=True, timeout=120, check=False)
    assert submit.returncode == 0, submit.stderr
    job = submit.stdout.split()[-1]
    stat = subprocess.run([PY, "-m", "wms.cli.dstat", job], env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    assert stat.returncode == 0, stat.stderr
    assert job in stat.stdout and "Waiting" in stat.stdout, stat.stdout
    who = subprocess.run([PY, "-m", "core.cli.admin", "call", "Framework/Registry", "whoami"],
                         env=env, capture_output=True, text=True, timeout=120, check=False)
    assert '"issuer"' in who.stdout and fresh.url in who.stdout, who.stdout
