"""``dlogin`` then the user commands against a real ``pilotwms serve`` that trusts the real IdP.

The server trusts the IdP as an external issuer (``Auth.Issuers``: its JWKS, audience
``pilotwms``, ``groups`` mapped to pilotwms groups) and knows alice by (issuer, sub). The client
configuration names the IdP as ``Issuer``, so ``dlogin`` asks the server's ``whoami`` who the
token makes you. Access tokens live 30 s: below the refresh margin, so every command refreshes
its token first (silent refresh through the real commands).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import yaml

from core.oauth_client import TokenStore
from tests.core.cli.login_support import run_dlogin
from tests.support.oidc_idp import RESOURCE, USERS, OIDCProvider

PY = sys.executable


@dataclass
class Site:
    idp: OIDCProvider
    directory: Path
    url: str
    env: dict[str, str]


def _admin(*args: str) -> str:
    proc = subprocess.run([PY, "-m", "core.cli.admin", *args], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    base = tmp_path_factory.mktemp("login-server")
    with OIDCProvider(config={"ttl": {"AccessToken": 30}}, workdir=base) as idp:
        directory = base / "inst"
        _admin("init", str(directory), "--port", "0")
        config_file = directory / "config.yaml"
        config = yaml.safe_load(config_file.read_text())
        jwks = requests.get(idp.discovery()["jwks_uri"], timeout=10).json()
        config["Auth"]["Issuers"] = [{
            "Issuer": idp.issuer, "VO": "demo", "JWKS": jwks, "Audience": "pilotwms",
            "GroupsClaim": "groups",
            "GroupMap": {"/demo/users": "demo_user", "/demo/admins": "demo_admin"}}]
        config["Registry"]["Users"]["alice"]["TokenSubjects"] = [
            {"Issuer": idp.issuer, "Subject": USERS["alice"]["sub"]}]
        config_file.write_text(yaml.safe_dump(config))
        proc = subprocess.Popen([PY, "-m", "core.cli.admin", "serve", "--config",
                                 str(config_file), "--port", "0"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "pilotwms serving" in line, proc.stderr.read() if proc.stderr else line
        url = line.split(" at ")[1].split()[0]
        client = base / "client.yaml"
        client.write_text(f"URLs: [{url}]\nCADir: {directory}/ca/certificates\n"
                          f"Group: demo_user\nVO: demo\nIssuer: {idp.issuer}\n")
        home = base / "home"
        home.mkdir()
        env = {**os.environ, "HOME": str(home), "PILOTWMS_CLIENT_CONFIG": str(client),
               "BEARER_TOKEN": "", "BEARER_TOKEN_FILE": str(base / "bt"),
               "X509_USER_PROXY": str(base / "x509up"), "PILOTWMS_SESSION": "server-tests"}
        try:
            yield Site(idp, directory, url, env)
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0


def _run(site: Site, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PY, "-m", *args], capture_output=True, text=True, env=site.env,
                          timeout=120)


def test_dlogin_then_commands_use_the_token_refreshed_then_the_proxy(site: Site) -> None:
    run = run_dlogin(["--resource", RESOURCE], site.env,
                     lambda code: site.idp.approve_device(code, "alice", "alice-password"))
    assert run.approval_error is None and run.returncode == 0, run.stderr
    info = run.fields()
    assert info["username"] == "alice"          # from the server's whoami
    assert info["group"] == "demo_user"
    assert info["properties"] == "NormalUser"
    assert info["issuer"] == site.idp.issuer
    assert info["subject"] == USERS["alice"]["sub"]
    assert 0 < int(info["timeleft"].split(":")[-1]) <= 30

    # a proxy is there too: the token wins; each command refreshes the 30 s token first
    _admin("proxy", "init", "--cert", str(site.directory / "users/alice/usercert.pem"),
           "--key", str(site.directory / "users/alice/userkey.pem"), "-g", "demo_user",
           "--out", site.env["X509_USER_PROXY"])
    store = TokenStore(Path(site.env["BEARER_TOKEN_FILE"]),
                       Path(site.env["HOME"]) / ".pilotwms" / "tokens")
    before = store.access_token()
    who = _run(site, "core.cli.admin", "call", "Framework/Registry", "whoami")
    assert who.returncode == 0, who.stderr
    whoami = json.loads(who.stdout)
    assert whoami["authMethod"] == "token" and whoami["username"] == "alice"
    assert store.access_token() != before
    sub = _run(site, "wms.cli.dsub", "/bin/echo", "hello")
    assert sub.returncode == 0, sub.stderr
    job = sub.stdout.strip()
    stat = _run(site, "wms.cli.dstat", "-f", "json")
    assert stat.returncode == 0, stat.stderr
    assert job in stat.stdout

    logout = subprocess.run([PY, "-c", "from core.cli.login import logout_main; "
                             "raise SystemExit(logout_main())"], capture_output=True,
                            text=True, env=site.env, timeout=60)
    assert logout.returncode == 0, logout.stderr
    assert "cannot revoke its self-contained access tokens" in logout.stderr
    assert not Path(site.env["BEARER_TOKEN_FILE"]).exists()
    who = _run(site, "core.cli.admin", "call", "Framework/Registry", "whoami")
    assert who.returncode == 0 and json.loads(who.stdout)["authMethod"] == "x509"
    Path(site.env["X509_USER_PROXY"]).unlink()
    stat = _run(site, "wms.cli.dstat")
    assert stat.returncode == 2 and "make the proxy with 'dinit'" in stat.stderr


def test_a_user_unknown_to_the_registry_is_told_so(site: Site) -> None:
    run = run_dlogin(["--resource", RESOURCE], site.env,
                     lambda code: site.idp.approve_device(code, "bob", "bob-password"))
    assert run.returncode == 2
    assert run.stderr.strip().splitlines()[-1] == (
        "ERROR: the pilotwms server refuses this login: whoami needs credentials of a "
        "registered user")
    assert not Path(site.env["BEARER_TOKEN_FILE"]).exists()
