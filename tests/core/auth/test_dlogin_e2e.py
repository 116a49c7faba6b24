"""End to end: ``pilotwms serve`` (a real subprocess) as the login server, the real IdP, and the
real ``dlogin``/``dlogout`` commands: log in with the device flow (the user approves through
pilotwms's verification page at the IdP), call a service with the token, log out (the token is
then refused by the service)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from core.config.schema import Config
from tests.core.auth.conftest import auth_config, free_port
from tests.core.cli.login_support import run_dlogin
from tests.support.credentials import Creds
from tests.support.oidc_idp import OIDCProvider, approve_device

PY = sys.executable


@pytest.mark.slow
def test_dlogin_whoami_dlogout(config: Config, creds: Creds, oidc_idp: OIDCProvider,
                               tmp_path: Path) -> None:
    port = free_port()
    cfg = auth_config(config, tmp_path, oidc_idp.issuer, f"sqlite:///{tmp_path / 'auth.db'}",
                      port=port, PollInterval=1)
    config_file = tmp_path / "config.yaml"
    config_file.write_text(json.dumps(cfg.model_dump(mode="json", by_alias=True,
                                                     exclude_none=True)))
    admin = [PY, "-m", "core.cli.admin"]
    subprocess.run([*admin, "db", "init", "--config", str(config_file)], check=True,
                   capture_output=True, timeout=120)
    server = subprocess.Popen([*admin, "serve", "--config", str(config_file)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              start_new_session=True)
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        assert "pilotwms serving" in line, server.stderr.read() if server.stderr else line
        url = f"https://127.0.0.1:{port}"
        client = tmp_path / "client.yaml"
        client.write_text(f"URLs: [{url}]\nCADir: {creds.ca_dir}\nGroup: demo_admin\n"
                          "VO: demo\n")
        home = tmp_path / "home"
        home.mkdir()
        env = {**os.environ, "HOME": str(home), "PILOTWMS_CLIENT_CONFIG": str(client),
               "BEARER_TOKEN": "", "BEARER_TOKEN_FILE": str(tmp_path / "bt"),
               "X509_USER_PROXY": str(tmp_path / "no-proxy"), "PILOTWMS_SESSION": "auth-e2e"}
        verify = str(creds.ca_dir)
        run = run_dlogin([], env, lambda code: approve_device(
            f"{url}/auth/device/verify?user_code={code}", "alice", "alice-password",
            verify=verify))
        assert run.approval_error is None, run.approval_error
        assert run.returncode == 0, run.stderr
        assert f"open {url}/auth/device/verify" in run.stdout
        info = run.fields()
        assert (info["username"], info["group"], info["issuer"]) == ("alice", "demo_admin", url)
        token = (tmp_path / "bt").read_text().strip()

        who = subprocess.run([*admin, "call", "Framework/Registry", "whoami"], env=env,
                             capture_output=True, text=True, timeout=60)
        assert who.returncode == 0, who.stderr
        whoami = json.loads(who.stdout)
        assert (whoami["username"], whoami["group"], whoami["authMethod"]) == (
            "alice", "demo_admin", "token")

        out = subprocess.run([PY, "-c", "from core.cli.login import logout_main; "
                              "raise SystemExit(logout_main())"], env=env, capture_output=True,
                             text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert f"Tokens revoked at {url}" in out.stdout
        refused = requests.post(f"{url}/Framework/Registry", data={"method": "whoami"},
                                headers={"Authorization": f"Bearer {token}"}, verify=verify,
                                timeout=30)
        assert refused.status_code == 401 and "revoked" in refused.json()["Message"]
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 0
