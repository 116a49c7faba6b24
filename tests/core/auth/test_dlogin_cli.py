"""``dlogin``/``dlogout`` (the client, core/cli/login.py) against pilotwms's own login server
(core.auth, the ``auth_server`` fixture of this directory) with the real IdP: real
subprocesses, the user's approval through pilotwms's verification page and the IdP's pages.

This module needs core.auth: on a branch without it, it is skipped as a whole.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

pytest.importorskip("core.auth.service", reason="needs the login server (core.auth)")

from tests.core.cli.login_support import run_dlogin  # noqa: E402
from tests.support.credentials import Creds  # noqa: E402
from tests.support.oidc_idp import approve_device, deny_device  # noqa: E402
from tests.support.servers import ThreadedServer  # noqa: E402

PY = sys.executable
pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


@pytest.fixture
def env(auth_server: ThreadedServer, creds: Creds, tmp_path: Path) -> dict[str, str]:
    client = tmp_path / "client.yaml"
    client.write_text(f"URLs: [{auth_server.url}]\nCADir: {creds.ca_dir}\nVO: demo\n")
    home = tmp_path / "home"
    home.mkdir()
    return {**os.environ, "HOME": str(home), "PILOTWMS_CLIENT_CONFIG": str(client),
            "BEARER_TOKEN": "", "BEARER_TOKEN_FILE": str(tmp_path / "bt"),
            "X509_USER_PROXY": str(tmp_path / "x509up"), "PILOTWMS_SESSION": "auth-cli"}


def _whoami(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PY, "-m", "core.cli.admin", "call", "Framework/Registry", "whoami"],
                          capture_output=True, text=True, env=env, timeout=60)


def test_dlogin_group_refresh_and_dlogout(env: dict[str, str], creds: Creds,
                                          auth_server: ThreadedServer, db_url: str,
                                          tmp_path: Path) -> None:
    from core.oauth_client import TokenStore, fresh_access_token

    ca = str(creds.ca_dir)
    run = run_dlogin(["--group", "demo_admin"], env, lambda url: approve_device(
        url, "alice", "alice-password", verify=ca), by_url=True)
    assert run.approval_error is None and run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].startswith(f"To log in, open {auth_server.url}/auth/device/verify ")
    info = run.fields()
    assert info["username"] == "alice" and info["group"] == "demo_admin"
    assert info["issuer"] == auth_server.url
    assert info["properties"] == "JobAdministrator, NormalUser, Operator"
    who = _whoami(env)
    assert who.returncode == 0, who.stderr
    assert json.loads(who.stdout)["group"] == "demo_admin"

    store = TokenStore(tmp_path / "bt", Path(env["HOME"]) / ".pilotwms" / "tokens")
    first, state = store.access_token(), store.load_state()
    assert first and state and state.refresh_token
    refreshed = fresh_access_token(store, margin=10**9)        # force a silent refresh
    assert refreshed != first
    new_state = store.load_state()
    assert new_state and new_state.refresh_token != state.refresh_token
    assert json.loads(_whoami(env).stdout)["group"] == "demo_admin"

    out = subprocess.run([PY, "-c", "from core.cli.login import logout_main; "
                          "raise SystemExit(logout_main())"], capture_output=True, text=True,
                         env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert f"Tokens revoked at {auth_server.url}" in out.stdout
    refused = requests.post(f"{auth_server.url}/Framework/Registry", timeout=30, verify=ca,
                            data={"method": "whoami"},
                            headers={"Authorization": f"Bearer {refreshed}"})
    assert refused.status_code == 401


def test_dlogin_refused_group_is_denied(env: dict[str, str], creds: Creds,
                                        db_url: str) -> None:
    # bob is in demo_admin in the registry, but the IdP does not assert /demo/admins
    run = run_dlogin(["--group", "demo_admin"], env, lambda url: approve_device(
        url, "bob", "bob-password", verify=str(creds.ca_dir)), by_url=True)
    assert run.returncode == 2
    assert run.stderr.strip() == "ERROR: the login was denied"


def test_dlogin_user_denies(env: dict[str, str], creds: Creds, db_url: str) -> None:
    run = run_dlogin([], env, lambda url: deny_device(
        url, "alice", "alice-password", verify=str(creds.ca_dir)), by_url=True)
    assert run.returncode == 2
    assert run.stderr.strip() == "ERROR: the login was denied"
